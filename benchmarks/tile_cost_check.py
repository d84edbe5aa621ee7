"""The small-K gap of the single-chip GEMM price: what a per-output-tile fixed cost would have to
be, what the kernels' structure and published hardware figures size it at, and what pricing the
one candidate of the right size would do to every validation set. A diagnostic: nothing in the
engine changes, no constant is set from these rows (docs/perf-calibration.md, "Per-tile fixed
cost at small K").

Part 1: the dense M = 4096 rows of data/grouped_gemm.csv (DeepGEMM README at 327ec92, H800, FP8
with fine-grained scaling, BF16 out), priced on `h100` as the engine does today, then with two
candidate per-tile costs added to the matrix time:
  (a) latency-sized: per wave of output tiles, the accumulator tile written to shared memory at
      128 B/clk/SM (Hopper whitepaper; `stmatrix` in DeepGEMM's epilogue) plus one global-memory
      latency, taken at `LATENCY_CYCLES` = 1,000 cycles, above every published Hopper
      global-memory latency we found (400-800 cycles), so an upper bound; `matrix_frac` left at
      today's value (a re-set on the MAMF case would lower it further);
  (b) the output tile's store serialized with the mainloop: at 327ec92 DeepGEMM's math warps
      issue each tile's TMA store and wait for it (`tma_store_arrive(); tma_store_wait<0>()`)
      before a named barrier that the next tile's math warps also wait on (fp8_gemm.cuh at that
      revision; "Overlap TMA store", 340d988, 2025-04-18, moved the wait to the next tile's
      epilogue). Priced as the output's bytes at the engine's off-chip bandwidth, added to the
      matrix time, with `matrix_frac` solved again on its designated case (perf-mamf-bf16-h100).
Part 2 (`--cluster`): mechanism (b) patched into the engine for every NVIDIA GPU (`--scope all`)
or Hopper only (`--scope hopper`), `matrix_frac` and `narrow_frac` solved again on their
designated cases, then every `validate --cluster` kind's summary line (summary lines only for
every kind; per-row lines only for the acceptance sets, training and serving).

    python benchmarks/tile_cost_check.py              # part 1, ~3 s
    python benchmarks/tile_cost_check.py --cluster    # + part 2, ~2 min on a loaded machine
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

from chipforge.data import grouped_gemm
from chipforge.dtypes import nbytes
from chipforge.perf import calibration as cal
from chipforge.perf import engine
from chipforge.perf.cases import cases
from chipforge.perf.matmul import PARTIAL_BYTES, split_k_partial_bytes, tensor_core_split_cycles
from chipforge.spec.loader import load_chip
from chipforge.workload import Graph
from chipforge.workload.ops import MatMul

LATENCY_CYCLES = 1000  # upper bound on one global-memory latency on Hopper (see docstring)
SMEM_BYTES_PER_CYCLE = 128  # per SM (Hopper whitepaper; h100.toml SMEM bandwidth)
HOPPER = ("h100", "h200", "h800", "h20", "gh200")


def _store_s(mc: engine.Machine, op: MatMul, split: int) -> float:
    """Seconds the output tiles' store holds the matrix units when it is not overlapped: the
    output (or a split's fp32 partials) at the engine's off-chip rate for the op."""
    out = nbytes(op.out_dtype or op.dtype) if split == 1 else PARTIAL_BYTES
    return op.batch * op.m * op.n * out * split / mc.gemm_bandwidth(op)


def serial_store_split_k(scope: tuple[str, ...] | None):
    """`engine._split_k` with the store of each output tile added to the matrix time on the
    chips in `scope` (None: every NVIDIA GPU)."""

    def split_k(mc, op, traffic):
        applies = mc.chip.family == "nvidia-gpu" and (scope is None or mc.chip.name in scope)
        chip, mu, hbm = mc.chip, mc.chip.matrix, mc.chip.hbm.name
        run_dtype, penalty = mc.matrix_dtype(op.dtype)
        scale = penalty / chip.clock / mc.cal.matrix_frac / mc.narrow_rate(run_dtype)
        best = (math.inf, 0.0, traffic)
        for split, cycles in tensor_core_split_cycles(
            op.m, op.n, op.k, op.batch, rows=mu.rows, cols=mu.cols, units=chip.matrix_units,
            macs_per_cycle=mu.macs_per_cycle[run_dtype],
        ):  # fmt: skip
            partials = split_k_partial_bytes(op.m, op.n, op.batch, split)
            moved = {
                level: v + (partials if level != hbm or not mc.resident(partials / 2) else 0.0)
                for level, v in traffic.items()
            }
            compute = cycles * scale + (engine._overhead(mc, op) if split > 1 else 0.0)
            if applies:
                compute += _store_s(mc, op, split)
            t = max(compute, moved[hbm] / mc.gemm_bandwidth(op))
            if t < best[0]:
                best = (t, compute, moved)
        return best[1], best[2]

    return split_k


def _with_fracs(matrix_frac: float, narrow_frac: float) -> None:
    cal.FAMILIES["nvidia-gpu"] = replace(
        cal.FAMILIES["nvidia-gpu"], matrix_frac=matrix_frac, narrow_frac=narrow_frac
    )


def _bisect(f, lo: float, hi: float, target: float, steps: int = 30) -> float:
    """x in [lo, hi] with f(x) = target, f increasing."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
    return (lo + hi) / 2


def solve_matrix_frac(narrow_frac: float) -> float:
    """`matrix_frac` that reproduces its designated case (perf-mamf-bf16-h100) under the patch."""
    case = next(c for c in cases() if c.id == "perf-mamf-bf16-h100")
    graph, chip = case.workload(), load_chip(case.chip)

    def rate(frac: float) -> float:
        _with_fracs(frac, narrow_frac)
        return case.metric(graph, engine.estimate(graph, chip))

    return _bisect(rate, 0.5, 1.0, case.published)


def part1() -> None:
    chip = load_chip("h100")
    mc = engine.Machine(chip, cal.calibration(chip.family))
    base = cal.FAMILIES["nvidia-gpu"]
    engine._split_k, original = serial_store_split_k(None), engine._split_k
    try:
        frac_b = solve_matrix_frac(base.narrow_frac)
    finally:
        engine._split_k = original
        cal.FAMILIES["nvidia-gpu"] = base
    print("DeepGEMM README (327ec92) dense M = 4096, H800 FP8 -> bf16, engine on h100;")
    print("predicted / measured - 1: today | (a) latency-sized per-tile cost | (b) serial store")
    print(f"(b) re-solves matrix_frac on perf-mamf-bf16-h100: {base.matrix_frac} -> {frac_b:.4f}")
    print(f"{'N':>6} {'K':>6} {'TFLOPS':>7} {'waves':>6} {'today':>7} {'(a)':>7} {'(b)':>7}  "
          f"{'gap/wave':>9} {'(a)/wave':>9} {'store/wave':>10}")  # fmt: skip
    mu = chip.matrix
    for row in grouped_gemm().values():
        if row["layout"] != "dense" or row["m_per_group"] != "4096":
            continue
        m, n, k = (int(row[c]) for c in ("m_per_group", "n", "k"))
        op = MatMul(name="g", m=m, n=n, k=k, dtype="fp8", out_dtype="bf16")
        measured = 2 * m * n * k / (float(row["tflops"]) * 1e12)
        res = engine.estimate(Graph(name="g", ops=(op,)), chip).ops[0]
        compute, memory = res.parts_s["compute"], res.parts_s["memory"]
        over = res.parts_s["overhead"]
        waves = math.ceil(math.ceil(m / mu.rows) * math.ceil(n / mu.cols) / chip.matrix_units)
        per_wave = (mu.rows * mu.cols * 2 / SMEM_BYTES_PER_CYCLE + LATENCY_CYCLES) / chip.clock
        t_a = max(compute + waves * per_wave, memory) + over
        store = _store_s(mc, op, 1)
        t_b = max(compute * base.matrix_frac / frac_b + store, memory) + over
        gap = (measured - res.time_s) / waves
        print(f"{n:>6} {k:>6} {row['tflops']:>7} {waves:>6} {res.time_s / measured - 1:>+7.1%} "
              f"{t_a / measured - 1:>+7.1%} {t_b / measured - 1:>+7.1%}  {gap * 1e6:>7.2f}us "
              f"{per_wave * 1e6:>7.2f}us {store / waves * 1e6:>8.2f}us")  # fmt: skip


def part2(scope: tuple[str, ...] | None) -> None:
    from moe_grouped_gemm_check import _clear_caches as clear  # this folder: on sys.path

    from chipforge.cluster import validate

    base = cal.FAMILIES["nvidia-gpu"]

    def narrow_case(narrow: float) -> float:
        _with_fracs(solve_matrix_frac(narrow), narrow)
        clear()
        (row,) = (r for r in validate.run(("serving",)) if r["id"] == cal.NARROW_CALIBRATION_CASE)
        return row["error"]

    original = engine._split_k
    engine._split_k = serial_store_split_k(scope)
    try:
        narrow = _bisect(narrow_case, 0.55, 0.80, 0.0, steps=8)
        frac = solve_matrix_frac(narrow)
        _with_fracs(frac, narrow)
        clear()
        rows = validate.run()
    finally:
        engine._split_k = original
        cal.FAMILIES["nvidia-gpu"] = base
        clear()
    where = "every NVIDIA GPU" if scope is None else "Hopper (" + ", ".join(scope) + ")"
    print(f"\n(b) in the engine for {where}: matrix_frac {frac:.4f}, narrow_frac {narrow:.3f}")
    for r in rows:
        if r["kind"] in ("training", "serving") and r["error"] is not None:
            print(f"  {r['kind']:<9} {r['id']:<40} {r['error']:+7.1%}")
    for kind in sorted({r["kind"] for r in rows}):
        s = validate.summary([r for r in rows if r["kind"] == kind])
        missing = f", {s['not_expressible']} n.e." if s["not_expressible"] else ""
        print(f"{kind:<22} {s['cases']:>3} cases  median {s['median_abs_error']:.1%}, "
              f"max {s['max_abs_error']:.1%}{missing}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", action="store_true", help="part 2: every validation set")
    parser.add_argument("--scope", choices=("all", "hopper"), default="all")
    args = parser.parse_args()
    part1()
    if args.cluster:
        part2(None if args.scope == "all" else HOPPER)
