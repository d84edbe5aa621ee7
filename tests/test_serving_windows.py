"""Serving with sliding-window attention: the band after cached tokens, and models whose window
bands only some layers (GPT-OSS, Gemma 2/3), in the attention's work, its KV reads and the KV
cache's memory."""

import math
from dataclasses import replace

import numpy as np
import pytest

from chipforge.cluster import serving
from chipforge.cluster.kvcache import PAGE_TOKENS, memory
from chipforge.perf import estimate
from chipforge.spec.loader import load_chip
from chipforge.workload.config import load_model
from chipforge.workload.llm import build
from chipforge.workload.ops import Attention

TINY = dict(layers=4, hidden=64, heads=4, kv_heads=2, ffn=128, vocab=256, seq=64)


def _mask(new: int, cached: int, window: int) -> np.ndarray:
    """Which (query, key) pairs `new` queries after `cached` tokens attend: causal, and with a
    window only the `window` keys up to each query's own position (transformers'
    sliding_window_overlay: kv_idx > q_idx - window)."""
    q = np.arange(cached, cached + new)[:, None]
    k = np.arange(cached + new)[None, :]
    mask = k <= q
    return mask & (k > q - window) if window else mask


def _attention(graph) -> Attention:
    (op,) = [op for op in graph.ops if isinstance(op, Attention)]
    return op


@pytest.mark.parametrize("window", [0, 1, 2, 3, 5, 8, 13, 40])
def test_prefill_after_cached_tokens_attends_exactly_the_window_band(window):
    # every (new, cached) pair on a small grid, counted pair by pair: the prefill's attended
    # pairs and the keys it reads, as serving builds them (a prefix-cache hit, or a chunk after
    # the earlier ones); the window was lost where new <= window < new + cached
    c = load_model("custom", name="tiny", window=window, **TINY)
    for new in (1, 2, 3, 4, 7, 12):
        for cached in (0, 1, 2, 5, 9, 17, 30):
            op = _attention(serving._graph(c, "prefill", 1, new, 1, "bf16", "bf16", past=cached))
            mask = _mask(new, cached, window)
            assert (op.q_len, op.kv_len) == (new, new + cached)
            assert op.attended == mask.sum(), (new, cached, window)
            assert op.keys == mask.any(0).sum(), (new, cached, window)


def test_decode_reads_the_window_only():
    for window in (0, 1, 4, 9):
        c = load_model("custom", name="tiny", window=window, **TINY)
        for context in (1, 3, 8, 20):
            op = _attention(serving._graph(c, "decode", 1, context, 1, "bf16", "bf16"))
            mask = _mask(1, context, window)
            assert op.attended == mask.sum() and op.keys == mask.any(0).sum()


def test_a_512_token_window_over_100_new_tokens_after_2000_cached():
    c = load_model("llama3-8b", window=512)
    op = _attention(serving._graph(c, "prefill", 1, 100, 1, "bf16", "bf16", past=2000))
    assert op.attended == 100 * 512 == _mask(100, 2000, 512).sum()  # not 205,050 (no band)
    assert op.keys == 100 + 511


def test_mla_prefill_expands_the_cached_latents_too():
    c = load_model("deepseek-v3")
    g = serving._graph(c, "prefill", 2, 100, 1, "bf16", "bf16", past=300)
    (up,) = [op for op in g.ops if op.name.endswith("kv_up")]
    assert up.m == 2 * 400 and _attention(g).kv_len == 400


# a GPT-OSS-like mix: 3 of 6 layers slide over 128 tokens
GPT_OSS_LIKE = TINY | dict(layers=6, hidden=2048, heads=16, ffn=4096, window=128, window_layers=3)


@pytest.mark.parametrize("phase,n,past", [("decode", 8000, 0), ("prefill", 4096, 0),
                                          ("prefill", 64, 8000)])  # fmt: skip
def test_mixed_window_layers_are_served_layer_by_layer(phase, n, past):
    # serving's block stands for one layer; times the layers it is the whole model's graph,
    # which builds the sliding and the full-attention layers apart (each with its count)
    chip = load_chip("h100")
    c = load_model("custom", name="mixed", **GPT_OSS_LIKE)
    block, _ = serving._layer(chip, c, phase, 2, n, 1, "bf16", "bf16", past=past)
    kw = {"seq": n, "past": past} if phase == "prefill" else {"context": n}
    whole = build(c, phase=phase, batch=2, scope="model", **kw)
    assert [op.count for op in whole.ops if isinstance(op, Attention)] == [3, 3]
    layers = [o for o in estimate(whole, chip, deployed=True).ops if o.name.startswith("layers")]
    assert block * c.layers == pytest.approx(sum(o.time_s for o in layers), rel=1e-9)
    # ... and it is cheaper than serving every layer with full attention
    full = replace(c, window=0, window_layers=None)
    assert block < serving._layer(chip, full, phase, 2, n, 1, "bf16", "bf16", past=past)[0]


