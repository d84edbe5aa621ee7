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


def test_a_chunk_attends_to_its_prompts_earlier_chunks_by_hand():
    """A prompt longer than the budget is prefilled in chunks; each later chunk also attends to
    the prompt's tokens before it (`context_s(n, o)`, here n x o). 10 tokens under 4 a step:
    chunks of 4, 4, 2 after 0, 4, 8 tokens -> 4 x 4 + 2 x 8 on top. Two prompts of 3 under 4:
    step 1 holds A and B's first token (no earlier context), step 2 B's last 2 after 1."""
    base, _ = static_budget_schedule(1, 10, 1, 4, lambda d: 0.0, lambda p: 1.0)
    total, first = static_budget_schedule(
        1, 10, 1, 4, lambda d: 0.0, lambda p: 1.0, lambda n, o: n * o
    )
    assert base == 3.0 and total == first == 3.0 + 4 * 4 + 2 * 8
    total, _ = static_budget_schedule(2, 3, 1, 4, lambda d: 0.0, lambda p: 0.0, lambda n, o: n * o)
    assert total == 2 * 1


def test_chunking_a_long_prompt_does_not_make_its_prefill_cheaper():
    """One 32K-token prompt under vLLM V0's 512-token steps: its 64 chunks cost at least the
    prompt's own prefill pass (each reads the weights again and attends to the chunks before
    it), and about the chunks priced one by one with their earlier context. Before, every chunk
    was priced as a fresh 512-token prompt and the chunked prefill came out ~16 % faster."""
    from chipforge.cluster import serving as s

    kw = dict(isl=32768, osl=2, batching="static", concurrency=1, tp=1, pp=1)
    whole = plan_serving("h100", "llama3-8b", 1, **kw)
    chunked = plan_serving("h100", "llama3-8b", 1, max_num_tokens=512, **kw)
    assert chunked.ttft_s > whole.ttft_s
    chip, c = s._load_chip("h100"), s.resolve_model("llama3-8b")
    topo = s.topology_for(chip, 1)
    by_chunk = sum(
        s._step(chip, c, topo, "prefill", 1, 512, 1, 1, 1, "bf16", "bf16", None, False, 512 * k)
        for k in range(64)
    )
    assert chunked.ttft_s == pytest.approx(by_chunk, rel=0.02)
