"""The training-plan search: its best equals an exhaustive enumeration of the same space, its
pruning keeps count, and the plans Calculon picks are never faster in chipforge's model than
chipforge's own pick (tests/data/calculon_plans.json, recorded by
benchmarks/calculon_plans.py)."""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from itertools import product
from pathlib import Path

import pytest

from chipforge.cluster import plan_training, topology_for
from chipforge.cluster.checks import balanced_ends, divisors, end_stage_split, stage_layers
from chipforge.cluster.memory import RECOMPUTE, rank_blocks
from chipforge.cluster.peers import calculon_model, calculon_plan
from chipforge.cluster.search import comm_lower_bound, compute_lower_bound, step_lower_bound
from chipforge.cluster.training import (
    FRAMEWORK_OVERHEAD,
    Plan,
    RunOptions,
    evaluate_plan,
    head_blocks,
    stage_cost,
    step_time,
)
from chipforge.errors import Infeasible, WorkloadError
from chipforge.spec import load_chip
from chipforge.workload.config import ModelConfig, load_model

SPS = (True, False)
CALCULON = json.loads((Path(__file__).parent / "data" / "calculon_plans.json").read_text())


def _ends(c, p, v, seq):
    """The space's end stages for p stages of v chunks: None where the even or Llama-3 split
    holds, else Megatron's first/last split with the least busy rank (the head on the last),
    False where none."""
    if stage_layers(c.layers, p * v):
        return None
    return balanced_ends(c.layers, c.mtp_layers, p, v, head_blocks(c, seq)) or False


