"""A new user's path, end to end: their own chip TOML (not a preset) and their own model's
HuggingFace config.json through every command, each with --json and --html. Every command
succeeds, names the user's chip and model, and no output names another chip."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from chipforge.cli import app
from chipforge.spec import preset_names

CHIP = """
name = "aurora-x"
family = "forge"
vendor = "Aurora Labs"
year = 2027
node = "n3p"
clock = "1.6 GHz"
cores = 2
dies = 1
tdp = "950 W"

[matrix]
rows = 128
cols = 128
count = 8
dataflow = "weight-stationary"
macs_per_cycle = { bf16 = 16384, fp8 = 32768 }

[vector]
flops_per_cycle = 8192
transcendentals_per_cycle = 1024

[[memory]]
name = "HBM3E"
kind = "hbm"
capacity = "192 GB"
bandwidth = "6 TB/s"

[[memory]]
name = "SRAM"
kind = "sram"
capacity = "64 MiB"
bandwidth = "100 TB/s"
per_core = true
holds_activations = true

[[links]]
name = "ICI"
bandwidth = "1.2 TB/s"
ports = 6
latency = "1 us"
"""
MODEL = {  # a 3B-class GQA decoder no preset describes
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "num_hidden_layers": 20,
    "hidden_size": 2560,
    "num_attention_heads": 20,
    "num_key_value_heads": 4,
    "intermediate_size": 7168,
    "vocab_size": 50000,
    "max_position_embeddings": 4096,
}
RACK = """
chips = 32
power = "40 kW"
cooling = "liquid"
other_hw_usd_per_rack = 150000
source = "Aurora Labs rack, 32 chips"
"""
OTHER = set(preset_names()) - {"aurora-x"}
SCIENTIFIC = re.compile(r"\d\.?\d*e[+-]\d+", re.IGNORECASE)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("user")
    (d / "aurora-x.toml").write_text(CHIP)
    (d / "aurora-x-lite.toml").write_text(
        CHIP.replace('"aurora-x"', '"aurora-x-lite"').replace("count = 8", "count = 4")
    )
    (d / "orca-3b").mkdir()
    (d / "orca-3b" / "config.json").write_text(json.dumps(MODEL))
    (d / "rack.toml").write_text(RACK)
    (d / "space.toml").write_text(
        '[base]\nchip = "aurora-x.toml"\n'  # beside the space file, as a user keeps them
        '[params]\nclock = { min = "1.2 GHz", max = "2.0 GHz", steps = 5 }\n'
        '"matrix.count" = [4, 6, 8, 12]\n'
        f'[[workloads]]\nspec = "{d / "orca-3b"},phase=decode,batch=16,context=2048"\n'
        '[objectives]\ntokens_per_s = "max"\nunit_cost_usd = "min"\n'
        'usd_per_million_tokens = "min"\n[site]\npower = "20 MW"\n'
    )
    return d


def _visible(html: str) -> str:
    """The page without its scripts (Plotly's bundle is not output about the chip)."""
    return re.sub(r"<script>.*?</script>", "", html, flags=re.S)


def _run(files, name: str, args: list[str], *, model: bool = True) -> dict:
    page = files / f"{name}.html"
    r = CliRunner().invoke(app, [*args, "--json", "--html", str(page)])
    assert r.exit_code == 0, (name, r.output, r.exception)
    out = r.stdout
    text = r.output + _visible(page.read_text())  # stdout, stderr and the page
    assert "aurora-x" in text, name
    if model:
        assert "orca-3b" in text, name
    named = sorted(c for c in OTHER if re.search(rf"(?<![\w-]){re.escape(c)}(?![\w])", text))
    assert not named, (name, named)
    visible = re.sub(r"<[^>]+>", " ", _visible(page.read_text()))
    assert not SCIENTIFIC.findall(visible), (name, SCIENTIFIC.findall(visible)[:5])
    return json.loads(out[out.index("{") :])


def _tables(tables) -> str:
    from io import StringIO

    from rich.console import Console

    console = Console(file=StringIO(), width=200)
    for t in tables:
        console.print(t)
    return console.file.getvalue()


def _readable(name: str, text: str) -> None:
    """Tables a person reads: no scientific notation, no Python booleans, no snake_case
    row names (op and field names in a plan are names, not rows)."""
    assert not SCIENTIFIC.findall(text), (name, SCIENTIFIC.findall(text)[:5])
    assert not re.search(r"\b(True|False)\b", text), name


def test_user_chip_and_model_through_every_command(files):
    chip, lite = str(files / "aurora-x.toml"), str(files / "aurora-x-lite.toml")
    model = str(files / "orca-3b" / "config.json")
    r = CliRunner().invoke(app, ["show", chip, "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["spec"]["name"] == "aurora-x"
    from chipforge.cli.cost import cost_tables
    from chipforge.cli.datacenter import site_tables
    from chipforge.cli.serve import serve_tables
    from chipforge.cli.train import train_tables

    evaluate = ["evaluate", "--chip", chip, "--workload", f"{model},phase=decode"]
    d = _run(files, "evaluate", evaluate)
    assert d["chip"] == "aurora-x" and d["time_s"] > 0
    compare = ["compare", "--chip", f"{chip},{lite}", "--workload", model]
    d = _run(files, "compare", compare)
    assert [x["chip"] for x in d["results"]] == ["aurora-x", "aurora-x-lite"]
    for name, args in (("evaluate", evaluate), ("compare", compare), ("show", ["show", chip])):
        r = CliRunner().invoke(app, args)  # the tables
        assert r.exit_code == 0 and "aurora-x" in r.stdout, r.output
        _readable(name, r.stdout)
    d = _run(files, "cost", ["cost", "--chip", chip], model=False)
    assert d["unit_cost_usd"] > 0
    _readable("cost", _tables(cost_tables(d)))
    d = _run(files, "train", ["train", "--chip", chip, "--model", model, "--chips", "4096"])
    assert d["chips"] == 4096 and 0 < d["mfu"] < 1
    _readable("train", _tables(train_tables(d)))
    d = _run(files, "serve", ["serve", "--chip", chip, "--model", model, "--chips", "8"])
    assert d["throughput_tokens_per_s"] > 0
    _readable("serve", _tables(serve_tables(d)))
    site = ["datacenter", "--chip", chip, "--model", str(files / "orca-3b"), "--power", "20MW"]
    d = _run(files, "datacenter", site)
    assert d["rack_derived"] and d["usd_per_million_tokens"] > 0
    _readable("datacenter", _tables(site_tables(d)))
    d = _run(files, "datacenter-rack", [*site, "--rack", str(files / "rack.toml")])
    assert d["rack"]["chips"] == 32 and not d["rack_derived"]
    sweep = ["sweep", str(files / "space.toml"), "--store", str(files / "store"), "--workers", "1"]
    d = _run(files, "sweep", sweep, model=False)
    assert d["points"] == 20 and d["base_chip"] == "aurora-x"
    r = CliRunner().invoke(app, ["sweep", "show", str(files / "store")])
    assert r.exit_code == 0, r.output
    _readable("sweep show", r.stdout)
    r = CliRunner().invoke(app, ["sweep", "show", str(files / "store"), "--json"])
    methods = json.loads(r.stdout)["methods"]["site_method"]  # the user's chip, sited by template
    assert set(methods) == {"datacenter.evaluate_site (rack template)"}
