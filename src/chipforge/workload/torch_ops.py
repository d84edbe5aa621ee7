"""The aten ops the PyTorch importer knows, as data: aten name -> (canonical kind, the argument
names that are the node's inputs in order (None: every tensor argument), attributes).

Both levels of an exported program are covered: the ops `torch.export` records (linear,
layer_norm, scaled_dot_product_attention, ...) and the core ATen set `run_decompositions()`
lowers them to (addmm, native_layer_norm, bmm, ...). `KEEP` lists the high-level ops the
importer asks `run_decompositions()` to leave whole.
"""

from __future__ import annotations

from collections.abc import Callable

Attrs = Callable[[dict], dict]


def _none(args: dict) -> dict:
    return {}


def _conv(args: dict) -> dict:
    stride = args.get("stride", 1)
    return {
        "stride": tuple(stride) if isinstance(stride, (list, tuple)) else (stride,),
        "groups": args.get("groups", 1),
        "transposed": bool(args.get("transposed", False)),
    }


def _sdpa(args: dict) -> dict:
    mask = getattr(args.get("attn_mask"), "name", None)  # a graph value (Ref or fx.Node)
    return {"causal": bool(args.get("is_causal", False))} | ({"mask": mask} if mask else {})


def _window(args: dict) -> dict:
    kernel = args.get("kernel_size", 1)
    return {"window": tuple(kernel) if isinstance(kernel, (list, tuple)) else (kernel,)}


def _k(args: dict) -> dict:
    return {"k": int(args.get("k", 2))}


def _accumulate(args: dict) -> dict:
    return {"accumulate": True}


def _put(args: dict) -> dict:
    return {"accumulate": bool(args.get("accumulate", False))}


