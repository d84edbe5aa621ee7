"""Training plans on many chips: collectives, memory, plan search, properties, bad input."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from chipforge.cli import app, main
from chipforge.cluster import collective_time, plan_training, topology_for
from chipforge.cluster.collectives import BANDWIDTH_EFFICIENCY, NCCL_PROTOCOLS
from chipforge.cluster.memory import activation_bytes_per_layer
from chipforge.cluster.topology import torus_shape
from chipforge.cluster.validate import run, summary
from chipforge.errors import Infeasible
from chipforge.spec import load_chip
from chipforge.workload.config import load_model

H100 = load_chip("h100")
DGX = topology_for(H100, 64)


def test_ring_all_reduce_is_reduce_scatter_plus_all_gather():
    # Patarasuk & Yuan 2009: a bandwidth-optimal all-reduce is a reduce-scatter + all-gather
    size = 4e9
    # (one NCCL call instead of two: one per-call base latency fewer; large buffers run Simple)
    ar = collective_time("all_reduce", size, 8, DGX)
    rs_ag = collective_time("reduce_scatter", size, 8, DGX) + collective_time(
        "all_gather", size, 8, DGX
    )
    simple_base = NCCL_PROTOCOLS[-1][0]
    assert ar + simple_base == pytest.approx(rs_ag, rel=1e-6)


def test_nccl_protocol_choice_small_vs_large_messages():
    # NCCL's tuner (tuning.cc): tiny messages run LL (lowest base latency, half the bandwidth),
    # large ones Simple (full bandwidth); the fastest protocol is never slower than any one
    # protocol alone, and a TPU torus (no NCCL) pays no per-call base.
    a100 = topology_for(load_chip("a100"), 4)
    ll_base, simple_base = NCCL_PROTOCOLS[0][0], NCCL_PROTOCOLS[-1][0]
    tiny = collective_time("all_reduce", 16e3, 4, a100)
    assert ll_base < tiny < simple_base + 6 * a100.up_latency
    big = collective_time("all_reduce", 1e9, 4, a100)
    bw = a100.up_bandwidth * BANDWIDTH_EFFICIENCY
    assert big == pytest.approx(simple_base + 6 * a100.up_latency + 1.5e9 / bw, rel=1e-6)
    tpu = topology_for(load_chip("tpu-v4"), 64)
    assert collective_time("all_gather", 1.0, 4, tpu) < ll_base


def test_scale_out_is_slower_than_nvlink_and_hierarchical_beats_flat():
    inside = collective_time("all_reduce", 1e9, 8, DGX)
    across = collective_time("all_reduce", 1e9, 8, DGX, span="out")
    assert across > 5 * inside  # 450 GB/s NVLink vs 50 GB/s NIC per GPU
    hier = collective_time("all_reduce", 1e9, 64, DGX)
    flat = collective_time("all_reduce", 1e9, 64, DGX, span="out")
    assert hier < flat


def test_torus_wraparound_halves_ring_time():
    tpu = topology_for(load_chip("tpu-v4"), 4096)
    assert tpu.dims == (16, 16, 16)
    wrap = collective_time("all_gather", 1e9, 16, tpu)
    from dataclasses import replace

    mesh = collective_time("all_gather", 1e9, 16, replace(tpu, wrap=False))
    assert mesh / wrap == pytest.approx(2, rel=0.05)  # scaling-book: bidirectional ring
    assert torus_shape(6144) == (24, 16, 16)


def test_activation_memory_matches_korthikanti_table2():
    # 34*s*b*h/t bytes per layer with sequence parallelism and selective recompute (Table 2)
    c = load_model("gpt3-175b")
    got = activation_bytes_per_layer(c, mb=1, seq=2048, tp=8, recompute="selective")
    assert got == 34 * 2048 * 12288 / 8
    full = activation_bytes_per_layer(c, mb=1, seq=2048, tp=8, recompute="full")
    assert got / full == 17


def test_explicit_plan_reports_what_the_issue_asks():
    r = plan_training(
        "h100", "llama3-70b", 64, tp=8, pp=2, dp=4, cp=1, ep=1, zero=1,
        recompute="selective", micro_batch=1, tokens=1e12,
    )  # fmt: skip
    d = r.to_dict()
    for key in ("step_time_s", "mfu", "hfu", "tokens_per_s", "time_to_train_s"):
        assert d[key] > 0
    assert set(d["plan"]) >= {"tp", "pp", "dp", "cp", "ep", "zero", "recompute", "micro_batch"}
    assert d["memory_per_chip_bytes"] == sum(d["memory_by_category_bytes"].values())
    assert 0.2 < d["mfu"] <= d["hfu"] < 0.8


def test_n_chips_never_beat_n_times_one_chip():
    one = plan_training("h100", "gpt2-xl", 1, seq=1024, global_batch=64)
    for n in (8, 64):
        many = plan_training("h100", "gpt2-xl", n, seq=1024, global_batch=64)
        assert many.tokens_per_s <= n * one.tokens_per_s * (1 + 1e-9)


def test_more_link_bandwidth_never_slows_a_plan():
    flags = dict(tp=8, pp=4, dp=2, cp=1, ep=1, zero=1, recompute="full", micro_batch=1)
    base = plan_training("h100", "llama3-70b", 64, topology=DGX, **flags)
    for factor in (1.5, 2, 4):
        fast = plan_training("h100", "llama3-70b", 64, topology=DGX.scaled(factor), **flags)
        assert fast.step_time_s <= base.step_time_s
    searched = plan_training("h100", "llama3-70b", 64, topology=DGX)
    assert plan_training("h100", "llama3-70b", 64, topology=DGX.scaled(2)).step_time_s <= (
        searched.step_time_s
    )


def test_search_never_reports_an_infeasible_plan():
    for model, chips in (("llama3-70b", 16), ("llama3-405b", 256), ("mixtral-8x7b", 64)):
        r = plan_training("h100", model, chips)
        assert r.memory_per_chip_bytes <= r.memory_capacity_bytes
        p = r.plan
        assert p.tp * p.pp * p.dp * p.cp == chips


def test_bad_input_says_what_would_fit():
    with pytest.raises(Infeasible, match="must divide the 64 heads.*try"):
        plan_training("h100", "llama3-70b", 16, tp=3)
    with pytest.raises(Infeasible, match="80 layers.*try --pp"):
        plan_training("h100", "llama3-70b", 16, pp=7)
    with pytest.raises(Infeasible, match="must divide --chips 16"):
        plan_training("h100", "llama3-70b", 16, tp=8, pp=2, dp=3)
    with pytest.raises(Infeasible, match="needs .* GiB per chip, has 75 GiB: raise --tp or --pp"):
        plan_training(
            "h100", "llama3-70b", 8, tp=1, pp=1, dp=8, cp=1, ep=1, zero=0,
            recompute="none", micro_batch=1,
        )  # fmt: skip
    with pytest.raises(Infeasible, match="need at least 128 chips"):
        plan_training("a100", "llama3-405b", 8)


def test_one_plan_evaluation_is_fast():
    flags = dict(tp=8, pp=16, dp=128, cp=1, ep=1, zero=1, recompute="full", micro_batch=1)
    plan_training("h100", "llama3-405b", 16384, interleave=2, **flags)  # warm the layer cache
    t = time.perf_counter()
    for _ in range(20):
        plan_training("h100", "llama3-405b", 16384, interleave=2, **flags)
    assert (time.perf_counter() - t) / 20 < 0.01


def test_validation_runs_every_training_case():
    rows = run(kinds=("training",))
    assert len(rows) >= 15
    s = summary(rows)
    # issue 7 acceptance: median 10%, none above 25%
    assert s["median_abs_error"] <= 0.10 and s["max_abs_error"] <= 0.25
    calculon_rows = [r for r in rows if r["id"].startswith(("korthikanti", "megatron"))]
    assert all(abs(r["error"]) < 0.1 for r in calculon_rows)


def test_heldout_megatron_rows_stay_within_ten_percent():
    """Table 1 rows never used to choose a mechanism or the overhead constant."""
    rows = [r for r in run(kinds=("training-heldout",)) if r["id"].startswith("megatron")]
    assert len(rows) == 5
    assert all(abs(r["error"]) < 0.1 for r in rows)


A100 = load_chip("a100")
GPT = "layers={};hidden={};heads={};ffn={};vocab=51200;act=gelu"


def _gpt(layers, hidden, heads):
    from chipforge.cluster.validate import _model

    return _model(GPT.format(layers, hidden, heads, 4 * hidden), f"gpt-{hidden}")


def test_materialized_attention_costs_most_on_narrow_models():
    """Unfused s x s scores (Megatron 2021) weigh ~a*s/h^2 of the layer's GEMM work."""
    flags = dict(tp=8, pp=1, cp=1, ep=1, zero=1, recompute="none", micro_batch=1, seq=2048)
    slow = []
    for model in (_gpt(4, 2048, 16), _gpt(4, 8192, 64)):
        t = {
            a: plan_training(A100, model, 8, dp=1, global_batch=8, attention=a, **flags)
            for a in ("flash", "materialized")
        }
        assert t["materialized"].memory_per_chip_bytes > t["flash"].memory_per_chip_bytes
        slow.append(t["materialized"].step_time_s / t["flash"].step_time_s)
    assert slow[0] > slow[1] > 1.0


