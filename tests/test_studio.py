"""The studio's callbacks driven directly (no browser): each page's numbers are the public API's,
a bad field is named next to that field, uploads go through the safe loaders, the URL keeps the
state, and every route needs the token. The browser test is tests/test_studio_browser.py."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("dash", reason="the studio needs the `studio` extra (pip install dash)")

from dash import no_update  # noqa: E402

import chipforge as cf  # noqa: E402
from chipforge.errors import ChipforgeError  # noqa: E402
from chipforge.spec.loader import chip_from_dict  # noqa: E402
from chipforge.studio import app as pages  # noqa: E402
from chipforge.studio import compute  # noqa: E402
from chipforge.studio.server import make_app  # noqa: E402
from chipforge.units import fmt, parse_quantity  # noqa: E402

HF = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "num_hidden_layers": 2,
    "hidden_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 1024,
    "vocab_size": 1000,
    "max_position_embeddings": 512,
}
CUSTOM = [pages.CUSTOM_DEFAULT[k] for k in pages.CUSTOM_KEYS]
BASE = "preset:forge-n3"


def texts(component) -> list[str]:
    """Every string inside a Dash component tree, in order."""
    if component is None:
        return []
    if isinstance(component, str | int | float):
        return [str(component)]
    if isinstance(component, list | tuple):
        return [t for c in component for t in texts(c)]
    return texts(getattr(component, "children", None))


def form(**edits) -> list[str]:
    values = compute.form_values(cf.load_chip("forge-n3"))
    assert set(edits) <= set(values), set(edits) - set(values)
    values.update(edits)
    return [values[f] for f in compute.FIELD_IDS]


def data_url(payload: bytes, mime: str = "application/json") -> str:
    return f"data:{mime};base64," + base64.b64encode(payload).decode()


def test_chip_page_numbers_are_the_api_s_and_follow_the_clock():
    chip, error, figures, *errs = pages.chip_update(BASE, *form(clock="2.8 GHz"))
    assert error == "" and not any(errs)
    spec = cf.load_chip("forge-n3").model_copy(update={"clock": 2.8e9})
    shown = dict(zip(texts(figures)[::2], texts(figures)[1::2], strict=True))
    assert shown["peak bf16"] == fmt(spec.peak_flops("bf16"), "flop_rate")
    assert spec.peak_flops("bf16") == 2 * cf.load_chip("forge-n3").peak_flops("bf16")
    assert shown["unit cost"] == f"{cf.cost(spec).to_dict()['unit_cost_usd']:,.0f} USD"
    assert chip["clock"] == 2.8e9


@pytest.mark.parametrize(
    ("field", "text", "named"),
    [
        ("clock", "fast", "`clock`"),
        ("hbm-bandwidth", "-3 TB/s", "`memory.0.bandwidth`"),
        ("mem1-capacity", "3 W", "`memory.1.capacity`"),
        ("mem1-per-core", "maybe", "`memory.1.per_core`"),
        ("hbm-energy", "3 W", "`memory.0.energy_per_byte`"),
        ("mem3-name", "regs", "`memory.3.kind` is required"),  # a level added: its fields
        ("link-latency", "5 W", "`links.0.latency`"),
        ("idle-power", "-1 W", "`idle_power`"),
        ("vector-flops", "0", "`vector.flops_per_cycle`"),
        ("matrix-dataflow", "diagonal", "`matrix.dataflow`"),
        ("cores", "x", "`cores`"),
        ("matrix-macs", "bf16=lots", "`matrix.macs_per_cycle.bf16`"),
        ("matrix-block-scaled", "mxfp8, fp3", "`matrix.block_scaled.1`"),
        ("node", "n1", "`node`"),
    ],
)
def test_a_bad_field_is_named_next_to_it(field, text, named):
    chip, error, _, *errs = pages.chip_update(BASE, *form(**{field: text}))
    assert chip is None
    by_field = dict(zip(compute.FIELD_IDS, errs, strict=True))
    if field == "mem3-name":  # the new level's missing fields, each under its own
        assert named in by_field["mem3-kind"]
        assert [f for f, e in by_field.items() if e] == ["mem3-kind", "mem3-capacity",
                                                         "mem3-bandwidth"]  # fmt: skip
        return
    assert named in by_field[field], by_field
    assert [f for f, e in by_field.items() if e] == [field]


def test_the_block_scaled_formats_are_typed_as_a_list():
    chip, error, _, *errs = pages.chip_update(
        BASE, *form(**{"matrix-block-scaled": "mxfp8, nvfp4"})
    )
    assert error == "" and not any(errs)
    assert chip["matrix"]["block_scaled"] == ["mxfp8", "nvfp4"]
    shown = compute.form_values(cf.load_chip("b200"))["matrix-block-scaled"]
    assert shown and "mxfp8" in shown


def test_the_form_has_every_field_of_the_spec():
    from chipforge.spec.models import ChipSpec, Link, MatrixUnit, MemoryLevel, VectorUnit

    paths = {tuple(p for p in f.path if not isinstance(p, int)) for f in compute.FIELDS}
    for model, at in ((ChipSpec, ()), (MatrixUnit, ("matrix",)), (VectorUnit, ("vector",)),
                      (MemoryLevel, ("memory",)), (Link, ("links",))):  # fmt: skip
        for name in model.model_fields:
            if name not in ("matrix", "vector", "memory", "links"):
                assert (*at, name) in paths, (*at, name)


def test_memory_levels_and_links_are_added_and_removed_in_the_form():
    """A named empty section adds a level or link (blank optional fields: the spec's
    defaults); a cleared name removes one (the ones after it move up), an unnamed section is
    none; a bad value after a removed level and a chip without its off-chip memory are each
    named under the form field they belong to."""
    regs = {"mem2-name": "regs", "mem2-kind": "sram", "mem2-capacity": "256 KiB",
            "mem2-bandwidth": "400 TB/s", "mem2-per-core": "true"}  # fmt: skip
    nic = {"link1-name": "NIC", "link1-bandwidth": "50 GB/s"}
    chip, error, figures, *errs = pages.chip_update(BASE, *form(**regs, **nic))
    assert error == "" and not any(errs), [e for e in errs if e]
    spec = chip_from_dict(chip, "chip")
    base = cf.load_chip("forge-n3")
    assert spec.memory[:2] == base.memory and len(spec.memory) == 3
    added = spec.memory[2]
    typed = ("regs", "sram", 256 * 2**10, 400e12)
    assert (added.name, added.kind, added.capacity, added.bandwidth) == typed
    assert added.per_core and not added.holds_activations  # typed; blank: the default
    assert spec.links[0] == base.links[0]
    assert (spec.links[1].name, spec.links[1].bandwidth, spec.links[1].ports,
            spec.links[1].latency) == ("NIC", 50e9, 1, 1e-6)  # fmt: skip
    # the new SRAM counts: more on-chip bytes, a larger die in the derived figures
    assert spec.onchip_bytes == base.onchip_bytes + 256 * 2**10 * base.cores
    area = [dict(zip(t[::2], t[1::2], strict=True))["die area"]
            for t in (texts(figures), texts(pages.chip_update(BASE, *form())[2]))]  # fmt: skip
    assert area[0] != area[1]
    assert pages.chip_download(1, chip)["content"].count("[[memory]]") == 3
    # removed: level 1's name cleared, the added level 2 moves up; the link's name cleared
    gone = pages.chip_update(BASE, *form(**regs, **{"mem1-name": "", "link-name": ""}))[0]
    spec = chip_from_dict(gone, "chip")
    assert [m.name for m in spec.memory] == ["HBM3E", "regs"] and spec.links == ()
    # a bad value on the moved level is named under the form's field (level 2), not level 1
    bad = {**regs, "mem1-name": "", "mem2-capacity": "-1 KiB"}
    chip, _, _, *errs = pages.chip_update(BASE, *form(**bad))
    by_field = {f: e for f, e in zip(compute.FIELD_IDS, errs, strict=True) if e}
    assert chip is None and list(by_field) == ["mem2-capacity"]
    assert "`memory.2.capacity`" in by_field["mem2-capacity"]
    # a section without a name is no level: its other values are left out
    chip = pages.chip_update(BASE, *form(**{**regs, "mem2-name": ""}))[0]
    assert chip_from_dict(chip, "chip") == base
    # the off-chip memory removed: the spec's rule, under the first level's name
    chip, _, _, *errs = pages.chip_update(BASE, *form(**{"hbm-name": ""}))
    by_field = {f: e for f, e in zip(compute.FIELD_IDS, errs, strict=True) if e}
    assert chip is None and "must start with the off-chip memory" in by_field["hbm-name"]
    # a shared URL keeps the added level
    fields = dict(zip(compute.FIELD_IDS, form(**regs), strict=True))
    state = pages.initial_state(pages.query_of("chip", BASE, fields, [], {}))
    assert state["fields"]["mem2-name"] == "regs"


def test_every_bad_field_is_named_at_once():
    chip, error, _, *errs = pages.chip_update(BASE, *form(clock="fast", cores="0", tdp="9 GB"))
    by_field = {f: e for f, e in zip(compute.FIELD_IDS, errs, strict=True) if e}
    assert set(by_field) == {"clock", "cores", "tdp"}
    assert "`cores` must be > 0" in by_field["cores"] and "`tdp`" in by_field["tdp"]


def test_run_page_equals_evaluate_and_moves_with_the_clock():
    wl = "llama3-8b,phase=prefill,batch=1,seq=2048"
    speeds = []
    for clock in ("1.4 GHz", "2.8 GHz"):
        chip = pages.chip_update(BASE, *form(clock=clock))[0]
        err, head, table, graphs = pages.run_update(
            chip, "llama3-8b", None, "prefill", "1", "2048", "2048", ["h100", "b200"], *CUSTOM
        )
        assert err == ""
        spec = cf.load_chip("forge-n3").model_copy(
            update={"clock": parse_quantity(clock, "frequency")}
        )
        mine, h100 = cf.evaluate(spec, wl), cf.evaluate("h100", wl)
        assert f"{h100.time_s / mine.time_s:.3g}x the H100" in head
        cells = texts(table)
        assert fmt(mine.time_s, "time") in cells and fmt(h100.time_s, "time") in cells
        assert {g.id for g in graphs} >= {"run-roofline", "run-time_per_chip"}
        speeds.append(h100.time_s / mine.time_s)
    assert speeds[1] > speeds[0] * 1.3  # prefill is compute-bound: a faster clock shows


def test_cycle_button_runs_one_layer_on_the_cycle_engine():
    chip = pages.chip_update(BASE, *form())[0]
    table, trace = pages.cycle_run(1, chip, "custom", None, "decode", "4", "512", "256",
                                   "2", "256", "4", "2", "1024", "1000")  # fmt: skip
    wl = "llm:custom,name=custom,layers=1,hidden=256,heads=4,kv_heads=2,ffn=1024,vocab=1000,"
    want = cf.evaluate("forge-n3", wl + "phase=decode,batch=4,context=256", engine="cycle")
    assert fmt(want.time_s, "time") in texts(table)
    names = {e["name"] for e in trace["traceEvents"] if e.get("ph") == "X"}
    assert {op.name for op in want.ops} <= names
    out = pages.cycle_download(1, trace)
    assert json.loads(out["content"]) == trace


def test_custom_model_and_uploaded_config_run_like_the_cli(tmp_path):
    chip = pages.chip_update(BASE, *form())[0]
    key, msg = pages.config_upload(data_url(json.dumps(HF).encode()))
    assert key and "2 layers" in msg
    (tmp_path / "config.json").write_text(json.dumps(HF))
    want = cf.evaluate("forge-n3", f"{tmp_path / 'config.json'},phase=decode,batch=4,context=256")
    _, head, table, _ = pages.run_update(
        chip, "llama3-8b", key, "decode", "4", "512", "256", [], *CUSTOM
    )
    assert fmt(want.time_s, "time") in texts(table)
    custom = ["2", "256", "4", "2", "1024", "1000"]
    _, _, table, _ = pages.run_update(
        chip, "custom", None, "decode", "4", "512", "256", [], *custom
    )
    assert fmt(want.time_s, "time") in texts(table)  # the same transformer, typed in
    err, *_ = pages.run_update(
        chip, "custom", None, "decode", "4", "512", "256", [], "", *custom[1:]
    )
    assert "`model.layers`" in err


def test_uploads_are_checked_by_the_safe_loaders():
    key, msg = pages.config_upload(data_url(b"{not json"))
    assert key is None and "not valid JSON" in texts(msg)[0]
    big = "data:application/json;base64," + "A" * (compute.MAX_TEXT_BYTES * 4 // 3 + 8)
    key, msg = pages.config_upload(big)
    assert key is None and "capped" in texts(msg)[0]
    toml = compute.chip_toml(cf.load_chip("tpu-v7")).replace('name = "tpu-v7"', 'name = "mine"')
    upload = data_url(toml.encode(), "text/plain")
    base, msg, page, *values = pages.chip_source(None, upload, None, "chip-upload")
    assert page is no_update
    assert base.startswith("upload:") and msg == "loaded mine"
    spec = cf.load_chip("tpu-v7").model_copy(update={"name": "mine"})
    assert compute.build_chip(base, dict(zip(compute.FIELD_IDS, values, strict=True)))[0] == spec
    bad = toml.replace("cores = ", "cores = -")
    base, msg, *_ = pages.chip_source(
        None, data_url(bad.encode(), "text/plain"), None, "chip-upload"
    )
    assert "`cores`" in msg
    with pytest.raises(ChipforgeError):
        compute.base_chip("preset:/etc/passwd")  # a path is never a preset


def test_download_round_trips_through_the_chip_loader(tmp_path):
    chip = pages.chip_update(BASE, *form(clock="2 GHz", cores="8", tdp="900 W"))[0]
    out = pages.chip_download(1, chip)
    path = tmp_path / out["filename"]
    path.write_text(out["content"])
    spec = cf.load_chip(path)
    assert spec == cf.load_chip("forge-n3").model_copy(
        update={"clock": 2e9, "cores": 8, "tdp": 900.0}
    )
    assert tomllib.loads(out["content"])["clock"] == 2e9


def test_every_field_edits_and_the_name_follows_the_form(tmp_path):
    """Fields beyond the main ones (memory levels, vector unit, energies, idle power, links):
    each reaches the chip, in its units; the chip's name is what the name field says."""
    edits = dict(
        name="my-chip", vendor="me", year="2027", family="asic", notes="a note",
        **{"idle-power": "75 W", "physical-cores": "10", "matrix-dataflow": "output-stationary",
           "matrix-double-buffered": "false", "vector-count": "2", "vector-flops": "256",
           "vector-trans": "32", "hbm-name": "HBM4", "hbm-energy": "4 pJ/B", "hbm-stacks": "8",
           "mem1-capacity": "64 MiB", "mem1-holds": "true", "mem1-energy": "0.5 pJ/B",
           "link-latency": "2 us", "link-name": "ICI"},
    )  # fmt: skip
    chip, error, _, *errs = pages.chip_update(BASE, *form(**edits))
    assert error == "" and not any(errs), [e for e in errs if e]
    spec = chip_from_dict(chip, "chip")
    assert (spec.name, spec.vendor, spec.year, spec.family) == ("my-chip", "me", 2027, "asic")
    assert spec.idle_power == 75 and spec.physical_cores == 10 and spec.notes == "a note"
    assert spec.matrix.dataflow == "output-stationary" and not spec.matrix.double_buffered
    assert (spec.vector.count, spec.vector.flops_per_cycle) == (2, 256)
    assert spec.vector.transcendentals_per_cycle == 32
    hbm, sram = spec.memory
    assert (hbm.name, hbm.energy_per_byte, hbm.stacks) == ("HBM4", 4e-12, 8)
    assert sram.capacity == 64 * 2**20 and sram.holds_activations
    assert sram.energy_per_byte == 0.5e-12
    assert (spec.links[0].latency, spec.links[0].name) == (2e-6, "ICI")
    # blank optional fields fall back to the spec's defaults
    chip = pages.chip_update(BASE, *form(**{"hbm-energy": "", "idle-power": ""}))[0]
    assert chip["memory"][0]["energy_per_byte"] is None and chip["idle_power"] is None
    # the Run page shows the typed name, the energies move the energy
    mine = pages.chip_update(BASE, *form(name="my-chip", **{"hbm-energy": "40 pJ/B"}))[0]
    wl = "llama3-8b,phase=decode,batch=8,context=2048"
    shown = compute.run(chip_from_dict(mine, "chip"), wl, ["h100"])["results"][0]
    assert shown["chip"] == "my-chip"
    assert shown["energy_j"] > cf.evaluate("forge-n3", wl).energy_j
    out = pages.chip_download(1, mine)
    assert out["filename"] == "my-chip.toml" and 'name = "my-chip"' in out["content"]