Entry = tuple[str, tuple[str, ...] | None, Attrs]
SDPA = ("query", "key", "value")
TORCH_OPS: dict[str, Entry] = {
    # matrix work: the inputs are A and B of A @ B (linear's weight is stored (out, in))
    "linear": ("matmul", ("input", "weight"), lambda a: {"trans_b": True}),
    "addmm": ("matmul", ("mat1", "mat2"), _none),
    "mm": ("matmul", ("self", "mat2"), _none),
    "bmm": ("matmul", ("self", "mat2"), _none),
    "matmul": ("matmul", ("self", "other"), _none),
    "baddbmm": ("matmul", ("batch1", "batch2"), _none),
    **dict.fromkeys(
        ("conv1d", "conv2d", "conv3d", "convolution", "_convolution"),
        ("conv", ("input", "weight"), _conv),
    ),
    **dict.fromkeys(
        (
            "scaled_dot_product_attention",
            "_scaled_dot_product_flash_attention_for_cpu",
            "_scaled_dot_product_flash_attention",
            "_scaled_dot_product_efficient_attention",
            "_scaled_dot_product_cudnn_attention",
        ),
        ("attention", SDPA, _sdpa),
    ),
    "embedding": ("embedding", ("weight", "indices"), _none),
    "einsum": ("einsum", None, lambda a: {"equation": str(a.get("equation", ""))}),
    # grouped GEMM of mixture-of-experts layers: rows of `input` sorted by expert, one
    # (K, N) weight per expert; transformers' fallback is a custom op (integrations/moe.py)
    "_grouped_mm": ("grouped_mm", ("self", "mat2"), _none),
    "transformers::grouped_mm_fallback": ("grouped_mm", ("input", "weight"), _none),
    # row ops: normalisations and softmax (inputs[0] is the normalised tensor)
    **dict.fromkeys(
        ("softmax", "_softmax", "log_softmax", "_log_softmax", "_safe_softmax", "logsumexp"),
        ("softmax", None, _none),
    ),
    **dict.fromkeys(("layer_norm", "native_layer_norm"), ("layer_norm", None, _none)),
    **dict.fromkeys(("rms_norm", "_fused_rms_norm"), ("rms_norm", None, _none)),
    **dict.fromkeys(
        ("group_norm", "native_group_norm", "instance_norm"), ("group_norm", None, _none)
    ),
    **dict.fromkeys(
        (
            "batch_norm",
            "native_batch_norm",
            "_native_batch_norm_legit",
            "_native_batch_norm_legit_no_training",
            "_native_batch_norm_legit_functional",
            "_batch_norm_with_update",
            "_batch_norm_no_update",
        ),
        ("batch_norm", None, _none),
    ),
    # pooling and index ops
    **dict.fromkeys(
        ("max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "max_pool1d", "avg_pool1d"),
        ("pool", None, _window),
    ),
    **dict.fromkeys(
        ("adaptive_avg_pool2d", "_adaptive_avg_pool2d", "adaptive_avg_pool1d"),
        ("mean", None, _none),
    ),
    **dict.fromkeys(
        (
            "upsample_nearest1d",
            "upsample_nearest2d",
            "upsample_nearest3d",
            "_upsample_nearest_exact1d",
            "_upsample_nearest_exact2d",
            "_upsample_nearest_exact3d",
        ),
        ("resize", ("input",), lambda a: {"mode": "nearest"}),
    ),
    "topk": ("topk", None, _k),
    "sort": ("topk", None, lambda a: {"k": 1024}),
    **dict.fromkeys(
        ("index", "_unsafe_index", "index_select", "gather", "take_along_dim", "scatter"),
        ("gather", None, _none),
    ),
    **dict.fromkeys(("index_add", "scatter_add", "scatter_reduce"), ("gather", None, _accumulate)),
    **dict.fromkeys(("index_put", "_unsafe_index_put"), ("gather", None, _put)),
}

# aten name -> canonical elementwise or reduction kind (costs.ELEMENTWISE and ROW_OPS)
RENAMED = {
    "rsub": "sub",
    "true_divide": "div",
    "clamp_min": "maximum",
    "clamp_max": "minimum",
    "hardtanh": "clamp",
    "logical_not": "not",
    "bitwise_not": "not",
    "logical_and": "and",
    "bitwise_and": "and",
    "logical_or": "or",
    "bitwise_or": "or",
    "logical_xor": "xor",
    "log1p": "log",
    "expm1": "exp",
    "square": "pow",
    "amax": "max",
    "amin": "min",
    "all": "any",
    "std": "var",
    "var_mean": "var",
    "triu": "trilu",
    "tril": "trilu",
    "__and__": "and",  # Python's & | ^ ~ on tensors (torch.export records them so)
    "__or__": "or",
    "__xor__": "xor",
    "__invert__": "not",
    "floor_divide": "div",
    "remainder": "div",
    "fmod": "div",
    "diff": "sub",
    "histc": "sum",  # one bin increment per element
    "bincount": "sum",
}
KNOWN_KINDS = [
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "abs",
    "maximum",
    "minimum",
    "where",
    "relu",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "not",
    "and",
    "or",
    "xor",
    "floor",
    "ceil",
    "round",
    "sign",
    "masked_fill",
    "pow",
    "clamp",
    "leaky_relu",
    "exp",
    "log",
    "sqrt",
    "rsqrt",
    "reciprocal",
    "tanh",
    "erf",
    "sin",
    "cos",
    "sigmoid",
    "silu",
    "hardswish",
    "softplus",
    "gelu",
    "sum",
    "mean",
    "max",
    "min",
    "prod",
    "argmax",
    "argmin",
    "any",
    "var",
    "cumsum",
]

LAYOUT = set(
    [
        "view",
        "_unsafe_view",
        "reshape",
        "permute",
        "transpose",
        "t",
        "expand",
        "expand_as",
        "unsqueeze",
        "squeeze",
        "flatten",
        "unflatten",
        "contiguous",
        "clone",
        "alias",
        "detach",
        "slice",
        "select",
        "split",
        "split_with_sizes",
        "chunk",
        "unbind",
        "cat",
        "stack",
        "narrow",
        "dropout",
        "native_dropout",
        "feature_dropout",
        "getitem",
        "lift_fresh_copy",
        "as_strided",
        "repeat",
        "repeat_interleave",
        "movedim",
        "constant_pad_nd",
        "pad",
        "copy",
        "view_as",
        "type_as",
        "resolve_conj",
        "resolve_neg",
        "pixel_shuffle",
        "roll",
        "flip",
        "_assert_tensor_metadata",
        "_assert_scalar",
        "sym_constrain_range_for_size",
        "sym_size",
        "sym_numel",
        "sym_stride",
        "alias_copy",
        "view_copy",
        "permute_copy",
        "expand_copy",
        "slice_copy",
        "select_copy",
        "unsqueeze_copy",
        "squeeze_copy",
    ]
)
# creation ops: their values depend on no input data (at most on an input's shape)
CREATION = set(
    [
        "zeros",
        "ones",
        "full",
        "empty",
        "arange",
        "scalar_tensor",
        "zeros_like",
        "ones_like",
        "full_like",
        "empty_like",
        "new_zeros",
        "new_ones",
        "new_full",
        "new_empty",
        "fill",
        "empty_strided",
        "lift",
        "linspace",
    ]
)

# high-level ops run_decompositions() is asked to keep whole (when torch defines them)
KEEP = (
    "linear",
    "matmul",
    "conv1d",
    "conv2d",
    "conv3d",
    "scaled_dot_product_attention",
    "layer_norm",
    "rms_norm",
    "group_norm",
    "batch_norm",
    "softmax",
    "log_softmax",
    "gelu",
    "silu",
    "embedding",
    "adaptive_avg_pool2d",
)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def classify(name: str, args: dict) -> tuple[str, tuple[str, ...] | None, dict]:
    """The canonical kind of aten op `name` with named arguments `args`, the argument names
    of its inputs (None: all tensor arguments in order) and its attributes."""
    if name.endswith("_") and not name.endswith("__") and "::" not in name:
        name = name[:-1]  # an in-place variant (add_, div_, index_put_) costs as its op
    if name in TORCH_OPS:
        kind, inputs, attrs = TORCH_OPS[name]
        return kind, inputs, attrs(args)
    if name in ("_to_copy", "to", "_to_dtype"):
        return ("cast" if args.get("dtype") is not None else "layout"), None, {}
    if "::" in name:  # another library's custom op: only the ones listed above
        return "unsupported", None, {}
    kind = RENAMED.get(name, name)
    if name in ("add", "sub") and _number(args.get("other")) and _number(args.get("alpha", 1)):
        # x +/- a Python number: kept, so a sliding-window mask's `q_idx - window` is readable
        return kind, None, {"scalar": args["other"] * args.get("alpha", 1)}
    if kind in KNOWN_KINDS or kind == "trilu":
        return kind, None, {}
    if name in LAYOUT:
        return "layout", None, {}
    if name in CREATION:
        return "static", None, {}
    return "unsupported", None, {}
