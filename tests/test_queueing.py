"""TTFT percentiles under Poisson arrivals: the M/D/1 tail against a simulated queue (Lindley's
recursion), and MLPerf's Server bound checked at p99."""

from __future__ import annotations

import math
import random

import pytest

from chipforge.cluster import plan_serving
from chipforge.cluster.queueing import length_factors, md1_wait_quantile, ttft_percentiles
from chipforge.errors import WorkloadError


def _simulated_waits(rate: float, service: float, n: int = 200_000) -> list[float]:
    rng, w, waits = random.Random(7), 0.0, []
    for _ in range(n):
        w = max(0.0, w + service - rng.expovariate(rate))
        waits.append(w)
    return sorted(waits)


@pytest.mark.parametrize("rho", [0.5, 0.8, 0.9])
def test_md1_tail_matches_a_simulated_queue(rho):
    service = 0.1
    sim = _simulated_waits(rho / service, service)
    for q in (0.9, 0.99):
        model = md1_wait_quantile(rho / service, service, q)
        assert model == pytest.approx(sim[int(q * len(sim))], rel=0.2, abs=0.02), (rho, q)


@pytest.mark.parametrize(("rho", "cv"), [(0.6, 0.43), (0.85, 0.77)])
def test_ttft_with_spread_prompts_matches_a_simulated_mg1_queue(rho, cv):
    """Lognormal prompt lengths: the M/G/1 wait plus the prompt's own prefill, against Lindley's
    recursion over 100k simulated prompts (each own prefill `own` x its length factor)."""
    rng, service, own = random.Random(3), 0.1, 0.15
    sigma = math.sqrt(math.log1p(cv * cv))
    w, ttfts, last = 0.0, [], 0.0
    for _ in range(100_000):
        x = rng.lognormvariate(-sigma * sigma / 2, sigma)
        w = max(0.0, w + last - rng.expovariate(rho / service))
        ttfts.append(w + own * x)
        last = service * x
    ttfts.sort()
    model = ttft_percentiles(rho / service, service, own, cv)
    for key, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        assert model[key] == pytest.approx(ttfts[int(q * len(ttfts))], rel=0.12), (key, rho, cv)
    fixed = ttft_percentiles(rho / service, service, own, 0.0)
    assert fixed["p99"] == pytest.approx(own + md1_wait_quantile(rho / service, service, 0.99))
    assert model["p99"] > fixed["p99"]
    assert sum(length_factors(cv)) / len(length_factors(cv)) == pytest.approx(1.0)


def test_spread_prompt_lengths_raise_the_p99_ttft():
    kw = dict(isl=9400, osl=652, dtype="fp4", tp=4, pp=1, max_batch=64)
    fixed = plan_serving("b200", "llama3-405b", 8, **kw)
    spread = plan_serving("b200", "llama3-405b", 8, isl_cv=0.43, **kw)
    assert spread.ttft_at("p99") > fixed.ttft_at("p99")
    assert spread.tpot_at("p99") > fixed.tpot_at("p99")
    assert spread.tpot_s == fixed.tpot_s  # the means are the same
    with pytest.raises(WorkloadError, match="--isl-cv"):
        plan_serving("b200", "llama3-405b", 8, isl_cv=-1, **kw)


def test_server_bound_at_p99_costs_throughput():
    kw = dict(isl=9400, osl=652, dtype="fp4", ttft_slo=6.0, tpot_slo=0.175)
    mean = plan_serving("b200", "llama3-405b", 8, **kw)
    p99 = plan_serving("b200", "llama3-405b", 8, slo_percentile="p99", **kw)
    assert p99.ttft_at("p99") <= 6.0 < mean.ttft_at("p99")
    assert p99.throughput_tokens_per_s < mean.throughput_tokens_per_s
    assert mean.ttft_percentiles_s["p50"] <= mean.ttft_percentiles_s["p99"]


def test_at_rate_runs_the_smallest_batch_that_keeps_up():
    from chipforge.cluster.serving import at_rate

    kw = dict(isl=9400, osl=652, dtype="fp4", ttft_slo=6.0, tpot_slo=0.175, slo_percentile="p99")
    plan = plan_serving("b200", "llama3-405b", 8, **kw)
    slow, fast = at_rate(plan, 0.5), at_rate(plan, 1.5)
    for p, rate in ((slow, 0.5), (fast, 1.5)):
        assert p.throughput_tokens_per_s >= rate * 652 and (p.tp, p.pp) == (plan.tp, plan.pp)
    assert slow.batch < fast.batch and slow.ttft_at("p99") < fast.ttft_at("p99")
    with pytest.raises(Exception, match="requests/s need"):
        at_rate(plan, 100.0)
