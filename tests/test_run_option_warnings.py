"""Run options and what they do: `serve --sustained-clock`, as `train --sustained-clock`, prices
the layers at the preset's power-limited sustained clock; an option that cannot act on the chip
or topology given (no sustained clock, no host link) says so in one warning line."""

import json

import pytest

from chipforge.cli import main

PREFILL = ("serve", "--model", "llm:llama3-8b,layers=4", "--chips", "1", "--tp", "1",
           "--concurrency", "1", "--isl", "8000", "--osl", "4", "--json")  # fmt: skip


def run(capsys, *args: str) -> tuple[dict, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out = capsys.readouterr()
    assert e.value.code in (0, None), out.err
    return json.loads(out.out), out.err


def test_compute_bound_prefill_slows_by_the_clock_ratio(capsys):
    boost, _ = run(capsys, *PREFILL, "--chip", "a100")
    held, err = run(capsys, *PREFILL, "--chip", "a100", "--sustained-clock")
    assert not err
    ratio = 1.41 / 1.305  # a100.toml: clock 1.41 GHz, sustained_clock 1.305 GHz
    assert 1.05 < held["ttft_s"] / boost["ttft_s"] <= ratio * 1.001
    assert held["tpot_s"] == pytest.approx(boost["tpot_s"], rel=0.01)  # memory-bound decode


def test_a_chip_without_a_sustained_clock_warns(capsys):
    boost, _ = run(capsys, *PREFILL, "--chip", "h100")
    same, err = run(capsys, *PREFILL, "--chip", "h100", "--sustained-clock")
    assert same == boost
    assert "--sustained-clock has no effect: h100 states no sustained_clock" in err


def test_train_says_so_too(capsys):
    _, err = run(capsys, "train", "--chip", "h100", "--model", "llm:llama3-8b,layers=4",
                 "--chips", "8", "--sustained-clock", "--json")  # fmt: skip
    assert "--sustained-clock has no effect: h100 states no sustained_clock" in err


def test_cp_ring_without_context_parallelism_says_so(capsys):
    args = ("train", "--chip", "h100", "--model", "llm:llama3-8b,layers=4", "--chips", "8",
            "--json", "--cp-ring", "torch")  # fmt: skip
    _, err = run(capsys, *args, "--cp", "1")
    assert "--cp-ring has no effect: CP 1 runs no ring attention" in err
    _, err = run(capsys, *args, "--cp", "2", "--seq", "16384")
    assert "--cp-ring" not in err


def test_offload_without_a_host_path_says_so(capsys):
    """dgx-h100 states no host link: the search never offloads there (the flags did nothing,
    silently); gb200-nvl72 states Grace's C2C link and LPDDR5X."""
    args = ("train", "--model", "llm:llama3-8b,layers=4", "--chips", "8", "--json",
            "--optimizer-offload", "--activation-offload")  # fmt: skip
    _, err = run(capsys, *args, "--chip", "h100")
    assert "--activation-offload has no effect: topology dgx-h100 states no host link" in err
    assert "--optimizer-offload has no effect: topology dgx-h100" in err
    _, err = run(capsys, *args, "--chip", "gb200")
    assert "offload" not in err


def test_time_to_train_in_chip_hours(capsys):
    """Published runs state their cost in GPU-hours (DeepSeek-V3: 2.664 M H800 GPU-hours)."""
    with pytest.raises(SystemExit):
        main(["train", "--chip", "h100", "--model", "llm:llama3-8b,layers=4", "--chips", "8",
              "--tokens", "1T"])  # fmt: skip
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "time to train" in line)
    data_args = ("--chip", "h100", "--model", "llm:llama3-8b,layers=4", "--chips", "8",
                 "--tokens", "1T", "--json")  # fmt: skip
    d, _ = run(capsys, "train", *data_args)
    hours = d["time_to_train_s"] * 8 / 3600
    assert f"({hours / 1e3:.3g} k chip-hours)" in row or f"({hours:,.0f} chip-hours)" in row, row


