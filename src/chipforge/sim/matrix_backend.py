"""Matrix products of an imported model's real tensors, run as compiled programs on the chip.

Every matrix-class node of an executed graph (MatMul, Gemm, Linear, Conv as im2col, both
products of attention) calls one `Backend`:

- ``chip-bf16``: operands rounded to bf16, the product compiled (`compile_op`) and run by the
  functional simulator with the chip's tiling (fp32 accumulation, bf16 result);
- ``chip-int8``: operands quantized symmetric per tensor (scale = max|x| / 127), int8 x int8
  products accumulated in int32 on the chip, dequantized in fp32 (scale_a * scale_b); with
  `per_channel`, weights get one scale per output channel (column of B) instead;
- ``fp32``: numpy fp32, the reference for bf16;
- ``int8``: numpy's own int8 x int8 -> int32 product with the same quantization, the bit-exact
  reference for ``chip-int8``.

Attention (`attention`): in the bf16 chip run a whole softmax(Q K^T / sqrt(d)) V runs as the
compiler's fused flash-attention program (compiler/attention.py) on real Q, K, V packed to its
layout (a GQA group's query heads position-major per KV head). Where that program cannot take
the call (a mask, a custom scale, causal with q_len != kv_len, int8) it returns None and the
caller runs the two products as matmuls; `attention_log` says which ran for each call and why.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from chipforge.compiler.attention import use_vector_unit
from chipforge.compiler.lower import compile_op
from chipforge.errors import ChipforgeError, WorkloadError
from chipforge.sim.functional import run_functional
from chipforge.spec import ChipSpec
from chipforge.workload.ops import Attention, MatMul

MODES = ("chip-bf16", "chip-int8", "fp32", "int8")


def quantize(x: np.ndarray, axis: int | None = None) -> tuple[np.ndarray, np.float32]:
    """Symmetric int8: q = clip(rint(x / s), -127, 127), s = max|x| / 127 over the whole tensor,
    or (`axis`) over that axis only: one scale per output channel of a weight (K, N), axis=-2."""
    x = x.astype(np.float32)
    if axis is None:
        amax = np.float32(np.abs(x).max(initial=0.0))
        scale = np.float32(amax / np.float32(127.0)) if amax > 0 else np.float32(1.0)
    else:
        amax = np.abs(x).max(axis=axis, keepdims=True, initial=0.0).astype(np.float32)
        scale = np.where(amax > 0, amax / np.float32(127.0), np.float32(1.0)).astype(np.float32)
    q = np.clip(np.rint(x / scale), -127, 127).astype(np.int8)
    return q, scale


def _as_bf16(x: np.ndarray) -> np.ndarray:
    """`x` rounded to bf16 (nearest even), as bf16 (the chip's operand)."""
    return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16)


def bf16(x: np.ndarray) -> np.ndarray:
    """`x` rounded to bf16 (nearest even) and held in fp32."""
    return _as_bf16(x).astype(np.float32)