def test_cluster_silicon_and_site_pages_equal_the_api():
    chip = pages.chip_update(BASE, *form())[0]
    spec = cf.load_chip("forge-n3")
    err, table, graphs = pages.train_update(
        chip, "llama3-8b", None, "16", "2048", "1", "1", "bf16", "", [], *CUSTOM
    )
    plan = cf.plan_training(spec, "llama3-8b", 16, seq=2048, tp=1, pp=1)
    assert err == "" and f"{plan.mfu:.1%}" in texts(table) and graphs
    err, table, graphs = pages.serve_update(
        chip, "llama3-8b", None, "2", "1024", "128", "bf16", [], "", "", "", "", *CUSTOM
    )
    plan = cf.plan_serving(spec, "llama3-8b", 2, isl=1024, osl=128)
    assert err == "" and f"{plan.throughput_tokens_per_s:,.0f} tokens/s" in texts(table)
    err, table, graphs = pages.silicon_update(chip, "n2")
    assert err == "" and f"{cf.cost(spec, 'n2').unit_cost_usd:,.0f} USD" in texts(table)
    by_node = next(g.figure["data"][0] for g in graphs if g.id == "silicon-node_cost")
    for node, usd in zip(by_node["y"], by_node["x"], strict=True):
        assert usd == pytest.approx(cf.cost(spec, node).unit_cost_usd)
    assert {"n7", "n3p", "n2"} <= set(by_node["y"])
    # sensitivity: the silicon model's unit cost at each input's ends, drawn as the report's
    # tornado around the design's cost on that node
    from chipforge.silicon import node_named, unit_cost

    n2 = node_named("n2")
    on_n2 = spec.model_copy(update={"node": "n2"})
    bars = {t["name"]: t for t in next(g for g in graphs if g.id == "silicon-cost_tornado")
            .figure["data"]}  # fmt: skip
    low, high = bars["low input"], bars["high input"]
    assert low["base"] == pytest.approx(cf.cost(spec, "n2").unit_cost_usd)
    at = dict(zip(low["y"], low["customdata"], strict=True))
    wafer = next(k for k in at if k.startswith("wafer price"))
    want = unit_cost(on_n2, node=n2, wafer_price_usd=n2.wafer_price_low_usd).unit_cost
    assert at[wafer] == pytest.approx(want) and want < low["base"]
    d0 = next(k for k in at if k.startswith("defect density"))
    hi = dict(zip(high["y"], high["customdata"], strict=True))
    worse = unit_cost(on_n2, node=n2, defect_density_per_cm2=1.5 * n2.defect_density_per_cm2)
    assert hi[d0] == pytest.approx(worse.unit_cost) and hi[d0] > low["base"]
    cores = next(k for k in at if k.startswith("cores"))
    more = spec.model_copy(update={"cores": round(spec.cores * 1.25)})
    assert hi[cores] == pytest.approx(cf.cost(more, "n2").unit_cost_usd)
    assert any(k.startswith("HBM price") for k in at)
    err, table, _ = pages.site_update(chip, BASE, "100 MW")
    assert err == "" and f"{cf.site('forge-n3', '100MW')['chips']:,}" in texts(table)
    edited = pages.chip_update(BASE, *form(tdp="700 W"))[0]
    err, table, _ = pages.site_update(edited, BASE, "100 MW")
    assert err == "" and f"{cf.site('forge-n3', '100MW')['chips']:,}" not in texts(table)
    err, *_ = pages.train_update(chip, "llama3-8b", None, "0", "2048", "1", "1", "bf16", "", [],
                                 *CUSTOM)  # fmt: skip
    assert "`chips`" in err
    err, *_ = pages.site_update(chip, BASE, "lots")
    assert "power" in err


