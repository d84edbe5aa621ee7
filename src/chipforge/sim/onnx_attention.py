"""Attention written out in an ONNX graph, run as the chip's fused attention program.

ONNX exporters (opset < 23) write scaled dot-product attention as nodes:

    S = MatMul(Q [* c1], K^T [* c2]) [* c3 | / c3] [+ mask];  P = Softmax(S, last axis);
    O = MatMul(P, V)

`find` locates such chains whose intermediate values have no other use; `fused` evaluates one
at run time with `Backend.attention` (the fused flash-attention program) when the combined
scale is 1/sqrt(d) and the mask, if any, is all zeros or exactly causal (0 on and below the
diagonal, -inf or below -1e9 above). Otherwise it returns None and the nodes run as written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from chipforge.sim.matrix_backend import Backend

NEG = -1e9  # a mask value at or below this is a masked-out position
# The scale as written may be computed by vector ops, each result rounded to bf16 in the bf16
# run (torch's exporter writes sqrt(1/sqrt(d)) on Q and on K: two roundings of u = 2^-9).
SCALE_TOL = 2.0**-7


@dataclass
class Chain:
    q: str  # the QK^T MatMul's operands as written
    kt: str
    v: str
    skipped: list[int]  # the node indices the fused program replaces (scores ... softmax)
    q_pre: tuple[str, str] | None = None  # (operand, factor) when q = Mul(operand, factor)
    kt_pre: tuple[str, str] | None = None
    scales: list[tuple[str, str]] = field(default_factory=list)  # ("Mul" | "Div", value)
    mask: str | None = None


def find(model) -> dict[int, Chain]:
    """{index of the P V MatMul: its chain} for every attention chain of the graph."""
    nodes = list(model.graph.node)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    users: dict[str, int] = {}
    for name in [i for n in nodes for i in n.input] + [o.name for o in model.graph.output]:
        users[name] = users.get(name, 0) + 1

    def single(value: str, op: str) -> int | None:
        i = producer.get(value)
        if i is None or users.get(value) != 1 or nodes[i].op_type != op:
            return None
        return i

    def scores(value: str) -> tuple[int, list[int], list] | None:
        skipped, scales = [], []
        for op in ("Mul", "Div"):
            i = single(value, op)
            if i is not None:
                scales.append((op, nodes[i].input[1]))
                skipped.append(i)
                value = nodes[i].input[0]
                break
        qk = single(value, "MatMul")
        return None if qk is None else (qk, [*skipped, qk], scales)

    def pre(value: str) -> tuple[str, str] | None:
        i = producer.get(value)
        return tuple(nodes[i].input[:2]) if i is not None and nodes[i].op_type == "Mul" else None

    chains = {}
    for index, pv in enumerate(nodes):
        soft = single(pv.input[0], "Softmax") if pv.op_type == "MatMul" else None
        if soft is None or _axis(nodes[soft]) not in (-1, 3):
            continue
        value, mask, add = nodes[soft].input[0], None, None
        found = scores(value)
        if found is None and (add := single(value, "Add")) is not None:
            a, b = nodes[add].input
            for scored, other in ((a, b), (b, a)):
                if (found := scores(scored)) is not None:
                    mask = other
                    break
        if found is None:
            continue
        qk, skipped, scales = found
        q, kt = nodes[qk].input
        skipped = sorted([soft, *skipped, *([add] if add is not None else [])])
        chains[index] = Chain(q, kt, pv.input[1], skipped, pre(q), pre(kt), scales, mask)
    return chains


def _axis(node) -> int:
    for a in node.attribute:
        if a.name == "axis":
            return a.i
    return -1


def fused(chain: Chain, env: dict, be: Backend, name: str) -> np.ndarray | None:
    """The chain's output from the fused program, or None (the nodes run as written)."""
    scale, operands = 1.0, []
    for used, pre in ((chain.q, chain.q_pre), (chain.kt, chain.kt_pre)):
        if pre is not None and np.size(env[pre[1]]) == 1:  # Q * c: fold c into the scale
            scale *= float(np.reshape(env[pre[1]], ()))
            operands.append(env[pre[0]])
        else:
            operands.append(env[used])
    for op, value in chain.scales:
        if np.size(env[value]) != 1:
            return be.attention(
                None, None, None, causal=False, name=name, refusal="scaled by a tensor"
            )
        x = float(np.reshape(env[value], ()))
        scale = scale * x if op == "Mul" else scale / x
    (q, kt), v = operands, env[chain.v]
    if not (q.ndim == kt.ndim == v.ndim == 4):
        return be.attention(q, kt, v, causal=False, name=name, refusal="not 4-D tensors")
    k = np.swapaxes(kt, -1, -2)
    refusal, causal = None, False
    if not math.isclose(scale, 1 / math.sqrt(q.shape[-1]), rel_tol=SCALE_TOL):
        refusal = "a custom scale"
    elif chain.mask is not None:
        causal, refusal = _mask_kind(env[chain.mask], q.shape[-2], k.shape[-2])
    return be.attention(q, k, v, causal=causal, name=name, refusal=refusal)


def _mask_kind(mask: np.ndarray, lq: int, lk: int) -> tuple[bool, str | None]:
    """(causal, refusal) of an additive mask."""
    m = np.broadcast_to(mask, (*mask.shape[:-2], lq, lk)) if mask.ndim >= 2 else mask
    if np.all(m == 0):
        return False, None
    keep = np.tril(np.ones((lq, lk), bool))
    if lq == lk and np.all(m[..., keep] == 0) and np.all(m[..., ~keep] <= NEG):
        return True, None
    return False, "a mask that is neither zero nor causal"
