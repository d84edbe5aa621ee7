"""Executing an ONNX model node by node with real weights: matrix nodes on the chip
(`matrix_backend.Backend`; attention chains MatMul-Softmax-MatMul as the fused attention
program, `onnx_attention`), every other node in numpy fp32, its float results rounded to bf16
when the backend is the bf16 chip run (the vector unit's output format). A node that depends
on no input is constant folding, done ahead in fp32 (matrix products included)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from chipforge.errors import WorkloadError
from chipforge.sim import onnx_attention
from chipforge.sim.matrix_backend import Backend, bf16
from chipforge.workload.costs import einsum_groups
from chipforge.workload.imported import require
from chipforge.workload.onnx_fold import output_size

MATRIX_OPS = ("MatMul", "Gemm", "Conv")
# ops whose output can be far larger than their inputs: sized before they run (`_guard`)
SIZED = ("ConstantOfShape", "Range", "Expand", "Gather", "Add", "Sub", "Mul", "Div", "Pow")
SIZED += ("Equal", "Less", "Greater", "Where", "Min", "Max", "And", "Or")


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float32])(x)


def _gelu(x: np.ndarray, approximate: str | bytes = "none", **_) -> np.ndarray:
    """ONNX Gelu (opset 20): exact (erf) or its tanh approximation."""
    if approximate in ("tanh", b"tanh"):
        c = np.float32(math.sqrt(2 / math.pi))
        return np.float32(0.5) * x * (1 + np.tanh(c * (x + np.float32(0.044715) * x**3)))
    return np.float32(0.5) * x * (1 + _erf(x / np.float32(math.sqrt(2))))


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _layernorm(x, scale, bias=None, axis=-1, epsilon=1e-5, **_):
    axes = tuple(range(axis % x.ndim, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mu) / np.sqrt(var + np.float32(epsilon)) * scale
    return y + bias if bias is not None else y


def _instance_norm(x, scale, bias, epsilon=1e-5, **_):
    """ONNX InstanceNormalization (what GroupNorm exports to): each (sample, channel) over its
    spatial axes, then the per-channel scale and bias."""
    axes = tuple(range(2, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mu) / np.sqrt(var + np.float32(epsilon))
    return y * scale.reshape(shape) + bias.reshape(shape)


def im2col(x: np.ndarray, kh: int, kw: int, stride, pads, dilation) -> tuple[np.ndarray, int, int]:
    """x (N, C, H, W) -> patches (N*Ho*Wo, C*kh*kw), Ho, Wo: Conv as one GEMM."""
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    n, c, h, w = x.shape
    ho = (h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = np.empty((n, c, kh, kw, ho, wo), x.dtype)
    for i in range(kh):
        for j in range(kw):
            hi, wj = i * dilation[0], j * dilation[1]
            cols[:, :, i, j] = x[
                :, :, hi : hi + stride[0] * ho : stride[0], wj : wj + stride[1] * wo : stride[1]
            ]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * ho * wo, c * kh * kw), ho, wo


def _conv(
    be: Backend,
    name: str,
    x,
    w,
    bias=None,
    *,
    strides=(1, 1),
    pads=(0, 0, 0, 0),
    dilations=(1, 1),
    group=1,
    **_,
):
    if x.ndim == 3 and w.ndim == 3:  # Conv1d (Whisper's front end): a 2-D conv of height 1
        pads = tuple(pads) if len(pads) == 2 else (0, 0)
        y = _conv(
            be,
            name,
            x[:, :, None, :],
            w[:, :, None, :],
            bias,
            strides=(1, *tuple(strides)[:1]),
            pads=(0, pads[0], 0, pads[1]),
            dilations=(1, *tuple(dilations)[:1]),
            group=group,
        )
        return y[:, :, 0, :]
    if x.ndim != 4 or w.ndim != 4:
        raise WorkloadError(f"{name}: Conv of {x.ndim - 2}-D data has no functional run")
    cout, cin, kh, kw = w.shape
    if x.shape[1] != cin * group or cout % group:
        raise WorkloadError(
            f"{name}: Conv input has {x.shape[1]} channels, weight {w.shape} with group={group}"
        )
    cols, ho, wo = im2col(x, kh, kw, strides, pads, dilations)  # columns channel-major
    if group == 1:
        y = be.matmul(cols, w.reshape(cout, -1).T, name)  # (N*Ho*Wo, Cout)
    else:  # per-group products, one batched program: group g sees its own channels
        rows, k = cols.shape[0], cin * kh * kw
        a = cols.reshape(rows, group, k).transpose(1, 0, 2)  # (G, N*Ho*Wo, Cin/G*kh*kw)
        b = w.reshape(group, cout // group, k).transpose(0, 2, 1)  # (G, K, Cout/G)
        y = be.matmul(a, b, name, weight=True).transpose(1, 0, 2).reshape(rows, cout)
    y = y.reshape(x.shape[0], ho, wo, cout).transpose(0, 3, 1, 2)
    return y + bias.reshape(1, -1, 1, 1) if bias is not None else y


def _gemm(be: Backend, name: str, a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0, **_):
    y = be.matmul(a.T if transA else a, b.T if transB else b, name) * np.float32(alpha)
    return y + np.float32(beta) * c if c is not None else y


def _pool(
    x, kernel_shape, strides=None, pads=None, reduce=np.max, ceil_mode=0, count_include_pad=0, **_
):
    """ONNX MaxPool / AveragePool over the last two axes (strides default 1). With `ceil_mode`
    the last window may run past the padded input; that part is never counted, and an average
    divides by the window's elements inside the input (with its padding if
    `count_include_pad`), as PyTorch's pooling does. A kernel larger than the input is clipped
    to it: the positions beyond hold nothing."""
    strides, pads = strides or [1, 1], pads or [0, 0, 0, 0]
    fill = -np.inf if reduce is np.max else 0.0
    inside = np.ones(x.shape[2:], np.float32)
    sizes, kernel, extra = [], [], []
    for axis in range(2):
        padded = x.shape[2 + axis] + pads[axis] + pads[axis + 2]
        k, s = int(kernel_shape[axis]), int(strides[axis])
        rounding = math.ceil if ceil_mode else math.floor
        o = rounding((padded - k) / s) + 1
        if ceil_mode and (o - 1) * s >= x.shape[2 + axis] + pads[axis]:
            o -= 1  # the last window must start inside the input or its leading padding
        k = min(k, padded)
        sizes.append(o)
        kernel.append(k)
        extra.append(max(0, (o - 1) * s + k - padded))
    widths = [(pads[0], pads[2] + extra[0]), (pads[1], pads[3] + extra[1])]
    x = np.pad(x, ((0, 0), (0, 0), *widths), constant_values=fill)
    ho, wo = sizes
    out = np.full((*x.shape[:2], ho, wo), fill, np.float32)
    if count_include_pad:
        inside = np.pad(inside, ((pads[0], pads[2]), (pads[1], pads[3])), constant_values=1)
        widths = [(0, extra[0]), (0, extra[1])]
    count = np.pad(inside, widths)
    counted = np.zeros((ho, wo), np.float32)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            rows, cols = (
                slice(i, i + strides[0] * ho, strides[0]),
                slice(j, j + strides[1] * wo, strides[1]),
            )
            win = x[:, :, rows, cols]
            out = np.maximum(out, win) if reduce is np.max else out + win
            counted += count[rows, cols]
    return out if reduce is np.max else out / np.maximum(counted, 1)


def einsum(spec: str, operands: list, matmul: Callable) -> np.ndarray:
    """numpy einsum `spec`; a two-operand contraction as one batched product `matmul(a, b)`
    of (batch, m, k) by (batch, k, n), so a chip backend does the multiply-accumulates (the
    grouping of `costs.einsum`). One operand (a permutation or a sum) is numpy's own."""
    equation = spec.replace(" ", "")
    lhs, arrow, out = equation.partition("->")
    terms = lhs.split(",")
    if not arrow or "." in equation or len(terms) != len(operands):
        raise WorkloadError(f"einsum {spec!r}: only explicit 'ab,bc->ac' equations run")
    if len(operands) == 1:
        return np.einsum(equation, operands[0])
    if (groups := einsum_groups(terms, out)) is None:
        raise WorkloadError(f"einsum {spec!r}: only one product of two operands runs")
    batch, rows, cols, k = groups
    (a, b), (x, y) = terms, operands
    size = dict(zip(a, x.shape, strict=True)) | dict(zip(b, y.shape, strict=True))
    dims = [math.prod(size[c] for c in g) for g in (batch, rows, k, cols)]
    x = np.transpose(x, [a.index(c) for c in batch + rows + k]).reshape(dims[:3])
    y = np.transpose(y, [b.index(c) for c in batch + k + cols]).reshape(dims[0], dims[2], dims[3])
    z = np.asarray(matmul(x, y)).reshape([size[c] for c in batch + rows + cols])
    return np.transpose(z, [(batch + rows + cols).index(c) for c in out])