SCENARIO = Path(__file__).resolve().parent.parent / "examples" / "decide" / "forge_vs_gb200.toml"


def test_decision_page_equals_build_or_buy():
    chip = pages.chip_update(BASE, *form())[0]
    err, table, graphs = pages.decide_update(SCENARIO, chip, BASE, ["chip"], "256", [])
    want = cf.build_or_buy(SCENARIO, samples=256, sobol=False)
    assert err == "" and want["verdict"] in texts(table) and graphs
    assert f"{want['probability_build_cheaper']:.0%}" in texts(table)
    err, *_ = pages.decide_update(None, chip, BASE, ["chip"], "256", [])
    assert "--scenario" in err
    err, *_ = pages.decide_update(SCENARIO, chip, BASE, ["chip"], "7", [])
    assert "`samples`" in err


SPACE = """
[base]
chip = "forge-n3"
[params]
clock = ["1.0 GHz", "2.0 GHz"]
cores = [2, 4]
[[workloads]]
spec = "llm:llama3-8b,phase=decode,batch=8"
weight = 1
[objectives]
tokens_per_s = "max"
unit_cost_usd = "min"
"""


def test_sweep_page_shows_the_front_and_a_click_opens_the_point_s_chip(tmp_path):
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    cf.sweep(space, tmp_path / "store", workers=1)
    sweep = (space, tmp_path / "store")
    err, fig, table = pages.sweep_update(sweep)
    front = [t for t in fig["data"] if t["name"] == "Pareto front"][0]
    assert err == "" and len(front["x"]) >= 2
    # the point with the most tokens/s: 2 GHz, 4 cores (the base forge-n3 at 2 GHz)
    i = max(range(len(front["x"])), key=lambda j: front["x"][j])
    click = {"points": [{"x": front["x"][i], "y": front["y"][i]}]}
    base, msg, page, *values = pages.chip_source(None, None, click, "sweep-pareto", sweep)
    assert page == "chip" and base.startswith("upload:")
    spec = compute.build_chip(base, dict(zip(compute.FIELD_IDS, values, strict=True)))[0]
    assert spec == cf.load_chip("forge-n3").model_copy(update={"clock": 2e9, "cores": 4})
    want = cf.evaluate(spec, "llama3-8b,phase=decode,batch=8").to_dict()["tokens_per_s"]
    assert front["x"][i] == pytest.approx(want, rel=1e-9)
    err, *_ = pages.sweep_update((None, None))
    assert "--space" in err


