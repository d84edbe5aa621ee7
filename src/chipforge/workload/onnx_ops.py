"""The ONNX ops the importer knows, as data: op type -> (canonical kind, input positions,
attributes from the node's ONNX attributes). Kinds are those of `costs.RULES`, plus `layout`
(free) and `static` (values known ahead: Shape, Constant, ...)."""

from __future__ import annotations

from collections.abc import Callable

Attrs = Callable[[dict], dict]


def _none(a: dict) -> dict:
    return {}


def _gemm(a: dict) -> dict:
    return {"trans_a": bool(a.get("transA", 0)), "trans_b": bool(a.get("transB", 0))}


def _conv(a: dict) -> dict:
    return {"stride": tuple(a.get("strides", (1,))), "groups": int(a.get("group", 1))}


def _conv_transpose(a: dict) -> dict:
    return _conv(a) | {"transposed": True}


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _window(a: dict) -> dict:
    return {"window": tuple(a.get("kernel_shape", (1,)))}


Entry = tuple[str, tuple[int, ...] | None, Attrs]
ONNX_OPS: dict[str, Entry] = {
    "MatMul": ("matmul", (0, 1), _none),
    "Gemm": ("matmul", (0, 1), _gemm),
    "Conv": ("conv", (0, 1), _conv),
    "ConvTranspose": ("conv", (0, 1), _conv_transpose),
    "Softmax": ("softmax", None, _none),
    "LogSoftmax": ("softmax", None, _none),
    "ReduceLogSumExp": ("softmax", None, _none),
    "LayerNormalization": ("layer_norm", None, _none),
    "SimplifiedLayerNormalization": ("rms_norm", None, _none),  # onnxruntime's RMSNorm
    "RMSNormalization": ("rms_norm", None, _none),  # ONNX opset 23
    "BatchNormalization": ("batch_norm", None, _none),
    "InstanceNormalization": ("group_norm", None, _none),
    "GroupNormalization": ("group_norm", None, _none),
    "MaxPool": ("pool", (0,), _window),
    "AveragePool": ("pool", (0,), _window),
    "GlobalAveragePool": ("mean", None, _none),
    "GlobalMaxPool": ("max", None, _none),
    "GatherElements": ("gather", None, _none),
    "Einsum": ("einsum", None, lambda a: {"equation": _text(a.get("equation", ""))}),
    # Resize: nearest-neighbour up/down-sampling only moves data; other modes interpolate
    "Resize": ("resize", (0,), lambda a: {"mode": _text(a.get("mode", "nearest"))}),
    "GatherND": ("gather", None, _none),
    "ScatterElements": ("gather", None, lambda a: {"accumulate": a.get("reduction") == b"add"}),
    "ScatterND": ("gather", None, lambda a: {"accumulate": a.get("reduction") == b"add"}),
}

ELEMENTWISE = {
    "Add": "add",
    "Sub": "sub",
    "Mul": "mul",
    "Div": "div",
    "Neg": "neg",
    "Abs": "abs",
    "Max": "maximum",
    "Min": "minimum",
    "Where": "where",
    "Relu": "relu",
    "Equal": "eq",
    "Less": "lt",
    "LessOrEqual": "le",
    "Greater": "gt",
    "GreaterOrEqual": "ge",
    "Not": "not",
    "IsNaN": "ne",  # x != x: one compare (the dynamo exporter's guard in masked softmax)
    "IsInf": "eq",
    "And": "and",
    "Or": "or",
    "Xor": "xor",
    "Floor": "floor",
    "Ceil": "ceil",
    "Round": "round",
    "Sign": "sign",
    "Cast": "cast",
    "CastLike": "cast",
    "Pow": "pow",
    "Clip": "clamp",
    "HardSigmoid": "clamp",
    "LeakyRelu": "leaky_relu",
    "PRelu": "leaky_relu",
    "Exp": "exp",
    "Log": "log",
    "Sqrt": "sqrt",
    "Reciprocal": "reciprocal",
    "Tanh": "tanh",
    "Erf": "erf",
    "Sin": "sin",
    "Cos": "cos",
    "Sigmoid": "sigmoid",
    "HardSwish": "hardswish",
    "Softplus": "softplus",
    "Gelu": "gelu",
    "Trilu": "trilu",
    "ReduceMean": "mean",
    "ReduceSum": "sum",
    "ReduceMax": "max",
    "ReduceMin": "min",
    "ReduceProd": "prod",
    "ReduceL2": "sum",
    "ReduceSumSquare": "sum",
    "ArgMax": "argmax",
    "ArgMin": "argmin",
    "CumSum": "cumsum",
}

LAYOUT = set(
    [
        "Reshape",
        "Transpose",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Identity",
        "Concat",
        "Split",
        "Slice",
        "Expand",
        "Tile",
        "Pad",
        "Dropout",
        "DepthToSpace",
        "SpaceToDepth",
    ]
)
STATIC = set(["Shape", "Size", "Constant", "ConstantOfShape", "Range", "EyeLike"])


def classify(op_type: str, attrs: dict) -> tuple[str, tuple[int, ...] | None, dict]:
    """The canonical kind of an ONNX op, the positions of its inputs (None: all) and its
    attributes. Gather and TopK, which need their operands, are the importer's business."""
    if op_type in ONNX_OPS:
        kind, inputs, make = ONNX_OPS[op_type]
        return kind, inputs, make(attrs)
    if op_type in ELEMENTWISE:
        return ELEMENTWISE[op_type], None, {}
    if op_type in LAYOUT:
        return "layout", None, {}
    if op_type in STATIC:
        return "static", None, {}
    return "unsupported", None, {}