def _resize(x, roi=None, scales=None, sizes=None, mode="nearest", **attrs):
    """ONNX Resize, nearest mode with the 'asymmetric' coordinates and 'floor' rounding that
    PyTorch's nearest upsampling exports (out index i reads input floor(i / scale))."""
    transform = attrs.get("coordinate_transformation_mode", "half_pixel")
    rounding = attrs.get("nearest_mode", "round_prefer_floor")
    if mode != "nearest" or transform != "asymmetric" or rounding != "floor":
        raise WorkloadError(
            f"Resize: only mode 'nearest' with asymmetric coordinates and floor rounding runs, "
            f"not {mode!r}/{transform!r}/{rounding!r}"
        )
    if sizes is not None and len(sizes):
        out = [int(v) for v in sizes]
        scale = [o / i for o, i in zip(out, x.shape, strict=True)]
    else:
        scale = [float(v) for v in scales]
        out = [int(math.floor(i * f)) for i, f in zip(x.shape, scale, strict=True)]
    for axis, (n, f) in enumerate(zip(out, scale, strict=True)):
        if n != x.shape[axis]:
            index = np.minimum(np.floor(np.arange(n) / f).astype(np.int64), x.shape[axis] - 1)
            x = np.take(x, index, axis=axis)
    return x


def _slice(x, starts, ends, axes=None, steps=None):
    idx = [slice(None)] * x.ndim
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        idx[int(a)] = slice(int(s), int(max(min(e, 2**62), -(2**62))), int(st))
    return x[tuple(idx)]


