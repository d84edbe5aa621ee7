"""ONNX import: load the model without its external weights, bind its dynamic sizes, infer
shapes node by node (ONNX's own per-node inference, fed with the shape arithmetic that
`onnx_fold` evaluates), and cost the nodes through the shared lowering (`imported`).

Op names come from the module path the dynamo exporter records in each node's `namespace`
metadata (`model.layers.0.self_attn.q_proj`), else from the TorchScript exporter's node names
(`/h.0/attn/MatMul` is scope `h.0.attn`); repeated layers then fold (`model.layers.*...`).
onnx is imported lazily: chipforge works without it until an ONNX model is imported.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from chipforge.errors import WorkloadError
from chipforge.userfile import missing, note_input
from chipforge.workload.graph import Graph
from chipforge.workload.imported import (
    Node,
    Program,
    Value,
    is_free,
    mark_static,
    require,
    unbound_error,
)
from chipforge.workload.lowering import to_graph
from chipforge.workload.onnx_fold import MAX_FOLD, evaluate
from chipforge.workload.onnx_ops import classify

# ONNX TensorProto element types -> chipforge formats (onnx.proto: FLOAT=1, UINT8=2, INT8=3,
# FLOAT16=10, DOUBLE=11, BFLOAT16=16, FLOAT8*=17..20, UINT4=21, INT4=22, FLOAT4E2M1=23)
ELEM_FORMATS = {1: "fp32", 2: "int8", 3: "int8", 10: "fp16", 11: "fp64", 16: "bf16"}
ELEM_FORMATS |= dict.fromkeys((17, 18, 19, 20), "fp8") | {21: "int4", 22: "int4", 23: "fp4"}
HALF_BYTE = (21, 22, 23)
# int64 and bool initializers are indices, shapes and boolean masks, never trained weights
# (quantized weights are int8/uint8/int4; their int32 biases stay counted too)
NOT_WEIGHTS = (7, 9)
# the largest constant read on request for mask analysis: an 8,192-token causal mask
MAX_MASK = 1 << 26


def _onnx():
    return require("onnx", "an ONNX model")


def from_onnx(
    path: str | Path,
    *,
    dims: dict[str, int] | None = None,
    dtype: str | None = None,
    allow_unsupported: bool = False,
    fold: bool = True,
) -> Graph:
    """The graph of an ONNX model. `dims` binds its dynamic dimensions by name
    (`{'batch': 1, 'seq': 128}`); `dtype`, `allow_unsupported` and `fold` as `from_torch`.
    Weights are never read: shapes come from the initializers' headers (a tensor the exporter
    wrote to the external data file small enough to fold, at most `MAX_FOLD` elements: a mask,
    a folded position table, is read, bounds checked, when a node's folding needs it)."""
    onnx, path = _onnx(), Path(path)
    importer = _Importer(onnx, _load(onnx, path), path.name, dims or {}, path.parent)
    program = importer.program()
    importer.check_shapes(program, allow_unsupported)
    return to_graph(
        program, name=path.name, dtype=dtype, allow_unsupported=allow_unsupported, fold=fold
    )


def _load(onnx: Any, path: Path) -> Any:
    if not path.is_file():
        raise WorkloadError(f"`workload` {path} {missing(path)}; give the path of an .onnx file")
    problem = None
    note_input(path, "model file")
    try:
        model = onnx.load(str(path), load_external_data=False)
        if not model.graph.node:
            problem = "it has no graph nodes"
    except Exception as e:  # protobuf raises DecodeError, RuntimeWarning, ...
        problem = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    if problem:
        raise WorkloadError(
            f"`workload` {path.name} is not a readable ONNX model ({problem.rstrip(': ')}); "
            "re-export it (torch.onnx.export) or check that the file is complete"
        )
    return model


MAX_ELEMENTS = 2**40  # no real tensor is larger (4 TiB in fp32): a size past it is hostile


