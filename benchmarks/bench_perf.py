"""Speed of the analytical engine (DESIGN.md budgets): run with `make bench`.

Each case builds its graph once and times `estimate` with the matmul caches cleared before
every run, so the numbers are cold-cache costs, not memo lookups.
"""

from __future__ import annotations

import statistics
import time

from chipforge.perf import estimate
from chipforge.perf.matmul import systolic_schedule, tensor_core_split_cycles, tile_rereads
from chipforge.spec import load_chip
from chipforge.workload import parse_workload

CASES = [
    (
        "one Llama-3-70B layer, prefill 8k",
        "llm:llama3-70b,phase=prefill,seq=8192,scope=layer",
        1e-3,
    ),
    (
        "Llama-3-405B training step, one chip's share (tp=8, 8k tokens)",
        "llm:llama3-405b,phase=train,seq=8192,batch=1,tp=8",
        50e-3,
    ),
    (
        "Llama-3-405B decode step, batch 64, 8k context",
        "llm:llama3-405b,phase=decode,batch=64,context=8192",
        50e-3,
    ),
    ("DeepSeek-V3 training step, 4k tokens", "llm:deepseek-v3,phase=train,seq=4096", 50e-3),
]
CHIPS = ("h100", "forge-n3")
RUNS = 20


def cold(graph, chip) -> float:
    for cached in (systolic_schedule, tensor_core_split_cycles, tile_rereads):
        cached.cache_clear()
    start = time.perf_counter()
    estimate(graph, chip)
    return time.perf_counter() - start


def main() -> None:
    print(f"| case | chip | ops | median of {RUNS} (cold cache) | budget |")
    print("|---|---|---:|---:|---:|")
    for title, text, budget in CASES:
        graph = parse_workload(text)
        for name in CHIPS:
            chip = load_chip(name)
            median = statistics.median(cold(graph, chip) for _ in range(RUNS))
            flag = "" if median <= budget else " OVER"
            print(
                f"| {title} | {name} | {len(graph)} | {median * 1e3:.2f} ms | "
                f"{budget * 1e3:.0f} ms{flag} |"
            )


if __name__ == "__main__":
    main()
