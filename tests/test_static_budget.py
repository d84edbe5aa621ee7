"""A static batch under a per-step token budget (cluster/static_budget.py): vLLM V0's chunked
prefill of a benchmark_latency batch, step by step."""

from __future__ import annotations

import pytest

from chipforge.cluster.serving import plan_serving
from chipforge.cluster.static_budget import static_budget_schedule


def test_the_schedule_by_hand():
    """2 prompts of 4 tokens, 3 tokens each, 5 tokens a step; a step costs 1 s per decode
    sequence and 10 s per prompt token. Step 1: prompt A (4) + 1 of B -> A's first token.
    Step 2: A decodes (1), B's last 3 -> B's first token. Step 3: A (its 3rd token), B.
    Step 4: B's 3rd token. Done after 4 steps; B's first token at step 2."""
    total, first = static_budget_schedule(2, 4, 3, 5, lambda d: 1.0 * d, lambda p: 10.0 * p)
    assert first == pytest.approx(50 + (1 + 30))
    assert total == pytest.approx(50 + 31 + 2 + 1)


def test_a_budget_that_holds_the_batch_is_one_prefill_then_decodes():
    total, first = static_budget_schedule(8, 16, 5, 1000, lambda d: 1.0, lambda p: 7.0)
    assert first == 7.0 and total == 7.0 + 4 * 1.0


def test_a_small_budget_stretches_a_large_static_batch():
    """OCI's benchmark_latency rows: 405B FP8 on 8 MI300X, 128 in / 128 out. Under vLLM V0's
    512-token steps a batch of 256 spreads its prefill over ~90 steps that also decode, so the
    batch takes longer than one prefill pass plus 127 decode steps; a batch of 1 is unchanged."""
    kw = dict(isl=128, osl=128, dtype="fp8", kv_dtype="bf16", tp=8, pp=1, ep=1,
              batching="static")  # fmt: skip
    for b, more in ((256, 1.2), (1, None)):
        one = plan_serving("mi300x", "llama3-405b", 8, concurrency=b, max_batch=b, **kw)
        chunked = plan_serving(
            "mi300x", "llama3-405b", 8, concurrency=b, max_batch=b, max_num_tokens=512, **kw
        )
        if more:
            assert one.throughput_tokens_per_s > more * chunked.throughput_tokens_per_s
        else:
            assert chunked.throughput_tokens_per_s == pytest.approx(one.throughput_tokens_per_s)


def test_a_schedule_too_long_to_run_is_refused_at_once():
    from chipforge.cluster import static_budget as sb
    from chipforge.errors import Infeasible

    with pytest.raises(Infeasible, match="max_num_tokens"):
        sb.static_budget_schedule(1024, 100_000, 10, 1, lambda d: 1.0, lambda p: 1.0)
