"""A pipelined stage under ZeRO-3 that keeps its weights whole (torchtitan's FSDP under
pipeline parallelism, memory.pipeline_fsdp_unsharded) still has one stage's parameters: its
gradients' reduce-scatter and its weights' all-gathers move the bytes of that stage, not
dp x cp times them."""

from __future__ import annotations

import pytest

from chipforge.cluster.memory import pipeline_fsdp_unsharded
from chipforge.cluster.topology import topology_for
from chipforge.cluster.training import Plan, RunOptions, plan_memory, stage_cost
from chipforge.spec import load_chip
from chipforge.workload.config import ModelConfig

TINY = ModelConfig(name="tiny", layers=4, hidden=1024, heads=8, ffn=4096, vocab=32000, seq=2048)


@pytest.mark.parametrize("loss", ["eager", "compiled"])
def test_unsharded_stage_reduces_one_stage_of_gradients(loss):
    chip = load_chip("h100")
    topo = topology_for(chip, 16)
    plan = Plan(pp=2, dp=8, zero=3, recompute="full")
    assert pipeline_fsdp_unsharded(plan.pp, plan.zero, plan.dp, loss)
    held = plan_memory(TINY, plan, seq=2048, dtype="bf16", run=RunOptions(loss=loss))
    fused = plan_memory(TINY, plan, seq=2048, dtype="bf16", run=RunOptions(loss="fused"))
    assert held["weights_bytes"] == pytest.approx(8 * fused["weights_bytes"])  # whole weights
    kw = dict(seq=2048, dtype="bf16", microbatches=8)
    whole = stage_cost(chip, TINY, plan, topo, run=RunOptions(loss=loss), **kw)
    sharded = stage_cost(chip, TINY, plan, topo, run=RunOptions(loss="fused"), **kw)
    # the same parameters to reduce and gather whichever way the weights are held
    assert whole.dp_reduce == pytest.approx(sharded.dp_reduce, rel=1e-9)
    assert whole.dp_gather == pytest.approx(sharded.dp_gather, rel=1e-9)
    assert whole.dp_reduce_tail == pytest.approx(sharded.dp_reduce_tail, rel=1e-9)


def test_unsharded_stage_gathers_its_weights_once_a_step():
    """Held whole through the step, each unit's weights are gathered once (its first
    micro-batch's forward), not twice per micro-batch: the exposed DP time does not grow with
    the micro-batches; sharded stages (the fused loss) still gather per micro-batch."""
    from chipforge.cluster.topology import Topology
    from chipforge.cluster.training import _step_parts

    chip = load_chip("h100")
    slow = Topology(name="slow", chips=16, kind="torus", domain=16, dims=(4, 4),
                    link_bandwidth=2e8, up_latency=0.0, nic_bandwidth=2e8,
                    out_latency=0.0)  # fmt: skip
    plan = Plan(pp=2, dp=8, zero=3, recompute="full")
    kw = dict(seq=2048, dtype="bf16", microbatches=16)
    whole = stage_cost(chip, TINY, plan, slow, run=RunOptions(loss="eager"), **kw)
    assert whole.weights_whole
    exposed = max(whole.dp_reduce_tail, whole.dp_reduce + whole.dp_gather - whole.t_b - whole.t_f)
    assert exposed > 0
    for m in (4, 16):
        assert _step_parts(whole, m)[2] == pytest.approx(exposed, rel=1e-9)
    sharded = stage_cost(chip, TINY, plan, slow, run=RunOptions(loss="fused"), **kw)
    assert not sharded.weights_whole
    assert _step_parts(sharded, 16)[2] > _step_parts(sharded, 4)[2]