def _reshape(x, shape, allowzero=0, **_):
    shape = [x.shape[i] if (d == 0 and not allowzero) else int(d) for i, d in enumerate(shape)]
    return x.reshape(shape)


def _squeeze(x, axes=None, **kw):
    axes = kw.get("axes", axes)
    return np.squeeze(x, tuple(int(a) for a in axes)) if axes is not None else np.squeeze(x)


def _unsqueeze(x, axes=None, **kw):
    for a in sorted(int(a) % (x.ndim + len(axes)) for a in axes):
        x = np.expand_dims(x, a)
    return x


def _split(x, split=None, axis=0, num_outputs=None, **_):
    if split is None:
        return tuple(np.array_split(x, num_outputs, axis=axis))
    return tuple(np.split(x, np.cumsum(split)[:-1], axis=axis))


def _argmax(x, axis, keepdims, last):
    y = x.shape[axis] - 1 - np.argmax(np.flip(x, axis), axis) if last else np.argmax(x, axis)
    return np.expand_dims(y, axis) if keepdims else y


def _gather_nd(x, indices, batch_dims=0, **_):
    """ONNX GatherND (batch_dims 0): each index row picks x[i0, i1, ...] (CLIP's pooled
    token, x[batch, argmax(ids)])."""
    if batch_dims:
        raise WorkloadError("GatherND: only batch_dims 0 runs")
    indices = indices.astype(np.int64)
    return x[tuple(indices[..., j] for j in range(indices.shape[-1]))]


def _reduce(fn: Callable) -> Callable:
    """An ONNX Reduce* op: axes an attribute (older opsets) or the second input (opset 18);
    none given reduces everything unless `noop_with_empty_axes`."""

    def run(x, axes=None, keepdims=1, noop_with_empty_axes=0, **_):
        if axes is None or not len(axes):
            if noop_with_empty_axes:
                return x
            return fn(x, axis=None, keepdims=bool(keepdims))
        return fn(x, axis=tuple(int(a) for a in np.ravel(axes)), keepdims=bool(keepdims))

    return run


def _cumsum(x, axis, exclusive=0, reverse=0, **_):
    """ONNX CumSum (RoBERTa's position ids: a running count of the mask)."""
    axis = int(np.ravel(axis)[0])
    y = np.flip(x, axis) if reverse else x
    y = np.cumsum(y, axis=axis, dtype=x.dtype)
    if exclusive:
        y = np.delete(np.insert(y, 0, 0, axis=axis), -1, axis=axis)
    return np.flip(y, axis) if reverse else y


