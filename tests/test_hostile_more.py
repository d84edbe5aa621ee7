"""More hostile input, found by attacking the command line past the cases of test_hostile*.py:
every case is one line on stderr naming the field, exit 2, never a traceback (exit 3).

Cheap: in process through `chipforge.cli.main` (the real entry point and its guard), or the
parser alone where the case is about parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_hostile import assert_user_error, cli  # the same in-process runner and check

from chipforge.errors import ChipforgeError

REPO = Path(__file__).resolve().parents[1]
RENT = (REPO / "examples" / "decide" / "forge_vs_rent.toml").read_text()


# decide: the scenario TOML and the flags


def _scenario(tmp: Path, text: str | bytes, name: str = "s.toml") -> str:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("x = " + "[" * 100_000 + "]" * 100_000 + "\n", ["64 deep"]),  # was a RecursionError
        (RENT.encode("utf-16"), ["UTF-8"]),
        (
            RENT.replace("value = 0.3, low = 0.1", 'value = "x", low = 0.1'),
            ["build.respin_probability.value", "number"],
        ),  # was a ValueError from float('x')
        (RENT.replace("samples = 16384", "samples = 2.7"), ["scenario.samples"]),  # was 2
        (RENT.replace("samples = 16384", "samples = true"), ["scenario.samples"]),  # was 1
        (
            RENT.replace('tokens_per_day = "15T"', 'tokens_per_day = "15T"\ndtype = "int3"'),
            ["workload.serve.dtype", "bf16"],
        ),  # was a KeyError
        (
            RENT.replace('tokens_per_day = "15T"', 'tokens_per_day = "15T"\nisl = "abc"'),
            ["workload.serve.isl"],
        ),  # was a ValueError
        (RENT.replace('tokens = "150T"', "tokens = inf", 1), ["workload.train.tokens"]),
        (RENT.replace('grid = "1GW"', "grid = inf", 1), ["sites[0].grid"]),
        (RENT.replace('grid = "1GW"', "grid = true", 1), ["sites[0].grid"]),
        (RENT.replace('model = "llama3-405b"\n', "", 1), ["workload.train[0]", "model"]),
    ],
)
def test_decide_scenario_files(tmp_path, text, words):
    assert_user_error(*cli("decide", _scenario(tmp_path, text), "--json")[::2], *words)


def test_decide_scenario_not_a_file(tmp_path):
    assert_user_error(*cli("decide", str(tmp_path), "--json")[::2], "not a regular file")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(scenario=3),
        lambda d: d.update(build=3),
        lambda d: d.update(sites=3),
        lambda d: d.update(sites=[1]),
        lambda d: d["workload"].update(train=[1]),
        lambda d: d["workload"].update(serve="x"),
        lambda d: d["workload"]["serve"][0].update(osl=-5),
    ],
)
def test_decide_scenario_shapes(mutate):
    """Sections of the wrong TOML shape (an AttributeError or TypeError before)."""
    import tomllib

    from chipforge.decide.inputs import scenario_from_dict

    d = tomllib.loads(RENT)
    mutate(d)
    with pytest.raises(ChipforgeError):
        scenario_from_dict(d)


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (("--grid", "-1GW"), ["--grid"]),  # was run with a negative site
        (("--it-power", "0W"), ["--it-power"]),
        (("--it-power", "-0W"), ["--it-power"]),
        (("--seed", "-1"), ["--seed"]),  # was a ValueError from scipy
        (("--samples", "0"), ["--samples"]),  # was the file's samples
    ],
)
def test_decide_flags(tmp_path, flags, words):
    path = _scenario(tmp_path, RENT.replace("samples = 16384", "samples = 64"))
    assert_user_error(*cli("decide", path, "--json", *flags)[::2], *words)


# datacenter: powers and site assumptions that overflowed to inf (printed as null / "inf")


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (("--power", "1e300W"), ["--power", "10 TW"]),  # was inf FLOP/s, null in JSON
        (("--grid", "1e300W"), ["--grid"]),
        (("--it-power", "10MW", "--pue", "1e300"), ["pue"]),  # was exit 0
        (("--power", "10MW", "--set", "chip_life_y=1e-300"), ["chip_life_y"]),  # ZeroDivision
        (("--power", "10MW", "--set", "switch_radix=2.5"), ["switch_radix"]),  # 36 tiers
        (("--power", "10MW", "--set", "nic_usd_per_chip=1e308"), ["nic_usd_per_chip"]),
        (("--power", "10MW", "--set", "cost_of_capital=1e300"), ["cost_of_capital"]),
    ],
)
def test_datacenter_ranges(flags, words):
    assert_user_error(*cli("datacenter", "--chip", "h100", "--json", *flags)[::2], *words)


def test_datacenter_negative_zero_price_is_zero():
    """`--electricity-price -0` costs $0, not $-0 (a negative zero in JSON and the table)."""
    code, out, err = cli("datacenter", "--chip", "h100", "--power", "10MW",
                         "--electricity-price", "-0", "--json")  # fmt: skip
    assert code == 0, err
    assert "-0.0" not in out


# ONNX external weights: the location must stay inside the model's folder


def _onnx_external(folder: Path, location: str, **info: int) -> str:
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((8, 8), np.float32), "W")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, **info}.items():
        entry = w.external_data.add()
        entry.key, entry.value = key, str(value)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 8])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "m.onnx"
    onnx.save(model, str(path))
    np.ones((8, 8), np.float32).tofile(folder / "w.bin")
    return str(path)


@pytest.mark.parametrize(
    ("location", "info", "words"),
    [
        ("../secret.bin", {}, ["inside the model's folder"]),  # was stat'ed: a size oracle
        ("/etc/passwd", {}, ["inside the model's folder"]),  # said "1.29e+03 bytes, more than"
        ("link.bin", {}, ["not a regular file"]),
        (".", {}, ["not a regular file"]),
        ("w.bin", {"offset": -5}, ["offset"]),  # was an internal error (ValueError)
        ("w.bin", {"length": -1}, ["length"]),
    ],
)
def test_onnx_external_weights_stay_in_the_folder(tmp_path, location, info, words):
    pytest.importorskip("torch")
    folder = tmp_path / "model"
    folder.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 256)  # exactly the 8x8 float32 the header declares
    (folder / "link.bin").symlink_to(secret)
    path = _onnx_external(folder, location, **info)
    code, out, err = cli("simulate", "--chip", "forge-n3", "--workload", path, "--functional")
    assert_user_error(code, err, "W", *words)


def test_onnx_external_weights_inside_the_folder_run(tmp_path):
    pytest.importorskip("torch")
    path = _onnx_external(tmp_path, "w.bin")
    code, out, err = cli("simulate", "--chip", "forge-n3", "--workload", path, "--functional")
    assert code == 0, err


def test_datacenter_model_larger_than_the_site():
    """A one-rack site and a model whose serving replica needs more chips than the site holds
    (a ZeroDivisionError before)."""
    code, out, err = cli("datacenter", "--chip", "h100", "--power", "14kW",
                         "--model", "llama3-405b", "--json")  # fmt: skip
    assert_user_error(code, err, "llama3-405b", "replica")


# integers too long for Python's int() in a user text file (a ValueError before)


def test_huge_integer_in_a_chip_toml(tmp_path):
    from chipforge.spec.loader import PRESET_DIR

    text = (PRESET_DIR / "h100.toml").read_text()
    path = tmp_path / "chip.toml"
    path.write_text(text.replace("\nname = ", "\nrows_typo = 1" + "0" * 5000 + "\nname = ", 1))
    assert_user_error(*cli("show", str(path))[::2], "chip.toml", "not valid TOML")


def test_huge_integer_in_a_config_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("1" + "0" * 100_000)
    assert_user_error(*cli("evaluate", "--chip", "h100", "--workload", str(path))[::2], "JSON")


# rtl: elaborating the array holds every PE in memory (~2 MB a PE)


@pytest.mark.parametrize(
    "args",
    [
        ("generate", "--chip", "forge-n3"),  # 256x256: ~120 GB, hours (was run)
        ("generate", "--rows", "100000", "--cols", "100000"),
        ("generate", "--rows", "99999999999999999999", "--cols", "4"),  # was a TypeError
        ("synth", "--chip", "forge-n3"),
    ],
)
def test_rtl_array_size_is_capped(tmp_path, args):
    pytest.importorskip("amaranth")
    out = ("--out", str(tmp_path / "a.v")) if args[0] == "generate" else ()
    assert_user_error(*cli("rtl", *args, *out)[::2], "PEs", "--rows")
    assert not (tmp_path / "a.v").exists()


# sweep spaces: the sampler's seed, unknown keys, infinite weights


SPACE = """[base]
chip = "forge-n3"
[params]
clock = ["1 GHz", "2 GHz"]
[[workloads]]
spec = "gemm:m=64,n=64,k=64"
weight = 1
[objectives]
time_s = "min"
[sampler]
method = "random"
n = 2
"""


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (("n = 2", "n = 2\nseed = -1"), ["seed"]),  # was a ValueError from numpy
        (('"random"', '"nsga2"'), None),  # control: runs
        (("n = 2", "n = 2\nseed = 99999999999999999999999"), ["seed"]),  # ValueError (Optuna)
        (("n = 2", "n = 2\ntrust_pickle = true"), ["trust_pickle"]),  # was silently ignored
        (("weight = 1", "weight = inf"), ["weight", "finite"]),  # was accepted
        (("weight = 1", "weight = 1\nwieght = 2"), ["wieght"]),  # was silently ignored
    ],
)
def test_sweep_space_sampler_and_workloads(tmp_path, edit, words):
    space = tmp_path / "space.toml"
    space.write_text(SPACE.replace(*edit))
    code, out, err = cli("sweep", str(space), "--store", str(tmp_path / "store"),
                         "--workers", "1", "--json")  # fmt: skip
    if words is None:
        assert code == 0, err
        return
    assert_user_error(code, err, *words)
    assert not (tmp_path / "store").exists()


# chip TOMLs: quantities far below any chip (times of 1e300 s overflowed to inf and NaN)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('clock = "1.83 GHz"', 'clock = "1e-300 Hz"', "clock"),  # NaN power, ZeroDivisionError
        ('bandwidth = "3.35 TB/s"', 'bandwidth = "1e-300 B/s"', "bandwidth"),  # NaN TPOT
        ('capacity = "80 GB"', 'capacity = "1e-300 B"', "capacity"),  # OverflowError in serve
    ],
)
def test_chip_quantities_have_lower_bounds(tmp_path, old, new, field):
    from chipforge.spec.loader import PRESET_DIR

    text = (PRESET_DIR / "h100.toml").read_text()
    assert old in text
    path = tmp_path / "chip.toml"
    path.write_text(text.replace(old, new, 1))
    for args in (
        ("evaluate", "--workload", "llm:llama3-8b"),
        ("serve", "--model", "llama3-8b", "--chips", "8"),
    ):
        assert_user_error(*cli(*args, "--chip", str(path), "--json")[::2], field)


# one chip-list reader: compare took `h100,,` and `h100,h100` (datacenter refused the second)


@pytest.mark.parametrize("chips", ["h100,,", ",h100", "h100,h100", " , "])
def test_chip_lists(chips):
    for args in (
        ("compare", "--workload", "llm:llama3-8b"),
        ("datacenter", "--power", "10MW"),
    ):
        assert_user_error(*cli(*args, "--chip", chips, "--json")[::2], "--chip")


# names are one line of printable text, shown as text (never terminal control or Rich markup)


def _named_chip(tmp: Path, name: str) -> str:
    from chipforge.spec.loader import PRESET_DIR

    text = (PRESET_DIR / "h100.toml").read_text().replace('name = "h100"', f"name = {name}", 1)
    path = tmp / "chip.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ('"\\u001b]0;pwned\\u0007\\u001b[31mRED"', ["printable"]),  # was printed raw: ESC, BEL
        ('""', ["name"]),  # an empty name was accepted
        ('"' + "A" * 100_000 + '"', ["200", "100,002 characters"]),  # was echoed whole
    ],
)
def test_chip_names(tmp_path, name, words):
    code, out, err = cli("show", _named_chip(tmp_path, name))
    assert_user_error(code, err, "name", *words)
    assert len(err) < 400


def test_model_name_with_control_characters():
    code, out, err = cli("evaluate", "--chip", "h100", "--workload", "llm:llama3-8b,name=\x1b[31mX")
    assert_user_error(code, err, "name", "printable")


def test_rich_markup_in_a_name_is_printed_as_text(tmp_path):
    chip = _named_chip(tmp_path, '"[bold red]X[/] [link=file:///etc/passwd]y[/link]"')
    code, out, err = cli("show", chip)
    assert code == 0, err
    assert "[link=file:///etc/passwd]y[/link]" in out  # was rendered: "X y", a terminal link


# a workload string names a key once (`m=8,...,m=9` silently took the last)


def test_workload_key_given_twice():
    for workload in ("gemm:m=8,n=8,k=8,m=9", "llm:llama3-8b,batch=2,batch=3"):
        assert_user_error(*cli("evaluate", "--chip", "h100", "--workload", workload)[::2], "twice")


# encoder / vision / audio config.json (built by transformers on the meta device): sizes checked
# before anything is built (negative and huge sizes were torch RuntimeErrors, exit 3; a
# 100,000-layer BERT traced without end)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ({"num_hidden_layers": 100_000}, ["num_hidden_layers", "256"]),
        ({"hidden_size": -64}, ["hidden_size"]),
        ({"hidden_size": 2**40}, ["hidden_size"]),
        ({"hidden_size": "64"}, ["hidden_size"]),
        ({"model_type": "vit", "image_size": -224}, ["image_size"]),
        ({"model_type": "vit", "image_size": 10**6}, ["image_size"]),
    ],
)
def test_traced_config_sizes(tmp_path, edit, words):
    import json

    bert = {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 128, "vocab_size": 1000}  # fmt: skip
    path = tmp_path / "config.json"
    path.write_text(json.dumps(bert | edit))
    assert_user_error(*cli("evaluate", "--chip", "h100", "--workload", str(path))[::2], *words)


@pytest.mark.parametrize(
    ("site", "words"),
    [
        ('pue = "x"', ["pue", "number"]),  # was a ValueError from float('x'), exit 3
        ('power = "1e300 W"', ["power", "10 TW"]),  # every point came back infeasible
    ],
)
def test_sweep_space_site_table(tmp_path, site, words):
    space = tmp_path / "space.toml"
    text = SPACE.replace('time_s = "min"', 'tco_usd_per_year = "min"')
    space.write_text(text + f"[site]\n{site}\n")
    code, out, err = cli("sweep", str(space), "--store", str(tmp_path / "store"), "--workers", "1")
    assert_user_error(code, err, *words)


@pytest.mark.parametrize(
    "table",
    ['[serving]\nmodel = "llama3-8b"\n"a\\nb" = 1', '[serving]\nmodel = "llama3-8b"\n["x\\ny"]',
     '[training]\nmodel = "llama3-8b"\nchips = 8\n"a\\nb" = 1'],
)  # fmt: skip
def test_a_key_holding_a_line_break_is_still_one_error_line(tmp_path, table):
    """A sweep space's key with a line break ("a\\nb" = 1) is echoed by the unknown-key error:
    it printed two lines; the entry point writes the break as \\n."""
    from test_hostile import cli

    space = tmp_path / "s.toml"
    space.write_text('[base]\nchip = "h100"\n[params]\nclock = ["1 GHz"]\n' + table + "\n")
    code, _, err = cli("sweep", str(space), "--store", str(tmp_path / "st"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "unknown" in err and "\\n" in err
