"""HTML/PNG reports: every kind renders from its command's JSON dict, offline, never on a crash."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from itertools import pairwise

import pytest
from plotly.offline import get_plotlyjs
from typer.testing import CliRunner

from chipforge.cli import app
from chipforge.errors import ChipforgeError
from chipforge.perf import estimate
from chipforge.report import render_report, write_report
from chipforge.report.plans import BUILDERS
from chipforge.report.png import write_pngs
from chipforge.silicon import evaluate
from chipforge.spec import load_chip
from chipforge.workload import parse_workload

# Plan dicts shaped like the cluster / datacenter / explore packages' to_dict (issue 10's brief).
TRAIN = {  # the shape of `chipforge train --json`
    "chip": "h100",
    "plan": {
        "tp": 8,
        "pp": 4,
        "dp": 16,
        "cp": 1,
        "ep": 1,
        "zero": 1,
        "recompute": "selective",
        "micro_batch": 1,
    },
    "step_time_s": 9.1,
    "mfu": 0.41,
    "hfu": 0.47,
    "tokens_per_s": 1.2e6,
    "time_to_train_s": None,
    "memory_per_chip_bytes": 61e9,
    "memory_capacity_bytes": 80e9,
    "memory_by_category_bytes": {
        "weights_bytes": 17.5e9,
        "gradients_bytes": 8.7e9,
        "optimizer_bytes": 13e9,
        "activations_bytes": 21.8e9,
    },
    "time_breakdown_s": {"compute_s": 7.0, "bubble_s": 1.2, "optimizer_s": 0.1, "overhead_s": 0.8},
    "exposed_comm_s": {"tp_scale_up_s": 0.5, "pp_s": 0.1, "dp_s": 0.3},
}
SERVE = {  # `chipforge serve --json`, plus a latency/throughput curve
    "plan": {"tp": 8, "pp": 1, "batch": 64},
    "throughput_tokens_per_s": 21000.0,
    "ttft_s": 0.41,
    "tpot_s": 0.031,
    "concurrency": 64,
    "breakdown_s": {"prefill": 0.04, "decode": 4.1},
    "memory_per_chip_bytes": {
        "capacity_bytes": 80e9,
        "weights_bytes": 2e9,
        "kv_cache_bytes": 60e9,
        "kv_bytes_per_token": 131072,
    },
    "curve": [
        {"batch": b, "throughput_tokens_per_s": 900.0 * b**0.8, "tpot_s": 0.02 + 2e-4 * b}
        for b in (1, 4, 16, 64, 128)
    ],
}
DATACENTER = {
    "chips": 32768,
    "racks": 512,
    "it_power_w": 4.1e7,
    "facility_power_w": 5.3e7,
    "capex_usd": {"chips": 8.2e8, "network": 1.1e8, "building": 4.3e8, "power": 2.0e8},
    "opex_usd_per_year": {"electricity": 4.5e7, "staff": 6e6, "maintenance": 2.4e7},
    "tco_usd_per_chip_hour": 1.42,
    "tornado": [
        {"name": "wafer price", "low": 1.31, "high": 1.55},
        {"name": "electricity price", "low": 1.38, "high": 1.47},
        {"name": "chip life (y)", "low": 1.7, "high": 1.25},
    ],
}
SWEEP = {
    "objectives": ["cost_usd", "time_s"],
    "rows": [
        {
            "pe": p,
            "sram_mb": s,
            "cost_usd": 900 + 3 * p + 8 * s,
            "time_s": 5e4 / (p * s**0.3),
            "pareto": s == 64,
        }
        for p in (64, 128, 256)
        for s in (16, 32, 64)
    ],
}


@lru_cache(maxsize=1)
def samples() -> dict[str, dict]:
    """One JSON dict per report kind (evaluate/compare/cost from the real engines)."""
    graph = parse_workload("gpt2")
    results = [estimate(graph, load_chip(c)).to_dict() for c in ("forge-n3", "h100")]
    return {
        "evaluate": results[0],
        "compare": {"workload": graph.name, "results": results},
        "cost": evaluate(load_chip("forge-n3")).to_dict(),
        "train": TRAIN,
        "serve": SERVE,
        "datacenter": DATACENTER,
        "sweep": SWEEP,
        "decide": _decide(),
    }


def _decide() -> dict:
    """`chipforge decide --json` of a small real scenario (64 samples)."""
    from chipforge.decide import analyse, scenario_from_dict

    sc = scenario_from_dict(
        {
            "scenario": {"start": "2026Q1", "end": "2028Q4"},
            "sites": [{"grid": "20MW", "online": "2026Q3"}, {"grid": "20MW", "online": "2028Q1"}],
            "workload": {"serve": [{"model": "llama3-8b", "tokens_per_day": "200G"}]},
        }
    )
    return analyse(sc, samples=64, sobol_base=16)


def chart_specs(page: str) -> list[dict]:
    return json.loads(
        re.search(r"var specs=(\[.*?\]);var done", page).group(1).replace("<\\/", "</")
    )


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_each_kind_has_charts_and_plotly_once(kind):
    page = render_report(kind, samples()[kind])
    assert page.count(get_plotlyjs()[:300]) == 1  # inlined, one copy
    assert not re.search(r"<script[^>]+src=", page)  # nothing fetched: works offline
    specs = chart_specs(page)
    assert specs and f'data-charts="{len(specs)}"' in page
    for s in specs:  # readable: a title and units on both axes (or a category axis of names)
        assert s["layout"]["title"]["text"]
        assert s["layout"]["xaxis"]["title"]["text"] or s["layout"]["yaxis"]["title"]["text"]
        assert all("hovertemplate" in t for t in s["data"])


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_missing_keys_never_crash(kind):
    assert "<table" in render_report(kind, {"chip": "x", "odd": {"nested": [1, 2]}})
    render_report(kind, {})
    render_report(kind, {"results": [{"ops": [{"name": "a"}]}], "rows": [{}], "curve": [{}]})


def test_roofline_places_each_op_from_the_result():
    r = samples()["evaluate"]
    roof = next(
        s for s in chart_specs(render_report("evaluate", r)) if s["id"].endswith("roofline")
    )
    ops = {o["name"]: o for o in r["ops"]}
    pts = roof["data"][0]
    for x, y, text in zip(pts["x"], pts["y"], pts["text"], strict=True):
        op = ops[text.split(" (")[0]]
        assert x == pytest.approx(op["flops"] / op["bytes"]["HBM3E"])
        assert y == pytest.approx(op["flops"] / op["time_s"] / 1e12, rel=1e-6)
    line = roof["data"][-1]  # the chip's roof: the spec's peak and bandwidth
    spec = load_chip("forge-n3")
    assert max(line["y"]) == pytest.approx(spec.peak_flops("bf16") / 1e12)
    assert line["y"][0] == pytest.approx(spec.hbm.bandwidth * line["x"][0] / 1e12)


def test_roofline_roof_is_the_workloads_dtype():
    """An int8 GEMM is placed under the int8 roof, not bf16's (the roof once ignored the dtype)."""
    from chipforge.perf import estimate
    from chipforge.workload.parse import parse_workload

    spec = load_chip("forge-n3")
    r = estimate(parse_workload("gemm:m=4096,n=4096,k=4096,dtype=int8"), spec).to_dict()
    roof = next(
        s for s in chart_specs(render_report("evaluate", r)) if s["id"].endswith("roofline")
    )
    line = roof["data"][-1]
    assert max(line["y"]) == pytest.approx(spec.peak_flops("int8") / 1e12)
    assert "int8" in line["name"] and spec.peak_flops("int8") > spec.peak_flops("bf16")