def _trilu(x, k=None, upper=1, **_):
    k = 0 if k is None else int(k)
    return np.triu(x, k) if upper else np.tril(x, k)


_NUMPY: dict[str, Callable] = {
    "Trilu": _trilu,
    "Identity": lambda x, **_: x,
    "Add": lambda a, b, **_: a + b,
    "Sub": lambda a, b, **_: a - b,
    "Mul": lambda a, b, **_: a * b,
    "Div": lambda a, b, **_: a / b if a.dtype.kind == "f" else a // b,
    "Pow": lambda a, b, **_: np.power(a, b),
    "Sqrt": lambda x, **_: np.sqrt(x),
    "Exp": lambda x, **_: np.exp(x),
    "Neg": lambda x, **_: -x,
    "Tanh": lambda x, **_: np.tanh(x),
    "Erf": lambda x, **_: _erf(x),
    "Relu": lambda x, **_: np.maximum(x, 0),
    "Sigmoid": lambda x, **_: 1 / (1 + np.exp(-x)),
    "Softmax": lambda x, axis=-1, **_: _softmax(x, axis),
    "ReduceMean": lambda x, axes=None, keepdims=1, **_: x.mean(
        axis=tuple(axes), keepdims=bool(keepdims)
    ),
    "LayerNormalization": _layernorm,
    "InstanceNormalization": _instance_norm,
    "Transpose": lambda x, perm=None, **_: np.transpose(x, perm),
    "Reshape": _reshape,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Flatten": lambda x, axis=1, **_: x.reshape(math.prod(x.shape[:axis]), -1),
    "Concat": lambda *xs, axis=0, **_: np.concatenate(xs, axis=axis),
    "Shape": lambda x, **_: np.array(x.shape, np.int64),
    "Gather": lambda x, i, axis=0, **_: np.take(x, i, axis=axis),
    "Slice": lambda x, s, e, a=None, st=None, **_: _slice(x, s, e, a, st),
    "Expand": lambda x, s, **_: x * np.ones(s, x.dtype),
    "Where": lambda c, a, b, **_: np.where(c, a, b),
    "Equal": lambda a, b, **_: a == b,
    "Less": lambda a, b, **_: a < b,
    "LessOrEqual": lambda a, b, **_: a <= b,
    "Greater": lambda a, b, **_: a > b,
    "GreaterOrEqual": lambda a, b, **_: a >= b,
    "Not": lambda a, **_: np.logical_not(a),
    "And": lambda a, b, **_: np.logical_and(a, b),
    "Or": lambda a, b, **_: np.logical_or(a, b),
    "IsNaN": lambda a, **_: np.isnan(a),
    "IsInf": lambda a, detect_negative=1, detect_positive=1, **_: (
        (np.isposinf(a) if detect_positive else False)
        | (np.isneginf(a) if detect_negative else False)
    ),
    "Reciprocal": lambda a, **_: np.float32(1) / a,
    "Gelu": _gelu,
    "Max": lambda *xs, **_: np.maximum.reduce(np.broadcast_arrays(*xs)),
    "Min": lambda *xs, **_: np.minimum.reduce(np.broadcast_arrays(*xs)),
    "Abs": np.abs,
    "Cos": lambda a, **_: np.cos(a),
    "Sin": lambda a, **_: np.sin(a),
    "Log": lambda a, **_: np.log(a),
    "ArgMax": lambda x, axis=0, keepdims=1, select_last_index=0, **_: _argmax(
        x, axis, keepdims, select_last_index
    ),
    "Resize": _resize,
    "ReduceSum": _reduce(np.sum),
    "ReduceMax": _reduce(np.max),
    "ReduceMin": _reduce(np.min),
    "ReduceProd": _reduce(np.prod),
    "GatherND": _gather_nd,
    "CumSum": _cumsum,
    "GatherElements": lambda x, i, axis=0, **_: np.take_along_axis(x, i.astype(np.int64), axis),
    "Cast": lambda x, to=1, **_: x.astype(
        np.float32 if to == 1 else np.int64 if to == 7 else bool if to == 9 else x.dtype
    ),
    "MaxPool": lambda x, **kw: _pool(x, **kw),
    "AveragePool": lambda x, **kw: _pool(x, reduce=np.mean, **kw),
    "GlobalAveragePool": lambda x, **_: x.mean(axis=(2, 3), keepdims=True),
    "BatchNormalization": lambda x, s, b, m, v, epsilon=1e-5, **_: (
        (x - m.reshape(1, -1, 1, 1))
        / np.sqrt(v.reshape(1, -1, 1, 1) + np.float32(epsilon))
        * s.reshape(1, -1, 1, 1)
        + b.reshape(1, -1, 1, 1)
    ),
    "Range": lambda s, e, d, **_: np.arange(s, e, d),
    "ConstantOfShape": lambda s, value=None, **_: np.full(
        s,
        0.0 if value is None else value.reshape(()),
        value.dtype if value is not None else np.float32,
    ),
}


