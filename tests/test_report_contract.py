"""Chart-key contract: every report kind built from the REAL packages' outputs (perf Result,
silicon cost, a training plan, a serving plan, datacenter sites, a sweep store) draws the charts it
should. A key renamed in another package's `to_dict` fails here instead of silently dropping a
chart; on a page the same miss shows as a `report_warning` box."""

from __future__ import annotations

import json
import re
from functools import lru_cache

import pytest

from chipforge.report import render_report
from chipforge.report.contract import expected
from chipforge.report.plans import BUILDERS

# The chart ids each kind must draw from the real output (a chart renamed or dropped fails here).
IDS = {
    "evaluate": {"roofline", "time_per_op", "time_by_bound"},
    "compare": {"time_per_chip", "time_by_bound", "roofline", "time_per_op"},
    "cost": {"area", "power", "unit_cost", "one_time", "peak"},
    "train": {"memory", "step", "comm", "utilization"},
    "serve": {"latency_throughput", "latency", "memory", "phases"},
    "site": {"capex", "opex", "power", "tornado"},
    "sites": {"tco", "capex_by_chip", "tornado0", "tornado1"},
    "sweep": {"pareto"},
}
KIND = {"site": "datacenter", "sites": "datacenter"}
# The curve records agreed with the serving model (ServingPlan.to_dict()["curve"]).
CURVE_KEYS = {
    "concurrency",
    "batch",
    "throughput_tokens_per_s",
    "throughput_tokens_per_s_per_chip",
    "ttft_s",
    "tpot_s",
    "feasible",
}
DC_POWER_W = 1e8  # a 100 MW site: the datacenter model's smallest realistic case, fast to price


@lru_cache(maxsize=1)
def serve_plan() -> dict:
    from chipforge.cluster import plan_serving

    # a TPOT SLO of 10 ms: the curve's largest batches miss it (infeasible points)
    return plan_serving("forge-n3", "llama3-8b", 8, isl=1024, osl=256, tpot_slo=0.01).to_dict()


@lru_cache(maxsize=1)
def real_outputs() -> dict[str, dict]:
    from chipforge.cluster import plan_training
    from chipforge.datacenter import compare, sensitivity, site_report
    from chipforge.perf import estimate
    from chipforge.silicon import evaluate
    from chipforge.spec import load_chip
    from chipforge.workload import parse_workload

    graph = parse_workload("gpt2")
    results = [estimate(graph, load_chip(c)).to_dict() for c in ("forge-n3", "h100")]
    site = site_report("forge-n3", DC_POWER_W)
    site["sensitivity"] = sensitivity("forge-n3", DC_POWER_W)
    sites = compare(["gb200", "forge-n3"], DC_POWER_W)
    sites["sensitivity"] = {c: sensitivity(c, DC_POWER_W) for c in sites["sites"]}
    return {
        "evaluate": results[0],
        "compare": {"workload": graph.name, "results": results},
        "cost": evaluate(load_chip("forge-n3")).to_dict(),
        "train": plan_training("forge-n3", "llama3-8b", 8).to_dict(),
        "serve": serve_plan(),
        "site": site,
        "sites": sites,
    }


def chart_ids(page: str) -> set[str]:
    specs = re.search(r"var specs=(\[.*?\]);var done", page).group(1)
    return {s["id"].removeprefix("s0_") for s in json.loads(specs.replace("<\\/", "</"))}


@pytest.mark.parametrize("name", [k for k in IDS if k != "sweep"])
def test_real_output_draws_every_expected_chart(name):
    data = real_outputs()[name]
    kind = KIND.get(name, name)
    assert set(expected(kind, data)) == IDS[name]
    page = render_report(kind, data)
    assert IDS[name] <= chart_ids(page), f"{name}: missing {IDS[name] - chart_ids(page)}"
    assert 'data-warnings="0"' in page and 'class="report_warning"' not in page


def test_real_serve_curve_has_the_agreed_keys_and_a_missing_one_warns():
    data = serve_plan()
    assert data["curve"] and all(set(p) >= CURVE_KEYS for p in data["curve"])
    assert {True, False} == {p["feasible"] for p in data["curve"]}  # the SLO cuts the curve
    page = render_report("serve", {k: v for k, v in data.items() if k != "curve"})
    assert IDS["serve"] - {"latency_throughput"} <= chart_ids(page)
    assert 'class="report_warning"' in page and "curve[]" in page  # visible, naming the key