def check_initializer(onnx: Any, t: Any, source: str, what: str = "initializer") -> None:
    """A tensor stored in the file (an initializer, a Constant's value) must hold the data its
    dims declare: a header that claims 1e12 elements over an empty payload is refused before
    anything is allocated."""
    if any(d < 0 for d in t.dims):
        raise WorkloadError(f"`workload` {source}: {what} {t.name!r} has a negative dim")
    declared = math.prod(t.dims)
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return  # weights outside the file are never read
    if t.HasField("raw_data"):
        bits = 4 if t.data_type in HALF_BYTE else 8 * _itemsize(onnx, t.data_type)
        stored = len(t.raw_data) * 8 // bits
    else:
        fields = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data")
        stored = sum(len(getattr(t, f)) for f in (*fields, "string_data"))
        if t.data_type in HALF_BYTE:
            stored *= 2
    if stored < declared:
        raise WorkloadError(
            f"`workload` {source}: {what} {t.name!r} declares {declared:.3g} elements "
            f"(dims {list(t.dims)}) but stores {stored}; the file is truncated or altered"
        )


def _itemsize(onnx: Any, elem: int) -> int:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)).itemsize
    except (KeyError, TypeError, ValueError):
        return 1


def check_order(graph: Any, source: str) -> None:
    """Every node input is a graph input, an initializer or an earlier node's output (ONNX
    requires topological order): a cycle is refused in one line, not followed."""
    made = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    later = {o: n for n in graph.node for o in n.output if o}
    for index, node in enumerate(graph.node):
        for vid in node.input:
            if vid and vid not in made and vid in later:
                label = node.name or f"{node.op_type} #{index}"
                raise WorkloadError(
                    f"`workload` {source}: node {label!r} reads {vid!r} before any node makes "
                    "it (a cycle, or nodes out of topological order); re-export the model"
                )
        made.update(o for o in node.output if o)


def input_shapes(inputs, dims: dict[str, int], source: str) -> dict[str, list[int]]:
    """{input: shape} of ONNX graph inputs (not initializers), their dynamic dimensions bound
    from `dims` by dim_param name or `input.axis` for an unnamed one; an unknown key or an
    unbound dimension is a one-line error."""
    free: list[str] = []
    for inp in inputs:
        for axis, d in enumerate(inp.type.tensor_type.shape.dim):
            name = d.dim_param or f"{inp.name}.{axis}"
            if not d.HasField("dim_value") and name not in free:
                free.append(name)
    for key in dims:
        if key not in free:
            raise WorkloadError(
                f"`workload.{key}` is not a dynamic dimension of {source}; its dynamic "
                f"dimensions: {', '.join(free) or 'none'}"
            )
    unbound = [name for name in free if name not in dims]
    if unbound:
        raise unbound_error(source, unbound, "from_onnx")
    return {
        inp.name: [
            d.dim_value if d.HasField("dim_value") else int(dims[d.dim_param or f"{inp.name}.{a}"])
            for a, d in enumerate(inp.type.tensor_type.shape.dim)
        ]
        for inp in inputs
    }


_MODULE_PATH = re.compile(r"^[A-Za-z_][\w.]*$")


def _namespace(node: Any) -> str:
    """The module path torch's dynamo exporter records in a node's `namespace` metadata
    ('.../model.layers.0.self_attn.q_proj: torch.nn.Linear/linear: aten.linear.default'):
    the innermost module's path (the last part names the aten op, a `.`-free fx name), or ''
    when absent or not a plain dotted name."""
    for prop in node.metadata_props:
        if prop.key == "namespace":
            parts = [p.split(":", 1)[0].strip() for p in prop.value[-4096:].split("/")]
            if parts and ": aten." in prop.value[-4096:].rsplit("/", 1)[-1]:
                parts = parts[:-1]  # the op itself
            last = parts[-1] if parts else ""
            return last if _MODULE_PATH.match(last) else ""
    return ""


def _scope(name: str) -> str:
    """The module path of an exporter's node name: /layer1/layer1.0/conv1/Conv is
    layer1.0.conv1 (torch's exporter repeats a child's qualified name at each level)."""
    path: list[str] = []
    for part in name.strip("/").split("/")[:-1]:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part.split(".", 1)[0]
            part = part.split(".", 1)[1]
        path += part.split(".")
    return ".".join(path)


