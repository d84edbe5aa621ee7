"""Reading a `.pt2` archive's serialized graph directly, without `torch.export.load`.

A `torch.export.save` archive is a zip whose `<name>/models/model.json` holds the serialized
ExportedProgram (torch/_export/serde/schema.py, schema major 8): every node's target, its
arguments by schema name, its outputs, its `nn_module_stack`, and a table of tensor metas
(dtype, sizes). That is all the importer needs; `torch.export.load` also rebuilds fake tensors,
a ShapeEnv and an FX graph and reads every weight (12 s of a 100-layer model on our 2-core
machine, against ~0.3 s here, and no `import torch`).

`program()` builds the same `imported.Program` as `torch_import._program` over the loaded FX
graph: the same value ids (FX node names), the same getitem nodes for multi-output ops, the same
scopes. Anything it does not recognise (another schema major, higher-order ops, custom objects,
a size expression outside + * // % max min) raises `Surprise`, and the caller falls back to
`torch.export.load`; tests check both give the identical IR graph on the zoo models.
"""

from __future__ import annotations

import ast
import json
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chipforge.errors import WorkloadError
from chipforge.workload.imported import Node, Program, Value
from chipforge.workload.torch_ops import classify

SCHEMA_MAJORS = (8,)  # torch/_export/serde/schema_check: SCHEMA_VERSION (8, x) in torch 2.6-2.13
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
_SYMBOL = re.compile(r"^Symbol\('(\w+)'")


class Surprise(Exception):
    """Something this reader does not handle: fall back to torch.export.load."""


@dataclass(frozen=True)
class Ref:
    """A graph value used as an argument (an fx.Node in the loaded program)."""

    name: str


@dataclass
class Archive:
    """The parts of the serialized program the importer reads."""

    doc: dict

    @property
    def graph(self) -> dict:
        return self.doc["graph_module"]["graph"]

    def user_inputs(self) -> list[str]:
        out = []
        for spec in self.doc["graph_module"]["signature"]["input_specs"]:
            if "user_input" in spec:
                arg = spec["user_input"]["arg"]
                if set(arg) != {"as_tensor"}:
                    raise Surprise("a non-tensor user input")
                out.append(arg["as_tensor"]["name"])
            elif not {"parameter", "buffer", "tensor_constant"} & set(spec):
                raise Surprise(f"input spec {sorted(spec)}")
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


def read(path: Path) -> Archive:
    """The archive's serialized program (Surprise when it is not the format we know)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith("/models/model.json")]
            if len(names) != 1:
                raise Surprise("not one models/model.json")
            doc = json.loads(z.read(names[0]))
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise Surprise(type(e).__name__) from None
    if doc.get("schema_version", {}).get("major") not in SCHEMA_MAJORS:
        raise Surprise(f"schema {doc.get('schema_version')}")
    return Archive(doc)


def _size(expr: str, subs: dict[str, int], where: str) -> int:
    """Evaluate a serialized sympy size (`srepr` text) with the bound symbols; no eval()."""

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            raise Surprise(f"size {expr}")
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
            "Mul": lambda: math.prod(args),
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
    except SyntaxError:
        raise Surprise(f"size {expr}") from None
    return ev(tree.body)


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
    from chipforge.workload.torch_import import FORMATS

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
    if isinstance(item, Ref):
        return [item.name]
    if isinstance(item, list):
        return [i for x in item for i in _ids(x)]
    return []


def _scope(meta: dict) -> str:
    stack = meta.get("nn_module_stack")
    if not stack:
        return ""
    last, depth, start, parts = stack.split(";")[-1], 0, 0, []
    for end, c in enumerate(last):  # key,path,type with brackets kept whole (torch's split)
        depth += c in "[(" and 1 or (-1 if c in ")]" else 0)
        if c == "," and depth == 0:
            parts.append(last[start:end])
            start = end + 1
    parts.append(last[start:])
    if len(parts) != 3:
        raise Surprise(f"nn_module_stack {last}")
    return parts[1].replace("L['self'].", "").replace("[", ".").replace("]", "")


def program(archive: Archive, subs: dict[str, int], source: str) -> Program:
    """The imported program of the archive, sizes bound with `subs` (symbol -> int)."""
    graph = archive.graph
    metas = graph["tensor_values"]
    user = set(archive.user_inputs())
    values: dict[str, Value] = {}
    nodes: list[Node] = []
    params: list[str] = []
    for entry in graph["inputs"]:
        if set(entry) != {"as_tensor"}:
            raise Surprise(f"graph input {entry}")
        name = entry["as_tensor"]["name"]
        values[name] = _value(metas[name], subs, f"{source} node {name}", name not in user)
        if name not in user:
            params.append(name)
    for index, n in enumerate(graph["nodes"]):
        nodes += _node(n, index, metas, values, subs, source)
    return Program(source=source, values=values, nodes=nodes, params=params)


def _node(n: dict, index: int, metas: dict, values: dict, subs: dict, source: str) -> list[Node]:
    target: str = n["target"]
    args = {i["name"]: _arg(i["arg"]) for i in n["inputs"]}
    scope = _scope(n.get("metadata", {}))
    outputs = n["outputs"]
    if target.startswith("_operator."):  # arithmetic on sizes
        name = n.get("name") or outputs[0]["as_sym_int"]["as_name"]
        values[name] = Value((), None, 8, static=True)
        return [Node("static", _ids(list(args.values())), [name], scope, "size", name)]
    parts = target.split(".")
    if len(parts) != 5 or parts[:2] != ["torch", "ops"] or parts[2] == "higher_order":
        raise Surprise(f"target {target}")
    op = parts[3]
    tensors = [o for o in outputs if set(o) & {"as_tensor", "as_tensors", "as_none"}]
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
    return Node(kind, inputs, outs, scope, f"aten.{op}", label, attrs)
