"""Cold start of the command line: median whole-process time of each analytical command.

Every row starts a fresh interpreter (`python -m chipforge ...`), so the time includes Python's
own start, every import and the answer. The commands run in rounds, one of each per round
(alternating, so a busy moment on the shared machine hits all of them alike). Each row: median
wall time and median CPU time (user + system) of the process; wall time adds the wait for a
core. Budget: 0.4 s median wall time for every analytical command.

Run with `.venv/bin/python benchmarks/bench_cli.py [--runs N]`; it prints a Markdown table
(the README's) and exits 1 if a command's median is over the budget.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

BUDGET_S = 0.4
TRAIN_ALL = (
    "train --chip h100 --model llama3-70b --chips 1024 --tp 8 --pp 4 --dp 32 --cp 1 --ep 1 "
    "--zero 1 --recompute selective --micro-batch 1 --interleave 1 --seq 8192 "
    "--global-batch 512 --json"
)
SERVE_ALL = (
    "serve --chip h100 --model llama3-70b --chips 8 --isl 2048 --osl 256 --ttft-slo 2s "
    "--tpot-slo 100ms --tp 8 --pp 1 --ep 1 --concurrency 64 --dtype bf16 --kv-dtype bf16 --json"
)
COMMANDS = {
    "--help": "--help",
    "evaluate --json (preset)": "evaluate --chip h100 --workload llama3-70b --json",
    "train, all flags given": TRAIN_ALL,
    "serve, all flags given": SERVE_ALL,
    "presets --json": "presets --json",
    "show --json": "show h100 --json",
    "compare --json": "compare --chips h100,b200,forge-n3 --workload llama3-8b --json",
    "cost --json": "cost --chip forge-n3 --json",
    "datacenter --json": "datacenter --chip gb200 --json",
    "validate --json": "validate --json",
}


# the warm-up writes the bytecode that every timed run reads, as an installed package has it:
# an inherited PYTHONDONTWRITEBYTECODE would have every run compile the sources again
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_once(args: str) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh `python -m chipforge <args>`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "chipforge", *args.split()],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9)
    runs = ap.parse_args().runs
    for args in COMMANDS.values():  # warm the file cache and bytecode once, not timed
        run_once(args)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in COMMANDS}
    for _ in range(runs):
        for name, args in COMMANDS.items():
            times[name].append(run_once(args))
    print(f"| command ({runs} runs each) | median wall (s) | median CPU (s) |")
    print("|---|---:|---:|")
    over = []
    for name, rows in times.items():
        wall = statistics.median(w for w, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        print(f"| `chipforge {name}` | {wall:.3f} | {cpu:.3f} |")
        if wall > BUDGET_S:
            over.append(name)
    if over:
        print(f"over the {BUDGET_S} s budget: {', '.join(over)}", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
