"""A `.pt2` archive as a runnable `torch.fx.GraphModule`, built without unpickling anything.

`torch.export.load` unpickles a file's weights and constants (and its sample inputs), and runs
the program's `guards_code` as Python: a model file from someone else could run any code. The
functional run (`simulate --functional`) builds its module from parts it checks instead:
- the graph from the archive's JSON (`pt2_archive`): every node's target must be an aten
  operator with a chipforge rule (`torch.ops.aten.<op>.<overload>`) or arithmetic on sizes
  (`_operator.add`, ...); its arguments are tensors of the graph or plain literals; names are
  Python identifiers;
- the weights and constants from the archive's raw tensor files, described by their JSON config
  (dtype, sizes, strides, offset), bounds checked against the file's length.
Pickled weights or constants, the legacy layouts, custom and opaque objects are refused with a
one-line error naming `--trust-pickle`; with `trust_pickle`, pickled tensors are read by
`torch.load` (which can run any code the file holds). The graph is always read from JSON.
"""

from __future__ import annotations

import io
import keyword
import math
import operator
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chipforge.errors import WorkloadError
from chipforge.workload import pt2_archive as pa
from chipforge.workload.imported import require

# serialized arithmetic on sizes (sym ints) the module may call
OPERATORS = {
    "add",
    "sub",
    "mul",
    "floordiv",
    "truediv",
    "mod",
    "neg",
    "pow",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
}
_TARGET = re.compile(r"^torch\.ops\.aten\.(_?[a-z][a-z0-9_]*|__[a-z]+__)\.([A-Za-z][A-Za-z0-9_]*)$")


def _grouped_mm():
    from chipforge.sim.torch_run import grouped_mm

    return grouped_mm


# custom ops (torch.ops.<library>.<op>) chipforge runs with its own code, never the library's
CUSTOM = {"torch.ops.transformers.grouped_mm_fallback.default": _grouped_mm}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# torch/_export/serde/schema.py Layout and MemoryFormat
LAYOUTS = {7: "strided"}
MEMORY_FORMATS = {
    1: "contiguous_format",
    2: "channels_last",
    3: "channels_last_3d",
    4: "preserve_format",
}
POSITIONAL, KEYWORD = 1, 2  # schema.ArgumentKind


@dataclass
class Loaded:
    """A checked archive: its module (user inputs in, user outputs out) and input metas."""

    module: Any  # torch.fx.GraphModule
    inputs: list[tuple[str, tuple[int, ...], Any]]  # (name, shape, torch dtype)
    vocab: dict[str, int] = field(default_factory=dict)  # index input -> its table's rows


def index_ranges(program) -> dict[str, int]:
    """User inputs that index an embedding table (through layout ops): input -> table rows,
    so a functional run feeds them ids in [0, rows)."""
    made = {out: node for node in program.nodes for out in node.outputs}
    ranges: dict[str, int] = {}
    for node in program.nodes:
        if node.kind != "embedding" or len(node.inputs) < 2:
            continue
        vid, table = node.inputs[1], program.values.get(node.inputs[0])
        while vid in made and made[vid].kind == "layout" and made[vid].inputs:
            vid = made[vid].inputs[0]
        if table is not None and table.shape and vid in program.values and vid not in made:
            ranges[vid] = min(ranges.get(vid, table.shape[0]), table.shape[0])
    return ranges


def load(path: Path, dims: dict[str, int], *, trust_pickle: bool = False) -> Loaded:
    """The archive at `path` as a runnable module, dynamic dimensions bound with `dims`.
    Everything is checked before torch is imported."""
    source = path.name
    with pa.open_zip(path) as z:
        archive = pa.read_open(z, path)
        program = pa.imported(archive, dims)
        missing = sorted({n.source for n in program.nodes if n.kind == "unsupported"})
        if missing:
            raise pa.unreadable(source, f"ops without a chipforge rule ({', '.join(missing)})")
        try:
            configs = _configs(z, archive, trust_pickle)
            torch = require("torch", "a torch.export program")
            tensors = _tensors(torch, z, archive, configs, trust_pickle)
            module = _module(torch, archive, tensors)
        except pa.Surprise as e:
            raise pa.unreadable(source, str(e)) from None
        except (*pa.MALFORMED, RuntimeError, SyntaxError) as e:
            raise pa.unreadable(source, f"a malformed archive ({pa._why(e)})") from None
    inputs = []
    for name in archive.user_inputs():
        dtype = pa.SCALAR_TYPES[archive.graph["tensor_values"][name]["dtype"]][0]
        inputs.append((name, program.values[name].shape, getattr(torch, dtype)))
    return Loaded(module, inputs, index_ranges(program))


