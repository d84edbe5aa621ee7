"""Constant folding for ONNX shape arithmetic, in numpy.

Exporters compute reshape targets at run time (Shape -> Gather -> Unsqueeze -> Concat ->
Reshape), which ONNX shape inference cannot always follow. Once the input sizes are bound,
those values are constants: `evaluate` computes the common shape ops here so the importer can
hand the results to per-node shape inference as known data. Ops not listed are left alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

MAX_FOLD = 1 << 16  # elements: larger constants are left to the run time (and stay static)

Arrays = list[np.ndarray | None]


def _axes(x: Arrays, a: dict) -> list[int]:
    if len(x) > 1 and x[1] is not None:
        return [int(i) for i in np.ravel(x[1])]
    return list(a.get("axes", []))


def _unsqueeze(x: Arrays, a: dict) -> np.ndarray:
    out, axes = x[0], _axes(x, a)
    rank = out.ndim + len(axes)
    for axis in sorted(i % rank for i in axes):
        out = np.expand_dims(out, axis)
    return out


def _squeeze(x: Arrays, a: dict) -> np.ndarray:
    axes = _axes(x, a)
    return np.squeeze(x[0], axis=tuple(axes)) if axes else np.squeeze(x[0])


def _slice(x: Arrays, a: dict) -> np.ndarray:
    data, starts, ends = x[0], np.ravel(x[1]), np.ravel(x[2])
    axes = np.ravel(x[3]) if len(x) > 3 and x[3] is not None else range(len(starts))
    steps = np.ravel(x[4]) if len(x) > 4 and x[4] is not None else [1] * len(starts)
    index = [slice(None)] * data.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=False):
        big = np.iinfo(np.int64).max // 2
        index[int(ax)] = slice(int(max(min(s, big), -big)), int(max(min(e, big), -big)), int(st))
    return data[tuple(index)]


def _reshape(x: Arrays, a: dict) -> np.ndarray:
    shape = [int(d) for d in np.ravel(x[1])]
    if not a.get("allowzero", 0):
        shape = [x[0].shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return np.reshape(x[0], shape)


def _div(x: Arrays, a: dict) -> np.ndarray:
    if np.issubdtype(x[0].dtype, np.integer):
        return np.trunc(x[0] / x[1]).astype(x[0].dtype)
    return x[0] / x[1]


def _constant_of_shape(x: Arrays, a: dict) -> np.ndarray:
    value = a.get("value")
    fill = np.ravel(value)[0] if value is not None else np.float32(0)
    return np.full([int(d) for d in np.ravel(x[0])], fill, dtype=np.asarray(fill).dtype)


def _range(x: Arrays, a: dict) -> np.ndarray:
    start, limit, delta = (np.ravel(v)[0] for v in x[:3])
    return np.arange(start, limit, delta, dtype=np.asarray(x[0]).dtype)


def _expand(x: Arrays, a: dict) -> np.ndarray:
    shape = np.broadcast_shapes(x[0].shape, tuple(int(d) for d in np.ravel(x[1])))
    return np.broadcast_to(x[0], shape).copy()


def _reduce_prod(x: Arrays, a: dict) -> np.ndarray:
    axes = _axes(x, a)
    keep = bool(a.get("keepdims", 1))
    return np.prod(x[0], axis=tuple(axes) if axes else None, keepdims=keep)


def _trilu(x: Arrays, a: dict) -> np.ndarray:
    k = int(np.ravel(x[1])[0]) if len(x) > 1 and x[1] is not None else 0
    return np.triu(x[0], k) if a.get("upper", 1) else np.tril(x[0], k)


def _where(x: Arrays, a: dict) -> np.ndarray:
    return np.where(x[0], x[1], x[2])


Rule = Callable[[Arrays, dict], np.ndarray]
EVAL: dict[str, Rule] = {
    "Identity": lambda x, a: x[0],
    "Gather": lambda x, a: np.take(x[0], x[1], axis=a.get("axis", 0)),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": lambda x, a: np.concatenate([np.atleast_1d(v) for v in x], axis=a.get("axis", 0)),
    "Slice": _slice,
    "Reshape": _reshape,
    "Transpose": lambda x, a: np.transpose(x[0], a.get("perm")),
    "Add": lambda x, a: x[0] + x[1],
    "Sub": lambda x, a: x[0] - x[1],
    "Mul": lambda x, a: x[0] * x[1],
    "Div": _div,
    "Mod": lambda x, a: np.fmod(x[0], x[1]) if a.get("fmod") else np.mod(x[0], x[1]),
    "Pow": lambda x, a: np.power(x[0], x[1]).astype(x[0].dtype),
    "Sqrt": lambda x, a: np.sqrt(x[0]),
    "Neg": lambda x, a: -x[0],
    "Abs": lambda x, a: np.abs(x[0]),
    "Floor": lambda x, a: np.floor(x[0]),
    "Ceil": lambda x, a: np.ceil(x[0]),
    "Reciprocal": lambda x, a: 1 / x[0],
    "Equal": lambda x, a: np.equal(x[0], x[1]),
    "Less": lambda x, a: np.less(x[0], x[1]),
    "Greater": lambda x, a: np.greater(x[0], x[1]),
    "LessOrEqual": lambda x, a: np.less_equal(x[0], x[1]),
    "GreaterOrEqual": lambda x, a: np.greater_equal(x[0], x[1]),
    "Not": lambda x, a: np.logical_not(x[0]),
    "And": lambda x, a: np.logical_and(x[0], x[1]),
    "Or": lambda x, a: np.logical_or(x[0], x[1]),
    "Where": _where,
    "Min": lambda x, a: np.minimum.reduce(np.broadcast_arrays(*x)),
    "Max": lambda x, a: np.maximum.reduce(np.broadcast_arrays(*x)),
    "Range": _range,
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
    "ReduceProd": _reduce_prod,
    "Trilu": _trilu,
}


def _range_size(x: Arrays) -> float:
    start, limit, delta = (float(np.ravel(v)[0]) for v in x[:3])
    count = (limit - start) / delta if delta else math.inf
    return (
        math.inf
        if math.isnan(count)
        else max(0.0, math.ceil(count) if math.isfinite(count) else count)
    )


def _dims(v: np.ndarray) -> tuple[float, ...]:
    """A shape tensor's entries as floats (no overflow in their product)."""
    return tuple(float(d) for d in np.ravel(v))


