"""One model vocabulary and one chip vocabulary: every spelling of a model resolves through
`resolve_model` to the same shapes, and every command that names a model takes every spelling."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from chipforge.cli import app
from chipforge.errors import WorkloadError
from chipforge.workload import load_model, parse_workload, resolve_model
from chipforge.workload.config import ModelConfig

CUSTOM = "name=tiny,layers=2,hidden=256,heads=4,kv_heads=2,ffn=1024,vocab=1000,seq=512"
HF = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "num_hidden_layers": 2,
    "hidden_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 1024,
    "vocab_size": 1000,
    "max_position_embeddings": 512,
}


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "tiny"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(HF))
    return d


def _shape(c: ModelConfig) -> tuple:
    return (c.layers, c.hidden, c.heads, c.n_kv_heads, c.ffn, c.vocab, c.seq, c.params())


def test_every_spelling_resolves_to_the_same_model(folder):
    want = _shape(resolve_model(f"llm:custom,{CUSTOM}"))
    assert _shape(resolve_model(f"custom,{CUSTOM}")) == want
    assert _shape(resolve_model(str(folder / "config.json"))) == want
    assert _shape(resolve_model(str(folder))) == want
    assert resolve_model(str(folder)).name == "tiny"
    # a preset with overrides equals the preset with the field replaced
    assert resolve_model("llm:llama3-8b,layers=4").params() < load_model("llama3-8b").params()
    assert resolve_model("llama3-8b,layers=4") == load_model("llama3-8b", layers=4)
    assert resolve_model(f"{folder},layers=3").layers == 3
    # the workload string's llm graph is built from the same model
    g1 = parse_workload(f"llm:custom,{CUSTOM},phase=decode,batch=2")
    g2 = parse_workload(f"{folder},phase=decode,batch=2")
    assert g1.flops == g2.flops > 0


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("llama3-8b,phase=decode", "`model.phase` describes a run"),
        ("net.onnx", "is an operator graph"),
        ("lama3-8b", "did you mean llama3-8b"),
        ("llm:llama3-8b,layer=4", "`model.layer` is not a model field (did you mean layers"),
        ("llm:custom,layers=2", "custom model needs"),
    ],
)
def test_resolver_errors_name_the_field(spec, words):
    with pytest.raises(WorkloadError, match=None) as err:
        resolve_model(spec)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_folder_without_config(tmp_path):
    with pytest.raises(WorkloadError, match="has no config.json"):
        resolve_model(str(tmp_path))


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--chip", "h100", "--chips", "8", "--tp", "1", "--pp", "1"],
        ["serve", "--chip", "h100", "--chips", "1", "--tp", "1", "--pp", "1", "--concurrency", "4"],
    ],
)
def test_train_and_serve_take_custom_and_config(folder, args):
    names = []
    for model in (f"llm:custom,{CUSTOM}", str(folder / "config.json"), str(folder)):
        r = CliRunner().invoke(app, [*args, "--model", model, "--json"])
        assert r.exit_code == 0, r.output
        d = json.loads(r.output)
        names.append((d["model"], d["chip"]))
    assert names == [("tiny", "h100")] * 3
