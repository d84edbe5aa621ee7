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
