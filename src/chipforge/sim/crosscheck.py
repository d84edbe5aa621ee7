"""The analytical engine against the cycle engine on the same graphs (docs/crosscheck.md).

Every case is costed twice; the cycle engine, which compiles and schedules each instruction, is
the reference the fast model is held to."""

from __future__ import annotations

from dataclasses import dataclass

from chipforge.perf import estimate
from chipforge.sim.engine import run_timing
from chipforge.spec import load_chip
from chipforge.workload import parse_workload

CHIPS = ("forge-n3", "tpu-v5p", "tpu-v4")
WORKLOADS = (
    "gemm:m=1024,n=1024,k=1024",
    "gemm:m=4096,n=4096,k=4096",
    "gemm:m=8192,n=8192,k=1024",
    "gemm:m=2048,n=28672,k=8192",
    "gemm:m=16,n=6144,k=4096",
    "gemm:m=64,n=8192,k=8192",
    "gemm:m=256,n=4096,k=14336",
    "gemm:m=512,n=1024,k=512",
    "gemm:m=1000,n=3000,k=700",
    "gemm:m=4096,n=4096,k=4096,dtype=int8",
    "llm:llama3-8b,phase=prefill,seq=2048,scope=layer",
    "llm:llama3-8b,phase=decode,batch=16,context=2048,scope=layer",
    "llm:llama3-70b,phase=decode,batch=64,context=4096,scope=layer",
    "llm:mixtral-8x7b,phase=decode,batch=8,context=1024,scope=layer",
    "llm:llama2-7b,phase=prefill,seq=1024,scope=layer",
    "llm:gpt3-175b,phase=decode,batch=8,context=2048,scope=layer",
)


@dataclass(frozen=True)
class Row:
    chip: str
    workload: str
    cycle_s: float
    analytical_s: float
    cycle_bound: str
    analytical_bound: str

    @property
    def error(self) -> float:
        """(analytical - cycle) / cycle."""
        return (self.analytical_s - self.cycle_s) / self.cycle_s


def crosscheck(chips=CHIPS, workloads=WORKLOADS) -> list[Row]:
    rows = []
    for name in chips:
        chip = load_chip(name)
        for text in workloads:
            graph = parse_workload(text)
            cycle, fast = run_timing(graph, chip), estimate(graph, chip)
            rows.append(Row(name, text, cycle.time_s, fast.time_s, cycle.bound, fast.bound))
    return rows


def markdown(rows: list[Row]) -> str:
    lines = [
        "| chip | workload | cycle engine | analytical | error | bounds (cycle / analytical) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.chip} | `{r.workload}` | {r.cycle_s * 1e6:,.1f} us | "
            f"{r.analytical_s * 1e6:,.1f} us | {100 * r.error:+.1f}% | "
            f"{r.cycle_bound} / {r.analytical_bound} |"
        )
    return "\n".join(lines) + "\n"
