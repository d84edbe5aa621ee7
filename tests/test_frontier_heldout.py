"""The frontier held-out set: selected by the written rule, every row reported (a prediction or
the reason it cannot be expressed yet), never silently dropped."""

from __future__ import annotations

import math
from importlib import resources

import pytest

from chipforge.cluster import frontier_validate as fv
from chipforge.cluster import validate as v
from chipforge.errors import Infeasible

KINDS = ("training-frontier", "serving-frontier")


@pytest.fixture(scope="module")
def results():
    return v.run(KINDS)


def test_rule_is_written_and_every_row_cites_a_source():
    header = (resources.files("chipforge.data") / fv.FILENAME).read_text().splitlines()[0]
    assert header.startswith("#") and "held-out" in header
    for row in fv.rows():
        assert row["source"].startswith("https://"), row["id"]
        assert row["kind"] in ("training", "serving") and float(row["value"]) > 0


def test_every_row_is_reported(results):
    assert sorted(r["id"] for r in results) == sorted(r["id"] for r in fv.rows())
    for r in results:
        if r["error"] is None:
            assert r["not_expressible"], r["id"]
        else:
            assert math.isfinite(r["predicted"]) and r["predicted"] > 0, r["id"]
    for kind in KINDS:
        s = v.summary([r for r in results if r["kind"] == kind])
        assert s["cases"] + s["not_expressible"] == sum(1 for r in results if r["kind"] == kind)


def test_only_held_out_rows_may_fail():
    def boom() -> float:
        raise Infeasible("no plan")

    v.CASES.append(lambda: [v.ClusterCase("x", "probe", "m", 1.0, "s", boom)])
    try:
        with pytest.raises(Infeasible):
            v.run(("probe",))
    finally:
        v.CASES.pop()


def test_megatron_bridge_moe_rows_take_their_recipes_token_dispatcher():
    """Megatron-Bridge's GB200/GB300 DeepSeek-V3 and Qwen3 MoE configs dispatch with HybridEP
    (moe_flex_dispatcher_backend="hybridep" -> moe_token_dispatcher_type "flex"); their B200
    and H100 configs, and GPT-OSS everywhere, keep the NCCL all-to-all; and the choice moves
    the prediction (the flex dispatch skips the all-to-all dispatcher's sorts)."""
    mb = [r for r in fv.rows() if "Megatron-Bridge" in r["source"] and r["kind"] == "training"]
    moe = [r for r in mb if r["model"].startswith(("deepseek", "qwen3", "gpt-oss"))]
    assert {r["model"].split("-")[0] for r in moe} == {"deepseek", "qwen3", "gpt"}
    for r in moe:
        flex = fv._recipe_options(r).get("moe_dispatcher") == "flex"
        hybridep = r["chip"] in ("gb200", "gb300") and not r["model"].startswith("gpt-oss")
        assert flex == hybridep, r["id"]
    row = next(r for r in moe if r["id"] == "mb2511-gb300x8-qwen3-30b-a3b-mxfp8")
    a2a = fv._training({**row, "moe_dispatcher": "alltoall"})()
    assert fv._training(row)() > 1.03 * a2a


def test_every_column_added_after_the_rows_is_dated():
    """An input column added after the rows were fixed says when (a date) and why, so a reader
    can tell what the rows' authors saw from what came later."""
    import re

    text = (resources.files("chipforge.data") / fv.FILENAME).read_text()
    header = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    said = [m.end() for m in re.finditer(r"after the rows were fixed", header)]
    assert said
    for end in said:
        note = header[end : end + 120]
        assert re.match(r"\s*\(2\d{3}-\d{2}-\d{2}", note) and "because" in note, note


def test_load_rule_takes_the_same_engine_rows_at_their_offline_load():
    """The header's LOAD RULE: a p99 row whose Server engine is the same system's Offline engine
    (only the B200 llama2-70b rows) states the Offline run's logged samples/s and is taken at the
    same fraction of the modelled Offline rate as the run's target_qps is of it; the others keep
    the logged rate. Before, the two rows were not expressible (364/s above the modelled peak)."""
    rows = [r for r in fv.rows() if r["kind"] == "serving" and r["metric"].startswith("p99_")]
    ruled = {r["id"] for r in rows if r.get("offline_rate")}
    assert ruled == {"mlpi51-b200x8-llama2-70b-server-p99-ttft",
                     "mlpi51-b200x8-llama2-70b-server-p99-tpot"}  # fmt: skip
    row = next(r for r in rows if r["id"] in ruled)
    offline = next(r for r in fv.rows() if r["id"] == "mlpi51-b200x8-llama2-70b-offline")
    peak = fv._serving_predictor({**offline, "osl": row["osl"]})() / int(row["osl"])
    calls = []

    def plan_of(**bounds):
        calls.append(bounds)
        return fv.plan_serving("b200", "llama2-70b", 8, isl=222, osl=273, dtype="fp4",
                               kv_dtype="fp8", tp=1, max_batch=2048, osl_cv=0.79, isl_cv=0.77,
                               max_num_tokens=3584, runtime="tensorrt-llm")  # fmt: skip

    rate = fv.rate_of(row, plan_of)
    assert calls == [{"ttft_slo": None, "tpot_slo": None, "slo_percentile": None}]
    assert rate == pytest.approx(364 / 371.423 * peak, rel=1e-6)
    other = next(r for r in rows if not r.get("offline_rate"))
    assert fv.rate_of(other, plan_of) == float(other["request_rate"])
    assert 0 < fv._serving_predictor(row)() < 10