def small_external(
    onnx: Any, t: Any, folder: Path | None, limit: int = MAX_FOLD
) -> np.ndarray | None:
    """An external initializer's values, read only when it is small (at most `limit`
    elements) and its external-data entry is sound: a plain file name in the model's folder
    (no path, no link), a whole-number offset, a length equal to what its dims declare, all
    of it inside the file. Anything else: None (its values stay unknown, as before)."""
    elements = math.prod(t.dims)
    if folder is None or elements > limit or any(d < 0 for d in t.dims):
        return None
    entry = {e.key: e.value for e in t.external_data}
    name = entry.get("location", "")
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type))
        offset, nbytes = int(entry.get("offset", 0)), elements * dtype.itemsize
        length = int(entry.get("length", nbytes))
    except (KeyError, TypeError, ValueError):
        return None
    target = folder / name
    plain = name and Path(name).name == name and name not in (".", "..") and "\\" not in name
    if not plain or target.is_symlink() or not target.is_file() or length != nbytes:
        return None
    if offset < 0 or offset + nbytes > target.stat().st_size:
        return None
    with target.open("rb") as f:
        f.seek(offset)
        data = f.read(nbytes)
    if len(data) != nbytes or dtype.kind not in "biuf":
        return None
    return np.frombuffer(data, dtype.newbyteorder("<")).reshape(tuple(t.dims)).astype(dtype)


def _sized(t: Any) -> bool:
    """An inferred type with every dimension known."""
    tensor = t.tensor_type if t.HasField("tensor_type") else None
    shape = tensor.shape if tensor is not None and tensor.HasField("shape") else None
    return shape is not None and all(d.HasField("dim_value") for d in shape.dim)


