"""Sweep throughput: points per minute per core, and a Dask LocalCluster of 2 workers vs 1.

Budget (issue 9): >= 5,000 design points per minute per core with the analytical engine on an
LLM-layer workload (one Llama-3-70B decode layer); a 2-worker Dask LocalCluster >= 1.6x one
worker. Also the heavier system objectives of examples/forge_n3_serving.toml (serving plan via
cluster.plan_serving + site TCO via chipforge.datacenter) per core.

Dask: the cluster is started and warmed (imports, graph parse) first and timed apart
("start-up"); "steady" is the sweep on the warm cluster. `cpu` is the CPU the workers got
(process CPU seconds / wall): on a shared machine it shows how many cores were really free;
`driver` is the CPU of this process (client, scheduler and the store) over the same wall;
`idle` the share of each worker's time spent between tasks (Dask's own per-task overhead).
Each line carries the 1-minute load average at its start.

Run: .venv/bin/python benchmarks/bench_sweep.py [N_LAYER] [N_SYSTEM] [--dask-only]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from chipforge.explore import Store, load_space, space_from_dict, sweep

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
N = int(ARGS[0]) if ARGS else 8000
N_SYSTEM = int(ARGS[1]) if len(ARGS) > 1 else 300
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "forge_n3_serving.toml"
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


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def timed(space, n: int, **kw) -> float:
    """Points per minute of one sweep into a temporary store."""
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        counts = sweep(space, d, **kw)
        wall = time.perf_counter() - t0
    # a discrete space samples some points twice; the sweep evaluates each distinct point once
    assert counts["evaluated"] == counts["points"] <= n, counts
    return counts["evaluated"] / wall * 60


def _stamped(space, items):
    """evaluate_chunk that also returns (worker pid, start, end) in its first row."""
    from chipforge.explore.evaluate import evaluate_chunk

    t0 = time.time()
    rows = evaluate_chunk(space, items)
    rows[0] = {**rows[0], "_stamp": (os.getpid(), t0, time.time())}
    return rows


def _idle(stamps: list) -> float:
    """Share of each worker's span (first task start to last task end) not inside a task."""
    idle = span = 0.0
    for pid in {p for p, _, _ in stamps}:
        mine = [(a, b) for p, a, b in stamps if p == pid]
        s = max(b for _, b in mine) - min(a for a, _ in mine)
        idle += s - sum(b - a for a, b in mine)
        span += s
    return idle / span if span else 0.0


def _warm() -> None:
    from chipforge.explore.evaluate import evaluate_point

    evaluate_point(space_from_dict(SPACE), {})


def dask_run(workers: int) -> dict:
    import dask
    from dask.distributed import Client, LocalCluster

    from chipforge.explore import backends
    from chipforge.explore.backends import LOCAL_DASK_CONFIG

    stamps = []
    t0 = time.perf_counter()
    with dask.config.set(LOCAL_DASK_CONFIG):
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
    client = Client(cluster)
    try:
        client.run(_warm)
        start = time.perf_counter() - t0
        cpu0 = client.run(time.process_time)
        t1, drv0 = time.perf_counter(), time.process_time()
        real, backends.evaluate_chunk = backends.evaluate_chunk, _stamped
        add = Store.add

        def keep_stamp(store, rows):
            stamps.append(rows[0].pop("_stamp"))
            add(store, rows)

        Store.add = keep_stamp
        try:
            rate = timed(
                space_from_dict(SPACE),
                N,
                backend="dask",
                workers=workers,
                address=cluster.scheduler_address,
            )
        finally:
            backends.evaluate_chunk, Store.add = real, add
        wall, drv = time.perf_counter() - t1, time.process_time() - drv0
        cpu1 = client.run(time.process_time)
    finally:
        client.close()
        cluster.close()
    cpu = sum(cpu1[w] - cpu0[w] for w in cpu1) / wall
    whole = N / (start + N / rate * 60) * 60
    return {
        "start_s": start,
        "steady": rate,
        "whole": whole,
        "cpu": cpu,
        "driver": drv / wall,
        "idle": _idle(stamps),
        "tasks": len(stamps),
    }


def main() -> None:
    dask_only = "--dask-only" in sys.argv
    print(f"{N} points, one Llama-3-70B decode layer; points/min")
    if not dask_only:
        space = space_from_dict(SPACE)
        print(f"  in-process (1 core)            {timed(space, N, workers=1):9,.0f}   [{load()}]")
        print(f"  local pool, 2 workers          {timed(space, N, workers=2):9,.0f}   [{load()}]")
    res = {}
    for w in (1, 2):
        before = load()
        r = res[w] = dask_run(w)
        print(
            f"  dask LocalCluster, {w} worker{'s' if w > 1 else ' '}   steady {r['steady']:9,.0f}"
            f" | whole {r['whole']:9,.0f} | start-up {r['start_s']:.1f} s"
            f" | {r['tasks']} tasks, workers idle {r['idle']:.1%} between them"
            f" | workers got {r['cpu']:.2f} cores, driver {r['driver']:.2f}   [{before}]"
        )
    s, c = res[2]["steady"] / res[1]["steady"], res[2]["cpu"] / res[1]["cpu"]
    print(
        f"dask 2 vs 1 worker (budget >= 1.6x): steady {s:.2f}x, whole "
        f"{res[2]['whole'] / res[1]['whole']:.2f}x; CPU the workers got {c:.2f}x; "
        f"per CPU-second {s / c:.2f}x"
    )
    if dask_only:
        return
    ex = load_space(EXAMPLE)
    ex = replace(ex, method="random", n=N_SYSTEM)
    rate = timed(ex, N_SYSTEM, workers=1)
    print(
        f"system objectives ({EXAMPLE.name}: plan_serving + datacenter TCO), "
        f"{N_SYSTEM} points in-process: {rate:,.0f} points/min/core   [{load()}]"
    )


if __name__ == "__main__":
    main()
