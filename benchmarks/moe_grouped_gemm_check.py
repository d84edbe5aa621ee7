"""The engine's MoE grouped-GEMM price against published grouped-GEMM rates at stated shapes, and
how much of the training-frontier MoE misses a grouped-GEMM price error could explain.

Part 1: every row of data/grouped_gemm.csv (DeepGEMM's README tables, H800, FP8 with
fine-grained scaling, BF16 output): the engine's isolated-kernel time on `h100` (what the README
times: one kernel) and its deployed time (what a serving or training run prices), as
predicted / measured - 1, by shape. The dense rows at the same N and K are the control.

Part 2: the frontier MoE rows (training and serving, seen rows) with every grouped matmul's time
(routed experts, forward and backward) multiplied by 1, 1.5 and 2, and for the training rows the
factor the grouped GEMMs alone would need to close each row. A diagnostic: nothing is tuned to
it, no summary counts it.

    python benchmarks/moe_grouped_gemm_check.py
"""

from __future__ import annotations

import statistics

from chipforge.data import grouped_gemm
from chipforge.perf import engine
from chipforge.spec.loader import load_chip
from chipforge.workload import Graph
from chipforge.workload.ops import MatMul

MOE_ROWS = ("qwen3", "gptoss", "deepseekv3", "deepseek-v3", "deepseek-r1")
SCALES = (1.0, 1.5, 2.0)


def row_error(row: dict[str, str], chip, *, deployed: bool) -> float:
    g, m, n, k = (int(row[c]) for c in ("groups", "m_per_group", "n", "k"))
    op = MatMul(name="g", m=m, n=n, k=k, batch=g, dtype="fp8", out_dtype="bf16",
                grouped=row["layout"] != "dense")  # fmt: skip
    predicted = engine.estimate(Graph(name="g", ops=(op,)), chip, deployed=deployed).time_s
    measured = 2 * g * m * n * k / (float(row["tflops"]) * 1e12)
    return predicted / measured - 1


def part1() -> None:
    chip = load_chip("h100")
    print("DeepGEMM README (327ec92), H800 FP8 -> bf16; engine on h100: predicted/measured - 1")
    print(f"{'layout':<11} {'groups x m':>11} {'N':>6} {'K':>6} {'TFLOPS':>7} "
          f"{'isolated':>9} {'deployed':>9}")  # fmt: skip
    by_layout: dict[str, list[float]] = {}
    for row in grouped_gemm().values():
        iso, dep = (row_error(row, chip, deployed=d) for d in (False, True))
        by_layout.setdefault(row["layout"], []).append(iso)
        shape = f"{row['groups']} x {row['m_per_group']}"
        print(f"{row['layout']:<11} {shape:>11} {row['n']:>6} {row['k']:>6} {row['tflops']:>7} "
              f"{iso:>+9.1%} {dep:>+9.1%}")  # fmt: skip
    for layout, errs in by_layout.items():
        print(f"{layout}: median {statistics.median(errs):+.1%} (isolated), "
              f"range {min(errs):+.1%} .. {max(errs):+.1%}")  # fmt: skip


def _clear_caches() -> None:
    """Drop the cluster models' cached layer costs, plans and serving costs, so the next
    prediction prices its ops again."""
    import importlib
    import pkgutil

    import chipforge.cluster as cluster

    for info in pkgutil.iter_modules(cluster.__path__):
        module = importlib.import_module(f"chipforge.cluster.{info.name}")
        for value in list(vars(module).values()):
            if hasattr(value, "cache_clear"):
                value.cache_clear()
        for name in ("_CACHE", "_PLANS"):
            if isinstance(getattr(module, name, None), dict):
                getattr(module, name).clear()


def part2() -> None:
    from chipforge.cluster.frontier_validate import serving_cases, training_cases

    original = engine.finish_op
    cases = [c for c in training_cases() + serving_cases() if any(s in c.id for s in MOE_ROWS)]
    errors: dict[str, list[float]] = {c.id: [] for c in cases}
    for scale in SCALES:

        def scaled(mc, op, cost, *, busy_s=None, _scale=scale, **kw):
            if getattr(op, "grouped", False) and busy_s is None:
                busy_s = max(cost.parts.values()) * _scale
            return original(mc, op, cost, busy_s=busy_s, **kw)

        engine.finish_op = scaled
        _clear_caches()
        try:
            for c in cases:
                errors[c.id].append(c.predict() / c.published - 1)
        finally:
            engine.finish_op = original
            _clear_caches()
    print("\nfrontier MoE rows (seen; predicted/published - 1) with the grouped GEMMs' time")
    print("x 1 / 1.5 / 2. Training tokens/s rows: share = the grouped GEMMs' part of the modelled")
    print("step, needed = the factor on them alone that would close a row the model runs fast")
    for cid, (e1, e15, e2) in errors.items():
        line = f"{cid[:44]:<44} {e1:+7.1%} {e15:+7.1%} {e2:+7.1%}"
        if "tokens_per_s_per_chip" in next(c.metric for c in cases if c.id == cid) and e1 > e2:
            share = (1 + e1) / (1 + e2) - 1  # step(x2) / step(x1) - 1: the grouped part at x1
            line += f"  share {share:5.1%}"
            if e1 > 0:
                line += f"  needed x{1 + e1 / share:.1f}"
        print(line)


if __name__ == "__main__":
    part1()
    part2()
