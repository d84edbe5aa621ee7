"""One model vocabulary: the transformer a command or the Python API names, resolved in one place.

    llama3-70b                                  a shipped preset (`chipforge presets`)
    llama3-70b,layers=40                        a preset with fields overridden
    llm:llama3-70b,layers=40                    the same, as a workload string writes it
    llm:custom,layers=32,hidden=4096,heads=32,ffn=11008,vocab=32000
    path/to/config.json[,field=value...]        a HuggingFace config (Llama, Mistral, Mixtral,
    path/to/model-folder[,field=value...]       Qwen2/3, Qwen2/3-MoE, Phi-3, Gemma 2/3, GPT-NeoX,
                                                GPT-2, DeepSeek-V3, GPT-OSS, GLM-4.5), or its
                                                folder

`resolve_model` is used by `train`, `serve`, `datacenter`, sweeps and `chipforge.load_model`;
workload strings (`evaluate`, `compare`, `simulate`) resolve the model part of `llm:...` and
`config.json` the same way (`split_model`) and keep the run keys (phase, batch, ...) for the
graph builder. Model files (`.onnx`, `.pt2`) are op-level graphs, not transformer shapes: only
commands that cost a graph take them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from chipforge.errors import WorkloadError, did_you_mean
from chipforge.workload.config import (
    BOOL_FIELDS,
    MODEL_FIELDS,
    ModelConfig,
    load_model,
    model_names,
)
from chipforge.workload.hf import load_hf_config

# keys of a workload string that describe the run (the graph), not the model
RUN_KEYS = frozenset(
    {"phase", "batch", "seq", "context", "dtype", "kv_dtype", "tp", "scope", "logits", "images"}
)
GRAPH_FILES = (".onnx", ".pt2")


# Sizes above 2**53 are not exact as floats, and the engine's figures are floats.
MAX_INT = 2**53


def integer(value: str, field: str) -> int:
    """`value` as an integer: digits, or an exact float form such as 8e3; never rounded (2.7e0
    is an error, not 2), never a non-ASCII digit or an infinity."""
    text = value.strip()
    if text.isascii() and text.lstrip("+-").isdigit():
        number = int(text)
    else:
        try:
            real = float(text) if text.isascii() else math.nan
        except ValueError:
            real = math.nan
        if not math.isfinite(real) or real != int(real):
            raise WorkloadError(f"`{field}` must be an integer, not {value!r}")
        number = int(real)
    if abs(number) > MAX_INT:
        raise WorkloadError(f"`{field}` must be at most 2**53, not {value!r}")
    return number


def model_value(key: str, value: str, where: str = "model"):
    """A model field's value from its text: names as given, booleans, integers (ModelConfig
    checks each field's range)."""
    if key in ("act", "name"):
        return value
    if key in BOOL_FIELDS:
        if value.lower() not in ("1", "true", "yes", "0", "false", "no"):
            raise WorkloadError(f"`{where}.{key}` must be true or false, not {value!r}")
        return value.lower() in ("1", "true", "yes")
    number = integer(value, f"{where}.{key}")
    if number < 0:
        raise WorkloadError(f"`{where}.{key}` must be a non-negative integer, not {value!r}")
    return number


