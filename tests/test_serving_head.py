"""Serving step pieces checked against a second path: the LM head against the whole-model graph's
`lm_head` costed by perf, and EP's all-to-all (one-sided inside the NVLink domain) by hand."""

import pytest

from chipforge.cluster import topology_for
from chipforge.cluster.collectives import BANDWIDTH_EFFICIENCY, collective_time
from chipforge.cluster.serving import A2A_KERNEL_S, _head, _step
from chipforge.dtypes import nbytes
from chipforge.perf import estimate
from chipforge.spec.loader import load_chip
from chipforge.workload.config import load_model
from chipforge.workload.llm import build


@pytest.mark.parametrize(
    "chip_name, model, b, tp, dt",
    [
        ("h100", "llama3-70b", 1, 8, "bf16"),  # decode at batch 1: the weight read
        ("h100", "llama3-70b", 4096, 8, "bf16"),  # many sequences: the FLOPs
        ("h100", "llama3-8b", 64, 1, "fp8"),  # narrow dtype at the deployed rate
        ("a100", "llama3-8b", 8, 2, "fp8"),  # no fp8 matrix path: the engine's fallback
    ],
)
def test_lm_head_is_costed_like_the_blocks(chip_name, model, b, tp, dt):
    chip, c = load_chip(chip_name), load_model(model)
    head = _head(chip, c, b, tp, dt)
    # reference: the `lm_head` op of the whole-model decode graph (b last positions), costed by
    # perf in the same deployed mode as the blocks
    g = build(c, phase="decode", batch=b, context=16, tp=tp, dtype=dt, scope="model")
    (ref,) = [o for o in estimate(g, chip, deployed=True).ops if o.name == "lm_head"]
    assert head == pytest.approx(ref.time_s, rel=1e-12)
    # never faster than the roofline: 2 FLOPs per MAC at the best matrix rate, the vocab x hidden
    # weight shard read once from HBM
    n = c.vocab // tp
    flops = 2 * b * n * c.hidden
    peak = max(chip.peak_flops(dt), chip.peak_flops("bf16"))
    roofline = max(flops / peak, n * c.hidden * nbytes(dt) / chip.hbm.bandwidth)
    assert head >= roofline


@pytest.mark.parametrize("phase, b, n", [("decode", 16, 1024), ("prefill", 2, 512)])
def test_ep_replaces_only_the_moe_all_reduce(phase, b, n):
    chip, c = load_chip("h100"), load_model("mixtral-8x7b")
    assert c.dense_layers == 0  # every block is a MoE block
    tp, topo = 8, topology_for(chip, 8)
    t = {ep: _step(chip, c, topo, phase, b, n, tp, 1, ep, "bf16", "bf16") for ep in (1, 2)}
    # each block ends attention and the MoE FFN with an all-reduce of its tokens' hidden states
    # (Megatron-LM row-parallel); EP turns only the MoE one into a dispatch and a combine
    # all-to-all of top_k copies of the tokens (one-sided, inside the NVLink domain), the
    # attention all-reduce stays
    tokens = b * (1 if phase == "decode" else n)
    moe_bytes = tokens * c.hidden * nbytes("bf16")
    a2a = A2A_KERNEL_S + moe_bytes * c.top_k / 2 / (topo.up_bandwidth * BANDWIDTH_EFFICIENCY)
    all_reduce = collective_time("all_reduce", moe_bytes, tp, topo)
    assert a2a != pytest.approx(all_reduce)  # the swap is visible
    # and without EP the routes' outputs are weighted and summed on the chip (TensorRT-LLM's
    # finalize kernel), with EP inside the combine all-to-all's kernel: the whole-model graph's
    # `experts_combine` op (all its blocks), costed by perf, leaves with EP
    g = build(c, phase=phase, batch=b, tp=tp, dtype="bf16", scope="model", **_kw(phase, n))
    ops = estimate(g, chip, deployed=True).ops
    (combine,) = {o.time_s / c.layers for o in ops if o.name.endswith("experts_combine")}
    assert combine > 0
    assert t[2] - t[1] == pytest.approx(c.layers * (2 * a2a - all_reduce - combine), rel=1e-9)


def _kw(phase, n):
    return {"seq": n} if phase == "prefill" else {"context": n}


@pytest.mark.parametrize("phase, b, n", [("decode", 64, 2048), ("prefill", 1, 1024)])
def test_moe_step_costs_the_leading_dense_layers_as_dense(phase, b, n):
    """DeepSeek-V3's 3 leading dense layers and 58 MoE layers: on one chip (no collectives) the
    step is the whole-model graph's blocks costed by perf, plus the per-block runtime overhead
    and the head; the whole-model graph lists both kinds of block on its own."""
    from chipforge.cluster.serving import LAYER_OVERHEAD_S

    chip, c = load_chip("h200"), load_model("deepseek-v3")
    assert c.dense_layers == 3
    kw = {"seq": n} if phase == "prefill" else {"context": n}
    g = build(c, phase=phase, batch=b, tp=1, dtype="fp8", scope="model", **kw)
    ops = estimate(g, chip, deployed=True).ops
    blocks = sum(o.time_s for o in ops if o.name.startswith(("layers.", "moe_layers.")))
    topo = topology_for(chip, 1)
    got = _step(chip, c, topo, phase, b, n, 1, 1, 1, "fp8", "fp8")
    want = blocks + c.layers * LAYER_OVERHEAD_S + _head(chip, c, b, 1, "fp8")
    assert got == pytest.approx(want, rel=1e-3)
