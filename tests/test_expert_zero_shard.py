"""The routed experts' ZeRO states shard over the expert-data-parallel ranks (dp x cp / ep),
not over all dp x cp: Megatron-Core's distributed optimizer (parallel_state
expert_data_parallel_group: world / (pp x expert_tp x ep)), torchtitan's FSDP
(dp_shard_mod_ep)."""

import pytest

from chipforge.cluster import plan_training
from chipforge.cluster.memory import (
    GRAD_BYTES,
    OPTIMIZER_BYTES,
    WEIGHT_BYTES,
    memory_per_chip,
    stage_params,
)
from chipforge.workload.config import load_model

KW = dict(tp=1, pp=4, cp=1, ep=8, recompute="selective", mb=1, seq=4096)


def _split(c, pp: int, tp: int, ep: int) -> tuple[float, float]:
    """(dense, expert) parameters on the heaviest stage, counted from the config alone."""
    layers = -(-c.layers // pp)  # GPT-OSS: 36 layers, all MoE, 9 a stage
    expert = layers * c.experts * c.ffn_matrices * c.hidden * c.expert_ffn / (tp * ep)
    return stage_params(c, pp, tp, ep) - expert, expert


def test_zero1_optimizer_states_of_the_experts_shard_over_dp_over_ep():
    """GPT-OSS 120B, PP4 EP8 DP16 ZeRO-1 (the Megatron-Bridge H100 layout): the experts' fp32
    master weights and Adam moments split over 16 / 8 = 2 ranks, the rest over 16."""
    c = load_model("gpt-oss-120b")
    dense, expert = _split(c, 4, 1, 8)
    mem = memory_per_chip(c, dp=16, zero=1, **KW)
    assert mem["optimizer_bytes"] == pytest.approx(OPTIMIZER_BYTES * (dense / 16 + expert / 2))
    assert mem["optimizer_bytes"] > 5 * OPTIMIZER_BYTES * (dense + expert) / 16  # was / 16
    assert mem["gradients_bytes"] == pytest.approx(GRAD_BYTES * (dense + expert))  # ZeRO-1
    # EP as large as DP leaves the experts' states whole on every rank
    whole = memory_per_chip(c, dp=8, zero=1, **KW)
    assert whole["optimizer_bytes"] == pytest.approx(OPTIMIZER_BYTES * (dense / 8 + expert))


def test_zero3_weights_shard_likewise_and_each_rank_steps_what_it_keeps():
    c = load_model("gpt-oss-120b")
    dense, expert = _split(c, 4, 1, 8)
    mem = memory_per_chip(c, dp=32, zero=3, loss="fused", **KW)
    assert mem["weights_bytes"] == pytest.approx(WEIGHT_BYTES * (dense / 32 + expert / 4))
    assert mem["gradients_bytes"] == pytest.approx(GRAD_BYTES * (dense / 32 + expert / 4))
    # one plan end to end: the planner passes the shard group, and each rank steps the
    # parameters whose states it keeps (ZeRO-0 steps them all)
    kw = dict(tp=1, pp=2, dp=16, cp=1, ep=8, zero=1, recompute="full", micro_batch=1,
              seq=1024, global_batch=16, dtype="bf16", dp_shard=0)  # fmt: skip
    c20 = load_model("gpt-oss-20b")
    d20, x20 = _split(c20, 2, 1, 8)
    run = plan_training("h100", "gpt-oss-20b", 32, **kw)
    assert run.memory["optimizer_bytes"] == pytest.approx(OPTIMIZER_BYTES * (d20 / 16 + x20 / 2))
    ddp = plan_training("h100", "gpt-oss-20b", 32, **{**kw, "zero": 0})
    share = (d20 / 16 + x20 / 2) / (d20 + x20)
    assert run.times["optimizer_s"] == pytest.approx(ddp.times["optimizer_s"] * share)
