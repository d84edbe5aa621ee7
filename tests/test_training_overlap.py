"""TP communication overlap as PyTorch's async TP and Transformer Engine's userbuffers run it
(each collective pipelined with the GEMMs it feeds or is fed by, one chunk exposed), and the
context-parallel ring as TE's AttnFuncWithCPAndKVP2P runs it (one K/V transfer per step beside
one block, 16-bit K/V, K/V and their gradients in the backward pass)."""

from __future__ import annotations

import pytest

from chipforge.cluster import plan_training
from chipforge.cluster.collectives import collective_time
from chipforge.cluster.layer import TP_GROUPS, LayerShape, layer_costs, tp_gemms
from chipforge.cluster.topology import topology_for
from chipforge.cluster.training import cp_ring, tp_overlapped
from chipforge.perf import estimate
from chipforge.spec.loader import load_chip
from chipforge.workload.config import load_model
from chipforge.workload.llm import build


def test_tp_overlap_by_hand():
    """A pair of a GEMM of G s and a collective of C s takes max(G, G/tp + C): 1/8 + 2 - 1 for
    the attention input, 1/16 + 2 - 1/2 for its output, nothing under the 4 s MLP up
    projection, 1/4 + 2 - 2 under the down projection; the backward pass the same with the
    dgrads; the recomputed forward once more."""
    gemms = {"attn_in": (1.0, 1.0), "attn_out": (0.5, 0.5), "ffn_in": (4.0, 4.0),
             "ffn_out": (2.0, 2.0)}  # fmt: skip
    one = 1 / 8 + 2 - 1 + (1 / 16 + 2 - 0.5) + 0 + (1 / 4 + 2 - 2)
    assert tp_overlapped(gemms, 2.0, 2.0, 8, recompute=False, parallel_block=False) == (
        pytest.approx(2 * one)
    )
    assert tp_overlapped(gemms, 2.0, 2.0, 8, recompute=True, parallel_block=False) == (
        pytest.approx(3 * one)
    )
    # parallel block: one all-gather under both input GEMMs, one reduce-scatter after both
    both = 0 + (2.5 / 8 + 3 - 2.5)  # 5 s of input GEMMs hide 3 s; 2.5 s of output GEMMs not
    assert tp_overlapped(gemms, 3.0, 3.0, 8, recompute=False, parallel_block=True) == (
        pytest.approx(2 * both)
    )
    assert tp_overlapped(gemms, 2.0, 2.0, 1, recompute=False, parallel_block=False) == 0.0
    # a slow link exposes all but the GEMM's last (tp-1)/tp; a fast one nothing
    assert tp_overlapped({"attn_in": (1.0, 0.0)}, 9.0, 0.0, 4, recompute=False,
                         parallel_block=False) == pytest.approx(9 - 0.75)  # fmt: skip


def test_tp_groups_are_the_block_gemms_and_reach_the_plan():
    """Llama 3 8B TP8 on H100: the groups are qkv / o_proj / ffn_up / ffn_down (perf's times of
    the layer graph's ops), and the plan's exposed TP time is m x layers x tp_overlapped."""
    chip, c = load_chip("h100"), load_model("llama3-8b")
    seq, mb, tp = 4096, 2, 8
    gemms = tp_gemms(LayerShape(chip, c, tp, mb, seq, 1, "bf16"))
    ops = {o.name.split(".", 1)[1]: o.time_s for o in estimate(
        build(c, dtype="bf16", phase="train", batch=mb, seq=seq, tp=tp, scope="layer"), chip
    ).ops}  # fmt: skip
    names = dict(zip(TP_GROUPS, ("qkv_proj", "o_proj", "ffn_up", "ffn_down"), strict=True))
    for group, name in names.items():
        assert gemms[group] == pytest.approx((ops[name], ops[f"{name}.dgrad"]))
    res = plan_training(chip, c, 8, tp=8, pp=1, dp=1, cp=1, ep=1, zero=1, recompute="selective",
                        micro_batch=mb, seq=seq, global_batch=4, tp_overlap=True)  # fmt: skip
    topo = topology_for(chip, 8)
    act = mb * seq * c.hidden * 2
    ag, rs = (collective_time(k, act, tp, topo) for k in ("all_gather", "reduce_scatter"))
    per_layer = tp_overlapped(gemms, ag, rs, tp, recompute=False, parallel_block=False)
    assert per_layer > 0  # the attention GEMMs are shorter than their collectives
    assert res.exposed_comm["tp_scale_up_s"] == pytest.approx(2 * c.layers * per_layer)
    plain = plan_training(chip, c, 8, tp=8, pp=1, dp=1, cp=1, ep=1, zero=1, micro_batch=mb,
                          recompute="selective", seq=seq, global_batch=4)  # fmt: skip
    assert plain.exposed_comm["tp_scale_up_s"] > res.exposed_comm["tp_scale_up_s"]


