"""Parallelism-plan checks (cluster/checks.py) and their three callers: every suggested value
passes the check that suggested it, every passing value is suggested (brute force over 1..chips),
a plan that passes training's check evaluates, and the CLI names the flag on one line."""

from __future__ import annotations

import itertools
import math
import re
import sys

import pytest

from chipforge.cli import main
from chipforge.cluster import checks
from chipforge.cluster.search import _check_flags
from chipforge.cluster.serving_plan import _check
from chipforge.cluster.topology import topology_for
from chipforge.cluster.training import Plan, check_plan, evaluate_plan
from chipforge.errors import ChipforgeError, Infeasible, WorkloadError
from chipforge.spec import load_chip
from chipforge.workload.config import load_model

# heads / layers with different factors: 64/80 (powers of two), 128/126 (Llama 3 uneven
# stages), 12/12 (factor 3), 25/48 (odd heads), MoE with 8 experts
MODELS = [load_model(n) for n in ("llama3-70b", "llama3-405b", "gpt2", "gpt2-xl", "mixtral-8x7b")]
CHIPS = (6, 12, 16, 24, 64)
# "try --tp 8 --pp 2 --dp in [1]": the flags kept and the flag to change with its values
TRY = re.compile(r"try ((?:--[\w-]+ \d+ )*)--([\w-]+) in \[([\d, ]*)\]")


def _suggestion(message: str) -> tuple[dict[str, int], str, list[int]]:
    assert "\n" not in message
    m = TRY.search(message)
    assert m, message
    kept = dict(zip(*[iter(m.group(1).split())] * 2, strict=True))
    values = [int(v) for v in m.group(3).split(",")] if m.group(3) else []
    assert values, f"no value suggested: {message}"
    return {k[2:]: int(v) for k, v in kept.items()}, m.group(2), values


def _passes(check, **flags) -> bool:
    try:
        check(**flags)
    except ChipforgeError:
        return False
    return True


def _suggestions_are_exactly_the_passing_values(check, flags: dict, chips: int) -> int:
    """`check(**flags)` fails; its suggestion lists exactly the values in 1..chips of the named
    flag (the others as the message keeps them) that pass the same check. Returns 1."""
    with pytest.raises(ChipforgeError) as err:
        check(**flags)
    kept, flag, values = _suggestion(str(err.value))
    trial = {**flags, **kept}
    brute = [v for v in range(1, chips + 1) if _passes(check, **{**trial, flag: v})]
    assert values == brute, str(err.value)
    return 1


@pytest.mark.parametrize("uneven", [True, False])
def test_tp_and_pp_suggestions_are_the_values_that_pass(uneven):
    failures = 0
    for c, chips in itertools.product(MODELS, CHIPS):
        error = Infeasible if uneven else WorkloadError
        for tp in range(1, 2 * chips + 1):
            if not _passes(checks.tp_heads, c=c, tp=tp, chips=chips, error=error):
                failures += _suggestions_are_exactly_the_passing_values(
                    checks.tp_heads, dict(c=c, tp=tp, chips=chips, error=error), chips
                )
        for pp, il in itertools.product(range(1, 2 * chips + 1), (1, 2, 3)):
            flags = dict(c=c, pp=pp, chips=chips, uneven=uneven, interleave=il, error=error)
            if not _passes(checks.pp_layers, **flags):
                failures += _suggestions_are_exactly_the_passing_values(
                    checks.pp_layers, flags, chips
                )
    assert failures > 500  # the grid exercises the error path, not only the happy one


def _own_rule(c, flag: str, value: int, chips: int, uneven: bool) -> bool:
    if flag == "tp":
        return _passes(checks.tp_heads, c=c, tp=value, chips=chips, error=Infeasible)
    if flag == "pp":
        return _passes(
            checks.pp_layers, c=c, pp=value, chips=chips, uneven=uneven, error=Infeasible
        )
    return True


