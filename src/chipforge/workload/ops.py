"""Operator IR: each op knows its shape, dtype, FLOPs and the bytes it must touch.

Costs here are properties of the math (what any machine must do); what a given chip makes of
them is `chipforge.perf`'s business. `count` repeats an identical op (e.g. once per layer) so a
126-layer model stays a short graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from chipforge.dtypes import nbytes


@dataclass(frozen=True, kw_only=True, slots=True)
class Op:
    name: str
    dtype: str = "bf16"
    count: int = 1
    # the op runs inside another op's kernel, so it pays no dispatch overhead of its own
    # (`perf` op_overhead_s, the split-K reduction's launch): its FLOPs, bytes and tiles are
    # its own. Only a grouped GEMM's second group uses it: experts with one row more than the
    # first group's (`workload.llm._moe`, the imported grouped GEMM in `workload.costs`).
    # A grouped GEMM is one kernel over problems of distinct row counts (CUTLASS
    # examples/24_gemm_grouped; DeepGEMM's m_grouped_*_contiguous; torch._grouped_mm's `offs`;
    # vLLM's fused_moe kernel, one launch over every expert's sorted rows).
    shares_kernel: bool = False
    kind: ClassVar[str] = "op"

    @property
    def flops(self) -> float:
        """FLOPs of one instance (a multiply-accumulate is 2)."""
        return 0.0

    @property
    def bytes(self) -> float:
        """Compulsory bytes of one instance: every input read once, every output written once."""
        return 0.0

    @property
    def weight_bytes(self) -> float:
        """Bytes of parameters this op reads (part of `bytes`)."""
        return 0.0

    @property
    def total_flops(self) -> float:
        return self.flops * self.count


@dataclass(frozen=True, kw_only=True, slots=True)
class MatMul(Op):
    """C[b, m, n] = A[b, m, k] @ B[b, k, n]; `weight`: B is a parameter (it is what HBM holds)."""

    m: int
    n: int
    k: int
    batch: int = 1
    weight: bool = True
    out_dtype: str | None = None
    # weight-only quantization (W8A16, W4A16): the weight B is stored in this narrower format
    # and widened to `dtype` on chip, so the product runs at `dtype`'s rate on `dtype`
    # activations while B's bytes are `weight_dtype`'s (see `perf.engine.cost_matmul`)
    weight_dtype: str | None = None
    # a mixture-of-experts grouped GEMM (`workload.llm._moe`, `workload.costs.grouped_mm`): the
    # engines run it in their own fused MoE kernel (vLLM's fused_moe Triton kernel, AITER's
    # ck_moe), not the GEMM library, so a library's measured rate (`perf.engine.gemm_bandwidth`)
    # does not price it
    grouped: bool = False
    kind: ClassVar[str] = "matmul"

    @property
    def flops(self) -> float:
        return 2.0 * self.batch * self.m * self.n * self.k

    @property
    def b_dtype(self) -> str:
        """The format B is read in: `weight_dtype` for a weight-only quantized weight."""
        return self.weight_dtype if self.weight and self.weight_dtype else self.dtype

    @property
    def bytes(self) -> float:
        e_in, e_out = nbytes(self.dtype), nbytes(self.out_dtype or self.dtype)
        e_b = nbytes(self.b_dtype)
        return self.batch * (
            e_in * self.m * self.k + e_b * self.k * self.n + e_out * self.m * self.n
        )

    @property
    def weight_bytes(self) -> float:
        return self.batch * self.k * self.n * nbytes(self.b_dtype) if self.weight else 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Attention(Op):
    """Fused (flash) attention: softmax(Q K^T / sqrt(d)) V, never materialising the scores.

    Queries are the last `q_len` positions of a `kv_len` context; with `causal` each attends to
    the positions up to its own; with a sliding `window` (Mistral, Gemma 2/3, Qwen2's window
    layers; Beltagy et al. 2020) to the `window` positions up to its own only (transformers'
    `kv_idx > q_idx - window`): the band, not the triangle, is computed and only the keys in
    reach are read. FLOPs: 2 per MAC of Q K^T (d_qk) and P V (d_v) over the attended pairs
    (FlashAttention, Dao et al. 2022); backward = 2.5x forward (5 matmuls instead of 2,
    FlashAttention-2, Dao 2023).
    """

    batch: int
    heads: int
    kv_heads: int
    q_len: int
    kv_len: int
    head_dim: int
    v_head_dim: int | None = None
    # V is the first d_v columns of the cached K (absorbed MLA: keys and values are the same
    # latent, DeepSeek-V2 Sec. 2.1.2 / FlashMLA), so the cache is read once, not twice
    v_in_k: bool = False
    causal: bool = True
    window: int = 0  # sliding window (causal only): keys per query at most; 0: no window
    # the window is a chunk (Llama 4's chunked attention, transformers masking_utils
    # `chunked_causal_mask_function`): the query at position p attends the p mod window + 1
    # keys of its own `window`-token chunk (block-diagonal causal), not a sliding band
    chunked: bool = False
    # the window is a top-k selection (DeepSeek Sparse Attention): the query at position p
    # attends min(p + 1, window) keys chosen anywhere before it, so the pairs are the band's but
    # a query's keys may be any: one query reads its `window`, many read the whole context
    sparse: bool = False
    softmax: bool = True  # False: ReLU scores (the DSA lightning indexer), no exponentials
    # bytes one cached key (and value) of one KV head takes as stored, when not the dtype's
    # (d_qk + d_v) values: the DSA indexer's FP8 key with its FP32 scales
    # (`ModelConfig.index_key_bytes`, the cache's own sizing); 0: the dtype's
    cached_bytes: float = 0.0
    backward: bool = False
    kind: ClassVar[str] = "attention"

    def __post_init__(self):
        # a window on full attention, or one no shorter than the context, bands nothing: none
        if self.window and not (self.causal and 0 < self.window < self.kv_len):
            object.__setattr__(self, "window", 0)
        if not self.window:
            object.__setattr__(self, "chunked", False)
            object.__setattr__(self, "sparse", False)

    @property
    def attended(self) -> float:
        """Query-key pairs per head: q_len x kv_len, or the causal triangle's (or the sliding
        window's band's) share of it."""
        if not self.causal:
            return float(self.q_len) * self.kv_len
        offset = self.kv_len - self.q_len  # queries sit at the end of the context
        if self.chunked:  # the query at position p attends p mod window + 1 keys
            return _chunks(self.kv_len, self.window) - _chunks(offset, self.window)
        if self.window:  # the query at position p attends min(p + 1, window) keys
            return _band(self.kv_len, self.window) - _band(offset, self.window)
        return self.q_len * offset + self.q_len * (self.q_len + 1) / 2

    @property
    def keys(self) -> int:
        """Key (and value) positions any query reads: the context, or the window's reach."""
        if self.sparse:
            return min(self.kv_len, self.q_len * self.window)
        if self.chunked:  # from the start of the first query's chunk
            return self.kv_len - (self.kv_len - self.q_len) // self.window * self.window
        if self.causal and self.window:
            return min(self.kv_len, self.window + self.q_len - 1)
        return self.kv_len

    @property
    def d_v(self) -> int:
        return self.v_head_dim or self.head_dim

    @property
    def flops(self) -> float:
        fwd = 2.0 * self.batch * self.heads * self.attended * (self.head_dim + self.d_v)
        return 2.5 * fwd if self.backward else fwd

    @property
    def exps(self) -> float:
        """Softmax exponentials (recomputed once more in the backward pass)."""
        if not self.softmax:
            return 0.0
        return self.batch * self.heads * self.attended * (2 if self.backward else 1)

    @property
    def bytes(self) -> float:
        e = nbytes(self.dtype)
        q_o = e * self.batch * self.heads * self.q_len * (self.head_dim + self.d_v)
        cached = self.cached_bytes or e * (self.head_dim + (0 if self.v_in_k else self.d_v))
        k_v = self.batch * self.kv_heads * self.keys * cached
        return (q_o + k_v) * (2 if self.backward else 1)


