"""Budgets for the simulators: how big a run would be, estimated from shapes before it starts.

The cycle engine compiles every op to instructions and schedules each one; the functional
simulator also holds every buffer as a numpy array and multiplies on the host. Both grow with
the op's size, so a GEMM of 65536^3 or a batch of 10^5 would run for minutes and ask for tens of
GB. `check` refuses a run whose estimate is over either budget, in one line that names the
size and the flag that raises the cap:

- memory (`--max-memory`, default half of the machine's RAM): BYTES_PER_INSTRUCTION for each
  instruction the run keeps (program and timeline), plus, with --functional, the largest op's
  arrays at FUNCTIONAL_BYTES_PER_ELEMENT (its buffers, random inputs, the fp32 reference and the
  fp64 comparison).
- work (`--max-work`, default DEFAULT_MAX_WORK): one unit per instruction compiled and
  scheduled, plus, with --functional, one per MACS_PER_WORK multiply-accumulates computed on the
  host. A unit is ~10 us on a 2-core x86 host, so the default is about a minute.

The constants were measured on forge-n3 GEMMs (16384^3 and 32768^3 cycle runs: 620-660 bytes an
instruction; a 4096^3 functional run: 0.53 ns a MAC and ~15 bytes an element of its three
buffers) and rounded up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from chipforge.compiler.estimate import instructions
from chipforge.errors import ChipforgeError, UnitError
from chipforge.spec import ChipSpec
from chipforge.units import fmt, parse_count, parse_quantity
from chipforge.workload import Graph
from chipforge.workload.ops import Attention, Conv2d, MatMul, Op

BYTES_PER_INSTRUCTION = 700
FUNCTIONAL_BYTES_PER_ELEMENT = 32
MACS_PER_WORK = 16384
DEFAULT_MAX_WORK = 3_000_000
FALLBACK_RAM = 8 * 2**30  # when the platform does not say


class BudgetError(ChipforgeError):
    """A simulation larger than its memory or work budget (refused before it starts)."""


def physical_memory() -> float:
    """Bytes of RAM of this machine (os.sysconf), or FALLBACK_RAM where it cannot say."""
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return float(FALLBACK_RAM)


def default_max_memory() -> float:
    return physical_memory() / 2


@dataclass(frozen=True)
class Estimate:
    instructions: int  # compiled and scheduled, over all ops
    macs: float  # computed on the host (functional runs)
    bytes: float  # peak memory of the run

    @property
    def work(self) -> float:
        return self.instructions + self.macs / MACS_PER_WORK


def _elements(op: Op) -> float:
    """Elements of the HBM buffers of `op`'s program (what a functional check allocates)."""
    if isinstance(op, Conv2d):
        op = op.as_matmul()
    if isinstance(op, MatMul):
        return float(op.batch) * (op.m * op.k + op.k * op.n + op.m * op.n)
    if isinstance(op, Attention):
        q = float(op.batch) * op.heads * op.q_len
        kv = float(op.batch) * op.kv_heads * op.kv_len
        return q * (op.head_dim + op.d_v) + kv * (op.head_dim + op.d_v)
    return 0.0


def _macs(op: Op) -> float:
    if isinstance(op, Conv2d):
        op = op.as_matmul()
    if isinstance(op, MatMul):
        return float(op.batch) * op.m * op.n * op.k
    if isinstance(op, Attention):
        return float(op.flops) / 2
    return 0.0


def estimate(graph: Graph, chip: ChipSpec, *, functional: bool, resident=None) -> Estimate:
    """The size of `simulate` on `graph` (one instance of each op), from shapes alone."""
    count, macs, largest = 0, 0.0, 0.0
    for op in graph.ops:
        count += instructions(op, chip, resident=bool(resident and resident(op)))
        if functional:
            macs += _macs(op)
            largest = max(largest, _elements(op))
    memory = count * BYTES_PER_INSTRUCTION + largest * FUNCTIONAL_BYTES_PER_ELEMENT
    return Estimate(count, macs, memory)


def check(est: Estimate, *, max_memory: float | None, max_work: float | None) -> None:
    """Refuse a run over budget (None: the default budget)."""
    max_memory = default_max_memory() if max_memory is None else max_memory
    max_work = DEFAULT_MAX_WORK if max_work is None else max_work
    size = f"{est.instructions:.3g} instructions"
    if est.macs:
        size += f" and {est.macs:.3g} host MACs"
    size += f", about {fmt(est.bytes, 'bytes', digits=3)} of memory"
    if est.bytes > max_memory:
        raise BudgetError(
            f"this simulation would need {size}, over the {fmt(max_memory, 'bytes', digits=3)} "
            "memory budget; raise it with --max-memory (e.g. --max-memory 64GB), or cost the "
            "workload with `chipforge evaluate` (the analytical engine)"
        )
    if est.work > max_work:
        raise BudgetError(
            f"this simulation would take {est.work:.3g} work units ({size}; a unit is ~10 us), "
            f"over the budget of {max_work:.3g}; raise it with --max-work, or cost the workload "
            "with `chipforge evaluate` (the analytical engine)"
        )


def parse_limits(max_memory: str | None, max_work: str | None) -> tuple[float | None, float | None]:
    """The --max-memory (a size: '64GB', '12 GiB', bytes) and --max-work (a count: '2e7', '20M')
    options as numbers; None keeps the default."""
    memory = work = None
    if max_memory is not None:
        memory = parse_quantity(max_memory, "bytes", field="--max-memory")
        if not memory > 0 or memory == float("inf"):
            raise UnitError(
                "--max-memory", f"must be a positive size such as 64GB, not {max_memory!r}"
            )
    if max_work is not None:
        work = parse_count(max_work, "--max-work")
        if work == float("inf"):
            raise UnitError("--max-work", f"must be a finite count such as 2e7, not {max_work!r}")
    return memory, work
