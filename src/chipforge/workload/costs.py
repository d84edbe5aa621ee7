"""Cost rules for imported nodes: one function per canonical kind, turning shapes into IR ops.

Matrix work (matmul, conv, attention) becomes `MatMul`, `Conv2d` and `Attention`; an operand
that is a weight (a static value) is the matmul's B, so HBM traffic and residency read right.
Everything else is `Vector` work with its FLOPs and transcendentals per element from the table
below and its bytes from the real operands (every input read once, every output written once,
as the LLM builder's unfused vector ops).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from chipforge.workload.imported import Formats, Node, Program, Value
from chipforge.workload.llm import NORM_FLOPS
from chipforge.workload.ops import Attention, Conv2d, Embedding, MatMul, Op, Vector
from chipforge.workload.routing import expert_groups

# kind: (FLOPs, transcendentals) per element of the output. A transcendental (exp, tanh, erf,
# rsqrt, ...) also counts one FLOP; the vector unit's special-function path (EUP) runs it.
ELEMENTWISE: dict[str, tuple[float, float]] = {
    **dict.fromkeys(
        ("add", "sub", "mul", "div", "neg", "abs", "maximum", "minimum", "where", "relu"), (1, 0)
    ),
    **dict.fromkeys(("eq", "ne", "lt", "le", "gt", "ge", "not", "and", "or", "xor"), (1, 0)),
    **dict.fromkeys(("floor", "ceil", "round", "sign", "cast", "masked_fill", "trilu"), (1, 0)),
    "pow": (1, 0),  # x**2 in a norm is one multiply
    "clamp": (2, 0),  # a max and a min
    "leaky_relu": (2, 0),
    **dict.fromkeys(("exp", "log", "sqrt", "rsqrt", "reciprocal", "tanh", "erf"), (1, 1)),
    **dict.fromkeys(("sin", "cos"), (1, 1)),
    "sigmoid": (2, 1),  # 1 / (1 + exp(-x))
    "silu": (3, 1),  # x * sigmoid(x)
    "hardswish": (4, 0),
    "softplus": (2, 2),  # log(1 + exp(x))
    "gelu": (8, 1),  # tanh approximation, counted as the LLM builder counts it (llm.py)
}
# kind: (FLOPs, transcendentals) per element of the first input (reductions and row ops).
ROW_OPS: dict[str, tuple[float, float]] = {
    **dict.fromkeys(("sum", "mean", "max", "min", "prod", "argmax", "argmin", "any"), (1, 0)),
    "var": (3, 0),  # subtract the mean, square, sum
    "cumsum": (1, 0),
    "softmax": (4, 1),  # max, subtract, exp, sum, divide
    "rms_norm": (NORM_FLOPS, 0),  # as the LLM builder's RMSNorm (llm.py)
    "layer_norm": (NORM_FLOPS + 2, 0),  # RMSNorm's work plus the mean and the bias
    "group_norm": (NORM_FLOPS + 2, 0),
    "batch_norm": (2, 0),  # inference: a per-channel scale and shift
}


def _fmt(p: Program, node: Node, f: Formats) -> str:
    """The vector format: the first float tensor's, else the default."""
    for vid in node.outputs + node.inputs:
        v = p.value(vid)
        if v is not None and v.fmt:
            return f.fmt(v)
    return f.fmt(Value((), None, 4))


def _io_bytes(p: Program, node: Node, f: Formats) -> float:
    return sum(f.nbytes(v) for vid in node.inputs + node.outputs if (v := p.value(vid)))


def _vector(p: Program, node: Node, f: Formats, elements: float, work: tuple) -> list[Op]:
    elements = max(elements, 1)
    return [
        Vector(
            name=node.name,
            elements=elements,
            flops_per_element=work[0],
            transcendentals_per_element=work[1],
            bytes_per_element=_io_bytes(p, node, f) / elements,
            dtype=_fmt(p, node, f),
        )
    ]


