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
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from chipforge.errors import WorkloadError
from chipforge.userfile import missing
from chipforge.workload import pt2_archive
from chipforge.workload.graph import Graph
from chipforge.workload.imported import Node, Program, Value, gc_paused, logger_quiet, require
from chipforge.workload.lowering import to_graph
from chipforge.workload.pt2_archive import FORMATS, bind_dims
from chipforge.workload.torch_ops import KEEP, classify


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
        with _lazy_code(torch), _quiet_fake_tensors():
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


def _quiet_fake_tensors():
    """torch's fake-tensor dispatcher logs a failed shape computation (e.g. a storage size that
    overflows int64) with its whole traceback on stderr before raising; the error is reported
    in one line above, so that log is held back during the export."""
    return logger_quiet("torch._subclasses.fake_tensor", logging.CRITICAL)


def _lazy_code(torch: Any) -> Any:
    """torch's lazy graph modules: the Python code of the graphs torch.export builds on the way
    is generated only if one is run, which the importer never does (~15 % of an export's time).
    A private switch of torch (2.13); without it, exports generate the code."""
    try:
        from torch.fx._lazy_graph_module import _use_lazy_graph_module
    except ImportError:
        return nullcontext()
    return _use_lazy_graph_module(True)


def load_pt2(
    path: str | Path,
    *,
    dims: dict[str, int] | None = None,
    dtype: str | None = None,
    allow_unsupported: bool = False,
    fold: bool = True,
    trust_pickle: bool = False,
) -> Graph:
    """The graph of a program saved with `torch.export.save`. `dims` binds its dynamic
    dimensions, by input and axis (`{'x.0': 8}`) or by symbol (`{'s0': 8}`).

    The archive's serialized graph is read as JSON (`pt2_archive`: no weights, no torch, nothing
    unpickled). What that reader does not know, and ops without a cost rule, are errors, unless
    `trust_pickle`: then `torch.export.load` (which unpickles weights and constants: it can run
    any code the file holds) reads the file and `run_decompositions()` lowers those ops."""
    path = Path(path)
    if not path.is_file():
        raise WorkloadError(f"`workload` {path} {missing(path)}; give the path of a .pt2 file")
    options = {"dtype": dtype, "allow_unsupported": allow_unsupported, "fold": fold}
    try:
        with gc_paused():
            program = pt2_archive.imported(pt2_archive.read(path), dims or {})
    except pt2_archive.Unreadable:
        if not trust_pickle:
            raise
        return from_exported(
            load_exported(path, trust_pickle=trust_pickle), name=path.name, dims=dims, **options
        )
    if trust_pickle and any(node.kind == "unsupported" for node in program.nodes):
        return from_exported(
            load_exported(path, trust_pickle=trust_pickle), name=path.name, dims=dims, **options
        )
    with gc_paused():
        return _to_graph(program, path, options)


def _to_graph(program: Program, path: Path, options: dict) -> Graph:
    try:
        return to_graph(program, name=path.name, **options)
    except WorkloadError as e:
        if any(node.kind == "unsupported" for node in program.nodes):  # lowered by torch once
            raise WorkloadError(
                f"{e}; or, for a file you trust, --trust-pickle: torch.export.load and "
                "run_decompositions() lower them (that unpickles the file)"
            ) from None
        raise
    except pt2_archive.MALFORMED as e:  # e.g. a matmul without its weight argument
        why = f"a malformed models/model.json ({pt2_archive._why(e)})"
        raise pt2_archive.unreadable(path.name, why) from None


def load_exported(path: Path, *, trust_pickle: bool) -> Any:
    """`torch.export.load(path)`: it unpickles the file's weights and constants, which can run
    any code the file holds. Only with `trust_pickle` (the user vouches for the file): without
    it, a one-line refusal, so no caller can reach torch.export.load by forgetting the flag."""
    if not trust_pickle:
        raise WorkloadError(
            f"`workload` {path.name}: reading it needs torch.export.load, which unpickles the "
            f"file; chipforge does not unpickle model files: {pt2_archive.TRUST_HINT}"
        )
    torch = _torch()
    logger = logging.getLogger("torch.export")  # logs a traceback before it raises
    logger.addFilter(_without_traceback)
    try:
        return torch.export.load(str(path))
    except Exception as e:  # torch raises RuntimeError, BadZipFile, ... for a damaged file
        raise pt2_archive.not_an_archive(path.name, type(e).__name__) from None
    finally:
        logger.removeFilter(_without_traceback)


def _without_traceback(record: logging.LogRecord) -> bool:
    """Log filter: drop the records that carry a traceback (the CLI prints one line)."""
    return record.exc_info is None


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
    namespace = getattr(node.target, "namespace", "aten")
    if namespace != "aten":  # a custom op (transformers::grouped_mm_fallback), as pt2_archive
        name = f"{namespace}::{name}"
    args = _named_args(node)
    kind, names, attrs = classify(name, args) if outs else ("static", None, {})  # asserts
    inputs = (
        _ids(list(node.args) + list(node.kwargs.values()), fx_node)
        if names is None
        else [args[n].name if isinstance(args.get(n), fx_node) else "" for n in names]
    )
    source = name.replace("::", ".") if namespace != "aten" else f"aten.{name}"
    return Node(kind, inputs, outs, _scope(node), source, node.name, attrs)


def _tied(exported: Any) -> set[str]:
    """Parameter placeholders whose tensor an earlier one already is (tied weights: T5's
    shared embedding, GPT-2's wte and lm_head): resident once. The same tensor object in a
    live module's export; the same view of one storage in a `torch.export.load`ed program,
    which rebuilds each name's tensor (meta tensors, which have no storage: the same object)."""
    seen: set = set()
    tied: set[str] = set()
    state = getattr(exported, "state_dict", {}) or {}
    for spec in getattr(getattr(exported, "graph_signature", None), "input_specs", ()):
        tensor = state.get(getattr(spec, "target", None) or "")
        if tensor is None or getattr(tensor, "device", None) is None:
            continue
        key = _storage_view(tensor)
        if key in seen:
            tied.add(spec.arg.name)
        seen.add(key)
    return tied


def _storage_view(tensor: Any) -> tuple:
    if tensor.device.type == "meta":
        return ("object", id(tensor))
    storage = tensor.untyped_storage().data_ptr()
    return (storage, tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)


def _program(exported: Any, subs: dict, source: str) -> Program:
    fx_node = _torch().fx.Node
    user = set(_user_inputs(exported))
    values: dict[str, Value] = {}
    nodes: list[Node] = []
    params: list[str] = []
    tied = _tied(exported)
    specs = getattr(getattr(exported, "graph_signature", None), "input_specs", ())
    buffers = {s.arg.name for s in specs if getattr(s.kind, "name", "") != "PARAMETER"}
    for n in exported.graph.nodes:
        where = f"{source} node {n.name}"
        if n.op == "placeholder":
            val = n.meta.get("val")
            values[n.name] = _value(val, subs, where, static=n.name not in user)
            if n.name not in user and hasattr(val, "shape") and n.name not in tied:
                params.append(n.name)
        elif n.op == "get_attr":
            values[n.name] = Value((), None, 0, static=True)
        elif n.op == "call_function":
            nodes.append(_node(n, _outputs(n, values, subs, where), fx_node))
    return Program(source, values, nodes, params, frozenset(buffers & set(params)))
