"""Fusion patterns over imported nodes: chains a compiler runs as one kernel.

Rules are data (tinygrad's habit): each entry of `PATTERNS` is a matcher that, given an anchor
node, returns the nodes it replaces and the fused node, or None. Two patterns:

- RMSNorm written out by hand (Zhang & Sennrich 2019; Llama's reference code):
  x * rsqrt(mean(x^2) + eps) [* weight], also as sqrt + reciprocal or x / sqrt(...).
- A matmul or convolution followed by a static bias add (ONNX exports Linear this way).
- GELU written out around its tanh or erf (Hendrycks & Gimpel 2016), as ONNX exports it.
- Attention left unfused (an ONNX export, eager attention code): [scale] Q K^T [scale]
  [+ mask] softmax, then @ V. A mask made by a triangular op (Trilu, triu/tril) or a constant
  with -inf above the diagonal makes it causal.
"""

from __future__ import annotations

from collections.abc import Callable

from chipforge.workload.imported import Node, Program, mask_kind

SCORE_CHAIN = ("mul", "div", "add", "sub", "where", "masked_fill", "cast", "tanh")
PASS_THROUGH = ("cast",)
# An additive mask's blocked entries: at most this. Exporters write -inf (SDPA's boolean masks
# turned additive), the dtype's finfo.min (transformers' masks since 4.x: -3.4e38 in fp32,
# -65504 in fp16), -1e9 (masked_fill in hand-written attention) or exactly -1e4 (BERT's
# `(1.0 - mask) * -10000.0` in older transformers): all of them, and no learned bias value.
BLOCKED = -1e4


class _View:
    """Producer and consumer lookups over a program, for matchers."""

    def __init__(self, program: Program):
        self.p = program
        self.made_by = program.producers()
        self.users = program.consumers()
        self.masks: dict[int, list[str]] = {}  # id(fused attention) -> its constant masks
        # id(a constant's data) -> (the data, its `_mask_facts`): every layer's attention adds
        # the same mask, analysed once (the data is held so that its id is not reused)
        self.facts: dict[int, tuple] = {}

    def mask_facts(self, data) -> tuple[tuple[bool, int] | None, bool]:
        """`_mask_facts` of a constant, once per tensor."""
        if id(data) not in self.facts:
            self.facts[id(data)] = data, _mask_facts(data)
        return self.facts[id(data)][1]

    def producer(self, vid: str, kinds: tuple[str, ...]) -> Node | None:
        node = self.made_by.get(vid)
        return node if node is not None and node.kind in kinds else None

    def only_user(self, vid: str, kinds: tuple[str, ...]) -> Node | None:
        # a check that makes nothing (torch.export's _assert_tensor_metadata) is no user
        users = [u for u in self.users.get(vid, []) if u.outputs or u.kind != "static"]
        if len(users) == 1 and users[0].kind in kinds:
            return users[0]
        return None

    def static(self, vid: str) -> bool:
        v = self.p.value(vid)
        return v is not None and v.static

    def others(self, node: Node, vid: str) -> list[str]:
        return [i for i in node.inputs if i and i != vid]


def _rms_norm(view: _View, mean: Node) -> tuple[list[Node], Node] | None:
    """mean(x^2) -> + eps -> rsqrt | sqrt [-> reciprocal] -> x * . | x / . [-> * weight]."""
    square = view.producer(mean.inputs[0], ("pow", "mul"))
    if square is None or view.only_user(square.outputs[0], ("mean",)) is None:
        return None
    x = square.inputs[0]
    if square.kind == "mul" and square.inputs[1] != x:
        return None
    chain = [square, mean]
    add = view.only_user(mean.outputs[0], ("add",))
    root = add and view.only_user(add.outputs[0], ("rsqrt", "sqrt"))
    if (
        not add
        or not root
        or not all(view.static(v) for v in view.others(add, chain[-1].outputs[0]))
    ):
        return None
    chain += [add, root]
    if root.kind == "sqrt":
        recip = view.only_user(root.outputs[0], ("reciprocal",))
        chain += [recip] if recip else []
    scale = view.only_user(chain[-1].outputs[0], ("mul", "div"))
    if (
        scale is None
        or x not in scale.inputs
        or (scale.kind == "div") != (chain[-1].kind == "sqrt")
    ):
        return None
    chain.append(scale)
    gain = view.only_user(scale.outputs[0], ("mul",))
    weight = gain and view.others(gain, scale.outputs[0])
    if gain and len(weight) == 1 and view.static(weight[0]):
        chain.append(gain)
    inputs = [x] + ([weight[0]] if chain[-1] is gain else [])
    fused = Node("rms_norm", inputs, chain[-1].outputs[:1], mean.scope, "rms_norm pattern")
    return chain, fused


