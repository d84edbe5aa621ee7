"""Published peak memory (data/memory_published.csv): a written rule with a designated and a
held-out set, every row a configuration of the check set, predictions from the memory model."""

from __future__ import annotations

from importlib import resources

from chipforge.cluster import check_validate as cv
from chipforge.cluster import memory_validate as mv
from chipforge.cluster import validate as v
from chipforge.cluster.memory import GiB
from chipforge.errors import Infeasible


def test_rule_is_written_and_rows_name_a_configuration():
    text = (resources.files("chipforge.data") / mv.FILENAME).read_text()
    header = " ".join(line for line in text.splitlines() if line.startswith("#"))
    assert "Selection rule" in header and "held-out" in header and "max_reserved" in header
    configs = {r["id"] for r in cv.rows()}
    rows = mv.rows()
    assert {r["set"] for r in rows} == set(mv.KINDS)
    for r in rows:
        assert r["config"] in configs and r["source"].startswith("https://")
        assert 0 < float(r["value_gib"]) < 200
    # the designated rows are the 8B FSDP runs the model refused (Tables 1 and 3)
    assert {r["config"] for r in rows if r["set"] == "designated"} == {
        f"tt2412-t{t}-fsdp{s}" for t in (1, 3) for s in ("", "-compile", "-compile-fp8")
    }


def test_prediction_is_the_plans_memory_and_never_refused():
    config = {r["id"]: r for r in cv.rows()}["tt2412-t1-fsdp"]
    row = cv.training_row(config)
    mem = mv.predicted_gib(config)
    # the same plan on the real 96 GB chip: its memory when it fits, a refusal naming it else
    try:
        res = v.training_plan({**row, "chip": cv.chip_for(config)})
        assert abs(res.memory_per_chip_bytes / GiB - mem) < 1e-9
    except Infeasible as err:  # the refusal states the same need
        assert f"needs {mem:.0f} GiB" in str(err)
    cases = {c.id: c for c in mv.cases()}
    assert cases["mem-tt2412-t1-fsdp"].kind == "memory"
    assert cases["mem-tt2412-t2-fsdp8-cp1-seq32768"].kind == "memory-heldout"
    assert cases["mem-tt2412-t1-fsdp"].predict() == mem