def _gpt_oss_layer_windows() -> list[int]:
    # openai/gpt-oss-120b config.json layer_types: "sliding_attention" on the even layers
    return [128 if i % 2 == 0 else 0 for i in range(36)]


@pytest.mark.parametrize("tokens", [1, 100, 128, 129, 144, 145, 2048, 9000])
def test_sliding_layers_keep_only_their_windows_pages(tokens):
    # GPT-OSS-120B on one H100 at TP 1: KV bytes per token per layer, 8 KV heads x 64 x K,V x
    # 2 B; each layer's pages counted from layer_types: a full-attention layer holds every page,
    # a sliding one the pages of its window (vLLM's SlidingWindowSpec bound: +1 page where the
    # window straddles one)
    c = load_model("gpt-oss-120b")
    mem = memory(c, 400e9, tp=1, pp=1, dtype="bf16", kv_dtype="bf16")
    per_layer_page = 8 * 64 * 2 * 2 * PAGE_TOKENS
    pages = math.ceil(tokens / PAGE_TOKENS)
    held = sum(min(pages, math.ceil(w / PAGE_TOKENS) + 1) if w else pages
               for w in _gpt_oss_layer_windows())  # fmt: skip
    assert mem.kv_per_token * PAGE_TOKENS == 36 * per_layer_page
    budget = mem.kv_tokens * mem.kv_per_token  # the cache's whole pages, in bytes
    assert mem.sequences(tokens) == int(budget // (held * per_layer_page))
    if tokens > 144:  # past the window's pages, a sequence holds fewer than every layer's
        assert mem.sequences(tokens) > mem.kv_tokens // (pages * PAGE_TOKENS)
    read = sum(min(tokens, w or tokens) for w in _gpt_oss_layer_windows())
    assert mem.kv_bytes(tokens) == 8 * 64 * 2 * 2 * read


def test_gpt_oss_serves_more_sequences_and_reads_less_than_without_its_windows():
    chip = load_chip("h100")
    c = load_model("gpt-oss-120b")
    full = load_model("gpt-oss-120b", window=0, window_layers=None)
    kw = dict(tp=8, pp=1, dtype="bf16", kvd="bf16", isl=4096, osl=1024)
    assert serving._fits(c, chip, **kw) > 1.8 * serving._fits(full, chip, **kw)
    step = [serving._layer(chip, m, "decode", 64, 4096, 8, "bf16", "bf16")[0] for m in (c, full)]
    assert step[0] < step[1]


def test_a_dense_preallocated_cache_holds_and_reads_every_layers_positions():
    # jetstream-pytorch's dense cache (`dense_cache`): no layer keeps a window's pages only
    chip = load_chip("h100")
    c, full = load_model("gpt-oss-20b"), load_model("gpt-oss-20b", window=0, window_layers=None)
    kw = dict(tp=1, pp=1, dtype="bf16", kvd="bf16", isl=1024, osl=1024, dense_cache=4096)
    assert serving._fits(c, chip, **kw) == serving._fits(full, chip, **kw)
    topo = serving.topology_for(chip, 1, None)
    run = dict(isl=1024, osl=1024, tp=1, pp=1, ep=1, batch=8, dt="bf16", kvd="bf16",
               batching="interleaved", dense_cache=4096)  # fmt: skip
    a, b = (serving.evaluate(chip, m, 1, topo, **run) for m in (c, full))
    assert (a.tpot_s, a.ttft_s) == (b.tpot_s, b.ttft_s)


def test_chunked_attention_attends_and_reads_its_chunk_after_cached_tokens():
    # Llama 4's chunked layers (transformers chunked_causal_mask_function: kv_idx // C ==
    # q_idx // C, causal), pair by pair, in serving's prefill after cached tokens and decode
    chunk = 5
    c = load_model("custom", name="tiny", window=chunk, chunked=True, **TINY)
    for new, cached in ((1, 0), (3, 4), (7, 9), (12, 30), (1, 17), (5, 5)):
        phase, n = ("decode", cached) if new == 1 and cached else ("prefill", new)
        kw = {} if phase == "decode" else {"past": cached}
        op = _attention(serving._graph(c, phase, 1, n, 1, "bf16", "bf16", **kw))
        q = np.arange(cached, cached + new)[:, None]
        k = np.arange(cached + new)[None, :]
        mask = (k <= q) & (k // chunk == q // chunk)
        assert op.attended == mask.sum() and op.keys == mask.any(0).sum(), (new, cached)
