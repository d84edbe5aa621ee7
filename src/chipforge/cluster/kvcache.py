"""KV-cache and weight memory per chip for serving (paged KV cache, per dtype).

Weights: all parameters split over TP x PP (experts over EP x TP when EP is used; the
per-chip share is the same). KV cache: vLLM-style paging (Kwon et al., SOSP 2023) in blocks of
`PAGE_TOKENS` tokens, each sequence rounded up to whole pages. KV heads are split over TP and
replicated when TP exceeds the KV-head count; MLA caches one latent per token per layer
(replicated on every TP rank, as in the DeepSeek-V3 serving setup). A sliding-window layer
keeps only its window's latest tokens (`Memory.pages`): vLLM's hybrid KV-cache manager
(docs/design/hybrid_kv_cache_manager.md: "Sliding window layers: reserve slots only for the
most recent sliding_window_size tokens"; v1/core/single_type_kv_cache_manager.py
SlidingWindowManager frees the blocks before `num_computed_tokens - sliding_window + 1`), and
TensorRT-LLM's KV cache, one block pool per attention window size (docs features/kvcache.md,
"variable attention window sizes"; batch_manager/kvCacheManager.cpp `BlocksPerWindow`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chipforge.dtypes import nbytes
from chipforge.workload.config import ModelConfig

PAGE_TOKENS = 16  # vLLM's default block size (Kwon et al. 2023, Sec. 4.2)
MEMORY_UTILIZATION = 0.90  # vLLM's default gpu_memory_utilization: headroom for runtime/activations
# How a serving runtime sizes its KV cache (`Memory.kv_budget`), both with the 0.90 default:
# - "vllm": a fraction of the chip's whole memory holds the weights, the activations and the
#   cache (vLLM `gpu_memory_utilization`; SGLang's `mem_fraction_static` the same way);
# - "tensorrt-llm": the cache takes a fraction of the memory still free once the weights and
#   the activations are allocated (TensorRT-LLM `KvCacheConfig.free_gpu_memory_fraction`, default
#   0.9: "TensorRT LLM will try to allocate 90% of free GPU memory for KV cache", docs
#   examples/kvcacheconfig; the v0.x `kv_cache_free_gpu_mem_fraction` the same). NIM's optimized
#   profiles run TensorRT-LLM (NIM for LLMs docs, "Optimization"). NVIDIA's simulator keeps the
#   same two formulas (ai-dynamo/aisimulate perfmodel/memory.rs: "TRT-LLM free-fraction vs
#   vLLM/SGLang total-fraction").
RUNTIMES = ("vllm", "tensorrt-llm")
ACTIVATION_TOKENS = 8192  # max tokens in one prefill chunk (vLLM max_num_batched_tokens default)
# MLA's absorbed products in decode (workload.llm._mla: `q_absorb`, W_UK into the query;
# `v_absorb`, W_UV after attention), each a per-head batched product, at the runtime's own
# precision. vLLM keeps 16-bit copies of W_UK_T and W_UV beside the quantized kv_b_proj and runs
# both as torch.bmm at the activation dtype ("we currently do not have quantized bmm's which are
# needed for `W_UV` and `W_UK_T`, we just store fp16/bf16 copies and perform the bmm's in
# 16-bit, the extra memory overhead of this is fairly low": MLACommonBaseImpl.
# process_weights_after_loading, vllm/v1/attention/backends/mla/common.py, since vLLM pull 14770
# "MLA get rid of materialization", v0.8.0); SGLang on CUDA dequantizes DeepSeek's 128x128
# block-FP8 kv_b_proj to BF16 `w_kc` / `w_vc` the same way (srt/models/deepseek_v2.py
# post_load_weights, block_quant_dequant, unless SGL_USE_DEEPGEMM_BMM), as DeepSeek's own
# inference code does (deepseek-ai/DeepSeek-V3 inference/model.py, attn_impl "absorb":
# weight_dequant(wkv_b), then a BF16 einsum; rows of DeepSeek's service take this runtime's
# rules, validate.serving_runtime). TensorRT-LLM keeps the
# block-FP8 `k_b_proj_trans` and runs fp8_block_scaling_bmm_out on Hopper
# (_torch/modules/attention.py), so its absorbed products stay at the projections' precision.
# Not modelled: TensorRT-LLM on Blackwell (SM100: torch.bmm on a dequantized BF16 copy), SGLang
# on ROCm (per-tensor FP8) and before its BF16 path, vLLM's AITER FP8 bmm (ROCm, opt-in) and
# vLLM before 0.8 (the absorbed matrices materialized, W_Q_UK and W_UV_O, requantized to FP8).
ABSORB_16BIT_RUNTIMES = ("vllm",)


def absorb_dtype(c: ModelConfig, runtime: str, dtype: str) -> str | None:
    """The dtype `runtime` runs the MLA model `c`'s absorbed products at (ABSORB_16BIT_RUNTIMES),
    None where it runs them as its projections or `c` has no MLA: the activation dtype of a
    `dtype` run, bf16 under a run narrower than 16 bits (FP8, FP4: vLLM's `act_dtype`)."""
    if not c.kv_lora or runtime not in ABSORB_16BIT_RUNTIMES:
        return None
    return dtype if nbytes(dtype) >= 2 else "bf16"


@dataclass(frozen=True)
class Memory:
    """Bytes per chip for one (tp, pp) shard."""

    capacity: float
    weights: float
    activations: float
    kv_per_token: float  # KV bytes per cached token on one chip, over all its layers
    # (window, share of the layers) of the sliding-window layers (`ModelConfig.attention_kinds`)
    windows: tuple[tuple[int, float], ...] = ()
    runtime: str = "vllm"  # RUNTIMES: how the KV cache is sized
    # a sequence's fixed state on this shard, whatever its length (Gated DeltaNet layers'
    # recurrent and conv state, ModelConfig.delta_state_bytes): held in the same pool, as
    # vLLM's hybrid cache holds a Mamba-style state in one page per layer whose size it aligns
    # with the attention page (MambaSpec; HybridAttentionMambaModelConfig)
    state: float = 0.0

    def pages(self, tokens: int) -> float:
        """Pages (PAGE_TOKENS tokens of every layer each) one sequence of `tokens` tokens holds:
        a full-attention layer all of them; a sliding-window layer its window's latest only,
        at most ceil(window / PAGE_TOKENS) + 1 pages (vLLM's SlidingWindowSpec, +1 "because
        the sliding window may not start from the beginning of the block")."""
        full = math.ceil(tokens / PAGE_TOKENS)
        state = self.state / (self.kv_per_token * PAGE_TOKENS) if self.kv_per_token else 0.0
        return (
            state
            + full
            - sum(
                share * max(0, full - math.ceil(w / PAGE_TOKENS) - 1) for w, share in self.windows
            )
        )

    def kv_bytes(self, tokens: int) -> float:
        """KV bytes of one sequence's `tokens` latest positions that its attention reads on
        this shard: every layer's, a sliding-window layer's window's only. Not the DeltaNet
        layers' `state`: their recurrence reads it (priced in the decode graph), not attention."""
        return self.kv_per_token * (
            tokens - sum(share * max(0, tokens - w) for w, share in self.windows)
        )

    @property
    def kv_budget(self) -> float:
        free = self.capacity - self.weights - self.activations
        if self.runtime == "tensorrt-llm":
            return max(0.0, free * MEMORY_UTILIZATION)
        return max(0.0, free - self.capacity * (1 - MEMORY_UTILIZATION))

    @property
    def kv_tokens(self) -> int:
        """Tokens the paged cache holds on this shard (whole pages) where every layer holds
        each of them; sliding-window layers hold fewer (`pages`), so a cache of a windowed
        model holds longer sequences than this in all."""
        if self.kv_per_token <= 0:
            return 0
        pages = int(self.kv_budget // (self.kv_per_token * PAGE_TOKENS))
        return pages * PAGE_TOKENS

    def sequences(self, tokens_per_sequence: int) -> int:
        """Sequences of `tokens_per_sequence` tokens that fit (each rounded up to pages)."""
        return int(self.kv_tokens // PAGE_TOKENS // self.pages(tokens_per_sequence))

    def to_dict(self) -> dict:
        return {
            "capacity_bytes": self.capacity,
            "weights_bytes": self.weights,
            "activations_bytes": self.activations,
            "kv_cache_bytes": self.kv_tokens * self.kv_per_token,
            "kv_bytes_per_token": self.kv_per_token,
        }


def memory(
    c: ModelConfig, capacity: float, *, tp: int, pp: int, dtype: str, kv_dtype: str, ep: int = 1,
    attn_dtype: str | None = None, weight_dtype: str | None = None, moe_tp: bool = False,
    runtime: str = "vllm",
) -> Memory:  # fmt: skip
    """`attn_dtype`: the attention modules' weights held at that precision instead of `dtype`;
    `weight_dtype`: every weight held at that precision (weight-only quantization), the
    activations staying at `dtype`. `moe_tp` (with `ep` above `tp`): every FFN weight (routed
    and shared experts, the dense layers' MLP) sliced over the `ep` chips (serving's MOE_TP).
    `runtime`: how the KV cache is sized (RUNTIMES), and whether it holds 16-bit copies of an
    MLA model's absorbed matrices (ABSORB_16BIT_RUNTIMES)."""
    wt = weight_dtype or dtype
    weights = c.params() * nbytes(wt) / (tp * pp)
    if ep > tp:  # wide EP: whole routed experts over ep chips (the busiest holds the ceiling),
        # everything else on each attention group's tp chips
        expert = c.expert_params * (c.layers - c.dense_layers)  # one expert, every MoE layer
        local = math.ceil(c.experts / ep) * expert
        weights = ((c.params() - c.experts * expert) / tp + local) * nbytes(wt)
        if moe_tp:  # the router stays whole on every chip (SGLang's MoEGate: one full weight)
            moe_layers = c.layers - c.dense_layers
            router = c.hidden * c.experts
            ffn = moe_layers * (c.ffn_params(True) - router) + c.dense_layers * c.ffn_params(False)
            weights = ((c.params() - ffn) / tp + ffn / ep) * nbytes(wt)
    if attn_dtype and attn_dtype != wt:
        extra = c.layers * c.attention_params() * (nbytes(attn_dtype) - nbytes(wt))
        weights += extra / (tp * pp)
    absorb = absorb_dtype(c, runtime, dtype)
    if absorb and nbytes(absorb) > nbytes(attn_dtype or wt):  # the 16-bit W_UK_T and W_UV
        # copies beside the quantized kv_b_proj (ABSORB_16BIT_RUNTIMES), the chip's heads
        copies = c.layers * max(1, c.heads // tp) * (c.d_head + c.d_v) * c.kv_lora
        weights += copies * nbytes(absorb) / pp
    kv_full = c.kv_bytes_per_token(nbytes(kv_dtype)) / pp
    shards = 1 if c.kv_lora else min(tp, c.n_kv_heads)
    activations = ACTIVATION_TOKENS * max(c.hidden, c.ffn // tp) * 2 * nbytes(dtype)
    windows = tuple((m.window, n / c.layers) for m, n in c.attention_kinds() if m.window)
    # DeltaNet state: its value heads split over the TP ranks, its layers over the stages
    state = (
        c.delta_layers * c.delta_state_bytes(nbytes(dtype)) / (min(tp, c.delta_v_heads or 1) * pp)
    )
    return Memory(capacity, weights, activations, kv_full / shards, windows, runtime, state)
