"""RTL simulation speed: cycles per second of the 16x16 array under each available simulator.

Run: .venv/bin/python benchmarks/bench_rtl.py. Amaranth's Python simulator is the only
co-simulation back end so far (Verilator lints the Verilog but does not simulate it here)."""

from __future__ import annotations

import time

import numpy as np

from chipforge.rtl import ArrayParams
from chipforge.rtl.cosim import random_tiles, stimulus
from chipforge.rtl.pysim import run_amaranth


def bench(dtype: str, size: int = 16, tiles: int = 4) -> tuple[int, float]:
    params = ArrayParams(rows=size, cols=size, dtype=dtype)
    batch = random_tiles(params, tiles, np.random.default_rng(0), max_rows=size)
    weights, acts = stimulus(params, batch)
    start = time.perf_counter()
    seen = run_amaranth(params, weights, acts)
    return seen.cycles, time.perf_counter() - start


def main() -> None:
    print("simulator  array  dtype  cycles  seconds  cycles/s  (includes elaboration)")
    for dtype in ("int8", "bf16"):
        cycles, seconds = bench(dtype)
        print(f"amaranth   16x16  {dtype:5}  {cycles:6}  {seconds:7.1f}  {cycles / seconds:8.1f}")


if __name__ == "__main__":
    main()
