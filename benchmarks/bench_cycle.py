"""Cycle engine speed against SCALE-Sim 3.0 on the same layers, and the analytical engine
against the cycle engine (writes docs/scalesim.md and docs/crosscheck.md tables to stdout).

SCALE-Sim's wall times are those recorded by benchmarks/scalesim_reference.py on this class of
machine (2 cores); ours are measured here, compile + schedule, median of 5 runs.
"""

from __future__ import annotations

import csv
import statistics
import sys
import time
from pathlib import Path

from chipforge.sim.crosscheck import crosscheck, markdown
from chipforge.sim.scalesim import array_cycles

REFERENCE = Path(__file__).parent.parent / "tests" / "data" / "scalesim3_reference.csv"


def scalesim_table() -> str:
    lines = [
        "| case | array | dataflow | M x N x K | SCALE-Sim cycles | ours | SCALE-Sim wall | "
        "ours wall | speed-up |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    speedups = []
    for r in csv.DictReader(REFERENCE.open()):
        if r["status"] != "ok" or r["dataflow"] not in ("os", "ws") or r["stall_cycles"] != "0":
            continue
        shape = (int(r["m"]), int(r["n"]), int(r["k"]))
        kw = {"rows": int(r["array_rows"]), "cols": int(r["array_cols"]), "dataflow": r["dataflow"]}
        times = []
        for _ in range(5):
            start = time.perf_counter()
            ours = array_cycles(*shape, **kw)
            times.append(time.perf_counter() - start)
        wall = statistics.median(times)
        speedups.append(float(r["wall_seconds"]) / wall)
        lines.append(
            f"| {r['case_id']} | {kw['rows']}x{kw['cols']} | {r['dataflow']} | "
            f"{'x'.join(map(str, shape))} | {int(r['compute_cycles']):,} | {ours:,.0f} | "
            f"{float(r['wall_seconds']):.2f} s | {wall * 1e3:.2f} ms | "
            f"{speedups[-1]:,.0f}x |"
        )
    lines.append(
        f"\nSpeed-up: median {statistics.median(speedups):,.0f}x, "
        f"smallest {min(speedups):,.0f}x over {len(speedups)} layers."
    )
    return "\n".join(lines)


def main() -> None:
    print("## Against SCALE-Sim 3.0\n")
    print(scalesim_table())
    if "--crosscheck" in sys.argv:
        rows = crosscheck()
        within = sum(abs(r.error) <= 0.10 for r in rows)
        print(f"\n## Analytical vs cycle engine: {within} of {len(rows)} within 10%\n")
        print(markdown(rows))


if __name__ == "__main__":
    main()
