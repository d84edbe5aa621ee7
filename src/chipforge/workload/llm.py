"""Build the operator graph of a decoder-only transformer for one phase on one chip's shard.

Phases: `prefill` (a batch of prompts), `decode` (one new token per sequence against a KV cache
of `context` tokens), `train` (forward, backward and the optimizer step for one micro-batch).
With tensor parallelism `tp` the graph is one chip's shard (Megatron-LM column/row split,
Shoeybi et al. 2019) plus its all-reduces.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from chipforge.dtypes import nbytes
from chipforge.errors import WorkloadError
from chipforge.workload.config import DELTA_STATE_DTYPE, ModelConfig
from chipforge.workload.graph import Graph
from chipforge.workload.ops import Attention, Collective, Embedding, MatMul, Op, Vector
from chipforge.workload.routing import expert_groups

Phase = Literal["prefill", "decode", "train"]
PHASES = ("prefill", "decode", "train")

# Vector ops are unfused: each reads and writes its bf16 tensors off-chip unless the chip keeps
# activations on chip (perf decides). RMSNorm (Zhang & Sennrich 2019) per element: square, sum,
# scale, multiply by the gain.
NORM_FLOPS = 5
# Mixed-precision Adam keeps fp32 master weights, m and v (12 B) and an fp32 gradient
# (ZeRO, Rajbhandari et al. SC 2020: 16 B of model state per parameter with the bf16 weights).
ADAM_BYTES_READ, ADAM_BYTES_WRITTEN, ADAM_FLOPS = 16, 14, 12
TRAIN_STATE_BYTES = 16  # per parameter (ZeRO paper, Sec. 3.1)
# Activations kept for the backward pass per layer: 34*s*b*h bytes with flash attention
# (Korthikanti et al. 2022, Table 2, without the 5*a*s/h attention-score term).
ACT_BYTES_PER_TOKEN_HIDDEN = 34


def shard(size: int, tp: int) -> int:
    """One tensor-parallel rank's share of a dimension split `tp` ways: ceil(size / tp), as
    Megatron-LM pads the vocabulary to a multiple of tp (never 0 rows for a tiny dimension)."""
    return -(-size // tp)


def _mm(name: str, m: int, n: int, k: int, dtype: str, **kw) -> MatMul:
    return MatMul(name=name, m=m, n=n, k=k, dtype=dtype, **kw)


def _vec(
    name: str, elements: float, dtype: str, flops: float = 1, trans: float = 0, tensors: int = 2
) -> Vector:
    return Vector(
        name=name,
        elements=elements,
        flops_per_element=flops,
        transcendentals_per_element=trans,
        bytes_per_element=tensors * nbytes(dtype),
        dtype=dtype,
    )


def _allreduce(name: str, elements: int, tp: int, dtype: str) -> list[Op]:
    """The all-reduce that ends a row-parallel matmul (Megatron-LM); none without TP."""
    if tp == 1:
        return []
    size = elements * nbytes(dtype)
    return [Collective(name=name, op="all_reduce", size=size, group=tp, dtype=dtype)]


def attention_block(
    c: ModelConfig,
    *,
    b: int,
    q: int,
    kv: int,
    tp: int,
    dtype: str,
    kv_dtype: str,
    causal: bool,
    window: int = 0,
) -> list[Op]:
    """Projections and fused attention; `q` query and `kv` key positions per sequence;
    `window`: a causal sliding window (0: none; `Attention` drops one no shorter than the
    context)."""
    t, h, heads = b * q, c.hidden, max(1, c.heads // tp)
    ops: list[Op] = [_vec("attn_norm", t * h, dtype, NORM_FLOPS)]
    if c.kv_lora:
        ops += _mla(
            c, t=t, b=b, q=q, kv=kv, heads=heads, dtype=dtype, kv_dtype=kv_dtype, causal=causal,
            window=window,
        )  # fmt: skip
    else:
        kvh = max(1, c.n_kv_heads // tp)  # KV heads are replicated when tp > kv_heads
        qk = t * (heads + kvh) * c.d_head  # query and key elements
        gate = heads if c.attn_gate else 0  # q_proj's gate half (Qwen3-Next)
        ops += [
            _mm("qkv_proj", t, (heads + gate + 2 * kvh) * c.d_head, h, dtype),
            *([_vec("qk_norm", qk, dtype, NORM_FLOPS)] if c.qk_norm else []),
            _vec("rope", qk, dtype, 3),
            Attention(
                name="attention",
                batch=b,
                heads=heads,
                kv_heads=kvh,
                q_len=q,
                kv_len=kv,
                head_dim=c.d_head,
                causal=causal,
                window=window,
                chunked=c.chunked,
                dtype=kv_dtype,
            ),
            *([_vec("attn_gate", t * heads * c.d_head, dtype, 2, 1, 3)] if gate else []),
            _mm("o_proj", t, h, heads * c.d_head, dtype),
        ]
    return (
        ops
        + _allreduce("attn_allreduce", t * h, tp, dtype)
        + [_vec("attn_residual", t * h, dtype, 1, tensors=3)]
    )


def _mla(
    c: ModelConfig,
    *,
    t: int,
    b: int,
    q: int,
    kv: int,
    heads: int,
    dtype: str,
    kv_dtype: str,
    causal: bool,
    window: int = 0,
) -> list[Op]:
    """DeepSeek-V3 multi-head latent attention. Decode uses the absorbed form (queries projected
    into the 512-d latent, attention over the cached latent); prefill/train expand K and V."""
    h, d, r, lat = c.hidden, c.d_head, c.rope_dim, c.kv_lora
    if c.q_lora:  # low-rank query (DeepSeek-V3); without it one projection (DeepSeek-V2-Lite)
        ops: list[Op] = [
            _mm("q_down", t, c.q_lora, h, dtype),
            _mm("q_up", t, heads * (d + r), c.q_lora, dtype),
        ]
    else:
        ops = [_mm("q_proj", t, heads * (d + r), h, dtype)]
    ops.append(_mm("kv_down", t, lat + r, h, dtype))
    index = _indexer(c, t=t, b=b, q=q, kv=kv, dtype=dtype, causal=causal)
    window, sparse = (c.index_topk, True) if c.index_topk else (window, False)
    if q == 1:  # absorbed: W_UK into the query, W_UV after attention (MQA over the latent)
        ops += [
            _mm("q_absorb", t, lat, d, dtype, batch=heads),
            *index,
            Attention(
                name="attention",
                batch=b,
                heads=heads,
                kv_heads=1,
                q_len=q,
                kv_len=kv,
                head_dim=lat + r,
                v_head_dim=lat,
                v_in_k=True,
                causal=causal,
                window=window,
                chunked=c.chunked,
                sparse=sparse,
                dtype=kv_dtype,
            ),
            _mm("v_absorb", t, c.d_v, lat, dtype, batch=heads),
        ]
    else:  # every key position's latent is expanded (cached ones too, after `past` tokens)
        ops += [
            _mm("kv_up", b * kv, heads * (d + c.d_v), lat, dtype),
            *index,
            Attention(
                name="attention",
                batch=b,
                heads=heads,
                kv_heads=heads,
                q_len=q,
                kv_len=kv,
                head_dim=d + r,
                v_head_dim=c.d_v,
                causal=causal,
                window=window,
                chunked=c.chunked,
                sparse=sparse,
                dtype=kv_dtype,
            ),
        ]
    return ops + [_mm("o_proj", t, h, heads * c.d_v, dtype)]


# Gated DeltaNet's chunk length: the chunkwise algorithm's tile (Yang et al., arXiv 2412.06464
# Sec. 3.3; fla's chunk_gated_delta_rule and transformers' torch_chunk_gated_delta_rule: 64)
DELTA_CHUNK = 64
# Per element of the recurrent state, one decode step's work (torch_recurrent_gated_delta_rule):
# decay (1 multiply), read k^T S (multiply-add), the rank-1 update (multiply-add), the output
# q^T S (multiply-add); the state (DELTA_STATE_DTYPE, the serving pool's) read and written once
DELTA_STEP_FLOPS = 7


def delta_block(c: ModelConfig, *, b: int, q: int, tp: int, dtype: str) -> list[Op]:
    """A Gated DeltaNet layer (Qwen3NextGatedDeltaNet; Yang et al., arXiv 2412.06464) on one TP
    rank (its heads split): in_proj_qkvz and in_proj_ba, the depthwise causal conv over q, k,
    v, the gated delta rule, the gated RMSNorm, out_proj. Prefill/train run the chunkwise form
    (Sec. 3.3; transformers' torch_chunk_gated_delta_rule, sequences padded to whole 64-token
    chunks of C): per chunk and value head the C x C products K_beta K^T and Q K^T (d_k), the
    two unit-triangular solves as flash-linear-attention's chunk_gated_delta_rule runs them
    (products with the inverted C x C matrix; torch's reference calls solve_triangular, which
    FlopCounterMode does not count), the state reads (K_cumdecay S, Q S: C x d_k x d_v each),
    the intra-chunk product (C x C x d_v) and the state update (d_k x C x d_v). Decode (q = 1)
    runs the recurrence on the state (DELTA_STEP_FLOPS an element, read and written)."""
    h, t = c.hidden, b * q
    hv = max(1, c.delta_v_heads // tp)
    hk = max(1, c.delta_k_heads // tp)
    dk, dv = c.delta_k_dim, c.delta_v_dim
    kd, vd = hk * dk, hv * dv
    ops: list[Op] = [
        _vec("attn_norm", t * h, dtype, NORM_FLOPS),
        _mm("in_proj_qkvz", t, 2 * kd + 2 * vd, h, dtype),
        _mm("in_proj_ba", t, 2 * hv, h, dtype),
        # depthwise causal conv (delta_conv taps) and its SiLU
        _vec("conv1d", t * (2 * kd + vd), dtype, 2 * c.delta_conv + 4, 1),
    ]
    if q == 1:
        state = b * hv * dk * dv
        ops.append(Vector(name="delta_recurrence", elements=state,
                          flops_per_element=DELTA_STEP_FLOPS,
                          bytes_per_element=2 * nbytes(DELTA_STATE_DTYPE),
                          dtype=DELTA_STATE_DTYPE))  # fmt: skip
    else:
        C = DELTA_CHUNK
        n = b * hv * -(-q // C)  # (sequence, head, chunk) tiles
        kw = dict(batch=n, weight=False)
        ops += [
            _mm("delta_kk", C, C, dk, dtype, **kw),
            _mm("delta_qk", C, C, dk, dtype, **kw),
            # the two unit-triangular solves as fla runs them: A = (I + K_beta K^T)^-1 once
            # (solve_tril), then W = A K_beta and U = A V_beta (recompute_w_u_fwd) on the
            # matrix unit; the inversion itself (C^3 / 3 per tile) is not priced
            _mm("delta_w", C, dk, C, dtype, **kw),
            _mm("delta_u", C, dv, C, dtype, **kw),
            _mm("delta_state_k", C, dv, dk, dtype, **kw),
            _mm("delta_state_q", C, dv, dk, dtype, **kw),
            _mm("delta_intra", C, dv, C, dtype, **kw),
            _mm("delta_update", dk, dv, C, dtype, **kw),
        ]
    ops += [
        _vec("delta_norm", t * vd, dtype, NORM_FLOPS + 2, 1, 3),  # RMSNorm x SiLU(z)
        _mm("out_proj", t, h, vd, dtype),
    ]
    return (
        ops
        + _allreduce("attn_allreduce", t * h, tp, dtype)
        + [_vec("attn_residual", t * h, dtype, 1, tensors=3)]
    )


def _indexer(
    c: ModelConfig, *, t: int, b: int, q: int, kv: int, dtype: str, causal: bool
) -> list[Op]:
    """DeepSeek Sparse Attention's lightning indexer (DeepSeek-V3.2-Exp tech report Sec. 2.1;
    transformers DeepseekV32Indexer): queries from the q latent (`wq_b`), one key per token
    (`wk`), a weight per head (`weights_proj`); score(s, t) = sum_h w[s, h] ReLU(q[s, h] .
    k[t]) over every earlier token: per pair and head 2 d FLOPs for the dot product and 2 for
    the weighting, an attention with d_v = 1 and no softmax over the causal pairs (the FP8
    kernel, DeepGEMM `fp8_mqa_logits`, scores each query's own key range; transformers'
    reference scores the whole square and masks it). Its keys are cached in FP8 with an FP32
    scale per 128 values, and read as cached (`ModelConfig.index_key_bytes`: d + 4 bytes a key
    at d = 128; TensorRT-LLM's DSA cache manager, SGLang's NSATokenToKVPool). Top-k selection
    itself is not priced."""
    if not c.index_topk:
        return []
    hi, di = c.index_heads, c.index_head_dim
    return [
        _mm("index_q", t, hi * di, c.q_lora, dtype),
        _mm("index_k", t, di, c.hidden, dtype),
        _mm("index_weights", t, hi, c.hidden, dtype),
        Attention(
            name="indexer",
            batch=b,
            heads=hi,
            kv_heads=1,
            q_len=q,
            kv_len=kv,
            head_dim=di,
            v_head_dim=1,
            causal=causal,
            softmax=False,
            dtype="fp8",
            cached_bytes=c.index_key_bytes,
        ),
    ]


def ffn_block(
    c: ModelConfig, *, t: int, tp: int, dtype: str, moe: bool, ep: int = 1, combine: bool = True
) -> list[Op]:
    h = c.hidden
    ops: list[Op] = [_vec("ffn_norm", t * h, dtype, NORM_FLOPS)]
    if moe:
        ops += _moe(c, t=t, tp=tp, dtype=dtype, ep=ep, combine=combine)
    else:
        ops += _dense_ffn(c, "ffn", t=t, ffn=shard(c.ffn, tp), dtype=dtype)
    return (
        ops
        + _allreduce("ffn_allreduce", t * h, tp, dtype)
        + [_vec("ffn_residual", t * h, dtype, 1, tensors=3)]
    )


def _dense_ffn(
    c: ModelConfig, prefix: str, *, t: int, ffn: int, dtype: str, groups: int = 1
) -> list[Op]:
    gated = c.act in ("swiglu", "geglu")
    up = ffn * (2 if gated else 1)
    # silu(g) * u; tanh-gelu(g) * u; tanh-gelu
    act_flops, act_trans = {"swiglu": (4, 1), "geglu": (9, 1), "gelu": (8, 1)}[c.act]
    return [
        _mm(f"{prefix}_up", t, up, c.hidden, dtype, batch=groups),
        _vec(
            f"{prefix}_act",
            groups * t * ffn,
            dtype,
            act_flops,
            act_trans,
            tensors=3 if gated else 2,
        ),
        _mm(f"{prefix}_down", t, c.hidden, ffn, dtype, batch=groups),
    ]


def _moe(
    c: ModelConfig, *, t: int, tp: int, dtype: str, ep: int = 1, combine: bool = True
) -> list[Op]:
    """Routed experts as one grouped matmul over the experts that receive tokens: the expected
    number of distinct experts hit under uniform top-k routing (`routing.expert_groups`; one
    token hits top_k, a large batch all), each weight read once, with the routes spread evenly
    over them: `experts_up`/`_down` the experts with routes // hit rows, `experts_extra_up`/
    `_down` the routes % hit experts with one row more (the FLOPs stay 2 per route and weight;
    each expert pads its own rows to the matrix tile), one `experts_act` over every route. The
    two groups are one grouped-GEMM kernel, launched once (`Op.shares_kernel`).
    With expert parallelism `ep` this chip holds experts/ep of them and (balanced) computes as
    many token-expert pairs as its own tokens route, gathered from the EP group's ep*t tokens:
    each local expert sees ep times the tokens (GShard, Lepikhin et al. 2020 Sec. 3.2;
    DeepSeek-V3 Sec. 3.4).
    `combine`: the routes' outputs weighted and summed here (the cluster engines leave it to
    their token dispatcher's unpermute pass, `cluster.layer`)."""
    routed = t * c.top_k
    local = -(-c.experts // ep)  # the busiest chip: ceil (redundant copies)
    hit, rows, extra = expert_groups(c.experts, c.top_k, t * ep, routed, local)
    width = shard(c.expert_ffn, tp)
    ops: list[Op] = [
        _mm("router", t, c.experts, c.hidden, dtype),
        _vec("router_topk", t * c.experts, dtype, 2, 1),
    ]
    experts = _dense_ffn(c, "experts", t=rows, ffn=width, dtype=dtype, groups=hit - extra)
    if extra:  # the experts that take one route more: groups of the same grouped GEMMs (one
        # launch each), one activation pass
        up, _, down = (
            replace(op, shares_kernel=True)
            for op in _dense_ffn(
                c, "experts_extra", t=rows + 1, ffn=width, dtype=dtype, groups=extra
            )
        )
        act = replace(experts[1], elements=routed * width)
        experts = [experts[0], up, act, experts[2], down]
    ops += [replace(op, grouped=True) if isinstance(op, MatMul) else op for op in experts]
    if combine:  # each token's k expert outputs scaled by their router weights and summed
        # (Shazeer et al. 2017 eq. 1): 2 FLOPs per (token, route, channel)
        ops.append(_vec("experts_combine", routed * c.hidden, dtype, 2))
    if c.shared_experts:
        ops += _dense_ffn(c, "shared_expert", t=t, ffn=shard(c.shared_width, tp), dtype=dtype)
    if c.shared_gate:  # Qwen2-MoE: sigmoid(x . w) scales the shared output, added to the routed
        ops += [
            _mm("shared_expert_gate", t, 1, c.hidden, dtype),
            _vec("shared_expert_scale", t * c.hidden, dtype, 2, tensors=3),
        ]
    return ops


def backward(ops: list[Op]) -> list[Op]:
    """The backward pass of `ops`, in reverse: each matmul becomes its input-gradient (dX) and
    weight-gradient (dW) matmuls; attention its FlashAttention-2 backward; vector ops and
    collectives repeat with the same cost."""
    grads: list[Op] = []
    for op in reversed(ops):
        if isinstance(op, MatMul):
            grads += [
                replace(op, name=f"{op.name}.dgrad", n=op.k, k=op.n, weight=op.weight),
                replace(op, name=f"{op.name}.wgrad", m=op.k, k=op.m, weight=False),
            ]
        elif isinstance(op, Attention):
            grads.append(replace(op, name=f"{op.name}.bwd", backward=True))
        elif isinstance(op, (Vector, Collective)):
            grads.append(replace(op, name=f"{op.name}.bwd"))
    return grads


def _layer(
    c: ModelConfig,
    *,
    b: int,
    q: int,
    kv: int,
    tp: int,
    dtype: str,
    kv_dtype: str,
    moe: bool,
    ep: int = 1,
    window: int = 0,
    combine: bool = True,
    delta: bool = False,
) -> list[Op]:
    extra = c.layer_norms - 2  # Gemma's norms after attention and after the FFN
    norms = [_vec("extra_norms", b * q * c.hidden * extra, dtype, NORM_FLOPS)] if extra > 0 else []
    mixer = (
        delta_block(c, b=b, q=q, tp=tp, dtype=dtype)
        if delta
        else attention_block(
            c, b=b, q=q, kv=kv, tp=tp, dtype=dtype, kv_dtype=kv_dtype, causal=True, window=window
        )
    )
    return (
        mixer + ffn_block(c, t=b * q, tp=tp, dtype=dtype, moe=moe, ep=ep, combine=combine) + norms
    )


def _prefixed(ops: list[Op], prefix: str, count: int) -> list[Op]:
    return [replace(op, name=f"{prefix}.{op.name}", count=count * op.count) for op in ops]


def build(
    c: ModelConfig,
    *,
    phase: Phase = "prefill",
    batch: int = 1,
    seq: int | None = None,
    context: int = 4096,
    dtype: str = "bf16",
    kv_dtype: str | None = None,
    tp: int = 1,
    scope: Literal["model", "layer"] = "model",
    ep: int = 1,
    logits: Literal["all", "last"] | None = None,
    combine: bool | None = None,
    past: int = 0,
) -> Graph:
    """The graph of one step of `phase` on one chip's share of the model.

    prefill/train: `batch` sequences of `seq` tokens (default: the model's seq).
    past (prefill): the `seq` new tokens follow `past` tokens already cached (a prefix-cache
    hit, an earlier chunk of a chunked prefill), which they attend to: the attention has
    `seq` queries over `seq + past` keys (its sliding window, if any, bands those).
    decode: one token for each of `batch` sequences with `context` tokens already cached.
    scope="layer": one transformer block only (no embeddings or LM head; no MoE combine, which
    the cluster engines price with their token dispatcher).
    combine: the MoE routes' outputs weighted and summed in the graph (default: scope="model");
    a serving step without expert parallelism, where no combine kernel does it, asks for it.
    ep: expert parallelism (MoE): this chip holds experts/ep routed experts (see `_moe`).
    logits: the positions the LM head computes: `all` (the default: what `model(input_ids)`
    computes, so a config.json, a .pt2 and an ONNX export of one model cost the same) or
    `last` (inference only: a serving engine samples the next token from the last position;
    `cluster.serving` costs its LM head so). Decode computes one position either way.
    Attention is causal. Both are stated in `graph.meta` (`logits`, `attention`).
    """
    if phase not in PHASES:
        raise WorkloadError(f"`phase` must be one of {', '.join(PHASES)}, not {phase!r}")
    seq = seq or c.seq
    logits = logits or "all"
    if logits not in ("all", "last"):
        raise WorkloadError(f"`logits` must be all or last, not {logits!r}")
    if phase == "train" and logits == "last":
        raise WorkloadError("`logits=last` is for inference; training computes every position")
    for name, value in (
        ("batch", batch),
        ("seq", seq),
        ("context", context),
        ("tp", tp),
        ("ep", ep),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise WorkloadError(f"`{name}` must be a positive integer, not {value!r}")
    if isinstance(past, bool) or not isinstance(past, int) or past < 0:
        raise WorkloadError(f"`past` must be a non-negative integer, not {past!r}")
    if past and phase != "prefill":
        raise WorkloadError(f"`past` (cached tokens) is for prefill, not {phase}")
    if c.heads % tp:  # each TP rank holds whole heads (Megatron-LM, Shoeybi et al. 2019 Sec. 3)
        raise WorkloadError(f"`tp` ({tp}) must divide the {c.heads} attention heads of {c.name}")
    if scope not in ("model", "layer"):
        raise WorkloadError(f"`scope` must be model or layer, not {scope!r}")
    kv_dtype = kv_dtype or dtype
    combine = scope == "model" if combine is None else combine
    q, kv = (1, context + 1) if phase == "decode" else (seq, seq + past)
    tokens = batch * q
    ops: list[Op] = []
    for moe, window, count in _layer_kinds(c, scope):
        for delta, n in _delta_kinds(c, count, scope):
            layer = _layer(c, b=batch, q=q, kv=kv, tp=tp, dtype=dtype, kv_dtype=kv_dtype, moe=moe,
                           ep=ep, window=window, combine=combine, delta=delta)  # fmt: skip
            prefix = ("moe_layers" if moe else "layers") + (".window" if window else "")
            ops += _prefixed(layer, prefix + (".delta" if delta else ""), n)
    if scope == "model":
        rows = tokens if logits == "all" else batch  # LM-head rows: every position, or the last
        ops = (
            [Embedding(name="embed", tokens=tokens, hidden=c.hidden, vocab=c.vocab, dtype=dtype)]
            + ops
            + [
                _vec("final_norm", rows * c.hidden, dtype, NORM_FLOPS),
                _mm("lm_head", rows, shard(c.vocab, tp), c.hidden, dtype),
            ]
        )
    if phase == "train":
        ops += backward(ops)
        local_params = _local_params(c, tp, scope)
        ops.append(
            Vector(
                name="optimizer.adam",
                elements=local_params,
                flops_per_element=ADAM_FLOPS,
                transcendentals_per_element=1,
                bytes_per_element=ADAM_BYTES_READ + ADAM_BYTES_WRITTEN,
                dtype="fp32",
                param_state=True,
            )
        )
    resident = _resident(
        c,
        phase=phase,
        batch=batch,
        seq=seq + past,
        context=context,
        dtype=dtype,
        kv_dtype=kv_dtype,
        tp=tp,
        scope=scope,
    )
    label = f"{c.name} {phase} b={batch} " + (f"ctx={context}" if phase == "decode" else f"s={seq}")
    label += f" after {past} cached" if past else ""
    return Graph(
        name=label + (f" tp={tp}" if tp > 1 else "") + (" (1 layer)" if scope == "layer" else ""),
        ops=tuple(ops),
        resident=resident,
        tokens=tokens if scope == "model" else 0,  # one layer emits no tokens
        meta={
            "model": c.name,
            "phase": phase,
            "batch": batch,
            "seq": seq,
            "context": context,
            "tp": tp,
            "params": c.params(),
            "active_params": c.params(active=True),
            "logits": "all positions" if logits == "all" else "last position",
            "attention": _attention_kind(c, scope, kv),
        },
    )


def _layer_kinds(c: ModelConfig, scope: str) -> list[tuple[bool, int, int]]:
    """(MoE, window, layers) for each kind of block. The MoE blocks follow the `dense_layers`
    dense ones; the windowed blocks are counted from the last layer back (Qwen2's
    `max_window_layers` rule; where they interleave, as in Gemma, only the counts matter).
    scope="layer": one block of the last layer's kind if every layer shares its attention,
    else one full-attention block (an upper bound for the mix)."""
    dense = c.dense_layers if c.is_moe else c.layers
    windowed = c.windowed_layers
    kinds = [
        (False, 0, dense - max(0, windowed - (c.layers - dense))),
        (False, c.window, max(0, windowed - (c.layers - dense))),
        (True, 0, c.layers - dense - min(windowed, c.layers - dense)),
        (True, c.window, min(windowed, c.layers - dense)),
    ]
    kinds = [k for k in kinds if k[2]]
    if scope == "layer":
        moe, window, _ = kinds[-1]
        return [(moe, window if windowed == c.layers else 0, 1)]
    return kinds


def _delta_kinds(c: ModelConfig, count: int, scope: str) -> list[tuple[bool, int]]:
    """(Gated DeltaNet, layers) of the `count` layers of one kind (a DeltaNet model has one
    kind: no windows, no leading dense layers, ModelConfig's check). scope="layer": the
    full-attention block where the two mix (an upper bound, as for windows)."""
    if not c.delta_layers or not count:
        return [(False, count)] if count else []
    if scope == "layer":
        return [(c.delta_layers == c.layers, 1)]
    parts = [(True, c.delta_layers), (False, count - c.delta_layers)]
    return [p for p in parts if p[1]]


def _attention_kind(c: ModelConfig, scope: str, kv: int) -> str:
    windowed = _layer_kinds(c, scope)
    if c.delta_layers:
        return f"causal, Gated DeltaNet in {c.delta_layers} of {c.layers} layers"
    if not any(w and w < kv for _, w, _ in windowed):
        return "causal"
    n, total = sum(k[2] for k in windowed if k[1]), sum(k[2] for k in windowed)
    band = f"{c.window}-token chunks" if c.chunked else f"a {c.window}-token sliding window"
    return f"causal, {band} in {n} of {total} layers"


def _local_params(c: ModelConfig, tp: int, scope: str) -> float:
    if scope == "layer":
        moe = c.is_moe
        mixer = c.delta_params if c.delta_layers == c.layers else c.attention_params()
        return (mixer + c.ffn_params(moe)) / tp
    return c.params() / tp


def _resident(
    c: ModelConfig,
    *,
    phase: str,
    batch: int,
    seq: int,
    context: int,
    dtype: str,
    kv_dtype: str,
    tp: int,
    scope: str,
) -> dict[str, float]:
    """Bytes that must stay in one chip's memory: weights, KV cache, optimizer state and
    stored activations (training)."""
    layers = 1 if scope == "layer" else c.layers
    params = _local_params(c, tp, scope)
    if phase == "train":
        return {
            "weights_and_optimizer": params * TRAIN_STATE_BYTES,
            "activations": ACT_BYTES_PER_TOKEN_HIDDEN * seq * batch * c.hidden * layers / tp,
        }
    cached = context + 1 if phase == "decode" else seq
    # a windowed layer keeps its window's latest keys only (transformers' sliding-window cache)
    tokens = sum(n * (min(cached, w) if w else cached) for _, w, n in _layer_kinds(c, scope))
    # per layer on average: kv_bytes_per_token counts the attention layers' keys alone, the
    # DeltaNet layers keep their fixed state instead
    kv = c.kv_bytes_per_token(nbytes(kv_dtype)) / c.layers * batch * tokens
    kv_split = tp if not c.kv_lora else 1  # the MLA latent is shared by all heads
    kv /= min(kv_split, c.n_kv_heads)
    kv += c.delta_state_bytes(nbytes(dtype)) * c.delta_layers / c.layers * layers * batch / tp
    return {"weights": params * nbytes(dtype), "kv_cache": kv}
