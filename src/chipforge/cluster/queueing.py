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

Prompt lengths spread (`isl_cv`, the benchmark datasets' own token counts): a prompt's prefill
is then s X with X of mean 1 and that coefficient of variation, taken lognormal and sampled at
`LENGTH_POINTS` equally likely quantiles. The queue is M/G/1: theta solves
lambda (E[exp(theta s X)] - 1) = theta (the same Cramer-Lundberg tail, C = rho), and a prompt's
TTFT adds its own prefill p X to the wait, P(TTFT > t) = E[1{pX > t} + 1{pX <= t} rho
exp(-theta (t - pX))], solved for its quantiles; a step's prefills then vary by s^2 E[X^2].
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

PERCENTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99}
LENGTH_POINTS = 12  # equally likely prompt lengths a spread (isl_cv > 0) is sampled at


@lru_cache(maxsize=64)
def length_factors(cv: float) -> tuple[float, ...]:
    """Prompt lengths relative to their mean: a lognormal of coefficient of variation `cv` at
    LENGTH_POINTS equally likely quantiles, rescaled to mean 1 ((1,) when cv is 0)."""
    if cv <= 0:
        return (1.0,)
    sigma = math.sqrt(math.log1p(cv * cv))
    z = [NormalDist().inv_cdf((i + 0.5) / LENGTH_POINTS) for i in range(LENGTH_POINTS)]
    x = [math.exp(sigma * zi) for zi in z]
    mean = sum(x) / len(x)
    return tuple(v / mean for v in x)


def md1_tail_rate(rate: float, service: float) -> float:
    """theta > 0 with rate * (exp(theta * service) - 1) = theta (requires rate * service < 1)."""
    assert 0 < rate * service < 1, rate * service
    return mg1_tail_rate(rate, service, (1.0,))


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


def mg1_tail_rate(rate: float, service: float, factors: tuple[float, ...]) -> float:
    """theta > 0 with rate * (E[exp(theta * service * X)] - 1) = theta, X equally likely over
    `factors` (M/D/1: X = 1), by bisection."""
    n = len(factors)
    f = lambda th: rate * (sum(math.expm1(th * service * x) for x in factors) / n) - th  # noqa: E731
    lo, hi = 0.0, 1.0 / (service * max(factors))
    while f(hi) < 0:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return (lo + hi) / 2


def ttft_percentiles(rate: float, service: float, own: float, cv: float) -> dict[str, float]:
    """The p50 / p90 / p99 of a prompt's own prefill (`own` s at the mean length) plus its wait
    in the M/G/1 prefill queue (`service` s per prompt at the mean length, `rate` 1/s), prompt
    lengths of coefficient of variation `cv`. With cv 0: own + the M/D/1 wait quantiles."""
    if cv <= 0:
        return {k: own + w for k, w in wait_percentiles(rate, service).items()}
    xs = length_factors(cv)
    rho = rate * service
    theta = mg1_tail_rate(rate, service, xs) if 0 < rho < 1 else math.inf

    def over(t: float) -> float:
        tail = sum(1.0 if own * x > t else rho * math.exp(-theta * (t - own * x)) for x in xs)
        return tail / len(xs)

    out = {}
    for key, q in PERCENTILES.items():
        wait = math.log(rho / (1 - q)) / theta if rho > 1 - q else 0.0  # M/G/1 wait quantile
        lo, hi = 0.0, own * max(xs) + wait  # the sum's quantile lies below the two's sum
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if over(mid) > 1 - q else (lo, mid)
        out[key] = hi
    return out


def tpot_percentiles(
    tpot: float, rate: float, service: float, osl: int, cv: float = 0.0
) -> dict[str, float]:
    """The p50 / p90 / p99 TPOT (s) of requests of `osl` output tokens whose steps carry the
    prefills (`service` s each at the mean prompt length, lengths of coefficient of variation
    `cv`) of prompts arriving at `rate` (1/s) on their replica."""
    spread = service * math.sqrt((1 + cv * cv) * max(0.0, rate) * tpot / osl)
    return {k: tpot + NormalDist().inv_cdf(q) * spread for k, q in PERCENTILES.items()}
