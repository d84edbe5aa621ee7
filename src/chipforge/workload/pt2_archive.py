"""Reading a `.pt2` archive's serialized graph directly, without `torch.export.load`.

A `torch.export.save` archive is a zip whose `<name>/models/model.json` holds the serialized
ExportedProgram (torch/_export/serde/schema.py, schema major 8): every node's target, its
arguments by schema name, its outputs, its `nn_module_stack`, and a table of tensor metas
(dtype, sizes). That is all the importer needs; `torch.export.load` also rebuilds fake tensors,
a ShapeEnv and an FX graph and reads every weight (12 s of a 100-layer model on our 2-core
machine, against ~0.3 s here, and no `import torch`).

A model file comes from other people, so this reader trusts nothing in it:
- nothing is unpickled: the graph is JSON, the weights (`raw_tensors`, for the functional run)
  are raw bytes described by the JSON weight config. Pickled payloads (a weight config entry
  with `use_pickle`, the legacy `serialized_*.pt` / `data/weights/model.pt` layouts, opaque
  and custom objects, the pickled sample inputs) are never read unless the caller passes
  `trust_pickle`;
- sizes are checked before anything is read (`open_zip`): at most MAX_MEMBERS members, a JSON
  member at most MAX_JSON_BYTES, and no member, nor the archive as a whole, declaring more than
  MAX_RATIO times its compressed size (plus RATIO_SLACK): torch stores its members uncompressed,
  so a legitimate archive is near 1:1, a zip bomb near 1000:1. Each member is read with a bound
  (its declared size), so one whose stream runs longer than it declares is refused too;
- sizes are evaluated from their `srepr` text with an AST walk over + * // % max min (no eval);
- anything it does not know (another schema major, an unknown key, a higher-order op, a custom
  object, an argument kind) raises `Unreadable`: a one-line `WorkloadError` naming it.

`program()` builds the same `imported.Program` as `torch_import._program` over the loaded FX
graph: the same value ids (FX node names), the same getitem nodes for multi-output ops, the same
scopes; tests check both give the identical IR graph on the zoo models.
"""

from __future__ import annotations

import ast
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chipforge.errors import WorkloadError
from chipforge.userfile import note_input
from chipforge.workload.imported import Node, Program, Value, unbound_error
from chipforge.workload.torch_ops import classify

SCHEMA_MAJORS = (8,)  # torch/_export/serde/schema_check: SCHEMA_VERSION (8, x) in torch 2.6-2.13
MAX_MEMBERS = 100_000  # zip members in one archive
MAX_JSON_BYTES = 256 * 2**20  # one JSON member (the graph of a 1000-layer model is ~100 MB)
MAX_RATIO = 100  # declared / compressed size; deflate tops out near 1032:1
MAX_DIM = 2**48  # one tensor dimension
RATIO_SLACK = 2**20  # small members compress well: the ratio applies above this many bytes
TRUST_HINT = (
    "pass --trust-pickle (Python: trust_pickle=True) only if you trust the file: it lets torch "
    "unpickle it, which can run any code"
)

# torch dtype name -> chipforge format (torch_import shares it)
FORMATS = {
    "float64": "fp64",
    "float32": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "float8_e4m3fn": "fp8",
    "float8_e5m2": "fp8",
    "float8_e4m3fnuz": "fp8",
    "float8_e5m2fnuz": "fp8",
    "int8": "int8",
    "uint8": "int8",
}
# torch/_export/serde/schema.py ScalarType -> (torch dtype name, bytes per element)
SCALAR_TYPES = {
    1: ("uint8", 1),
    2: ("int8", 1),
    3: ("int16", 2),
    4: ("int32", 4),
    5: ("int64", 8),
    6: ("float16", 2),
    7: ("float32", 4),
    8: ("float64", 8),
    12: ("bool", 1),
    13: ("bfloat16", 2),
    28: ("uint16", 2),
    29: ("float8_e4m3fn", 1),
    30: ("float8_e5m2", 1),
    31: ("float8_e4m3fnuz", 1),
    32: ("float8_e5m2fnuz", 1),
    34: ("uint32", 4),
    35: ("uint64", 8),
}
# the fields of torch/_export/serde/schema.py (schema 8.x) this reader knows
KEYS = {
    "program": {
        "graph_module",
        "opset_version",
        "range_constraints",
        "schema_version",
        "verifiers",
        "torch_version",
        "guards_code",
    },
    "graph_module": {
        "graph",
        "signature",
        "module_call_graph",
        "metadata",
        "treespec_namedtuple_fields",
    },
    "graph": {
        "inputs",
        "outputs",
        "nodes",
        "tensor_values",
        "sym_int_values",
        "sym_bool_values",
        "is_single_tensor_return",
        "custom_obj_values",
        "sym_float_values",
    },
    "node": {"target", "inputs", "outputs", "metadata", "is_hop_single_tensor_return", "name"},
    "input": {"name", "arg", "kind"},
    "signature": {"input_specs", "output_specs"},
    "tensor": {
        "dtype",
        "sizes",
        "requires_grad",
        "device",
        "strides",
        "storage_offset",
        "layout",
    },
    "payload": {"path_name", "is_param", "use_pickle", "tensor_meta"},
}
INPUT_SPECS = ("user_input", "parameter", "buffer", "tensor_constant")
OUTPUT_SPECS = ("user_output", "buffer_mutation", "user_input_mutation")
_SYMBOL = re.compile(r"^Symbol\('(\w+)'")


