"""Sweep throughput with the analytical engine on one Llama-3-70B decode layer.

Budget (issue 9): >= 5,000 design points per minute per core; a 2-worker Dask LocalCluster
>= 1.6x one worker. Prints points/min for: in-process (1 core), local pool with 2 workers,
Dask LocalCluster with 1 and 2 workers. Run: .venv/bin/python benchmarks/bench_sweep.py
"""

from __future__ import annotations

import sys
import tempfile
import time

from chipforge.explore import space_from_dict, sweep

N = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
SPACE = {
    "base": {"chip": "forge-n3"},
    "params": {
        "matrix.rows": [64, 128, 256],
        "matrix.cols": [64, 128, 256],
        "cores": {"min": 1, "max": 16},
        "clock": {"min": "0.8 GHz", "max": "2.4 GHz"},
        "memory.VMEM.capacity": {"min": "16 MiB", "max": "512 MiB"},
        "memory.HBM3E.bandwidth": {"min": "4 TB/s", "max": "16 TB/s"},
    },
    "workloads": [{"spec": "llm:llama3-70b,phase=decode,batch=64,context=4096,layers=1"}],
    "objectives": {"tokens_per_s": "max", "unit_cost_usd": "min"},
    "constraints": {"max_tdp_w": 2000},
    "sampler": {"method": "random", "n": N, "seed": 0},
}


def run(backend: str, workers: int) -> tuple[float, float]:
    """(points/min over the whole run incl. start-up, points/min after the first chunk)."""
    space = space_from_dict(SPACE)
    first: list[tuple[float, int]] = []

    def on_rows(done: int, total: int) -> None:
        if not first:
            first.append((time.perf_counter(), done))

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        counts = sweep(space, d, backend=backend, workers=workers, on_rows=on_rows)
        t1 = time.perf_counter()  # includes pool / cluster start-up and store writes
    assert counts["evaluated"] == N
    steady = (N - first[0][1]) / (t1 - first[0][0]) * 60
    return N / (t1 - t0) * 60, steady


def main() -> None:
    print(f"{N} points; points/min: whole run incl. start-up | steady state after 1st chunk")
    res = {}
    for name, backend, workers in (
        ("local, in-process (1 core)", "local", 1),
        ("local pool, 2 workers", "local", 2),
        ("dask LocalCluster, 1 worker", "dask", 1),
        ("dask LocalCluster, 2 workers", "dask", 2),
    ):
        res[name] = run(backend, workers)
        print(f"  {name:30s} {res[name][0]:9,.0f} | {res[name][1]:9,.0f}")
    d1, d2 = res["dask LocalCluster, 1 worker"], res["dask LocalCluster, 2 workers"]
    print(f"per core budget >= 5,000: {res['local, in-process (1 core)'][0]:,.0f}")
    print(
        f"dask 2 vs 1 worker (budget >= 1.6x): whole {d2[0] / d1[0]:.2f}x, "
        f"steady {d2[1] / d1[1]:.2f}x"
    )


if __name__ == "__main__":
    main()
