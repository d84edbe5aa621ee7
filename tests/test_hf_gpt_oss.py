"""GPT-OSS config.json files (GptOssForCausalLM): train and serve take them as they take the
gpt-oss presets."""

import json

import pytest

from chipforge.api import load_model


def _published(layers: int, experts: int) -> dict:
    """openai/gpt-oss-120b and -20b config.json, their shape keys as published."""
    return {
        "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "attention_bias": True,
        "head_dim": 64, "hidden_size": 2880, "intermediate_size": 2880,
        "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention"
                        for i in range(layers)],
        "max_position_embeddings": 131072, "num_attention_heads": 64, "num_experts_per_tok": 4,
        "num_hidden_layers": layers, "num_key_value_heads": 8, "num_local_experts": experts,
        "rope_scaling": {"factor": 32.0, "original_max_position_embeddings": 4096,
                         "rope_type": "yarn"},
        "sliding_window": 128, "swiglu_limit": 7.0, "tie_word_embeddings": False,
        "vocab_size": 201088,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("name", "layers", "experts", "billions"),
    [("gpt-oss-120b", 36, 128, 116.83), ("gpt-oss-20b", 24, 32, 20.91)],
)
def test_the_published_configs_and_the_presets(tmp_path, name, layers, experts, billions):
    (tmp_path / "config.json").write_text(json.dumps(_published(layers, experts)))
    m, preset = load_model(str(tmp_path / "config.json")), load_model(name)
    # total parameters, gpt-oss model card (arXiv 2508.10925) Table 1
    assert round(m.params() / 1e9, 2) == billions
    fields = "layers hidden heads kv_heads head_dim experts top_k moe_ffn window window_layers"
    for f in (*fields.split(), "linear_bias", "glu_limit", "max_context"):
        assert getattr(m, f) == getattr(preset, f), f


@pytest.mark.models
def test_parameters_as_transformers_builds_them(tmp_path):
    T = pytest.importorskip("transformers")
    config = T.GptOssConfig(
        hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, vocab_size=256, max_position_embeddings=64,
        num_local_experts=4, num_experts_per_tok=2, sliding_window=8,
    )  # fmt: skip
    m, built = load_as_built(tmp_path, config, T.GptOssForCausalLM)
    assert (m.window, m.window_layers, m.linear_bias) == (8, 2, True)
    assert m.params() == built  # sinks, router and expert biases included


def load_as_built(tmp_path, config, model_class):
    """`config` saved as a config.json and loaded by chipforge, and the parameter count of the
    model transformers builds from it (every tensor, tied ones once)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = model_class(config)
    config.to_json_file(tmp_path / "config.json")
    return load_model(str(tmp_path / "config.json")), sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("limit", [float("nan"), float("inf"), -1.0])
def test_a_bad_swiglu_limit_names_the_file_key(tmp_path, limit):
    """NaN / inf / negative `swiglu_limit` (json reads NaN and Infinity) is refused naming the
    config's own key; it named only ModelConfig's `glu_limit`, a key the file does not have."""
    from chipforge.errors import WorkloadError

    data = {**_published(24, 32), "swiglu_limit": limit}
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(WorkloadError) as e:
        load_model(str(tmp_path / "config.json"))
    assert "`glu_limit` must be a finite number >= 0" in str(e.value)
    assert str(e.value).endswith("(from `swiglu_limit`)")


def test_an_attention_type_not_modelled_is_refused(tmp_path):
    """A `layer_types` value other than full / sliding attention ("chunked_attention", or a
    typo) was priced as full attention, silently."""
    from chipforge.errors import WorkloadError

    data = _published(24, 32)
    data["layer_types"] = ["chunked_attention"] + data["layer_types"][1:]
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(WorkloadError, match="`layer_types` holds 'chunked_attention'"):
        load_model(str(tmp_path / "config.json"))
