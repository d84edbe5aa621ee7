"""HuggingFace `config.json` files as `ModelConfig`s: the shapes of a checkpoint, no weights.

Each supported `model_type` maps the transformers config keys (LlamaConfig, MistralConfig,
MixtralConfig, Qwen2Config, Qwen3Config, Phi3Config, Gemma2Config, Gemma3TextConfig,
GPTNeoXConfig, Qwen2MoeConfig, Qwen3MoeConfig, GPT2Config, DeepseekV3Config, GptOssConfig,
Glm4MoeConfig, Llama4TextConfig) to
ModelConfig fields, sliding windows included (`layer_types` as transformers 5 saves it, else
each config class's rule), and the small parameters (norms, biases, sinks) each model class
adds (`other_params`). Encoder, encoder-decoder, vision and audio configs (BERT, T5, ViT, Whisper,
CLIP) are not ModelConfigs: `hf_traced` costs them as workloads. `seq` is the config's
max_position_embeddings (n_positions for GPT-2): the longest context it serves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from chipforge.errors import WorkloadError
from chipforge.userfile import MAX_TEXT_BYTES, load_json, missing
from chipforge.workload.config import ModelConfig, ModelFieldError

ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "MixtralForCausalLM": "mixtral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",  # Llama's shapes plus per-head q/k RMSNorms (not counted)
    "Phi3ForCausalLM": "phi3",  # Llama's shapes with fused qkv and gate_up matrices
    "Gemma2ForCausalLM": "gemma2",  # gated GELU (3 matrices), head_dim 256 by default
    "Gemma3ForCausalLM": "gemma3_text",
    "Gemma3ForConditionalGeneration": "gemma3",  # image-text: the decoder in `text_config`
    "GPTNeoXForCausalLM": "gpt_neox",  # parallel attention and MLP; same matmuls as GPT-2's
    "Qwen2MoeForCausalLM": "qwen2_moe",
    "Qwen3MoeForCausalLM": "qwen3_moe",  # Qwen2-MoE's routing, q/k RMSNorms, no shared expert
    "Qwen3NextForCausalLM": "qwen3_next",  # Gated DeltaNet layers and gated attention
    "Qwen3_5MoeForCausalLM": "qwen3_5_moe_text",  # Qwen3-Next's layers (Qwen3.5 MoE decoder)
    "Qwen3_5MoeForConditionalGeneration": "qwen3_5_moe",  # image-text: its `text_config`
    "Qwen3_5ForCausalLM": "qwen3_5_text",  # Qwen3.5 MoE's layers with a dense MLP
    "Qwen3_5ForConditionalGeneration": "qwen3_5",  # image-text: its `text_config`
    "GPT2LMHeadModel": "gpt2",
    "DeepseekV3ForCausalLM": "deepseek_v3",
    "DeepseekV32ForCausalLM": "deepseek_v32",  # DeepSeek-V3 with DeepSeek Sparse Attention
    "GptOssForCausalLM": "gpt_oss",  # biased linears and experts, clamped SwiGLU, attention sinks
    "Glm4MoeForCausalLM": "glm4_moe",  # DeepSeek-V3's MoE over GQA with q/k/v biases
    "Llama4ForCausalLM": "llama4_text",  # MoE with a shared expert, chunked attention
    "Llama4ForConditionalGeneration": "llama4",  # image-text: the decoder in `text_config`
}


# A config.json states a model's per-layer rules in lists of one entry a layer (`layer_types`,
# `no_rope_layers`, `mlp_only_layers`), so no file within the text cap (userfile) names more
# layers than it has two-byte entries ("0,"): the reader walks no more layers than that.
MAX_LAYERS = MAX_TEXT_BYTES // 2


class _Keys:
    """A config's keys, read as integers: a string, list, float or bool where a size goes is an
    error naming the key. Remembers which key gave each ModelConfig field."""

    def __init__(self, data: dict, given: dict | None = None):
        self.data, self.source = data, {}
        self.given = given or {}  # the model fields the user sets beside the file (`,window=0`)

    def int(self, key: str, field: str, default=KeyError):
        value = self.data.get(key, default)
        if value is KeyError:
            raise KeyError(key)
        self.source[field] = key
        if value is None and default is not KeyError:  # an optional key set to null
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise WorkloadError(f"`{key}` must be an integer, not {value!r}")
        if field == "layers" and value > MAX_LAYERS:  # before any rule walks the layers
            raise WorkloadError(
                f"`{key}` must be at most {MAX_LAYERS:,} (as many layers as a config.json's "
                f"per-layer lists can name), not {value:,}"
            )
        return value

    def size(self, key: str, field: str) -> int | None:
        """An optional size (None: left out or null, the config class's default): 0 or a
        negative count is no default in transformers (it divides by it or builds nothing),
        so it is refused, not read as left out."""
        value = self.int(key, field, None)
        if value is not None and value < 1:
            raise WorkloadError(
                f"`{key}` must be a positive integer, not {value}; leave it out (or null) for "
                "the default"
            )
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise WorkloadError(f"`{key}` must be true or false, not {value!r}")
        return value


def _llama(c: _Keys) -> dict:
    heads, hidden = c.int("num_attention_heads", "heads"), c.int("hidden_size", "hidden")
    head_dim = c.size("head_dim", "head_dim")
    return {
        "layers": c.int("num_hidden_layers", "layers"),
        "hidden": hidden,
        "heads": heads,
        "kv_heads": c.size("num_key_value_heads", "kv_heads") or heads,
        "head_dim": head_dim if head_dim and heads and head_dim != hidden // heads else None,
        "ffn": c.int("intermediate_size", "ffn"),
        "vocab": c.int("vocab_size", "vocab"),
        "act": "swiglu",  # hidden_act silu on gate_proj, times up_proj
        "tied_embeddings": c.flag("tie_word_embeddings", False),
        "seq": c.int("max_position_embeddings", "seq"),
    }


def _window(c: _Keys, layers: int, every: Callable[[int], bool] | None) -> dict:
    """`window` and `window_layers` from `sliding_window` and the layers that use it: the
    `layer_types` list transformers 5 saves ("sliding_attention"), else `every(i)` (the config
    class's own rule; None: every layer). A null or 0 window: none."""
    window = c.int("sliding_window", "window", None) or 0
    types = c.data.get("layer_types")
    if isinstance(types, list) and types:
        if len(types) != layers or not all(isinstance(t, str) for t in types):
            raise WorkloadError(
                f"`layer_types` must list one attention type per layer ({layers}), not {types!r}"
            )
        other = sorted(set(types) - {"full_attention", "sliding_attention"})
        if other:  # e.g. Llama 4's "chunked_attention": priced as full attention, silently
            raise WorkloadError(f"`layer_types` holds {other[0]!r}: the layers modelled are "
                                "full_attention and sliding_attention")  # fmt: skip
        count = sum(t == "sliding_attention" for t in types)
    else:
        count = layers if every is None else sum(every(i) for i in range(layers))
    if not window or not count:
        return {"window": 0, "window_layers": None}
    return {"window": window, "window_layers": None if count == layers else count}


def _max_context(data: dict, fields: dict, model_type: str) -> int | None:
    """The longest context the config serves, as vLLM derives max_model_len
    (vllm/config.py `_get_and_verify_max_len`): `seq` (max_position_embeddings), times a
    `rope_scaling` factor but for the types already counted in it (llama3, longrope, su) and
    for Gemma 3, whose max_position_embeddings (128K) is already scaled ("gemma3" not in
    hf_config.model_type); a YaRN factor multiplies original_max_position_embeddings. A
    malformed factor is not used."""
    seq, rope = fields.get("seq"), data.get("rope_scaling")
    if "gemma3" in model_type:
        rope = None
    if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(rope, dict):
        return seq if isinstance(seq, int) and not isinstance(seq, bool) else None
    kind, factor = rope.get("rope_type", rope.get("type")), rope.get("factor")
    if kind in ("llama3", "longrope", "su") or isinstance(factor, bool):
        return seq
    if not isinstance(factor, int | float) or not 1 <= factor <= 1024:
        return seq
    base = rope.get("original_max_position_embeddings") if kind == "yarn" else seq
    base = base if isinstance(base, int) and not isinstance(base, bool) and base > 0 else seq
    return int(base * factor)


def _mistral(c: _Keys) -> dict:
    fields = _llama(c)
    return fields | _window(c, fields["layers"], None)


def _qwen2(c: _Keys) -> dict:
    fields = _llama(c)
    if not c.flag("use_sliding_window", False):
        return fields
    first = c.int("max_window_layers", "window_layers", 28)  # Qwen2Config's default
    return fields | _window(c, fields["layers"], lambda i: i >= first)


def _mixtral(c: _Keys) -> dict:
    return _mistral(c) | {
        "experts": c.int("num_local_experts", "experts"),
        "top_k": c.int("num_experts_per_tok", "top_k"),
    }


def _gemma(pattern: int) -> Callable[[_Keys], dict]:
    """Gemma 2 (every 2nd layer global) and Gemma 3 (every 6th, `sliding_window_pattern`):
    Llama's shapes with a gated GELU and head_dim 256 unless given; tied embeddings."""

    def fields(c: _Keys) -> dict:
        out = _llama(c)
        heads, hidden = out["heads"], out["hidden"]
        head_dim = c.size("head_dim", "head_dim") or 256
        out["head_dim"] = head_dim if head_dim != hidden // heads else None
        out["tied_embeddings"] = c.flag("tie_word_embeddings", True)
        out |= {"act": "geglu", "layer_norms": 4, "qk_norm": pattern == 6}  # Gemma 3: q/k norms
        every = c.size("sliding_window_pattern", "window_layers") or pattern
        return out | _window(c, out["layers"], lambda i: (i + 1) % every != 0)

    return fields


def _gpt_neox(c: _Keys) -> dict:
    return {
        "layers": c.int("num_hidden_layers", "layers"),
        "hidden": c.int("hidden_size", "hidden"),
        "heads": c.int("num_attention_heads", "heads"),
        "ffn": c.int("intermediate_size", "ffn"),
        "vocab": c.int("vocab_size", "vocab"),
        "act": "gelu",  # dense_h_to_4h, gelu, dense_4h_to_h
        "tied_embeddings": c.flag("tie_word_embeddings", False),
        "seq": c.int("max_position_embeddings", "seq"),
    }


def _qwen2_moe(c: _Keys) -> dict:
    """Routed experts of `moe_intermediate_size`, one shared expert of
    `shared_expert_intermediate_size` behind its sigmoid gate (hidden x 1); layers in
    `mlp_only_layers` or off the `decoder_sparse_step` are dense (`intermediate_size`)."""
    fields = _qwen2(c)
    layers = fields["layers"]
    step = c.size("decoder_sparse_step", "dense_layers") or 1
    only = c.data.get("mlp_only_layers") or []
    if not isinstance(only, list) or not all(type(i) is int for i in only):
        raise WorkloadError(f"`mlp_only_layers` must be a list of layer indices, not {only!r}")
    dense = sum(i in only or (i + 1) % step != 0 for i in range(layers))
    shared = c.int("shared_expert_intermediate_size", "shared_ffn", 0)
    if fields.get("window") and c.data.get("layer_types") is None:  # Qwen2MoeConfig's rule
        first = c.int("max_window_layers", "window_layers", 28)
        fields |= _window(c, layers, lambda i: (i + 1) % 2 == 1 and i < first)
    # transformers 5 saves Qwen3MoeConfig's `num_experts` as `num_local_experts`
    local = "num_local_experts" if "num_experts" not in c.data else "num_experts"
    return fields | {
        "experts": c.int(local, "experts"),
        "top_k": c.int("num_experts_per_tok", "top_k"),
        "moe_ffn": c.int("moe_intermediate_size", "moe_ffn"),
        "shared_experts": 1 if shared else 0,
        "shared_ffn": shared or None,
        "shared_gate": bool(shared),
        "dense_layers": dense,
    }


def _qwen3_next(c: _Keys) -> dict:
    """Qwen3-Next (Qwen3NextConfig; transformers models/qwen3_next): Qwen2-MoE's routing with
    q/k RMSNorms, and of every `full_attention_interval` layers (`layer_types`) all but the
    last are Gated DeltaNet (`linear_*` keys, ModelConfig.delta_*), the last gated attention
    (q_proj twice as wide: a sigmoid gate on its output). Its `partial_rotary_factor` and
    the DeltaNet's elementwise decays are elementwise work, not priced."""
    if "intermediate_size" not in c.data:  # Qwen3.5 MoE: no dense MLP (every layer MoE)
        c.data = {**c.data, "intermediate_size": c.data.get("moe_intermediate_size")}
    return _hybrid(c, _qwen2_moe(c))


def _hybrid(c: _Keys, fields: dict) -> dict:
    """Qwen3-Next's and Qwen3.5's attention layers over `fields`' MLPs (MoE or dense)."""
    fields = fields | {"qk_norm": True}
    layers = fields["layers"]
    kinds = c.data.get("layer_types")
    if kinds is None:  # Qwen3NextConfig's rule
        every = c.size("full_attention_interval", "delta_layers") or 4
        kinds = ["linear_attention" if (i + 1) % every else "full_attention" for i in range(layers)]
    if not isinstance(kinds, list) or len(kinds) != layers:
        raise WorkloadError(f"`layer_types` must list one type per layer ({layers}), not {kinds!r}")
    return fields | {
        "delta_layers": sum(k == "linear_attention" for k in kinds),
        "delta_k_heads": c.int("linear_num_key_heads", "delta_k_heads"),
        "delta_v_heads": c.int("linear_num_value_heads", "delta_v_heads"),
        "delta_k_dim": c.int("linear_key_head_dim", "delta_k_dim"),
        "delta_v_dim": c.int("linear_value_head_dim", "delta_v_dim"),
        "delta_conv": c.int("linear_conv_kernel_dim", "delta_conv"),
        "attn_gate": True,
    }


def _gpt2(c: _Keys) -> dict:
    hidden = c.int("n_embd", "hidden")
    return {
        "layers": c.int("n_layer", "layers"),
        "hidden": hidden,
        "heads": c.int("n_head", "heads"),
        "ffn": c.size("n_inner", "ffn") or 4 * hidden,
        "vocab": c.int("vocab_size", "vocab"),
        "act": "gelu",
        "tied_embeddings": c.flag("tie_word_embeddings", True),
        "seq": c.size("n_positions", "seq") or c.int("n_ctx", "seq"),
    }


def _deepseek_moe(c: _Keys) -> dict:
    """DeepSeek-V3's MoE keys (DeepseekV3Config, and Glm4MoeConfig's same names): routed and
    shared experts of `moe_intermediate_size`, the first `first_k_dense_replace` layers dense,
    `num_nextn_predict_layers` MTP modules, group-limited routing."""
    return {
        "experts": c.int("n_routed_experts", "experts"),
        "top_k": c.int("num_experts_per_tok", "top_k"),
        "shared_experts": c.int("n_shared_experts", "shared_experts", None) or 0,
        "moe_ffn": c.int("moe_intermediate_size", "moe_ffn"),
        "dense_layers": c.int("first_k_dense_replace", "dense_layers", 0),
        "mtp_layers": c.int("num_nextn_predict_layers", "mtp_layers", None) or 0,
        **_expert_groups(c),
    }


def _deepseek_v3(c: _Keys) -> dict:
    mla = _llama(c) | {"kv_heads": None, "head_dim": c.int("qk_nope_head_dim", "head_dim")}
    return (
        mla
        | _deepseek_moe(c)
        | {
            "q_lora": c.int("q_lora_rank", "q_lora", None) or 0,
            "kv_lora": c.int("kv_lora_rank", "kv_lora"),
            "rope_dim": c.int("qk_rope_head_dim", "rope_dim"),
            "v_head_dim": c.int("v_head_dim", "v_head_dim"),
        }
    )


def _deepseek_v32(c: _Keys) -> dict:
    """DeepSeek-V3.2 (DeepseekV32Config; transformers models/deepseek_v32): DeepSeek-V3 with
    DeepSeek Sparse Attention, a lightning indexer of `index_n_heads` x `index_head_dim` that
    selects the `index_topk` keys each query attends (ModelConfig.index_*)."""
    return _deepseek_v3(c) | {
        "index_heads": c.int("index_n_heads", "index_heads"),
        "index_head_dim": c.int("index_head_dim", "index_head_dim"),
        "index_topk": c.int("index_topk", "index_topk"),
    }


def _glm4_moe(c: _Keys) -> dict:
    """GLM-4.5 (Glm4MoeConfig; transformers models/glm4_moe): DeepSeek-V3's MoE over
    grouped-query attention with q/k/v biases (`attention_bias`) and optional per-head q/k
    RMSNorms (`use_qk_norm`). Its `partial_rotary_factor` rotates part of each head:
    elementwise work, not priced."""
    return _llama(c) | _deepseek_moe(c) | {"qk_norm": c.flag("use_qk_norm", False)}


def _llama4(c: _Keys) -> dict:
    """Llama 4 (Llama4TextConfig; transformers models/llama4): MoE layers (`moe_layers`, else every
    `interleave_moe_layer_step`-th) of `num_local_experts` experts of `intermediate_size` plus one
    always-on shared expert of the same size, the other layers dense of `intermediate_size_mlp`
    (counted as leading dense layers: the same parameters and FLOPs, stages split as if they
    led). The RoPE layers (`no_rope_layers` 1) attend within `attention_chunk_size`-token
    chunks (Meta's iRoPE; `layer_types` "chunked_attention", masking_utils
    `chunked_causal_mask_function`): priced as chunks (`chunked`; their cache holds the chunk's
    window: cache_utils maps "chunked_attention" to the sliding-window cache layer). A
    `,window=N` the user states beside the file prices them as a sliding window of N instead
    (0: full attention). Its q/k L2 norms carry no weights; the router's sigmoid scaling is
    elementwise."""
    fields = _llama(c)
    layers, step = fields["layers"], c.size("interleave_moe_layer_step", "dense_layers") or 1
    moe = c.data.get("moe_layers")
    if moe is None:
        moe = list(range(step - 1, layers, step))
    if not isinstance(moe, list) or not all(type(i) is int and 0 <= i < layers for i in moe):
        raise WorkloadError(f"`moe_layers` must be a list of layer indices, not {moe!r}")
    chunk = c.int("attention_chunk_size", "window", 8192)  # Llama4TextConfig's default
    rope = c.data.get("no_rope_layers") or [int((i + 1) % 4 != 0) for i in range(layers)]
    if not isinstance(rope, list) or len(rope) != layers or not all(i in (0, 1) for i in rope):
        raise WorkloadError(f"`no_rope_layers` must list 0 or 1 per layer ({layers}), not {rope!r}")
    chunked = sum(rope) if chunk else 0
    stated = "window" in c.given  # the user's own pricing: a sliding window, or 0: full
    window = c.given["window"] if stated else chunk if chunked else 0
    return fields | {
        "ffn": c.int("intermediate_size_mlp", "ffn"),
        "experts": c.int("num_local_experts", "experts"),
        "top_k": c.int("num_experts_per_tok", "top_k"),
        "moe_ffn": c.int("intermediate_size", "moe_ffn"),
        "shared_experts": 1,
        "dense_layers": layers - len(set(moe)),
        "window": window,
        "window_layers": chunked if window and chunked < layers else None,
        "chunked": bool(window) and not stated,
    }


def _gpt_oss(c: _Keys) -> dict:
    """GPT-OSS (GptOssConfig, the gpt-oss presets): every layer a MoE of `num_local_experts`
    experts of `intermediate_size`, biased linears, SwiGLU clamped at `swiglu_limit`, sliding
    windows on the `layer_types` "sliding_attention" layers (GptOssConfig's default: every
    other layer, the first one)."""
    fields = _llama(c)
    layers, ffn = fields["layers"], fields["ffn"]
    limit = c.data.get("swiglu_limit", 7.0)  # GptOssConfig's default
    c.source["glu_limit"] = "swiglu_limit"  # so ModelConfig's check names the file's key
    if isinstance(limit, bool) or not isinstance(limit, int | float):
        raise WorkloadError(f"`swiglu_limit` must be a number, not {limit!r}")
    return (
        fields
        | _window(c, layers, lambda i: i % 2 == 0)
        | {
            "experts": c.int("num_local_experts", "experts"),
            "top_k": c.int("num_experts_per_tok", "top_k"),
            "moe_ffn": ffn,
            "linear_bias": c.flag("attention_bias", True),
            "glu_limit": float(limit),
        }
    )


def _expert_groups(c: _Keys) -> dict:
    """Group-limited routing (n_group, topk_group): both, or neither (a config that states one
    routes without the limit)."""
    groups = c.int("n_group", "expert_groups", None) or 0
    top = c.int("topk_group", "group_top_k", None) or 0
    return {"expert_groups": groups, "group_top_k": top} if groups and top else {}


def _other_params(kind: str, c: _Keys, m: ModelConfig) -> int:
    """Parameters outside the matrices and embeddings, as each transformers model class makes
    them: RMSNorm gains (LayerNorm: gain and bias), linear biases, GPT-2's position table,
    Qwen2-MoE's shared-expert gates."""
    h, layers, d = m.hidden, m.layers, m.d_head
    qkv, ffn = (m.heads + 2 * m.n_kv_heads) * d, m.ffn
    if kind in ("gpt2", "gpt_neox"):  # LayerNorms, biased linears
        biased = kind == "gpt2" or c.flag("attention_bias", True)
        per_layer = 4 * h + (qkv + h if biased else 0) + ffn + h
        table = m.seq * h if kind == "gpt2" else 0  # learned positions (wpe)
        return layers * per_layer + 2 * h + table
    norms = {"gemma2": 4, "gemma3_text": 4}.get(kind, 2) * h
    if kind in ("qwen3", "qwen3_moe", "gemma3_text") or (kind == "glm4_moe" and m.qk_norm):
        norms += 2 * d  # per-head q and k RMSNorms
    if kind in ("deepseek_v3", "deepseek_v32"):
        norms += m.q_lora + m.kv_lora  # q_a and kv_a layernorms
    if kind == "deepseek_v32":
        norms += 2 * m.index_head_dim  # the indexer's key LayerNorm: gain and bias
    if kind in ("qwen2", "qwen2_moe"):
        bias = qkv if c.flag("qkv_bias", True) else 0
    elif kind == "glm4_moe":  # q, k and v biased, the output projection not
        bias = qkv if c.flag("attention_bias", False) else 0
    else:
        bias = (qkv + h) if c.flag("attention_bias", False) else 0
        bias += (2 * ffn + h) if c.flag("mlp_bias", False) else 0
    moe_layers = layers - m.dense_layers if m.is_moe else 0
    gates = h * moe_layers if m.shared_gate else 0
    if kind == "gpt_oss":  # each expert's two biases, the router's bias, one sink per head
        gates += moe_layers * (m.experts * (2 * m.moe_ffn + h) + m.experts + m.heads)
    if kind in ("qwen3_next", "qwen3_5_moe_text", "qwen3_5_text"):  # q/k norms: attention layers
        gates += (layers - m.delta_layers) * 2 * d
    return layers * (norms + bias) + h + gates


MODEL_TYPES = {
    "llama": _llama,
    "mistral": _mistral,
    "qwen2": _qwen2,
    "qwen3": lambda c: _qwen2(c) | {"qk_norm": True},
    "phi3": _llama,
    "gemma2": _gemma(2),
    "gemma3_text": _gemma(6),
    "gpt_neox": _gpt_neox,
    "qwen2_moe": _qwen2_moe,
    "qwen3_moe": lambda c: _qwen2_moe(c) | {"qk_norm": True},
    "qwen3_next": _qwen3_next,
    # Qwen3.5 MoE (Qwen3_5MoeTextConfig, transformers models/qwen3_5_moe): Qwen3-Next's keys and
    # layers (its DeltaNet's in_proj_qkv/z/b/a are in_proj_qkvz/ba split: the same matrices)
    "qwen3_5_moe_text": _qwen3_next,
    # Qwen3.5 dense (Qwen3_5TextConfig, transformers models/qwen3_5): the same attention and
    # DeltaNet layers, a dense gated MLP of `intermediate_size` in every layer (Qwen3_5MLP)
    "qwen3_5_text": lambda c: _hybrid(c, _llama(c)),
    "mixtral": _mixtral,
    "gpt2": _gpt2,
    "deepseek_v3": _deepseek_v3,
    "deepseek_v32": _deepseek_v32,
    "gpt_oss": _gpt_oss,
    "glm4_moe": _glm4_moe,
    "llama4_text": _llama4,
}


# keys a config class defaults and its published configs leave out: google/gemma-3-27b-it's
# text_config states neither vocab_size nor max_position_embeddings (Gemma3TextConfig's defaults,
# transformers models/gemma3/configuration_gemma3.py: 262208 and 131072)
DEFAULTS = {"gemma3_text": {"vocab_size": 262208, "max_position_embeddings": 131072}}


# image-text models whose decoder is a supported text model, saved as their `text_config`: the
# decoder is costed, the vision tower and projector are not (`multimodal_note` says so)
MULTIMODAL = {
    "gemma3": "gemma3_text",
    "llama4": "llama4_text",
    "qwen3_5_moe": "qwen3_5_moe_text",
    "qwen3_5": "qwen3_5_text",
}


def _decoder(data: dict, kind: str, name: str) -> dict:
    """The `text_config` of a multimodal config, as a config of its own."""
    text = data.get("text_config")
    if not isinstance(text, dict):
        raise WorkloadError(
            f"`workload` {name}: a {kind} config needs its `text_config` (the decoder's shapes)"
        )
    top = {k: data[k] for k in ("tie_word_embeddings", "_name_or_path") if k in data}
    return top | text | {"model_type": MULTIMODAL[kind]}


def image_text(path: Path) -> dict | None:
    """A multimodal config.json's contents (a vision_config beside the decoder), or None."""
    data = _read(path)
    vision = data.get("vision_config")
    if data.get("model_type") not in MULTIMODAL or not isinstance(vision, dict):
        return None
    return data


def multimodal_note(data: dict) -> str:
    """What an image-text config's decoder-only cost leaves out: its vision tower."""
    vision = data["vision_config"]
    layers, width = vision.get("num_hidden_layers"), vision.get("hidden_size")
    kind = vision.get("model_type")  # a user's string, printed: a plain identifier only
    tower = kind if isinstance(kind, str) and kind.isidentifier() and len(kind) <= 40 else "vision"
    if isinstance(layers, int) and isinstance(width, int):
        tower += f", {layers} layers of {width}"
    images = data.get("mm_tokens_per_image")
    per = f" ({images} of them per image)" if isinstance(images, int) else ""
    from chipforge.workload.hf_traced import IMAGE_TEXT

    costed = data.get("model_type") in IMAGE_TEXT  # Llama 4's tower: not costed at all
    return (
        f"the vision tower ({tower}) and the multimodal projector are not costed and their "
        f"parameters not counted: the text decoder only, over `seq` tokens, image tokens{per} "
        "included" + ("; give `images=N` to cost N images a sequence" if costed else "")
    )


# a checkpoint's `quantization_config.quant_method` -> the dtype its quantized weights are
# stored at (transformers' quantizers: Mxfp4Config for gpt-oss, FineGrainedFP8Config and
# FbgemmFp8Config for DeepSeek-V3 / Kimi K2 and Llama FP8 checkpoints)
QUANT_DTYPES = {"mxfp4": "fp4", "fp8": "fp8", "fbgemm_fp8": "fp8"}


def stored_quantization(path: Path) -> tuple[str, str | None] | None:
    """(quant_method, the chipforge dtype it stores weights at, or None when it has none) of a
    config.json that states a `quantization_config`; None when it states none."""
    quant = _read(path).get("quantization_config")
    method = quant.get("quant_method") if isinstance(quant, dict) else None
    if not isinstance(method, str) or not method.isprintable() or len(method) > 40:
        return None
    return method, QUANT_DTYPES.get(method)


def _read(path: Path, where: str = "workload") -> dict:
    try:
        absent = not path.is_file()
    except OSError:  # a name too long, ...: load_json says why it cannot be read
        absent = False
    if absent:
        raise WorkloadError(f"`{where}` {path} {missing(path)}; give the path of a config.json")
    data = load_json(path, what=f"`{where}`", error=WorkloadError)
    if not isinstance(data, dict):
        raise WorkloadError(
            f"`{where}` {path.name} must be a JSON object, not {type(data).__name__}"
        )
    return data


def load_hf_config(
    path: str | Path, where: str = "workload", given: dict | None = None
) -> ModelConfig:
    """The `ModelConfig` of a HuggingFace config.json (Llama, Mistral, Mixtral, Qwen2, Qwen3,
    Qwen2-MoE, Qwen3-MoE, GPT-OSS, Phi-3, Gemma 2, Gemma 3 (text, or the image-text model's
    decoder), GPT-NeoX, GPT-2, DeepSeek-V3, GLM-4.5, Llama 4). `where`: what errors name it
    (`model` for the --model of train and serve); `given`: the model fields the user sets beside
    the file, for the configs whose loading depends on them (Llama 4's chunked attention)."""
    path = Path(path)
    data = _read(path, where)
    archs = data.get("architectures")
    archs = [a for a in archs if isinstance(a, str)] if isinstance(archs, list) else []
    kind = data.get("model_type") if isinstance(data.get("model_type"), str) else None
    if kind not in MODEL_TYPES and kind not in MULTIMODAL:
        # a model_type of its own over a supported class (Kimi K2: "kimi_k2" with
        # architectures ["DeepseekV3ForCausalLM"]): the class its weights load into decides
        kind = next((ARCHITECTURES[a] for a in archs if a in ARCHITECTURES), kind)
    if kind in MULTIMODAL:
        data, kind = _decoder(data, kind, path.name), MULTIMODAL[kind]
    if kind not in MODEL_TYPES:
        from chipforge.workload.hf_traced import MODEL_CLASSES

        if kind in MODEL_CLASSES:
            raise WorkloadError(
                f"`{where}` {path.name}: a {kind} config is not a decoder LLM; cost it as a "
                "workload (evaluate, compare, simulate --workload path/config.json,seq=..); "
                "train and serve take decoder LLMs"
            )
        given = ", ".join(archs) or kind or "none given"
        raise WorkloadError(
            f"`{where}` {path.name}: architecture must be one of {', '.join(ARCHITECTURES)}, "
            f"not {given}; describe other models with llm:custom,layers=..,hidden=.."
        )
    keys = _Keys(DEFAULTS.get(kind, {}) | data, given)
    try:
        fields = MODEL_TYPES[kind](keys)
    except KeyError as e:
        raise WorkloadError(
            f"`{where}` {path.name}: `{e.args[0]}` is required for a {kind} config"
        ) from None
    except WorkloadError as e:
        raise WorkloadError(f"`{where}` {path.name}: {e}") from None
    # the checkpoint's own name, else its folder's (.../Qwen3-8B/config.json), else the file's
    # (qwen3-8b.json beside other configs)
    folder = path.parent.name if path.name == "config.json" else path.stem
    name = str(data.get("_name_or_path") or folder or kind).rstrip("/").split("/")[-1]
    try:
        config = ModelConfig(
            name=name or kind, **{"max_context": _max_context(data, fields, kind)} | fields
        )
        return replace(config, other_params=_other_params(kind, keys, config))
    except ModelFieldError as e:
        key = keys.source.get(e.field)
        raise WorkloadError(
            f"`{where}` {path.name}: {e}" + (f" (from `{key}`)" if key else "")
        ) from None
    except WorkloadError as e:
        raise WorkloadError(f"`{where}` {path.name}: {e}") from None