def _score_chain(view: _View, softmax: Node) -> tuple[Node, list[Node], list[str]] | None:
    """Back from the softmax through scale and mask ops to the Q K^T matmul."""
    chain, masks, vid = [], [], softmax.inputs[0]
    while (node := view.producer(vid, SCORE_CHAIN + ("matmul",))) is not None:
        if len(view.users.get(vid, [])) != 1:
            return None
        if node.kind == "matmul":
            if view.static(node.inputs[0]) or view.static(node.inputs[1]):
                return None
            return node, chain, masks
        carried = [i for i in node.inputs if i and not view.static(i)]
        if not carried:
            return None
        carried = max(carried, key=lambda i: (view.p.values[i].numel, i in view.made_by))
        chain.append(node)
        masks += [i for i in view.others(node, carried) if view.p.values[i].numel > 1]
        vid = carried
    return None


def _scaled(view: _View, vid: str) -> tuple[str, list[Node]]:
    """Q or K before a scale by a static scalar that only the attention uses."""
    node = view.producer(vid, ("mul", "div"))
    if node is None or len(view.users.get(vid, [])) != 1:
        return vid, []
    others = view.others(node, node.inputs[0])
    if len(others) == 1 and view.static(others[0]) and view.p.values[others[0]].numel == 1:
        return node.inputs[0], [node]
    return vid, []


def _mask_facts(data) -> tuple[tuple[bool, int] | None, bool]:
    """(band, is_mask) of a constant. band: (causal, window) when it blocks exactly the upper
    triangle, or the upper triangle and the keys more than `window` - 1 behind each query (a
    sliding window band), else None. is_mask: it holds only zeros and blocked entries (at most
    BLOCKED) or is boolean: an attention mask an exporter folded, added to the scores, which
    is no trained weight (a learned position bias, T5's, has other values). numpy is imported
    here, not with the module: only ONNX constants carry data, and a .pt2 import loads no
    numpy."""
    import numpy as np

    data = np.asarray(data)
    if data.dtype == bool:  # True: allowed
        blocked, is_mask = ~data, True
    else:
        numbers = data if data.dtype.kind in "fiu" else data.astype(np.float64)
        blocked = numbers <= BLOCKED
        is_mask = data.dtype.kind == "f" and bool((blocked | (numbers == 0)).all())
    if blocked.ndim < 2:
        return None, is_mask
    rows, cols = blocked.shape[-2:]
    upper = np.triu(np.ones((rows, cols), bool), 1 + cols - rows)
    if (blocked == upper).all():
        return (True, 0), is_mask
    window = int((~blocked).sum(-1).max())
    behind = np.tril(np.ones((rows, cols), bool), cols - rows - window)
    if 0 < window < cols and (blocked == (upper | behind)).all():
        return (True, window), is_mask
    return None, is_mask


