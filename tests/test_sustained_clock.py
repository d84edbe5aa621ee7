"""Sustained clocks: a preset's `sustained_clock` prices long back-to-back GEMMs (the
"gemm-sustained" rows of `chipforge validate`), burst benchmarks keep the boost clock."""

import json
from importlib import resources

import pytest
from typer.testing import CliRunner

from chipforge.cli import app
from chipforge.data import sustained_gemm
from chipforge.perf import estimate
from chipforge.perf.calibration import calibration
from chipforge.perf.cases import sustained_cases
from chipforge.perf.validate import run_sustained, run_validation, sustained_summary
from chipforge.spec import load_chip
from chipforge.workload import parse_workload

# AMD's own MAF shape for MI300X: 16 x 19 output tiles of 256 x 256, one full wave on 304 CUs
SHAPE = dict(m=4096, n=4864, k=32896)


def test_sustained_clock_scales_a_compute_bound_gemm_by_the_clock_ratio():
    """By hand: the shape fills the 304 CUs in one wave of 256x256 tiles, each K deep, at 1024
    bf16 MAC per CU-cycle, so it takes m*n*k / (1024 * 304) cycles; the time is those cycles at
    the clock over the family's matrix_frac, plus one dispatch. Only the clock differs."""
    # AMD's measured clock under this run (the preset leaves it unset: see mi300x.toml)
    boost = load_chip("mi300x").model_copy(update={"sustained_clock": 1.207e9})
    held = boost.at_sustained_clock()
    assert held.clock == pytest.approx(1.207e9) and boost.clock == pytest.approx(2.1e9)
    assert held.cores == boost.cores and held.memory == boost.memory
    cal = calibration("amd-gpu")
    graph = parse_workload("gemm:m={m},n={n},k={k},dtype=bf16".format(**SHAPE))
    cycles = SHAPE["m"] * SHAPE["n"] * SHAPE["k"] / (1024 * 304)
    for chip in (boost, held):
        result = estimate(graph, chip)
        assert result.ops[0].bound == "compute"
        compute = cycles / chip.clock / cal.matrix_frac
        assert result.ops[0].parts_s["compute"] == pytest.approx(compute, rel=1e-12)
        assert result.time_s == pytest.approx(compute + cal.op_overhead_s, rel=1e-12)
    # the compute part moves by exactly the clock ratio; the dispatch does not
    t_boost = estimate(graph, boost).ops[0].parts_s["compute"]
    t_held = estimate(graph, held).ops[0].parts_s["compute"]
    assert t_held / t_boost == pytest.approx(2.1e9 / 1.207e9, rel=1e-12)


def test_no_sustained_clock_means_the_boost_clock():
    h100 = load_chip("h100")
    assert h100.sustained_clock is None and h100.at_sustained_clock() is h100


def test_sustained_rows_follow_their_rule_and_are_their_own_kind():
    text = (resources.files("chipforge.data") / "sustained_gemm.csv").read_text()
    assert "Selection rule" in text and "(S2)" in text
    rows = sustained_gemm()
    results = run_sustained()
    assert len(results) == len(rows) >= 6
    for r in results:
        row = rows[r.id]
        assert all(row[c] for c in ("dtype", "m", "n", "k", "duration", "power", "source"))
        assert r.kind == "gemm-sustained" and not r.calibration
        chip = load_chip(r.chip)
        assert r.clock_hz == (chip.sustained_clock or chip.clock)
        assert r.predicted > 0 and r.published > 0 and r.at_boost > 0
        # priced at a lower clock, a compute-bound GEMM is slower, never faster
        assert r.predicted <= r.at_boost
    # rows on a chip with a stated sustained clock are priced below boost, the others at it
    held = [r for r in results if load_chip(r.chip).sustained_clock]
    assert held and all(r.predicted < r.at_boost for r in held)
    assert len(sustained_summary(results)["cases"]) == len(results)
    # burst rows keep the boost clock, even on a chip that states a sustained clock
    burst = [r for r in run_validation() if r.chip == "a100"]
    assert burst and all(r.clock_hz == load_chip("a100").clock for r in burst)


def test_validate_reports_the_sustained_kind():
    out = CliRunner().invoke(app, ["validate", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert {c["kind"] for c in data["sustained"]["cases"]} == {"gemm-sustained"}
    assert "gemm-sustained" not in {c["kind"] for c in data["cases"]}


def test_sustained_rows_write_d_in_the_benchmarks_output_type():
    """superbench cublaslt_gemm runs fp8e4m3 inputs into an FP16 D (run<fp8e4m3, fp8e4m3, fp16>),
    hipblaslt-bench as each row states: the case prices that D, one more byte per output element
    than an FP8 D, all of it HBM traffic on the skinny 802816x192x768 shape."""
    rows = sustained_gemm()
    assert all(r["out_dtype"] in ("fp16", "bf16", "fp8") for r in rows.values())
    assert all(r["out_dtype"] == "fp16" for i, r in rows.items() if i.startswith("azure-ndh100v5"))
    case = next(c for c in sustained_cases() if c.id == "azure-ndh100v5-fp8-802816x192x768")
    m, n, k = 802816, 192, 768
    graph = case.workload()
    (op,) = graph.ops
    assert (op.dtype, op.out_dtype) == ("fp8", "fp16")
    assert op.bytes == m * k + k * n + 2 * m * n == graph.resident["operands"]
    h100 = load_chip("h100")
    fp16_d = estimate(graph, h100).ops[0]
    fp8_d = estimate(parse_workload(f"gemm:m={m},n={n},k={k},dtype=fp8"), h100).ops[0]
    hbm = h100.hbm.name
    assert fp16_d.bytes_by_level[hbm] - fp8_d.bytes_by_level[hbm] == pytest.approx(m * n)
    assert fp16_d.bound == "memory" and fp16_d.time_s > fp8_d.time_s
