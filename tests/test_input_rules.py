"""One rule each for what a user hands the command line: a GROUP=N list, a path named inside
a file, an output that is also an input; and the studio's bounded link store. In process
through `chipforge.cli.main` (the real entry point and its guard)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_hostile import assert_user_error, cli


@pytest.mark.parametrize(
    ("caps", "words"),
    [
        ("dp=8,dp=4", ["--nccl-ctas.dp", "given twice"]),  # the last one silently won
        ("dp=8,pp", ["--nccl-ctas", "GROUP=N", "'pp'"]),
        ("dp=x", ["--nccl-ctas dp", "integer"]),
        ("tp=4", ["--nccl-ctas", "GROUP one of"]),
    ],
)
def test_train_nccl_ctas_is_parsed_as_every_key_value_list(caps, words):
    """`--nccl-ctas` had its own GROUP=N parser: a group given twice kept the last value."""
    code, _, err = cli("train", "--chip", "gb200", "--model", "llama3-8b", "--chips", "8",
                       "--nccl-ctas", caps)  # fmt: skip
    assert_user_error(code, err, *words)


def test_studio_compresses_an_upload_once_when_a_link_asks_for_it(monkeypatch):
    """`share` recompressed the uploaded file (zlib level 9) on every edit of the page."""
    pytest.importorskip("dash")
    from chipforge.studio import compute

    monkeypatch.setattr(compute, "_UPLOADS", {})
    calls = []
    real = compute.zlib.compress
    monkeypatch.setattr(compute.zlib, "compress", lambda *a: calls.append(1) or real(*a))
    key = compute.keep(b'name = "mine"\n', "chip")
    assert not calls  # kept, not compressed
    links = [compute.share(key, "chip") for _ in range(3)]
    assert len(calls) == 1 and links[0] == links[2] and set(links[0]) == {"chipz"}
    raw = compute.base64.urlsafe_b64decode(links[0]["chipz"] + "=" * (-len(links[0]["chipz"]) % 4))
    assert compute.zlib.decompress(raw) == b'name = "mine"\n'


def test_cost_sensitivity_flag_prints_the_api_s_tornado(tmp_path):
    """`chipforge cost` had no --sensitivity though the API has `cf.cost_sensitivity` (and
    `datacenter --sensitivity` adds its tornado): the same rows, keys with units, a table with
    units, and the HTML report's tornado."""
    import json

    import chipforge as cf

    code, out, err = cli("cost", "--chip", "forge-n3", "--node", "n2", "--sensitivity", "--json")
    assert code == 0, err
    rows = json.loads(out)["sensitivity"]
    assert rows == cf.cost_sensitivity("forge-n3", "n2")
    assert {k for r in rows for k in r} == {"knob", "low", "high", "at_low_usd", "at_high_usd",
                                           "base_usd"}  # fmt: skip
    assert all(r["at_low_usd"] > 0 and r["base_usd"] > 0 for r in rows)
    code, out, err = cli("cost", "--chip", "forge-n3", "--sensitivity")
    assert code == 0, err
    assert "wafer price" in out and "$18,000 .. $23,000" in out and "swing" in out
    pytest.importorskip("plotly")
    page = tmp_path / "cost.html"
    code, _, err = cli("cost", "--chip", "forge-n3", "--sensitivity", "--html", str(page))
    assert code == 0 and "not drawn" not in err, err
    assert "Sensitivity (tornado)" in page.read_text()


# ---- a relative path named inside a file: relative to that file (userfile.beside) -----------

REPO = Path(__file__).resolve().parents[1]
RACK = 'chip = "{chip}"\nchips = 4\npower = "6 kW"\nother_hw_usd_per_rack = 1000\n'


def _chip(path: Path, name: str) -> Path:
    text = (REPO / "examples" / "my-chip.toml").read_text()
    path.write_text(text.replace('name = "my-chip"', f'name = "{name}"', 1))
    return path


