"""The engine's largest running batch (`max_batch`: vLLM's max_num_seqs, TensorRT-LLM's
max_batch_size) caps the batch also where a concurrency is stated: the requests beyond it wait
for a free slot (closed loop) instead of joining the running batch."""

import pytest

from chipforge.cluster.serving import plan_serving

KW = dict(isl=1024, osl=256, dtype="fp8", tp=1, pp=1)


def test_stated_concurrency_runs_at_most_max_batch():
    capped = plan_serving("h100", "llama3-8b", 1, concurrency=64, max_batch=16, **KW)
    free = plan_serving("h100", "llama3-8b", 1, concurrency=16, **KW)
    assert capped.batch == free.batch == 16  # was 64: the cap was applied to the search only
    # the same 16 running sequences: the same steps and throughput
    assert capped.tpot_s == pytest.approx(free.tpot_s)
    assert capped.throughput_tokens_per_s == pytest.approx(free.throughput_tokens_per_s)
    # the other 48 clients queue: by Little's law each client's request cycle is 64 / 16 times
    # a running slot's cycle
    slot = free.ttft_s + (KW["osl"] - 1) * free.tpot_s
    cycle = capped.ttft_s + (KW["osl"] - 1) * capped.tpot_s
    assert cycle == pytest.approx(64 * KW["osl"] / capped.throughput_tokens_per_s)
    assert cycle > 3.5 * slot
