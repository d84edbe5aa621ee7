"""Matrix products of an imported model's real tensors, run as compiled programs on the chip.

Every matrix-class node of an executed graph (MatMul, Gemm, Linear, Conv as im2col, both
products of attention) calls one `Backend`:

- ``chip-bf16``: operands rounded to bf16, the product compiled (`compile_op`) and run by the
  functional simulator with the chip's tiling (fp32 accumulation, bf16 result);
- ``chip-int8``: operands quantized symmetric per tensor (scale = max|x| / 127), int8 x int8
  products accumulated in int32 on the chip, dequantized in fp32 (scale_a * scale_b);
- ``fp32``: numpy fp32, the reference for bf16;
- ``int8``: numpy's own int8 x int8 -> int32 product with the same quantization, the bit-exact
  reference for ``chip-int8``.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from chipforge.compiler.lower import compile_op
from chipforge.errors import WorkloadError
from chipforge.sim.functional import run_functional
from chipforge.spec import ChipSpec
from chipforge.workload.ops import MatMul

MODES = ("chip-bf16", "chip-int8", "fp32", "int8")


def quantize(x: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """Symmetric per-tensor int8: q = clip(rint(x / s), -127, 127), s = max|x| / 127."""
    amax = np.float32(np.abs(x).max(initial=0.0))
    scale = np.float32(amax / np.float32(127.0)) if amax > 0 else np.float32(1.0)
    q = np.clip(np.rint(x.astype(np.float32) / scale), -127, 127).astype(np.int8)
    return q, scale


def bf16(x: np.ndarray) -> np.ndarray:
    """`x` rounded to bf16 (nearest even) and held in fp32."""
    return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)


class Backend:
    """Computes batched matrix products a @ b in one of `MODES`; counts the chip programs run."""

    def __init__(self, mode: str, chip: ChipSpec | None = None):
        if mode not in MODES:
            raise WorkloadError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if mode.startswith("chip") and chip is None:
            raise WorkloadError(f"mode {mode} needs a chip (--chip)")
        self.mode, self.chip = mode, chip
        self.programs = 0
        self.int32: list[np.ndarray] = []  # the int8 modes' accumulators, in call order

    @property
    def rounds_bf16(self) -> bool:
        """Whether the non-matrix ops round their results to bf16 (the bf16 chip run)."""
        return self.mode == "chip-bf16"

    def matmul(self, a: np.ndarray, b: np.ndarray, name: str = "matmul") -> np.ndarray:
        """a (..., m, k) @ b (..., k, n) with numpy broadcasting over the leading axes; fp32."""
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        if b.ndim == 2:  # a weight: fold the batch into the rows, one product
            out = self._product(a.reshape(-1, a.shape[-1])[None], b[None], name, weight=True)
            return out[0].reshape(*a.shape[:-1], b.shape[-1])
        lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        a3 = np.broadcast_to(a, (*lead, *a.shape[-2:])).reshape(-1, *a.shape[-2:])
        b3 = np.broadcast_to(b, (*lead, *b.shape[-2:])).reshape(-1, *b.shape[-2:])
        return self._product(a3, b3, name, weight=False).reshape(*lead, a.shape[-2], b.shape[-1])

    def _product(self, a: np.ndarray, b: np.ndarray, name: str, *, weight: bool) -> np.ndarray:
        # a (batch, m, k), b (batch, k, n) -> (batch, m, n) fp32
        if self.mode == "fp32":
            return np.matmul(a, b)
        if self.mode == "int8":
            qa, sa = quantize(a)
            qb, sb = quantize(b)
            acc = np.matmul(qa.astype(np.int32), qb.astype(np.int32))
            self.int32.append(acc)
            return acc.astype(np.float32) * (sa * sb)
        if self.mode == "chip-bf16":
            return self._on_chip(
                bf16(a).astype(ml_dtypes.bfloat16),
                bf16(b).astype(ml_dtypes.bfloat16),
                name,
                weight,
                "bf16",
            ).astype(np.float32)
        qa, sa = quantize(a)
        qb, sb = quantize(b)
        acc = self._on_chip(qa, qb, name, weight, "int8")
        self.int32.append(acc)
        return acc.astype(np.float32) * (sa * sb)

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