@pytest.mark.parametrize("page", ["chip", "run", "cluster", "silicon", "site"])
def test_a_page_exports_as_the_cli_s_report(page):
    chip = pages.chip_update(BASE, *form(clock="2 GHz"))[0]
    controls = [pages.DEFAULTS[k] for k in pages.CONTROLS]
    out, err = pages.export("json", page, chip, BASE, ["h100"], None, ["chip"], [], *controls)
    assert err == ""
    data = json.loads(out["content"])
    spec = cf.load_chip("forge-n3").model_copy(update={"clock": 2e9})
    if page == "run":
        wl = "llama3-8b,phase=decode,batch=8,context=2048"
        assert data["results"][0]["time_s"] == pytest.approx(cf.evaluate(spec, wl).time_s)
        assert [r["chip"] for r in data["results"]] == ["forge-n3", "h100"]
    if page in ("chip", "silicon"):
        assert data["unit_cost_usd"] == pytest.approx(cf.cost(spec).to_dict()["unit_cost_usd"])
    if page == "cluster":
        assert set(data) == {"train", "serve"}
    out, err = pages.export("html", page, chip, BASE, ["h100"], None, ["chip"], [], *controls)
    assert err == "" and out["filename"] == f"studio-{page}.html"
    assert 'class="report_warning"' not in out["content"] and "Plotly" in out["content"]


