"""`validate --cluster --json` keeps every row in `cases`, as `validate --json` does (the overall
summary's count, also named `cases`, replaced the rows: the JSON held no row at all)."""

from chipforge.cluster import validate as v


def test_the_json_holds_every_row(monkeypatch):
    def boom():
        raise v.ChipforgeError("no plan")

    probe = [v.ClusterCase("a", "probe", "m", 2.0, "s", lambda: 3.0),
             v.ClusterCase("b", "probe", "m", 1.0, "s", boom, may_fail=True)]  # fmt: skip
    monkeypatch.setattr(v, "CASES", [lambda: probe])
    monkeypatch.setattr(v, "load_sets", lambda: None, raising=False)
    data, _ = v.report()
    assert [r["id"] for r in data["cases"]] == ["a", "b"]
    assert {"id", "predicted", "published", "error"} <= set(data["cases"][0])
    assert data["cases"][0]["error"] == 0.5 and data["cases"][1]["predicted"] is None
    assert data["evaluated"] == 1 and data["not_expressible"] == 1
    assert data["probe_summary"]["cases"] == 1