def test_beside_one_rule(tmp_path):
    """What is a path (a file suffix, a slash, or a name in the folder) and what is a name."""
    from chipforge.userfile import beside

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    for folder in ("h100", "llama3-8b"):  # a sweep store or report folder named after one
        (tmp_path / folder).mkdir()
    d = str(tmp_path)
    assert beside("c.toml", d) == f"{d}/c.toml"  # missing: the loader names this path
    assert beside(" c.toml ", d) == f"{d}/c.toml"  # spaces around a name go, as bare_name's
    assert beside("llm:sub/config.json", d) == f"llm:{d}/sub/config.json"
    assert beside("m", d) == f"{d}/m" and beside("./x", d) == f"{d}/x"
    for kept in ("h100", "llm:llama3-8b", "/abs/c.toml", "", "x" * 5000):
        assert beside(kept, d) == kept


def test_a_preset_beside_a_folder_of_its_name_is_the_preset(tmp_path, monkeypatch):
    """A preset named in a space, rack or scenario became a path when the file's folder held
    anything of that name: `sweep sp/space.toml --store sp/h100`, run again, was refused
    ("chip file 'sp/h100' is not a regular file"), and so was a rack naming h100."""
    from chipforge.decide.inputs import load_scenario
    from chipforge.explore import load_space

    (tmp_path / "sp" / "h100").mkdir(parents=True)
    (tmp_path / "sp" / "forge-n3").mkdir()
    (tmp_path / "sp" / "space.toml").write_text(
        '[base]\nchip = "h100"\n[params]\nclock = ["1 GHz"]\n[[workloads]]\nspec = "gpt2"\n'
        '[objectives]\ntime_s = "min"\n'
    )
    (tmp_path / "sp" / "r.toml").write_text(RACK.format(chip="h100"))
    text = (REPO / "examples" / "decide" / "forge_vs_rent.toml").read_text()
    (tmp_path / "sp" / "s.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    assert load_space("sp/space.toml").base.name == "h100"
    assert load_scenario(tmp_path / "sp" / "s.toml").build.chip == "forge-n3"
    code, _, err = cli("datacenter", "--rack", "sp/r.toml", "--power", "1MW", "--json")
    assert code == 0, err


def test_sweep_space_path_is_relative_to_the_space_file(tmp_path, monkeypatch):
    """A space's relative chip path named the file in the working folder when there was one
    there (another file of the same name), the one beside the space file only otherwise."""
    from chipforge.explore import load_space

    (tmp_path / "s").mkdir()
    _chip(tmp_path / "s" / "c.toml", "beside")
    _chip(tmp_path / "c.toml", "in-the-working-folder")
    (tmp_path / "s" / "space.toml").write_text(
        '[base]\nchip = "c.toml"\n[params]\nclock = ["1 GHz"]\n[[workloads]]\nspec = "gpt2"\n'
        '[objectives]\ntime_s = "min"\n'
    )
    monkeypatch.chdir(tmp_path)
    assert load_space("s/space.toml").base.name == "beside"


def test_decide_scenario_paths_are_relative_to_the_scenario(tmp_path, monkeypatch):
    """Chip, rack and model of a scenario, by the one rule, from another working folder."""
    from chipforge.decide.inputs import load_scenario

    (tmp_path / "s" / "m").mkdir(parents=True)
    _chip(tmp_path / "s" / "c.toml", "mine")
    (tmp_path / "s" / "r.toml").write_text(RACK.format(chip="c.toml"))
    (tmp_path / "s" / "m" / "config.json").write_text("{}")
    text = (REPO / "examples" / "decide" / "forge_vs_rent.toml").read_text()
    text = text.replace('chip = "forge-n3"\nrack = "forge-n3-rack"',
                        'chip = "c.toml"\nrack = "r.toml"')  # fmt: skip
    text = text.replace('model = "llama3-70b"', 'model = "m,layers=2"', 1)
    (tmp_path / "s" / "s.toml").write_text(text)
    monkeypatch.chdir(tmp_path / "s" / "m")
    sc = load_scenario(tmp_path / "s" / "s.toml")
    assert (sc.build.chip, sc.build.rack) == (f"{tmp_path}/s/c.toml", f"{tmp_path}/s/r.toml")
    models = [w.model for w in (*sc.train, *sc.serve)]
    assert f"{tmp_path}/s/m,layers=2" in models


def test_rack_file_chip_is_relative_to_the_rack_file(tmp_path, monkeypatch):
    """`datacenter --rack sub/r.toml` (no --chip) read the rack's chip path relative to the
    working folder; a spaced `--rack " sub/r.toml "` with `--chip sub/c.toml` was refused as
    "holds c.toml, not mine" (the chip path was joined to the untrimmed rack path)."""
    import json

    (tmp_path / "sub").mkdir()
    _chip(tmp_path / "sub" / "c.toml", "mine")
    (tmp_path / "sub" / "r.toml").write_text(RACK.format(chip="c.toml"))
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("datacenter", "--rack", "sub/r.toml", "--power", "1MW", "--json")
    assert code == 0, err
    assert json.loads(out)["rack"]["chips"] == 4
    code, out, err = cli("datacenter", "--chip", "sub/c.toml", "--rack", " sub/r.toml ",
                         "--power", "1MW", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["rack"]["chips"] == 4
    assert_user_error(*cli("datacenter", "--chip", "h100", "--rack", "sub/r.toml")[::2],
                      "holds", "not h100")  # fmt: skip


# ---- an output that is also an input: one rule (userfile.note_input / note_output) ---------


def test_scenario_chip_named_as_html_is_refused_before_the_run(tmp_path, monkeypatch):
    """`--html` naming a scenario's chip TOML (a file read through another) was refused only
    when the report was written, after the whole Monte Carlo run."""
    pytest.importorskip("SALib")
    from chipforge.decide import analysis

    ran = []
    monkeypatch.setattr(analysis, "run", lambda *a, **k: ran.append(1))
    chip = _chip(tmp_path / "c.toml", "mine")
    before = chip.read_bytes()
    text = (REPO / "examples" / "decide" / "forge_vs_rent.toml").read_text()
    text = text.replace('chip = "forge-n3"\nrack = "forge-n3-rack"', 'chip = "c.toml"')
    (tmp_path / "s.toml").write_text(text)
    code, _, err = cli("decide", str(tmp_path / "s.toml"), "--samples", "64", "--html", str(chip))
    assert_user_error(code, err, "--html", "also an input", "chip file")
    assert not ran and chip.read_bytes() == before


def test_outputs_are_forgotten_after_the_command(tmp_path):
    """A file a command wrote is an ordinary file for the next command or API call."""
    from chipforge.userfile import load_json

    out = tmp_path / "h100.json"
    assert cli("show", "h100", "--json", "--out", str(out))[0] == 0
    assert load_json(out, what="file")["spec"]["name"] == "h100"
    code, _, err = cli("show", str(out), "--out", str(tmp_path / "o.txt"))
    assert "also an input" not in err


def test_studio_edited_chips_share_the_bounded_store(monkeypatch):
    """Every edited chip the Site and Decision pages priced was written to a new file in the
    studio's folder (never removed: one per edit), and a second request could read it half
    written (it checked only that the file existed)."""
    pytest.importorskip("dash")
    import chipforge as cf
    from chipforge.studio import compute

    monkeypatch.setattr(compute, "_UPLOADS", {})
    monkeypatch.setattr(compute, "MAX_UPLOADS", 2)
    monkeypatch.setattr(compute, "IN_USE_S", 0.0)  # none in use (that rule: test_studio)
    h100 = cf.load_chip("h100")
    assert compute.chip_ref(h100, "preset:h100") == "h100"
    paths = [compute.chip_ref(h100.model_copy(update={"clock": c * 1e9}), "preset:h100")
             for c in (1, 2, 1, 3)]  # fmt: skip
    assert paths[0] == paths[2] and len(set(paths)) == 3 and len(compute._UPLOADS) == 2
    assert cf.load_chip(paths[3]).clock == 3e9 and not Path(paths[1]).exists()


def test_studio_bad_host_is_one_error_line():
    """`studio --host "bad host"` printed werkzeug's resolver line before the error."""
    pytest.importorskip("dash")
    code, _, err = cli("studio", "--host", "bad host")
    assert_user_error(code, err, "--host", "cannot listen on bad host", "give an address")
    assert [line.split(":")[0] for line in err.strip().splitlines()] == ["warning", "error"]


def test_sweep_show_with_a_damaged_space_json(tmp_path):
    """A store whose space.json was empty, damaged or named unknown objectives: `sweep show`
    was an internal error (exit 3, numpy "need at least one array to stack"); a named pipe
    there blocked it forever and a 3 GB file was read whole before its first MB was parsed."""
    import os
    import threading

    from chipforge.explore import Store

    space = tmp_path / "space.toml"
    space.write_text('[base]\nchip = "forge-n3"\n[params]\nclock = ["1 GHz"]\n[[workloads]]\n'
                     'spec = "gpt2"\n[objectives]\ntime_s = "min"\n')  # fmt: skip
    st = tmp_path / "st"
    assert cli("sweep", str(space), "--store", str(st), "--workers", "1")[0] == 0
    meta = st / "space.json"
    cases = [("{}", []), ("garbage", ["damaged"]), ('{"objectives": 5}', ["`objectives`", "table"]),
             ('{"objectives": {"x": "min", "time_s": "min"}}', ["x are not"])]  # fmt: skip
    for text, words in cases:
        meta.write_text(text)
        code, out, err = cli("sweep", "show", str(st), "--json")
        assert code == 0 and all(w in err for w in words), (text, err)
    meta.unlink()
    os.mkfifo(meta)
    got = []
    reader = threading.Thread(target=lambda: got.append(Store(st).meta()), daemon=True)
    reader.start()
    reader.join(20)
    assert got == [{}]


def test_rack_chip_read_as_a_file_says_what_is_wrong(tmp_path):
    """A rack's chip TOML that could not be read (a broken file, or one named as `--html`) was
    reported as "holds <path>, not <chip>"; now the reader's own line."""
    (tmp_path / "sub").mkdir()
    mine = _chip(tmp_path / "mine.toml", "mine")
    _chip(tmp_path / "sub" / "c.toml", "mine")  # the same chip in another file
    (tmp_path / "sub" / "r.toml").write_text(RACK.format(chip="c.toml"))
    args = ["datacenter", "--chip", str(mine), "--rack", str(tmp_path / "sub" / "r.toml"),
            "--power", "1MW"]  # fmt: skip
    assert cli(*args)[0] == 0
    code, _, err = cli(*args, "--html", str(tmp_path / "sub" / "c.toml"))
    assert_user_error(code, err, "--html", "also an input", "chip file")
    (tmp_path / "sub" / "c.toml").write_text("cores = -1\n")
    assert_user_error(*cli(*args)[::2], "c.toml", "`name` is required")


def test_an_output_naming_a_sweep_store_file_is_refused(tmp_path):
    """`sweep show ST --out ST/space.json` read the refusal of the output as a damaged
    space.json (a warning) and then wrote over it; `--out` a store part replaced the sweep's
    results; `sweep SPACE --store ST --out ST/space.json` ran and then replaced the store's
    space, so `--resume` was refused ("holds a different space")."""
    space = tmp_path / "space.toml"
    space.write_text('[base]\nchip = "forge-n3"\n[params]\nclock = ["1 GHz"]\n[[workloads]]\n'
                     'spec = "gpt2"\n[objectives]\ntime_s = "min"\n')  # fmt: skip
    st = tmp_path / "st"
    run = ["sweep", str(space), "--store", str(st), "--workers", "1"]
    assert cli(*run)[0] == 0
    (part,) = st.glob("part-*.parquet")
    kept = {p: p.read_bytes() for p in (st / "space.json", part)}
    for flag, target, what in (("--out", st / "space.json", "space.json"),
                               ("--html", part, "part")):  # fmt: skip
        code, _, err = cli("sweep", "show", str(st), "--json", flag, str(target))
        assert_user_error(code, err, flag, "also an input", what)
    code, _, err = cli(*run, "--resume", "--out", str(st / "space.json"))
    assert_user_error(code, err, "--out", "also an input", "space.json")
    assert {p: p.read_bytes() for p in kept} == kept
    assert cli(*run, "--resume")[0] == 0
    fresh = tmp_path / "fresh"  # a new store: its space.json written, then the run refused
    fresh.mkdir()
    code, _, err = cli("sweep", str(space), "--store", str(fresh), "--workers", "1", "--out",
                       str(fresh / "space.json"))  # fmt: skip
    assert_user_error(code, err, "--out", "also an input", "space.json")
    assert "fingerprint" in (fresh / "space.json").read_text() and not list(fresh.glob("part-*"))


def test_an_output_naming_an_onnx_model_s_external_weights_is_refused(tmp_path):
    """`evaluate --workload m.onnx --out w.bin` replaced the model's external weight file with
    the JSON (the importer reads weights only when a node needs their numbers, so the file was
    no input of the command)."""
    pytest.importorskip("onnx")
    from test_hostile_more import _onnx_external

    path = _onnx_external(tmp_path, "w.bin")
    weights = (tmp_path / "w.bin").read_bytes()
    code, _, err = cli("evaluate", "--chip", "h100", "--workload", path, "--json", "--out",
                       str(tmp_path / "w.bin"))  # fmt: skip
    assert_user_error(code, err, "--out", "also an input", "external data")
    assert (tmp_path / "w.bin").read_bytes() == weights
    assert cli("evaluate", "--chip", "h100", "--workload", path, "--out",
               str(tmp_path / "o.json"))[0] == 0  # fmt: skip


def test_cost_sensitivity_of_a_chip_at_the_package_limit(tmp_path):
    """`cost --sensitivity` refused a chip `cost` prices ("`chip` needs 10 reticle-sized dies
    ... shrink the matrix units"): the tornado's 25 % more cores no package holds. That end is
    now the chip's own count."""
    import json
    import re

    from chipforge.errors import Infeasible
    from chipforge.silicon import evaluate
    from chipforge.spec import load_chip

    mine = load_chip(str(REPO / "examples" / "my-chip.toml"))
    lo, hi = mine.cores, mine.cores * 64  # the most cores one package holds, by bisection
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            evaluate(mine.model_copy(update={"cores": mid}))
            lo = mid
        except Infeasible:
            hi = mid
    path = tmp_path / "edge.toml"
    text = (REPO / "examples" / "my-chip.toml").read_text()
    path.write_text(re.sub(r"(?m)^cores = \d+", f"cores = {lo}", text, count=1))
    code, out, err = cli("cost", "--chip", str(path), "--sensitivity", "--json")
    assert code == 0, err
    data = json.loads(out)
    (cores,) = [r for r in data["sensitivity"] if r["knob"] == "cores"]
    assert cores["low"] == round(lo * 0.75) and cores["high"] == lo
    assert cores["at_high_usd"] == cores["base_usd"] == data["unit_cost_usd"]


def test_simulate_trace_is_the_shared_output_flag(tmp_path, monkeypatch):
    """`simulate` had its own `--trace` option, outside the output rules: `--trace t.json --out
    t.json` ran and one replaced the other; a `--trace` naming the chip TOML was refused only
    when written, after the run."""
    from chipforge.sim import engine

    ran = []
    monkeypatch.setattr(engine, "run_timing", lambda *a, **k: ran.append(1))
    chip = _chip(tmp_path / "c.toml", "mine")
    before = chip.read_bytes()
    gemm = "gemm:m=64,n=64,k=64"
    out = str(tmp_path / "t.json")
    code, _, err = cli("simulate", "--chip", str(chip), "--workload", gemm, "--trace", out,
                       "--out", out)  # fmt: skip
    assert_user_error(code, err, "--trace", "--out", "both name")
    code, _, err = cli("simulate", "--chip", str(chip), "--workload", gemm, "--trace", str(chip))
    assert_user_error(code, err, "--trace", "also an input")
    assert chip.read_bytes() == before and not ran


@pytest.mark.parametrize("flag", ["--trace", "--html", "--png", "--max-work"])
def test_simulate_functional_model_run_refuses_report_flags(tmp_path, monkeypatch, flag):
    """`simulate --functional` of a .onnx/.pt2 model ran and exited 0 without the `--trace`,
    `--html` or `--png` output asked for (its end-to-end run writes none of them), and without
    the `--max-work` bound (it estimates memory only)."""
    from chipforge.sim import graph_run

    ran = []
    monkeypatch.setattr(graph_run, "run_model", lambda *a, **k: ran.append(1))
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    value = {"--png": str(tmp_path / "pngs"), "--max-work": "1e3"}.get(flag, str(tmp_path / "r"))
    code, _, err = cli("simulate", "--chip", "forge-n3", "--workload", str(model), "--functional",
                       flag, value)  # fmt: skip
    assert_user_error(code, err, flag, "--functional", "drop it")
    assert not ran


def test_studio_sensitivity_rows_carry_units():
    """The studio's Silicon page lost the units of its sensitivity table when the rows' knob
    became the input's key: "wafer price | 18,000 .. 23,000" (was "wafer price (USD)")."""
    pytest.importorskip("dash")
    import chipforge as cf
    from chipforge.studio import compute

    table = compute.silicon_sensitivity(cf.load_chip("forge-n3"), None)["rows"]
    by = {name: (span, cost) for name, span, cost in table}
    assert by["wafer price"][0] == "$18,000 .. $23,000"
    assert by["HBM price per GB"][0].startswith("$")
    assert all(cost.count("$") == 2 for _, cost in by.values())


def test_cost_tornado_names_each_input_s_range_in_its_unit():
    """The HTML report's (and the studio's) unit-cost tornado named its bars "wafer price (18000
    .. 23000)": the range without its unit once the rows' knob became the input's key."""
    import chipforge as cf
    from chipforge.report.plans import cost_report_charts

    data = cf.cost("forge-n3").to_dict()
    data["sensitivity"] = cf.cost_sensitivity("forge-n3")
    (chart,) = [c for c in cost_report_charts(data) if c["id"] == "tornado"]
    names = set(chart["data"][0]["y"])
    assert {"wafer price ($18,000 .. $23,000)", "HBM price per GB ($10.5 .. $22.5)"} <= names


def test_a_chip_preset_beside_a_folder_of_its_name_is_the_preset(tmp_path, monkeypatch):
    """`--chip h100` in a folder holding a folder h100 (`sweep ... --store h100`) was refused
    ("chip file 'h100' is not a regular file"): a folder is no chip."""
    (tmp_path / "h100").mkdir()
    (tmp_path / "mine").mkdir()
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("cost", "--chip", "h100", "--json")
    assert code == 0, err
    assert_user_error(*cli("cost", "--chip", "mine")[::2], "mine", "not a regular file")


def test_a_png_chart_named_as_out_is_refused(tmp_path):
    """`cost --png pics --out pics/cost_area.png`: the chart replaced the JSON just written, and
    the command exited 0."""
    pytest.importorskip("matplotlib")
    pics = tmp_path / "pics"
    pics.mkdir()
    out = pics / "cost_area.png"
    code, _, err = cli(
        "cost", "--chip", "forge-n3", "--json", "--png", str(pics), "--out", str(out)
    )
    assert_user_error(code, err, "--out", "--png", "both name")
    assert out.read_text().startswith("{")


def test_serve_html_is_checked_before_the_plan(tmp_path, monkeypatch):
    """`serve --html` took a plain path option: a folder given for the page was refused only
    when the report was written, after the serving search; it is checked first now, as every
    other command's `--html`."""
    from chipforge.cluster import serving

    ran = []
    monkeypatch.setattr(serving, "plan_serving", lambda *a, **k: ran.append(1))
    code, _, err = cli("serve", "--chip", "h100", "--model", "llama3-8b", "--chips", "8",
                       "--html", str(tmp_path))  # fmt: skip
    assert_user_error(code, err, "--html", "is a folder")
    assert not ran
