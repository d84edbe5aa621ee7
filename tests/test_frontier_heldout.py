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
