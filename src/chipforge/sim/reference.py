"""numpy references for compiled ops: what a program's outputs must equal.

Operands are the program's own HBM buffers (compiler layouts: a batched matmul stacks its
items by rows; attention packs the query heads of a GQA group position-major per KV head)."""

from __future__ import annotations

import numpy as np

from chipforge.sim.functional import convert, dtype_of, random_inputs, run_functional
from chipforge.workload.ops import Attention, Conv2d, MatMul, Op


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
    return {f"{op.name}.C": convert(c, out_dtype)}  # integers saturate, floats round


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
    if isinstance(op, Conv2d):  # compiled as its implicit GEMM: A holds the im2col patches
        return matmul_reference(op.as_matmul(), inputs)
    if isinstance(op, MatMul):
        return matmul_reference(op, inputs)
    if isinstance(op, Attention):
        return attention_reference(op, inputs)
    return None


def check_op(op: Op, program, *, seed: int = 0, order=None) -> dict:
    """Run `op`'s program on random inputs and compare every output with numpy, normwise:
    the largest error over the largest output must stay within a few units in the last place
    of bf16 (2^-6), what rounding the inputs and the softmax's P to bf16 leaves."""
    inputs = random_inputs(program, np.random.default_rng(seed))
    want = reference(op, inputs)
    if want is None:
        return {
            "op": op.name,
            "outputs": 0,
            "max_abs_error": 0.0,
            "max_rel_error": 0.0,
            "result": "no reference semantics (costed only)",
        }
    got = run_functional(program, inputs, order=order)
    abs_err = rel_err = 0.0
    for name, expected in want.items():
        e, g = expected.astype(np.float64), got[name].astype(np.float64)
        diff = float(np.abs(e - g).max(initial=0.0))
        abs_err = max(abs_err, diff)
        rel_err = max(rel_err, diff / max(float(np.abs(e).max(initial=0.0)), 1e-30))
    return {
        "op": op.name,
        "outputs": len(want),
        "max_abs_error": abs_err,
        "max_rel_error": rel_err,
        "result": "match" if rel_err <= 2**-6 else "MISMATCH",
    }