# what malformed JSON raises when read as the schema says (turned into `Unreadable`)
MALFORMED = (
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    ValueError,
    RecursionError,
    StopIteration,
    ArithmeticError,
)


class Surprise(Exception):
    """Something in the archive this reader does not know (turned into `Unreadable`)."""


class Unreadable(WorkloadError):
    """A model file that chipforge does not read without torch's unpickling loader."""


def unreadable(source: str, what: str) -> Unreadable:
    return Unreadable(f"`workload` {source}: {what}, which chipforge does not read; {TRUST_HINT}")


def not_an_archive(source: str, why: str) -> WorkloadError:
    return WorkloadError(
        f"`workload` {source} is not a readable torch.export program ({why}); save one with "
        "torch.export.save(torch.export.export(model, inputs), path)"
    )


def _known(d: Any, kind: str) -> dict:
    if type(d) is not dict:
        raise Surprise(f"a {kind} that is not a JSON object")
    if not KEYS[kind].issuperset(d):
        raise Surprise(f"an unknown {kind} key {sorted(set(d) - KEYS[kind])[0]!r}")
    return d


def open_zip(path: Path) -> zipfile.ZipFile:
    """The archive, opened after its declared sizes are checked (see the module docstring)."""
    note_input(path, "model file")
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise not_an_archive(path.name, type(e).__name__) from None
    infos = z.infolist()
    declared = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos)
    bad = next((i for i in infos if i.file_size > MAX_RATIO * i.compress_size + RATIO_SLACK), None)
    if len(infos) > MAX_MEMBERS or bad or declared > MAX_RATIO * packed + RATIO_SLACK:
        z.close()
        what = (
            f"{len(infos)} members (at most {MAX_MEMBERS})"
            if len(infos) > MAX_MEMBERS
            else f"member {bad.filename[:80]!r} declares {bad.file_size} bytes from "
            f"{bad.compress_size}"
            if bad
            else f"its members declare {declared} bytes from {packed}"
        )
        raise WorkloadError(
            f"`workload` {path.name} is refused: {what}, more than {MAX_RATIO}:1 compression "
            "(a zip bomb?); torch.export.save writes its members uncompressed"
        )
    return z


def read_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, cap: int) -> bytes:
    """A member's bytes, read with a bound: refused when it declares more than `cap` bytes or
    its stream is not the size it declares."""
    if info.file_size > cap:
        raise WorkloadError(
            f"`workload` {source}: {info.filename[:80]!r} declares {info.file_size} bytes, more "
            f"than the {cap} chipforge reads"
        )
    try:
        with z.open(info) as f:
            data = f.read(info.file_size + 1)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        raise not_an_archive(source, f"{type(e).__name__} in {info.filename[:80]!r}") from None
    if len(data) != info.file_size:
        raise not_an_archive(source, f"{info.filename[:80]!r} is not the size it declares")
    return data