class Backend:
    """Computes batched matrix products a @ b in one of `MODES`; counts the chip programs run."""

    def __init__(self, mode: str, chip: ChipSpec | None = None, *, per_channel: bool = False):
        if mode not in MODES:
            raise WorkloadError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if mode.startswith("chip") and chip is None:
            raise WorkloadError(f"mode {mode} needs a chip (--chip)")
        self.mode, self.chip, self.per_channel = mode, chip, per_channel
        self.programs = 0
        self.int32: np.ndarray | None = None  # the int8 modes' last accumulator
        self.attention_log: list[dict] = []  # chip modes: which program ran each attention

    @property
    def rounds_bf16(self) -> bool:
        """Whether the non-matrix ops round their results to bf16 (the bf16 chip run)."""
        return self.mode == "chip-bf16"

    def matmul(
        self, a: np.ndarray, b: np.ndarray, name: str = "matmul", *, weight: bool | None = None
    ) -> np.ndarray:
        """a (..., m, k) @ b (..., k, n) with numpy broadcasting over the leading axes; fp32.
        `weight`: b holds weights, one output channel a column (default: b is 2-D)."""
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        weight = b.ndim == 2 if weight is None else weight
        if b.ndim == 2:  # a weight: fold the batch into the rows, one product
            flat = a.reshape(-1, a.shape[-1])[None]
            out = self._product(flat, b[None], name, weight=True, channels=weight)
            return out[0].reshape(*a.shape[:-1], b.shape[-1])
        lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        a3 = np.broadcast_to(a, (*lead, *a.shape[-2:])).reshape(-1, *a.shape[-2:])
        b3 = np.broadcast_to(b, (*lead, *b.shape[-2:])).reshape(-1, *b.shape[-2:])
        out = self._product(a3, b3, name, weight=False, channels=weight)
        return out.reshape(*lead, a.shape[-2], b.shape[-1])

    def _quantized(self, a: np.ndarray, b: np.ndarray, channels: bool) -> tuple:
        qa, sa = quantize(a)
        qb, sb = quantize(b, axis=-2 if channels and self.per_channel else None)
        return qa, qb, sa * sb  # the dequantization scale: fp32, per column when per channel

    def _product(
        self, a: np.ndarray, b: np.ndarray, name: str, *, weight: bool, channels: bool
    ) -> np.ndarray:
        # a (batch, m, k), b (batch, k, n) -> (batch, m, n) fp32
        if self.mode == "fp32":
            return np.matmul(a, b)
        if self.mode == "chip-bf16":
            return self._on_chip(
                _as_bf16(a),
                _as_bf16(b),
                name,
                weight,
                "bf16",
            ).astype(np.float32)
        qa, qb, scale = self._quantized(a, b, channels)
        if self.mode == "int8":
            acc = np.matmul(qa.astype(np.int32), qb.astype(np.int32))
        else:
            acc = self._on_chip(qa, qb, name, weight, "int8")
        self.int32 = acc
        return acc.astype(np.float32) * scale

    def _on_chip(self, a, b, name: str, weight: bool, dtype: str) -> np.ndarray:
        batch, m, k = a.shape
        n = b.shape[2]
        out_dtype = "int32" if dtype == "int8" else None
        op = MatMul(
            name=name, dtype=dtype, m=m, n=n, k=k, batch=batch, weight=weight, out_dtype=out_dtype
        )
        program = compile_op(op, self.chip)
        inputs = {f"{name}.A": a.reshape(batch * m, k), f"{name}.B": b.reshape(batch * k, n)}
        self.programs += 1
        return run_functional(program, inputs)[f"{name}.C"].reshape(batch, m, n)

    def attention(
        self,
        q: np.ndarray,
        k: np.ndarray,
        v: np.ndarray,
        *,
        causal: bool,
        name: str = "sdpa",
        refusal: str | None = None,
    ) -> np.ndarray | None:
        """softmax(q k^T / sqrt(d), causal) v, q (B, Hq, Lq, d), k (B, Hkv, Lk, d), v (B, Hkv,
        Lk, dv), as the fused attention program (bf16 chip run); None when it cannot run here
        (`refusal`: the caller's reason, e.g. a mask), logged with the reason."""
        reason = refusal or self._refusal(q, k, v, causal)
        if reason is None:
            try:
                out, units = self._fused(q, k, v, causal, name)
            except ChipforgeError as e:
                reason = f"the compiler refused it: {e}"
            else:
                self.attention_log.append(
                    {"node": name, "program": "fused attention", "products_on": units}
                )
                return out
        if self.mode.startswith("chip"):
            self.attention_log.append({"node": name, "program": "two matmuls", "why": reason})
        return None

    def _refusal(self, q, k, v, causal: bool) -> str | None:
        if self.mode != "chip-bf16":
            return f"{self.mode} runs the two products as matmuls"
        if not (q.ndim == k.ndim == v.ndim == 4) or not q.shape[0] == k.shape[0] == v.shape[0]:
            return "not (batch, heads, length, dim) tensors of one batch"
        if q.shape[1] % k.shape[1] or k.shape[1] != v.shape[1] or k.shape[2] != v.shape[2]:
            return "query heads not a multiple of the key/value heads"
        if causal and q.shape[2] != k.shape[2]:
            return "causal with q_len != kv_len (torch aligns the mask top-left)"
        return None

    def _fused(self, q, k, v, causal: bool, name: str) -> tuple[np.ndarray, str]:
        b, heads, lq, d = q.shape
        kv_heads, lk, dv = k.shape[1], k.shape[2], v.shape[3]
        group = heads // kv_heads
        op = Attention(
            name=name,
            dtype="bf16",
            batch=b,
            heads=heads,
            kv_heads=kv_heads,
            q_len=lq,
            kv_len=lk,
            head_dim=d,
            v_head_dim=dv if dv != d else None,
            causal=causal,
        )
        program = compile_op(op, self.chip)
        units = "vector units" if use_vector_unit(op, self.chip) else "matrix units"
        packed = q.reshape(b, kv_heads, group, lq, d).transpose(0, 1, 3, 2, 4).reshape(-1, d)
        inputs = {
            f"{name}.Q": _as_bf16(packed),
            f"{name}.K": _as_bf16(k.reshape(-1, d)),
            f"{name}.V": _as_bf16(v.reshape(-1, dv)),
        }
        self.programs += 1
        out = run_functional(program, inputs)[f"{name}.O"].astype(np.float32)
        out = out.reshape(b, kv_heads, lq, group, dv).transpose(0, 1, 3, 2, 4)
        return np.ascontiguousarray(out.reshape(b, heads, lq, dv)), units