def _configs(z: zipfile.ZipFile, archive: pa.Archive, trust: bool) -> list[tuple[str, dict]]:
    """The weights' and constants' configs; a pickled entry is refused unless `trust`."""
    configs = [
        ("weights", archive.payload_config(z, "weights")),
        ("constants", archive.payload_config(z, "constants")),
    ]
    for kind, config in configs:
        for fqn, meta in config.items():
            if (meta.get("use_pickle") or meta.get("tensor_meta") is None) and not trust:
                raise WorkloadError(
                    f"`workload` {archive.path.name}: {kind} entry {fqn[:80]!r} is pickled "
                    f"({meta.get('path_name')!s:.40}); chipforge does not unpickle model files: "
                    f"re-save it with torch.export.save from plain tensors, or {pa.TRUST_HINT}"
                )
    return configs


def _tensors(
    torch, z: zipfile.ZipFile, archive: pa.Archive, configs: list, trust: bool
) -> dict[str, Any]:
    """The graph inputs that are not user inputs, by graph input name, from the raw files."""
    source = archive.path.name
    wanted = {}
    for kind, name, spec in archive.input_specs():
        if kind == "parameter":
            wanted[name] = spec["parameter_name"]
        elif kind == "buffer":
            wanted[name] = spec["buffer_name"]
        elif kind == "tensor_constant":
            wanted[name] = spec["tensor_constant_name"]
    files: dict[str, Any] = {}  # one flat tensor a raw file (weights share files)
    out = {}
    for kind, config in configs:
        for fqn in wanted.values():
            if fqn not in out and fqn in config:
                out[fqn] = _tensor(torch, z, archive, kind, fqn, config[fqn], files, trust)
    for graph_name, fqn in wanted.items():
        if fqn not in out:
            raise pa.unreadable(source, f"no weight {fqn[:80]!r} for input {graph_name[:80]!r}")
        meta = archive.graph["tensor_values"][graph_name]
        dtype = pa.SCALAR_TYPES.get(meta["dtype"], ("?",))[0]
        shape = [s.get("as_int") for s in meta["sizes"]]
        if list(out[fqn].shape) != shape or str(out[fqn].dtype) != f"torch.{dtype}":
            raise WorkloadError(
                f"`workload` {source}: weight {fqn[:80]!r} is {str(out[fqn].dtype)[6:]} "
                f"{list(out[fqn].shape)} but the graph uses it as {dtype} {shape}"
            )
    return {graph_name: out[fqn] for graph_name, fqn in wanted.items()}


