"""Published frontier checkpoints' config.json files, as their owners ship them on the HuggingFace
hub (copied by hand into tests/data/hf_configs; nothing downloaded), through the one model
resolver: each loads with its checkpoint's parameter count (within 1 %), or is refused in one
line naming the config key whose architecture is not priced.

The reference counts are the checkpoints' own (the safetensors files' tensor elements, as the hub
reports them and as keras-hub's conversion asserts equal to the transformers model's), or the
model card's where no exact count is published. `ModelConfig.params()` counts the main model: a
multi-token-prediction module and an image-text model's vision tower are not in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chipforge.workload.resolve import resolve_model

CONFIGS = Path(__file__).parent / "data" / "hf_configs"

# file -> the published parameter count, each with its source
PUBLISHED = {
    # https://huggingface.co/Qwen/Qwen3-235B-A22B/blob/main/config.json; 235,093,634,560: the
    # checkpoint's count (keras-hub qwen3_moe_presets.py "qwen3_moe_235b_a22b_en", whose
    # conversion asserts it equal to the transformers model's)
    "qwen3-235b-a22b.json": 235_093_634_560,
    # https://huggingface.co/moonshotai/Kimi-K2-Instruct/blob/main/config.json (model_type
    # "kimi_k2", architectures ["DeepseekV3ForCausalLM"], 384 experts); model card: "1T total
    # parameters"; the checkpoint's logical count 1,026,408,232,448 (safetensors headers)
    "kimi-k2.json": 1_026_408_232_448,
    # https://huggingface.co/openai/gpt-oss-20b/blob/main/config.json; keras-hub
    # gpt_oss_presets.py "gpt_oss_20b_en": 20,914,757,184
    "gpt-oss-20b.json": 20_914_757_184,
    # https://huggingface.co/mistral-community/Mixtral-8x22B-v0.1/blob/main/config.json; the
    # BF16 checkpoint's 281,241,268,224 tensor bytes / 2 (Mistral AI's post: "141B")
    "mixtral-8x22b.json": 140_620_634_112,
    # https://huggingface.co/microsoft/phi-4/blob/main/config.json; model.safetensors.index.json
    # total_size 29,319,014,400 bytes of BF16 / 2
    "phi-4.json": 14_659_507_200,
    # https://huggingface.co/mistralai/Mistral-Small-24B-Base-2501/blob/main/config.json (Mistral
    # Small 3); keras-hub mistral_presets.py "magistral_small_2506_en" (the same decoder):
    # 23,572,403,200
    "mistral-small-24b-base-2501.json": 23_572_403_200,
    # https://huggingface.co/google/gemma-3-27b-it/blob/main/config.json (its text_config leaves
    # vocab_size and max_position_embeddings to Gemma3TextConfig's defaults); the decoder's
    # count, keras-hub gemma3_presets.py "gemma3_instruct_27b_text": 27,009,002,240 (the
    # image-text checkpoint, vision tower included: 27,432,062,576)
    "gemma-3-27b-it.json": 27_009_002_240,
    # https://huggingface.co/zai-org/GLM-4.5/blob/main/config.json (Glm4MoeForCausalLM); model
    # card: "355 billion total parameters"; the checkpoint's 358,337,791,296 hold its MTP layer
    # too (5.5 B with its own embedding and head copies), which `params()` leaves out
    "glm-4.5.json": 355_000_000_000,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_config_has_the_checkpoints_parameter_count(name):
    model = resolve_model(CONFIGS / name)
    assert model.params() == pytest.approx(PUBLISHED[name], rel=0.01)
