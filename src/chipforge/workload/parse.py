"""Workload strings from the command line.

llama3-70b                                   a model preset: prefill of one sequence
llm:llama3-70b,phase=decode,batch=64,context=4096
llm:custom,layers=96,hidden=12288,heads=96,kv_heads=96,ffn=49152,vocab=51200,seq=2048
gemm:m=8192,n=8192,k=8192,dtype=bf16
llama3-70b,phase=decode,batch=8              a preset with llm parameters (llm: optional)
path/to/config.json[,phase=decode,...]       a HuggingFace config, as llm: (any llm parameter)
path/to/model-folder[,phase=decode,...]      a folder holding a config.json
model.onnx[,dtype=bf16][,batch=1,seq=128]    an ONNX model; other keys bind dynamic dimensions
program.pt2[,dtype=bf16][,x.0=8]             a torch.export program; keys bind dynamic dims
zoo:resnet50[,batch=8,image=224,dtype=bf16]  a zoo model through torch.export (seq= for text)
"""

from __future__ import annotations

from dataclasses import replace
from os import PathLike

from chipforge.dtypes import DTYPES
from chipforge.errors import WorkloadError, did_you_mean
from chipforge.workload.config import model_names
from chipforge.workload.graph import Graph
from chipforge.workload.llm import build
from chipforge.workload.ops import MatMul
from chipforge.workload.resolve import integer, is_config_path, pairs, split_model, whole_path

INT_KEYS = {"batch", "seq", "context", "tp"}
GEMM_KEYS = {"m", "n", "k", "batch", "dtype"}
ZOO_KEYS = {"batch", "seq", "image", "dtype"}
FILE_SUFFIXES = (".onnx", ".pt2", ".json")


def _int(key: str, value: str) -> int:
    number = integer(value, f"workload.{key}")
    if number <= 0:
        raise WorkloadError(f"`workload.{key}` must be a positive integer, not {value!r}")
    return number


def _pairs(kind: str, items: list[str]) -> dict[str, str]:
    return pairs(items, "workload", f"`workload` {kind} parameters")


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
    return _build_llm(items[0].strip(), _pairs("llm", items[1:]))


def _build_llm(head: str, args: dict[str, str]) -> Graph:
    """The model `head` names (`resolve.split_model`: one model vocabulary) with the model-field
    overrides in `args`, built as the run keys of `args` say."""
    config, run = split_model(head, args, "workload")
    kw: dict = {k: _int(k, v) for k, v in run.items() if k in INT_KEYS}
    for key in ("dtype", "kv_dtype"):
        if key in run:
            kw[key] = _dtype(key, run[key])
    for key in ("phase", "scope", "logits"):
        if key in run:
            kw[key] = run[key]
    if kw.get("scope", "model") not in ("model", "layer"):
        raise WorkloadError(f"`workload.scope` must be model or layer, not {kw['scope']!r}")
    images = _int("images", run["images"]) if "images" in run else 0
    graph = build(config, **kw)
    if is_config_path(head):
        graph = with_checkpoint(graph, head, config, images, kw.get("dtype", "bf16"))
    elif images:
        raise WorkloadError(
            "`workload.images` is for an image-text model's config.json (Gemma 3); drop it"
        )
    return graph


CHECKPOINT_TOLERANCE = 0.10