def test_the_url_keeps_the_state():
    fields = dict(zip(compute.FIELD_IDS, form(clock="2 GHz"), strict=True))
    controls = {k: pages.DEFAULTS[k] for k in pages.CONTROLS} | {"batch": "32", "model": "gpt2"}
    q = pages.query_of("run", "preset:forge-n3", fields, ["h100"], controls)
    assert "f-clock=2+GHz" in q and "batch=32" in q and "f-cores" not in q
    s = pages.initial_state(q)
    assert s["page"] == "run" and s["fields"]["clock"] == "2 GHz" and s["batch"] == "32"
    assert s["model"] == "gpt2" and s["vs"] == ["h100"]
    hostile = pages.initial_state("?chip=/etc/passwd&model=../../x&page=<script>&vs=a,h100")
    assert hostile["chip"] == "forge-n3" and hostile["model"] == "llama3-8b"
    assert hostile["page"] == "chip" and hostile["vs"] == ["h100"]


def test_a_saved_state_file_reopens_the_state():
    fields = dict(zip(compute.FIELD_IDS, form(clock="2 GHz"), strict=True))
    controls = {k: pages.DEFAULTS[k] for k in pages.CONTROLS} | {"batch": "32"}
    q = pages.query_of("run", "preset:h100", fields, ["b200"], controls)
    saved = pages.state_save(1, q)
    href, err = pages.state_load(data_url(saved["content"].encode()))
    assert err == "" and href == "./" + q
    href, err = pages.state_load(data_url(b'{"query": "?chip=h100"}'))
    assert href is no_update and "not a studio state file" in err
    href, err = pages.state_load(data_url(b"[[[["))
    assert href is no_update and "not valid JSON" in err


