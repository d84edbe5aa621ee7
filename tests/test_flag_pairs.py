"""Flags that only mean something beside another one are refused alone (one line, exit 2),
not priced as if they were not given."""

import pytest

from chipforge.cli import main

MOE = "llm:qwen3-30b-a3b,layers=4"


def fails(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1, err
    return err


def test_fp8_recipe_needs_fp8(capsys):
    err = fails(capsys, "train", "--chip", "h100", "--model", MOE, "--chips", "8",
                "--fp8-recipe", "block")  # fmt: skip
    assert "--fp8-recipe block needs --dtype fp8, not bf16" in err


SERVE = ("serve", "--chip", "h100", "--model", MOE, "--chips", "8", "--tpot-slo", "50ms")


def test_spec_tokens_and_acceptance_go_together(capsys):
    err = fails(capsys, *SERVE, "--spec-acceptance", "0.8")
    assert "--spec-acceptance needs --spec-tokens" in err
    err = fails(capsys, *SERVE, "--spec-tokens", "1")
    assert "--spec-tokens 1 needs --spec-acceptance" in err


def test_disaggregated_and_decode_pool_clash(capsys):
    err = fails(capsys, *SERVE, "--disaggregated", "--decode-pool")
    assert "--disaggregated" in err and "give one of them" in err


@pytest.mark.parametrize(
    "extra",
    [("--disaggregated",), ("--decode-pool",), ("--batching", "static"), ("--concurrency", "64")],
)
def test_slo_percentile_refused_where_not_modelled(capsys, extra):
    """The plans these flags make have no percentiles: p99 was silently held on the mean."""
    err = fails(capsys, *SERVE, "--slo-percentile", "p99", *extra)
    assert "--slo-percentile p99 is not modelled with" in err


def test_the_plan_line_names_dp_attention(capsys):
    """--ep above --tp serves the attention data-parallel in ep/tp groups; the table said only
    `dp=1`, the replica count."""
    with pytest.raises(SystemExit) as e:
        main([*SERVE, "--tp", "1", "--ep", "8"])
    out = capsys.readouterr().out
    assert e.value.code in (0, None) and "ep=8 dp=1" in out
    assert "(DP attention: 8 groups)" in out


def test_the_table_shows_the_percentiles_the_slo_holds(capsys):
    """--slo-percentile p99 holds the SLOs at p99; the table showed only the means."""
    with pytest.raises(SystemExit) as e:
        main([*SERVE, "--slo-percentile", "p99"])
    out = capsys.readouterr().out
    assert e.value.code in (0, None)
    assert "TTFT p50 / p90 / p99" in out and "TPOT p50 / p90 / p99" in out


def test_the_uneven_stage_rule_is_stated_as_the_check_applies_it(capsys):
    """5 layers on 4 stages leave 3 slots empty: refused, as `stage_layers` allows one fewer on
    each end stage; the message said 'up to 2 fewer on the first and last stage'."""
    err = fails(capsys, "train", "--chip", "h100", "--model", "llm:llama3-8b,layers=5",
                "--chips", "8", "--pp", "4")  # fmt: skip
    assert (
        "--pp 4 must divide the 5 layers of llama3-8b (the first and the last stage may "
        "each hold one fewer)" in err
    )


def test_a_prefill_pool_alone(capsys):
    """The prefill pool `plan_serving(disaggregated="prefill")` prices had no flag: a pool of
    its own size (DeepSeek's prefill EP32 beside a decode EP144) could not be asked for."""
    with pytest.raises(SystemExit) as e:
        main([*SERVE[:-2], "--tp", "1", "--ep", "8", "--prefill-pool"])
    out = capsys.readouterr().out
    assert e.value.code in (0, None) and "(prefill pool)" in out
    assert [line for line in out.splitlines() if "TPOT" in line][0].split("│")[2].strip() == "-"
    err = fails(capsys, *SERVE, "--prefill-pool", "--decode-pool")
    assert "--decode-pool and --prefill-pool" in err and "give one of them" in err


@pytest.mark.parametrize(
    ("kw", "named"),
    [({"disaggregated": "prefill"}, "--prefill-pool"), ({"batching": "static"}, "--batching"),
     ({"concurrency": 64}, "--concurrency")],
)  # fmt: skip
def test_the_api_refuses_a_percentile_it_cannot_hold_too(kw, named):
    """`plan_serving(slo_percentile=...)` held the SLOs on the mean where no percentile is
    modelled, as the command did."""
    from chipforge.api import plan_serving
    from chipforge.errors import WorkloadError

    with pytest.raises(WorkloadError, match=f"--slo-percentile p99 is not modelled with {named}"):
        plan_serving("h100", MOE, 8, tpot_slo=0.05, slo_percentile="p99", **kw)


def test_speculation_needs_a_decode_step(capsys):
    err = fails(capsys, *SERVE, "--osl", "1", "--spec-tokens", "1", "--spec-acceptance", "0.8")
    assert "--spec-tokens with --osl 1" in err


@pytest.mark.parametrize(
    ("flags", "named"),
    [(("--tpot-slo", "50 ms"), "--tpot-slo"),
     (("--spec-tokens", "1", "--spec-acceptance", "0.8"), "--spec-tokens"),
     (("--cuda-graph-batches", "8,16"), "--cuda-graph-batches")],
)  # fmt: skip
def test_a_prefill_pool_refuses_what_only_decode_uses(capsys, flags, named):
    """A prefill pool runs no decode step: a TPOT SLO, draft tokens or CUDA-graph decode sizes
    were accepted and priced as if not given."""
    err = fails(capsys, *SERVE[:-2], "--tp", "1", "--ep", "8", "--prefill-pool", *flags)
    assert f"--prefill-pool with {named}" in err and "runs no decode step" in err
