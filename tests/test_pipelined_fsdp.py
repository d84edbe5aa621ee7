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
