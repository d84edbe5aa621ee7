"""HuggingFace `config.json` files as `ModelConfig`s: the shapes of a checkpoint, no weights.

Each supported `model_type` maps the transformers config keys (LlamaConfig, MistralConfig,
MixtralConfig, Qwen2Config, Qwen3Config, Phi3Config, GPT2Config, DeepseekV3Config) to
ModelConfig fields. Encoder, encoder-decoder, vision and audio configs (BERT, T5, ViT,
Whisper, CLIP) are not ModelConfigs: `hf_traced` costs them as workloads. `seq` is the
config's max_position_embeddings (n_positions for GPT-2): the longest context it serves.
"""

from __future__ import annotations

from pathlib import Path

from chipforge.errors import WorkloadError
from chipforge.userfile import load_json
from chipforge.workload.config import ModelConfig, ModelFieldError

ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "MixtralForCausalLM": "mixtral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",  # Llama's shapes plus per-head q/k RMSNorms (not counted)
    "Phi3ForCausalLM": "phi3",  # Llama's shapes with fused qkv and gate_up matrices
    "GPT2LMHeadModel": "gpt2",
    "DeepseekV3ForCausalLM": "deepseek_v3",
}


class _Keys:
    """A config's keys, read as integers: a string, list, float or bool where a size goes is an
    error naming the key. Remembers which key gave each ModelConfig field."""

    def __init__(self, data: dict):
        self.data, self.source = data, {}

    def int(self, key: str, field: str, default=KeyError):
        value = self.data.get(key, default)
        if value is KeyError:
            raise KeyError(key)
        self.source[field] = key
        if value is None and default is not KeyError:  # an optional key set to null
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise WorkloadError(f"`{key}` must be an integer, not {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise WorkloadError(f"`{key}` must be true or false, not {value!r}")
        return value


def _llama(c: _Keys) -> dict:
    heads, hidden = c.int("num_attention_heads", "heads"), c.int("hidden_size", "hidden")
    head_dim = c.int("head_dim", "head_dim", None)
    return {
        "layers": c.int("num_hidden_layers", "layers"),
        "hidden": hidden,
        "heads": heads,
        "kv_heads": c.int("num_key_value_heads", "kv_heads", None) or heads,
        "head_dim": head_dim if head_dim and heads and head_dim != hidden // heads else None,
        "ffn": c.int("intermediate_size", "ffn"),
        "vocab": c.int("vocab_size", "vocab"),
        "act": "swiglu",  # hidden_act silu on gate_proj, times up_proj
        "tied_embeddings": c.flag("tie_word_embeddings", False),
        "seq": c.int("max_position_embeddings", "seq"),
    }


def _mixtral(c: _Keys) -> dict:
    return _llama(c) | {
        "experts": c.int("num_local_experts", "experts"),
        "top_k": c.int("num_experts_per_tok", "top_k"),
    }


def _gpt2(c: _Keys) -> dict:
    hidden = c.int("n_embd", "hidden")
    return {
        "layers": c.int("n_layer", "layers"),
        "hidden": hidden,
        "heads": c.int("n_head", "heads"),
        "ffn": c.int("n_inner", "ffn", None) or 4 * hidden,
        "vocab": c.int("vocab_size", "vocab"),
        "act": "gelu",
        "tied_embeddings": c.flag("tie_word_embeddings", True),
        "seq": c.int("n_positions", "seq", None) or c.int("n_ctx", "seq"),
    }


def _deepseek_v3(c: _Keys) -> dict:
    mla = _llama(c) | {"kv_heads": None, "head_dim": c.int("qk_nope_head_dim", "head_dim")}
    return mla | {
        "experts": c.int("n_routed_experts", "experts"),
        "top_k": c.int("num_experts_per_tok", "top_k"),
        "shared_experts": c.int("n_shared_experts", "shared_experts", None) or 0,
        "moe_ffn": c.int("moe_intermediate_size", "moe_ffn"),
        "dense_layers": c.int("first_k_dense_replace", "dense_layers", 0),
        "q_lora": c.int("q_lora_rank", "q_lora", None) or 0,
        "kv_lora": c.int("kv_lora_rank", "kv_lora"),
        "rope_dim": c.int("qk_rope_head_dim", "rope_dim"),
        "v_head_dim": c.int("v_head_dim", "v_head_dim"),
        "mtp_layers": c.int("num_nextn_predict_layers", "mtp_layers", None) or 0,
        **_expert_groups(c),
    }


def _expert_groups(c: _Keys) -> dict:
    """Group-limited routing (n_group, topk_group): both, or neither (a config that states one
    routes without the limit)."""
    groups = c.int("n_group", "expert_groups", None) or 0
    top = c.int("topk_group", "group_top_k", None) or 0
    return {"expert_groups": groups, "group_top_k": top} if groups and top else {}


MODEL_TYPES = {
    "llama": _llama,
    "mistral": _llama,
    "qwen2": _llama,
    "qwen3": _llama,
    "phi3": _llama,
    "mixtral": _mixtral,
    "gpt2": _gpt2,
    "deepseek_v3": _deepseek_v3,
}


def _read(path: Path) -> dict:
    try:
        missing = not path.is_file()
    except OSError:  # a name too long, ...: load_json says why it cannot be read
        missing = False
    if missing:
        raise WorkloadError(f"`workload` {path} does not exist; give the path of a config.json")
    data = load_json(path, what="`workload`", error=WorkloadError)
    if not isinstance(data, dict):
        raise WorkloadError(
            f"`workload` {path.name} must be a JSON object, not {type(data).__name__}"
        )
    return data


def load_hf_config(path: str | Path) -> ModelConfig:
    """The `ModelConfig` of a HuggingFace config.json (Llama, Mistral, Mixtral, Qwen2, Qwen3,
    Phi-3, GPT-2, DeepSeek-V3)."""
    path = Path(path)
    data = _read(path)
    archs = data.get("architectures")
    archs = [a for a in archs if isinstance(a, str)] if isinstance(archs, list) else []
    kind = data.get("model_type") if isinstance(data.get("model_type"), str) else None
    kind = kind or next((ARCHITECTURES[a] for a in archs if a in ARCHITECTURES), None)
    if kind not in MODEL_TYPES:
        from chipforge.workload.hf_traced import MODEL_CLASSES

        if kind in MODEL_CLASSES:
            raise WorkloadError(
                f"`workload` {path.name}: a {kind} config is not a decoder LLM; cost it as a "
                "workload (evaluate, compare, simulate --workload path/config.json,seq=..); "
                "train and serve take decoder LLMs"
            )
        given = ", ".join(archs) or kind or "none given"
        raise WorkloadError(
            f"`workload` {path.name}: architecture must be one of {', '.join(ARCHITECTURES)}, "
            f"not {given}; describe other models with llm:custom,layers=..,hidden=.."
        )
    keys = _Keys(data)
    try:
        fields = MODEL_TYPES[kind](keys)
    except KeyError as e:
        raise WorkloadError(
            f"`workload` {path.name}: `{e.args[0]}` is required for a {kind} config"
        ) from None
    except WorkloadError as e:
        raise WorkloadError(f"`workload` {path.name}: {e}") from None
    name = str(data.get("_name_or_path") or path.parent.name or kind).rstrip("/").split("/")[-1]
    try:
        return ModelConfig(name=name or kind, **fields)
    except ModelFieldError as e:
        key = keys.source.get(e.field)
        raise WorkloadError(
            f"`workload` {path.name}: {e}" + (f" (from `{key}`)" if key else "")
        ) from None
