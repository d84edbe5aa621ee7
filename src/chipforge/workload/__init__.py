"""The operator-graph IR and its builders: LLMs from a config (presets or a HuggingFace
config.json), GEMMs, PyTorch (torch.export) and ONNX import, a small model zoo, workload
strings.

The model-file importers (ONNX, torch.export) load on first use: they pull in numpy, which the
analytical commands do not need."""

from importlib import import_module

from chipforge.workload.config import ModelConfig, load_model, model_names
from chipforge.workload.graph import Graph
from chipforge.workload.hf import load_hf_config
from chipforge.workload.llm import build
from chipforge.workload.ops import Attention, Collective, Conv2d, Embedding, MatMul, Op, Vector
from chipforge.workload.parse import parse_workload
from chipforge.workload.resolve import resolve_model
from chipforge.workload.zoo import build_zoo, zoo_names

__all__ = [
    "Attention",
    "Collective",
    "Conv2d",
    "Embedding",
    "Graph",
    "MatMul",
    "ModelConfig",
    "Op",
    "Vector",
    "build",
    "build_zoo",
    "from_exported",
    "from_onnx",
    "from_torch",
    "load_hf_config",
    "load_model",
    "load_pt2",
    "model_names",
    "parse_workload",
    "resolve_model",
    "zoo_names",
]

_LAZY = {
    "from_onnx": "chipforge.workload.onnx_import",
    "from_exported": "chipforge.workload.torch_import",
    "from_torch": "chipforge.workload.torch_import",
    "load_pt2": "chipforge.workload.torch_import",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'chipforge.workload' has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
