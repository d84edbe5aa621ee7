"""The routed experts a MoE step touches (`workload.routing`): the expected number of distinct
experts hit under uniform top-k routing, checked by exact enumeration and by Monte Carlo, and
used by every graph of routed experts (the LLM builder, hence serving and training; the
imported grouped GEMM)."""

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest

from chipforge.cluster.serving import EXPERT_MATMULS, _graph
from chipforge.perf import estimate
from chipforge.perf.calibration import calibration
from chipforge.sim import run_timing
from chipforge.spec import load_chip
from chipforge.workload import Graph, MatMul, build, load_model
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


def _overheads(result) -> float:
    return sum(o.parts_s["overhead"] for o in result.ops)


@pytest.mark.parametrize("batch", [8, 32])
def test_a_grouped_gemm_over_unequal_row_counts_is_one_launch(batch):
    """DeepSeek-R1 decode (the serving block: TP 8, FP8, on an H200) at batch 8 (57 experts hit,
    64 routes: 50 x 1 row + 7 x 2) and 32 (163 hit: 70 x 1 + 93 x 2): the second group of each
    routed-expert GEMM runs inside the same grouped-GEMM kernel, so the block pays as many
    dispatches as at batch 1, where the 8 experts hit take one row each (one group). Before,
    each group paid its own: 2 x op_overhead_s more per MoE block, ~0.46 ms per R1 step. The
    groups keep their own FLOPs, bytes and tiles."""
    c, chip = load_model("deepseek-v3"), load_chip("h200")
    dispatch = calibration(chip.family).op_overhead_s
    one = _graph(c, "decode", 1, 2048, 8, "fp8", "fp8")
    g = _graph(c, "decode", batch, 2048, 8, "fp8", "fp8")
    r = estimate(g, chip, deployed=True)
    assert len(g.ops) == len(one.ops) + 2  # experts_extra_up and experts_extra_down ...
    extra = [o for o in r.ops if "experts_extra" in o.name]
    assert len(extra) == 2 and all(o.parts_s["overhead"] == 0 < o.time_s for o in extra)
    # ... launched with experts_up / experts_down: the block's dispatches are batch 1's
    launches = _overheads(r) / dispatch
    assert launches == pytest.approx(_overheads(estimate(one, chip, deployed=True)) / dispatch)
    assert launches == pytest.approx(len(g.ops) - 2)
    # the same graph with each group launched on its own (the pricing before): exactly two
    # dispatches more and nothing else (the FLOPs, bytes and tiles are the groups' own)
    apart = replace(g, ops=tuple(replace(op, shares_kernel=False) for op in g.ops))
    r_apart = estimate(apart, chip, deployed=True)
    assert r_apart.time_s - r.time_s == pytest.approx(2 * dispatch, rel=1e-9)
    assert r_apart.flops == r.flops
    width = c.expert_ffn // 8  # TP 8
    routed = [o for o in r.ops if o.name.split(".")[-1] in EXPERT_MATMULS]
    assert sum(o.flops for o in routed) == 2 * batch * 8 * 3 * c.hidden * width  # exact


def test_the_cycle_engine_launches_a_grouped_gemm_once():
    """The cycle engine prices the second group of a grouped GEMM with no dispatch of its own,
    as the analytical engine does (both go through `perf.engine.finish_op`): its wall cycles are
    its simulated timeline, the first group's its timeline plus one dispatch."""
    chip = load_chip("forge-n3").model_copy(update={"cores": 2})
    dispatch = calibration(chip.family).op_overhead_s
    first = MatMul(name="experts_up", m=1, n=256, k=512, batch=3)
    second = replace(first, name="experts_extra_up", m=2, batch=2, shares_kernel=True)
    graph = Graph("moe", (first, second))
    cycle, fast = run_timing(graph, chip), estimate(graph, chip)
    for r in (cycle, fast):
        assert [o.parts_s["overhead"] for o in r.ops] == [dispatch, 0.0]
    host, shared = cycle.ops
    assert shared.cycles == pytest.approx(shared.time_s * chip.clock)  # the timeline alone
    assert host.cycles == pytest.approx(host.time_s * chip.clock)
    assert host.cycles > dispatch * chip.clock
    # launched on its own, the second group costs one dispatch more on either engine, and
    # nothing else moves
    alone = Graph("one", (replace(second, shares_kernel=False),))
    for engine, r in ((run_timing, cycle), (estimate, fast)):
        lone = engine(alone, chip).ops[0]
        assert lone.time_s - r.ops[1].time_s == pytest.approx(dispatch, rel=1e-9)
        assert lone.flops == r.ops[1].flops and lone.bytes_by_level == r.ops[1].bytes_by_level


def test_training_prices_the_grouped_gemms_backward_as_one_launch_each():
    """A training layer (60 experts, top-4: 16384 routes over 60 experts, 4 with one row more):
    the second group's forward GEMMs and their dgrad and wgrad run inside the first group's
    kernels, six dispatches fewer than six kernels of their own; FLOPs unchanged."""
    c = replace(load_model("qwen3-30b-a3b"), experts=60, top_k=4)
    chip = load_chip("h100")
    dispatch = calibration(chip.family).op_overhead_s
    g = build(c, phase="train", batch=1, seq=4096, scope="layer")
    shared = [op for op in g.ops if op.shares_kernel]
    assert sorted(op.name.split(".", 1)[-1] for op in shared) == sorted(
        f"experts_extra_{p}{s}" for p in ("up", "down") for s in ("", ".dgrad", ".wgrad")
    )
    apart = replace(g, ops=tuple(replace(op, shares_kernel=False) for op in g.ops))
    r, r_apart = estimate(g, chip), estimate(apart, chip)
    assert r_apart.time_s - r.time_s == pytest.approx(6 * dispatch, rel=1e-9)
    assert r.flops == r_apart.flops


def test_the_imported_grouped_gemm_is_one_launch():
    values = {
        "x": Value((32, 16), "bf16", 2),
        "w": Value((64, 16, 32), "bf16", 2, static=True),
        "y": Value((32, 32), "bf16", 2),
    }
    node = Node("grouped_mm", ["x", "w"], ["y"], name="experts.gemm")
    ops = grouped_mm(Program("p", values, [node], ["w"]), node, Formats())
    assert [op.shares_kernel for op in ops] == [False, True]  # 18 x 1 row, 7 x 2 (.rest)
    chip = load_chip("h100")
    r = estimate(Graph("imported", tuple(ops)), chip)
    assert _overheads(r) == calibration(chip.family).op_overhead_s
