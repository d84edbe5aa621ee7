"""The engine's MoE grouped-GEMM price against one library's measured grouped GEMMs.

data/grouped_gemm.csv: every row of the DeepGEMM README's tables (revision 327ec92, H800, FP8 with
fine-grained scaling, BF16 output), dense and grouped, none chosen by fit. A grouped row is priced
as the op `workload.llm._moe` builds for DeepSeek-V3's routed experts at that row's experts per
chip and rows per expert: one `MatMul` with `grouped=True` and a batch of groups (each group
padding its own rows to the tile). The dense rows of the same table are the
control: what the grouped rows share with them at the same N and K is the library's FP8 rate and
its per-tile costs, which every GEMM has (docs/perf-calibration.md, "MoE grouped GEMMs")."""

from __future__ import annotations

import statistics
from dataclasses import replace

import pytest

from chipforge.data import grouped_gemm
from chipforge.perf import estimate
from chipforge.spec import load_chip
from chipforge.workload import Graph
from chipforge.workload.config import load_model
from chipforge.workload.llm import _moe
from chipforge.workload.ops import MatMul


def _grouped_op(row: dict[str, str]) -> MatMul:
    """The routed experts' grouped matmul `workload.llm._moe` builds for DeepSeek-V3 (hidden 7168,
    256 experts of 2048, top-8: its up projection is N x K = 4096 x 7168, its down 7168 x 2048,
    the README's shapes) at the expert parallelism that leaves `groups` experts on the chip and
    the tokens that give each `m_per_group` rows; BF16 output, as the README's kernels write."""
    c = load_model("deepseek-v3")
    g, m = int(row["groups"]), int(row["m_per_group"])
    ep = c.experts // g
    t = m * c.experts // (ep * c.top_k)
    ops = _moe(c, t=t, tp=1, dtype="fp8", ep=ep, combine=False)
    (op,) = (
        o
        for o in ops
        if isinstance(o, MatMul) and o.grouped and (o.n, o.k) == (int(row["n"]), int(row["k"]))
    )
    assert (op.batch, op.m) == (g, m)  # every local expert hit, the routes spread evenly
    return replace(op, out_dtype="bf16")


def _error(row: dict[str, str], chip) -> float:
    """Isolated-kernel time (what the README times: one kernel) / measured - 1."""
    g, m, n, k = (int(row[c]) for c in ("groups", "m_per_group", "n", "k"))
    if row["layout"] == "dense":
        op = MatMul(name="g", m=m, n=n, k=k, dtype="fp8", out_dtype="bf16")
    else:
        op = _grouped_op(row)
    predicted = estimate(Graph(name="g", ops=(op,)), chip).time_s
    return predicted / (2 * g * m * n * k / (float(row["tflops"]) * 1e12)) - 1


@pytest.fixture(scope="module")
def errors() -> dict[str, tuple[dict[str, str], float]]:
    chip = load_chip("h100")  # H800 is the H100-SXM die; only NVLink is cut
    return {rid: (row, _error(row, chip)) for rid, row in grouped_gemm().items()}


def test_the_rule_selects_every_table_row():
    rows = list(grouped_gemm().values())
    layouts = [r["layout"] for r in rows]
    assert (layouts.count("dense"), layouts.count("contiguous"), layouts.count("masked")) == (
        18,
        4,
        6,
    )
    for r in rows:  # the README's TFLOPS are 2 g m n k / time: every field is a positive number
        assert min(float(r[c]) for c in ("groups", "m_per_group", "n", "k", "tflops")) > 0


def test_grouped_gemms_are_priced_within_the_library_dense_error(errors):
    """Each grouped row's error sits within 20 points of the dense M = 4096 row at its N and K
    (the same library, revision and chip): the grouping (pooled tiles over the groups, each group
    padded to the tile) adds no error beyond what the dense GEMMs show. Measured today: the
    contiguous rows -8 / -3 points from their dense rows, the masked rows -6..-19 (the largest,
    2 x 512 and 4 x 256 at K = 7168, the decode layout with few rows per group)."""
    dense = {
        (r["n"], r["k"]): e for r, e in errors.values() if r["layout"] == "dense"
        and r["m_per_group"] == "4096"
    }  # fmt: skip
    gaps = {
        rid: e - dense[r["n"], r["k"]] for rid, (r, e) in errors.items() if r["layout"] != "dense"
    }
    assert len(gaps) == 10
    assert max(map(abs, gaps.values())) < 0.20, gaps


def test_grouped_gemm_errors_by_layout(errors):
    """Stated tolerances of the isolated-kernel price against the grouped rows: the engine is
    faster than DeepGEMM's grouped kernels by 12-29 % (median 21 %), as it is on the dense
    M = 4096 rows at small K (-21 % at K = 2048, -38 % at K = 512): DeepGEMM's fine-grained
    scaling and per-tile work the isolated price leaves out (a deployed run prices FP8 at the
    family's `narrow_frac`, which takes the grouped rows to -15..+20 %)."""
    grouped = [e for r, e in errors.values() if r["layout"] != "dense"]
    assert min(grouped) > -0.35 and max(grouped) < 0.0
    assert 0.15 < abs(statistics.median(grouped)) < 0.30