def test_cp_ring_by_hand():
    """cp 4 steps of 1 s (attention forward 4 s): a 2 s hop leaves 1 s per transfer, of which the
    ring's CTAs (10 % of the chip) take their share of the overlapped second; the backward moves
    4 s beside 2.5 s blocks; a recomputed core runs the forward ring twice. A 1 s hop hides."""
    assert cp_ring(2.0, 4.0, 4, 0.1, again=True) == pytest.approx(
        2 * 3 * (1 + 0.1) + 3 * (1.5 + 2.5 * 0.1)
    )
    assert cp_ring(2.0, 4.0, 4, 0.0, again=False) == pytest.approx(3 * 1 + 3 * 1.5)
    assert cp_ring(1.0, 4.0, 4, 0.0, again=True) == 0.0


def test_cp_ring_moves_16_bit_kv_and_reaches_the_plan():
    """Llama 3 8B, 8 H100, CP 8 at 8K: K and V of the 1K-token chunk (8 KV heads x 128, 16-bit)
    per hop, also under FP8 GEMMs (attention stays BF16), and the plan's exposed CP time is
    m x layers x cp_ring."""
    chip, c = load_chip("h100"), load_model("llama3-8b")
    kw = dict(tp=1, pp=1, dp=1, cp=8, ep=1, zero=1, recompute="full", micro_batch=1,
              seq=8192, global_batch=2)  # fmt: skip
    topo = topology_for(chip, 8)
    hop = collective_time("send_recv", 2 * 1024 * 8 * 128 * 2, 2, topo)
    for dtype in ("bf16", "fp8"):
        res = plan_training(chip, c, 8, dtype=dtype, **kw)
        attn = layer_costs(LayerShape(chip, c, 1, 1, 8192, 8, dtype))[2]
        ring = cp_ring(hop, attn, 8, 0.0, again=True)
        assert ring > 0  # 1K-token blocks are shorter than the hops
        assert res.exposed_comm["cp_s"] == pytest.approx(2 * c.layers * ring)


@pytest.mark.parametrize("ring", ["p2p", "torch"])
def test_layer_sac_redoes_half_the_blocks_collectives(ring):
    """torchtitan's layer policy checkpoints every second block whole (memory.LAYER_SAC): the
    backward pass reruns those blocks' forward, their TP collectives and CP ring included, so a
    layer's TP and CP time lie halfway between no recompute and full recompute (they counted
    none of it)."""
    from chipforge.cluster.topology import topology_for
    from chipforge.cluster.training import Plan, RunOptions, stage_cost
    from chipforge.spec.loader import load_chip
    from chipforge.workload.config import load_model

    chip, c = load_chip("h100"), load_model("llama3-8b")
    topo = topology_for(chip, 16)  # the CP pair 8 chips apart: in two nodes, over InfiniBand
    shape = dict(tp=8, cp=2, dp=1, micro_batch=1, sequence_parallel=False)
    run = RunOptions(cp_ring=ring, recompute_modules=("layer_sac",))

    def cost(recompute: str):
        return stage_cost(chip, c, Plan(**shape, recompute=recompute), topo, seq=8192,
                          dtype="bf16", run=run)  # fmt: skip

    none, full, half = cost("none"), cost("full"), cost("selective")
    assert none.t_tp < half.t_tp < full.t_tp and none.t_cp < half.t_cp < full.t_cp
    assert half.t_tp == pytest.approx((none.t_tp + full.t_tp) / 2)
    assert half.t_cp == pytest.approx((none.t_cp + full.t_cp) / 2)
