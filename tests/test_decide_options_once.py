"""decide reads each [[workload.train]] / [[workload.serve]] entry's plan options once, when the
scenario is read, and prices every chip with what it read (it parsed their "key=value" text
again for each chip's plans)."""

import tomllib
from pathlib import Path

from chipforge.cluster import serve_options, train_options
from chipforge.decide import rates
from chipforge.decide.inputs import scenario_from_dict

EXAMPLE = Path(__file__).parent.parent / "examples" / "decide" / "forge_vs_rent.toml"


def test_plan_options_are_read_once_per_entry(monkeypatch):
    d = tomllib.loads(EXAMPLE.read_text())
    d["workload"]["train"] = [{"model": "llama3-8b", "tokens": "1T", "recompute": "full"}]
    d["workload"]["serve"] = [{"model": "llama3-8b", "tokens_per_day": "1T", "max_batch": 64}]
    calls = []
    for module in (train_options, serve_options):
        counted = lambda *a, _parse=module.parse, **k: calls.append(1) or _parse(*a, **k)  # noqa: E731
        monkeypatch.setattr(module, "parse", counted)
    rates._CACHE.clear()
    sc = scenario_from_dict(d)
    assert len(calls) == 2  # read and checked before any sample
    for option, built in ((sc.build, True), (sc.buy, False)):
        ct = rates.chip_type(sc, option, built)
        assert all(v > 0 for v in ct.useful.values())
    assert len(calls) == 2
    assert sc.train[0].options()["recompute"] == "full"
    assert sc.serve[0].options()["max_batch"] == 64
