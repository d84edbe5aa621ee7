"""Serving mechanisms for frontier MoE/reasoning workloads: the EP all-to-all under DP attention
(tp 1), its overlap with computation, a decode-only pool, length-biased decode contexts, the
attention modules at their own precision, and prefill under pipeline parallelism."""

from __future__ import annotations

from pathlib import Path

import pytest

from chipforge.cluster import plan_serving, serving
from chipforge.cluster.collectives import collective_time
from chipforge.cluster.kvcache import memory
from chipforge.cluster.serving_plan import _load_chip
from chipforge.cluster.topology import topology_for
from chipforge.errors import WorkloadError
from chipforge.spec import load_chip
from chipforge.workload.config import load_model

DS = load_model("deepseek-v3")


def _topo(chip, chips):
    return topology_for(_load_chip(chip), chips, None)


def test_ep_all_to_all_is_priced_without_tp_and_overlap_takes_the_longer():
    chip, topo, b = _load_chip("h800"), _topo("h800", 16), 64
    compute, _ = serving._layer(chip, DS, "decode", b, 2048, 1, "fp8", "fp8", 16)
    size = b * DS.hidden * DS.top_k  # FP8 dispatch, BF16 combine (DeepEP)
    a2a = collective_time("all_to_all", size, 16, topo) + collective_time(
        "all_to_all", 2 * size, 16, topo
    )
    plain = serving._block(chip, DS, topo, "decode", b, 2048, 1, 16, "fp8", "fp8")
    assert a2a > 0
    assert plain == pytest.approx(compute + a2a + serving.LAYER_OVERHEAD_S)
    # overlapped: two micro-batches of b/2 (DeepSeek's inference system), each with its own
    # computation (its own pass over the weights) and its own dispatch + combine; the block
    # takes the longer of the summed computations and the summed all-to-alls
    half, _ = serving._layer(chip, DS, "decode", b // 2, 2048, 1, "fp8", "fp8", 16)
    size //= 2
    a2a_half = collective_time("all_to_all", size, 16, topo) + collective_time(
        "all_to_all", 2 * size, 16, topo
    )
    hidden = serving._block(chip, DS, topo, "decode", b, 2048, 1, 16, "fp8", "fp8", overlap=True)
    assert hidden == pytest.approx(
        max(2 * (half + serving.LAYER_OVERHEAD_S), 2 * a2a_half), rel=1e-9
    )
    # the weights are read once per micro-batch: more than one pass over the whole batch
    assert 2 * half > compute
    # one sequence cannot be split: its all-to-all has nothing to hide behind
    one = serving._block(chip, DS, topo, "decode", 1, 2048, 1, 16, "fp8", "fp8", overlap=True)
    c1, _ = serving._layer(chip, DS, "decode", 1, 2048, 1, "fp8", "fp8", 16)
    a1 = serving._moe_exchange(DS, topo, "decode", 1, 1, 16, "fp8")
    assert one == pytest.approx(c1 + a1 + serving.LAYER_OVERHEAD_S, rel=1e-9)


def test_prefill_micro_batches_split_one_prompt_by_tokens():
    """DeepSeek's prefill splits the tokens over the two micro-batches (the same prompt may be
    split between them): the second half attends to the first, so the attention FLOPs add up
    to the whole prompt's."""
    chip, topo = _load_chip("h800"), _topo("h800", 32)
    whole = serving._block(chip, DS, topo, "prefill", 1, 4096, 1, 32, "fp8", "bf16")
    split = serving._block(chip, DS, topo, "prefill", 1, 4096, 1, 32, "fp8", "bf16", overlap=True)
    first = serving._layer(chip, DS, "prefill", 1, 2048, 1, "fp8", "bf16", 32)[0]
    second = serving._layer(chip, DS, "prefill", 1, 2048, 1, "fp8", "bf16", 32, past=2048)[0]
    assert second > first  # attends to the first half too
    a2a = 2 * serving._moe_exchange(DS, topo, "prefill", 1, 2048, 32, "fp8")
    compute = first + second + 2 * serving.LAYER_OVERHEAD_S
    assert split == pytest.approx(max(compute, a2a), rel=1e-9)
    assert split < whole  # the all-to-all hides under the computation


def test_decode_pool_carries_no_prefill():
    kw = dict(isl=2048, osl=512, dtype="fp8", tp=1, pp=1, ep=16)
    pool = plan_serving("h800", "deepseek-v3", 16, disaggregated="decode", **kw)
    mixed = plan_serving("h800", "deepseek-v3", 16, **kw)
    assert pool.tpot_s == pytest.approx(pool.breakdown["decode"])
    assert pool.throughput_tokens_per_s == pytest.approx(pool.batch / pool.tpot_s)
    assert pool.throughput_tokens_per_s > mixed.throughput_tokens_per_s
    with pytest.raises(WorkloadError, match="disaggregated"):
        plan_serving("h800", "deepseek-v3", 16, disaggregated="both", **kw)


def test_prefill_pool_skips_the_cached_prefix():
    kw = dict(isl=4000, osl=1000, dtype="fp8", tp=1, pp=1, ep=16, disaggregated="prefill")
    cold = plan_serving("h800", "deepseek-v3", 16, **kw)
    warm = plan_serving("h800", "deepseek-v3", 16, prefix_hit=0.5, **kw)
    chip, topo = _load_chip("h800"), _topo("h800", 16)
    share = serving._prefill_share(chip, DS, topo, 4000, cold.batch // 16, 1, 1, 16, "fp8", "fp8")
    assert cold.input_tokens_per_s == pytest.approx(16 * 4000 / share)
    assert cold.tpot_s == 0 and cold.throughput_tokens_per_s == pytest.approx(16 * 1000 / share)
    assert 1.9 < warm.input_tokens_per_s / cold.input_tokens_per_s < 2.5  # half the tokens
    with pytest.raises(WorkloadError, match="prefix_hit"):
        plan_serving("h800", "deepseek-v3", 16, prefix_hit=1.0, **kw)


def test_output_length_spread_lengthens_the_decode_context():
    """A step's sequences are length-biased: with output CV 1 the mean context is isl + osl."""
    kw = dict(isl=1000, osl=2000, dtype="fp8", tp=8, pp=1, max_batch=64)
    fixed = plan_serving("h100", "llama3-8b", 8, **kw)
    spread = plan_serving("h100", "llama3-8b", 8, osl_cv=1.0, **kw)
    chip, topo = _load_chip("h100"), _topo("h100", 8)
    m = load_model("llama3-8b")
    step = serving._step(chip, m, topo, "decode", spread.batch, 1000 + 2000, 8, 1, 1, "fp8", "fp8")
    assert spread.breakdown["decode"] == pytest.approx(step)
    assert spread.tpot_s > fixed.tpot_s
    with pytest.raises(WorkloadError, match="--osl-cv"):
        plan_serving("h100", "llama3-8b", 8, osl_cv=-1, **kw)


def test_attention_precision_of_its_own():
    """NVFP4 DeepSeek-R1: FFN/MoE in FP4, the attention modules' weights and matmuls in BF16."""
    cap = _load_chip("b200").hbm.capacity
    # TensorRT-LLM's (MLPerf's NVFP4 runs): no 16-bit copies of the absorbed matrices beside an
    # FP4 kv_b_proj (kvcache.ABSORB_16BIT_RUNTIMES), so the attention modules' bytes alone differ
    kw = {"tp": 1, "pp": 1, "dtype": "fp4", "kv_dtype": "fp8", "ep": 8, "runtime": "tensorrt-llm"}
    fp4 = memory(DS, cap, **kw)
    mixed = memory(DS, cap, attn_dtype="bf16", **kw)
    assert mixed.weights - fp4.weights == pytest.approx(DS.layers * DS.attention_params() * 1.5)
    g = serving._graph(DS, "decode", 64, 2048, 1, "fp4", "fp8", 8, "bf16")
    dtypes = {op.name.rsplit(".", 1)[-1]: op.dtype for op in g.ops if op.kind == "matmul"}
    assert dtypes["o_proj"] == dtypes["q_up"] == "bf16" and dtypes["experts_up"] == "fp4"
    kw = dict(isl=1024, osl=1024, dtype="fp4", kv_dtype="fp8", tp=1, pp=1, ep=8, max_batch=512)
    slow = plan_serving("b200", "deepseek-v3", 8, attn_dtype="bf16", **kw)
    fast = plan_serving("b200", "deepseek-v3", 8, **kw)
    assert slow.breakdown["decode"] > fast.breakdown["decode"]


def test_pipeline_stages_prefill_other_prompts_meanwhile():
    chip, topo, m = _load_chip("h100"), _topo("h100", 8), load_model("llama2-70b")
    args = (chip, m, topo, 4096, 64, 2, 2, 1, "fp8", "fp8")
    one = serving._step(chip, m, topo, "prefill", 2, 4096, 2, 2, 1, "fp8", "fp8") / 2
    assert serving._prefill_share(*args) == pytest.approx(one / 2)


def test_tpot_percentiles_match_a_simulated_poisson_count_of_prefills():
    """TPOT_i = decode + N s / osl with N ~ Poisson(rate x osl x TPOT): the CLT quantiles of
    `queueing.tpot_percentiles` against 200k sampled requests."""
    np = pytest.importorskip("numpy")
    from chipforge.cluster.queueing import tpot_percentiles

    decode, s, rate, osl = 0.05, 0.4, 1.0, 600
    tpot = decode / (1 - rate * s)  # the mean: a step waits for rate x tpot x s of prefill
    n = np.random.default_rng(0).poisson(rate * osl * tpot, 200_000)
    sampled = decode + n * s / osl
    got = tpot_percentiles(tpot, rate, s, osl)
    assert sampled.mean() == pytest.approx(tpot, rel=0.01)
    for key, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        assert got[key] == pytest.approx(np.percentile(sampled, q), rel=0.03)
    assert tpot_percentiles(tpot, 0.0, s, osl)["p99"] == tpot


def test_server_slo_holds_at_the_percentile():
    kw = dict(isl=2000, osl=200, dtype="fp8", tp=8, pp=1)
    best = plan_serving("h100", "llama3-70b", 8, tpot_slo=0.03, **kw)
    slo = best.tpot_s  # met on the mean, missed at p99
    p99 = plan_serving("h100", "llama3-70b", 8, tpot_slo=slo, slo_percentile="p99", **kw)
    assert p99.tpot_at("p99") <= slo < best.tpot_at("p99")
    assert p99.batch < best.batch
    assert p99.tpot_percentiles_s["p99"] > p99.tpot_percentiles_s["p50"] >= p99.tpot_s * 0.99


def _acceptance(k: int, tokens: float) -> float:
    """The per-draft acceptance a with (1 - a^(k+1)) / (1 - a) = tokens per step."""
    lo, hi = 0.0, 0.999
    for _ in range(60):
        a = (lo + hi) / 2
        lo, hi = (a, hi) if (1 - a ** (k + 1)) / (1 - a) < tokens else (lo, a)
    return lo


@pytest.mark.parametrize(("k", "tokens", "measured"), [(1, 1.92, 1.78), (2, 2.58, 2.25)])
def test_mtp_speedup_at_batch_one(k, tokens, measured):
    """TensorRT-LLM tech_blog1 (DeepSeek-R1, 8 x B200, TP8 EP2, NVFP4 MoE, BF16 attention,
    ISL 1K / OSL 2K, batch 1): MTP1 accepts 1.92 tokens per step for 1.78x TPS/user, MTP2 2.58
    for 2.25x. The accepted lengths go in; the speedups come out."""
    kw = dict(isl=1024, osl=2048, dtype="fp4", kv_dtype="bf16", tp=8, pp=1, ep=2, concurrency=1,
              attn_dtype="bf16")  # fmt: skip
    base = plan_serving("b200", "deepseek-v3", 8, **kw)
    mtp = plan_serving(
        "b200", "deepseek-v3", 8, spec_tokens=k, spec_acceptance=_acceptance(k, tokens), **kw
    )
    assert base.tpot_s / mtp.tpot_s == pytest.approx(measured, rel=0.10)
    with pytest.raises(WorkloadError, match="--spec-acceptance"):
        plan_serving("b200", "deepseek-v3", 8, spec_tokens=1, spec_acceptance=1.0, **kw)


def test_absorbed_mla_reads_its_latent_cache_once():
    """Decode attention over the MLA latent: V is the latent's first kv_lora columns, so the
    cache read per token is kv_lora + rope_dim bytes-per-element, as the cache holds."""
    g = serving._graph(DS, "decode", 4, 1000, 1, "fp8", "fp8")
    (att,) = [op for op in g.ops if op.kind == "attention"]
    heads, q_o = DS.heads, DS.heads * (DS.kv_lora + DS.rope_dim + DS.kv_lora)
    assert att.bytes == 4 * (q_o + 1001 * (DS.kv_lora + DS.rope_dim))
    assert att.flops == 2 * 4 * heads * 1001 * (2 * DS.kv_lora + DS.rope_dim)


def test_kv_holds_the_running_contexts_when_outputs_spread_widely():
    assert serving._held(800, 4000, 0.5) == 4800  # the reservation bounds it
    assert serving._held(800, 4000, 1.25) == 800 + round(4000 * (1 + 1.25**2) / 2)


def test_busiest_group_is_the_mean_of_a_poisson_maximum():
    """Also at the counts a long ADP-balance cycle gathers (rate x cycle in the hundreds to
    thousands): the sum stopped at n = 1000 and exp(-mean) underflows past ~745, so the busiest
    of 8 groups came out below their mean (mean 2000: 0.50; 10000: 0.10)."""
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(1)
    for mean, rel in ((0.3, 0.02), (700, 0.002), (900, 0.002), (2000, 0.002), (10_000, 0.001)):
        n = rng.poisson(mean, (100_000, 8)).max(axis=1)
        assert serving._busiest(8, mean) == pytest.approx(n.mean() / mean, rel=rel)
        assert serving._busiest(8, mean) > 1
    assert serving._busiest(1, 0.3) == 1.0
    # the lockstep factor under a long ADP-balance cycle is at least 1 (was 0.1)
    assert serving._lockstep(8, 1.0, serving.MAX_ADP_BALANCE, serving.MAX_ADP_BALANCE) > 1


DSR1 = dict(isl=803, osl=3653, dtype="fp4", kv_dtype="fp8", tp=1, pp=1, ep=8, osl_cv=1.25,
            attn_dtype="bf16", max_batch=4096)  # fmt: skip


def test_adp_balance_on_reasoning_traces():
    """TensorRT-LLM tech_blog10 (8 x GB200, DeepSeek, attention DP8 + EP8, 16k requests of mean
    input 803 / output 3653): ADP balance 34,140 tokens/s, 25,664 without. The model's gain is
    smaller (1.11x vs 1.33x): TensorRT-LLM prefills a rank's whole prompt in one context step,
    which the lockstep model spreads over chunk shares."""
    on = plan_serving("gb200", "deepseek-v3", 8, adp_balance=50, **DSR1)
    off = plan_serving("gb200", "deepseek-v3", 8, adp_balance=0, **DSR1)
    assert on.throughput_tokens_per_s == pytest.approx(34140, rel=0.10)
    assert off.throughput_tokens_per_s == pytest.approx(25664, rel=0.25)
    assert on.throughput_tokens_per_s > 1.1 * off.throughput_tokens_per_s


@pytest.mark.parametrize(
    ("chip", "dtype", "kv", "per_gpu", "attn", "published"),
    [
        ("h200", "fp8", "fp8", 128, None, 1436),
        ("b200", "fp4", "bf16", 384, "bf16", 4548),
        ("b200", "fp4", "fp8", 896, "bf16", 5393),
    ],
)
def test_dp_attention_without_balance_against_trtllm(chip, dtype, kv, per_gpu, attn, published):
    """TensorRT-LLM docs/source/blogs/Best_perf_practice_on_DeepSeek-R1 (trtllm-bench, ISL 1K /
    OSL 2K, attention DP8 + EP8, no ADP balance): 1,436 (H200, 1,024 requests in flight), 4,548
    (B200, BF16 KV, 3,072) and 5,393 (B200, FP8 KV, 7,168) output tokens/s per GPU. On B200 the
    MLA decode runs at TensorRT-LLM's kernel rate (the chip field `mla_decode_rate`)."""
    plan = plan_serving(
        chip, "deepseek-v3", 8, isl=1024, osl=2048, dtype=dtype, kv_dtype=kv, tp=1, pp=1, ep=8,
        concurrency=per_gpu * 8, attn_dtype=attn, adp_balance=0,
    )  # fmt: skip
    assert plan.throughput_tokens_per_s / 8 == pytest.approx(published, rel=0.25)


def test_prefill_after_a_cached_prefix_attends_to_it():
    g = serving._graph(DS, "prefill", 1, 1000, 1, "fp8", "fp8", past=3000)
    ops = {op.name.rsplit(".", 1)[-1]: op for op in g.ops}
    assert ops["attention"].q_len == 1000 and ops["attention"].kv_len == 4000
    assert ops["kv_up"].m == 4000 and ops["q_up"].m == 1000  # the cached latent re-expanded


def _balance_sim(groups, rate, timeout, batching=0, steps=20_000):
    """TensorRT-LLM's ADP balance as its executor runs it (PyExecutor._balance_adp_requests),
    stepped: while some group holds no prompt a counter runs and the held prompts are released
    when it reaches `timeout`; once every group holds one the counter stops and they are
    released `batching` steps later. Returns E[max] / E[mean] of the groups' counts over the
    context steps, and every prompt's wait in steps."""
    np = pytest.importorskip("numpy")
    arrivals = np.random.default_rng(0).poisson(rate, (steps, groups))
    held, count, since = np.zeros(groups, int), 0, 0
    busiest, mean, waits, pending = 0, 0.0, [], []
    for t in range(steps):
        held += arrivals[t]
        pending += [t] * int(arrivals[t].sum())
        if held.all():
            count = 0
            release = since >= batching
            since = 0 if release else since + 1
        else:
            count += 1
            release = count >= timeout
            count = 0 if release else count
        if release:
            if held.any():
                busiest, mean = busiest + held.max(), mean + held.mean()
            waits += [t - a for a in pending]
            held[:], pending = 0, []
    return busiest / mean, np.array(waits)


@pytest.mark.parametrize(
    ("rate", "timeout", "batching"),
    [(0.04, 9, 3), (0.13, 50, 10), (0.3, 6, 2), (0.3, 6, 0), (0.13, 500, 10)],
)
def test_lockstep_prefill_under_adp_balance_matches_its_rule(rate, timeout, batching):
    """At Server loads the timeout fires with most groups empty, so the context step waits for
    a busiest group far above the mean; under a backlog the counts even out. A prompt's wait:
    the cycle-length law of `_balance_cycle`, against the executor's rule stepped."""
    np = pytest.importorskip("numpy")
    busiest, waits = _balance_sim(8, rate, timeout, batching)
    assert serving._lockstep(8, rate, timeout, batching) == pytest.approx(busiest, rel=0.03)
    held = serving._balance_wait(8, rate, timeout, batching)
    assert held["mean"] == pytest.approx(waits.mean(), rel=0.06)
    for key, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        assert abs(held[key] - float(np.percentile(waits, q))) <= 1
    assert serving._lockstep(8, rate, None) == 1.0 and serving._lockstep(1, rate, 9) == 1.0


def test_busiest_group_context_matches_sampled_running_sequences():
    """Running sequences: lognormal prompts, lognormal outputs picked in proportion to their
    length (a sequence runs for its output length), each at a uniform point of its output; the
    busiest of 8 groups of 154 holds E[max] of their context sums."""
    np = pytest.importorskip("numpy")
    rng, isl, osl, icv, ocv = np.random.default_rng(5), 804, 3736, 0.5, 1.25

    def lognormal(mean, cv, n):
        sigma = np.sqrt(np.log1p(cv * cv))
        return rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, n)

    outputs = lognormal(osl, ocv, 1_000_000)
    picked = rng.choice(outputs, size=(500, 8, 154), p=outputs / outputs.sum())
    ctx = lognormal(isl, icv, picked.shape) + rng.uniform(size=picked.shape) * picked
    sampled = ctx.sum(axis=2).max(axis=1).mean() / 154
    model = serving._busiest_context(8, 154, isl, osl, icv, ocv)
    assert model == pytest.approx(sampled, rel=0.03)
    assert model > isl + osl * (1 + ocv**2) / 2  # above the mean context
    assert serving._normal_max(1) == pytest.approx(0.0, abs=1e-9)
    assert serving._normal_max(2) == pytest.approx(1 / np.sqrt(np.pi), rel=1e-4)


def test_adp_balance_holds_prompts_up_to_its_timeout():
    """Few arrivals: the executor's counter runs on its own and releases every `timeout` steps,
    so a prompt waits uniformly 0 .. timeout - 1 steps; many: hardly at all, plus the batching
    wait once every group holds one. A bool is not a step count, and a batching wait needs ADP
    balance."""
    slow = serving._balance_wait(8, 0.01, 9)
    assert slow["mean"] == pytest.approx(4.0, abs=0.05) and slow["p99"] == 8
    busy = serving._balance_wait(8, 5.0, 9)
    assert busy["mean"] < 0.1 and busy["p50"] == 0
    assert serving._balance_wait(8, 5.0, 9, 3)["mean"] == pytest.approx(busy["mean"] + 1.5, 0.05)
    kw = dict(isl=800, osl=2000, dtype="fp8", tp=1, pp=1, ep=8, max_batch=512)
    with pytest.raises(WorkloadError, match="^--adp-balance must"):
        plan_serving("h200", "deepseek-v3", 8, adp_balance=True, **kw)
    with pytest.raises(WorkloadError, match="^--adp-batching-wait is"):
        plan_serving("h200", "deepseek-v3", 8, adp_batching_wait=3, **kw)
    with pytest.raises(WorkloadError, match="^--adp-batching-wait must"):
        plan_serving("h200", "deepseek-v3", 8, adp_balance=9, adp_batching_wait=-1, **kw)
    held = plan_serving("h200", "deepseek-v3", 8, adp_balance=9, slo_percentile="p99", **kw)
    free = plan_serving("h200", "deepseek-v3", 8, slo_percentile="p99", **kw)  # not modelled
    assert held.ttft_at("p99") > free.ttft_at("p99")


def test_ttft_percentiles_count_the_balance_wait_once():
    """The mean TTFT holds the mean balance wait; a percentile holds the wait's percentile
    instead (not both). One replica of 8 DP groups at a low rate: the prompt queue is empty, so
    p99 - p50 is the wait's p99 - p50 in steps of the TPOT."""
    kw = dict(isl=800, osl=2000, dtype="fp8", tp=1, pp=1, ep=8, batch=64, adp_balance=9)
    from chipforge.cluster.serving import evaluate

    chip, c = _load_chip("h200"), load_model("deepseek-v3")
    plan = evaluate(chip, c, 8, _topo("h200", 8), dt="fp8", kvd="fp8", rate=0.05,
                    **{k: v for k, v in kw.items() if k != "dtype"})  # fmt: skip
    held = serving._balance_wait(8, 0.05 / 8 * plan.tpot_s, 9)
    spread = plan.ttft_at("p99") - plan.ttft_at("p50")
    assert spread == pytest.approx((held["p99"] - held["p50"]) * plan.tpot_s, rel=0.05)
    base = plan.ttft_s - held["mean"] * plan.tpot_s  # the mean TTFT without the wait
    assert plan.ttft_at("p99") == pytest.approx(base + held["p99"] * plan.tpot_s, rel=0.05)


# TensorRT-LLM tech_blog18 (NVLinkOneSided all-to-all, GB200 NVL72, DeepSeek-V3 profile: hidden
# 7168, top-8, BF16 payload): (ep, tokens per rank) -> measured dispatch + combine, us. The
# EP8 1-token pair set `serving.A2A_KERNEL_S`; every other row is held out.
NVLINK_ONE_SIDED = {
    (8, 1): 18.9 + 31.0, (8, 64): 22.3 + 34.1, (8, 512): 89.5 + 91.7, (8, 2048): 311.8 + 322.6,
    (16, 1): 18.8 + 30.8, (16, 128): 34.6 + 39.9, (16, 1024): 181.2 + 188.2,
    (32, 1): 19.8 + 31.4, (32, 256): 61.5 + 59.7, (32, 2048): 373.7 + 369.5,
    (64, 1): 27.8 + 32.6, (64, 128): 41.6 + 44.5, (64, 512): 115.7 + 106.7,
    (64, 2048): 399.2 + 372.1,
}  # fmt: skip


@pytest.mark.parametrize(("ep", "tokens"), sorted(NVLINK_ONE_SIDED))
def test_moe_all_to_all_against_one_sided_nvlink_kernels(ep, tokens):
    """Within one NVLink domain the dispatch/combine time is a fixed kernel cost plus bytes,
    flat in the EP size at small batches (18.8-27.8 us dispatch from EP8 to EP64), where a
    ring's (n - 1) hop latencies would grow 9x."""
    topo = _topo("gb200", 72)
    pair = 2 * serving._moe_all_to_all(tokens * DS.hidden * DS.top_k * 2, ep, topo)
    assert pair * 1e6 == pytest.approx(NVLINK_ONE_SIDED[ep, tokens], rel=0.25)


@pytest.mark.xfail(
    strict=True,
    reason="Blackwell MLA decode kernels run ~1.7x slower than the perf engine's tile-level "
    "estimate; serving prices them at TensorRT-LLM's kernel rate instead (mla_decode_rate)",
)
def test_mla_decode_kernel_on_blackwell():
    """sglang PR 6929 (sgl-kernel benchmark/bench_cutlass_mla.py, B200): CUTLASS MLA decode,
    128 heads x 1 query, BF16 latent cache of 576, 256 sequences of 8192 tokens: 4124 GB/s
    counted over the cache, Q and O (2.487 GB), i.e. 603 us."""
    from chipforge.perf import estimate
    from chipforge.workload.graph import Graph
    from chipforge.workload.ops import Attention

    op = Attention(
        name="attention", batch=256, heads=128, kv_heads=1, q_len=1, kv_len=8192, head_dim=576,
        v_head_dim=512, v_in_k=True, dtype="bf16",
    )  # fmt: skip
    t = estimate(Graph("mla", (op,)), _load_chip("b200"), deployed=True).time_s
    assert t == pytest.approx(2.487e9 / 4124e9, rel=0.25)


def test_mla_decode_rate_is_the_chips_not_its_names(tmp_path):
    """The measured MLA kernel rate travels with the chip's content: a user's TOML copy of b200
    under another name prices R1 decode exactly as b200; the same chip without the field gets
    the engine's faster tile estimate."""
    b200 = load_chip("b200")
    src = Path(__file__).parents[1] / "src" / "chipforge" / "spec" / "presets" / "b200.toml"
    mine = tmp_path / "my-b200.toml"
    mine.write_text(src.read_text().replace('name = "b200"', 'name = "my-b200"'))
    renamed = load_chip(str(mine))
    assert renamed.name == "my-b200" and renamed.mla_decode_rate == b200.mla_decode_rate
    kw = dict(isl=1024, osl=2048, dtype="fp8", kv_dtype="fp8", tp=1, pp=1, ep=8, concurrency=2048)
    ref = plan_serving(b200, "deepseek-v3", 8, **kw).throughput_tokens_per_s
    assert plan_serving(renamed, "deepseek-v3", 8, **kw).throughput_tokens_per_s == ref
    bare = b200.model_copy(update={"mla_decode_rate": None})
    assert plan_serving(bare, "deepseek-v3", 8, **kw).throughput_tokens_per_s > 1.1 * ref


def _experts_up(chip, b, ep):
    """The routed experts' FC1 grouped matmul of one R1 decode block and its engine estimate."""
    from chipforge.perf import estimate

    g = serving._graph(DS, "decode", b, 2048, 1, "fp4", "fp8", ep, "bf16")
    r = estimate(g, chip, deployed=True)
    ((op, o),) = [
        (op, o) for op, o in zip(g.ops, r.ops, strict=True) if op.name.endswith(".experts_up")
    ]
    return op, o.time_s


@pytest.mark.parametrize("per_gpu", [32, 64])
def test_moe_decode_bandwidth_is_set_on_its_kernel(per_gpu):
    """The designated case of gb200's `moe_decode_bandwidth`: TensorRT-LLM tech_blog8 (EPLB
    section) measures 75 us for the first grouped GEMM (FC1) of DeepSeek-R1 NVFP4 at EP16 on
    GB200 with 32 or 64 sequences per GPU. The busiest chip's 16 experts' weights over the field
    give that time back; the engine's own estimate streams them about twice as fast."""
    chip = _load_chip("gb200")
    op, engine = _experts_up(chip, per_gpu, 16)
    assert op.batch == 16 and (op.n, op.k) == (2 * DS.expert_ffn, DS.hidden)
    floor = op.batch * op.n * op.k * 0.5 / chip.moe_decode_bandwidth
    assert floor == pytest.approx(75e-6, rel=0.01)
    assert engine < 0.55 * floor


def test_expert_matmuls_in_decode_take_the_measured_weight_stream():
    """With the field a decode block's routed-expert matmuls take at least their weight bytes
    over it (the same block without the field is faster by the difference); prefill and chips
    without a measurement keep the engine's estimate."""
    chip = _load_chip("b200")
    bare = chip.model_copy(update={"moe_decode_bandwidth": None})
    args = ("decode", 64, 2048, 1, "fp4", "fp8", 8, "bf16")
    with_field = serving._layer(chip, DS, *args)[0]
    without = serving._layer(bare, DS, *args)[0]
    g = serving._graph(DS, *args)
    up, up_engine = _experts_up(chip, 64, 8)
    (down,) = [op for op in g.ops if op.name.endswith(".experts_down")]
    from chipforge.perf import estimate

    r = estimate(g, chip, deployed=True)
    down_engine = next(o.time_s for op, o in zip(g.ops, r.ops, strict=True) if op is down)
    gap = sum(
        max(0.0, op.batch * op.n * op.k * 0.5 / chip.moe_decode_bandwidth - t)
        for op, t in ((up, up_engine), (down, down_engine))
    )
    assert gap > 0 and with_field - without == pytest.approx(gap, rel=1e-9)
    pre = ("prefill", 1, 2048, 1, "fp4", "fp8", 8, "bf16")
    assert serving._layer(chip, DS, *pre)[0] == serving._layer(bare, DS, *pre)[0]
    assert _load_chip("h800").moe_decode_bandwidth is None  # DeepGEMM's kernels: the engine's
