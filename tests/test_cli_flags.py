"""One vocabulary of flags: every command's parser is walked, and a flag name two commands share
has one type, one default and one bound (so one validation message) in both, but for the
deliberate differences listed below; a renamed flag's old spelling still works, with one
warning line; each default request is stated once (chipforge.request_defaults)."""

from __future__ import annotations

import inspect
import json

from test_hostile import cli  # the same in-process runner through the entry point's guard

from chipforge.cli.reference import commands, kind

# (flag, command) pairs whose type or default differs from the same flag elsewhere, on purpose
ALLOWED = {
    # a hidden, deprecated alias of `compare --chip a,b` (a list of chips, not a count), kept
    # so old scripts run; it prints one deprecation line
    ("--chips", "compare"),
    # the demo always writes its report (the whole story), so its --html has a default path
    ("--html", "demo"),
    # `rtl generate` writes Verilog, not a result: --out is that file, defaulting to rtl/
    ("--out", "rtl generate"),
    # `schema` prints the JSON schema: JSON is its only output
    ("--json", "schema"),
    # the node an RTL synthesis estimates area at (n3p), where `cost --node` re-targets the
    # chip's own node (none: keep it)
    ("--node", "rtl synth"),
    # `sweep` writes its result folder (default `results`), `studio` reads one (none: no sweep)
    ("--store", "sweep"),
    # one engine's request (SERVE_ISL / SERVE_OSL, 2048 / 256) where a site's request
    # (`datacenter`: SITE_ISL / SITE_OSL, 1024 / 1024, or what fits the model's context) is
    # left as None and settled by datacenter.workload.site_request
    ("--isl", "datacenter"),
    ("--osl", "datacenter"),
}


def _signature(p) -> tuple:
    """What a flag's name must mean the same in every command: its type, default, range."""
    default = p.default if not callable(p.default) else "<factory>"
    return kind(p), repr(default), p.min, p.max


def _flags() -> dict[str, dict[str, tuple]]:
    out: dict[str, dict[str, tuple]] = {}
    for name, cmd in commands():
        for p in cmd.params:
            if p.param_type_name != "option" or "--help" in p.opts:
                continue
            for flag in (*p.opts, *p.secondary_opts):
                out.setdefault(flag, {})[name] = _signature(p)
    return out


def test_a_shared_flag_has_one_type_default_and_bound():
    flags = _flags()
    wrong = []
    for flag, by_command in sorted(flags.items()):
        kept = {c: s for c, s in by_command.items() if (flag, c) not in ALLOWED}
        if len(set(kept.values())) > 1:
            wrong.append(f"{flag}: " + "; ".join(f"{c} {s}" for c, s in sorted(kept.items())))
    assert not wrong, "flags that differ between commands:\n" + "\n".join(wrong)
    stale = [(f, c) for f, c in ALLOWED if c not in flags.get(f, {})]
    assert not stale, f"allow-list entries naming no flag: {stale}"


def test_parallel_degrees_and_dtype_are_checked_alike_in_train_serve_datacenter():
    """`--tp 0` and `--dtype int3`: the same one-line message, exit 2, whichever command."""
    job = ["--chip", "h100", "--model", "llama3-8b", "--chips", "8"]
    said: dict[str, set[str]] = {}
    for cmd, extra in (("train", job), ("serve", job), ("datacenter", ["--model", "llama3-8b"])):
        flags = [("--dtype", "int3")] + (
            [("--tp", "0"), ("--ep", "0")] if cmd != "datacenter" else []
        )
        for flag, bad in flags:
            code, _, err = cli(cmd, *extra, flag, bad)
            assert code == 2, (cmd, flag, err)
            lines = err.strip().splitlines()
            assert len(lines) == 1, err
            said.setdefault(flag, set()).add(lines[0].split(" (see ")[0])
    assert all(len(lines) == 1 for lines in said.values()), said


def test_datacenter_serve_dtype_is_a_deprecated_alias_of_dtype():
    argv = ["datacenter", "--chip", "h100", "--power", "10MW", "--model", "llama3-8b", "--json"]
    new, old, bf16 = (
        cli(*argv, *more) for more in (["--dtype", "fp8"], ["--serve-dtype", "fp8"], [])
    )
    assert new[0] == old[0] == bf16[0] == 0, (new, old)
    assert json.loads(old[1]) == json.loads(new[1]) != json.loads(bf16[1])
    from chipforge import api
    from chipforge.report import to_json

    by_api = api.site("h100", "10MW", model="llama3-8b", dtype="fp8")  # the API's same keyword
    assert json.loads(to_json(by_api)) == json.loads(new[1])
    assert old[2].strip().splitlines() == ["warning: --serve-dtype is deprecated; use --dtype"]
    assert "warning" not in new[2]
    code, _, err = cli(*argv, "--serve-dtype", "int3")  # refused as typed, after the warning
    assert code == 2 and err.splitlines()[0].startswith("warning: --serve-dtype is deprecated")
    assert err.splitlines()[1].startswith("error: `--serve-dtype` must be one of"), err


def test_datacenter_dtype_and_its_old_spelling_are_not_both_taken():
    """`--dtype fp8 --serve-dtype bf16` priced bf16 (the old spelling won silently): both
    given is one line naming both, exit 2, before any work."""
    argv = ["datacenter", "--chip", "h100", "--power", "10MW", "--model", "llama3-8b"]
    code, out, err = cli(*argv, "--dtype", "fp8", "--serve-dtype", "bf16")
    assert code == 2 and not out, (code, err)
    assert err.splitlines()[-1].startswith("error: pass --dtype or --serve-dtype"), err