def test_gh200_offloads_to_its_grace_with_the_gh200_node_topology(capsys):
    """GH200's default topology (dgx-h100's shape) states no host link; gh200-node states its
    own Grace's C2C link and LPDDR5X, so the optimizer states can go there."""
    args = ("train", "--chip", "gh200", "--model", "llama3-70b", "--chips", "8", "--tp", "8",
            "--pp", "1", "--dp", "1", "--recompute", "none", "--micro-batch", "1",
            "--global-batch", "16", "--seq", "8192", "--optimizer-offload", "--json")  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main(list(args))
    assert e.value.code == 2 and "needs 156 GiB per chip" in capsys.readouterr().err
    d, err = run(capsys, *args, "--topology", "gh200-node")
    assert d["plan"]["optimizer_offload"] and not err
    assert d["memory_per_chip_bytes"] < 144e9


def test_sustained_clock_is_a_plan_option_of_the_api_as_of_train(capsys):
    """plan_serving(sustained_clock=True) is what `serve --sustained-clock` prints (the flag was
    the CLI's own chip transform: the API, a sweep and the studio could not ask for it)."""
    from chipforge.cluster import plan_serving

    held, _ = run(capsys, *PREFILL, "--chip", "a100", "--sustained-clock")
    plan = plan_serving("a100", "llm:llama3-8b,layers=4", 1, tp=1, concurrency=1, isl=8000,
                        osl=4, sustained_clock=True)  # fmt: skip
    assert plan.ttft_s == pytest.approx(held["ttft_s"], rel=1e-12)
    boost = plan_serving("a100", "llm:llama3-8b,layers=4", 1, tp=1, concurrency=1, isl=8000,
                         osl=4)  # fmt: skip
    assert plan.ttft_s > boost.ttft_s * 1.05


def test_sweep_and_studio_take_the_serving_switches():
    from chipforge.cluster import plan_serving
    from chipforge.explore import evaluate as ev
    from chipforge.explore import space_from_dict
    from chipforge.spec import load_chip
    from chipforge.studio.compute import SERVE_OPTIONS

    assert "sustained_clock" in SERVE_OPTIONS
    serve = {"model": "llm:llama3-8b,layers=4", "chips": 1, "isl": 2048, "osl": 64, "tp": 1}
    keys = {"sustained_clock": True, "runtime": "tensorrt-llm"}
    space = {
        "base": {"chip": "a100"},
        "params": {"clock": ["1.41 GHz"]},
        "workloads": [],
        "serving": {**serve, **keys},
        "objectives": {"serving_tokens_per_s": "max"},
    }
    row = ev.evaluate_point(space_from_dict(space), {"clock": 1.41e9})
    ref = plan_serving(load_chip("a100"), serve["model"], 1, isl=2048, osl=64, tp=1, **keys)
    assert row["serving_tokens_per_s"] == ref.throughput_tokens_per_s
    plain = plan_serving(load_chip("a100"), serve["model"], 1, isl=2048, osl=64, tp=1)
    assert row["serving_tokens_per_s"] != plain.throughput_tokens_per_s


def test_moe_options_on_a_model_without_experts_say_so(capsys):
    """--moe-host-sync, --moe-dispatcher flex and --shared-expert-overlap on a dense model (and
    the overlap on a MoE model with no shared experts, or at EP 1) were accepted and did
    nothing, silently: training prices them only on routed experts / an EP all-to-all."""
    moe = ("--moe-host-sync", "--moe-dispatcher", "flex", "--shared-expert-overlap")
    _, err = run(capsys, "train", "--chip", "h100", "--model", "llm:llama3-8b,layers=4",
                 "--chips", "8", "--json", *moe)  # fmt: skip
    for flag in ("--moe-host-sync", "--moe-dispatcher", "--shared-expert-overlap"):
        assert f"{flag} has no effect: llama3-8b has no" in err
    args = ("train", "--chip", "h100", "--chips", "8", "--json", "--shared-expert-overlap",
            "--tp", "1", "--pp", "1", "--dp", "8", "--cp", "1", "--zero", "1",
            "--recompute", "full", "--micro-batch", "1", "--global-batch", "8",
            "--seq", "1024")  # fmt: skip
    _, err = run(capsys, *args, "--model", "llm:qwen3-30b-a3b,layers=2", "--ep", "8")
    assert "--shared-expert-overlap has no effect: qwen3-30b-a3b has no shared experts" in err
    ds = "llm:deepseek-v3,layers=3,dense_layers=1,mtp_layers=0,experts=32,expert_groups=8"
    _, err = run(capsys, *args, "--model", ds, "--ep", "1")
    assert "--shared-expert-overlap has no effect: EP 1 runs no all-to-all" in err
    _, err = run(capsys, *args, "--model", ds, "--ep", "8")
    assert "has no effect" not in err