def _fixes(flags: dict, flag: str) -> list[int]:
    """The values in 1..chips of `flag` that pass product and the flag's own rule."""
    c, chips, uneven = flags["c"], flags["chips"], flags["uneven"]
    return [
        v
        for v in range(1, chips + 1)
        if _passes(checks.product, **{**flags, flag: v}) and _own_rule(c, flag, v, chips, uneven)
    ]


def test_product_suggestions_are_the_values_that_pass_product_and_the_flags_own_rule():
    failures = 0
    grid = itertools.product((1, 2, 3, 4, 8), (1, 2, 3, 4), (None, 1, 3, 4), (None, 1, 2))
    for c, chips, uneven, (tp, pp, dp, cp) in itertools.product(MODELS, CHIPS, (True, False), grid):
        exact = dp is not None and cp is not None
        flags = dict(c=c, chips=chips, exact=exact, uneven=uneven, error=Infeasible,
                     tp=tp, pp=pp, dp=dp, cp=cp)  # fmt: skip
        if _passes(checks.product, **flags):
            continue
        failures += 1

        with pytest.raises(Infeasible) as err:
            checks.product(**flags)
        if "no one flag can fix it" in str(err.value):
            given = [f for f in ("tp", "pp", "dp", "cp") if flags[f] is not None]
            assert not any(_fixes(flags, f) for f in given)
            continue
        kept, flag, values = _suggestion(str(err.value))
        assert all(flags[k] == v for k, v in kept.items())
        assert values == _fixes(flags, flag), str(err.value)
    assert failures > 100


def test_ep_suggestions_divide_every_group():
    mixtral, dense = load_model("mixtral-8x7b"), load_model("llama3-70b")
    for ep, group in itertools.product(range(2, 33), (4, 6, 12, 16, 24)):
        within = {"the experts": mixtral.experts, "dp*cp": group}
        if _passes(checks.ep_divides, c=mixtral, ep=ep, within=within, error=Infeasible):
            assert mixtral.experts % ep == 0 and group % ep == 0
            continue
        with pytest.raises(Infeasible) as err:
            checks.ep_divides(mixtral, ep, within, error=Infeasible)
        _, flag, values = _suggestion(str(err.value))
        assert flag == "ep" and values == [e for e in range(1, 33) if 8 % e == 0 and group % e == 0]
    with pytest.raises(WorkloadError, match="--ep 2 needs a MoE model; llama3-70b is dense"):
        checks.ep_divides(dense, 2, {"--tp": 8}, error=WorkloadError)


def test_training_allows_llama3_uneven_stages_and_serving_does_not():
    """Llama 3 405B trained on 16 pipeline stages: 126 layers, one fewer on the first and last
    stage (Llama 3 paper Sec. 3.3.2); serving splits the layers evenly."""
    c = load_model("llama3-405b")
    check_plan(c, 16384, Plan(tp=8, pp=16, dp=128), global_batch=2048, seq=8192)
    _check_flags(c, 16384, 8, 16, 128, 1)
    with pytest.raises(WorkloadError, match="--pp 16 must divide the 126 layers"):
        _check(c, 128, 8, 16, 1)
    _check(c, 126, 1, 126, 1)  # one layer per stage divides evenly


@pytest.mark.parametrize(
    "call",
    [
        lambda c: check_plan(c, 16, Plan(tp=3, dp=16), 64, 4096),
        lambda c: check_plan(c, 16, Plan(tp=16, pp=7), 64, 4096),
        lambda c: check_plan(c, 16, Plan(tp=8, pp=4), 64, 4096),
        lambda c: check_plan(c, 16, Plan(tp=8, pp=2, dp=2, interleave=3), 64, 4096),
        lambda c: _check_flags(c, 16, 3, None, None, None),
        lambda c: _check_flags(c, 16, 8, 2, 3, None),
        lambda c: _check_flags(c, 16, None, None, 0, None),
        lambda c: _check(c, 8, 3, 1, 1),
        lambda c: _check(c, 8, 8, 3, 1),
        lambda c: _check(c, 8, 4, 4, 1),
    ],
)
def test_callers_keep_their_error_class_and_a_suggestion_fixes_the_flag(call):
    c = load_model("llama3-70b")
    serving = call.__code__.co_names[0] == "_check"
    with pytest.raises(WorkloadError if serving else Infeasible) as err:
        call(c)
    message = str(err.value)
    assert "\n" not in message and re.match(r"(--\w+ |\w+\*\w+)", message), message
    if "whole number" in message:
        return
    kept, flag, values = _suggestion(message)
    assert f"--{flag}" in message.split(";")[0] or "*" in message.split(";")[0]


