"""Workload strings from the command line.

llama3-70b                                   a model preset: prefill of one sequence
llm:llama3-70b,phase=decode,batch=64,context=4096
llm:custom,layers=96,hidden=12288,heads=96,kv_heads=96,ffn=49152,vocab=51200,seq=2048
gemm:m=8192,n=8192,k=8192,dtype=bf16
"""

from __future__ import annotations

from chipforge.dtypes import DTYPES
from chipforge.errors import WorkloadError
from chipforge.workload.config import MODEL_FIELDS, load_model, model_names
from chipforge.workload.graph import Graph
from chipforge.workload.llm import build
from chipforge.workload.ops import MatMul

BUILD_KEYS = {"phase", "batch", "seq", "context", "dtype", "kv_dtype", "tp", "scope"}
INT_KEYS = {"batch", "seq", "context", "tp"}
GEMM_KEYS = {"m", "n", "k", "batch", "dtype"}


def _int(key: str, value: str) -> int:
    try:
        number = int(float(value)) if "e" in value.lower() else int(value)
    except ValueError:
        raise WorkloadError(f"`workload.{key}` must be an integer, not {value!r}") from None
    if number <= 0:
        raise WorkloadError(f"`workload.{key}` must be a positive integer, not {value!r}")
    return number


def _pairs(kind: str, items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise WorkloadError(f"`workload` {kind} parameters must be key=value, not {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def _dtype(key: str, value: str) -> str:
    if value not in DTYPES:
        raise WorkloadError(f"`workload.{key}` must be one of {', '.join(DTYPES)}, not {value!r}")
    return value


def parse_gemm(items: list[str]) -> Graph:
    args = _pairs("gemm", items)
    unknown = set(args) - GEMM_KEYS
    if unknown:
        raise WorkloadError(
            f"`workload.{sorted(unknown)[0]}` is not a gemm parameter; "
            f"use {', '.join(sorted(GEMM_KEYS))}"
        )
    missing = [k for k in ("m", "n", "k") if k not in args]
    if missing:
        raise WorkloadError(f"`workload.{missing[0]}` is required: gemm:m=..,n=..,k=..")
    dims = {k: _int(k, args[k]) for k in ("m", "n", "k")}
    batch = _int("batch", args.get("batch", "1"))
    dtype = _dtype("dtype", args.get("dtype", "bf16"))
    op = MatMul(name="gemm", batch=batch, dtype=dtype, weight=False, **dims)
    label = f"gemm {dims['m']}x{dims['n']}x{dims['k']} {dtype}"
    label += f" x{batch}" if batch > 1 else ""
    return Graph(name=label, ops=(op,), resident={"operands": op.bytes})


def parse_llm(items: list[str]) -> Graph:
    if not items or "=" in items[0]:
        raise WorkloadError(
            "`workload` llm: must name a model first: llm:llama3-70b,phase=decode "
            "or llm:custom,layers=.."
        )
    name, args = items[0], _pairs("llm", items[1:])
    unknown = set(args) - BUILD_KEYS - MODEL_FIELDS
    if unknown:
        raise WorkloadError(
            f"`workload.{sorted(unknown)[0]}` is not an llm parameter; use "
            f"{', '.join(sorted(BUILD_KEYS))} or a model field"
        )
    model_args = {k: _model_value(k, v) for k, v in args.items() if k in MODEL_FIELDS}
    config = load_model(name, **model_args)
    kw: dict = {k: _int(k, v) for k, v in args.items() if k in INT_KEYS}
    for key in ("dtype", "kv_dtype"):
        if key in args:
            kw[key] = _dtype(key, args[key])
    for key in ("phase", "scope"):
        if key in args:
            kw[key] = args[key]
    if kw.get("scope", "model") not in ("model", "layer"):
        raise WorkloadError(f"`workload.scope` must be model or layer, not {kw['scope']!r}")
    return build(config, **kw)


def _model_value(key: str, value: str):
    if key in ("act", "name"):
        return value
    if key == "tied_embeddings":
        return value.lower() in ("1", "true", "yes")
    number = int(value) if value.lstrip("-").isdigit() else None
    if number is None or (number < 0 or (number == 0 and key in ("layers", "hidden", "heads"))):
        raise WorkloadError(f"`workload.{key}` must be a positive integer, not {value!r}")
    return number


def parse_workload(text: str) -> Graph:
    """A workload string (see the module docstring) as a graph."""
    text = text.strip()
    kind, sep, rest = text.partition(":")
    items = [i for i in rest.split(",") if i.strip()] if sep else []
    if sep and kind == "gemm":
        return parse_gemm(items)
    if sep and kind == "llm":
        return parse_llm(items)
    if not sep and text in model_names():
        return parse_llm([text])
    raise WorkloadError(
        f"`workload` must be a model preset, llm:..., or gemm:..., not {text!r}; "
        f"models: {', '.join(model_names())}"
    )