class _Importer:
    def __init__(
        self, onnx: Any, model: Any, source: str, dims: dict[str, int], folder: Path | None = None
    ):
        self.onnx, self.source, self.graph = onnx, source, model.graph
        self.folder = folder
        self.opset = {(o.domain or "ai.onnx"): o.version for o in model.opset_import}
        self.types: dict[str, Any] = {}
        self.consts: dict[str, np.ndarray] = {}
        self.values: dict[str, Value] = {}
        self.unknown: set[str] = set()
        self.params: list[str] = []
        self.constants: set[str] = set()  # initializers that are no trained parameter
        self.unread: dict[str, Any] = {}  # external or large initializers: read on request
        self.loaded: dict[str, np.ndarray | None] = {}  # ... read since (`_read`)
        self._initializers()
        self._inputs(dict(dims))

    def _format(self, elem: int) -> tuple[str | None, float]:
        if elem in HALF_BYTE:
            return ELEM_FORMATS[elem], 0.5
        try:
            size = np.dtype(self.onnx.helper.tensor_dtype_to_np_dtype(elem)).itemsize
        except (KeyError, TypeError, ValueError):
            size = 4
        return ELEM_FORMATS.get(elem), float(size)

    def _initializers(self) -> None:
        external = self.onnx.TensorProto.EXTERNAL
        data_files = set()
        for t in self.graph.initializer:
            check_initializer(self.onnx, t, self.source)
            if t.data_location == external and self.folder is not None:
                data_files.update(e.value for e in t.external_data if e.key == "location")
            shape = tuple(int(d) for d in t.dims)
            data = None
            if math.prod(shape) <= MAX_FOLD and t.data_location != external:  # in the model
                data = self.onnx.numpy_helper.to_array(t)
                self.consts[t.name] = data
            else:
                self.unread[t.name] = t
            fmt, size = self._format(t.data_type)
            self.types[t.name] = self.onnx.helper.make_tensor_type_proto(t.data_type, shape)
            self.values[t.name] = Value(shape, fmt, size, static=True, data=data)
            self.params.append(t.name)
            if t.data_type in NOT_WEIGHTS or math.prod(shape) <= 1:
                self.constants.add(t.name)
        for name in data_files:  # the model's weights: an output flag naming one is refused
            note_input(self.folder / name, "model's external data file")

    def _inputs(self, dims: dict[str, int]) -> None:
        """Graph inputs, their dynamic dimensions bound from `dims` (`input_shapes`)."""
        user = [i for i in self.graph.input if i.name not in self.values]
        for inp, shape in zip(user, input_shapes(user, dims, self.source).values(), strict=True):
            t = self.onnx.TypeProto()
            t.CopyFrom(inp.type)
            for d, size in zip(t.tensor_type.shape.dim, shape, strict=True):
                d.dim_value = size
            self.types[inp.name] = t
            self.values[inp.name] = self._value(inp.name)

    def _value(self, vid: str) -> Value:
        t = self.types.get(vid)
        tensor = t.tensor_type if t is not None and t.HasField("tensor_type") else None
        if tensor is None or not tensor.HasField("shape"):
            self.unknown.add(vid)
            return Value((), None, 4)
        if any(not d.HasField("dim_value") for d in tensor.shape.dim):
            self.unknown.add(vid)
        fmt, size = self._format(tensor.elem_type)
        return Value(tuple(d.dim_value for d in tensor.shape.dim), fmt, size)

    def _known(self, vid: str, value: np.ndarray) -> None:
        elem = self.onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
        self.types[vid] = self.onnx.helper.make_tensor_type_proto(elem, value.shape)
        self.consts[vid] = value
        fmt, size = self._format(elem)
        self.values[vid] = Value(tuple(value.shape), fmt, size, static=True, data=value)

    def _fold(self, node: Any, attrs: dict) -> bool:
        """Evaluate a node of known inputs (shape arithmetic); True when it was."""
        value = None
        if node.op_type == "Constant":
            value = self._constant(attrs)
        elif node.op_type in ("Shape", "Size") and node.input[0] not in self.unknown:
            shape = np.array(self.values[node.input[0]].shape, dtype=np.int64)
            start, end = attrs.get("start", 0), attrs.get("end")
            value = shape[start:end] if node.op_type == "Shape" else np.int64(shape.prod())
        elif len(node.output) == 1 and all(
            i in self.consts or i in self.unread for i in node.input if i
        ):
            inputs = [self._const(i) if i else None for i in node.input]
            if any(i and x is None for i, x in zip(node.input, inputs, strict=True)):
                return False
            value = evaluate(node.op_type, inputs, attrs, self.onnx.helper.tensor_dtype_to_np_dtype)
        if value is None:
            return False
        self._known(node.output[0], np.asarray(value))
        return True

    def _attribute(self, attribute: Any, node: Any) -> Any:
        value = self.onnx.helper.get_attribute_value(attribute)
        if isinstance(value, self.onnx.TensorProto):
            where = f"node {node.name or node.op_type!r} attribute {attribute.name}"
            check_initializer(self.onnx, value, self.source, where)
            return self.onnx.numpy_helper.to_array(value)
        return value

    def _constant(self, attrs: dict) -> np.ndarray | None:
        if "value" in attrs:
            return np.asarray(attrs["value"])
        for key, dtype in (("value_float", np.float32), ("value_int", np.int64)):
            if key in attrs:
                return np.array(attrs[key], dtype=dtype)
        for key, dtype in (("value_floats", np.float32), ("value_ints", np.int64)):
            if key in attrs:
                return np.array(list(attrs[key]), dtype=dtype)
        return None

    def _infer(self, node: Any) -> None:
        """ONNX's shape inference for one node, given its input types and known data; an
        initializer not read yet is read (`_const`) only when the outputs' sizes need it."""
        types = self._outputs(node, read=False)
        if not all(map(_sized, (types or {}).values())) and any(
            i in self.unread for i in node.input
        ):
            types = self._outputs(node, read=True)
        self.types.update(types or {})

    def _outputs(self, node: Any, read: bool) -> dict | None:
        """The output types ONNX infers for `node`; None when it cannot (unknown op, missing
        input type, inference error: sizes stay unknown)."""
        domain = node.domain or "ai.onnx"
        try:
            schema = self.onnx.defs.get_schema(node.op_type, self.opset.get(domain, 1), node.domain)
            types = {i: self.types[i] for i in node.input if i}
            known = {i: self._const(i) if read else self.consts.get(i) for i in types}
            data = {
                i: self.onnx.numpy_helper.from_array(v, i)
                for i, v in known.items()
                if v is not None
            }
            return self.onnx.shape_inference.infer_node_outputs(schema, node, types, data)
        except Exception:  # noqa: BLE001 - best effort: onnx raises SchemaError (unknown op or
            # opset), InferenceError, and its C++ checker's errors as RuntimeError / TypeError /
            # ValueError for a malformed node; any of them only leaves this node's sizes unknown
            return None

    def _classify(self, node: Any, attrs: dict) -> tuple[str, tuple[int, ...] | None, dict]:
        if node.op_type == "Gather":
            table = self.values.get(node.input[0])
            embedding = table and table.static and len(table.shape) == 2 and not attrs.get("axis")
            return ("embedding", (0, 1), {}) if embedding else ("gather", None, {})
        if node.op_type == "TopK":
            k = self._const(node.input[1]) if len(node.input) > 1 else None
            return "topk", (0,), {"k": int(np.ravel(k)[0]) if k is not None else 2}
        return classify(node.op_type, attrs)

    def _visit(self, node: Any) -> Node | None:
        attrs = {a.name: self._attribute(a, node) for a in node.attribute}
        if self._fold(node, attrs):
            return None
        self._infer(node)
        kind, positions, extra = self._classify(node, attrs)
        inputs = list(node.input)
        if positions is not None:
            inputs = [inputs[i] if i < len(inputs) else "" for i in positions]
        outputs = [o for o in node.output if o]
        label = node.name or f"{node.op_type} -> {outputs[0] if outputs else ''}"
        for vid in outputs:
            self.values[vid] = self._value(vid)
            self._check_size(vid, node, label)
        for vid in inputs:
            if vid and vid not in self.values:  # an input no node made: unknown
                self.values[vid] = self._value(vid)
        scope = _namespace(node) or _scope(node.name)
        return Node(kind, inputs, outputs, scope, node.op_type, label, extra)

    def _check_size(self, vid: str, node: Any, label: str) -> None:
        elements = math.prod(float(d) for d in self.values[vid].shape)
        if elements > MAX_ELEMENTS:
            raise WorkloadError(
                f"`workload` {self.source}: {node.op_type} node {label!r} makes {vid!r} of "
                f"shape {list(self.values[vid].shape)} ({elements:.3g} elements), past the "
                f"{MAX_ELEMENTS:.3g}-element limit on one tensor; check the model's shapes"
            )

    def program(self) -> Program:
        check_order(self.graph, self.source)
        nodes = [n for n in (self._visit(node) for node in self.graph.node) if n is not None]
        constants = frozenset(self.constants)
        return Program(self.source, self.values, nodes, self.params, constants, self._load)

    def _const(self, vid: str) -> np.ndarray | None:
        """A value's numbers for folding: known, else an initializer of at most MAX_FOLD
        elements read on request (`_read`); None otherwise."""
        if vid in self.consts:
            return self.consts[vid]
        return self._read(vid, MAX_FOLD)

    def _load(self, vid: str) -> np.ndarray | None:
        """An initializer's numbers for the lowering's mask analysis (`Program.load`): one
        small enough to fold, or one of 2 or more dimensions and at most MAX_MASK elements (a
        causal mask of a long sequence); None otherwise."""
        t = self.unread.get(vid)
        wide = t is not None and len(t.dims) >= 2
        return self._read(vid, MAX_MASK if wide else MAX_FOLD)

    def _read(self, vid: str, limit: int) -> np.ndarray | None:
        """An initializer not read up front (`unread`), read once, on the first request, when
        it has at most `limit` elements (an external one through `small_external`)."""
        t = self.unread.get(vid)
        if t is None or math.prod(t.dims) > limit:
            return None
        if vid not in self.loaded:
            if t.data_location == self.onnx.TensorProto.EXTERNAL:
                self.loaded[vid] = small_external(self.onnx, t, self.folder, limit)
            else:
                self.loaded[vid] = self.onnx.numpy_helper.to_array(t)
        return self.loaded[vid]

    def check_shapes(self, program: Program, allow_unsupported: bool) -> None:
        """Every op we cost needs its sizes: name the first one shape inference could not
        follow (unless an unsupported op, listed by the lowering, comes first)."""
        mark_static(program)
        for node in program.nodes:
            if is_free(program, node):
                continue
            if node.kind == "unsupported" and not allow_unsupported:
                return
            vid = next((v for v in node.inputs + node.outputs if v in self.unknown), None)
            if vid is not None and node.kind != "unsupported":
                raise WorkloadError(
                    f"`workload` {self.source}: shape inference could not size {vid!r} of "
                    f"{node.source} node {node.label!r}; bind every dynamic dimension, or "
                    "re-export with static shapes"
                )
