"""decide speed: 10,000 Monte-Carlo scenarios of examples/decide/forge_vs_gb200.toml on one core.

Budget: 10,000 scenarios in <= 10 s on one core. BLAS/OpenMP threads are pinned to 1 before
numpy loads. Timed apart: the per-chip planner runs (once per chip and workload, cached), the
10,000-scenario Monte-Carlo (scrambled Sobol points -> fleet, supply and cash model, vectorised),
the SALib Sobol analysis ((d + 2) x 512 runs) and the whole `analyse` (Monte-Carlo at the file's
16,384 samples + Sobol + summary). Each line carries the 1-minute load average at its start.

Run: .venv/bin/python benchmarks/bench_decide.py [N]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from chipforge.decide import analyse, load_scenario, sobol_indices  # noqa: E402
from chipforge.decide.analysis import unit_samples  # noqa: E402
from chipforge.decide.model import inputs, run  # noqa: E402
from chipforge.decide.rates import chip_type  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "decide" / "forge_vs_gb200.toml"


def line(what: str, seconds: float, note: str = "") -> None:
    print(f"{what:<58} {seconds:8.2f} s  load {os.getloadavg()[0]:.2f}  {note}")


def main() -> None:
    sc = load_scenario(EXAMPLE)
    t = time.perf_counter()
    gpu, own = chip_type(sc, sc.buy, built=False), chip_type(sc, sc.build, built=True)
    line("planners, once per chip and workload (cached)", time.perf_counter() - t)
    u = unit_samples(len(sc.names()), N, seed=0)[:N]
    t = time.perf_counter()
    run(sc, gpu, own, inputs(sc, u))
    dt = time.perf_counter() - t
    line(f"Monte-Carlo, {len(u):,} scenarios x {sc.quarters} quarters", dt,
         f"budget 10 s: {'OK' if dt <= 10 else 'OVER'}")  # fmt: skip
    t = time.perf_counter()
    sobol_indices(sc, gpu, own)
    line(f"SALib Sobol, {(len(sc.names()) + 2) * 512:,} runs + analysis", time.perf_counter() - t)
    t = time.perf_counter()
    analyse(sc)
    line(f"analyse(): {sc.samples:,} scenarios + Sobol + summary", time.perf_counter() - t)


if __name__ == "__main__":
    main()