def elementwise(p: Program, node: Node, f: Formats) -> list[Op]:
    out = max(p.values[v].numel for v in node.outputs if v in p.values)
    return _vector(p, node, f, out, ELEMENTWISE[node.kind])


def row_op(p: Program, node: Node, f: Formats) -> list[Op]:
    return _vector(p, node, f, p.values[node.inputs[0]].numel, ROW_OPS[node.kind])


def pool(p: Program, node: Node, f: Formats) -> list[Op]:
    window = math.prod(node.attrs.get("window", (1,)))
    return _vector(p, node, f, p.values[node.outputs[0]].numel, (window, 0))


def topk(p: Program, node: Node, f: Formats) -> list[Op]:
    k = max(2, node.attrs.get("k", 2))
    return _vector(p, node, f, p.values[node.inputs[0]].numel, (math.log2(k), 0))


def gather(p: Program, node: Node, f: Formats) -> list[Op]:
    """Index ops move data: no arithmetic (index_add and scatter_add add what they move)."""
    out = p.values[node.outputs[0]].numel
    return _vector(p, node, f, out, (1 if node.attrs.get("accumulate") else 0, 0))


def resize(p: Program, node: Node, f: Formats) -> list[Op]:
    """Nearest-neighbour resizing copies one input element to each output element (data
    movement, as `gather`); an interpolating mode has no rule."""
    if node.attrs.get("mode") != "nearest":
        return unsupported_op(p, node, f)
    return gather(p, node, f)


def einsum_groups(terms: list[str], out: str) -> tuple[list, list, list, list] | None:
    """A two-operand einsum's indices as one batched product: (batch, rows, columns,
    contraction), in both operands and the output, in the first and the output, in the second
    and the output, in both operands only. None for any other number of operands, or an index
    that is in none of these groups (summed in one operand only)."""
    if len(terms) != 2:
        return None
    a, b = terms
    batch = [c for c in out if c in a and c in b]
    rows, cols = [c for c in out if c not in b], [c for c in out if c not in a]
    k = [c for c in a if c in b and c not in out]
    if set(a) | set(b) != set(batch + rows + cols + k):
        return None
    return batch, rows, cols, k


def einsum(p: Program, node: Node, f: Formats) -> list[Op]:
    """`torch.einsum` / ONNX Einsum. One operand: a permutation is free (as a transpose), else
    a sum over the indices it drops. Two operands: a batched matrix product, the indices in
    both operands and the output the batch, in both operands only the contraction (k), in one
    operand and the output its rows (m) or columns (n); 2 batch m n k FLOPs, as torch's own
    lowering to bmm counts. Anything else (ellipses, more operands, an index summed in one
    operand only) has no rule."""
    ins = [p.values[v] for v in node.inputs if v in p.values]
    equation = node.attrs.get("equation", "").replace(" ", "")
    lhs, arrow, out = equation.partition("->")
    terms = lhs.split(",")
    shapes_fit = len(terms) == len(ins) and all(
        len(t) == len(v.shape) for t, v in zip(terms, ins, strict=False)
    )
    if not arrow or "." in equation or not shapes_fit:
        return unsupported_op(p, node, f)
    size = {c: d for t, v in zip(terms, ins, strict=True) for c, d in zip(t, v.shape, strict=True)}
    if len(ins) == 1:
        if sorted(terms[0]) == sorted(out):
            return []
        return _vector(p, node, f, ins[0].numel, ROW_OPS["sum"])
    if (groups := einsum_groups(terms, out)) is None:
        return unsupported_op(p, node, f)
    batch, rows, cols, k = groups
    va, vb = ins
    if va.static and not vb.static:  # the weight is B
        (va, vb), (rows, cols) = (vb, va), (cols, rows)
    m, n, depth = (math.prod(size[c] for c in group) for group in (rows, cols, k))
    batched = math.prod(size[c] for c in batch)
    return [
        MatMul(name=node.name, m=m, n=n, k=depth, batch=batched, weight=vb.static, dtype=f.fmt(va))
    ]