def _attrs(onnx, node) -> dict:
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if a.type == onnx.AttributeProto.TENSOR:
            v = onnx.numpy_helper.to_array(v)
        elif isinstance(v, bytes):
            v = v.decode()
        out[a.name] = v
    return out


def load_model(path: Path, *, weights: bool = True):
    """The ONNX model at `path` with its weights (a chipforge error when it cannot be read);
    `weights=False` leaves external weight files unread (`load_weights` reads them later)."""
    onnx = require("onnx", "an ONNX model")
    try:
        return onnx.load(str(path), load_external_data=weights)
    except Exception as exc:  # onnx raises DecodeError, OSError, ... for a damaged file
        raise WorkloadError(
            f"workload {path} is not a readable ONNX model ({type(exc).__name__}); "
            "re-export it (torch.onnx.export) or check that the file is complete"
        ) from None


def _guard(name: str, op_type: str, args: list, attrs: dict, max_bytes: float) -> None:
    """Refuse a node whose output (known from its inputs before it is computed: a
    ConstantOfShape, Range, Expand, Gather or broadcast) would not fit `max_bytes`."""
    if op_type not in SIZED or any(a is None for a in args[:1]):
        return
    try:
        elements = output_size(op_type, [np.asarray(a) for a in args if a is not None], attrs)
    except (ValueError, IndexError, TypeError):
        return  # the op itself will say what is wrong
    if not elements * 4 <= max_bytes:
        raise WorkloadError(
            f"node {name} ({op_type}) would make a tensor of {elements:.3g} elements "
            f"({elements * 4:.3g} bytes in fp32), over the {max_bytes:.3g}-byte memory budget; "
            "raise it with --max-memory if the model really needs it"
        )


def run_onnx(
    model, feeds: dict[str, np.ndarray], backend: Backend, *, on_node=None, max_bytes=math.inf
) -> dict:
    """Evaluate `model` on `feeds`; returns {node output name: value} for every node output
    (graph outputs included). `on_node(node_name, op_type)` is called after each node. A node
    whose output would exceed `max_bytes` is refused before it runs."""
    onnx = require("onnx", "an ONNX model")
    env: dict[str, np.ndarray] = {
        t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer
    }
    env |= {  # float inputs in fp32; ids, masks and positions keep their integer type
        k: np.asarray(v, np.float32 if np.asarray(v).dtype.kind == "f" else None)
        for k, v in feeds.items()
    }
    env = {
        k: v.astype(np.float32, copy=False) if v.dtype.kind == "f" else v for k, v in env.items()
    }
    values: dict[str, np.ndarray] = {}
    live = set(feeds)  # values that depend on an input; the rest is constant folding, in fp32
    folding, folded = Backend("fp32"), set()  # folded: outputs of constant folding
    nodes = list(model.graph.node)
    chains = onnx_attention.find(model) if backend.mode.startswith("chip") else {}
    deferred = {i for chain in chains.values() for i in chain.skipped}

    def execute(index: int, outs=None) -> None:
        node = nodes[index]
        name = node.name or f"{node.op_type}_{index}"
        dynamic = any(i in live for i in node.input)
        if outs is None:
            args = [env[i] if i else None for i in node.input]
            if dynamic and backend.rounds_bf16:  # a folded constant, in the chip's format
                args = [
                    bf16(a) if i in folded and a.dtype.kind == "f" else a
                    for i, a in zip(node.input, args, strict=True)
                ]
            attrs = _attrs(onnx, node)
            _guard(name, node.op_type, args, attrs, max_bytes)
            outs = _execute(backend if dynamic else folding, name, node.op_type, args, attrs)
        for out_name, value in zip(node.output, outs, strict=False):
            value = np.asarray(value)
            (live if dynamic else folded).add(out_name)
            if value.dtype.kind == "f":
                value = value.astype(np.float32, copy=False)
                if backend.rounds_bf16 and node.op_type not in MATRIX_OPS and dynamic:
                    value = bf16(value)
            env[out_name] = values[out_name] = value

    for index, node in enumerate(nodes):
        if index in chains:  # the P V product of attention: the fused program, or as written
            name = node.name or f"attention_{index}"
            out = onnx_attention.fused(chains[index], env, backend, name)
            if out is None:
                for skipped in chains[index].skipped:
                    execute(skipped)
            execute(index, None if out is None else (out,))
        elif index not in deferred:
            execute(index)
        if on_node:
            on_node(node.name or f"{node.op_type}_{index}", node.op_type)
    return values