def test_fp8_is_faster_than_bf16_but_not_by_the_peak_ratio():
    """Transformer Engine runs only the linear GEMMs in FP8 and pays casts."""
    flags = dict(tp=1, pp=1, dp=8, cp=1, ep=1, zero=3, recompute="none", micro_batch=10)
    mpt3b = "layers=32;hidden=2560;heads=32;ffn=10240;vocab=50368;act=gelu"
    from chipforge.cluster.validate import _model

    m = _model(mpt3b, "mpt-3b")
    bf16 = plan_training(H100, m, 8, seq=2048, global_batch=480, dtype="bf16", **flags)
    fp8 = plan_training(H100, m, 8, seq=2048, global_batch=480, dtype="fp8", **flags)
    ratio = bf16.step_time_s / fp8.step_time_s
    assert 1.0 < ratio < H100.peak_flops("fp8") / H100.peak_flops("bf16")


def test_parallel_block_and_sequence_parallel_change_what_they_should():
    flags = dict(tp=8, pp=1, dp=1, cp=1, ep=1, zero=1, recompute="full", micro_batch=1)
    m = _gpt(8, 8192, 64)
    base = plan_training(H100, m, 8, global_batch=8, **flags)
    par = plan_training(H100, m, 8, global_batch=8, parallel_block=True, **flags)
    tp_key = "tp_scale_up_s"
    assert par.exposed_comm[tp_key] == pytest.approx(base.exposed_comm[tp_key] / 2)
    no_sp = plan_training(H100, m, 8, global_batch=8, sequence_parallel=False, **flags)
    assert no_sp.step_time_s > base.step_time_s
    assert no_sp.memory_per_chip_bytes > base.memory_per_chip_bytes