def pairs(items: list[str], where: str = "model", label: str | None = None) -> dict[str, str]:
    """`key=value` items as a dict (one-line error naming the bad item; a key given twice is
    an error, not the last one silently winning)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key or not value:
            raise WorkloadError(
                f"{label or f'`{where}` parameters'} must be key=value, not {item!r}"
            )
        if key in out:
            raise WorkloadError(
                f"`{where}.{key}` is given twice ({out[key]!r} and {value!r}); give it once"
            )
        out[key] = value
    return out


def whole_path(text: str) -> bool:
    """`text`, commas and all, names an existing file or folder (`my,model/config.json`): it
    is a path with no `,key=value` options, not a path cut at its first comma."""
    try:
        return "," in text and Path(text).exists()
    except (OSError, ValueError):  # a name too long, a NUL
        return False


def is_config_path(head: str) -> bool:
    """A HuggingFace config.json path, or a folder (not a preset's name) holding one."""
    if head == "custom" or head in model_names():
        return False
    try:
        return head.lower().endswith(".json") or Path(head).is_dir()
    except OSError:  # a name too long to be a path, ...: not a folder
        return False


def _config_file(head: str, where: str) -> Path:
    path = Path(head)
    try:
        is_dir = path.is_dir()
    except OSError as e:  # a name too long, a folder without permission
        raise WorkloadError(f"`{where}` {head[:80]!r} cannot be read: {e.strerror}") from None
    if is_dir:
        path = path / "config.json"
        if not path.is_file():
            raise WorkloadError(
                f"`{where}` folder {head!r} has no config.json; give a HuggingFace config.json "
                "or a folder that holds one"
            )
    return path


def config_file(spec: str) -> Path | None:
    """The config.json a model string names (`path.json`, `folder`, `llm:` and `,key=value`
    allowed), or None for a preset, `custom` or a graph file."""
    text = str(spec).strip().removeprefix("llm:")
    head = text if whole_path(text) else text.split(",")[0].strip()
    if not is_config_path(head):
        return None
    return Path(head) / "config.json" if Path(head).is_dir() else Path(head)


def split_model(
    head: str, args: dict[str, str], where: str = "model"
) -> tuple[ModelConfig, dict[str, str]]:
    """The model `head` names (preset, `custom`, config.json or folder) with the model fields of
    `args` applied, and the remaining (run) keys. Unknown keys are an error naming them."""
    unknown = set(args) - RUN_KEYS - MODEL_FIELDS
    if unknown:
        key = sorted(unknown)[0]
        hint = did_you_mean(key, MODEL_FIELDS | RUN_KEYS)
        if where == "workload":
            raise WorkloadError(
                f"`workload.{key}` is not an llm parameter{hint}; use "
                f"{', '.join(sorted(RUN_KEYS))} or a model field"
            )
        raise WorkloadError(
            f"`{where}.{key}` is not a model field{hint}; "
            f"model fields: {', '.join(sorted(MODEL_FIELDS))}"
        )
    fields = {k: model_value(k, v, where) for k, v in args.items() if k in MODEL_FIELDS}
    rest = {k: v for k, v in args.items() if k in RUN_KEYS}
    if is_config_path(head):
        config = load_hf_config(_config_file(head, where), where, fields)
        return (replace(config, **fields) if fields else config), rest
    if head.lower().endswith(GRAPH_FILES):
        raise WorkloadError(
            f"`{where}` {head!r} is an operator graph, not a transformer description; give a "
            "preset, llm:<preset>,key=value, llm:custom,... or a HuggingFace config.json "
            "(evaluate, compare and simulate take .onnx and .pt2 files)"
        )
    if head != "custom" and head not in model_names():
        raise WorkloadError(
            f"`{where}` must be a preset, llm:<preset>,key=value, llm:custom,... or a "
            f"config.json or model folder, not {head!r}{did_you_mean(head, model_names())}; "
            "`chipforge presets` lists the presets"
        )
    return load_model(head, **fields), rest


def resolve_model(spec: str | Path | ModelConfig, *, where: str = "model") -> ModelConfig:
    """The transformer `spec` names: a `ModelConfig` (returned as is), a preset, a preset with
    field overrides (`llama3-70b,layers=40`, with or without the `llm:` prefix), `llm:custom,...`
    with every required field, or a HuggingFace config.json / model folder (`,field=value`
    overrides allowed). Run keys (phase, batch, ...) are refused: they describe a workload.

    >>> resolve_model("llm:llama3-8b,layers=4").layers
    4
    >>> resolve_model("llm:custom,layers=2,hidden=256,heads=4,ffn=1024,vocab=1000").params()
    2609152
    """
    if isinstance(spec, ModelConfig):
        return spec
    text = str(spec).strip()
    text = text.removeprefix("llm:")
    head, *items = [text] if whole_path(text) else [i.strip() for i in text.split(",")]
    args = pairs([i for i in items if i], where)
    config, rest = split_model(head, args, where)
    run = sorted(set(rest) - MODEL_FIELDS)
    if run:
        raise WorkloadError(
            f"`{where}.{run[0]}` describes a run, not a model; this command sets it with its own "
            "flags (e.g. --seq, --dtype, --isl)"
        )
    return config  # `seq` is a model field too (the context length), applied above
