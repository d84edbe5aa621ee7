"""HuggingFace config.json files, the GPT-2 and Qwen2 presets, and the PyTorch zoo (ResNet-50,
ViT-B/16, BERT) against published figures."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace

import pytest

from chipforge.errors import WorkloadError
from chipforge.workload import (
    Attention,
    Conv2d,
    MatMul,
    build,
    build_zoo,
    load_hf_config,
    load_model,
    parse_workload,
    zoo_names,
)

# config.json keys as the checkpoints on the HuggingFace hub ship them (values copied from
# meta-llama/Meta-Llama-3-8B, mistralai/Mixtral-8x7B-v0.1, Qwen/Qwen2-7B,
# openai-community/gpt2, deepseek-ai/DeepSeek-V3)
HF_CONFIGS = {
    "llama3-8b": {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "max_position_embeddings": 8192,
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
    },
    "mixtral-8x7b": {
        "architectures": ["MixtralForCausalLM"],
        "model_type": "mixtral",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "max_position_embeddings": 32768,
        "num_attention_heads": 32,
        "num_experts_per_tok": 2,
        "num_hidden_layers": 32,
        "num_key_value_heads": 8,
        "num_local_experts": 8,
        "vocab_size": 32000,
    },
    "qwen2-7b": {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "max_position_embeddings": 131072,
        "num_attention_heads": 28,
        "num_hidden_layers": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    },
    "gpt2": {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "n_ctx": 1024,
        "n_embd": 768,
        "n_head": 12,
        "n_inner": None,
        "n_layer": 12,
        "n_positions": 1024,
        "vocab_size": 50257,
        "activation_function": "gelu_new",
    },
    "deepseek-v3": {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "hidden_size": 7168,
        "intermediate_size": 18432,
        "moe_intermediate_size": 2048,
        "n_routed_experts": 256,
        "n_shared_experts": 1,
        "num_experts_per_tok": 8,
        "first_k_dense_replace": 3,
        "q_lora_rank": 1536,
        "kv_lora_rank": 512,
        "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64,
        "v_head_dim": 128,
        "num_attention_heads": 128,
        "num_key_value_heads": 128,
        "num_hidden_layers": 61,
        "vocab_size": 129280,
        "num_nextn_predict_layers": 1,
        "n_group": 8,
        "topk_group": 4,
        "max_position_embeddings": 163840,
    },
}


def write_config(tmp_path, data: dict):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("preset", sorted(HF_CONFIGS))
def test_hf_configs_give_the_presets_shapes(tmp_path, preset):
    data = HF_CONFIGS[preset]
    config = load_hf_config(write_config(tmp_path, data))
    expected = load_model(preset)
    seq = data.get("max_position_embeddings") or data["n_positions"]  # the config's context
    # a config.json counts norms and biases too (`other_params`; presets leave them out); its
    # maximum context is the config's own (a preset states one only where its source does, and
    # llama3-8b states Llama 3.1's 131,072 where this Llama 3 config has 8,192)
    assert config.max_context == seq
    assert (
        replace(
            config, name=preset, seq=expected.seq, other_params=0, max_context=expected.max_context
        )
        == expected
    )
    assert 0 < config.other_params < 0.01 * config.params()  # GPT-2: its position table
    assert config.seq == seq


def test_config_json_workload_builds_like_the_preset(tmp_path):
    path = write_config(tmp_path, HF_CONFIGS["llama3-8b"])
    graph = parse_workload(f"{path},phase=decode,batch=4,context=1024")
    preset = parse_workload("llm:llama3-8b,phase=decode,batch=4,context=1024")
    assert graph.flops == preset.flops
    assert graph.resident["kv_cache"] == preset.resident["kv_cache"]
    assert graph.resident["weights"] == pytest.approx(preset.resident["weights"], rel=1e-4)
    assert parse_workload(f"llm:{path},layers=2").meta["params"] < preset.meta["params"]


def test_mistral_config_is_a_llama(tmp_path):
    # mistralai/Mistral-7B-v0.1 config.json: GQA with 8 KV heads, 14336 FFN, 32768 positions
    data = HF_CONFIGS["llama3-8b"] | {
        "architectures": ["MistralForCausalLM"],
        "model_type": "mistral",
        "vocab_size": 32000,
        "max_position_embeddings": 32768,
    }
    config = load_hf_config(write_config(tmp_path, data))
    assert config.params() / 1e9 == pytest.approx(7.24, rel=0.01)  # the hub lists 7.24B


def test_unknown_architecture_names_the_supported_ones(tmp_path):
    path = write_config(tmp_path, {"architectures": ["T5ForConditionalGeneration"]})
    message = (
        "`workload` config.json: architecture must be one of LlamaForCausalLM, "
        "MistralForCausalLM, MixtralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "
        "Phi3ForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3ForConditionalGeneration, "
        "GPTNeoXForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, Qwen3NextForCausalLM, "
        "Qwen3_5MoeForCausalLM, Qwen3_5MoeForConditionalGeneration, Qwen3_5ForCausalLM, "
        "Qwen3_5ForConditionalGeneration, GPT2LMHeadModel, "
        "DeepseekV3ForCausalLM, DeepseekV32ForCausalLM, GptOssForCausalLM, Glm4MoeForCausalLM, "
        "Llama4ForCausalLM, Llama4ForConditionalGeneration, not T5ForConditionalGeneration; "
        "describe other models with "
        "llm:custom,layers=..,hidden=.."
    )
    with pytest.raises(WorkloadError) as err:
        parse_workload(str(path))
    assert str(err.value) == message
    out = subprocess.run(
        [sys.executable, "-m", "chipforge", "evaluate", "--chip", "h100", "--workload", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and out.stderr.strip() == f"error: {message}"


def test_incomplete_config_names_the_key(tmp_path):
    data = dict(HF_CONFIGS["gpt2"])
    del data["n_head"]
    with pytest.raises(WorkloadError, match=r"`n_head` is required for a gpt2 config"):
        parse_workload(str(write_config(tmp_path, data)))


# HuggingFace model cards: GPT-2 124M, GPT-2 Medium 355M, Large 774M, XL 1.5B parameters
# (ModelConfig.params leaves out the 1024 learned positions and the biases: under 1%)
GPT2_PARAMS = {"gpt2": 124e6, "gpt2-medium": 355e6, "gpt2-large": 774e6, "gpt2-xl": 1.558e9}


@pytest.mark.parametrize("name", sorted(GPT2_PARAMS))
def test_gpt2_presets_match_the_model_cards(name):
    assert load_model(name).params() == pytest.approx(GPT2_PARAMS[name], rel=0.01)


def test_qwen2_7b_preset_formula():
    c = load_model("qwen2-7b")
    h, f, kv_dim = c.hidden, c.ffn, c.n_kv_heads * c.d_head
    per_layer = 2 * h * h + 2 * h * kv_dim + 3 * h * f  # q, o; k, v; gate, up, down
    assert c.params() == c.layers * per_layer + 2 * c.vocab * h  # untied embeddings


# --- the PyTorch zoo --------------------------------------------------------------------

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="the zoo needs torch (pip install .[models])",
)


def macs(graph) -> float:
    return sum(op.total_flops for op in graph.ops if isinstance(op, (MatMul, Conv2d))) / 2


@needs_torch
def test_resnet50_through_torch_export():
    graph = build_zoo("resnet50")
    assert macs(graph) == pytest.approx(4.09e9, rel=0.02)  # torchvision: 4.09 GFLOPS (MACs)
    assert graph.resident["weights"] / 4 == pytest.approx(25.6e6, rel=0.01)  # 25.6M params
    two = parse_workload("zoo:resnet50,batch=2,dtype=bf16")
    assert two.flops == pytest.approx(2 * graph.flops)
    assert {op.dtype for op in two.ops if isinstance(op, Conv2d)} == {"bf16"}


@needs_torch
def test_vit_b16_is_17_6_gmacs():
    graph = build_zoo("vit-b16")
    attention = sum(op.total_flops for op in graph.ops if isinstance(op, Attention)) / 2
    assert macs(graph) + attention == pytest.approx(17.6e9, rel=0.02)  # timm vit_base_patch16
    assert graph.resident["weights"] / 4 == pytest.approx(86.6e6, rel=0.01)  # timm: 86.6M
    patch = next(op for op in graph.ops if isinstance(op, Conv2d))
    assert (patch.kh, patch.stride, patch.cout) == (16, 16, 768)


@needs_torch
def test_bert_base_layer_follows_the_formula():
    batch, seq = 2, 128
    graph = build_zoo("bert-base", batch=batch, seq=seq)
    layers, h, heads, ffn = 12, 768, 12, 3072  # Devlin et al. 2019; bert-base-uncased config
    t = batch * seq
    projections = 2 * t * 4 * h * h  # query, key, value, attention output
    mlp = 2 * t * 2 * h * ffn  # intermediate and output
    attention = 2 * batch * heads * seq * seq * 2 * (h // heads)  # bidirectional QK^T and PV
    matrix = sum(op.total_flops for op in graph.ops if isinstance(op, (MatMul, Attention)))
    assert matrix == pytest.approx(layers * (projections + mlp + attention), rel=1e-12)
    assert not any(op.causal for op in graph.ops if isinstance(op, Attention))
    assert graph.resident["weights"] / 4 == pytest.approx(110e6, rel=0.02)  # BERT-base: 110M


@needs_torch
def test_zoo_decoders_are_the_presets():
    assert {"resnet50", "vit-b16", "bert-base", "bert-large", "gpt2-xl", "mixtral-8x7b"} <= set(
        zoo_names()
    )
    assert "deepseek-v3" not in zoo_names()  # MLA has no PyTorch module in the zoo
    small = build_zoo("gpt2", seq=64)
    reference = build(load_model("gpt2"), seq=64)
    assert small.flops == pytest.approx(reference.flops, rel=0.01)
    with pytest.raises(WorkloadError, match=r"`zoo` model must be one of .* not 'resnet'"):
        parse_workload("zoo:resnet")