def unsupported_op(p: Program, node: Node, f: Formats) -> list[Op]:
    """An op without a rule: 1 FLOP per element of its largest operand (output, else input)."""
    outs = [v.numel for vid in node.outputs if (v := p.value(vid))]
    ins = [v.numel for vid in node.inputs if (v := p.value(vid))]
    return _vector(p, node, f, max(outs or ins or [1]), (1, 0))


def _mm_dims(sa: list[int], sb: list[int]) -> tuple[int, int, int, int]:
    """(batch, m, n, k) of a (..., m, k) @ (..., k, n) product with numpy broadcasting; a B
    without batch dimensions is shared by every row of A (a weight)."""
    if len(sa) == 1:
        sa = [1, *sa]
    if len(sb) == 1:
        sb = [*sb, 1]
    (m, k), (k2, n) = sa[-2:], sb[-2:]
    assert k == k2, f"matmul shapes {sa} @ {sb}"
    if len(sb) == 2:
        return 1, math.prod(sa[:-1]), n, k
    width = max(len(sa), len(sb)) - 2
    la = [1] * (width - len(sa) + 2) + sa[:-2]
    lb = [1] * (width - len(sb) + 2) + sb[:-2]
    return math.prod(max(x, y) for x, y in zip(la, lb, strict=True)), m, n, k


def _transposed(shape: tuple[int, ...], flag: bool) -> list[int]:
    s = list(shape)
    if flag and len(s) >= 2:
        s[-2], s[-1] = s[-1], s[-2]
    return s


def matmul(p: Program, node: Node, f: Formats) -> list[Op]:
    a, b = p.values[node.inputs[0]], p.values[node.inputs[1]]
    sa = _transposed(a.shape, node.attrs.get("trans_a", False))
    sb = _transposed(b.shape, node.attrs.get("trans_b", False))
    if a.static and not b.static:  # W @ x: cost (x^T W^T) so the weight is B
        sa, sb = _transposed(tuple(sb), True), _transposed(tuple(sa), True)
        a, b = b, a
    batch, m, n, k = _mm_dims(sa, sb)
    return [MatMul(name=node.name, m=m, n=n, k=k, batch=batch, weight=b.static, dtype=f.fmt(a))]


def grouped_mm(p: Program, node: Node, f: Formats) -> list[Op]:
    """A mixture-of-experts grouped GEMM: `s` rows of A (s, k), sorted by expert, each
    multiplied by its expert's (k, n) slice of B (experts, k, n): 2 s k n FLOPs, the weight of
    every expert hit read once. The routing is data: the experts hit are those `s` routes
    expect under uniform routing (`routing.expert_groups`; the op does not say its top-k, so
    the routes are taken as independent draws: 162 experts for 256 routes over 256, where 32
    tokens' top-8 expect 163), the rows spread evenly over them: s // hit rows each, one more
    for s % hit of them (`.rest`, a group of the same kernel: `Op.shares_kernel`)."""
    a, b = p.values[node.inputs[0]], p.values[node.inputs[1]]
    if len(a.shape) != 2 or len(b.shape) != 3:
        return unsupported_op(p, node, f)
    (s, k), (experts, _, n) = a.shape, b.shape
    if not s:
        return []
    hit, rows, extra = expert_groups(experts, 1, s, s)
    mm = MatMul(
        name=node.name,
        m=rows,
        n=n,
        k=k,
        batch=hit - extra,
        weight=b.static,
        dtype=f.fmt(a),
        grouped=True,
    )
    rest = replace(mm, name=f"{node.name}.rest", m=rows + 1, batch=extra, shares_kernel=True)
    return [mm, rest] if extra else [mm]


