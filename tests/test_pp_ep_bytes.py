"""The bytes the pipeline send/recv and the MoE all-to-alls move under FP8/FP4 GEMMs: the
stage boundary carries the 16-bit residual stream (Megatron's pipeline_dtype), the MoE combine
the 16-bit expert outputs, the dispatch the 16-bit hidden states unless the run quantizes it
(DeepSeek-V3's FP8 dispatch)."""

from __future__ import annotations

import pytest

from chipforge.cluster import validate
from chipforge.cluster.collectives import collective_time
from chipforge.cluster.topology import topology_for
from chipforge.cluster.training import Plan, RunOptions, pp_hop
from chipforge.spec.loader import load_chip
from chipforge.workload.config import load_model


def test_pp_hop_moves_16_bits_under_fp8_and_fp4():
    """Llama 3 8B, TP2 PP4 on 64 H100, micro-batch 1 of 8K tokens: one hop sends the TP shard
    of 8192 x 4096 activations at 2 bytes under BF16, FP8 and FP4 alike, 4 under FP32."""
    c, topo = load_model("llama3-8b"), topology_for(load_chip("h100"), 64)
    plan, run = Plan(tp=2, pp=4, dp=8), RunOptions()

    def hop(dtype: str) -> float:
        return pp_hop(c, plan, topo, seq=8192, dtype=dtype, run=run)

    by_hand = collective_time("send_recv", 8192 * c.hidden * 2 / 2, 2, topo, stride=2 * 8)
    assert hop("bf16") == pytest.approx(by_hand)
    assert hop("fp8") == hop("fp4") == hop("bf16")
    assert hop("fp32") > hop("bf16")
    assert pp_hop(c, Plan(tp=2, pp=1, dp=32), topo, seq=8192, dtype="fp8", run=run) == 0.0


def test_serving_pp_hop_moves_two_16_bit_tensors_under_fp8():
    """Serving: what a second pipeline stage adds to a Llama 3 70B FP8 prefill step of 2 x 1024
    tokens at TP4 on 8 H100 is two send/recvs of 16-bit activations, hidden_states and residual
    (TensorRT-LLM's PipelineInterface, vLLM's IntermediateTensors); a decode step's hops carry
    one token per sequence, and four stages make three boundaries."""
    from chipforge.cluster.serving import _step

    chip, c = load_chip("h100"), load_model("llama3-70b")
    topo = topology_for(chip, 8)

    def step(phase: str, b: int, n: int, pp: int) -> float:
        return _step(chip, c, topo, phase, b, n, 2, pp, 1, "fp8", "fp8")

    def message(tokens: int) -> float:  # one tensor of tokens x hidden at 2 bytes
        return collective_time("send_recv", tokens * c.hidden * 2, 2, topo, stride=2)

    assert step("prefill", 2, 1024, 2) - step("prefill", 2, 1024, 1) == pytest.approx(
        2 * message(2 * 1024)
    )
    assert step("decode", 16, 4096, 4) - step("decode", 16, 4096, 1) == pytest.approx(
        3 * 2 * message(16)
    )