def _band(n: int, window: int) -> float:
    """sum of min(i, window) for i = 1..n: the pairs a causal window attends over n queries
    that start at position 0."""
    if n <= window:
        return n * (n + 1) / 2
    return window * (window + 1) / 2 + (n - window) * window


def _chunks(n: int, chunk: int) -> float:
    """sum of (i mod chunk) + 1 for i = 0..n-1: the pairs causal attention within fixed
    `chunk`-token chunks attends over n queries that start at position 0 (each full chunk a
    triangle of chunk (chunk + 1) / 2, the last partial one r (r + 1) / 2)."""
    full, r = divmod(n, chunk)
    return full * chunk * (chunk + 1) / 2 + r * (r + 1) / 2


@dataclass(frozen=True, kw_only=True, slots=True)
class Vector(Op):
    """Elementwise or row-wise work on the vector unit (norms, activations, residuals, Adam)."""

    elements: float
    flops_per_element: float = 1.0
    transcendentals_per_element: float = 0.0
    bytes_per_element: float = 4.0  # read + written per element, over all operands
    param_state: bool = False  # operands are parameters / optimizer state, never activations
    kind: ClassVar[str] = "vector"

    @property
    def flops(self) -> float:
        return self.elements * self.flops_per_element

    @property
    def transcendentals(self) -> float:
        return self.elements * self.transcendentals_per_element

    @property
    def bytes(self) -> float:
        return self.elements * self.bytes_per_element


