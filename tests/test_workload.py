"""The LLM builder against the standard formulas and published totals."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chipforge.data import figure
from chipforge.errors import WorkloadError
from chipforge.workload import Attention, MatMul, build, load_model, parse_workload

# Parameter counts as published (model cards / papers), in billions.
PUBLISHED_PARAMS = {
    "llama3-8b": (8.03, None),  # Llama 3 model card: 8.03B
    "llama3-70b": (70.6, None),  # Llama 3 model card: 70.6B
    "llama3-405b": (405.0, None),  # Llama 3 paper: 405B
    "gpt3-175b": (175.0, None),  # Brown et al. 2020: 175B
    "mixtral-8x7b": (46.7, 12.9),  # Mistral AI: 46.7B total, 12.9B active
    "deepseek-v3": (671.0, 37.0),  # DeepSeek-V3 report: 671B total, 37B active
    "qwen3-30b-a3b": (30.5, 3.3),  # Qwen3-30B-A3B model card: 30.5B total, 3.3B activated
    "qwen3-235b-a22b": (235.0, 22.0),  # Qwen3-235B-A22B model card: 235B total, 22B activated
    # gpt-oss model card (arXiv 2508.10925) Table 1: 116.83B / 20.91B total, 5.13B / 3.61B active
    # counted without the input embedding (201088 x 2880 = 0.58B), which `active` includes
    "gpt-oss-120b": (116.83, 5.13 + 0.58),
    "gpt-oss-20b": (20.91, 3.61 + 0.58),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_counts(name):
    total, active = PUBLISHED_PARAMS[name]
    config = load_model(name)
    assert config.params() / 1e9 == pytest.approx(total, rel=0.01)
    if active:
        assert config.params(active=True) / 1e9 == pytest.approx(active, rel=0.02)


def training_flops(model: str, seq: int, tokens: float) -> float:
    graph = build(load_model(model), phase="train", batch=1, seq=seq)
    return graph.flops / seq * tokens


@pytest.mark.parametrize(
    ("model", "seq", "tokens", "figure_id"),
    [
        ("gpt3-175b", 2048, 300e9, "perf-gpt3-flops"),  # Brown et al. 2020, Table D.1
        ("llama3-405b", 8192, 15.6e12, "perf-llama3-flops"),  # Llama 3 paper, Sec. 3
    ],
)
def test_training_flops_match_published_totals(model, seq, tokens, figure_id):
    # the published totals are 6ND; the graph adds causal attention, a few percent more
    ratio = training_flops(model, seq, tokens) / figure(figure_id)
    assert 1.0 <= ratio <= 1.05


def test_prefill_flops_follow_the_formula():
    c = load_model("llama3-8b")
    b, s = 2, 1024
    g = build(c, phase="prefill", batch=b, seq=s)
    h, d, H, kvh, f, L, V = c.hidden, c.d_head, c.heads, c.n_kv_heads, c.ffn, c.layers, c.vocab
    t = b * s
    qkv = 2 * t * h * (H + 2 * kvh) * d
    out = 2 * t * H * d * h
    ffn = 2 * t * h * f * 3  # gate, up, down
    attention = 2 * b * H * (s * (s + 1) / 2) * (2 * d)  # causal QK^T and PV
    blocks = L * (qkv + out + ffn + attention)
    matrix = lambda graph: sum(  # noqa: E731
        op.total_flops for op in graph.ops if isinstance(op, (MatMul, Attention))
    )
    assert matrix(g) == pytest.approx(blocks + 2 * t * h * V, rel=1e-12)  # every position
    assert g.meta["logits"] == "all positions"
    last = build(c, phase="prefill", batch=b, seq=s, logits="last")
    assert matrix(last) == pytest.approx(blocks + 2 * b * h * V, rel=1e-12)  # the last only
    assert last.meta["logits"] == "last position"


def test_decode_reads_the_kv_cache():
    c = load_model("llama3-70b")
    b, ctx = 8, 4096
    g = build(c, phase="decode", batch=b, context=ctx)
    attn = [op for op in g.ops if isinstance(op, Attention)]
    kv_bytes = sum(
        op.count * op.batch * op.kv_heads * op.kv_len * 2 * op.head_dim * 2 for op in attn
    )
    assert kv_bytes == b * (ctx + 1) * c.layers * 2 * c.n_kv_heads * c.d_head * 2
    assert g.resident["kv_cache"] == pytest.approx(kv_bytes)
    assert g.resident["weights"] == pytest.approx(2 * c.params())


@pytest.mark.parametrize(
    "q, kv, window", [(32, 32, 8), (32, 32, 1), (5, 40, 8), (1, 100, 16), (1, 4, 16), (7, 7, 7)]
)
def test_sliding_window_attends_its_band(q, kv, window):
    """A windowed query at position p attends keys p - window < j <= p (transformers'
    sliding_window_overlay): the pair count is the brute-force count of that mask, and only
    the keys in any query's reach are read."""
    import numpy as np

    op = Attention(name="a", batch=1, heads=1, kv_heads=1, q_len=q, kv_len=kv, head_dim=8,
                   window=window)  # fmt: skip
    p, j = np.arange(kv - q, kv)[:, None], np.arange(kv)[None, :]
    mask = (j <= p) & (j > p - window)
    assert op.attended == mask.sum()
    assert op.keys == mask.any(axis=0).sum()