def _broadcast_size(shapes: list[tuple[float, ...]]) -> float:
    rank = max((len(s) for s in shapes), default=0)
    padded = [(1.0,) * (rank - len(s)) + tuple(s) for s in shapes]
    return math.prod(max(axis) for axis in zip(*padded, strict=True)) if rank else 1.0


def output_size(op_type: str, x: Arrays, a: dict) -> float:
    """Elements of the node's output, from its inputs' shapes and values alone (nothing is
    computed): a size a hostile model names (ConstantOfShape of [1e6, 1e6], Range to 1e12,
    a Gather or broadcast of two large operands) is known before any memory is asked for.
    An upper bound where the op can only shrink its input (Slice, Squeeze, ReduceProd)."""
    given = [v for v in x if v is not None]
    if op_type == "ConstantOfShape":
        return math.prod(_dims(x[0])) if given else 0.0
    if op_type == "Range":
        return _range_size(x)
    if op_type == "Expand":
        return _broadcast_size([x[0].shape, _dims(x[1])])
    if op_type == "Gather":
        axis = int(a.get("axis", 0)) % max(1, x[0].ndim)
        return math.prod(x[0].shape[:axis]) * x[1].size * math.prod(x[0].shape[axis + 1 :])
    if op_type == "Concat":
        return float(sum(v.size for v in given))
    if op_type in ("Add", "Sub", "Mul", "Div", "Mod", "Pow", "Equal", "Less", "Greater"):
        return _broadcast_size([v.shape for v in given])
    if op_type in ("LessOrEqual", "GreaterOrEqual", "And", "Or", "Where", "Min", "Max"):
        return _broadcast_size([v.shape for v in given])
    return float(max((v.size for v in given), default=1))  # elementwise or shrinking


def evaluate(op_type: str, inputs: Arrays, attrs: dict, cast: Callable) -> np.ndarray | None:
    """The value of a node whose inputs are all known, or None when we do not evaluate it
    (not a listed op, an output over MAX_FOLD elements — known before it is computed — or
    numpy refuses)."""
    if op_type == "Cast":
        return np.asarray(inputs[0]).astype(cast(attrs["to"]))
    if any(v is not None and v.size > MAX_FOLD for v in inputs):
        return None
    rule = EVAL.get(op_type)
    if rule is None:
        return None
    try:
        if not output_size(op_type, inputs, attrs) <= MAX_FOLD:  # NaN too
            return None
        with np.errstate(all="ignore"):
            out = np.asarray(rule(inputs, attrs))
    except (ValueError, IndexError, TypeError):
        return None
    return out if out.size <= MAX_FOLD else None
