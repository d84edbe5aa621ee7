"""torchtitan's FSDP data parallelism: a pipelined stage under ZeRO-3 that keeps its weights
whole (memory.pipeline_fsdp_unsharded) still has one stage's parameters to reduce and gather
(not dp x cp times them), gathers them once a step, and reduce-scatters its accumulated
gradients after the last backward; FSDP2 reduces them in fp32 (memory.FSDP_REDUCE_BYTES)."""

from __future__ import annotations

import pytest

from chipforge.cluster.memory import FSDP_REDUCE_BYTES, GRAD_BYTES, pipeline_fsdp_unsharded
from chipforge.cluster.topology import Topology
from chipforge.cluster.training import Plan, RunOptions, plan_memory, stage_cost
from chipforge.spec import load_chip
from chipforge.workload.config import ModelConfig

TINY = ModelConfig(name="tiny", layers=4, hidden=1024, heads=8, ffn=4096, vocab=32000, seq=2048)


@pytest.mark.parametrize("loss", ["eager", "compiled"])
def test_unsharded_stage_reduces_one_stage_of_gradients(loss):
    chip = load_chip("h100")
    free = Topology(name="free", chips=16, kind="torus", domain=16, dims=(4, 4),
                    link_bandwidth=1e9, up_latency=0.0, nic_bandwidth=1e9,
                    out_latency=0.0)  # fmt: skip
    plan = Plan(pp=2, dp=8, zero=3, recompute="full")
    assert pipeline_fsdp_unsharded(plan.pp, plan.zero, plan.dp, loss)
    held = plan_memory(TINY, plan, seq=2048, dtype="bf16", run=RunOptions(loss=loss))
    fused = plan_memory(TINY, plan, seq=2048, dtype="bf16", run=RunOptions(loss="fused"))
    assert held["weights_bytes"] == pytest.approx(8 * fused["weights_bytes"])  # whole weights
    kw = dict(seq=2048, dtype="bf16", microbatches=8)
    whole = stage_cost(chip, TINY, plan, free, run=RunOptions(loss=loss), **kw)
    sharded = stage_cost(chip, TINY, plan, free, run=RunOptions(loss="fused"), **kw)
    # the same parameters to reduce (in fp32 there, FSDP_REDUCE_BYTES) and to gather whichever
    # way the weights are held
    fp32 = FSDP_REDUCE_BYTES[loss] / GRAD_BYTES
    assert whole.dp_reduce == pytest.approx(fp32 * sharded.dp_reduce, rel=1e-9)
    assert whole.dp_gather == pytest.approx(sharded.dp_gather, rel=1e-9)
    assert whole.dp_reduce_tail == pytest.approx(fp32 * sharded.dp_reduce_tail, rel=1e-9)


def test_unsharded_stage_gathers_its_weights_once_a_step():
    """Held whole through the step, each unit's weights are gathered once (its first
    micro-batch's forward), not twice per micro-batch: the exposed DP time does not grow with
    the micro-batches; sharded stages (the fused loss) still gather per micro-batch."""
    from chipforge.cluster.training import _step_parts

    chip = load_chip("h100")
    slow = Topology(name="slow", chips=16, kind="torus", domain=16, dims=(4, 4),
                    link_bandwidth=2e8, up_latency=0.0, nic_bandwidth=2e8,
                    out_latency=0.0)  # fmt: skip
    plan = Plan(pp=2, dp=8, zero=3, recompute="full")
    kw = dict(seq=2048, dtype="bf16", microbatches=16)
    whole = stage_cost(chip, TINY, plan, slow, run=RunOptions(loss="eager"), **kw)
    assert whole.weights_whole
    # gathered under the first forward; reduced after the last backward (nothing hides it)
    exposed = max(whole.dp_reduce_tail, whole.dp_reduce + whole.dp_gather - whole.t_f)
    assert exposed > 0
    for m in (4, 16):
        assert _step_parts(whole, m)[2] == pytest.approx(exposed, rel=1e-9)
    sharded = stage_cost(chip, TINY, plan, slow, run=RunOptions(loss="fused"), **kw)
    assert not sharded.weights_whole
    assert _step_parts(sharded, 16)[2] > _step_parts(sharded, 4)[2]


@pytest.mark.parametrize("zero", [2, 3])
def test_pipelined_fsdp_reduces_after_the_last_backward(zero):
    """torch.distributed.pipelining reduce-scatters a FSDP stage's accumulated gradients once,
    after its last micro-batch's backward (memory.PIPELINE_FSDP_GRAD_BYTES' source): nothing is
    left to hide them, where Megatron-Core's buckets ("fused") reduce under that backward."""
    from chipforge.cluster.memory import pipeline_fsdp_reduces_after
    from chipforge.cluster.training import _step_parts

    chip = load_chip("h100")
    slow = Topology(name="slow", chips=16, kind="torus", domain=16, dims=(4, 4),
                    link_bandwidth=2e9, up_latency=0.0, nic_bandwidth=2e9,
                    out_latency=0.0)  # fmt: skip
    plan = Plan(pp=2, dp=8, zero=zero, recompute="full")
    assert pipeline_fsdp_reduces_after(plan.pp, plan.zero, plan.dp, "eager")
    assert not pipeline_fsdp_reduces_after(1, plan.zero, plan.dp, "eager")
    kw = dict(seq=2048, dtype="bf16", microbatches=8)
    after = stage_cost(chip, TINY, plan, slow, run=RunOptions(loss="eager"), **kw)
    under = stage_cost(chip, TINY, plan, slow, run=RunOptions(loss="fused"), **kw)
    assert after.reduce_after_backward and not under.reduce_after_backward
    gather = after.dp_gather if zero == 3 else 0.0
    assert _step_parts(after, 8)[2] == pytest.approx(
        max(after.dp_reduce_tail, after.dp_reduce + gather - (after.t_f if zero == 3 else 0.0)),
        rel=1e-9,
    )
    if zero == 2:  # bf16 there (FSDP_REDUCE_BYTES), under the last backward where buckets are
        assert after.dp_reduce == pytest.approx(2 * under.dp_reduce, rel=1e-9)
        assert _step_parts(under, 8)[2] == pytest.approx(
            max(under.dp_reduce_tail, under.dp_reduce - under.t_b), rel=1e-9
        )
        assert _step_parts(after, 8)[2] > _step_parts(under, 8)[2]


def test_torchtitan_fsdp_reduces_its_gradients_in_fp32():
    """torchtitan's MixedPrecisionPolicy(reduce_dtype=float32) (memory.FSDP_REDUCE_BYTES): with
    latency-free links the reduce-scatter moves twice Megatron-Core's bf16 gradients' bytes;
    the weights' all-gather stays bf16, and DDP (ZeRO 0) reduces as before."""

    chip = load_chip("h100")
    free = Topology(name="free", chips=16, kind="torus", domain=16, dims=(4, 4),
                    link_bandwidth=1e9, up_latency=0.0, nic_bandwidth=1e9,
                    out_latency=0.0)  # fmt: skip
    kw = dict(seq=2048, dtype="bf16", microbatches=4)
    for zero in (0, 3):
        plan = Plan(dp=16, zero=zero, recompute="full")
        titan = stage_cost(chip, TINY, plan, free, run=RunOptions(loss="eager"), **kw)
        mcore = stage_cost(chip, TINY, plan, free, run=RunOptions(loss="fused"), **kw)
        ratio = 4 / 2 if zero else 1.0
        assert titan.dp_reduce == pytest.approx(ratio * mcore.dp_reduce, rel=1e-9)
        assert titan.dp_gather == pytest.approx(mcore.dp_gather, rel=1e-9)
