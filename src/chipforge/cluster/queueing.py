"""Latency percentiles under Poisson arrivals (MLPerf Inference's Server scenario: queries
arrive as a Poisson process and the TTFT / TPOT bounds hold at the 99th percentile).

Under continuous batching an arriving prompt waits for the prefills queued before it. Prefill
is priced per prompt (`serving._prefill_share`, a deterministic service time s) and the replica
takes prompts at rate lambda, so the wait is that of an M/D/1 queue with load rho = lambda s.
Its tail is exponential (Cramer-Lundberg; Asmussen, "Applied Probability and Queues", 2003,
Ch. XIII): P(W > t) ~ C exp(-theta t), theta > 0 the root of lambda (exp(theta s) - 1) = theta,
with C taken as P(W > 0) = rho (an upper approximation of the constant). The q-quantile is then
ln(rho / (1 - q)) / theta, and 0 when rho <= 1 - q.

TPOT is a request's mean step time over its output tokens. Each step carries the decode plus the
prefill of the prompts that arrived meanwhile, so over a request's life (osl x TPOT seconds)
the prefills it waits through are a Poisson count N at the replica's arrival rate lambda, each
of service s: TPOT_i = decode + N s / osl. Its mean is the plan's TPOT; by the central limit
theorem its spread is s sqrt(lambda TPOT / osl), and the q-quantile is the mean plus z_q of it
(z: the standard normal quantile). Not modelled: the spread of the output lengths themselves.
"""

from __future__ import annotations

import math
from statistics import NormalDist

PERCENTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99}


def md1_tail_rate(rate: float, service: float) -> float:
    """theta > 0 with rate * (exp(theta * service) - 1) = theta (requires rate * service < 1)."""
    rho = rate * service
    assert 0 < rho < 1, rho
    f = lambda th: rate * math.expm1(th * service) - th  # noqa: E731
    lo, hi = 0.0, 1.0 / service
    while f(hi) < 0:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return (lo + hi) / 2


def md1_wait_quantile(rate: float, service: float, q: float) -> float:
    """Seconds below which a fraction q of the M/D/1 waits fall (0 when the queue is empty that
    often: P(W > 0) = rho <= 1 - q)."""
    rho = rate * service
    if rho <= 1 - q or rate <= 0:
        return 0.0
    return math.log(rho / (1 - q)) / md1_tail_rate(rate, service)


def wait_percentiles(rate: float, service: float) -> dict[str, float]:
    """The p50 / p90 / p99 waits (s) of an M/D/1 queue at `rate` (1/s) and `service` (s)."""
    return {k: md1_wait_quantile(rate, service, q) for k, q in PERCENTILES.items()}


def tpot_percentiles(tpot: float, rate: float, service: float, osl: int) -> dict[str, float]:
    """The p50 / p90 / p99 TPOT (s) of requests of `osl` output tokens whose steps carry the
    prefills (`service` s each) of prompts arriving at `rate` (1/s) on their replica."""
    spread = service * math.sqrt(max(0.0, rate) * tpot / osl)
    return {k: tpot + NormalDist().inv_cdf(q) * spread for k, q in PERCENTILES.items()}