def with_images(graph: Graph, path, data: dict, images: int, dtype: str) -> Graph:
    """`graph` (an image-text model's decoder, prefill) with its vision tower and projector on
    `images` images a sequence (`hf_traced.image_tower`); their tokens are part of `seq`."""
    from chipforge.workload.hf_traced import IMAGE_TEXT, image_tower

    meta = graph.meta
    if data.get("model_type") not in IMAGE_TEXT:  # Llama 4: its decoder only
        raise WorkloadError(
            f"`workload.images` costs the vision tower of {', '.join(IMAGE_TEXT)} configs; a "
            f"{data.get('model_type')} config's is not costed; drop it"
        )
    per = data.get("mm_tokens_per_image")
    if meta.get("phase") != "prefill":
        raise WorkloadError(
            "`workload.images` is for phase=prefill (images are encoded once, with the prompt)"
        )
    if isinstance(per, int) and images * per > int(meta["seq"]):
        raise WorkloadError(
            f"`workload.seq` ({meta['seq']}) must hold the images' {images * per} tokens "
            f"({per} an image); raise seq or lower images"
        )
    batch = int(meta["batch"])
    tower = image_tower(path, data, images * batch, dtype)
    weights = graph.resident.get("weights", 0) + tower.resident.get("weights", 0)
    extra = {key: meta[key] + tower.meta["params"] for key in ("params", "active_params")}
    extra["images"] = images
    return replace(
        graph,
        name=f"{graph.name} + {images} image{'s' if images > 1 else ''}",
        ops=graph.ops + tower.ops,
        resident=dict(graph.resident) | {"weights": weights},
        meta=dict(meta) | extra,
    )


def with_checkpoint(graph: Graph, head: str, config, images: int = 0, dtype: str = "bf16") -> Graph:
    """`graph` with what the folder's safetensors headers hold (`meta.checkpoint`: elements by
    dtype) and a warning when their count is more than CHECKPOINT_TOLERANCE off the config's
    (`ModelConfig.params` counts the matrices and embeddings, not norms, biases or a learned
    position table: under 1 % of a real model, 5 % of a 64-wide toy; a config that is not the
    weights' — other layers, widths or experts — is off by far more)."""
    from pathlib import Path

    from chipforge.workload.checkpoint import read_folder
    from chipforge.workload.hf import image_text, multimodal_note

    folder = Path(head) if Path(head).is_dir() else Path(head).parent
    path = folder / "config.json" if Path(head).is_dir() else Path(head)
    data = image_text(path)
    if images and data is None:
        raise WorkloadError(
            "`workload.images` is for an image-text model's config.json (Gemma 3: a "
            "vision_config beside the decoder's); this one has no vision tower; drop it"
        )
    note = data is not None  # a vision tower: the checkpoint holds more than the decoder
    if images:
        graph = with_images(graph, path, data, images, dtype)
    elif data is not None:
        warned = [*graph.meta.get("warnings", ()), multimodal_note(data)]
        graph = replace(graph, meta=dict(graph.meta) | {"warnings": warned})
    ck = read_folder(folder)
    if ck is None:
        return graph
    meta = dict(graph.meta) | {"checkpoint": ck.to_dict()}
    want = config.params()
    if want and not note and abs(ck.params - want) > CHECKPOINT_TOLERANCE * want:
        meta["warnings"] = [
            *meta.get("warnings", ()),
            f"the checkpoint's safetensors hold {ck.params:,} parameters, the config.json "
            f"describes {want:,} ({ck.params / want - 1:+.1%}): is the config the weights'?",
        ]
    return replace(graph, meta=meta)


def _traced(head: str, args: dict[str, str]) -> Graph | None:
    """An encoder, encoder-decoder, vision or audio config (BERT, T5, ViT, Whisper, CLIP):
    the graph of transformers' model built from it (`hf_traced`); None for a decoder LLM."""
    from pathlib import Path

    from chipforge.workload.hf import _read
    from chipforge.workload.hf_traced import build_traced, traced_type

    path = Path(head)
    try:
        path = path / "config.json" if path.is_dir() else path
        if not path.is_file():
            return None  # split_model says what is missing
    except OSError:  # a name too long for the file system, ...: split_model says so
        return None
    data = _read(path)
    if traced_type(data) is None:
        return None
    graph = build_traced(path, data, args, _int, _dtype)
    ck = with_checkpoint_count(path.parent, graph.meta.get("params"))
    return replace(graph, meta=dict(graph.meta) | ck) if ck else graph


