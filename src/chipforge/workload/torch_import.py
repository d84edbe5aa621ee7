"""PyTorch import: `torch.export` a module (or load a saved `.pt2` program) and cost its aten ops.

The exported program's nodes become imported nodes (`imported.Node`) of canonical kinds
(`torch_ops`), with shapes from the export's fake tensors and op names from the module path
that `nn_module_stack` records, so `h.0.attn.c_attn` reads like the model. When an op has no
rule at the export level, the program is lowered with `run_decompositions()` (keeping the ops
we cost whole: linear, scaled_dot_product_attention, layer_norm, ...) and walked again.

torch is imported lazily: chipforge works without it until a PyTorch model is imported.
"""

from __future__ import annotations

import logging
import operator
from pathlib import Path
from typing import Any

from chipforge.errors import WorkloadError
from chipforge.workload.graph import Graph
from chipforge.workload.imported import Node, Program, Value, require, to_graph, unbound_error
from chipforge.workload.torch_ops import KEEP, classify

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


def _torch():
    return require("torch", "a PyTorch model")


def from_torch(
    module: Any,
    example_inputs: Any,
    *,
    dtype: str | None = None,
    allow_unsupported: bool = False,
    fold: bool = True,
    name: str | None = None,
    sample_layers: bool = True,
) -> Graph:
    """The graph of `module(*example_inputs)`, through `torch.export`.

    `dtype` costs every float tensor in that format (a fp32 module served in bf16); `fold`
    merges repeated layers into one op with a count; `allow_unsupported` costs ops without a
    rule as vector work (listed in `graph.meta`) instead of raising. Export what you mean to
    cost: call `module.eval()` first for inference. Meta-device modules and inputs work and
    allocate no weights.

    `sample_layers` (deep models: torch.export's tracing is most of the import time) exports
    only the first 1, 2 and 3 layers of the model's one stack of identical layers and
    extrapolates to all of them, after checking on a meta-tensor run of the whole forward that
    every layer makes the same calls (`torch_sample`); it exports the whole model whenever a
    check fails. The graph is the whole export's either way; False always exports it whole."""
    torch = _torch()
    args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    label = name or type(module).__name__
    if sample_layers and fold and not allow_unsupported:
        from chipforge.workload.torch_sample import sampled

        graph = sampled(
            module,
            args,
            lambda m: _export(torch, m, args, label),
            lambda p: from_exported(p, name=label, dtype=dtype),
        )
        if graph is not None:
            return graph
    program = _export(torch, module, args, label)
    return from_exported(
        program, name=label, dtype=dtype, allow_unsupported=allow_unsupported, fold=fold
    )


def _export(torch: Any, module: Any, args: tuple, label: str) -> Any:
    fx_config = torch.fx.config  # the importer reads no stack traces: ~20% of export's time
    recorded, fx_config.do_not_emit_stack_traces = fx_config.do_not_emit_stack_traces, True
    try:
        program = torch.export.export(module, args)
    except Exception as e:  # torch raises many types; the user needs the first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WorkloadError(
            f"`module` {label} could not be exported by torch.export ({type(e).__name__}: "
            f"{first}); make its control flow static or export it to ONNX"
        ) from None
    finally:
        fx_config.do_not_emit_stack_traces = recorded
    return program


def load_pt2(
    path: str | Path,
    *,
    dims: dict[str, int] | None = None,
    dtype: str | None = None,
    allow_unsupported: bool = False,
    fold: bool = True,
) -> Graph:
    """The graph of a program saved with `torch.export.save`. `dims` binds its dynamic
    dimensions, by input and axis (`{'x.0': 8}`) or by symbol (`{'s0': 8}`).

    The archive's serialized graph is read directly (`pt2_archive`: no weights, no torch);
    `torch.export.load` is the fallback when the archive holds something that reader does not
    know, or ops that need `run_decompositions()`."""
    path = Path(path)
    if not path.is_file():
        raise WorkloadError(f"`workload` {path} does not exist; give the path of a .pt2 file")
    options = {"dtype": dtype, "allow_unsupported": allow_unsupported, "fold": fold}
    fast = _from_archive(path, dims or {}, options)
    if fast is not None:
        return fast
    return from_exported(load_exported(path), name=path.name, dims=dims, **options)


def load_exported(path: Path) -> Any:
    """The `torch.export.ExportedProgram` saved at `path`; a chipforge error naming the file
    when it is not a torch.export archive (the importer and the functional run share it)."""
    torch = _torch()
    logger = logging.getLogger("torch.export")  # logs a traceback before it raises
    logger.addFilter(_without_traceback)
    try:
        return torch.export.load(str(path))
    except Exception as e:  # torch raises RuntimeError, BadZipFile, ... for a damaged file
        raise WorkloadError(
            f"`workload` {path.name} is not a readable torch.export program ({type(e).__name__}"
            "); save one with torch.export.save(torch.export.export(model, inputs), path)"
        ) from None
    finally:
        logger.removeFilter(_without_traceback)


def _without_traceback(record: logging.LogRecord) -> bool:
    """Log filter: drop the records that carry a traceback (the CLI prints one line)."""
    return record.exc_info is None


def _from_archive(path: Path, dims: dict[str, int], options: dict) -> Graph | None:
    """The graph from the archive's serialized program, or None to fall back to torch."""
    from chipforge.workload import pt2_archive

    try:
        archive = pt2_archive.read(path)
        free = archive.free_symbols()
        subs = bind_dims(free, archive.bounds, dims, path.name)
        program = pt2_archive.program(archive, subs, path.name)
    except (pt2_archive.Surprise, KeyError, TypeError, IndexError, AttributeError, ValueError):
        return None
    if any(node.kind == "unsupported" for node in program.nodes):
        return None  # run_decompositions() needs the loaded program
    return to_graph(program, name=path.name, **options)


