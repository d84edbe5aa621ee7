"""The operator-graph IR and its builders (LLMs from a config, GEMMs, workload strings)."""

from chipforge.workload.config import ModelConfig, load_model, model_names
from chipforge.workload.graph import Graph
from chipforge.workload.llm import build
from chipforge.workload.ops import Attention, Collective, Conv2d, Embedding, MatMul, Op, Vector
from chipforge.workload.parse import parse_workload

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
    "load_model",
    "model_names",
    "parse_workload",
]
