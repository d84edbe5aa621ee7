"""A static batch under a per-step token budget: the steps of vLLM's V0 scheduler with chunked
prefill serving one batch submitted at once (benchmark_latency.py's `llm.generate` of `batch`
prompts). vLLM V0 turns chunked prefill on by itself for a model whose max_model_len exceeds 32K
(vllm-project/vllm PR #6666, 2024-07-23; engine/arg_utils.py: "Chunked prefill is enabled by
default for models with max_model_len > 32K"; its engine logs then state "Chunked prefill is
enabled with max_num_batched_tokens=512", e.g. v0.6.4.dev26 with Llama-3.1-8B-Instruct,
max_seq_len 131072). Its chunked-prefill scheduler (core/scheduler.py
`_schedule_chunked_prefill`) fills each step's token budget with the running sequences' decode
tokens first, then with the waiting prompts in arrival order,
splitting the last prompt that does not fit; a prompt yields its first token in the step that
completes its prefill and then decodes once per step until it has `osl` tokens.

A step's time is a decode step of the sequences decoding in it plus a prefill pass of the prompt
tokens it carries, each priced as the serving model prices them (the same split as continuous
batching's decode step plus prefill share). A chunk that continues a prompt also attends to the
prompt's tokens prefilled in earlier steps, read from the KV cache (vLLM V0's attention
backends run such a prefill as "prefix-enabled attention" over the sequence's cached context:
`PagedAttention.forward_prefix` with `context_lens`, or FlashAttention's varlen kernel over the
block table); the pass over the step's own tokens does not count that, `context_s` adds it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import cache

from chipforge.errors import Infeasible

MAX_STEPS = 200_000  # steps one schedule may take (~0.1 s); beyond it the run is refused


def static_budget_schedule(
    batch: int,
    isl: int,
    osl: int,
    budget: int,
    decode_s: Callable[[int], float],
    prefill_s: Callable[[int], float],
    context_s: Callable[[int, int], float] | None = None,
) -> tuple[float, float]:
    """(seconds until the whole batch is done, seconds until its last prompt's first token) for
    `batch` prompts of `isl` tokens, each generating `osl` tokens, under `budget` tokens per
    step. `decode_s(d)`: a decode step of d sequences; `prefill_s(p)`: a pass over p prompt
    tokens; `context_s(n, o)`: what n tokens of a prompt add by attending to its first o tokens,
    prefilled in earlier steps (None: nothing)."""
    # a step's cost depends only on its decodes / prompt tokens: each shape priced once
    decode_s, prefill_s = cache(decode_s), cache(prefill_s)
    context_s = cache(context_s) if context_s else None
    total_prompt = batch * isl
    if -(-total_prompt // budget) + osl > MAX_STEPS:
        raise Infeasible(
            f"a static batch of {batch} prompts of {isl} tokens under max_num_tokens {budget} "
            f"takes over {MAX_STEPS:,} steps: raise max_num_tokens or lower the batch"
        )
    t, filled, done, decoding, step = 0.0, 0, 0, 0, 0
    first_tokens = 0.0
    ends: Counter[int] = Counter()  # step after which that many sequences have osl tokens
    while done < batch or decoding:
        step += 1
        if step > MAX_STEPS:  # decodes filling the budget stall the prompts
            raise Infeasible(
                f"a static batch of {batch} under max_num_tokens {budget} takes over "
                f"{MAX_STEPS:,} steps: raise max_num_tokens or lower the batch"
            )
        p = min(max(0, budget - decoding), total_prompt - filled)
        if decoding:
            t += decode_s(decoding)
        if p:
            t += prefill_s(p)
        pos, end = filled, filled + p
        while context_s and pos < end:  # the step's piece of each prompt it carries
            o = pos % isl  # tokens of this prompt prefilled before the step
            if not o:  # whole prompts, then the start of the next: no earlier context
                pos += min(end - pos, isl * max(1, (end - pos) // isl))
                continue
            n = min(end - pos, isl - o)
            t += context_s(n, o)
            pos += n
        filled += p
        new = filled // isl - done  # prompts whose prefill this step completed
        done += new
        if new and done == batch:
            first_tokens = t
        decoding -= ends.pop(step, 0)
        if osl > 1 and new:  # they decode in the next osl - 1 steps
            decoding += new
            ends[step + osl - 1] += new
    return t, first_tokens
