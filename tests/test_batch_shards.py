"""One engine whose running batch is split over several chips (`batch_shards`; jetstream-pytorch
--shard_on_batch): the shards decode their shares in step, and the engine prefills its prompts
one at a time for all of them -- not `batch_shards` independent replicas, each prefilling its
own prompts beside the others."""

from __future__ import annotations

import csv
import json
from importlib import resources

import pytest
from typer.testing import CliRunner

from chipforge.cli import app, main
from chipforge.cluster import serving as s
from chipforge.errors import WorkloadError

GEMMA2B = (
    "llm:custom,name=gemma-2b,layers=18,hidden=2048,heads=8,kv_heads=1,head_dim=256,ffn=16384,"
    "vocab=256000,act=geglu,tied_embeddings=true,seq=8192"
)
KW = dict(isl=121, osl=233, tp=1, pp=1, batching="interleaved", dense_cache=2048)


def test_one_engine_prefills_for_every_shard():
    """8 shards of 64 sequences: each shard's decode step is one chip's at 64 sequences, a
    prompt's prefill one chip's, and the engine prefills its 512 sequences' prompts one after
    another: batch / (decode + batch / osl x prefill), one replica. Eight replicas of 64 (the
    old expression) prefill side by side and are twice as fast."""
    engine = s.plan_serving("tpu-v5e", GEMMA2B, 8, max_batch=512, batch_shards=8, **KW)
    one = s.plan_serving("tpu-v5e", GEMMA2B, 1, max_batch=64, **KW)
    replicas = s.plan_serving("tpu-v5e", GEMMA2B, 8, max_batch=64, **KW)
    assert (engine.dp, engine.batch, engine.batch_shards) == (1, 512, 8)
    assert (one.batch, replicas.dp) == (64, 8)
    decode, prefill = one.breakdown["decode"], one.breakdown["prefill"]
    assert engine.breakdown["decode"] == pytest.approx(decode, rel=1e-12)
    assert engine.breakdown["prefill"] == pytest.approx(prefill, rel=1e-12)
    want = 512 / (decode + 512 / 233 * prefill)
    assert engine.throughput_tokens_per_s == pytest.approx(want, rel=1e-12)
    assert engine.tpot_s == pytest.approx(decode + 511 / 233 * prefill, rel=1e-12)
    assert replicas.throughput_tokens_per_s == pytest.approx(8 * one.throughput_tokens_per_s)
    assert replicas.throughput_tokens_per_s > 2 * engine.throughput_tokens_per_s  # 37.6k, 17.2k
    # each shard holds its own sequences' cache: the engine holds 8 chips' worth
    chip, c = s._load_chip("tpu-v5e"), s.resolve_model(GEMMA2B)
    held = [s._fits(c, chip, 1, 1, "bf16", "bf16", 121, 233, dense_cache=2048, shards=n)
            for n in (1, 8)]  # fmt: skip
    assert held[1] == 8 * held[0]
    assert engine.to_dict()["plan"]["batch_shards"] == 8
    # a batch the shards cannot split evenly steps at the busiest shard's share: 12 -> 2
    uneven = s.plan_serving("tpu-v5e", GEMMA2B, 8, concurrency=12, batch_shards=8, **KW)
    two = s.plan_serving("tpu-v5e", GEMMA2B, 1, concurrency=2, **KW)
    assert uneven.batch == 12
    assert uneven.breakdown["decode"] == pytest.approx(two.breakdown["decode"], rel=1e-12)


def test_inputs_it_does_not_model_are_refused():
    for bad, match in (
        (dict(batching="continuous"), "--batch-shards .* --batching interleaved"),
        (dict(batch_shards=3), "--batch-shards 3 must divide --chips 8"),
        (dict(batch_shards=0), "--batch-shards must be a whole number from 1"),
        (dict(pp=2), "--batch-shards .* no --pp above 1"),
    ):
        kw = dict(KW, max_batch=512, batch_shards=8) | bad
        with pytest.raises(WorkloadError, match=match):
            s.plan_serving("tpu-v5e", GEMMA2B, 8, **kw)


def test_the_cli_states_it(capsys):
    """`chipforge serve --batch-shards 8` is the API's plan (the same name as the field)."""
    args = ["serve", "--chip", "tpu-v5e", "--model", GEMMA2B, "--chips", "8", "--isl", "121",
            "--osl", "233", "--tp", "1", "--pp", "1", "--max-batch", "512", "--batching",
            "interleaved", "--dense-cache", "2048", "--batch-shards", "8", "--json"]  # fmt: skip
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    plan = s.plan_serving("tpu-v5e", GEMMA2B, 8, max_batch=512, batch_shards=8, **KW)
    assert got["plan"]["batch_shards"] == 8 and got["plan"]["dp"] == 1
    assert got["throughput_tokens_per_s"] == pytest.approx(plan.throughput_tokens_per_s)
    with pytest.raises(SystemExit) as done:  # a user error: one line, exit 2
        main([*args[:-3], "--batch-shards", "3", "--json"])
    assert done.value.code == 2 and "--batch-shards 3 must divide" in capsys.readouterr().err


def test_the_shard_on_batch_rows_state_one_engine():
    """check2_heldout STATUS (f): both v5e-8 Gemma 2B rows of summary.md (--shard_on_batch)
    are one engine of the table's batch size over 8 shards; no other row shards its batch."""
    text = resources.files("chipforge.data").joinpath("check2_heldout.csv").read_text()
    lines = text.splitlines()
    assert "(f) U2's --shard_on_batch engine" in " ".join(lines)
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    sharded = {r["id"]: (r["max_batch"], r["batch_shards"]) for r in rows if r["batch_shards"]}
    assert sharded == {
        "jetstreampt-v5e8-gemma-2b-bf16-b512-v5e8": ("512", "8"),
        "jetstreampt-v5e8-gemma-2b-int8-b1024-v5e8": ("1024", "8"),
    }