def with_checkpoint_count(folder, params) -> dict:
    """{'checkpoint': ...} of a folder's safetensors headers (and a warning when they are more
    than CHECKPOINT_TOLERANCE off `params`, the built model's count), or {}."""
    from chipforge.workload.checkpoint import read_folder

    ck = read_folder(folder)
    if ck is None:
        return {}
    out: dict = {"checkpoint": ck.to_dict()}
    if params and abs(ck.params - params) > CHECKPOINT_TOLERANCE * params:
        out["warnings"] = [
            f"the checkpoint's safetensors hold {ck.params:,} parameters, the config.json "
            f"describes {params:,} ({ck.params / params - 1:+.1%}): is the config the weights'?"
        ]
    return out


def parse_file(
    path: str, items: list[str], *, allow_unsupported: bool = False, trust_pickle: bool = False
) -> Graph:
    """A HuggingFace config.json, an ONNX model or a torch.export .pt2 program."""
    args = _pairs("file", items)
    if is_config_path(path):
        traced = _traced(path, args)
        return traced if traced is not None else _build_llm(path, args)
    dtype = _dtype("dtype", args.pop("dtype")) if "dtype" in args else None
    dims = {k: _int(k, v) for k, v in args.items()}
    kw = {"dims": dims, "dtype": dtype, "allow_unsupported": allow_unsupported}
    if path.lower().endswith(".onnx"):
        from chipforge.workload.onnx_import import from_onnx

        return from_onnx(path, **kw)
    from chipforge.workload.torch_import import load_pt2

    return load_pt2(path, **kw, trust_pickle=trust_pickle)


def parse_zoo(items: list[str]) -> Graph:
    from chipforge.workload.zoo import build_zoo, zoo_names

    if not items or "=" in items[0]:
        raise WorkloadError(
            f"`workload` zoo: must name a model first: one of {', '.join(zoo_names())}"
        )
    args = _pairs("zoo", items[1:])
    unknown = set(args) - ZOO_KEYS
    if unknown:
        raise WorkloadError(
            f"`workload.{sorted(unknown)[0]}` is not a zoo parameter; use "
            f"{', '.join(sorted(ZOO_KEYS))}"
        )
    kw: dict = {k: _int(k, v) for k, v in args.items() if k != "dtype"}
    if "dtype" in args:
        kw["dtype"] = _dtype("dtype", args["dtype"])
    return build_zoo(items[0], **kw)


def parse_workload(
    text: str | PathLike, *, allow_unsupported: bool = False, trust_pickle: bool = False
) -> Graph:
    """A workload string (see the module docstring) as a graph. `allow_unsupported`: an
    imported model's ops without a cost rule become vector work instead of an error.
    `trust_pickle`: a .pt2 the archive reader does not know is read by torch.export.load,
    which unpickles it (it can run any code the file holds): only for files you trust. A path
    object is its string (the Python API takes `Path("config.json")` as the CLI takes it)."""
    if not isinstance(text, str | PathLike):
        raise WorkloadError(f"`workload` must be a string or a path, not {type(text).__name__}")
    text = str(text).strip()
    kind, sep, rest = text.partition(":")
    items = [i for i in rest.split(",") if i.strip()] if sep else []
    head, _, tail = (text, "", "") if whole_path(text) else text.partition(",")
    if kind not in ("gemm", "llm", "zoo") and (
        head.lower().endswith(FILE_SUFFIXES) or is_config_path(head.strip())
    ):
        items = [i for i in tail.split(",") if i.strip()]
        return parse_file(
            head, items, allow_unsupported=allow_unsupported, trust_pickle=trust_pickle
        )
    if sep and kind == "gemm":
        return parse_gemm(items)
    if sep and kind == "llm":
        return parse_llm(items)
    if sep and kind == "zoo":
        return parse_zoo(items)
    if kind not in ("gemm", "llm", "zoo") and head.strip() in (*model_names(), "custom"):
        return parse_llm([i for i in text.split(",") if i.strip()])
    hint = did_you_mean(head.strip().lower(), model_names())
    raise WorkloadError(
        f"`workload` must be a model preset, llm:..., gemm:..., zoo:..., or a .onnx, .pt2 or "
        f"config.json file, not {text!r}{hint}; models: {', '.join(model_names())}"
    )