def test_sliding_window_model_costs_the_band_and_caches_the_window():
    """A Mistral-like model with a 4k window at 16k tokens: prefill attention is the band (far
    below the causal triangle), decode reads and keeps 4k keys a layer, and a window past the
    context changes nothing; half the layers windowed (Gemma 2's pattern) is half way."""
    c = load_model("llama3-8b", window=4096)
    full = load_model("llama3-8b")
    attn = lambda g: sum(o.total_flops for o in g.ops if isinstance(o, Attention))  # noqa: E731
    long, causal = build(c, seq=16384), build(full, seq=16384)
    w, s = 4096, 16384
    band = w * (w + 1) / 2 + (s - w) * w
    assert attn(long) / attn(causal) == pytest.approx(band / (s * (s + 1) / 2))
    assert "4096-token sliding window in 32 of 32 layers" in long.meta["attention"]
    dec = build(c, phase="decode", context=16000)
    assert dec.resident["kv_cache"] == pytest.approx(
        build(full, phase="decode", context=4095).resident["kv_cache"]
    )
    assert build(c, seq=4096).flops == build(full, seq=4096).flops
    half = build(load_model("llama3-8b", window=4096, window_layers=16), seq=s)
    assert attn(half) == pytest.approx((attn(long) + attn(causal)) / 2)
    with pytest.raises(WorkloadError, match="window_layers"):
        load_model("llama3-8b", window_layers=4)


def test_moe_decode_reads_only_routed_experts():
    c = load_model("deepseek-v3")
    g = build(c, phase="decode", batch=1, context=128)
    experts = next(op for op in g.ops if op.name == "moe_layers.experts_up")
    assert experts.batch == c.top_k  # one token touches top_k experts


def test_tensor_parallel_shards_and_adds_allreduces():
    c = load_model("llama3-70b")
    one = build(c, phase="prefill", seq=2048)
    eight = build(c, phase="prefill", seq=2048, tp=8)
    matmul = lambda g: sum(op.total_flops for op in g.ops if isinstance(op, MatMul))  # noqa: E731
    assert matmul(eight) == pytest.approx(matmul(one) / 8, rel=0.01)
    assert sum(op.count for op in eight.ops if op.kind == "collective") == 2 * c.layers


@settings(max_examples=30, deadline=None)
@given(
    layers=st.integers(1, 4),
    heads=st.sampled_from([4, 8]),
    kv=st.sampled_from([1, 2, 4]),
    d=st.sampled_from([32, 64]),
    phase=st.sampled_from(["prefill", "decode", "train"]),
    batch=st.integers(1, 4),
)
def test_graph_flops_are_the_sum_of_its_ops(layers, heads, kv, d, phase, batch):
    c = load_model(
        "custom",
        layers=layers,
        hidden=heads * d,
        heads=heads,
        kv_heads=kv,
        ffn=4 * heads * d,
        vocab=1000,
        seq=64,
    )
    g = build(c, phase=phase, batch=batch, context=64)
    assert g.flops == sum(op.flops * op.count for op in g.ops)
    assert all(op.flops >= 0 and op.bytes >= 0 for op in g.ops)


def test_training_is_about_three_forward_passes():
    c = load_model("llama3-8b")
    fwd = build(c, phase="prefill", seq=4096).flops
    train = build(c, phase="train", seq=4096).flops
    assert 2.9 < train / fwd < 3.6  # backward = 2x forward matmuls, 2.5x attention


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "llm:llama3-70b,phase=decode,batch=-4",
            "`workload.batch` must be a positive integer, not '-4'",
        ),
        (
            "llm:llama3-70b,batchsize=4",
            "`workload.batchsize` is not an llm parameter (did you mean batch?); use batch, "
            "context, dtype, images, kv_dtype, logits, phase, scope, seq, tp or a model field",
        ),
        (
            "llm:llama3-70b,phase=serve",
            "`phase` must be one of prefill, decode, train, not 'serve'",
        ),
        (
            "llm:llama-70b",
            "`workload` must be a preset, llm:<preset>,key=value, llm:custom,... or a config.json "
            "or model folder, not 'llama-70b' (did you mean llama3-70b, llama2-70b, llama2-7b?); "
            "`chipforge presets` lists the presets",
        ),
        ("gemm:m=8,n=8", "`workload.k` is required: gemm:m=..,n=..,k=.."),
        (
            "gemm:m=8,n=8,k=8,dtype=bf17",
            "`workload.dtype` must be one of fp64, fp32, tf32, bf16, "
            "fp16, fp8, int8, fp4, int4, not 'bf17'",
        ),
        ("gemm:m=8,n,k=8", "`workload` gemm parameters must be key=value, not 'n'"),
        (
            "llm:custom,layers=2,hidden=64",
            "custom model needs `heads`, `ffn`, `vocab`; give them as "
            "llm:custom,layers=..,hidden=..,heads=..,ffn=..,vocab=.. (or a config.json)",
        ),
    ],
)
def test_bad_workload_strings(text, message):
    with pytest.raises(WorkloadError) as err:
        parse_workload(text)
    assert str(err.value) == message


def test_conv_is_costed_as_its_implicit_gemm():
    from chipforge.workload import Conv2d

    b, h, w, cin, cout, kh, kw, stride = 8, 56, 56, 64, 128, 3, 3, 2
    conv = Conv2d(
        name="c", batch=b, height=h, width=w, cin=cin, cout=cout, kh=kh, kw=kw, stride=stride
    )
    ho, wo = -(-h // stride), -(-w // stride)  # 'same' padding
    assert conv.flops == 2 * b * ho * wo * cout * cin * kh * kw
    assert conv.weight_bytes == kh * kw * cin * cout * 2
    gemm = conv.as_matmul()
    assert (gemm.m, gemm.n, gemm.k) == (b * ho * wo, cout, cin * kh * kw)