def _causal(view: _View, masks: list[str]) -> tuple[bool, int]:
    """(causal, window): a mask from a triangular op, a constant that blocks exactly the upper
    triangle (or a sliding window's band), or one built from position indices as transformers
    builds it (`imported.mask_kind`)."""
    for vid in masks:
        data = view.p.data(vid)
        kind = view.mask_facts(data)[0] if data is not None else None
        if kind:
            return kind
        causal, window = mask_kind(view.made_by, vid)
        if causal:
            return causal, window
        seen, todo = 0, [vid]
        while todo and seen < 64:  # the mask's static ancestry
            at = todo.pop()
            data = view.p.data(at) if at != vid and view.static(at) else None
            if data is not None:
                kind = view.mask_facts(data)[0]  # a folded comparison: the triangle as a constant,
                if kind:  # and-ed with a padding mask from an input (TorchScript's export)
                    return kind
            node = view.made_by.get(at)
            seen += 1
            if node is None:
                continue
            if node.kind == "trilu":
                return True, 0
            todo += [i for i in node.inputs if i]
    return False, 0


def _nan_guard(view: _View, vid: str) -> tuple[list[Node], str]:
    """`where(isnan(p), 0, p)` after a softmax (torch's dynamo ONNX exporter guards fully
    masked rows so): the guard's nodes and its output, else ([], vid)."""
    users = view.users.get(vid, [])
    if len(users) != 2 or {u.kind for u in users} != {"ne", "where"}:
        return [], vid
    isnan, where = sorted(users, key=lambda u: u.kind)
    if isnan.source != "IsNaN" or view.only_user(isnan.outputs[0], ("where",)) is not where:
        return [], vid
    return [isnan, where], where.outputs[0]


def _attention(view: _View, softmax: Node) -> tuple[list[Node], Node] | None:
    found = _score_chain(view, softmax)
    if found is None:
        return None
    scores, chain, masks = found
    tail, vid = _nan_guard(view, softmax.outputs[0])
    while (node := view.only_user(vid, PASS_THROUGH + ("matmul", "layout"))) is not None:
        if node.kind == "matmul":
            break
        if node.kind == "layout" and not node.source.endswith("dropout"):  # identity at inference
            return None
        tail.append(node)
        vid = node.outputs[0]
    if node is None or node.inputs[0] != vid or view.static(node.inputs[1]):
        return None
    q, q_scale = _scaled(view, scores.inputs[0])
    k, k_scale = _scaled(view, scores.inputs[1])
    causal, window = _causal(view, masks)
    attrs = {"causal": causal, "k_transposed": not scores.attrs.get("trans_b")}
    attrs |= {"window": window} if window else {}
    fused = Node(
        "attention", [q, k, node.inputs[1]], node.outputs[:1], softmax.scope, "attention pattern"
    )
    fused.attrs = attrs
    view.masks[id(fused)] = [
        vid for vid in masks if (d := view.p.data(vid)) is not None and view.mask_facts(d)[1]
    ]
    return q_scale + k_scale + [scores, *chain, softmax, *tail, node], fused


def _bias(view: _View, add: Node) -> tuple[list[Node], Node] | None:
    """A weight matmul or a conv, then + a static bias of one value per output channel: the
    bias is the kernel's epilogue (as linear's)."""
    if len(add.inputs) < 2:  # x + a Python scalar: one tensor input
        return None
    for i, vid in enumerate(add.inputs[:2]):
        made = view.producer(vid, ("matmul", "conv"))
        other = add.inputs[1 - i]
        if made is None or not view.static(other) or view.only_user(vid, ("add",)) is not add:
            continue
        out = view.p.values[vid].shape
        channels = out[1] if made.kind == "conv" else out[-1]
        weighted = made.kind == "conv" or any(view.static(v) for v in made.inputs[:2])
        if weighted and view.p.values[other].numel == channels:
            fused = Node(made.kind, made.inputs, add.outputs[:1], made.scope, made.source)
            fused.label, fused.attrs = made.label, made.attrs
            return [made, add], fused
    return None


ARITH = ("mul", "add", "sub", "div", "pow")