def _execute(be: Backend, name: str, op_type: str, args: list, attrs: dict) -> tuple:
    if op_type == "Constant":
        return (attrs["value"],)
    if op_type == "MatMul":
        return (be.matmul(args[0], args[1], name),)
    if op_type == "Gemm":
        return (_gemm(be, name, *args, **attrs),)
    if op_type == "Conv":
        return (_conv(be, name, *args, **attrs),)
    if op_type == "Einsum":
        return (einsum(attrs["equation"], args, lambda a, b: be.matmul(a, b, name)),)
    if op_type == "Split":
        return _split(*args, **attrs)
    if op_type not in _NUMPY:
        raise WorkloadError(
            f"node {name}: op type {op_type} has no functional semantics yet; supported: "
            f"{', '.join(sorted([*_NUMPY, *MATRIX_OPS, 'Constant', 'Einsum', 'Split']))}"
        )
    while args and args[-1] is None:
        args.pop()
    return (_NUMPY[op_type](*args, **attrs),)


def _check_location(path: Path, name: str, info) -> None:
    """An external weight file must be a regular file inside the model's folder (no absolute
    path, no `..`, no symbolic link), read at a non-negative offset and length: checked before
    anything outside the folder is even looked at."""
    where = f"`workload` {path.name}: external weights of {name!r}"
    loc = str(info.location)
    parts = Path(loc).parts
    if not loc or Path(loc).is_absolute() or ".." in parts or "\\" in loc or "\0" in loc:
        raise WorkloadError(f"{where} name {loc!r}, not a file inside the model's folder")
    target = path.parent / loc
    inside = target.resolve().is_relative_to(path.parent.resolve())
    if not inside or target.is_symlink() or not target.is_file():
        raise WorkloadError(f"{where}: {loc!r} is not a regular file in the model's folder")
    for key in ("offset", "length"):
        v = getattr(info, key, None)
        if v is not None and (not isinstance(v, int) or v < 0):
            raise WorkloadError(f"{where}: `{key}` must be a whole number >= 0, not {v!r}")


def load_weights(model, path: Path) -> None:
    """Read `model`'s external weight files (next to `path`), each first checked to hold no
    more bytes than its tensor's dims declare: a model's weights are sized by its checked
    headers (`onnx_import.check_initializer`), never by what a file happens to contain."""
    onnx = require("onnx", "an ONNX model")
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_model

    for t in model.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        try:
            info = ExternalDataInfo(t)
        except ValueError as exc:  # a negative or non-integer offset or length
            raise WorkloadError(
                f"`workload` {path.name}: external weights of {t.name!r}: {exc}"
            ) from None
        declared = (
            math.prod(t.dims) * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        )
        _check_location(path, t.name, info)
        try:
            available = (path.parent / info.location).stat().st_size - (info.offset or 0)
        except (OSError, ValueError):
            available = None  # onnx names the missing file
        stored = info.length or available
        if stored is not None and stored > declared:
            raise WorkloadError(
                f"`workload` {path.name}: external weights of {t.name!r} ({info.location}) are "
                f"{stored:.3g} bytes, more than the {declared:.3g} its dims {list(t.dims)} "
                "declare; the file is altered or belongs to another model"
            )
    try:
        load_external_data_for_model(model, str(path.parent))
    except Exception as exc:  # a missing file, a path outside the model's folder, ...
        why = (str(exc).strip().splitlines() or [""])[0]
        raise WorkloadError(
            f"`workload` {path.name}: its external weights cannot be read "
            f"({type(exc).__name__}: {why})"
        ) from None