def _shapes(chips: int):
    for tp, pp, cp in itertools.product(range(1, chips + 1), repeat=3):
        if chips % (tp * pp * cp) == 0:
            yield tp, pp, chips // (tp * pp * cp), cp


@pytest.mark.parametrize(
    ("model", "chips", "seq"),
    [("gpt2", 12, 1024), ("llama3-70b", 64, 4096), ("mixtral-8x7b", 16, 4096)],
)
def test_every_plan_that_passes_check_plan_evaluates(model, chips, seq):
    """No shape error past the check: a plan either evaluates to a finite step time or is
    Infeasible for memory (its own message), never a ZeroDivisionError or a KeyError; a plan
    the check rejects gets one line naming a flag."""
    chip, c = load_chip("h100"), load_model(model)
    topo = topology_for(chip, chips)
    gb = 4 * chips
    evaluated = rejected = 0
    for (tp, pp, dp, cp), il, ep in itertools.product(_shapes(chips), (1, 2, 3), (1, 2, 8)):
        plan = Plan(tp=tp, pp=pp, dp=dp, cp=cp, ep=ep, zero=1, recompute="full", interleave=il)
        try:
            check_plan(c, chips, plan, gb, seq)
        except Infeasible as err:
            assert "\n" not in str(err) and re.match(r"(--\w+ |\w+\*\w+)", str(err)), str(err)
            rejected += 1
            continue
        try:
            r = evaluate_plan(chip, c, chips, plan, topo, seq=seq, global_batch=gb, dtype="bf16")
        except Infeasible as err:
            assert "GiB per chip" in str(err)
            continue
        assert math.isfinite(r.step_time_s) and r.step_time_s > 0
        assert 0 < r.mfu < 1
        evaluated += 1
    assert evaluated >= 10 and rejected >= 10


def _cli(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["chipforge", *argv])
    with pytest.raises(SystemExit) as done:
        main()
    return done.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--chip", "h100", "--model", "llama3-70b", "--chips", "16", "--tp", "3"],
        ["serve", "--chip", "h100", "--model", "llama3-70b", "--chips", "6", "--tp", "6"],
        [
            "serve",
            "--chip",
            "h100",
            "--model",
            "llama3-70b",
            "--chips",
            "8",
            "--tp",
            "3",
            "--pp",
            "1",
        ],
    ],
)
def test_cli_names_tp_on_one_line_and_exits_2(argv, monkeypatch, capsys):
    code, err = _cli(argv, monkeypatch, capsys)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    tp = argv[argv.index("--tp") + 1]
    assert f"--tp {tp} must divide the 64 heads of llama3-70b" in err
    _, flag, values = _suggestion(err.strip())
    assert flag == "tp" and all(64 % v == 0 for v in values)


def test_serve_cli_names_tp_when_pp_is_searched(monkeypatch, capsys):
    argv = ["serve", "--chip", "h100", "--model", "llama3-70b", "--chips", "8", "--tp", "3"]
    code, err = _cli(argv, monkeypatch, capsys)
    assert code == 2 and "--tp 3" in err


