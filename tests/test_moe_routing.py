"""The routed experts a MoE step touches (`workload.routing`): the expected number of distinct
experts hit under uniform top-k routing, checked by exact enumeration and by Monte Carlo, and
used by every graph of routed experts (the LLM builder, hence serving and training; the
imported grouped GEMM)."""

import itertools
import math

import numpy as np
import pytest

from chipforge.cluster.serving import EXPERT_MATMULS, _graph
from chipforge.workload import MatMul, build, load_model
from chipforge.workload.costs import grouped_mm
from chipforge.workload.imported import Formats, Node, Program, Value
from chipforge.workload.routing import expected_experts_hit, experts_hit


def test_expected_experts_hit_by_exact_enumeration():
    # E = 4, k = 2, T = 2: the second token's pair equals the first's (1 of 6: 2 hit), shares
    # one expert with it (4 of 6: 3 hit) or none (1 of 6: 4 hit) -> 18/6 = 3
    pairs = list(itertools.combinations(range(4), 2))
    exact = np.mean([len(set(a) | set(b)) for a in pairs for b in pairs])
    assert exact == 3.0
    assert expected_experts_hit(4, 2, 2) == pytest.approx(exact, rel=1e-12)
    # three tokens, top-2 of 5, every routing enumerated
    pairs = list(itertools.combinations(range(5), 2))
    exact = np.mean([len(set(a) | set(b) | set(c)) for a in pairs for b in pairs for c in pairs])
    assert expected_experts_hit(5, 2, 3) == pytest.approx(exact, rel=1e-12)


def test_expected_experts_hit_by_hand():
    # DeepSeek-V3/R1: top-8 of 256 routed experts
    assert expected_experts_hit(256, 8, 1) == pytest.approx(8)  # one token: its k experts
    assert expected_experts_hit(256, 8, 32) == pytest.approx(256 * (1 - (31 / 32) ** 32))
    assert expected_experts_hit(256, 8, 32) == pytest.approx(163.31, abs=0.01)
    assert expected_experts_hit(256, 8, 8) == pytest.approx(57.42, abs=0.01)
    assert expected_experts_hit(256, 8, 4096) == pytest.approx(256)  # a prefill chunk: all
    assert expected_experts_hit(8, 8, 3) == 8  # top-k of k: every expert, every token
    assert expected_experts_hit(256, 8, 0) == 0
    # EP: a rank holding 32 of the 256 expects its share of the group's distinct experts
    assert expected_experts_hit(256, 8, 32, local=32) == pytest.approx(163.31 / 8, abs=0.01)
    # the whole count a grouped GEMM reads: rounded, >= 1, <= the routes and the experts held
    assert experts_hit(256, 8, 32, routes=256) == 163
    assert experts_hit(256, 8, 32, routes=100) == 100
    assert experts_hit(256, 8, 1, routes=8, local=4) == 1  # 0.125 expected: at least one
    assert experts_hit(256, 8, 64, routes=8, local=4) == 3  # 4 x (1 - (31/32)^64) = 3.47
    with pytest.raises(ValueError):
        expected_experts_hit(8, 9, 1)


MONTE_CARLO = [(256, 8, 32, 256), (256, 8, 8, 256), (64, 6, 16, 64), (256, 8, 64, 32)]


@pytest.mark.parametrize("experts, top_k, tokens, local", MONTE_CARLO)
def test_expected_experts_hit_by_monte_carlo(experts, top_k, tokens, local):
    """Tokens routed to top_k distinct experts uniformly at random (the top-k of i.i.d. scores):
    the mean count of distinct experts hit among the first `local` (an EP rank's share)."""
    rng = np.random.default_rng(0)
    trials = 400
    scores = rng.random((trials, tokens, experts))
    chosen = np.argpartition(scores, -top_k, axis=-1)[..., -top_k:]  # (trials, tokens, k)
    hit = np.zeros((trials, experts), dtype=bool)
    np.put_along_axis(hit, chosen.reshape(trials, -1), True, axis=1)
    counts = hit[:, :local].sum(axis=1)
    standard_error = counts.std() / math.sqrt(trials)
    assert abs(counts.mean() - expected_experts_hit(experts, top_k, tokens, local)) < max(
        4 * standard_error, 1e-9
    )


