"""Qwen3-MoE config.json files (Qwen3MoeForCausalLM): train and serve take them as they take
the qwen3-30b-a3b preset."""

import json

import pytest
from test_hf_gpt_oss import load_as_built  # one way to build the reference

from chipforge.api import load_model

# Qwen/Qwen3-30B-A3B config.json (transformers 4.51), its shape keys as published
QWEN3_30B_A3B = {
    "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
    "attention_bias": False, "decoder_sparse_step": 1, "head_dim": 128, "hidden_size": 2048,
    "intermediate_size": 6144, "max_position_embeddings": 40960, "max_window_layers": 48,
    "mlp_only_layers": [], "moe_intermediate_size": 768, "norm_topk_prob": True,
    "num_attention_heads": 32, "num_experts": 128, "num_experts_per_tok": 8,
    "num_hidden_layers": 48, "num_key_value_heads": 4, "rope_scaling": None,
    "sliding_window": None, "tie_word_embeddings": False, "use_sliding_window": False,
    "vocab_size": 151936,
}  # fmt: skip


def test_the_published_checkpoint_and_the_preset(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN3_30B_A3B))
    m, preset = load_model(str(tmp_path / "config.json")), load_model("qwen3-30b-a3b")
    # the checkpoint's safetensors parameter total (Hugging Face Hub metadata of
    # Qwen/Qwen3-30B-A3B): routers, per-head q/k norms and layer norms included
    assert m.params() == 30_532_122_624
    for f in ("layers", "hidden", "heads", "kv_heads", "experts", "top_k", "moe_ffn", "qk_norm"):
        assert getattr(m, f) == getattr(preset, f), f
    assert m.params() - m.other_params == preset.params()


@pytest.mark.models
def test_parameters_as_transformers_builds_them(tmp_path):
    T = pytest.importorskip("transformers")
    config = T.Qwen3MoeConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, vocab_size=256, max_position_embeddings=64,
        num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, mlp_only_layers=[0],
    )  # fmt: skip
    m, built = load_as_built(tmp_path, config, T.Qwen3MoeForCausalLM)
    assert m.dense_layers == 1 and m.qk_norm and not m.shared_experts
    assert m.params() == built