def _gelu(view: _View, anchor: Node) -> tuple[list[Node], Node] | None:
    """GELU written out (an ONNX export): arithmetic on one input x around a tanh or erf,
    x * 0.5 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) or x * 0.5 * (1 + erf(x / sqrt 2))."""
    region, outside, todo = [anchor], set(), [anchor.inputs[0]]
    while todo:
        vid = todo.pop()
        made = view.producer(vid, ARITH)
        if view.static(vid) or any(made is n for n in region):
            continue
        if made is None or len(view.users.get(vid, [])) != 1 or len(region) > 12:
            outside.add(vid)
            continue
        region.append(made)
        todo += [i for i in made.inputs if i]
    if len(outside) != 1:
        return None
    x, out, inner = outside.pop(), anchor.outputs[0], len(region)
    while (nxt := view.only_user(out, ARITH)) is not None and all(
        i in (out, x) or view.static(i) for i in nxt.inputs if i
    ):
        region.append(nxt)
        out = nxt.outputs[0]
    # x enters twice, inside the tanh/erf and as the factor after it (x * ...); a tanh of
    # x alone scaled back (Gemma 2's score softcap, c tanh(x / c)) is no GELU
    if len(region) < 4 or not any(x in n.inputs for n in region[inner:]):
        return None
    return region, Node("gelu", [x], [out], anchor.scope, "gelu pattern")


Matcher = Callable[[_View, Node], "tuple[list[Node], Node] | None"]
PATTERNS: dict[str, Matcher] = {
    "add": _bias,
    "mean": _rms_norm,
    "softmax": _attention,
    "tanh": _gelu,
    "erf": _gelu,
}


def _rotary_tables(view: _View) -> set[str]:
    """The weights that are rotary position tables an exporter folded (RoFormer, Su et al.
    2021: q cos + rotate_half(q) sin): the sin table multiplies a rotate_half, the concatenation
    of a negated half and the other half; the cos table multiplies the tensor whose product is
    added to that. Computed from positions, they are constants, not trained parameters."""
    params = set(view.p.params)

    def table(mul: Node, other: str) -> str | None:
        rest = view.others(mul, other)
        return rest[0] if len(rest) == 1 and rest[0] in params else None

    tables, sin_products = set(), set()
    for node in view.p.nodes:
        if node.kind != "mul" or len(node.inputs) != 2:
            continue
        for vid in node.inputs:
            cat = view.made_by.get(vid)
            halves = cat is not None and cat.source in ("Concat", "cat") and cat.inputs
            if halves and view.producer(cat.inputs[0], ("neg",)) and (sin := table(node, vid)):
                tables.add(sin)
                sin_products.add(node.outputs[0])
    for node in view.p.nodes:
        if node.kind != "add" or len(node.inputs) != 2:
            continue
        a, b = node.inputs
        if (a in sin_products) == (b in sin_products):
            continue
        mul = view.producer(b if a in sin_products else a, ("mul",))
        if mul is not None and len(mul.inputs) == 2:
            weights = [i for i in mul.inputs if i in params]
            if len(weights) == 1:
                tables.add(weights[0])
    return tables


def fuse(program: Program) -> None:
    """Replace every match of `PATTERNS` by its fused node, at the place of its last node."""
    view = _View(program)
    if tables := _rotary_tables(view):
        program.buffers = program.buffers | frozenset(tables)
    replaced: dict[int, Node | None] = {}
    position = {id(node): i for i, node in enumerate(program.nodes)}
    for node in program.nodes:
        matcher = PATTERNS.get(node.kind)
        if matcher is None or id(node) in replaced:
            continue
        match = matcher(view, node)
        if match is None or any(id(n) in replaced for n in match[0]):
            continue
        matched, fused = match
        last = max(matched, key=lambda n: position[id(n)])
        for n in matched:
            replaced[id(n)] = None
        replaced[id(last)] = fused
        if mask_weights := [m for m in view.masks.get(id(fused), []) if m in program.params]:
            program.buffers = program.buffers | frozenset(mask_weights)
    if replaced:
        program.nodes = [
            replaced.get(id(n), n) for n in program.nodes if replaced.get(id(n), n) is not None
        ]