def test_plan_charts_from_their_categories():
    ids = {s["id"]: s for s in chart_specs(render_report("train", TRAIN))}
    mem = ids["s0_memory"]["data"][0]
    assert mem["y"] == ["weights", "gradients", "optimizer", "activations"]
    assert sum(mem["x"]) == pytest.approx(61.0)  # GB
    assert ids["s0_memory"]["layout"]["shapes"][0]["x0"] == pytest.approx(80.0)
    serve = {s["id"] for s in chart_specs(render_report("serve", SERVE))}
    assert {"s0_latency_throughput", "s0_memory", "s0_phases", "s0_latency"} <= serve


def test_per_layer_time_sums_to_total():
    r = samples()["evaluate"]
    layer = next(s for s in chart_specs(render_report("evaluate", r)) if "layer" in s["id"])
    assert sum(layer["data"][0]["x"]) * 1e-6 == pytest.approx(sum(o["time_s"] for o in r["ops"]))


def test_trace_link_and_bad_kind(tmp_path):
    page = render_report("evaluate", {**samples()["evaluate"], "trace": "t.json"})
    assert 'href="t.json"' in page and "ui.perfetto.dev" in page
    with pytest.raises(ChipforgeError, match="report kind"):
        render_report("nope", {})
    write_report(tmp_path / "a" / "r.html", "sweep", SWEEP)
    assert (tmp_path / "a" / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_png_charts(tmp_path):
    paths = write_pngs(tmp_path, "datacenter", DATACENTER)
    assert len(paths) == len(BUILDERS["datacenter"](DATACENTER)) >= 3
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def cli(*args: str) -> str:
    """Run a chipforge command in-process; its stdout (the JSON)."""
    done = CliRunner().invoke(app, list(args))
    assert done.exit_code == 0, f"{args}: {done.output}{done.exception!r}"
    return done.stdout


def check_trace(path, results: list[dict]) -> list[dict]:
    """A Chrome trace Perfetto loads: complete events with numeric ts/dur, ops end to end per
    chip (process), their durations summing to the Result's time."""
    events = json.loads(path.read_text())["traceEvents"]
    names = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert [n.split(":")[0] for _, n in sorted(names.items())] == [r["chip"] for r in results]
    for pid, r in enumerate(results, start=1):
        ops = [e for e in events if e["ph"] == "X" and e["pid"] == pid and e["tid"] == 1]
        assert [e["name"] for e in ops] == [o["name"] for o in r["ops"]]
        assert all(b["ts"] == pytest.approx(a["ts"] + a["dur"]) for a, b in pairwise(ops))
        assert sum(e["dur"] for e in ops) * 1e-6 == pytest.approx(r["time_s"])
        bounds = [e for e in events if e["ph"] == "X" and e["pid"] == pid and e["tid"] == 2]
        assert [e["name"] for e in bounds] == [o["bound"] for o in r["ops"]]
    return events


def test_cli_evaluate_html_png_and_trace(tmp_path):
    out = cli(
        "evaluate",
        "--chip",
        "h100",
        "--workload",
        "gpt2",
        "--json",
        "--html",
        str(tmp_path / "e.html"),
        "--png",
        str(tmp_path / "png"),
        "--trace",
        str(tmp_path / "traces" / "e.json"),
    )
    data = json.loads(out)
    assert data["chip"] == "h100"  # stdout stays pure JSON
    page = (tmp_path / "e.html").read_text()
    assert len(chart_specs(page)) == len(list((tmp_path / "png").glob("*.png")))
    assert 'href="traces/e.json"' in page  # relative to the page: the pair moves together
    check_trace(tmp_path / "traces" / "e.json", [data])


def test_cli_compare_trace_one_process_per_chip(tmp_path):
    html, trace = tmp_path / "c.html", tmp_path / "c.json"
    out = cli("compare", "--chip", "forge-n3,h100", "--workload", "gpt2", "--json",
              "--html", str(html), "--trace", str(trace))  # fmt: skip
    check_trace(trace, json.loads(out)["results"])
    assert 'href="c.json"' in html.read_text() and "one process per chip" in html.read_text()


def test_cli_cycle_engine_trace_is_the_simulators(tmp_path):
    trace = tmp_path / "t.json"
    cli("evaluate", "--chip", "forge-n3", "--engine", "cycle", "--json", "--trace", str(trace),
        "--html", str(tmp_path / "c.html"),
        "--workload", "llm:llama3-8b,phase=decode,batch=2,context=300,scope=layer")  # fmt: skip
    events = json.loads(trace.read_text())["traceEvents"]
    tracks = {e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    assert {"mxu 0 unit 0", "vpu 0", "dma 0"} <= tracks  # per engine, as `simulate --trace`
    assert "Cycle-level timeline" in (tmp_path / "c.html").read_text()


def test_real_datacenter_output_renders():
    pytest.importorskip("chipforge.cli.datacenter")
    out = cli("datacenter", "--chip", "forge-n3", "--sensitivity", "--json")
    page = render_report("datacenter", json.loads(out))
    ids = [s["id"] for s in chart_specs(page)]
    assert {"s0_capex", "s0_opex", "s0_tornado"} <= set(ids)
    tornado = next(s for s in chart_specs(page) if s["id"] == "s0_tornado")
    assert tornado["layout"]["xaxis"]["title"]["text"] == "USD per useful PFLOP hour"


def test_demo_writes_the_whole_story(tmp_path):
    page = tmp_path / "out" / "report.html"
    data = json.loads(cli("demo", "--json", "--html", str(page)))
    text = page.read_text()
    assert text.count(get_plotlyjs()[:300]) == 1  # one copy of plotly.js for all sections
    for sc in data["scenarios"]:
        assert sc["title"] in text
    assert all(f"Silicon cost: {c}" in text for c in data["chips"])
    assert len(chart_specs(text)) >= 4 * len(data["scenarios"]) + 3 * len(data["chips"])
    assert 'data-warnings="0"' in text