def test_real_sweep_store_draws_the_pareto_front(tmp_path):
    from typer.testing import CliRunner

    from chipforge.cli import app
    from chipforge.explore import space_from_dict, sweep

    space = space_from_dict(
        {
            "base": {"chip": "forge-n3"},
            "params": {"matrix.rows": [128, 256], "clock": {"min": "1 GHz", "max": "2 GHz"}},
            "workloads": [{"spec": "llm:llama3-70b,phase=decode,batch=64,context=4096,layers=1"}],
            "objectives": {"tokens_per_s": "max", "unit_cost_usd": "min"},
        }
    )
    sweep(space, tmp_path / "store", workers=1)
    page = tmp_path / "sweep.html"
    done = CliRunner().invoke(
        app, ["sweep", "show", str(tmp_path / "store"), "--html", str(page), "--json"]
    )
    assert done.exit_code == 0, done.output
    text = page.read_text()
    assert IDS["sweep"] <= chart_ids(text) and 'data-warnings="0"' in text


def test_renamed_key_is_a_visible_report_warning():
    data = dict(real_outputs()["train"])
    data["step_parts_s"] = data.pop("time_breakdown_s")  # what a rename upstream looks like
    page = render_report("train", data)
    assert "step" not in chart_ids(page)
    assert 'data-warnings="1"' in page
    box = re.search(r'<div class="report_warning"[^>]*>(.*?)</div>', page).group(1)
    assert "Step time by part" in box and "time_breakdown_s" in box


def agreed_curve(plan: dict) -> list[dict]:
    """A curve with the agreed keys around the real plan: 4 feasible points, 2 infeasible."""
    chips, tput = plan["chips"], plan["throughput_tokens_per_s"]
    out = []
    for i, c in enumerate((1, 4, 16, 64, 256, 1024)):
        t = tput * min(1.0, c / 64) * (0.9 if c > 64 else 1.0)
        out.append(
            {
                "concurrency": c,
                "batch": c,
                "throughput_tokens_per_s": t,
                "throughput_tokens_per_s_per_chip": t / chips,
                "ttft_s": plan["ttft_s"] * (1 + i / 4),
                "tpot_s": plan["tpot_s"] * (1 + i / 8),
                "feasible": c <= 64,
            }
        )
    return out


@pytest.mark.parametrize("source", ["serving model", "agreed keys"])
def test_serve_curve_marks_chosen_plan_and_infeasible_points(source):
    plan = dict(serve_plan())
    if source == "agreed keys":
        plan["curve"] = agreed_curve(plan)
    curve = plan["curve"]
    (spec,) = [c for c in BUILDERS["serve"](plan) if c["id"] == "latency_throughput"]
    traces = {t["name"]: t for t in spec["data"]}
    ok = [p for p in curve if p["feasible"]]
    bad = [p for p in curve if not p["feasible"]]
    per_chip = "throughput_tokens_per_s_per_chip"
    assert ok and bad
    assert traces["TPOT"]["x"] == [p[per_chip] for p in ok]  # x: throughput per chip
    assert traces["TPOT"]["y"] == pytest.approx([p["tpot_s"] * 1e3 for p in ok])  # ms
    assert traces["TTFT"]["y"] == pytest.approx([p["ttft_s"] * 1e3 for p in ok])
    assert traces["TPOT, infeasible (SLO missed)"]["marker"]["symbol"] == "x"
    assert traces["TTFT, infeasible (SLO missed)"]["x"] == [p[per_chip] for p in bad]
    star = traces["chosen plan"]
    assert star["marker"]["symbol"] == "star"
    assert star["x"] == [plan[per_chip]] * 2
    assert star["y"] == pytest.approx([plan["tpot_s"] * 1e3, plan["ttft_s"] * 1e3])
    assert spec["layout"]["yaxis"]["type"] == "log"
    assert "per chip" in spec["layout"]["xaxis"]["title"]["text"]
