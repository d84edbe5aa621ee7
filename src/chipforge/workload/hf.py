"""HuggingFace `config.json` files as `ModelConfig`s: the shapes of a checkpoint, no weights.

Each supported `model_type` maps the transformers config keys (LlamaConfig, MistralConfig,
MixtralConfig, Qwen2Config, GPT2Config, DeepseekV3Config) to ModelConfig fields. `seq` is the
config's max_position_embeddings (n_positions for GPT-2): the longest context it serves.
"""

from __future__ import annotations

from pathlib import Path

from chipforge.errors import WorkloadError
from chipforge.userfile import load_json
from chipforge.workload.config import ModelConfig

ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "MixtralForCausalLM": "mixtral",
    "Qwen2ForCausalLM": "qwen2",
    "GPT2LMHeadModel": "gpt2",
    "DeepseekV3ForCausalLM": "deepseek_v3",
}


def _llama(c: dict) -> dict:
    heads = c["num_attention_heads"]
    head_dim = c.get("head_dim")
    return {
        "layers": c["num_hidden_layers"],
        "hidden": c["hidden_size"],
        "heads": heads,
        "kv_heads": c.get("num_key_value_heads") or heads,
        "head_dim": head_dim if head_dim and head_dim != c["hidden_size"] // heads else None,
        "ffn": c["intermediate_size"],
        "vocab": c["vocab_size"],
        "act": "swiglu",  # hidden_act silu on gate_proj, times up_proj
        "tied_embeddings": bool(c.get("tie_word_embeddings", False)),
        "seq": c["max_position_embeddings"],
    }


def _mixtral(c: dict) -> dict:
    return _llama(c) | {"experts": c["num_local_experts"], "top_k": c["num_experts_per_tok"]}


def _gpt2(c: dict) -> dict:
    return {
        "layers": c["n_layer"],
        "hidden": c["n_embd"],
        "heads": c["n_head"],
        "ffn": c.get("n_inner") or 4 * c["n_embd"],
        "vocab": c["vocab_size"],
        "act": "gelu",
        "tied_embeddings": bool(c.get("tie_word_embeddings", True)),
        "seq": c.get("n_positions") or c["n_ctx"],
    }


def _deepseek_v3(c: dict) -> dict:
    mla = _llama(c) | {"kv_heads": None, "head_dim": c["qk_nope_head_dim"]}
    return mla | {
        "experts": c["n_routed_experts"],
        "top_k": c["num_experts_per_tok"],
        "shared_experts": c.get("n_shared_experts") or 0,
        "moe_ffn": c["moe_intermediate_size"],
        "dense_layers": c.get("first_k_dense_replace", 0),
        "q_lora": c.get("q_lora_rank") or 0,
        "kv_lora": c["kv_lora_rank"],
        "rope_dim": c["qk_rope_head_dim"],
        "v_head_dim": c["v_head_dim"],
        "mtp_layers": c.get("num_nextn_predict_layers") or 0,
    }


MODEL_TYPES = {
    "llama": _llama,
    "mistral": _llama,
    "qwen2": _llama,
    "mixtral": _mixtral,
    "gpt2": _gpt2,
    "deepseek_v3": _deepseek_v3,
}


def _read(path: Path) -> dict:
    if not path.is_file():
        raise WorkloadError(f"`workload` {path} does not exist; give the path of a config.json")
    data = load_json(path, what="`workload`", error=WorkloadError)
    if not isinstance(data, dict):
        raise WorkloadError(
            f"`workload` {path.name} must be a JSON object, not {type(data).__name__}"
        )
    return data


def load_hf_config(path: str | Path) -> ModelConfig:
    """The `ModelConfig` of a HuggingFace config.json (Llama, Mistral, Mixtral, Qwen2, GPT-2,
    DeepSeek-V3)."""
    path = Path(path)
    data = _read(path)
    archs = data.get("architectures") or []
    kind = data.get("model_type") or next(
        (ARCHITECTURES[a] for a in archs if a in ARCHITECTURES), None
    )
    if kind not in MODEL_TYPES:
        given = ", ".join(archs) or kind or "none given"
        raise WorkloadError(
            f"`workload` {path.name}: architecture must be one of {', '.join(ARCHITECTURES)}, "
            f"not {given}; describe other models with llm:custom,layers=..,hidden=.."
        )
    try:
        fields = MODEL_TYPES[kind](data)
    except KeyError as e:
        raise WorkloadError(
            f"`workload` {path.name}: `{e.args[0]}` is required for a {kind} config"
        ) from None
    name = str(data.get("_name_or_path") or path.parent.name or kind).rstrip("/").split("/")[-1]
    return ModelConfig(name=name or kind, **fields)
