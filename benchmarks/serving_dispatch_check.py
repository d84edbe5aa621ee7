"""Diagnostic (not a validation row, nothing is tuned to it): TTFT percentiles of the MLPerf
Llama-3.1-405B Server runs under the way NVIDIA's harness spreads queries over its cores.

closed/NVIDIA/code/llmlib (MLPerf Inference v5.1): config.py sets the Server scenario's
traffic_distribution_policy to "load_balancing", and factory.py sends each query to the core with
the fewest samples in flight. `serving.evaluate` instead splits the Poisson arrivals evenly over
independent replicas. This script simulates the engines step by step on the model's own step
costs: decode steps at the running batch, and chunked prefill under the logged max_num_tokens
(FCFS). Prompt and output lengths are lognormal at the datasets' CVs. It prints the model's TTFT
percentiles, the simulation's under a random split and under the harness's rule, and the logged
ones. The same rule ran on all three systems: the B200 run's executor cores and the NVL72 runs'
trtllm_endpoint cores (one per trtllm-serve instance, scripts/slurm_llm/local_node_instance)
both sit in llmlib's LLMServer. It also prints a closed form tried for that rule and not
landed: one pooled M/G/c prefill queue over the c cores (Erlang-C probability of waiting, the
M/G/1 tail rate at service / c), which waits less than the simulated rule. Run:
PYTHONPATH=src python benchmarks/serving_dispatch_check.py
"""

from __future__ import annotations

import math
import random
from collections import deque

from chipforge.cluster import queueing as q
from chipforge.cluster import serving as s

ISL, ISL_CV, OSL_CV = 9429, 0.43, 0.38
# system, chips, TP, logged target_qps, logged max_num_tokens, max_batch, OSL, logged p50/p99 TTFT
RUNS = (
    ("b200", 8, 4, 1.9, 2048, 256, 652, (1.357, 5.134)),
    ("gb200", 72, 4, 17.55, 2048, 256, 652, (1.218, 4.359)),
    ("gb300", 72, 2, 19.5, 1536, 2048, 630, (1.660, 4.746)),
)


def simulate(policy, rate, cores, budget, decode, per_token, osl, n=30000, seed=2):
    rng = random.Random(seed)

    def lognormal(mean, cv):
        sigma = math.sqrt(math.log1p(cv * cv))
        return max(1, round(rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)))

    t, arrivals = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        arrivals.append((t, lognormal(ISL, ISL_CV), lognormal(osl, OSL_CV)))
    state = [{"now": 0.0, "queue": deque(), "running": [], "in_flight": 0} for _ in range(cores)]
    ttft, i = [], 0
    while i < n or any(c["queue"] or c["running"] for c in state):
        core = min(state, key=lambda c: c["now"])
        while i < n and arrivals[i][0] <= core["now"]:  # dispatch what arrived by then
            if policy == "fewest in flight":
                to = min(state, key=lambda c: c["in_flight"])
            else:
                to = state[rng.randrange(cores)]
            to["queue"].append(list(arrivals[i]))
            to["in_flight"] += 1
            i += 1
        if not core["queue"] and not core["running"]:
            core["now"] = arrivals[i][0] if i < n else math.inf
            continue
        room = max(0, budget - len(core["running"]))
        left, done = room, []
        while core["queue"] and left > 0:
            take = min(left, core["queue"][0][1])
            core["queue"][0][1] -= take
            left -= take
            if core["queue"][0][1] == 0:
                done.append(core["queue"].popleft())
        core["now"] += decode(len(core["running"])) + (room - left) * per_token
        for r in core["running"]:
            r[2] -= 1
        still = [r for r in core["running"] if r[2] > 0]
        core["in_flight"] -= len(core["running"]) - len(still)
        core["running"] = still
        for r in done:
            ttft.append(core["now"] - r[0])
            core["running"].append(r)
    ttft = sorted(ttft[n // 10 :])
    return {k: ttft[int(len(ttft) * q)] for k, q in (("p50", 0.5), ("p99", 0.99))}


def pooled(rate, own, cores, cv) -> dict[str, float]:
    """TTFT quantiles (without the step a prompt waits for) of one FCFS prefill queue served by
    `cores` (M/G/c): P(wait) by Erlang C at load rate x own, the wait's tail rate that of an
    M/G/1 queue at service own / cores; a prompt's own prefill is own x its length factor."""
    load, xs = rate * own, q.length_factors(cv)
    term, total = 1.0, 1.0
    for k in range(1, cores):
        term *= load / k
        total += term
    last = term * load / (cores - load)
    p_wait = last / (total + last)
    theta = q.mg1_tail_rate(rate, own / cores, xs)

    def over(t):
        return sum(1.0 if own * x > t else p_wait * math.exp(-theta * (t - own * x)) for x in xs)

    out = {}
    for key, level in (("p50", 0.5), ("p99", 0.99)):
        lo, hi = 0.0, own * max(xs) + 10 * (1 + 1 / theta)
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if over(mid) / len(xs) > 1 - level else (lo, mid)
        out[key] = hi
    return out


def main() -> None:
    model = s.resolve_model("llama3-405b")
    for chip_name, chips, tp, rate, budget, max_batch, osl, logged in RUNS:
        plan = s.plan_serving(
            chip_name, model, chips, isl=ISL, osl=osl, dtype="fp4", kv_dtype="fp8", tp=tp, pp=1,
            max_batch=max_batch, ttft_slo=6.0, tpot_slo=0.175, slo_percentile="p99",
            osl_cv=OSL_CV, isl_cv=ISL_CV, max_num_tokens=budget,
        )  # fmt: skip
        at = s.at_rate(plan, rate)
        chip = s._load_chip(chip_name)
        topo = s.topology_for(chip, chips, None)
        ctx = ISL + round(osl * (1 + OSL_CV**2) / 2)
        steps: dict[int, float] = {}

        def decode(b, chip=chip, topo=topo, tp=tp, ctx=ctx, steps=steps):
            b = max(1, b)
            if b not in steps:
                steps[b] = s._step(chip, model, topo, "decode", b, ctx, tp, 1, 1, "fp4", "fp8")
            return steps[b]

        per_token = at.breakdown["prefill"] / ISL
        print(f"{chip_name} x {chips}, TP{tp}, {rate} requests/s, max_num_tokens {budget}:")
        print(f"  model          p50 {at.ttft_at('p50'):.2f} s  p99 {at.ttft_at('p99'):.2f} s")
        decode_step = at.breakdown["decode"]
        own = at.breakdown["prefill"] + ISL / (budget - at.batch) * decode_step
        pool = {k: decode_step + v for k, v in pooled(rate, own, plan.dp, ISL_CV).items()}
        print(f"  pooled M/G/c   p50 {pool['p50']:.2f} s  p99 {pool['p99']:.2f} s (closed form)")
        for policy in ("random", "fewest in flight"):
            sim = simulate(policy, rate, plan.dp, budget, decode, per_token, osl)
            print(f"  {policy:16s} p50 {sim['p50']:.2f} s  p99 {sim['p99']:.2f} s (simulated)")
        print(f"  logged         p50 {logged[0]:.2f} s  p99 {logged[1]:.2f} s")


if __name__ == "__main__":
    main()