def conv(p: Program, node: Node, f: Formats) -> list[Op]:
    """A convolution as its implicit GEMM; a 2-D one with 'same' output size as `Conv2d`."""
    x, w, y = p.values[node.inputs[0]], p.values[node.inputs[1]], p.values[node.outputs[0]]
    batch, cin, spatial, out = x.shape[0], x.shape[1], x.shape[2:], y.shape[2:]
    groups, stride = node.attrs.get("groups", 1), tuple(node.attrs.get("stride", (1,)))
    stride = stride if len(stride) == len(spatial) else stride[:1] * len(spatial)
    kernel = w.shape[2:]
    dtype = f.fmt(x)
    if node.attrs.get("transposed"):  # each input pixel scatters cout/g x kernel outputs
        n = w.shape[1] * math.prod(kernel)
        m, k = batch * math.prod(spatial), cin // groups
        return [MatMul(name=node.name, m=m, n=n, k=k, batch=groups, dtype=dtype)]
    same = all(o == math.ceil(i / s) for o, i, s in zip(out, spatial, stride, strict=True))
    if len(spatial) == 2 and groups == 1 and len(set(stride)) == 1 and same:
        return [
            Conv2d(
                name=node.name,
                batch=batch,
                height=spatial[0],
                width=spatial[1],
                cin=cin,
                cout=w.shape[0],
                kh=kernel[0],
                kw=kernel[1],
                stride=stride[0],
                dtype=dtype,
            )
        ]
    m, n, k = batch * math.prod(out), w.shape[0] // groups, w.shape[1] * math.prod(kernel)
    return [MatMul(name=node.name, m=m, n=n, k=k, batch=groups, weight=w.static, dtype=dtype)]


def _heads_first(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(batch..., heads, positions, dim); a 3-D operand is (batch x heads, positions, dim)."""
    return (*shape[:-2], 1, *shape[-2:]) if len(shape) == 3 else (1,) * (4 - len(shape)) + shape


def attention(p: Program, node: Node, f: Formats) -> list[Op]:
    """softmax(Q K^T) V over (..., heads, positions, head_dim) operands, kept whole."""
    q, k, v = (p.values[vid] for vid in node.inputs[:3])
    kshape = tuple(_transposed(k.shape, node.attrs.get("k_transposed", False)))
    q4, k4 = (_heads_first(s) for s in (q.shape, kshape))
    heads, q_len, kv_heads, kv_len = q4[-3], q4[-2], k4[-3], k4[-2]
    if heads % kv_heads:
        kv_heads = heads
    causal, window = bool(node.attrs.get("causal")) and q_len <= kv_len, node.attrs.get("window", 0)
    return [
        Attention(
            name=node.name,
            batch=math.prod(q4[:-3]),
            heads=heads,
            kv_heads=kv_heads,
            q_len=q_len,
            kv_len=kv_len,
            head_dim=q4[-1],
            v_head_dim=v.shape[-1] if v.shape[-1] != q4[-1] else None,
            causal=causal,
            window=window,  # one past the context: none (`Attention`)
            dtype=f.fmt(q),
        )
    ]


def embedding(p: Program, node: Node, f: Formats) -> list[Op]:
    table, idx = p.values[node.inputs[0]], p.values[node.inputs[1]]
    if not table.static or len(table.shape) != 2:
        return gather(p, node, f)
    vocab, hidden = table.shape
    return [
        Embedding(name=node.name, tokens=idx.numel, hidden=hidden, vocab=vocab, dtype=f.fmt(table))
    ]


Rule = Callable[[Program, Node, Formats], list[Op]]
RULES: dict[str, Rule] = {
    "matmul": matmul,
    "grouped_mm": grouped_mm,
    "conv": conv,
    "attention": attention,
    "embedding": embedding,
    "pool": pool,
    "topk": topk,
    "gather": gather,
    "resize": resize,
    "einsum": einsum,
    **dict.fromkeys(ELEMENTWISE, elementwise),
    **dict.fromkeys(ROW_OPS, row_op),
}
