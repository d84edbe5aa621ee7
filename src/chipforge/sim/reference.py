"""numpy references for compiled ops: what a program's outputs must equal.

Operands are the program's own HBM buffers (compiler layouts: a batched matmul stacks its
items by rows; attention packs the query heads of a GQA group position-major per KV head)."""

from __future__ import annotations

import numpy as np

from chipforge.sim.functional import convert, dtype_of
from chipforge.workload.ops import Attention, MatMul, Op


def _f32(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32)


def matmul_reference(op: MatMul, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    a, b = inputs[f"{op.name}.A"], inputs[f"{op.name}.B"]
    out_dtype = dtype_of(op.out_dtype or op.dtype)
    parts = []
    for i in range(op.batch):
        ai, bi = a[i * op.m : (i + 1) * op.m], b[i * op.k : (i + 1) * op.k]
        if op.dtype.startswith("int"):
            parts.append(ai.astype(np.int32) @ bi.astype(np.int32))
        else:
            parts.append(_f32(ai) @ _f32(bi))
    c = np.concatenate(parts)
    return {f"{op.name}.C": c if op.dtype.startswith("int") else convert(c, out_dtype)}


def attention_reference(op: Attention, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    group = op.heads // op.kv_heads
    q, k, v = (_f32(inputs[f"{op.name}.{x}"]) for x in "QKV")
    rows = op.q_len * group
    out = np.zeros((q.shape[0], op.d_v), np.float32)
    positions = op.kv_len - op.q_len + np.arange(rows) // group  # row r: position r // group
    keys = np.arange(op.kv_len)
    for pair in range(op.batch * op.kv_heads):
        qp = q[pair * rows : (pair + 1) * rows]
        kp, vp = (
            k[pair * op.kv_len : (pair + 1) * op.kv_len],
            v[pair * op.kv_len : (pair + 1) * op.kv_len],
        )
        s = qp @ kp.T / np.sqrt(op.head_dim)
        if op.causal:
            s = np.where(keys[None, :] > positions[:, None], -np.inf, s)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        out[pair * rows : (pair + 1) * rows] = (p / p.sum(axis=1, keepdims=True)) @ vp
    return {f"{op.name}.O": convert(out, dtype_of(op.dtype))}


def reference(op: Op, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """The expected HBM outputs of `op`'s program, or None when the op has no reference
    semantics (generic vector work, embeddings)."""
    if isinstance(op, MatMul):
        return matmul_reference(op, inputs)
    if isinstance(op, Attention):
        return attention_reference(op, inputs)
    return None