def test_moe_all_to_alls_move_16_bits_unless_the_dispatch_is_fp8():
    """Mixtral 8x7B, EP8 on 8 H100, micro-batch 1 of 4K tokens: the four all-to-alls of a
    layer (dispatch and combine, forward and backward) each move 4096 x 2 routes x 4096 at
    2 bytes under BF16 and FP8 alike; with DeepSeek-V3's FP8 dispatch (block scaling) the two
    of the dispatch direction move 1 + 1/32 bytes."""
    from chipforge.cluster.training import ep_bytes, stage_cost

    chip, c = load_chip("h100"), load_model("mixtral-8x7b")
    # DP 16 over EP 8: the experts' states shard over 2 ranks (whole on each of 8 they need
    # 16 B per expert parameter, more than an H100 has)
    topo = topology_for(chip, 16)
    plan = Plan(tp=1, pp=1, dp=16, ep=8, zero=3, recompute="full")
    elems = 4096 * c.hidden * c.top_k

    def a2a(width: float) -> float:
        return collective_time("all_to_all", elems * width, 8, topo)

    def t_ep(dtype: str, run: RunOptions) -> float:
        return stage_cost(chip, c, plan, topo, seq=4096, dtype=dtype, run=run).t_ep

    bf16 = t_ep("bf16", RunOptions())
    assert bf16 == pytest.approx(4 * a2a(2) * c.layers)
    assert t_ep("fp8", RunOptions()) == pytest.approx(bf16)
    assert t_ep("fp4", RunOptions()) == pytest.approx(bf16)
    fp8 = RunOptions(fp8_dispatch=True, fp8_recipe="block")
    assert ep_bytes("fp8", fp8) == pytest.approx((1 + 1 / 32, 2))
    assert ep_bytes("bf16", fp8) == (2, 2)
    assert t_ep("fp8", fp8) == pytest.approx(2 * (a2a(1 + 1 / 32) + a2a(2)) * c.layers)


def test_train_cli_takes_fp8_dispatch():
    """`chipforge train --fp8-dispatch` prices the plan the Python API prices with it."""
    import json

    from typer.testing import CliRunner

    from chipforge.cli import app
    from chipforge.cluster import plan_training

    kw = dict(tp=1, pp=1, dp=16, cp=1, ep=8, zero=3, recompute="full", micro_batch=1, seq=4096,
              global_batch=16, dtype="fp8", fp8_recipe="block")  # fmt: skip
    args = ["train", "--chip", "h100", "--model", "mixtral-8x7b", "--chips", "16", "--json"]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    plain = json.loads(CliRunner().invoke(app, args).stdout)
    out = CliRunner().invoke(app, [*args, "--fp8-dispatch"])
    assert out.exit_code == 0, out.stdout
    api = plan_training("h100", "mixtral-8x7b", 16, fp8_dispatch=True, **kw)
    assert json.loads(out.stdout)["step_time_s"] == pytest.approx(api.step_time_s)
    assert api.step_time_s < plain["step_time_s"]


def test_pp_hop_splits_over_tp_only_under_sp_or_legacy_scatter_gather():
    """Llama 3 8B, TP2 PP4 on 64 H100, 8K tokens: without sequence parallelism Megatron-Core
    sends each rank's whole 8192 x 4096 output; legacy Megatron-LM (its 2021 scatter/gather)
    sends half from each TP rank and all-gathers it over TP on arrival; sequence parallelism
    sends the shard. Megatron-LM 2021 rows (no SP) take the scatter/gather from their source."""
    c, topo = load_model("llama3-8b"), topology_for(load_chip("h100"), 64)
    full = 8192 * c.hidden * 2
    no_sp = Plan(tp=2, pp=4, dp=8, sequence_parallel=False)

    def hop(plan: Plan, **run: bool) -> float:
        return pp_hop(c, plan, topo, seq=8192, dtype="bf16", run=RunOptions(**run))

    send = collective_time("send_recv", full, 2, topo, stride=2 * 8)
    assert hop(no_sp) == pytest.approx(send)
    shard = collective_time("send_recv", full / 2, 2, topo, stride=2 * 8)
    gather = collective_time("all_gather", full, 2, topo)
    assert hop(no_sp, pp_scatter_gather=True) == pytest.approx(shard + gather)
    assert hop(Plan(tp=2, pp=4, dp=8)) == pytest.approx(shard)
    assert hop(Plan(tp=2, pp=4, dp=8), pp_scatter_gather=True) == pytest.approx(shard)
    legacy = [r for r in validate.csv_rows("cluster_cases.csv")
              if validate.framework(r["source"]) == "megatron-lm-2021"]  # fmt: skip
    assert legacy and all(r["sp"] == "no" for r in legacy)
    assert all(validate.framework_options(r) == {"pp_scatter_gather": "yes"} for r in legacy)