def test_uploaded_files_travel_in_the_url_and_the_state_file(monkeypatch):
    """An uploaded chip TOML and config.json are part of the shareable state: a URL carries
    them compressed (opened by another studio, which never received them), a saved state file
    carries their text; both are read back by the bounded loaders, and a bad one is dropped."""
    toml = compute.chip_toml(cf.load_chip("tpu-v7")).replace('name = "tpu-v7"', 'name = "mine"')
    base, *_ = pages.chip_source(None, data_url(toml.encode(), "text/plain"), None, "chip-upload")
    config = HF
    key, _ = pages.config_upload(data_url(json.dumps(config).encode()))
    spec = cf.load_chip("tpu-v7").model_copy(update={"name": "mine"})
    fields = compute.form_values(spec) | {"clock": "2 GHz"}
    controls = {k: pages.DEFAULTS[k] for k in pages.CONTROLS}
    q = pages.query_of("run", base, fields, ["h100"], controls, key)
    assert "chipz=" in q and "configz=" in q and "f-clock=2+GHz" in q and len(q) < 3000
    saved = pages.state_save(1, q, base, key)
    assert json.loads(saved["content"])["files"] == {"chip": toml, "config": json.dumps(config)}

    monkeypatch.setattr(compute, "_UPLOADS", {})  # another studio: it never got the files
    st = pages.initial_state(q)
    got, errors = compute.build_chip(st["base"], st["fields"])
    assert not errors and got == spec.model_copy(update={"clock": 2e9})
    assert cf.load_model(compute.upload_path(st["config"])).layers == HF["num_hidden_layers"]
    href, err = pages.state_load(data_url(saved["content"].encode()))
    assert err == "" and "chipz=" in href and "configz=" in href
    st = pages.initial_state(href[2:])
    assert compute.build_chip(st["base"], st["fields"])[0] == got

    # too big for a URL: named by its key, which only this studio knows
    big = toml.replace('notes = ""', 'notes = "' + "".join(f"{i:x}" for i in range(3000)) + '"')
    base, *_ = pages.chip_source(None, data_url(big.encode(), "text/plain"), None, "chip-upload")
    q = pages.query_of("chip", base, compute.form_values(compute.base_chip(base)), [], controls)
    assert "chipkey=" in q and "chipz" not in q
    assert pages.initial_state(q)["base"] == base
    monkeypatch.setattr(compute, "_UPLOADS", {})
    assert pages.initial_state(q)["base"] == "preset:forge-n3"  # not here: the default
    # hostile links and state files: dropped, or one line naming what is wrong
    for bad in (
        "chipz=!!!",
        "chipz=" + "A" * 5000,
        "chipkey=../../etc/passwd",
        "chipz=" + compute.base64.urlsafe_b64encode(compute.zlib.compress(b"[[x")).decode(),
    ):
        assert pages.initial_state("?" + bad)["base"] == "preset:forge-n3"
    state = {pages.STATE_KEY: 1, "query": "", "files": {"chip": "cores = -1"}}
    href, err = pages.state_load(data_url(json.dumps(state).encode()))
    assert href is no_update and "`" in err
    state["files"] = {"../x": "a"}
    assert "files" in pages.state_load(data_url(json.dumps(state).encode()))[1]