def from_exported(
    exported: Any,
    *,
    name: str,
    dims: dict[str, int] | None = None,
    dtype: str | None = None,
    allow_unsupported: bool = False,
    fold: bool = True,
) -> Graph:
    """The graph of a `torch.export.ExportedProgram`."""
    bindings = _bindings(exported, dims or {}, name)
    program = _program(exported, bindings, name)
    if any(node.kind == "unsupported" for node in program.nodes):
        program = _program(exported.run_decompositions(_keep_table()), bindings, name)
    return to_graph(program, name=name, dtype=dtype, allow_unsupported=allow_unsupported, fold=fold)


def _keep_table():
    """The default decomposition table less the ops we cost whole."""
    torch = _torch()
    table = torch.export.default_decompositions()
    for op in KEEP:
        overload = getattr(getattr(torch.ops.aten, op, None), "default", None)
        if overload is not None:
            table.pop(overload, None)
    return table


def _user_inputs(exported: Any) -> list[str]:
    kind = _torch().export.graph_signature.InputKind.USER_INPUT
    return [s.arg.name for s in exported.graph_signature.input_specs if s.kind == kind]


def _bindings(exported: Any, dims: dict[str, int], source: str) -> dict:
    """Sympy substitutions for the dynamic dimensions of the user inputs, from `dims`."""
    free: dict = {}  # symbol -> 'input.axis'
    nodes = {n.name: n for n in exported.graph.nodes if n.op == "placeholder"}
    for name in _user_inputs(exported):
        val = nodes[name].meta.get("val")
        for axis, d in enumerate(getattr(val, "shape", ())):
            expr = getattr(getattr(d, "node", None), "expr", None)
            if expr is not None and expr.is_Symbol:
                free.setdefault(expr, f"{name}.{axis}")

    def bounds(sym):
        bound = exported.range_constraints.get(sym)
        return None if bound is None else (bound.lower, bound.upper)

    return bind_dims(free, bounds, dims, source)


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


def _dim(d: Any, subs: dict, where: str) -> int:
    if isinstance(d, int):
        return d
    expr = d.node.expr.xreplace(subs)
    if isinstance(expr, int):
        return expr
    if not getattr(expr, "is_number", False) or not expr.is_Integer:
        raise WorkloadError(
            f"`workload` {where}: a size depends on the data ({expr}); chipforge needs static "
            "shapes: export with concrete inputs or bind the dimension"
        )
    return int(expr)


def _value(val: Any, subs: dict, where: str, static: bool = False) -> Value:
    if not hasattr(val, "shape"):  # a SymInt, int or float: a scalar known ahead
        return Value((), None, 8, static=True)
    dtype = str(val.dtype).removeprefix("torch.")
    shape = tuple(_dim(d, subs, where) for d in val.shape)
    return Value(shape, FORMATS.get(dtype), val.element_size(), static=static)


def _outputs(node: Any, values: dict, subs: dict, where: str) -> list[str]:
    val = node.meta.get("val")
    if isinstance(val, (tuple, list)):
        outs = []
        for i, item in enumerate(val):
            if item is not None:
                values[f"{node.name}#{i}"] = _value(item, subs, where)
                outs.append(f"{node.name}#{i}")
        return outs
    if val is None:
        return []
    values[node.name] = _value(val, subs, where)
    return [node.name]


def _scope(node: Any) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return path.replace("L['self'].", "").replace("[", ".").replace("]", "")


def _named_args(node: Any) -> dict:
    schema = getattr(node.target, "_schema", None)
    names = [a.name for a in schema.arguments] if schema else []
    args = dict(zip(names, node.args, strict=False)) if names else {}
    return args | dict(node.kwargs)


def _ids(item: Any, fx_node: type) -> list[str]:
    if isinstance(item, fx_node):
        return [item.name]
    if isinstance(item, (list, tuple)):
        return [i for x in item for i in _ids(x, fx_node)]
    return []


def _node(node: Any, outs: list[str], fx_node: type) -> Node:
    if node.target is operator.getitem:
        src, index = node.args
        return Node("layout", [f"{src.name}#{index}"], outs, _scope(node), "getitem", node.name)
    if getattr(node.target, "__module__", "") == "_operator":  # arithmetic on sizes
        return Node("static", _ids(node.args, fx_node), outs, _scope(node), "size", node.name)
    name = getattr(node.target, "_opname", None) or getattr(node.target, "__name__", "")
    args = _named_args(node)
    kind, names, attrs = classify(name, args) if outs else ("static", None, {})  # asserts
    inputs = (
        _ids(list(node.args) + list(node.kwargs.values()), fx_node)
        if names is None
        else [args[n].name if isinstance(args.get(n), fx_node) else "" for n in names]
    )
    return Node(kind, inputs, outs, _scope(node), f"aten.{name}", node.name, attrs)


def _program(exported: Any, subs: dict, source: str) -> Program:
    fx_node = _torch().fx.Node
    user = set(_user_inputs(exported))
    values: dict[str, Value] = {}
    nodes: list[Node] = []
    params: list[str] = []
    for n in exported.graph.nodes:
        where = f"{source} node {n.name}"
        if n.op == "placeholder":
            val = n.meta.get("val")
            values[n.name] = _value(val, subs, where, static=n.name not in user)
            if n.name not in user and hasattr(val, "shape"):
                params.append(n.name)
        elif n.op == "get_attr":
            values[n.name] = Value((), None, 0, static=True)
        elif n.op == "call_function":
            nodes.append(_node(n, _outputs(n, values, subs, where), fx_node))
    return Program(source=source, values=values, nodes=nodes, params=params)
