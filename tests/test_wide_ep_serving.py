"""Serving with DP attention and wide expert parallelism (DeepSeek's inference system: MLA and
the shared expert data-parallel, routed experts over EP144 across 18 H800 nodes)."""

from __future__ import annotations

import math

import pytest

from chipforge.cluster import plan_serving
from chipforge.cluster.kvcache import memory
from chipforge.spec.loader import load_chip
from chipforge.workload.config import load_model

KW = dict(isl=4350, osl=1200, dtype="fp8", tpot_slo=0.05)


def test_wide_ep_holds_whole_experts_over_the_ep_chips():
    c, cap = load_model("deepseek-v3"), load_chip("h800").hbm.capacity
    tp1 = memory(c, cap, tp=1, pp=1, dtype="fp8", kv_dtype="fp8")
    ep = memory(c, cap, tp=1, pp=1, dtype="fp8", kv_dtype="fp8", ep=144)
    expert = c.ffn_matrices * c.hidden * c.expert_ffn * (c.layers - c.dense_layers)
    # 256 experts on 144 chips: the busiest chip holds 2 (redundant copies fill the rest, EPLB)
    assert tp1.weights - ep.weights == pytest.approx((c.experts - 2) * expert)


@pytest.mark.xfail(
    strict=True,
    reason="DeepSeek-V3 decode at ~100+ sequences per GPU is too cheap in the model (+98% as a "
    "decode pool with the all-to-all overlapped, as the source describes); cause not isolated",
)
def test_deepseek_decode_per_h800_within_25_percent():
    """Held out: ~14.8k output tokens/s per 8-GPU H800 node at decode (Open Infra Index day 6):
    a decode pool (prompts prefilled on the prefill nodes), the EP all-to-all overlapped."""
    plan = plan_serving(
        "h800", "deepseek-v3", 144, tp=1, pp=1, ep=144, disaggregated="decode", ep_overlap=True,
        **KW,
    )  # fmt: skip
    assert plan.dp == 1 and plan.batch % 144 == 0
    assert math.isclose(plan.throughput_tokens_per_s / 144, 14.8e3 / 8, rel_tol=0.25)


def test_search_tries_wide_ep():
    searched = plan_serving("h800", "deepseek-v3", 144, **KW)
    assert searched.ep > searched.tp