@pytest.mark.parametrize("value", [True, False, 0, 2.0])
def test_positive_refuses_a_bool_as_it_refuses_a_non_integer(value):
    """`True` is an int to Python but no count of chips: a flag given a bool is named, as the
    serving API's own whole-number check names it."""
    with pytest.raises(WorkloadError, match="--tp must be a whole number from 1"):
        checks.positive(error=WorkloadError, tp=value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"chips": None}, "--chips"), ({"isl": None}, "--isl"), ({"max_batch": 0}, "--max-batch"),
     ({"max_num_tokens": 0}, "--max-num-tokens"), ({"dense_cache": 0}, "--dense-cache"),
     ({"concurrency": 0}, "--concurrency")],
)  # fmt: skip
def test_plan_serving_counts_are_positive_or_left_out(kwargs, field):
    """The API refuses what `chipforge serve` refuses (its flags take min=1): a zero cap is no
    cap left out, and a required count left as None is named, not a TypeError later."""
    from chipforge.cluster.serving import plan_serving

    args = {"chips": 8, "isl": 128, "osl": 16, **kwargs}
    with pytest.raises(WorkloadError, match=f"^{field} must be a whole number from 1, not "):
        plan_serving("h100", "llama3-8b", args.pop("chips"), **args)


def test_plan_training_names_chips_left_as_none():
    from chipforge.cluster.search import plan_training

    with pytest.raises(WorkloadError, match="^--chips must be a whole number from 1, not None"):
        plan_training("h100", "llama3-8b", None)


@pytest.mark.parametrize("layers", [-1, 32, 10**6])
def test_offload_layers_beyond_the_model_name_their_own_rule(layers):
    """--offload-layers past every block (no stage holds more than the model) is refused by its
    rule's own line; it read 'does not fit on 8 x h100 in any plan (...); its 120 GiB ... need
    at least 2 chips'."""
    from chipforge.cluster import plan_training

    with pytest.raises(Infeasible) as e:
        plan_training("h100", "llama3-8b", 8, offload_layers=layers, activation_offload=True)
    assert str(e.value).startswith("--offload-layers must be from 0 to 31 ")
    assert "does not fit" not in str(e.value)


def test_ep_on_a_dense_model_names_its_own_rule():
    """--ep above 1 on a dense model is refused by its rule's own line; it read 'llama3-8b does
    not fit on 8 x h100 in any plan (--ep 2 needs a MoE model ...); its 120 GiB ... need at
    least 2 chips'."""
    from chipforge.cluster import plan_training

    with pytest.raises(Infeasible) as e:
        plan_training("h100", "llama3-8b", 8, ep=2)
    assert str(e.value) == "--ep 2 needs a MoE model; llama3-8b is dense: use --ep 1"


@pytest.mark.parametrize(("sizes", "shown"), [((0,), "'0'"), ([-5, 3], "'-5,3'"), ([1.5], "'1.5'")])
def test_cuda_graph_batches_error_shows_the_list_as_given(sizes, shown):
    """The refusal showed the parsed tuple ("not (0,)"), not what the user wrote."""
    from chipforge.cluster import plan_serving

    with pytest.raises(WorkloadError) as e:
        plan_serving("h100", "llama3-8b", 1, isl=512, osl=64, cuda_graph_batches=sizes)
    assert str(e.value).endswith(f"(e.g. 128,256,384,512), not {shown}")


def test_a_rule_that_fails_every_plan_is_not_called_memory():
    """Where the weights and optimizer state fit the chips, the refusal says the rule that
    failed; it read 'llama3-8b does not fit on 8 x h100 in any plan (...); its 29 GiB ... need
    at least 1 chips of 75 GiB' (and, for --interleave 2 --pp 1, gave no reason at all)."""
    from chipforge.cluster import plan_training

    m = "llm:llama3-8b,layers=4"
    with pytest.raises(Infeasible) as e:
        plan_training("h100", m, 8, interleave=2, pp=1)
    assert str(e.value).startswith("--interleave 2 splits each pipeline stage into chunks")
    assert str(e.value).endswith("it needs --pp above 1, not 1")
    with pytest.raises(Infeasible) as e:
        plan_training("h100", m, 8, schedule="dualpipe", pp=1)
    assert str(e.value).startswith("no plan of llama3-8b on 8 x h100: --schedule dualpipe needs")
    with pytest.raises(Infeasible, match="need at least 128 chips"):  # memory stays memory
        plan_training("h100", "llama3-405b", 8)
