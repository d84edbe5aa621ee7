"""The TPOT percentiles under Poisson arrivals follow the running sequences' contexts, which
vary over time: the running set of an infinite-server queue (Poisson count, each sequence at a
uniform point of its own length), spread over the DP-attention groups by TensorRT-LLM's router,
the groups at the busiest one's pace."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest

from chipforge.cluster import serving
from chipforge.cluster.queueing import PERCENTILES, tpot_percentiles
from chipforge.cluster.serving_plan import _load_chip
from chipforge.cluster.topology import topology_for
from chipforge.workload.config import load_model


def _route(start, length, prompt, groups):
    """Each request's group as TensorRT-LLM's attention-DP router picks it (ADPRouter: among the
    groups below ceil(running / groups), the one with the fewest running prompt tokens)."""
    running = [[] for _ in range(groups)]  # heaps of (end step, prompt tokens)
    tokens = [0.0] * groups
    out = np.empty(len(start), dtype=np.int64)
    rows = zip(start.tolist(), length.tolist(), prompt.tolist(), strict=True)
    for i, (t, n, p) in enumerate(rows):
        for g in range(groups):
            while running[g] and running[g][0][0] <= t:
                tokens[g] -= heapq.heappop(running[g])[1]
        cap = -(-(sum(map(len, running)) + 1) // groups)
        g = min((r for r in range(groups) if len(running[r]) < cap),
                key=lambda r: (tokens[r], len(running[r])))  # fmt: skip
        heapq.heappush(running[g], (t + n, p))
        tokens[g] += p
        out[i] = g
    return out


def _simulated(groups, seqs, isl, osl, isl_cv, osl_cv, seed=1, horizon=200_000):
    """Quantiles over time of max over groups of (summed running context) / seqs, stepping a
    Poisson stream of requests (one token per step, lognormal prompt and output lengths, routed
    as TensorRT-LLM does): no formula of the model's is used."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(groups * seqs / osl * horizon)  # Little's law: seqs running per group
    start = np.sort(rng.integers(0, horizon, n))

    def lognormal(mean, cv):
        if cv == 0:
            return np.full(n, float(mean))
        s2 = math.log1p(cv * cv)
        return rng.lognormal(math.log(mean) - s2 / 2, math.sqrt(s2), n)

    length = np.maximum(1, np.round(lognormal(osl, osl_cv))).astype(np.int64)
    prompt = lognormal(isl, isl_cv)
    group = _route(start, length, prompt, groups)
    steps = horizon + int(length.max()) + 1
    sums = []
    for weight in (np.ones(n), prompt, start.astype(float)):  # count, prompts, start steps
        d = np.zeros((groups, steps))
        np.add.at(d, (group, start), weight)
        np.add.at(d, (group, start + length), -weight)
        sums.append(np.cumsum(d, axis=1))
    count, prompts, starts = sums
    context = prompts + np.arange(steps) * count - starts  # sum of prompt + tokens so far
    warm = 3 * int(osl * (1 + osl_cv**2))
    busiest = context[:, warm:horizon].max(axis=0) / seqs
    return {k: float(np.quantile(busiest, q)) for k, q in PERCENTILES.items()}


@pytest.mark.parametrize(
    "case",
    [
        (8, 150, 804, 3736, 0.5, 1.25),  # the MLPerf DeepSeek-R1 dataset's lengths, 8 groups
        (1, 100, 1000, 500, 0.0, 0.8),  # one group (no DP attention)
        (4, 100, 2000, 600, 0.4, 0.4),
    ],
)
def test_context_quantiles_match_a_simulated_server(case):
    groups, seqs, isl, osl, isl_cv, osl_cv = case
    sim = _simulated(*case)
    for k, q in PERCENTILES.items():
        model = serving._context_quantile(groups, seqs, isl, osl, q, isl_cv, osl_cv)
        assert model == pytest.approx(sim[k], rel=0.05), k


def test_tpot_percentiles_follow_the_running_contexts():
    """DeepSeek-R1 on 8 B200 at MLPerf's logged 5 requests/s: each TPOT percentile is the
    prefill spread plus the step at that quantile of the busiest group's context, priced
    directly (the plan's linear share of the attention within 2 %), above the mean step."""
    chip, c = _load_chip("b200"), load_model("deepseek-v3")
    isl, osl, cv, icv, mb = 804, 3736, 1.25, 0.5, 146
    kw = dict(tp=1, pp=1, ep=8, dt="fp4", kvd="fp8", isl=isl, osl=osl, osl_cv=cv, isl_cv=icv,
              attn_dtype="bf16", adp_balance=9, adp_batching_wait=3, rate=5.0)  # fmt: skip
    topo = topology_for(chip, 8)
    plan = serving.evaluate(chip, c, 8, topo, batch=8 * mb, **kw)
    busy = serving._busiest_context(8, mb, isl, osl, icv, cv)

    def decode(n):
        return serving._step(chip, c, topo, "decode", mb, round(n), 1, 1, 8, "fp4", "fp8", "bf16")

    assert plan.breakdown["decode"] == pytest.approx(decode(busy), rel=1e-9)
    lam = 5.0  # one replica
    step = (plan.tpot_s - plan.breakdown["decode"]) * osl / (8 * mb - 1)
    prefill_only = tpot_percentiles(plan.tpot_s, lam, step, osl, icv)
    for k, q in PERCENTILES.items():
        at = serving._context_quantile(8, mb, isl, osl, q, icv, cv)
        want = prefill_only[k] + decode(at) - decode(busy)
        assert plan.tpot_percentiles_s[k] == pytest.approx(want, rel=0.02), k
    assert plan.tpot_percentiles_s["p99"] > 1.05 * plan.tpot_s  # was within 1 % of the mean