def _tensor(torch, z, archive, kind: str, fqn: str, meta: dict, files: dict, trust: bool):
    source = archive.path.name
    path = meta.get("path_name")
    where = f"{kind} entry {fqn[:80]!r}"
    if not isinstance(path, str) or not re.fullmatch(r"[A-Za-z0-9_.]+", path):
        raise pa.unreadable(source, f"{where}: a file name {str(path)[:40]!r}")
    member = f"{archive.prefix}data/{kind}/{path}"
    if member not in z.NameToInfo:
        raise pa.not_an_archive(source, f"{where}: no {member[:80]}")
    info = z.getinfo(member)
    if meta.get("use_pickle") or meta.get("tensor_meta") is None:
        if not trust:  # `_configs` refused it already; the unpickling line checks it again
            raise WorkloadError(f"`workload` {source}: {where} is pickled; {pa.TRUST_HINT}")
        data = pa.read_member(z, info, source, info.file_size)
        try:
            value = torch.load(io.BytesIO(data), weights_only=False)
        except Exception as e:  # a damaged pickle: torch raises many types
            raise pa.not_an_archive(source, f"{type(e).__name__} in {member[:80]!r}") from None
        if not isinstance(value, torch.Tensor):
            raise pa.unreadable(source, f"{where}: a {type(value).__name__}, not a tensor")
        return value
    tmeta = meta["tensor_meta"]
    try:
        pa._known(tmeta, "tensor")
        if tmeta.get("layout", 7) not in LAYOUTS:
            raise pa.Surprise(f"layout {tmeta.get('layout')}")
        name, itemsize = pa.SCALAR_TYPES[tmeta["dtype"]]
        sizes = [_int(s) for s in tmeta["sizes"]]
        strides = [_int(s) for s in tmeta["strides"]]
        offset = _int(tmeta["storage_offset"])
    except (pa.Surprise, KeyError, TypeError) as e:
        raise pa.unreadable(source, f"{where}: a tensor meta {pa._why(e)}") from None
    if len(sizes) != len(strides):
        raise pa.unreadable(source, f"{where}: {len(sizes)} sizes but {len(strides)} strides")
    if path not in files:
        data = pa.read_member(z, info, source, info.file_size)
        if len(data) % itemsize:
            raise pa.unreadable(source, f"{where}: {len(data)} bytes is not a whole {name}")
        flat = torch.frombuffer(bytearray(data), dtype=getattr(torch, name)) if data else None
        files[path] = (flat, len(data) // itemsize, name)
    flat, numel, stored = files[path]
    if stored != name:
        raise pa.unreadable(source, f"{where}: {name} over a file of {stored}")
    need = (
        0
        if 0 in sizes
        else offset + sum((s - 1) * t for s, t in zip(sizes, strides, strict=True)) + 1
    )
    if need > numel:
        raise WorkloadError(
            f"`workload` {source}: {where} needs {need} elements, its file {path} holds {numel}"
        )
    if flat is None or need == 0:
        return torch.zeros(sizes, dtype=getattr(torch, name))
    return torch.as_strided(flat, sizes, strides, offset)


def _int(size: Any) -> int:
    if not isinstance(size, dict) or set(size) != {"as_int"} or type(size["as_int"]) is not int:
        raise pa.Surprise(f"a size {str(size)[:40]}")
    if not 0 <= size["as_int"] <= pa.MAX_DIM:
        raise pa.Surprise(f"a size {size['as_int']}")
    return size["as_int"]


def _ident(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or keyword.iskeyword(name):
        raise pa.Surprise(f"a value name {str(name)[:40]!r}")
    return name


def _module(torch, archive: pa.Archive, tensors: dict[str, Any]):
    """The FX module of the archive's graph (checked node by node), weights as buffers."""
    root = torch.nn.Module()
    graph = torch.fx.Graph()
    env: dict[str, Any] = {}
    user = set(archive.user_inputs())
    for i, entry in enumerate(archive.graph["inputs"]):
        name = _ident(entry["as_tensor"]["name"])
        if name in user:
            env[name] = graph.placeholder(name)
        else:
            attr = f"_weight{i}"
            root.register_buffer(attr, tensors[name], persistent=False)
            env[name] = graph.create_node("get_attr", attr, name=name)
    for index, n in enumerate(archive.graph["nodes"]):
        _node(torch, graph, env, n, index)
    outs = [_literal(torch, env, arg) for arg in archive.user_outputs()]
    graph.output(outs[0] if len(outs) == 1 else tuple(outs))
    graph.lint()
    return torch.fx.GraphModule(root, graph)


def _node(torch, graph, env: dict, n: dict, index: int) -> None:
    target, outputs = n["target"], n["outputs"]
    values = [(i["name"], _literal(torch, env, i["arg"]), i.get("kind")) for i in n["inputs"]]
    if target.startswith("_operator."):
        fn = target.removeprefix("_operator.")
        if fn not in OPERATORS:
            raise pa.Surprise(f"target {target[:60]}")
        name = n.get("name") or next(iter(outputs[0].values()))["as_name"]
        env[name] = graph.call_function(
            getattr(operator, fn), tuple(v for _, v, _ in values), {}, name=_ident(name)
        )
        return
    if target in CUSTOM:  # another library's op: chipforge's own implementation of it
        fn = CUSTOM[target]()
        name = _ident(next(iter(outputs[0].values()))["name"])
        env[name] = graph.call_function(fn, tuple(v for _, v, _ in values), {}, name=name)
        return
    match = _TARGET.match(target)
    packet = match and getattr(torch.ops.aten, match.group(1), None)
    op = packet is not None and getattr(packet, match.group(2), None)
    if not isinstance(op, torch._ops.OpOverload):
        raise pa.Surprise(f"target {target[:60]}")
    args, kwargs = _split(op, values)
    if len(outputs) == 1 and "as_tensors" not in outputs[0]:
        out = outputs[0]
        if "as_tensor" in out:
            name = out["as_tensor"]["name"]
        elif "as_none" in out:
            name = n.get("name") or f"{match.group(1)}__{index}"
        else:  # a SymInt/SymBool result
            name = next(iter(out.values()))["as_name"]
        env[name] = graph.call_function(op, args, kwargs, name=_ident(name))
        return
    items = outputs[0]["as_tensors"] if len(outputs) == 1 else outputs
    parent = _ident(n.get("name") or f"{match.group(1)}__{index}")
    node = env[parent] = graph.call_function(op, args, kwargs, name=parent)
    for i, item in enumerate(items):
        item = {"as_tensor": item} if "name" in item else item
        if "as_tensor" in item:
            name = _ident(item["as_tensor"]["name"])
            env[name] = graph.call_function(operator.getitem, (node, i), {}, name=name)
        elif "as_none" not in item:
            raise pa.Surprise(f"nested outputs of {target[:60]}")


def _split(op, values: list) -> tuple[tuple, dict]:
    """Positional and keyword arguments by the op's schema (as torch's deserializer does)."""
    given = {name: (v, kind) for name, v, kind in values}
    names = {a.name for a in op._schema.arguments}
    unknown = set(given) - names
    if unknown:
        raise pa.Surprise(f"argument {sorted(unknown)[0][:40]!r} of {op}")
    args, kwargs = [], {}
    for a in op._schema.arguments:
        if a.name in given:
            v, kind = given[a.name]
            if kind == POSITIONAL and not kwargs:
                args.append(v)
            elif kind == KEYWORD or (a.has_default_value() or a.kwarg_only):
                kwargs[a.name] = v
            else:
                args.append(v)
        elif not (a.has_default_value() or a.kwarg_only):
            raise pa.Surprise(f"{op} without its argument {a.name!r}")
    return tuple(args), kwargs


def _literal(torch, env: dict, arg: dict) -> Any:
    """A serialized argument as a runtime value: graph values are FX nodes."""
    value = pa._arg(arg)
    ((kind, raw),) = arg.items()
    if kind == "as_scalar_type":
        return getattr(torch, pa.SCALAR_TYPES[raw][0])
    if kind == "as_layout":
        return getattr(torch, LAYOUTS[raw])
    if kind == "as_memory_format":
        return getattr(torch, MEMORY_FORMATS[raw])
    if kind == "as_device":
        return torch.device("cpu")  # the functional run is on the CPU
    if kind in ("as_float", "as_floats"):
        floats = [_float(x) for x in (raw if kind == "as_floats" else [raw])]
        return floats if kind == "as_floats" else floats[0]
    if kind in ("as_string", "as_strings"):
        strings = raw if kind == "as_strings" else [raw]
        if not all(isinstance(s, str) and len(s) <= 64 for s in strings):
            raise pa.Surprise("a string argument")
    return _resolve(env, value)


def _float(x: Any) -> float:
    if isinstance(x, str) and x in ("Infinity", "-Infinity", "NaN"):
        return float(x.lower().replace("infinity", "inf"))
    if type(x) not in (int, float) or (isinstance(x, float) and not math.isfinite(x)):
        raise pa.Surprise(f"a float {str(x)[:20]}")
    return float(x)


def _resolve(env: dict, value: Any) -> Any:
    if isinstance(value, pa.Ref):
        if value.name not in env:
            raise pa.Surprise(f"a use of {value.name[:40]!r} before it is defined")
        return env[value.name]
    if isinstance(value, list):
        return [_resolve(env, v) for v in value]
    if value is None or type(value) in (int, float, bool, str):
        return value
    raise pa.Surprise(f"an argument {str(value)[:40]}")
