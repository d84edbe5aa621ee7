"""Speed of the training planner: one plan evaluation (layer costs cached) and a full search
for Llama-3-405B on 16,384 H100s (issue 7: < 10 ms and < 10 s)."""

from __future__ import annotations

import time

from chipforge.cluster import plan_training
from chipforge.cluster.layer import _CACHE as _LAYER_CACHE
from chipforge.cluster.search import _PLANS


def main() -> None:
    flags = dict(tp=8, pp=16, dp=128, cp=1, ep=1, zero=1, recompute="full", micro_batch=1)
    _LAYER_CACHE.clear()
    t = time.perf_counter()
    plan_training("h100", "llama3-405b", 16384, interleave=2, **flags)
    cold = time.perf_counter() - t
    n = 200
    t = time.perf_counter()
    for _ in range(n):
        _PLANS.clear()  # the evaluation, not the memo of finished searches
        plan_training("h100", "llama3-405b", 16384, interleave=2, **flags)
    warm = (time.perf_counter() - t) / n
    print(f"one plan evaluation: {cold * 1e3:.1f} ms cold (estimates one layer), "
          f"{warm * 1e3:.2f} ms cached (target < 10 ms)")  # fmt: skip
    _LAYER_CACHE.clear()
    _PLANS.clear()
    t = time.perf_counter()
    best = plan_training("h100", "llama3-405b", 16384, tokens=15.6e12)
    search = time.perf_counter() - t
    p = best.plan
    print(f"full search llama3-405b on 16,384 x h100: {search:.2f} s (target < 10 s); best "
          f"tp={p.tp} pp={p.pp} dp={p.dp} cp={p.cp} zero={p.zero} recompute={p.recompute} "
          f"mb={p.micro_batch} v={p.interleave}: step {best.step_time_s:.2f} s, "
          f"MFU {best.mfu:.1%}, {best.time_to_train_s / 86400:.1f} days")  # fmt: skip


if __name__ == "__main__":
    main()
