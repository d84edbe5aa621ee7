"""JetStream's serving (jetstream-pytorch on one TPU slice): prompts prefilled one at a time at
their padded bucket between the decode steps (`batching="interleaved"`), and decode attention
over the whole preallocated cache (`dense_cache`, jetstream-pytorch without --ragged_mha)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from chipforge.cli import app
from chipforge.cluster import serving as s
from chipforge.errors import WorkloadError

KW = dict(isl=121, osl=233, dtype="bf16", tp=8, pp=1, max_batch=96)


def _parts(plan, bucket):
    chip, c = s._load_chip(plan.chip), s.resolve_model(plan.model)
    topo = s.topology_for(chip, plan.chips, None)
    args = (plan.tp, 1, 1, "bf16", "bf16")
    decode = s._step(chip, c, topo, "decode", plan.batch, 2048, *args)
    prefill = s._step(chip, c, topo, "prefill", 1, bucket, *args)
    return decode, prefill


def test_interleaved_is_jetstreams_own_time_model():
    """jetstream-pytorch benchmarks/analyze_sharegpt.py: a request costs its prefill (batch 1,
    its bucket) plus its output tokens x the decode step / batch; 121 tokens pad to 128."""
    plan = s.plan_serving("tpu-v5e", "llama2-7b", 8, batching="interleaved", dense_cache=2048, **KW)
    decode, prefill = _parts(plan, 128)
    per_request = prefill + KW["osl"] * decode / plan.batch
    assert plan.throughput_tokens_per_s == pytest.approx(KW["osl"] / per_request, rel=1e-9)
    assert plan.tpot_s == pytest.approx(decode + (plan.batch - 1) / KW["osl"] * prefill)
    assert plan.breakdown["prefill"] == pytest.approx(prefill)
    # one prompt at a time costs more than prefills sharing a pass (continuous batching)
    shared = s.plan_serving("tpu-v5e", "llama2-7b", 8, dense_cache=2048, **KW)
    assert plan.throughput_tokens_per_s < shared.throughput_tokens_per_s


def test_dense_cache_reads_every_position_and_holds_it():
    """Decode attention over the cache's 2048 positions, not the running mean context; every
    slot holds the whole cache, so fewer sequences fit; a cache shorter than isl + osl is a
    rolling window, refused."""
    dense = s.plan_serving("tpu-v5e", "llama2-7b", 8, dense_cache=2048, **KW)
    ragged = s.plan_serving("tpu-v5e", "llama2-7b", 8, **KW)
    assert dense.batch == ragged.batch == 96
    assert dense.breakdown["decode"] == pytest.approx(_parts(dense, 128)[0])
    assert dense.breakdown["decode"] > 1.5 * ragged.breakdown["decode"]  # MHA 7B: KV-bound
    chip, c = s._load_chip("tpu-v5e"), s.resolve_model("llama2-7b")
    assert s._fits(c, chip, 8, 1, "bf16", "bf16", 121, 233, dense_cache=2048) < s._fits(
        c, chip, 8, 1, "bf16", "bf16", 121, 233
    )
    with pytest.raises(WorkloadError, match="--dense-cache"):
        s.plan_serving("tpu-v5e", "llama2-7b", 8, dense_cache=300, **KW)


def test_the_cli_states_both():
    """`chipforge serve --batching interleaved --dense-cache 2048` is the API's plan."""
    args = ["serve", "--chip", "tpu-v5e", "--model", "llama2-7b", "--chips", "8", "--isl", "121",
            "--osl", "233", "--tp", "8", "--max-batch", "96", "--batching", "interleaved",
            "--dense-cache", "2048", "--json"]  # fmt: skip
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    plan = s.plan_serving("tpu-v5e", "llama2-7b", 8, batching="interleaved", dense_cache=2048, **KW)
    assert got["plan"]["dense_cache_tokens"] == 2048 and got["plan"]["batching"] == "interleaved"
    assert got["throughput_tokens_per_s"] == pytest.approx(plan.throughput_tokens_per_s)


def test_interleaved_prefills_each_prompt_at_its_own_bucket():
    """analyze_sharegpt.py pads each request to its own power-of-two bucket. With prompt
    lengths spread (isl_cv), the mean prefill is taken over the lengths (the lognormal points
    of queueing.length_factors), not at the mean length's bucket; padding is convex in the
    length, so the spread costs throughput. isl_cv was ignored before."""
    from chipforge.cluster.queueing import length_factors

    kw = dict(KW, batching="interleaved", dense_cache=2048)
    spread = s.plan_serving("tpu-v5e", "llama2-7b", 8, isl_cv=1.5, **kw)
    fixed = s.plan_serving("tpu-v5e", "llama2-7b", 8, **kw)
    assert spread.batch == fixed.batch
    buckets = [max(16, 2 ** (round(121 * x) - 1).bit_length()) for x in length_factors(1.5)]
    assert max(buckets) >= 512 and min(buckets) <= 64
    prefill = sum(_parts(spread, n)[1] for n in buckets) / len(buckets)
    decode = _parts(spread, 128)[0]
    per_request = prefill + KW["osl"] * decode / spread.batch
    assert spread.throughput_tokens_per_s == pytest.approx(KW["osl"] / per_request, rel=1e-9)
    assert spread.throughput_tokens_per_s < fixed.throughput_tokens_per_s  # 3.70k vs 3.74k


def test_inputs_interleaved_batching_does_not_run_are_refused():
    """A token budget (chunked prefill) or a disaggregated pool with interleaved batching, or a
    pool with static batching, was accepted and ignored: the plan said "interleaved" / "static"
    and a max_num_tokens it never applied. Now a WorkloadError naming the field (exit 2)."""
    kw = dict(isl=1000, osl=200, tp=1, concurrency=64)
    for bad in (
        dict(batching="interleaved", max_num_tokens=512),
        dict(batching="interleaved", disaggregated=True),
        dict(batching="static", disaggregated="decode"),
    ):
        with pytest.raises(WorkloadError, match="--max-num-tokens|--batching"):
            s.plan_serving("h100", "llama3-8b", 2, **kw, **bad)