def _json(z: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> Any:
    try:
        return json.loads(read_member(z, info, source, MAX_JSON_BYTES))
    except (ValueError, RecursionError) as e:
        raise not_an_archive(source, f"{info.filename[:80]!r}: {type(e).__name__}") from None


@dataclass(frozen=True)
class Ref:
    """A graph value used as an argument (an fx.Node in the loaded program)."""

    name: str


@dataclass
class Archive:
    """The parts of the serialized program the importer reads."""

    doc: dict
    path: Path
    prefix: str  # the folder in the zip that holds models/, data/
    storage: dict[str, str] | None = None  # parameter/buffer -> its file and view (tied: same)

    @property
    def graph(self) -> dict:
        return self.doc["graph_module"]["graph"]

    def input_specs(self) -> list[tuple[str, str, dict]]:
        """(kind, graph input name, spec) for each input, in order."""
        out = []
        for spec in self.doc["graph_module"]["signature"]["input_specs"]:
            if not isinstance(spec, dict) or len(spec) != 1:
                raise Surprise(f"input spec {str(spec)[:80]}")
            ((kind, body),) = spec.items()
            if kind not in INPUT_SPECS:
                raise Surprise(f"an input of kind {kind!r}")
            arg = body["arg"]
            if kind == "user_input":
                if set(arg) != {"as_tensor"}:
                    raise Surprise("a non-tensor user input")
                arg = arg["as_tensor"]
            out.append((kind, arg["name"], body))
        return out

    def user_inputs(self) -> list[str]:
        return [name for kind, name, _ in self.input_specs() if kind == "user_input"]

    def user_outputs(self) -> list[dict]:
        """The serialized arguments the program returns to its caller."""
        out = []
        for spec in self.doc["graph_module"]["signature"]["output_specs"]:
            if not isinstance(spec, dict) or len(spec) != 1:
                raise Surprise(f"output spec {str(spec)[:80]}")
            ((kind, body),) = spec.items()
            if kind not in OUTPUT_SPECS:
                raise Surprise(f"an output of kind {kind!r}")
            if kind == "user_output":
                out.append(body["arg"])
        return out

    def free_symbols(self) -> dict[str, str]:
        """symbol -> 'input.axis' for the user inputs' dynamic dimensions."""
        free: dict[str, str] = {}
        metas = self.graph["tensor_values"]
        for name in self.user_inputs():
            for axis, size in enumerate(metas[name]["sizes"]):
                match = _SYMBOL.match(size.get("as_expr", {}).get("expr_str", ""))
                if match and size["as_expr"]["expr_str"].count("(") == 1:  # a bare symbol
                    free.setdefault(match.group(1), f"{name}.{axis}")
        return free

    def bounds(self, symbol: str) -> tuple[int, float] | None:
        r = self.doc.get("range_constraints", {}).get(symbol)
        if r is None:
            return None
        high = r.get("max_val")
        return int(r.get("min_val") or 0), float("inf") if high is None else high

    def payload_config(self, z: zipfile.ZipFile, kind: str) -> dict[str, dict]:
        """The weights' or constants' JSON config (`kind`: weights, constants): name -> meta.
        The legacy layout (one pickled `data/<kind>/model.pt`) is `Unreadable`."""
        base = f"{self.prefix}data/{kind}/"
        names = set(z.namelist())
        if f"{base}model.pt" in names:
            legacy = f"a pickled {kind} file (legacy layout {base}model.pt)"
            raise unreadable(self.path.name, legacy)
        if f"{base}model_{kind}_config.json" not in names:
            raise not_an_archive(self.path.name, f"no {base}model_{kind}_config.json")
        config = _json(z, z.getinfo(f"{base}model_{kind}_config.json"), self.path.name)
        if (
            not isinstance(config, dict)
            or set(config) != {"config"}
            or not isinstance(config["config"], dict)
        ):
            raise unreadable(self.path.name, f"a {kind} config of another format")
        for name, meta in config["config"].items():
            try:
                _known(meta, "payload")
            except Surprise as e:
                raise unreadable(self.path.name, f"{kind} entry {name[:80]!r}: {e}") from None
        return config["config"]


def read(path: Path) -> Archive:
    """The archive's serialized program (`Unreadable` when it is not the format we know)."""
    with open_zip(path) as z:
        return read_open(z, path)


def read_open(z: zipfile.ZipFile, path: Path) -> Archive:
    """`read` of an archive opened with `open_zip`."""
    source = path.name
    names = z.namelist()
    models = [n for n in names if n.endswith("models/model.json")]
    if len(models) != 1:
        legacy = [n for n in names if re.search(r"(^|/)serialized_\w+\.(pt|json)$", n)]
        if legacy:
            raise unreadable(source, "the legacy torch.export layout (serialized_*.pt, pickled)")
        raise not_an_archive(source, f"{len(models)} models/model.json, not one")
    prefix = models[0][: -len("models/model.json")]
    order = f"{prefix}byteorder"
    if order in names and read_member(z, z.getinfo(order), source, 64).strip() != b"little":
        raise unreadable(source, "big-endian weights")
    doc = _json(z, z.getinfo(models[0]), source)
    try:
        _check(doc)
    except Surprise as e:
        raise unreadable(source, str(e)) from None
    except MALFORMED as e:
        raise unreadable(source, f"a malformed models/model.json ({_why(e)})") from None
    archive = Archive(doc, path, prefix)
    if f"{prefix}data/weights/model_weights_config.json" in names:
        try:  # tied weights (GPT-2's wte and lm_head) are one storage: resident once
            config = archive.payload_config(z, "weights")
            archive.storage = {
                k: json.dumps([v.get("path_name"), v.get("tensor_meta")], sort_keys=True)
                for k, v in config.items()
                if (v.get("tensor_meta") or {}).get("device", {}).get("type") != "meta"
            }  # a meta-device export writes every weight to one empty file: no ties there
        except (WorkloadError, AttributeError, TypeError, ValueError):
            archive.storage = None  # the functional run reads (and refuses) a malformed one
    return archive


def _why(e: Exception) -> str:
    return f"{type(e).__name__} {str(e)[:60]}".strip()


def _check(doc: dict) -> None:
    """The keys and the shape of the document this reader relies on."""
    _known(doc, "program")
    version = doc.get("schema_version")
    if not isinstance(version, dict) or version.get("major") not in SCHEMA_MAJORS:
        raise Surprise(f"schema version {str(version)[:40]} (this reader knows major 8)")
    _known(doc["graph_module"], "graph_module")
    graph = _known(doc["graph_module"]["graph"], "graph")
    _known(doc["graph_module"]["signature"], "signature")
    if graph.get("custom_obj_values"):
        raise Surprise("custom objects")
    if not isinstance(graph["nodes"], list) or not isinstance(graph["tensor_values"], dict):
        raise Surprise("a graph without a node list")
    for node in graph["nodes"]:
        _known(node, "node")
        for i in node["inputs"]:
            _known(i, "input")
    for meta in graph["tensor_values"].values():
        _known(meta, "tensor")


def _size(expr: str, subs: dict[str, int], where: str) -> int:
    """Evaluate a serialized sympy size (`srepr` text) with the bound symbols; no eval()."""

    shown = expr[:60]

    def ev(node: ast.AST) -> int:
        value = _ev(node)
        if abs(value) > 2**64:  # no size is this big; nor do huge ints cost time to compute
            raise Surprise(f"a size beyond 2^64 in {shown}")
        return value

    def _ev(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            raise Surprise(f"size {shown}")
        fn = node.func.id
        if fn == "Symbol":
            name = node.args[0].value
            if name not in subs:
                raise WorkloadError(
                    f"`workload` {where}: a size depends on the data ({name}); chipforge needs "
                    "static shapes: export with concrete inputs or bind the dimension"
                )
            return subs[name]
        args = [ev(a) for a in node.args]
        ops = {
            "Integer": lambda: args[0],
            "Add": lambda: sum(args),
            "Mul": lambda: _product(args),
            "FloorDiv": lambda: args[0] // args[1],
            "Mod": lambda: args[0] % args[1],
            "PythonMod": lambda: args[0] % args[1],
            "Max": lambda: max(args),
            "Min": lambda: min(args),
        }
        if fn not in ops:
            raise Surprise(f"size function {fn}")
        return ops[fn]()

    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, MemoryError):
        raise Surprise(f"size {shown}") from None
    return ev(tree.body)


def _product(args: list[int]) -> int:
    out = 1
    for a in args:
        out *= a
        if abs(out) > 2**64:
            raise Surprise("a size beyond 2^64")
    return out


def _value(meta: dict, subs: dict[str, int], where: str, static: bool = False) -> Value:
    dtype = SCALAR_TYPES.get(meta["dtype"])
    if dtype is None:
        raise Surprise(f"dtype {meta['dtype']}")
    shape = []
    for size in meta["sizes"]:
        if "as_int" in size:
            shape.append(size["as_int"])
        elif "as_expr" in size:
            shape.append(_size(size["as_expr"]["expr_str"], subs, where))
        else:
            raise Surprise(f"size {size}")
        if type(shape[-1]) is not int or not 0 <= shape[-1] <= MAX_DIM:
            raise Surprise(f"a size {str(shape[-1])[:20]} that is not a count ({where})")
    return Value(tuple(shape), FORMATS.get(dtype[0]), dtype[1], static=static)


def _arg(arg: dict) -> Any:
    """A serialized argument as the importer sees it: Ref for graph values, else a literal."""
    if len(arg) != 1:
        raise Surprise(f"argument {arg}")
    ((kind, v),) = arg.items()
    if kind == "as_tensor":
        return Ref(v["name"])
    if kind == "as_tensors":
        return [Ref(t["name"]) for t in v]
    if kind in ("as_sym_int", "as_sym_bool", "as_sym_float"):
        return Ref(v["as_name"]) if "as_name" in v else next(iter(v.values()))
    if kind in ("as_sym_ints", "as_sym_bools", "as_sym_floats"):
        return [Ref(x["as_name"]) if "as_name" in x else next(iter(x.values())) for x in v]
    if kind == "as_optional_tensors":
        return [Ref(t["as_tensor"]["name"]) if "as_tensor" in t else None for t in v]
    if kind == "as_none":
        return None
    if kind in ("as_int", "as_ints", "as_float", "as_floats", "as_bool", "as_bools"):
        return v
    if kind in ("as_string", "as_strings", "as_scalar_type", "as_device", "as_layout"):
        return v
    if kind == "as_memory_format":
        return v
    raise Surprise(f"argument kind {kind}")


def _ids(item: Any) -> list[str]:
    if type(item) is Ref:
        return [item.name]
    if type(item) is not list:
        return []
    out: list[str] = []
    for x in item:
        if type(x) is Ref:
            out.append(x.name)
        elif type(x) is list:
            out += _ids(x)
    return out


def _scope(meta: dict, paths: dict[str, str]) -> str:
    """The node's module path; `paths` remembers each stack text's (the nodes of one module
    share it) for the one program being read."""
    stack = meta.get("nn_module_stack")
    if not stack:
        return ""
    path = paths.get(stack)
    if path is None:
        path = paths[stack] = _module_path(stack)
    return path


def _module_path(stack: str) -> str:
    """The innermost module's path in a serialized `nn_module_stack` (`key,path,type;...`)."""
    last = stack.split(";")[-1]
    parts = last.split(",")
    if len(parts) != 3 or any(c in last for c in "[("):
        parts, depth, start = [], 0, 0
        for end, c in enumerate(last):  # key,path,type with brackets kept whole (torch's split)
            depth += c in "[(" and 1 or (-1 if c in ")]" else 0)
            if c == "," and depth == 0:
                parts.append(last[start:end])
                start = end + 1
        parts.append(last[start:])
    if len(parts) != 3:
        raise Surprise(f"nn_module_stack {last[:200]}")
    return parts[1].replace("L['self'].", "").replace("[", ".").replace("]", "")


def bind_dims(free: dict, bounds, dims: dict[str, int], source: str) -> dict:
    """{symbol: size} from `dims` (keyed 'input.axis' or by symbol name) for the dynamic
    dimensions `free` (symbol -> 'input.axis'); `bounds(symbol)` gives its exported range."""
    known = {label: sym for sym, label in free.items()} | {str(s): s for s in free}
    for key in dims:
        if key not in known:
            listed = ", ".join(free.values()) or "none"
            raise WorkloadError(
                f"`workload.{key}` is not a dynamic dimension of {source}; its dynamic "
                f"dimensions: {listed}"
            )
    subs = {known[key]: int(value) for key, value in dims.items()}
    unbound = [label for sym, label in free.items() if sym not in subs]
    if unbound:
        raise unbound_error(source, unbound, "load_pt2")
    for sym, value in subs.items():
        bound = bounds(sym)
        if bound is not None and not int(bound[0]) <= value <= float(bound[1]):
            raise WorkloadError(
                f"`workload.{free[sym]}` must be in {bound[0]}..{bound[1]} (the range "
                f"it was exported for), not {value}"
            )
    return subs


def imported(archive: Archive, dims: dict[str, int]) -> Program:
    """The imported program of the archive, its dynamic dimensions bound with `dims`;
    `Unreadable` naming what this reader does not know."""
    source = archive.path.name
    try:
        subs = bind_dims(archive.free_symbols(), archive.bounds, dims, source)
        return program(archive, subs, source)
    except Surprise as e:
        raise unreadable(source, str(e)) from None
    except MALFORMED as e:
        raise unreadable(source, f"a malformed models/model.json ({_why(e)})") from None


def program(archive: Archive, subs: dict[str, int], source: str) -> Program:
    """The imported program of the archive, sizes bound with `subs` (symbol -> int)."""
    graph = archive.graph
    metas = graph["tensor_values"]
    user = set(archive.user_inputs())
    tied = _tied(archive)
    values: dict[str, Value] = {}
    nodes: list[Node] = []
    params: list[str] = []
    buffers = {name for kind, name, _ in archive.input_specs() if kind != "parameter"}
    for entry in graph["inputs"]:
        if set(entry) != {"as_tensor"}:
            raise Surprise(f"graph input {entry}")
        name = entry["as_tensor"]["name"]
        values[name] = _value(metas[name], subs, f"{source} node {name}", name not in user)
        if name not in user and name not in tied:
            params.append(name)
    paths: dict[str, str] = {}  # nn_module_stack text -> module path
    for index, n in enumerate(graph["nodes"]):
        for node in _node(n, index, metas, values, subs, source, paths):
            undefined = [v for v in node.inputs if v and v not in values]
            if undefined or not all(isinstance(v, str) for v in node.inputs + node.outputs):
                raise Surprise(f"a use of {str(undefined[:1])[:40]} before it is defined")
            nodes.append(node)
    return Program(source, values, nodes, params, frozenset(buffers & set(params)))


def _tied(archive: Archive) -> set[str]:
    """Graph inputs whose weight file an earlier input already holds (tied weights)."""
    if not archive.storage:
        return set()
    seen, tied = set(), set()
    for kind, name, body in archive.input_specs():
        path = archive.storage.get(body.get("parameter_name") or body.get("buffer_name") or "")
        if kind in ("parameter", "buffer") and path is not None:
            if path in seen:
                tied.add(name)
            seen.add(path)
    return tied


def _node(
    n: dict, index: int, metas: dict, values: dict, subs: dict, source: str, paths: dict
) -> list[Node]:
    target: str = n["target"]
    args = {i["name"]: _arg(i["arg"]) for i in n["inputs"]}
    scope = _scope(n.get("metadata", {}), paths)
    outputs = n["outputs"]
    if target.startswith("_operator."):  # arithmetic on sizes
        name = n.get("name") or outputs[0]["as_sym_int"]["as_name"]
        values[name] = Value((), None, 8, static=True)
        return [Node("static", _ids(list(args.values())), [name], scope, "size", name)]
    parts = target.split(".")
    if len(parts) != 5 or parts[:2] != ["torch", "ops"] or parts[2] == "higher_order":
        raise Surprise(f"target {target}")
    op = parts[3] if parts[2] == "aten" else f"{parts[2]}::{parts[3]}"
    if len(outputs) == 1 and "as_none" not in outputs[0] and "as_tensors" not in outputs[0]:
        out = outputs[0]
        if "as_tensor" in out:
            name = out["as_tensor"]["name"]
            where = f"{source} node {name}"
            values[name] = _value(metas[name], subs, where)
        else:  # a SymInt/SymBool result
            name = next(iter(out.values()))["as_name"]
            values[name] = Value((), None, 8, static=True)
        return [_make(op, args, [name], scope, name)]
    if len(outputs) == 1 and "as_none" in outputs[0]:
        return [_make(op, args, [], scope, f"{op}_unused")]
    tensors = [o for o in outputs if set(o) & {"as_tensor", "as_tensors", "as_none"}]
    if tensors != outputs:
        raise Surprise(f"outputs of {target}")
    items = outputs[0]["as_tensors"] if len(outputs) == 1 else outputs
    parent = n.get("name") or f"{op}__{index}"
    outs, getitems = [], []
    for i, item in enumerate(items):
        item = {"as_tensor": item} if "name" in item else item
        if "as_tensor" in item:
            name = item["as_tensor"]["name"]
            values[f"{parent}#{i}"] = _value(metas[name], subs, f"{source} node {parent}")
            values[name] = _value(metas[name], subs, f"{source} node {name}")
            outs.append(f"{parent}#{i}")
            getitems.append(Node("layout", [f"{parent}#{i}"], [name], scope, "getitem", name))
        elif "as_none" in item:
            getitems.append(Node("layout", [f"{parent}#{i}"], [], scope, "getitem", "as_none"))
        else:
            raise Surprise(f"nested outputs of {target}")
    return [_make(op, args, outs, scope, parent), *getitems]


def _make(op: str, args: dict, outs: list[str], scope: str, label: str) -> Node:
    kind, names, attrs = classify(op, args) if outs else ("static", None, {})
    inputs = (
        _ids(list(args.values()))
        if names is None
        else [args[k].name if isinstance(args.get(k), Ref) else "" for k in names]
    )
    qualified = op.replace("::", ".") if "::" in op else f"aten.{op}"
    return Node(kind, inputs, outs, scope, qualified, label, attrs)
