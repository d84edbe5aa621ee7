"""Transformer model descriptions (the shapes, not the weights) and the shipped model presets."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from functools import cache, lru_cache
from importlib import resources

from chipforge.dtypes import nbytes
from chipforge.errors import MAX_NAME, WorkloadError, did_you_mean, is_name


class ModelFieldError(WorkloadError):
    """A model field out of its type or range; `field` names it (a config.json maps it back to
    its own key)."""

    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(f"`{field}` {problem}")


ACTIVATIONS = ("swiglu", "geglu", "gelu")
INDEX_QUANT_BLOCK = 128  # DSA indexer keys: one FP32 scale per 128 FP8 values (as cited below)
# Gated DeltaNet's recurrent state precision, whatever the run's dtype: transformers'
# torch_chunk_gated_delta_rule / torch_recurrent_gated_delta_rule keep it in float32, as
# Qwen3.5's configs state (`mamba_ssm_dtype: float32`) and SGLang does by default
# (mamba2_state_dtype, srt/configs/mamba_utils.py: SGLANG_MAMBA_SSM_DTYPE, else the config's
# `mamba_ssm_dtype`, else float32). vLLM keeps it at the model dtype unless
# `mamba_ssm_cache_dtype` is set (MambaStateDtypeCalculator.gated_delta_net_state_dtype,
# layers/mamba/mamba_utils.py): not modelled. The one value the serving pool
# (delta_state_bytes) and the decode step's recurrence (workload.llm.delta_block) both read.
DELTA_STATE_DTYPE = "fp32"
MAX_SIZE = 2**53  # sizes beyond are not exact as floats
# integer fields and their least value; the optional ones may be None (a documented default)
INT_FIELDS = {
    **dict.fromkeys(("layers", "hidden", "heads", "ffn", "vocab", "seq"), 1),
    **dict.fromkeys(("kv_heads", "head_dim", "moe_ffn", "v_head_dim", "shared_ffn"), 1),
    "max_context": 1,
    **dict.fromkeys(
        ("experts", "top_k", "shared_experts", "dense_layers", "q_lora", "kv_lora", "rope_dim")
        + ("mtp_layers", "expert_groups", "group_top_k", "window", "window_layers", "other_params")
        + ("layer_norms", "index_heads", "index_head_dim", "index_topk", "delta_layers")
        + ("delta_k_heads", "delta_v_heads", "delta_k_dim", "delta_v_dim", "delta_conv"),
        0,
    ),
}
BOOL_FIELDS = ("tied_embeddings", "qk_norm", "linear_bias", "shared_gate", "chunked", "attn_gate")
OPTIONAL_FIELDS = ("kv_heads", "head_dim", "moe_ffn", "v_head_dim", "window_layers", "shared_ffn")
OPTIONAL_FIELDS += ("max_context",)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """A decoder-only transformer: dense (MHA/GQA) or MoE, optionally with MLA attention."""

    name: str = "custom"
    layers: int
    hidden: int
    heads: int
    kv_heads: int | None = None  # None: = heads (MHA); 1: MQA; otherwise GQA
    head_dim: int | None = None  # None: hidden / heads
    ffn: int  # intermediate size of a dense FFN
    vocab: int
    act: str = "swiglu"  # swiglu (3 matrices, Llama), geglu (3, Gemma) or gelu (2, GPT)
    tied_embeddings: bool = False
    layer_norms: int = 2  # norms a block applies to the hidden state (Gemma 2/3: 4)
    qk_norm: bool = False  # per-head RMSNorms on queries and keys (Qwen3, Gemma 3)
    seq: int = 4096  # training context length, the default for prefill/train
    # the longest context (prompt + output tokens) the model serves: a config.json's
    # max_position_embeddings (times its RoPE scaling factor, as vLLM derives max_model_len);
    # None: not stated, not checked
    max_context: int | None = None
    # Mixture of experts (Shazeer et al. 2017; Mixtral; DeepSeek-V3)
    experts: int = 0  # routed experts per MoE layer; 0: dense model
    top_k: int = 0  # routed experts per token
    shared_experts: int = 0  # always-on experts (DeepSeek)
    moe_ffn: int | None = None  # expert intermediate size; None: = ffn
    shared_ffn: int | None = None  # the shared experts' intermediate size in all (Qwen2-MoE's
    # one wide shared expert); None: shared_experts x moe_ffn
    shared_gate: bool = False  # the shared experts' output scaled by sigmoid(x . w), w hidden x 1
    # (Qwen2-MoE's `shared_expert_gate`)
    dense_layers: int = 0  # leading layers with a dense FFN instead of MoE
    # Group-limited routing (DeepSeek-V3 Sec. 2.1.2 "node-limited routing": each token's experts
    # lie in at most group_top_k of the expert_groups equal groups; config.json n_group /
    # topk_group; DeepSeek places one group per node, so "each token will be sent to at most
    # M = 4 nodes"). 0: routing is not group-limited.
    expert_groups: int = 0
    group_top_k: int = 0
    # Multi-head latent attention (DeepSeek-V2/V3); kv_lora = 0 means ordinary attention
    q_lora: int = 0
    kv_lora: int = 0
    rope_dim: int = 0
    v_head_dim: int | None = None
    # Sliding-window attention (Mistral, Gemma 2/3, Qwen2's window layers): `window_layers` of
    # the layers (None: all) attend to the `window` latest positions only; 0: no window
    window: int = 0
    window_layers: int | None = None
    # Chunked attention (Llama 4's iRoPE; transformers models/llama4 `attention_chunk_size`,
    # masking_utils.chunked_causal_mask_function: key and query in the same `window`-token
    # chunk, `kv_idx // chunk == q_idx // chunk`): the window layers attend block-diagonally
    # within fixed chunks instead of through a sliding band; the query at position p sees the
    # p mod window + 1 keys of its own chunk
    chunked: bool = False
    # DeepSeek Sparse Attention (DeepSeek-V3.2-Exp tech report Sec. 2.1; transformers
    # models/deepseek_v32 DeepseekV32Indexer): on MLA, a lightning indexer of `index_heads`
    # heads of `index_head_dim` (queries from the q_lora latent, one shared key per token, a
    # weight per head; ReLU scores, FP8) scores every earlier token, and each query attends
    # its `index_topk` best only; 0: dense MLA
    index_heads: int = 0
    index_head_dim: int = 0
    index_topk: int = 0
    # Hybrid linear attention (Qwen3-Next; transformers models/qwen3_next
    # Qwen3NextGatedDeltaNet; Gated DeltaNet, Yang et al., arXiv 2412.06464): `delta_layers` of
    # the layers are Gated DeltaNet instead of attention: `delta_k_heads` query/key heads of
    # `delta_k_dim`, `delta_v_heads` value heads of `delta_v_dim`, a depthwise causal conv of
    # `delta_conv` taps over q, k and v; a fixed recurrent state per sequence (delta_v_heads x
    # delta_k_dim x delta_v_dim, FP32) and the conv's window instead of a KV cache. 0: none
    delta_layers: int = 0
    delta_k_heads: int = 0
    delta_v_heads: int = 0
    delta_k_dim: int = 0
    delta_v_dim: int = 0
    delta_conv: int = 0
    # gated attention (Qwen3-Next's full-attention layers): q_proj also emits a per-channel
    # gate, the attention output times sigmoid(gate) before o_proj
    attn_gate: bool = False
    # Multi-token prediction (DeepSeek-V3 Sec. 2.2): extra modules, each one transformer block
    # (plus a projection, sharing the embedding and the output head) predicting one token further;
    # trained with the model, dropped (or used for speculative decoding) at inference
    mtp_layers: int = 0
    # Parameters outside the matrices and embeddings: norms' gains (and LayerNorm biases),
    # linear biases, a learned position table. A config.json import counts them (hf.py);
    # presets leave them out (under 0.1 % of a real model)
    other_params: int = 0
    # GPT-OSS (openai/gpt-oss config.json, model card arXiv 2508.10925): every linear layer
    # carries a bias (the routed experts' too), and the gated activation is clamped
    # (`swiglu_limit` 7.0: the gate from above, the linear half to +-limit); 0: no clamp.
    # Counted by the training cost model where the framework prices them (cluster/layer.py).
    linear_bias: bool = False
    glu_limit: float = 0.0

    def __post_init__(self):
        self._check_types()
        if self.dense_layers > self.layers:
            raise ModelFieldError(
                "dense_layers",
                f"must be at most `layers` ({self.layers}), not {self.dense_layers}",
            )
        for f in ("shared_ffn", "shared_gate"):
            if getattr(self, f) not in (None, False) and not self.shared_experts:
                raise ModelFieldError(f, "needs `shared_experts`; give it or drop it")
        if not self.is_moe:
            for f in ("top_k", "shared_experts", "dense_layers"):
                if getattr(self, f):
                    raise ModelFieldError(f, "is for MoE models only; give `experts` or drop it")
        if self.window_layers is not None and self.window_layers > self.layers:
            raise ModelFieldError(
                "window_layers",
                f"must be at most `layers` ({self.layers}), not {self.window_layers}",
            )
        if self.window_layers and not self.window:
            raise ModelFieldError("window_layers", "needs a sliding `window`; give it or drop it")
        if self.index_topk and not (self.q_lora and self.index_heads and self.index_head_dim):
            raise ModelFieldError(
                "index_topk", "needs MLA with `q_lora`, `index_heads` and `index_head_dim`"
            )
        if self.delta_layers:
            if self.delta_layers > self.layers:
                raise ModelFieldError("delta_layers", f"must be at most `layers` ({self.layers})")
            shape = ("delta_k_heads", "delta_v_heads", "delta_k_dim", "delta_v_dim", "delta_conv")
            for f in shape:
                if not getattr(self, f):
                    raise ModelFieldError(f, "is needed by `delta_layers`; give it")
            if self.delta_v_heads % self.delta_k_heads:
                raise ModelFieldError("delta_v_heads", "must be a multiple of `delta_k_heads`")
            if self.window or self.kv_lora or (self.is_moe and self.dense_layers):
                raise ModelFieldError(
                    "delta_layers", "is priced without windows, MLA or leading dense layers"
                )
        if self.chunked and not self.window:
            raise ModelFieldError("chunked", "needs the chunk size as `window`; give it or drop it")
        if self.hidden % self.heads and self.head_dim is None:
            raise WorkloadError(
                f"`hidden` ({self.hidden}) must be divisible by `heads` "
                f"({self.heads}), or give `head_dim`"
            )
        if self.heads % self.n_kv_heads:
            raise WorkloadError(
                f"`heads` ({self.heads}) must be a multiple of `kv_heads` ({self.n_kv_heads})"
            )
        if self.experts and not 0 < self.top_k <= self.experts:
            raise WorkloadError(f"`top_k` must be in 1..experts ({self.experts}), not {self.top_k}")
        # (not MoE-only: a dense view of an MoE model keeps them, unused)
        if self.expert_groups and self.is_moe and self.experts % self.expert_groups:
            raise ModelFieldError(
                "expert_groups", f"must divide `experts` ({self.experts}), not {self.expert_groups}"
            )
        if bool(self.expert_groups) != bool(self.group_top_k) or (
            self.group_top_k > self.expert_groups
        ):
            raise ModelFieldError(
                "group_top_k",
                f"must be in 1..expert_groups ({self.expert_groups}) when routing is "
                f"group-limited, and 0 otherwise; not {self.group_top_k}",
            )

    def _check_types(self) -> None:
        """Every field has its type and range: a wrong one is an error, never a silent default."""
        if not isinstance(self.name, str) or not self.name:
            raise ModelFieldError("name", f"must be a non-empty string, not {self.name!r}")
        if not is_name(self.name):
            raise ModelFieldError(  # printed in tables and terminals: ESC would drive them
                "name",
                f"must be one line of printable text up to {MAX_NAME} characters (no control or "
                f"text-direction characters), not {self.name[:40]!r}",
            )
        if self.act not in ACTIVATIONS:
            raise ModelFieldError(
                "act", f"must be one of {', '.join(ACTIVATIONS)}, not {self.act!r}"
            )
        limit = self.glu_limit
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not 0 <= limit < 1e30:
            raise ModelFieldError("glu_limit", f"must be a finite number >= 0, not {limit!r}")
        for flag in BOOL_FIELDS:
            if not isinstance(getattr(self, flag), bool):
                raise ModelFieldError(flag, f"must be true or false, not {getattr(self, flag)!r}")
        for f, least in INT_FIELDS.items():
            value = getattr(self, f)
            if value is None and f in OPTIONAL_FIELDS:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise ModelFieldError(f, f"must be an integer, not {value!r}")
            if value < least:
                bound = "a positive integer" if least else "a non-negative integer"
                raise ModelFieldError(f, f"must be {bound}, not {value!r}")
            if value > MAX_SIZE:
                raise ModelFieldError(f, f"must be at most 2**53, not {value!r}")

    @property
    def windowed_layers(self) -> int:
        """How many layers attend through the sliding window."""
        if not self.window:
            return 0
        return self.layers if self.window_layers is None else self.window_layers

    def attention_kinds(self) -> tuple[tuple[ModelConfig, int], ...]:
        """The layers by attention: (this model with every layer attending so, how many layers
        do), the sliding-window (or Gated DeltaNet) ones first, then the full-attention rest;
        one entry where all layers attend alike. The one description of which layers slide
        that every per-layer cost weighs its layers by (training's and serving's block, the
        serving KV cache). A
        block's cost differs between the kinds in its attention alone."""
        return _attention_kinds(self)

    @property
    def n_kv_heads(self) -> int:
        return self.kv_heads or self.heads

    @property
    def d_head(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def d_v(self) -> int:
        return self.v_head_dim or self.d_head

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def moe_layer_share(self) -> float:
        """Share of the layers whose FFN is a mixture of experts (the first `dense_layers` are
        dense); 0 for a dense model."""
        return (self.layers - self.dense_layers) / self.layers if self.is_moe else 0.0

    @property
    def expert_ffn(self) -> int:
        return self.moe_ffn or self.ffn

    @property
    def shared_width(self) -> int:
        """The shared experts' intermediate size in all (0: none)."""
        if not self.shared_experts:
            return 0
        return self.shared_ffn or self.shared_experts * self.expert_ffn

    @property
    def ffn_matrices(self) -> int:
        return 3 if self.act in ("swiglu", "geglu") else 2

    def attention_params(self) -> int:
        h, H, d = self.hidden, self.heads, self.d_head
        if self.kv_lora:  # MLA: low-rank q and kv projections, decoupled rope key
            q = (
                h * self.q_lora + self.q_lora * H * (d + self.rope_dim)
                if self.q_lora
                else h * H * (d + self.rope_dim)
            )
            kv = h * (self.kv_lora + self.rope_dim) + self.kv_lora * H * (d + self.d_v)
            return q + kv + H * self.d_v * h + self.indexer_params
        gate = h * H * d if self.attn_gate else 0  # q_proj's gate half
        return h * H * d + gate + 2 * h * self.n_kv_heads * d + H * d * h

    @property
    def delta_params(self) -> int:
        """One Gated DeltaNet layer's parameters (Qwen3NextGatedDeltaNet): in_proj_qkvz,
        in_proj_ba, the depthwise conv1d, dt_bias and A_log, the gated RMSNorm, out_proj."""
        if not self.delta_layers:
            return 0
        h, hv = self.hidden, self.delta_v_heads
        kd, vd = self.delta_k_heads * self.delta_k_dim, hv * self.delta_v_dim
        conv = (2 * kd + vd) * self.delta_conv
        return h * (2 * kd + 2 * vd) + h * 2 * hv + conv + 2 * hv + self.delta_v_dim + vd * h

    def delta_state_bytes(self, dtype_bytes: float) -> float:
        """One sequence's state in one Gated DeltaNet layer: the recurrent state (v heads x
        k dim x v dim, at DELTA_STATE_DTYPE) and the conv window (conv channels x taps, at
        `dtype_bytes`: transformers' LinearAttentionLayer keeps `conv_kernel_size` positions)."""
        if not self.delta_layers:
            return 0.0
        kd, vd = self.delta_k_heads * self.delta_k_dim, self.delta_v_heads * self.delta_v_dim
        state = nbytes(DELTA_STATE_DTYPE) * self.delta_v_heads * self.delta_k_dim * self.delta_v_dim
        return state + (2 * kd + vd) * self.delta_conv * dtype_bytes

    @property
    def indexer_params(self) -> int:
        """The DSA lightning indexer's matrices (DeepseekV32Indexer: wq_b from the q latent,
        wk and weights_proj from the hidden state); its key LayerNorm is in `other_params`."""
        if not self.index_topk:
            return 0
        hi, di = self.index_heads, self.index_head_dim
        return self.q_lora * hi * di + self.hidden * di + self.hidden * hi

    @property
    def expert_params(self) -> int:
        """Parameters of one routed expert (its FFN matrices)."""
        return self.ffn_matrices * self.hidden * self.expert_ffn

    def ffn_params(self, moe: bool, *, active: bool = False) -> int:
        per_expert = self.expert_params
        if not moe:
            return self.ffn_matrices * self.hidden * self.ffn
        routed = self.top_k if active else self.experts
        shared = self.ffn_matrices * self.hidden * self.shared_width
        return routed * per_expert + shared + self.hidden * self.experts

    def params(self, *, active: bool = False) -> int:
        """Parameter count; `active`: those used per token (MoE counts top_k experts)."""
        moe_layers = self.layers - self.dense_layers if self.is_moe else 0
        attention = self.layers - self.delta_layers  # the rest are Gated DeltaNet
        blocks = (
            attention * self.attention_params()
            + self.delta_layers * self.delta_params
            + (self.layers - moe_layers) * self.ffn_params(False)
            + moe_layers * self.ffn_params(True, active=active)
        )
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return blocks + embeddings + self.other_params

    def kv_bytes_per_token(self, dtype_bytes: float) -> float:
        """KV-cache bytes per token over all layers (MLA caches the latent and the rope key;
        DSA adds the indexer's key, `index_key_bytes`; the Gated DeltaNet layers cache no keys)."""
        per_layer = (
            self.kv_lora + self.rope_dim if self.kv_lora else 2 * self.n_kv_heads * self.d_head
        )
        attention = self.layers - self.delta_layers  # a DeltaNet layer caches no keys
        return attention * (per_layer * dtype_bytes + self.index_key_bytes)

    @property
    def index_key_bytes(self) -> float:
        """The DSA indexer's cached key per token and layer: FP8 values and one FP32 scale per
        128 (TensorRT-LLM's DSA cache manager and SGLang's NSATokenToKVPool:
        `index_head_dim + index_head_dim // quant_block_size * 4` bytes, block 128)."""
        if not self.index_topk:
            return 0.0
        return self.index_head_dim + self.index_head_dim // INDEX_QUANT_BLOCK * 4


MODEL_FIELDS = {f.name for f in fields(ModelConfig)}
REQUIRED_FIELDS = ("layers", "hidden", "heads", "ffn", "vocab")


@lru_cache(maxsize=256)
def _attention_kinds(c: ModelConfig) -> tuple[tuple[ModelConfig, int], ...]:
    if 0 < c.delta_layers < c.layers:  # Gated DeltaNet and (no windows) full attention
        return (
            (replace(c, delta_layers=c.layers), c.delta_layers),
            (replace(c, delta_layers=0), c.layers - c.delta_layers),
        )
    windowed = c.windowed_layers
    if windowed in (0, c.layers):
        return ((c, c.layers),)
    return (
        (replace(c, window_layers=None), windowed),
        (replace(c, window=0, window_layers=None, chunked=False), c.layers - windowed),
    )


@cache
def _presets() -> dict[str, dict]:
    text = (resources.files("chipforge.workload") / "models.toml").read_text()
    return tomllib.loads(text)


def model_names() -> list[str]:
    return sorted(_presets())


def load_model(name: str, /, **overrides) -> ModelConfig:
    """A shipped model preset, or `custom`, with field overrides (`layers=2`, `name="mine"`).
    Other model vocabularies (`llm:...`, config.json) resolve through `resolve_model`."""
    if name == "custom":
        base: dict = {}
    elif name in _presets():
        base = dict(_presets()[name])
    else:
        raise WorkloadError(
            f"`model` must be a preset or 'custom', not {name!r}"
            f"{did_you_mean(name, model_names())}; `chipforge presets` lists them"
        )
    unknown = set(overrides) - MODEL_FIELDS
    if unknown:
        raise WorkloadError(
            f"`{sorted(unknown)[0]}` is not a model field; known: {', '.join(sorted(MODEL_FIELDS))}"
        )
    if base:
        return replace(ModelConfig(name=name, **base), **overrides)
    missing = [f for f in REQUIRED_FIELDS if f not in overrides]
    if missing:
        raise WorkloadError(
            f"custom model needs {', '.join(f'`{m}`' for m in missing)}; give them as "
            f"llm:custom,{','.join(f'{f}=..' for f in REQUIRED_FIELDS)} (or a config.json)"
        )
    return ModelConfig(**({"name": name} | overrides))