def exhaustive(chip, c, chips, topo, seq, lo, hi):
    """Every plan of the search's space, each through evaluate_plan: (best (s per sequence,
    bytes), plans in the space). Written from the space's definition, not from the search."""
    best, size = None, 0
    for t in range(1, max(1, topo.domain) + 1):
        if c.heads % t or chips % t:
            continue
        for p in (d for d in divisors(chips // t) if d <= 64 and _ends(c, d, 1, seq) is not False):
            dp = chips // (t * p)
            for gb in range(lo, hi + 1):
                if gb % dp:
                    continue
                for mb, z, r, sp, v in product(
                    divisors(gb // dp), (1, 2, 3), RECOMPUTE, (True, False), range(1, 9)
                ):
                    if p == 1 and v > 1:
                        continue
                    size += 1
                    ends = _ends(c, p, v, seq) or (None, None)  # False: no split, refused below
                    plan = Plan(tp=t, pp=p, dp=dp, zero=z, recompute=r, micro_batch=mb,
                                interleave=v, sequence_parallel=sp, first_stage_layers=ends[0],
                                last_stage_layers=ends[1])  # fmt: skip
                    try:
                        res = evaluate_plan(chip, c, chips, plan, topo, seq=seq,
                                            global_batch=gb, dtype="bf16")  # fmt: skip
                    except Infeasible:
                        continue
                    # the search's lower bound never exceeds the step it bounds
                    m = gb // (dp * mb)
                    # the bubble: the other ranks' times, each at least its blocks' share
                    ranks = rank_blocks(c, p, v, end_stage_split(c.layers, p, *ends, v))
                    fill = (sum(ranks) / max(ranks) - 1) / v
                    lb = (m + fill) * step_lower_bound(chip, c, plan, seq, "bf16")
                    assert lb / (1 - FRAMEWORK_OVERHEAD) <= res.step_time_s * (1 + 1e-12)
                    # nor does the compute bound, nor its least over a shape's plans
                    cb = compute_lower_bound(chip, c, plan, seq, "bf16")
                    assert (m + fill) * cb / (1 - FRAMEWORK_OVERHEAD) <= res.step_time_s
                    least = replace(plan, recompute="none", sequence_parallel=True)
                    assert compute_lower_bound(chip, c, least, seq, "bf16") <= cb
                    # nor with the communication's bound added (the least over a shape's
                    # plans too), which is more than nothing where TP or PP is
                    stage, step = comm_lower_bound(
                        chip, c, plan, topo, seq, "bf16", RunOptions(), m
                    )
                    comm = (m + fill) * (cb + stage) + step
                    assert comm / (1 - FRAMEWORK_OVERHEAD) <= res.step_time_s
                    assert (stage > 0) == (t > 1) and (step > 0) == (p > 1)
                    # the shape's bound, the least over its plans' SP settings, under the
                    # asynchronous backward too (where a plan without SP may have the least)
                    for run in (RunOptions(), RunOptions(tp_async_backward=True)):
                        shape = comm_lower_bound(chip, c, least, topo, seq, "bf16", run, m, SPS)
                        sc = stage_cost(chip, c, plan, topo, seq=seq, dtype="bf16", run=run)
                        bound = (m + fill) * (cb + shape[0]) + shape[1]
                        assert bound / (1 - FRAMEWORK_OVERHEAD) <= step_time(sc, m) * (1 + 1e-12)
                        assert shape[1] <= step
                        if plan.sequence_parallel:  # (SP's PP shard is the smaller)
                            assert shape[1] == step
                    key = (res.step_time_s / gb, res.memory_per_chip_bytes)
                    best = key if best is None or key < best else best
    return best, size


def random_cases(n: int):
    rng = random.Random(22)
    for i in range(n):
        heads = rng.choice((8, 12, 16))
        hidden = heads * rng.choice((64, 128, 512))
        act, seq = rng.choice(("gelu", "swiglu")), rng.choice((512, 1024, 2048))
        c = ModelConfig(name=f"case{i}", layers=rng.choice((4, 6, 8, 12)), hidden=hidden,
                        heads=heads, ffn=4 * hidden, vocab=rng.choice((32000, 50257)),
                        act=act, seq=seq)  # fmt: skip
        chip = load_chip(rng.choice(("h100", "a100", "forge-n3", "tpu-v5e", "gb200")))
        chips = rng.choice((1, 2, 4, 6, 8))
        lo = rng.randint(1, 12)
        yield chip, c, chips, lo, lo + rng.randint(0, 5)


@pytest.mark.parametrize("case", list(random_cases(24)), ids=lambda x: f"{x[0].name}-{x[2]}")
def test_search_best_equals_exhaustive_enumeration(case):
    chip, c, chips, lo, hi = case
    topo = topology_for(chip, chips)
    want, size = exhaustive(chip, c, chips, topo, c.seq, lo, hi)
    try:
        got = plan_training(chip, c, chips, global_batch=(lo, hi), topology=topo)
    except Infeasible:
        assert want is None
        return
    key = (got.step_time_s / got.global_batch, got.memory_per_chip_bytes)
    assert key[0] == pytest.approx(want[0], rel=1e-9)
    n = got.search
    assert n["evaluated"] + n["pruned_memory"] + n["pruned_bound"] + n["infeasible"] == size
    assert lo <= got.global_batch <= hi and got.global_batch % got.plan.dp == 0


def test_shape_comm_bound_is_the_least_over_sequence_parallelism():
    """Llama 3 8B TP8 on 8 H100, 8K tokens, BF16, Megatron's asynchronous backward: without
    sequence parallelism the backward all-reduces hide under the weight-gradient GEMMs and the
    plan's TP time is below the SP plan's bound; the shape's bound, the least over both, stays
    below every plan's."""
    chip, topo = load_chip("h100"), topology_for(load_chip("h100"), 8)
    c, run = load_model("llama3-8b"), RunOptions(tp_async_backward=True)
    shape = Plan(tp=8, pp=1, dp=1, recompute="none", micro_batch=1)
    bound = comm_lower_bound(chip, c, shape, topo, 8192, "bf16", run, 1, SPS)[0]
    for sp, rec in product(SPS, RECOMPUTE):
        plan = replace(shape, sequence_parallel=sp, recompute=rec)
        assert bound <= stage_cost(chip, c, plan, topo, seq=8192, dtype="bf16", run=run).t_tp
    no_sp = replace(shape, sequence_parallel=False)
    t_tp = stage_cost(chip, c, no_sp, topo, seq=8192, dtype="bf16", run=run).t_tp
    assert t_tp < comm_lower_bound(chip, c, shape, topo, 8192, "bf16", run, 1)[0]  # SP's own bound


def test_pruning_cuts_the_space_and_the_405b_search_stays_fast():
    plan_training("h100", "llama3-405b", 16384)  # warm the layer cache
    t0 = time.process_time()
    best = plan_training("h100", "llama3-405b", 16384)
    assert time.process_time() - t0 < 1.0
    n = best.search
    assert n["pruned_memory"] > 0 and n["pruned_bound"] > 0
    assert n["evaluated"] < (n["pruned_memory"] + n["pruned_bound"]) / 4
    # the communication bound: TP across the scale-out network is never priced for the 405B
    # on 65,536 forge-n3 (the compute bound alone let ~3,800 plans through to be priced; ~100
    # are, now that a pipeline with fewer micro-batches than stages holds only those)
    n = plan_training("forge-n3", "llama3-405b", 65536).search
    assert n["evaluated"] < 200 and n["pruned_bound"] > 10_000


def test_the_balanced_end_stages_cost_the_search_no_time():
    """The 405B's 126 layers on every searched pp (<= 64, of 16,384 chips) x interleave 1-8,
    the search's end-stage choices computed afresh (the warm search above memoizes them): the
    pair-by-pair enumeration took ~0.3 s of process time here (~80 % of the cold search), now
    ~3 ms."""
    assert balanced_ends(16, 1, 4) == (3, 3)  # 3/5/5/3+MTP, the head not weighed
    assert balanced_ends(126, 0, 4, 3) == (30, 30) and balanced_ends(7, 0, 4, 2) is None
    balanced_ends.cache_clear()
    t0 = time.process_time()
    for p, v in product(divisors(16384, upto=64), range(1, 9)):
        balanced_ends(126, 0, p, v)
    assert time.process_time() - t0 < 0.05


def test_nvl72_domain_opens_tp16():
    # 16 > the 8 GPUs of an HGX box: the search offers TP16 only inside NVL72's domain
    shape = dict(dp=1024, cp=1, pp=1)
    assert plan_training("gb200", "llama3-405b", 16384, **shape).plan.tp == 16
    with pytest.raises(Infeasible):
        plan_training("h100", "llama3-405b", 16384, **shape)
    assert plan_training("h100", "llama3-405b", 16384).plan.tp <= 8


def test_global_batch_range_and_tokens_per_batch():
    fixed = plan_training("h100", "llama3-8b", 64, seq=4096, global_batch=256)
    ranged = plan_training("h100", "llama3-8b", 64, seq=4096, global_batch="192:320")
    assert 192 <= ranged.global_batch <= 320
    assert ranged.tokens_per_s >= fixed.tokens_per_s
    target = plan_training("h100", "llama3-8b", 64, seq=4096, tokens_per_batch=2**20)
    dp = target.plan.dp
    assert target.global_batch % dp == 0 and abs(target.global_batch - 256) <= dp / 2
    with pytest.raises(WorkloadError, match="not both"):
        plan_training("h100", "llama3-8b", 64, global_batch=256, tokens_per_batch=1e6)
    with pytest.raises(WorkloadError, match="MIN:MAX"):
        plan_training("h100", "llama3-8b", 64, global_batch="512:128")


@pytest.mark.parametrize("case", CALCULON["cases"], ids=lambda c: f"{c['model']}-{c['search']}")
def test_calculon_pick_is_never_faster_than_chipforge_pick(case):
    """Calculon's pick, priced by chipforge where it can express it, runs no more sequences
    per second than chipforge's own pick in the same space (global batch: up to Calculon's
    maximum); where it cannot (offload), the mapping names what it leaves out."""
    a100 = load_chip("a100")
    c = calculon_model(case["model_json"], case["model"])
    chips = case["chips"]
    topo = topology_for(a100, chips)
    ours = plan_training(a100, c, chips, global_batch=(1, case["max_batch"]), topology=topo)
    if case["execution"] is None:  # nothing in the shared space fits Calculon's memory model
        return  # (chipforge's pick above exists: ZeRO-2/3 and uneven stages fit it)
    plan, gb, missing = calculon_plan(case["execution"])
    if case["search"] == "with offload":
        assert missing == ["weight_offload", "activations_offload", "optimizer_offload"]
        return
    assert missing == []
    try:
        theirs = evaluate_plan(a100, c, chips, plan, topo, seq=c.seq, global_batch=gb,
                               dtype="bf16")  # fmt: skip
    except Infeasible:  # GPT-3 175B: Calculon's pick needs 77 GiB in chipforge's model (A100's
        return  # 80 GB is 74.5 GiB here; Calculon's a100_80g counts 80 GiB)
    assert ours.step_time_s / ours.global_batch <= theirs.step_time_s / gb * (1 + 1e-9)


def test_train_cli_prices_a_calculon_plan_and_names_what_it_cannot_express(tmp_path):
    import subprocess
    import sys

    def train(case: dict):
        path = tmp_path / f"{case['model']}.json"
        path.write_text(json.dumps(case["execution"]))
        a = case["model_json"]
        model = (f"llm:custom,layers={a['num_blocks']},hidden={a['hidden']},"
                 f"heads={a['attn_heads']},ffn={a['feedforward']},vocab=51200,act=gelu,"
                 f"seq={a['seq_size']}")  # fmt: skip
        args = ["train", "--chip", "a100", "--model", model, "--chips", str(case["chips"]),
                "--calculon-plan", str(path), "--json"]  # fmt: skip
        return subprocess.run([sys.executable, "-m", "chipforge", *args], capture_output=True,
                              text=True, timeout=120)  # fmt: skip

    small, offload = CALCULON["cases"][0], CALCULON["cases"][-1]
    done = train(small)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["not_expressible"] == [] and data["global_batch"] == 4
    assert data["plan"]["interleave"] == small["execution"]["pipeline_interleaving"]
    done = train(offload)  # without its offloads the 530B plan does not fit an A100
    assert done.returncode == 2
    assert "cannot express: weight_offload, activations_offload, optimizer_offload" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: needs 304 GiB per chip")


def test_pipeline_stages_are_searched_past_a_million_chips_per_replica():
    """2**20 chips of llama3-8b at tp = cp = 1 and 2**19 sequences a step: pp=1 leaves dp=2**20,
    which cannot split the batch. The search tried only pp=1 where tp*cp left a million chips
    or more (and refused); it now searches the pipeline stages there too and finds the plan an
    explicit --pp 2 gives, within the search's speed."""
    import time

    start = time.perf_counter()
    found = plan_training("h100", "llama3-8b", 2**20, tp=1, cp=1, global_batch=2**19)
    took = time.perf_counter() - start
    given = plan_training("h100", "llama3-8b", 2**20, tp=1, cp=1, pp=2, global_batch=2**19)
    assert (found.plan.pp, found.plan.dp) == (2, 2**19)
    assert found.step_time_s == given.step_time_s and took < 10


def test_automatic_split_is_kept_by_its_counts():
    """A search asks every candidate plan's busiest rank (rank_blocks of the automatic split);
    the split is kept by its counts, so one search computes each shape's split once, and the
    kept answer is the rule's (the even share rounded up, the end stages a block short)."""
    from chipforge.cluster import memory, search

    memory._automatic_blocks.cache_clear()
    search._PLANS.clear()
    plan_training("h100", "llama3-70b", 512, seq=4096, global_batch=512)
    info = memory._automatic_blocks.cache_info()
    assert info.misses < 64 and info.hits > 10 * info.misses
    c = load_model("llama3-70b")  # 80 layers: 5 x 16 evenly, 8 x 10 short at neither end
    assert rank_blocks(c, 16) == (5,) * 16 and rank_blocks(c, 4, 2) == (20,) * 4
    ds = load_model("deepseek-v3")  # 61 layers + 1 MTP module on 16 stages: 4 each, first 3
    assert rank_blocks(ds, 16) == (3, *(4,) * 14, 3)