@dataclass(frozen=True, kw_only=True, slots=True)
class Embedding(Op):
    """Gather `tokens` rows of a (vocab, hidden) table."""

    tokens: int
    hidden: int
    vocab: int
    kind: ClassVar[str] = "embedding"

    @property
    def bytes(self) -> float:
        return 2.0 * self.tokens * self.hidden * nbytes(self.dtype)


@dataclass(frozen=True, kw_only=True, slots=True)
class Conv2d(Op):
    """NHWC convolution, costed as its implicit GEMM (M = b*ho*wo, N = cout, K = cin*kh*kw)."""

    batch: int
    height: int
    width: int
    cin: int
    cout: int
    kh: int
    kw: int
    stride: int = 1
    kind: ClassVar[str] = "conv"

    @property
    def out_hw(self) -> tuple[int, int]:  # 'same' padding
        return math.ceil(self.height / self.stride), math.ceil(self.width / self.stride)

    def as_matmul(self) -> MatMul:
        ho, wo = self.out_hw
        return MatMul(
            name=self.name,
            dtype=self.dtype,
            count=self.count,
            m=self.batch * ho * wo,
            n=self.cout,
            k=self.cin * self.kh * self.kw,
        )

    @property
    def flops(self) -> float:
        return self.as_matmul().flops

    @property
    def bytes(self) -> float:
        ho, wo = self.out_hw
        e = nbytes(self.dtype)
        return e * (
            self.batch * self.height * self.width * self.cin
            + self.kh * self.kw * self.cin * self.cout
            + self.batch * ho * wo * self.cout
        )

    @property
    def weight_bytes(self) -> float:
        return self.kh * self.kw * self.cin * self.cout * nbytes(self.dtype)


COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")


@dataclass(frozen=True, kw_only=True, slots=True)
class Collective(Op):
    """A collective over `group` chips; `size` is the full buffer in bytes per chip."""

    op: str
    size: float
    group: int
    kind: ClassVar[str] = "collective"

    def __post_init__(self):
        assert self.op in COLLECTIVES, self.op

    @property
    def flops(self) -> float:
        # the reduction adds (n-1)/n of the buffer per chip, on the vector unit
        if self.op in ("all_reduce", "reduce_scatter"):
            return self.size / nbytes(self.dtype) * (self.group - 1) / self.group
        return 0.0