SERVE8 = ("serve", "--chip", "h100", "--chips", "8", "--isl", "512", "--osl", "64", "--json",
          "--tp", "1", "--pp", "1", "--concurrency", "8")  # fmt: skip
QWEN3 = "llm:qwen3-30b-a3b,layers=4"


@pytest.mark.parametrize(
    ("option", "model", "ep", "said"),
    [
        ("--ep-overlap", "llm:llama3-8b,layers=4", "1", "llama3-8b has no MoE layers"),
        ("--ep-overlap", QWEN3, "1", "EP 1 runs no all-to-all to hide"),
        ("--ep-overlap", QWEN3, "8", None),
        ("--adp-balance=5", QWEN3, "1", "the plan has no DP-attention groups"),
        ("--adp-balance=5", QWEN3, "8", None),
    ],
)
def test_serve_options_without_their_ep_plan_say_so(capsys, option, model, ep, said):
    """serve --ep-overlap on a dense model or at EP 1 (serving._block overlaps only a MoE
    model's EP all-to-all) and --adp-balance without DP-attention groups (ep above tp;
    serving balances only groups > 1) were accepted and did nothing, silently."""
    _, err = run(capsys, *SERVE8, option, "--model", model, "--ep", ep)
    flag = option.split("=")[0]
    if said:
        assert f"{flag} has no effect: {said}" in err
    else:
        assert flag not in err


def test_options_without_their_parallel_group_say_so(capsys):
    """--tp-overlap at TP 1, --overlap-param-gather / --bucket-size without data-parallel
    ranks (or with ZeRO 0), an --nccl-ctas cap on a group of one rank: each one warning line
    (train_options.no_effect), and the figures are those of the run without them."""
    base = ("train", "--chip", "h100", "--model", "llm:llama3-8b,layers=4", "--json",
            "--tp", "1", "--pp", "1", "--cp", "1")  # fmt: skip
    plain, _ = run(capsys, *base, "--chips", "1", "--dp", "1")
    given = ("--tp-overlap", "--overlap-param-gather", "--bucket-size", "40M",
             "--nccl-ctas", "cp=4")  # fmt: skip
    data, err = run(capsys, *base, "--chips", "1", "--dp", "1", *given)
    assert "--tp-overlap has no effect: TP 1 has no TP collectives" in err
    assert "--overlap-param-gather has no effect: DP x CP 1 has no weights to gather" in err
    assert "--bucket-size has no effect: DP x CP 1 reduces no gradients" in err
    assert "--nccl-ctas has no effect: cp 1 runs no collectives to cap" in err
    assert data["step_time_s"] == plain["step_time_s"]
    _, err = run(capsys, *base, "--chips", "2", "--dp", "2", "--zero", "0",
                 "--overlap-param-gather")  # fmt: skip
    assert "--overlap-param-gather has no effect: ZeRO 0 keeps whole weights" in err
    _, err = run(capsys, *base, "--chips", "2", "--dp", "2", "--zero", "1",
                 "--overlap-param-gather", "--nccl-ctas", "dp=4")  # fmt: skip
    assert "has no effect" not in err
