"""The operator-graph IR and its builders: LLMs from a config (presets or a HuggingFace
config.json), GEMMs, PyTorch (torch.export) and ONNX import, a small model zoo, workload
strings."""

from chipforge.workload.config import ModelConfig, load_model, model_names
from chipforge.workload.graph import Graph
from chipforge.workload.hf import load_hf_config
from chipforge.workload.llm import build
from chipforge.workload.onnx_import import from_onnx
from chipforge.workload.ops import Attention, Collective, Conv2d, Embedding, MatMul, Op, Vector
from chipforge.workload.parse import parse_workload
from chipforge.workload.resolve import resolve_model
from chipforge.workload.torch_import import from_exported, from_torch, load_pt2
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