def _experts_up(g):
    return next(op for op in g.ops if op.name.endswith("experts_up"))


def test_decode_reads_the_experts_its_batch_hits():
    """DeepSeek-R1 decode at batch 32: 163 of the 256 experts' weights read, not all 256 (the
    count before), the FLOPs still 2 per route and weight; one token reads its 8; a prefill
    chunk reads all."""
    c = load_model("deepseek-v3")
    g = build(c, phase="decode", batch=32, context=2048, scope="layer")
    # 256 routes over 163 experts: 70 experts with one row, 93 with two
    up = _experts_up(g)
    extra = next(op for op in g.ops if op.name.endswith("experts_extra_up"))
    assert (up.batch, up.m, extra.batch, extra.m) == (70, 1, 93, 2)
    routed = [op for op in g.ops if isinstance(op, MatMul) and "experts" in op.name]
    assert sum(op.weight_bytes for op in routed) == 163 * 3 * c.hidden * c.expert_ffn * 2
    assert sum(op.flops for op in routed) == 2 * 256 * 3 * c.hidden * c.expert_ffn  # exact
    assert _experts_up(build(c, phase="decode", batch=1, context=2048)).batch == 8
    assert _experts_up(build(c, phase="prefill", batch=1, seq=4096, scope="layer")).batch == 256
    # EP 8 over attention groups of 4 sequences each: 32 tokens routed in the group, this chip
    # holds 32 experts and expects 163.3 / 8 of them hit
    ep = build(c, phase="decode", batch=4, context=2048, scope="layer", ep=8)
    assert sum(op.batch for op in ep.ops if op.name.endswith("_up") and "experts" in op.name) == 20
    # the serving engine's block (TP 8, FP8) reads the same experts' weights
    served = _graph(c, "decode", 32, 2048, 8, "fp8", "fp8")
    assert sum(op.batch for op in served.ops if op.name.split(".")[-1] in EXPERT_MATMULS) == 2 * 163
    # training's micro-batch of 1 x 4096 tokens: every expert
    assert _experts_up(build(c, phase="train", batch=1, seq=4096, scope="layer")).batch == 256


def test_imported_grouped_gemm_reads_the_experts_hit():
    """A traced grouped GEMM of 32 routes over 64 experts reads 25 experts' weights (the
    expected count for 32 independent routes), not all 64, and keeps its 2 s k n FLOPs;
    with many routes every expert is read once."""

    def ops(rows, experts):
        values = {
            "x": Value((rows, 16), "bf16", 2),
            "w": Value((experts, 16, 32), "bf16", 2, static=True),
            "y": Value((rows, 32), "bf16", 2),
        }
        node = Node("grouped_mm", ["x", "w"], ["y"], name="experts.gemm")
        return grouped_mm(Program("p", values, [node], ["w"]), node, Formats())

    few = ops(32, 64)
    assert sum(op.flops for op in few) == 2 * 32 * 16 * 32
    hit = round(64 * (1 - (63 / 64) ** 32))
    assert hit == 25 and sum(op.batch for op in few) == hit  # 18 of 1 row, 7 of 2
    assert sum(op.weight_bytes for op in few) == hit * 16 * 32 * 2
    assert sum(op.bytes for op in few) < 64 * 16 * 32 * 2  # no expert's weight read twice
    many = ops(4096, 64)
    assert sum(op.weight_bytes for op in many) == 64 * 16 * 32 * 2
    assert sum(op.flops for op in many) == 2 * 4096 * 16 * 32