def test_every_route_needs_the_token():
    client = make_app("s3cret-token").server.test_client()
    assert client.get("/s3cret-token/").status_code == 200
    assert client.get("/s3cret-token/_dash-layout").status_code == 200
    for path in ("/", "/_dash-layout", "/wrong/_dash-layout", "/s3cret-tokenX/", "/static/x"):
        assert client.get(path).status_code == 403, path
    assert client.post("/_dash-update-component", json={}).status_code == 403


def test_the_command_prints_a_local_url_and_refuses_without_the_token():
    src = str(Path(__file__).resolve().parent.parent / "src")
    proc = subprocess.Popen(
        [sys.executable, "-m", "chipforge", "studio"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"},
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("chipforge studio: http://127.0.0.1:"), line
        url = line.split(": ", 1)[1].strip()
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200
        root = url.rsplit("/", 2)[0] + "/"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(root, timeout=10)
        assert e.value.code == 403
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_another_host_must_be_asked_for_and_warns(monkeypatch):
    from typer.testing import CliRunner

    import chipforge.studio.server as server
    from chipforge.cli import app

    class Fake:
        def serve_forever(self):
            pass

        def server_close(self):
            pass

    seen = {}

    def fake(host, port, scenario=None, sweep=None):
        seen["host"] = host
        return Fake(), f"http://{host}:1/t/"

    monkeypatch.setattr(server, "make_server", fake)
    out = CliRunner().invoke(app, ["studio", "--host", "0.0.0.0"])
    assert out.exit_code == 0 and seen["host"] == "0.0.0.0"
    assert "warning: --host 0.0.0.0" in out.stderr
    out = CliRunner().invoke(app, ["studio"])
    assert seen["host"] == "127.0.0.1" and "warning" not in out.stderr
    monkeypatch.undo()
    out = CliRunner().invoke(app, ["studio", "--host", "203.0.113.5"])  # not this machine's
    assert out.exit_code != 0 and "cannot listen on 203.0.113.5" in str(out.exception)


def test_uploads_are_written_whole_and_a_file_in_use_is_not_evicted(monkeypatch, tmp_path):
    """An upload is written to a temp file and renamed (a failed write leaves no part of it);
    past MAX_UPLOADS the least recently used file goes only when no request used it in the
    last IN_USE_S seconds (a request in another thread may still read a path it was given);
    otherwise the new upload is refused in one line and the kept files stay."""
    import os
    import time

    monkeypatch.setattr(compute, "_UPLOADS", {})
    monkeypatch.setattr(compute, "_UPLOAD_DIR", tmp_path)
    monkeypatch.setattr(compute, "MAX_UPLOADS", 2)
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])

    def fail(*_):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(os, "replace", fail)
        with pytest.raises((OSError, ChipforgeError)):
            compute.keep(b"half", "config")
    assert not list(tmp_path.rglob("config.json")) and compute._UPLOADS == {}

    a, b = compute.keep(b"a", "config"), compute.keep(b"b", "config")
    path_a = compute.upload_path(a)  # a request holds a's path: b is now the older
    clock[0] += 10
    with pytest.raises(ChipforgeError, match="used in the last"):
        compute.keep(b"c", "config")
    assert path_a.read_bytes() == b"a" and compute._UPLOADS[b].path.read_bytes() == b"b"
    clock[0] += compute.IN_USE_S
    c = compute.keep(b"c", "config")  # b (least recently used, idle) goes
    assert set(compute._UPLOADS) == {a, c} and not compute._UPLOADS.get(b)
    assert compute.upload_path(c).read_bytes() == b"c"


