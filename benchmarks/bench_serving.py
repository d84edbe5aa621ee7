"""Speed of the serving planner (issue 7: one serving evaluation < 5 ms): one evaluation with
explicit flags (per-layer costs cached) and a full search under SLOs."""

from __future__ import annotations

import time

from chipforge.cluster import plan_serving
from chipforge.cluster.serving import _CACHE


def main() -> None:
    kw = dict(isl=2048, osl=256, tp=8, pp=1, concurrency=64)
    _CACHE.clear()
    t = time.perf_counter()
    plan_serving("h100", "llama3-70b", 8, **kw)
    cold = time.perf_counter() - t
    n = 500
    t = time.perf_counter()
    for _ in range(n):
        plan_serving("h100", "llama3-70b", 8, **kw)
    warm = (time.perf_counter() - t) / n
    # a shape never costed before, with the chip and model already parsed (what a search or a
    # sweep pays per new point; "cold" above also parses the preset TOML files once)
    t = time.perf_counter()
    plan_serving("h100", "llama3-70b", 8, **{**kw, "isl": 1536, "concurrency": 48})
    fresh = time.perf_counter() - t
    print(
        f"serving evaluation (llama3-70b, 8 x h100, tp=8): cold {cold * 1e3:.1f} ms "
        f"(first in process), new shape {fresh * 1e3:.1f} ms, warm {warm * 1e3:.3f} ms "
        "(target < 5 ms)"
    )
    plan = plan_serving("h100", "llama3-70b", 8, **kw)
    t = time.perf_counter()
    for _ in range(50):
        curve = plan.to_dict()["curve"]
    print(
        f"latency/throughput curve ({len(curve)} points, to_dict()['curve']): "
        f"{(time.perf_counter() - t) / 50 * 1e3:.3f} ms warm"
    )
    for chip, model, chips in (
        ("forge-n3", "llama3-70b", 8),
        ("h100", "llama3-405b", 16),
        ("h100", "mixtral-8x7b", 8),
        ("h800", "deepseek-v3", 144),  # wide EP with DP attention in the search (target < 1 s)
    ):
        _CACHE.clear()
        t = time.perf_counter()
        p = plan_serving(chip, model, chips, isl=2048, osl=256, ttft_slo=2.0, tpot_slo=0.1)
        s = time.perf_counter() - t
        print(
            f"search {model} on {chips} x {chip} (SLO 2 s / 100 ms): {s:.2f} s cold -> "
            f"tp={p.tp} pp={p.pp} ep={p.ep} batch={p.batch}, "
            f"{p.throughput_tokens_per_s:,.0f} tokens/s"
        )
    # a static batch under a token budget: each evaluation steps vLLM V0's chunked-prefill
    # schedule (cluster.static_budget), thousands of steps at 4K prompts in 512-token steps
    _CACHE.clear()
    t = time.perf_counter()
    kw = dict(isl=4096, osl=4096, batching="static", max_num_tokens=512, tpot_slo=0.1)
    p = plan_serving("mi300x", "llama3-70b", 8, **kw)
    print(
        f"search static max_num_tokens 512 llama3-70b on 8 x mi300x (TPOT 100 ms): "
        f"{time.perf_counter() - t:.2f} s cold -> tp={p.tp} batch={p.batch}, "
        f"{p.throughput_tokens_per_s:,.0f} tokens/s"
    )


if __name__ == "__main__":
    main()
