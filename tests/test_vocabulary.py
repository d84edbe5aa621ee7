"""One model vocabulary and one chip vocabulary: every spelling of a model resolves through
`resolve_model` to the same shapes, and every command that names a model takes every spelling."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from chipforge.cli import app
from chipforge.errors import WorkloadError
from chipforge.workload import load_model, parse_workload, resolve_model
from chipforge.workload.config import ModelConfig

CUSTOM = "name=tiny,layers=2,hidden=256,heads=4,kv_heads=2,ffn=1024,vocab=1000,seq=512"
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


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "tiny"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(HF))
    return d


def _shape(c: ModelConfig) -> tuple:
    # a config.json also counts its norms (`other_params`), which a preset or llm:custom leaves out
    matrices = c.params() - c.other_params
    return (c.layers, c.hidden, c.heads, c.n_kv_heads, c.ffn, c.vocab, c.seq, matrices)


def test_every_spelling_resolves_to_the_same_model(folder):
    want = _shape(resolve_model(f"llm:custom,{CUSTOM}"))
    assert _shape(resolve_model(f"custom,{CUSTOM}")) == want
    assert _shape(resolve_model(str(folder / "config.json"))) == want
    assert _shape(resolve_model(str(folder))) == want
    assert resolve_model(str(folder)).name == "tiny"
    # a preset with overrides equals the preset with the field replaced
    assert resolve_model("llm:llama3-8b,layers=4").params() < load_model("llama3-8b").params()
    assert resolve_model("llama3-8b,layers=4") == load_model("llama3-8b", layers=4)
    assert resolve_model(f"{folder},layers=3").layers == 3
    # the workload string's llm graph is built from the same model
    g1 = parse_workload(f"llm:custom,{CUSTOM},phase=decode,batch=2")
    g2 = parse_workload(f"{folder},phase=decode,batch=2")
    assert g1.flops == g2.flops > 0


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("llama3-8b,phase=decode", "`model.phase` describes a run"),
        ("net.onnx", "is an operator graph"),
        ("lama3-8b", "did you mean llama3-8b"),
        ("llm:llama3-8b,layer=4", "`model.layer` is not a model field (did you mean layers"),
        ("llm:custom,layers=2", "custom model needs"),
    ],
)
def test_resolver_errors_name_the_field(spec, words):
    with pytest.raises(WorkloadError, match=None) as err:
        resolve_model(spec)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_folder_without_config(tmp_path):
    with pytest.raises(WorkloadError, match="has no config.json"):
        resolve_model(str(tmp_path))


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--chip", "h100", "--chips", "8", "--tp", "1", "--pp", "1", "--seq", "256"],
        ["serve", "--chip", "h100", "--chips", "1", "--tp", "1", "--pp", "1", "--concurrency", "4"]
        + ["--isl", "384", "--osl", "128"],  # within the config's 512 positions
    ],
)
def test_train_and_serve_take_custom_and_config(folder, args):
    names = []
    for model in (f"llm:custom,{CUSTOM}", str(folder / "config.json"), str(folder)):
        r = CliRunner().invoke(app, [*args, "--model", model, "--json"])
        assert r.exit_code == 0, r.output
        d = json.loads(r.output)
        names.append((d["model"], d["chip"]))
    assert names == [("tiny", "h100")] * 3


# ---- datacenter: the user's chip, a derived rack, every assumption overridable ----


def test_rack_template_reproduces_the_house_rack():
    """The template applied to forge-n3 gives forge-n3-rack (the rack it was written from)."""
    from chipforge.datacenter import Assumptions, load_rack
    from chipforge.datacenter.racks import derive_rack
    from chipforge.spec import load_chip

    house, derived = (
        load_rack("forge-n3-rack"),
        derive_rack(load_chip("forge-n3"), "x", Assumptions()),
    )
    assert derived.chips == house.chips
    assert derived.power_w == pytest.approx(house.power_w, rel=0.01)
    assert derived.other_hw_usd == house.other_hw_usd
    assert derived.cooling == house.cooling


def _chip_file(tmp_path, name="acme-x1", tdp="900 W"):
    from chipforge.spec import load_chip

    d = load_chip("forge-n3").model_dump(mode="json")
    text = (
        __import__("importlib.resources").resources.files("chipforge.spec")
        / "presets"
        / "forge-n3.toml"
    ).read_text()
    text = text.replace('name = "forge-n3"', f'name = "{name}"').replace('"1100 W"', f'"{tdp}"')
    assert d["name"] == "forge-n3"
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_datacenter_prices_the_users_chip(tmp_path):
    from chipforge.datacenter import site_report

    chip = _chip_file(tmp_path, tdp="2000 W")
    d = site_report(str(chip), 1e8)
    assert d["chip"] == "acme-x1" and d["rack_derived"]
    # per-chip power follows the user's TDP: (2000 + 150 + 94) x 1.05 W, 32 chips per 120 kW
    assert d["rack"]["chips"] == 32
    assert d["rack"]["power_w"] == pytest.approx(32 * (2000 + 150 + 94) * 1.05)
    assert "forge-n3" not in json.dumps(d)
    # capex charges what the table calls the chip's capex per chip
    assert d["capex_usd"]["chips_usd"] == pytest.approx(
        d["chip_capex_usd_per_chip"] * d["chips"] * (1 + d["assumptions"]["spares_share"])
    )
    with pytest.raises(Exception, match="holds forge-n3, not acme-x1"):
        site_report(str(chip), 1e8, rack="forge-n3-rack")


def test_every_listed_assumption_is_overridable(tmp_path):
    from chipforge.datacenter import Assumptions

    site = tmp_path / "site.toml"
    site.write_text('pue = 1.35\nrack_power_w = "60 kW"\n')
    chip = _chip_file(tmp_path)
    base = ["datacenter", "--chip", str(chip), "--power", "50MW", "--json"]
    r = CliRunner().invoke(app, [*base, "--assumptions", str(site), "--set", "goodput=0.8"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    origins = {o["key"]: o for o in d["assumption_origins"]}
    assert set(origins) == set(vars(Assumptions()))
    assert {k for k, o in origins.items() if o["origin"] == "user"} == {
        "pue", "rack_power_w", "goodput"
    }  # fmt: skip
    assert d["rack"]["power_w"] <= 60e3 and d["assumptions"]["pue"] == 1.35
    for key, value in vars(Assumptions()).items():  # each one listed can be set, and moves
        bumped = (
            value * 1.1
            if key not in ("power_draw_fraction", "goodput", "utilization")
            else value * 0.9
        )
        if isinstance(value, int):  # counts (switch_radix) stay whole numbers
            bumped = round(bumped)
        r = CliRunner().invoke(app, [*base, "--set", f"{key}={bumped}"])
        assert r.exit_code == 0, (key, r.output)
        assert json.loads(r.output)["assumptions"][key] == pytest.approx(bumped)
    r = CliRunner().invoke(app, [*base, "--set", "pu=1.3"])
    assert r.exit_code == 2 or "did you mean pue" in str(r.exception)


def test_datacenter_compare_alias_warns():
    r = CliRunner().invoke(
        app, ["datacenter", "--compare", "gb200,h100", "--power", "100MW", "--json"]
    )
    assert r.exit_code == 0
    assert "--compare is deprecated" in r.output  # CliRunner mixes stderr in


def test_a_chip_without_links_or_hbm_trains_serves_and_sites(tmp_path):
    """A user's chip with LPDDR5X and no [[links]]: the searches keep tensor parallelism at 1
    (no scale-up domain), and a site serves it from its off-chip DRAM."""
    from importlib import resources

    text = (resources.files("chipforge").joinpath("../../examples/my-chip.toml")).read_text()
    text = text.split("[[links]]")[0].replace('name = "HBM3E"', 'name = "LPDDR5X"')
    text = text.replace('kind = "hbm"', 'kind = "dram"').replace("stacks = 6", "")
    chip = tmp_path / "edge.toml"
    chip.write_text(text)
    for args in (
        ["train", "--chip", str(chip), "--model", "llama3-8b", "--chips", "16"],
        ["serve", "--chip", str(chip), "--model", "llama3-8b", "--chips", "2"],
    ):
        r = CliRunner().invoke(app, [*args, "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["plan"]["tp"] == 1
    r = CliRunner().invoke(
        app, ["datacenter", "--chip", str(chip), "--power", "5MW", "--model", "llama3-8b", "--json"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["serving"]["throughput_tokens_per_s"] > 0