def test_the_serving_controls_are_serves_flags():
    """The Cluster page's serving tp, pp, SLOs and switches are read by `serve`'s own parser
    (cluster.serve_options): the API's plan, and the command's refusals, in one line."""
    chip = pages.chip_update(BASE, *form())[0]
    spec = cf.load_chip("forge-n3")
    err, table, _ = pages.serve_update(chip, "llama3-8b", None, "2", "1024", "128", "bf16",
                                       ["decode_pool"], "2", "", "", "50 ms", *CUSTOM)  # fmt: skip
    plan = cf.plan_serving(spec, "llama3-8b", 2, isl=1024, osl=128, tp=2, tpot_slo=0.05,
                           disaggregated="decode")  # fmt: skip
    plain = cf.plan_serving(spec, "llama3-8b", 2, isl=1024, osl=128)
    assert err == "" and f"{plan.throughput_tokens_per_s:,.0f} tokens/s" in texts(table)
    assert f"{plain.throughput_tokens_per_s:,.0f} tokens/s" not in texts(table)
    pools = ["decode_pool", "prefill_pool"]
    err, *_ = pages.serve_update(chip, "llama3-8b", None, "2", "1024", "128", "bf16", pools,
                                 "", "", "", "", *CUSTOM)  # fmt: skip
    assert "`decode_pool` and `prefill_pool`" in err and "give one of them" in err
    assert set(compute.SERVE_OPTIONS) >= {"ep_overlap", "sustained_clock", "decode_pool"}
    controls = {k: pages.DEFAULTS[k] for k in pages.CONTROLS} | {"stp": "2", "tpot": "50 ms"}
    fields = dict(zip(compute.FIELD_IDS, form(), strict=True))
    s = pages.initial_state(pages.query_of("cluster", BASE, fields, [], controls))
    assert s["stp"] == "2" and s["tpot"] == "50 ms"


def test_the_cluster_page_s_run_options_reach_the_api():
    """The Cluster page's precision, recompute and run-option controls are the API's keywords
    (`chipforge train` / `serve` flags of the same names), kept in the URL like every control."""
    chip = pages.chip_update(BASE, *form())[0]
    spec = cf.load_chip("forge-n3")
    opts = ["tp_overlap", "overlap_param_gather"]
    err, table, _ = pages.train_update(chip, "llama3-8b", None, "16", "2048", "2", "1", "fp8",
                                       "full", opts, *CUSTOM)  # fmt: skip
    run = {"dtype": "fp8", "recompute": "full", "tp_overlap": True, "overlap_param_gather": True}
    plan = cf.plan_training(spec, "llama3-8b", 16, seq=2048, tp=2, pp=1, **run)
    plain = cf.plan_training(spec, "llama3-8b", 16, seq=2048, tp=2, pp=1)
    assert err == "" and f"{plan.tokens_per_s:,.0f}" in texts(table)
    assert f"{plain.tokens_per_s:,.0f}" not in texts(table)
    err, table, _ = pages.serve_update(chip, "llama3-8b", None, "2", "1024", "128", "fp8", [],
                                       "", "", "", "", *CUSTOM)  # fmt: skip
    plan = cf.plan_serving(spec, "llama3-8b", 2, isl=1024, osl=128, dtype="fp8")
    assert err == "" and f"{plan.throughput_tokens_per_s:,.0f} tokens/s" in texts(table)
    err, *_ = pages.train_update(chip, "llama3-8b", None, "16", "2048", "1", "1", "fp9", "", [],
                                 *CUSTOM)  # fmt: skip
    assert "`dtype` must be one of bf16, fp8, fp4" in err
    err, *_ = pages.train_update(chip, "llama3-8b", None, "16", "2048", "1", "1", "bf16", "",
                                 ["fp8_param_gather"], *CUSTOM)  # fmt: skip
    assert '`fp8_param_gather` needs dtype = "fp8"' in err  # as a scenario's key is refused
    controls = {k: pages.DEFAULTS[k] for k in pages.CONTROLS} | {"topts": opts, "trec": "full"}
    fields = dict(zip(compute.FIELD_IDS, form(), strict=True))
    s = pages.initial_state(pages.query_of("cluster", BASE, fields, [], controls))
    assert s["topts"] == "tp_overlap,overlap_param_gather" and s["trec"] == "full"