def test_train_cli_json_and_errors():
    runner = CliRunner()
    res = runner.invoke(
        app, ["train", "--chip", "h100", "--model", "llama3-70b", "--chips", "64", "--json"]
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["step_time_s"] > 0 and d["plan"]["tp"] * d["plan"]["pp"] * d["plan"]["dp"] == 64
    bad = runner.invoke(
        app, ["train", "--chip", "h100", "--model", "llama3-70b", "--chips", "16", "--tp", "3"]
    )
    assert bad.exit_code != 0


def test_train_cli_attention_kernel_and_interleave(monkeypatch, capsys):
    """--attention and --interleave reach the plan: the FA1-class kernel (capped at 40% of A100
    peak) is slower than perf's flash on a long sequence, the plan keeps the interleave given,
    and an unknown kernel is a one-line error naming --attention."""
    runner = CliRunner()
    args = [
        "train",
        "--chip",
        "a100",
        "--model",
        "llama3-8b",
        "--chips",
        "8",
        "--tp",
        "8",
        "--pp",
        "1",
        "--dp",
        "1",
        "--cp",
        "1",
        "--ep",
        "1",
        "--zero",
        "1",
        "--recompute",
        "full",
        "--micro-batch",
        "1",
        "--seq",
        "16384",
        "--global-batch",
        "8",
        "--json",
    ]
    mfu = {}
    for kernel in ("flash", "flash1"):
        res = runner.invoke(app, [*args, "--attention", kernel])
        assert res.exit_code == 0, res.output
        mfu[kernel] = json.loads(res.output)["mfu"]
    assert mfu["flash1"] < 0.9 * mfu["flash"]
    staged = [*args, "--interleave", "2"]
    staged[staged.index("--tp") + 1], staged[staged.index("--pp") + 1] = "4", "2"
    res = runner.invoke(app, staged)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["plan"]["interleave"] == 2
    monkeypatch.setattr(sys, "argv", ["chipforge", *args, "--attention", "flash3"])
    with pytest.raises(SystemExit) as done:
        main()
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2 and "--attention" in err and len(err.splitlines()) == 1


@settings(max_examples=15, deadline=None)
@given(
    tp=st.sampled_from([1, 2, 4, 8]),
    pp=st.sampled_from([1, 2, 4, 8]),
    factor=st.floats(1.0, 8.0),
    recompute=st.sampled_from(["none", "selective", "full"]),
)
def test_property_faster_links_never_slow_any_plan(tp, pp, factor, recompute):
    flags = dict(tp=tp, pp=pp, dp=64 // (tp * pp), cp=1, ep=1, zero=3, micro_batch=1)
    try:
        base = plan_training("h100", "llama3-70b", 64, topology=DGX, recompute=recompute, **flags)
    except Infeasible:
        return  # the same plan is infeasible at any bandwidth (memory does not depend on it)
    fast = plan_training(
        "h100", "llama3-70b", 64, topology=DGX.scaled(factor), recompute=recompute, **flags
    )
    assert fast.step_time_s <= base.step_time_s


def test_layer_cache_follows_chip_content():
    """Designs built one after another (as a sweep does) each get their own layer timings: the
    cache is keyed on the chip's content, not on a name or a reusable object id."""
    base = load_chip("h100")

    def step(f: float) -> float:
        chip = base.model_copy(update={"clock": base.clock * f})
        kw = dict(tp=8, pp=1, dp=1, cp=1, ep=1, zero=1, recompute="full", micro_batch=1)
        return plan_training(chip, "llama3-8b", 8, seq=4096, global_batch=8, **kw).step_time_s

    seq = [step(f) for f in (0.5, 1.0) * 3]
    assert len(set(seq[0::2])) == len(set(seq[1::2])) == 1
    assert seq[1] < seq[0]


def test_zero3_holds_two_gathered_units_and_one_unsharded_gradient():
    """FSDP FULL_SHARD with the all-gather rate limiter (Zhao et al. VLDB 2023): besides the
    shards, two units' bf16 weights and one unit's bf16 gradients; for Llama-3-8B the largest
    unit is the 128256 x 4096 embedding (525M parameters, more than a 218M-parameter layer)."""
    flags = dict(tp=1, pp=1, dp=8, cp=1, ep=1, recompute="full", micro_batch=1)
    z3 = plan_training("h100", "llama3-8b", 8, seq=8192, global_batch=8, zero=3, **flags)
    z2 = plan_training("h100", "llama3-8b", 8, seq=8192, global_batch=8, zero=2, **flags)
    assert z3.memory["zero3_gathered_bytes"] == 128256 * 4096 * (2 * 2 + 2)
    assert z2.memory["zero3_gathered_bytes"] == 0
    # everything else ZeRO-3 shards further
    assert z3.memory["weights_bytes"] == pytest.approx(z2.memory["weights_bytes"] / 8)


def test_cp_error_suggests_context_splits_that_work():
    from chipforge.cluster.training import Plan, check_plan

    c = load_model("llama3-8b")
    with pytest.raises(Infeasible, match=r"--cp 3 must divide --seq 8192") as err:
        check_plan(c, 12, Plan(tp=1, pp=1, dp=4, cp=3), global_batch=12, seq=8192)
    ok = [int(x) for x in err.value.args[0].split("try --cp in [")[1].rstrip("]").split(", ")]
    assert ok == [1, 2, 4]  # the divisors of 12 chips that split 8192 tokens into even chunks
    for cp in ok:  # each suggestion passes, with dp taking the rest of the chips
        check_plan(c, 12, Plan(tp=1, pp=1, dp=12 // cp, cp=cp), global_batch=12, seq=8192)


def test_alternatives_are_the_next_fastest_feasible_plans():
    """Ranked by step time after the chosen plan; each, evaluated on its own as an explicit plan,
    is feasible and gives the step time listed."""
    best = plan_training("h100", "llama3-70b", 64, seq=4096, global_batch=128, alternatives=4)
    alts = best.alternatives
    assert len(alts) == 4
    steps = [a["step_time_s"] for a in alts]
    assert steps == sorted(steps) and best.step_time_s <= steps[0]
    assert all(a["plan"] != asdict(best.plan) for a in alts)
    for a in alts:
        again = plan_training("h100", "llama3-70b", 64, seq=4096, global_batch=128, **a["plan"])
        assert again.step_time_s == pytest.approx(a["step_time_s"])
        assert again.memory_per_chip_bytes <= again.memory_capacity_bytes
    assert plan_training("h100", "llama3-70b", 64, seq=4096, global_batch=128).alternatives == ()


def test_an_unsplit_sequence_takes_any_length():
    """Only context parallelism needs even chunks (two per rank); cp = 1 takes an odd length."""
    from chipforge.cluster.training import Plan, check_plan

    check_plan(load_model("llama3-8b"), 8, Plan(tp=1, pp=1, dp=8, cp=1), global_batch=8, seq=4095)


def test_assumed_h100_flash1_rate_against_the_long_sequence_rows():
    """No source measures the FA1-era Triton kernel on H100 (cluster/layer.py takes FA2's 35%
    scaled by the A100 FA1/FA2 ratio). Where attention weighs most, MosaicML's measured MPT-7B
    rows at 8K-64K tokens (held out) check it: within 12% on H100, as on A100."""
    rows = {r["id"]: r for r in run(kinds=("training-heldout",))}
    for chip in ("h100", "a100"):
        for seq in (8192, 32768, 65536):
            assert abs(rows[f"mpt-7b-8x{chip}-s{seq}"]["error"]) < 0.12


def test_attention_recomputed_names_recompute_modules():
    """The modules whose recomputation reruns the CP ring are modules the layer prices, so a
    renamed module cannot silently drop out of the ring's second pass."""
    from chipforge.cluster.layer import ATTENTION_RECOMPUTED, RECOMPUTE_MODULES

    assert ATTENTION_RECOMPUTED.issubset(RECOMPUTE_MODULES)
    assert {"layernorm", "mlp", "op_sac"}.isdisjoint(ATTENTION_RECOMPUTED)