def test_datacenter_compare_alias_adds_to_chip_as_compare_chips_does():
    """`datacenter --chip h100 --compare gb200` dropped h100 and sized gb200 alone; the old
    spelling now adds its chips to --chip, as `compare --chip a --chips b` does."""
    argv = ["datacenter", "--power", "10MW", "--json"]
    old = cli(*argv, "--chip", "h100", "--compare", "gb200")
    new = cli(*argv, "--chip", "h100,gb200")
    assert old[0] == new[0] == 0, old[2]
    assert json.loads(old[1]) == json.loads(new[1])
    assert old[2].strip().splitlines() == ["warning: --compare is deprecated; use --chip a,b"]


def test_each_default_request_is_stated_once():
    """Every place that takes a request reads SERVE_* (one engine) or SITE_* (a site)."""
    from chipforge import api
    from chipforge.datacenter.workload import serving
    from chipforge.decide.inputs import Serve, serve_plan_options
    from chipforge.explore.system import Serving
    from chipforge.request_defaults import SERVE_ISL, SERVE_OSL, SITE_ISL, SITE_OSL

    def defaults(fn) -> tuple:
        ps = inspect.signature(fn).parameters
        return ps["isl"].default, ps["osl"].default

    serve_cmd = {p.name: p.default for p in dict(commands())["serve"].params}
    assert (serve_cmd["isl"], serve_cmd["osl"]) == (SERVE_ISL, SERVE_OSL)
    assert defaults(api.plan_serving) == (SERVE_ISL, SERVE_OSL)
    for fn in (serving, serve_plan_options, Serve, Serving):
        assert defaults(fn) == (SITE_ISL, SITE_OSL), fn


def test_the_studio_names_each_cluster_field_by_its_flag():
    """The studio's Cluster page labels each field with the flag it sets (`dtype (--dtype)`,
    not a word of its own such as `precision`), and that flag is the command's, and its
    request fields start at `serve`'s default request."""
    import re

    from chipforge.request_defaults import SERVE_ISL, SERVE_OSL
    from chipforge.studio import app as studio

    page = studio._cluster_page(studio.DEFAULTS)
    labels = [str(c.children) for c in _walk(page) if type(c).__name__ == "Label"]
    labels = [label for label in labels if label != "run options"]  # switches, named below
    train, serve = (dict(commands())[c] for c in ("train", "serve"))
    known = {o for cmd in (train, serve) for p in cmd.params for o in p.opts}
    named = [re.search(r"\((--[a-z-]+)\)$", label) for label in labels]
    assert all(named), [lb for lb, m in zip(labels, named, strict=True) if not m]
    assert {m.group(1) for m in named} <= known
    from chipforge.studio import compute

    switches = {"--" + k.replace("_", "-") for k in compute.TRAIN_OPTIONS + compute.SERVE_OPTIONS}
    assert switches <= known
    assert (studio.DEFAULTS["isl"], studio.DEFAULTS["osl"]) == (str(SERVE_ISL), str(SERVE_OSL))


def _walk(component):
    yield component
    children = getattr(component, "children", None)
    for c in children if isinstance(children, list) else [children]:
        if c is not None and not isinstance(c, str):
            yield from _walk(c)


def test_a_parallel_degree_is_refused_in_one_wording_by_the_api_and_the_tables():
    """`tp = 0` from the Python API (training and serving) or a sweep's / scenario's table:
    one check (cluster.checks.whole), so one wording, naming the flag or the key."""
    import pytest

    import chipforge as cf
    from chipforge.cluster import serve_options, train_options
    from chipforge.errors import ChipforgeError

    calls = (
        lambda: cf.plan_training("h100", "llama3-8b", 8, tp=0),
        lambda: cf.plan_serving("h100", "llama3-8b", 8, tp=0),
        lambda: train_options.parse({"tp": 0}, "training"),
        lambda: serve_options.parse({"tp": 0}, "serving"),
    )
    said = []
    for call in calls:
        with pytest.raises(ChipforgeError) as e:
            call()
        said.append(str(e.value))
    assert all("tp` must be a whole number from 1" in s or "--tp must be a whole number from 1"
               in s for s in said), said  # fmt: skip
    assert all(s.endswith(", not 0") for s in said), said


def test_a_count_in_a_scenario_or_a_sweeps_site_is_checked_as_train_and_serve_check_it():
    """decide's `isl` / `samples` and a sweep's [site] `volume`: the one count check
    (cluster.checks.whole) and its wording; `volume = true` was taken as 1 chip."""
    from pathlib import Path

    import pytest

    from chipforge.decide import scenario_from_dict
    from chipforge.errors import ChipforgeError
    from chipforge.explore.system import SystemTableError, parse_site

    with pytest.raises(SystemTableError, match=r"^site: `volume` must be a whole number from 1, "
                       "not True$"):  # fmt: skip
        parse_site({"volume": True}, "forge-n3")
    import tomllib

    rent = Path(__file__).resolve().parents[1] / "examples" / "decide" / "forge_vs_rent.toml"
    raw = tomllib.loads(rent.read_text())
    raw["workload"]["serve"][0]["isl"] = 0
    with pytest.raises(ChipforgeError, match=r"^`workload.serve.isl` must be a whole number "
                       "from 1, not 0$"):  # fmt: skip
        scenario_from_dict(raw, rent.parent)
