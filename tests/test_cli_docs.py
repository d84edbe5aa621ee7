"""The command line keeps one vocabulary: docs/cli.md is generated from the app (stale -> fail),
and a flag means the same thing, with the same type, in every command."""

from __future__ import annotations

from chipforge.cli.reference import DOC, FLAG_MEANINGS, commands, kind, markdown, options


def test_cli_reference_is_current():
    assert DOC.read_text() == markdown(), (
        "docs/cli.md is stale: run `python -m chipforge.cli.reference`"
    )


def test_a_flag_means_one_thing_everywhere():
    wrong = []
    for name, cmd in commands():
        for p in options(cmd):
            for flag in p.opts:
                if flag not in FLAG_MEANINGS:
                    continue
                want, word = FLAG_MEANINGS[flag]
                help_ = (p.help or "").lower()
                if kind(p) != want or word.lower() not in help_:
                    wrong.append(f"{name} {flag}: {kind(p)}, {p.help!r}")
    assert not wrong, "\n".join(wrong)


def test_every_command_prints_json_and_reports_where_it_has_one():
    names = dict(commands())
    for name, cmd in names.items():
        flags = {o for p in options(cmd) for o in p.opts}
        if name not in ("studio",):
            assert "--json" in flags, name
    for name in ("evaluate", "compare", "simulate", "cost", "train", "serve", "datacenter"):
        flags = {o for p in options(names[name]) for o in p.opts}
        assert {"--html", "--png", "--out"} <= flags, name


def test_every_training_option_of_the_api_is_a_train_flag():
    """Every keyword `plan_training` takes is reachable from `chipforge train`, under its own
    name (`--sp` for sequence_parallel), and reaches the API with the same meaning: legacy
    Megatron-LM's scatter/gather stage send, the parallel block, eager ops and PyTorch's ring
    attention given as flags price the plan the API prices, and not the plan without them."""
    import inspect
    import json

    from typer.testing import CliRunner

    from chipforge.cli import app
    from chipforge.cluster import plan_training

    flags = {o for p in options(dict(commands())["train"]) for o in p.opts}
    renamed = {"sequence_parallel": "--sp"}
    params = inspect.signature(plan_training).parameters
    missing = [n for n in params if renamed.get(n, "--" + n.replace("_", "-")) not in flags]
    assert not missing, (
        f"plan_training options without a `chipforge train` flag: {missing}; add each to "
        "cli/train.py and run `python -m chipforge.cli.reference`"
    )
    plan = dict(tp=2, pp=2, dp=2, cp=2, zero=1, recompute="none", micro_batch=1, seq=8192,
                global_batch=32, sequence_parallel=False)  # fmt: skip
    run = dict(pp_scatter_gather=True, eager_ops=True, parallel_block=True, cp_ring="torch")
    argv = ["train", "--chip", "h100", "--model", "llama3-8b", "--chips", "16", "--json",
            "--no-sp", "--pp-scatter-gather", "--eager-ops", "--parallel-block",
            "--cp-ring", "torch"]  # fmt: skip
    for k, v in plan.items():
        if k != "sequence_parallel":
            argv += [f"--{k.replace('_', '-')}", str(v)]
    out = CliRunner().invoke(app, argv)
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)["step_time_s"]
    assert got == plan_training("h100", "llama3-8b", 16, **plan, **run).step_time_s
    assert got != plan_training("h100", "llama3-8b", 16, **plan).step_time_s
