"""Per-chip cost of one transformer layer in training: `perf.estimate` on the layer's tensor-
parallel shard (`workload.llm.build(scope="layer")`), split into forward, backward, attention
core and optimizer, with two implementation choices the layer graph does not express:

- **attention** "flash" (the graph's fused attention, FlashAttention, Dao et al. 2022) or
  "materialized": the s x s scores are written to memory and pass through softmax and dropout
  as separate kernels (Megatron-LM before FlashAttention: Narayanan et al. SC 2021, Korthikanti
  et al. 2022, whose Table 2 counts the 5*a*s^2*b bytes these kernels store). The two batched
  matmuls run over the full s x s (no causal skipping); the score traffic is below.
- **attention** "flash2" / "flash1": fused flash attention of an older kernel generation, which
  reaches at most `KERNEL_UTILIZATION[attention][chip]` of the chip's 16-bit peak. "flash2":
  FlashAttention-2 (pre-Hopper MMA instructions; FlashAttention-3, Shah et al. 2024, abstract:
  "FlashAttention-2 achieving only 35% utilization on the H100 GPU"; FlashAttention-2, Dao 2023,
  abstract: "50-73% of the theoretical maximum FLOPs/s on A100"). "flash1": FlashAttention-1
  and its Triton port of Dec 2022 (HazyResearch flash_attn_triton.py, "tested with
  triton==2.0.0.dev20221202", "only been tested on A100", "overall Triton forward + backward is
  slightly slower than CUDA"), which llm-foundry ran as `attn_impl: triton` on the pre-MLIR
  Triton fork; FlashAttention-2's abstract puts FlashAttention-1 at "25-40% of the theoretical
  maximum FLOPs/s" on A100. No source measures it on H100: it is taken as FA2's H100 rate scaled
  by the FA1/FA2 ratio on A100 (0.35 x 0.40 / 0.73), an assumption. Upper ends throughout.
  Where no source states the rate (other chips) both run as "flash".
- **sp**: sequence parallelism (Korthikanti et al. 2022 Sec. 4.2.2) runs the norms, dropouts
  and residual adds on 1/tp of the tokens; without it (Megatron-LM 2021) every TP rank repeats
  them over the whole sequence, as the layer graph lists them.
- **fp8** as Transformer Engine runs it (NVIDIA TE user guide, "Using FP8 with Transformer
  Engine"): only the linear layers' GEMMs run in FP8; attention, norms, activations and
  residuals stay BF16, and every GEMM operand is cast (with amax) to FP8 first. The FP8 GEMMs
  run at the deployed-model narrow-dtype rate (`perf.estimate(..., deployed=True)`, the
  family's `narrow_frac` of perf/calibration.py, shared with serving). **fp4** (NVFP4
  training, MLPerf Training v5.1) the same way: FP4 GEMMs, everything else BF16 (before, an
  fp4 plan priced attention and the vector ops at FP4 too: the MLPerf NVFP4 405B rows were
  predicted 14-44% too fast, now -12..+38%).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

from chipforge.cluster import chipkey
from chipforge.cluster.memory import LAYER_SAC_SHARE, op_sac_matmuls, op_sac_saved
from chipforge.errors import WorkloadError
from chipforge.perf import estimate
from chipforge.spec.models import ChipSpec
from chipforge.workload.config import ModelConfig
from chipforge.workload.graph import Graph
from chipforge.workload.llm import build
from chipforge.workload.ops import MatMul, Vector

ATTENTION = ("flash", "flash2", "flash1", "materialized")
# Best sustained fraction of the 16-bit dense peak of older flash-attention kernel generations,
# by chip, as the papers state it (upper ends; see the module docstring). Only caps perf's rate.
# H200, H800 and GH200 run the H100 SXM's GH100 SMs at its clock (their presets): the same
# kernels reach the same share of the same peak.
_GH100 = ("h100", "h200", "h800", "gh200")
# FlashAttention-2 on the H100 SXM5, head dim 128, 16K tokens (FA3 paper, Shah et al. 2024,
# arXiv 2407.08608, Fig. 5 causal forward and Fig. 6 backward, FlashAttention-2's bars): 335 and
# 322 TFLOP/s of the preset's 989.4 (the abstract's "35%" is their round figure). A value of
# KERNEL_UTILIZATION is one share, or (forward, backward) where the source measures each.
FA2_H100_TFLOPS = (335.0, 322.0)
_FA2_H100 = tuple(t * 1e12 / 989.4e12 for t in FA2_H100_TFLOPS)
KERNEL_UTILIZATION: dict[str, dict[str, float | tuple[float, float]]] = {
    # FA2 paper abstract (A100), FA3 paper figures (H100)
    "flash2": {"a100": 0.73, **dict.fromkeys(_GH100, _FA2_H100)},
    # FA2 abstract (A100); H100 scaled from FA3's abstract figure for FA2
    "flash1": {"a100": 0.40, **dict.fromkeys(_GH100, 0.35 * 0.40 / 0.73)},
}
# Sliding-window attention as cuDNN's fused kernel runs it on Blackwell: its band's FLOPs
# (Attention.flops, the count NVIDIA's benchmark uses: 4 b h attended d forward, 2.5 x that
# backward) reach only a small share of the 16-bit peak, per (window, head_dim) measured, as a
# share of the chip's dense BF16 peak per (forward, backward). Source: NVIDIA cudnn-frontend
# benchmark/sdpa_benchmark_training (configs/gpt_oss.py: BF16, head_dim 64, a 128-token window,
# top-left causal, batch 2, 128 heads; cuDNN 9.22, results/gpt_oss/gb300|gb200/*.csv, rows at
# s = 8192, non-deterministic backward as Transformer Engine runs it by default): GB300
# forward 0.397 ms, backward 0.862 ms; GB200 0.414 ms, 0.911 ms (172 / 198 and 165 / 187
# TFLOP/s of 2.5 PFLOP/s; 167-173 / 191-200 over s = 4096..32768: the share does not depend on
# the length). B200 is GB200's GPU (the same 148 SMs at a lower clock): GB200's shares. The
# rate is the kernel's, so it replaces perf's band pricing where it is slower (attention
# "flash", the fused kernel); other windows, head sizes and chips keep perf's. The benchmark has
# no sink (GPT-OSS's learnable softmax offset is one more column of the cuDNN graph).
# tests/test_frontier_training.py recomputes the shares from the four times.
_SWA_TIMES_S = {"gb300": (0.397e-3, 0.862e-3), "gb200": (0.414e-3, 0.911e-3)}
_SWA_PEAK = 2.5e15  # GB200 and GB300 dense BF16 (their presets' clocks x SMs x 4096 MACs x 2)
_SWA_FLOPS = 4 * 2 * 128 * (128 * 129 / 2 + (8192 - 128) * 128) * 64  # forward, as benchmarked
_SWA_SHARES = {
    chip: (_SWA_FLOPS / fwd / _SWA_PEAK, 2.5 * _SWA_FLOPS / bwd / _SWA_PEAK)
    for chip, (fwd, bwd) in _SWA_TIMES_S.items()
}
WINDOW_ATTENTION = {(128, 64): {**_SWA_SHARES, "b200": _SWA_SHARES["gb200"]}}
# The presets these shares were measured on. A chip takes a preset's shares where it bears its
# name (the name keeps what the model knows of the die: check_validate.chip_for's memory
# overrides) or is that preset but for its name and clock (`chipkey.preset_like`: a user's TOML
# copy under another name; the shares are of the peak at the clock the chip runs).
MEASURED_CHIPS = tuple(
    dict.fromkeys(n for t in (*KERNEL_UTILIZATION.values(), *WINDOW_ATTENTION.values()) for n in t)
)
# Bytes per attention score moved by the unfused kernels (16-bit scores, 1-byte dropout mask;
# Megatron-LM 2021 `ParallelAttention`: baddbmm -> fused scale-mask-softmax -> dropout -> bmm).
# Forward: QK^T writes 2; softmax reads 2, writes 2; dropout reads 2, writes 2 + mask 1.
SOFTMAX_BYTES, DROPOUT_BYTES = 4, 5
# Backward: softmax-grad reads grad and probs, writes grad (6); dropout-grad reads grad and
# mask, writes grad (5).
SOFTMAX_BWD_BYTES, DROPOUT_BWD_BYTES = 6, 5
# TE cast_transpose: read the 16-bit tensor (2 B), write FP8 and its FP8 transpose (1 + 1 B),
# for each GEMM input in the forward pass and each output gradient in the backward pass.
FP8_CAST_BYTES = 4
# NVFP4 (NVIDIA "Pretraining Large Language Models with NVFP4", arXiv 2509.25149; TE's NVFP4
# recipe, MLPerf Training v5.1): the linear layers' GEMMs in FP4 with one E4M3 scale per 16
# elements; attention and the rest stay 16-bit as under FP8. The cast reads 2 B and writes the
# tensor and its transpose at 0.5 B + 1/16 B of scale each.
CAST_BYTES = {"fp8": FP8_CAST_BYTES, "fp4": 2 + 2 * (0.5 + 1 / 16)}
# FP8 scaling recipes (`recipe`), each as its cast pass moves bytes per element:
# - "delayed" (TE DelayedScaling, the default above): the scale comes from an amax history, so
#   one cast_transpose pass: read 2 B, write 1 + 1 B.
# - "current" (TE Float8CurrentScaling, Megatron "tensorwise", Megatron-Bridge FP8-CS): the
#   tensor's own amax first, one more read of the 16-bit tensor (2 B) before the cast.
# - "mxfp8" (TE MXFP8BlockScaling, Blackwell; OCP MX: one E8M0 scale per 32 elements): the row-
#   and column-wise copies are quantized separately (a quantized tensor cannot be transposed):
#   read 2 B, write 2 x (1 + 1/32) B.
# - "block" (DeepSeek-V3 Sec. 3.3.2: 1x128 tiles for activations, 128x128 blocks for weights):
#   read 2 B, write 2 x (1 + 1/128) B.
FP8_RECIPE_CAST_BYTES = {
    "delayed": FP8_CAST_BYTES,
    "current": FP8_CAST_BYTES + 2,
    "mxfp8": 2 + 2 * (1 + 1 / 32),
    "block": 2 + 2 * (1 + 1 / 128),
}
FP8_RECIPES = tuple(FP8_RECIPE_CAST_BYTES)
# The block's elementwise ops as PyTorch runs them eagerly (`LayerShape.eager_ops`: torchtitan
# without torch.compile, whose blocks torch.compile otherwise fuses; parallelize_llama.py
# `apply_compile` at 9dec370): one aten kernel per op, each reading its inputs and writing its
# output at its own dtype. Bytes moved per element of the layer graph's op, (forward,
# backward), counted over the aten calls of torchtitan's code at 9dec370 (models/norms.py
# RMSNorm: x.float(), pow, mean, rsqrt, mul, type_as, * weight, in fp32 between the casts;
# models/llama/model.py apply_rotary_emb: xq.float(), a complex64 multiply by freqs_cis,
# type_as; FeedForward: F.silu(w1(x)) * w3(x)) and of their autograd backward.
# tests/test_eager_ops.py recounts them with a TorchDispatchMode on that code. The residual
# adds are one kernel either way (the graph's 6 B). The fused values are the layer graph's.
EAGER_BYTES = {
    "attn_norm": (36.0, 92.0),
    "ffn_norm": (36.0, 92.0),
    "rope": (20.0, 21.0),
    "ffn_act": (10.0, 18.0),
}
# the MLPs whose eager activation is `ffn_act`'s: F.silu(w1(x)) * w3(x) (GeGLU: F.gelu, the same
# kernels' bytes)
EAGER_ACTS = ("swiglu", "geglu")
# Eagerly, torchtitan's repeat_kv (model.py) also copies each of K and V to every query head
# before SDPA (expand + reshape of a non-contiguous view: one clone, reading 2 / n_rep and
# writing 2 B per element of the copy) and sums the copies' gradients back (the same bytes).
# Megatron-Core's MoE token dispatchers around the expert GEMMs (megatron/core/transformer/moe/
# token_dispatcher.py), as memory passes over 16-bit hidden rows, per token and top-k route,
# forward (the backward repeats them in reverse). Both `permute` a token's row into one copy
# per route and `unpermute` the routes' rows into their prob-weighted sum. "alltoall"
# (MoEAlltoAllTokenDispatcher, NCCL all-to-all) also orders the received rows by local expert
# after the dispatch (`sort_chunks_by_idxs`: read + write each route) and undoes it before the
# combine, when a chip holds more than one expert; "flex" (MoEFlexTokenDispatcher with DeepEP /
# HybridEP, whose dispatch kernels lay the rows out per expert) does not. The router's load-
# balancing loss reads the fp32 routing probabilities (tokens x experts x 4 B) forward and
# backward.
DISPATCH_BYTES_PER_TOKEN_ROW = 2  # read or written, per row element (16-bit)
# Two more passes of Megatron-Core's TEGroupedMLP (megatron/core/transformer/moe/experts.py,
# core_r0.15.0, the 25.11 NeMo container's; fusions/fused_bias_geglu.py) over the routed rows,
# in eager PyTorch outside the fused activation kernel, for models that have them:
# - the experts' fc2 bias (`ModelConfig.linear_bias`; fc2 runs skip_bias_add=True and
#   `_apply_bias` adds `t + b * p` expert by expert, then torch.cat): forward b*p writes 2 B,
#   the add reads 2 + 2 and writes 2, the cat reads 2 and writes 2 per fc2-output element (12);
#   backward the product's two gradients, each an elementwise product written and summed
#   (2 + 2 + 2 B, twice: 12). 16-bit probabilities (the router's dtype, moe_router_dtype unset).
# - the GLU clamp (`ModelConfig.glu_limit`; `weighted_bias_quick_geglu_impl(clamp_value=)`
#   clamps the two halves of the fc1 output and concatenates them before the fused kernel):
#   forward each clamp reads 2 and writes 2, the cat reads 2 and writes 2 per fc1-output
#   element (8); backward clamp's gradient reads the gradient and the input and writes 2 (6),
#   and the chunk's gradient concatenates the halves (4): 10.
EXPERT_BIAS_BYTES = (12, 12)  # (forward, backward) per fc2-output element
GLU_CLAMP_BYTES = (8, 10)  # (forward, backward) per fc1-output element
MOE_DISPATCHERS = ("alltoall", "flex")
# Megatron-Core selective recompute (TransformerConfig.recompute_modules, with
# recompute_granularity="selective"; default ["core_attn"]): the modules whose forward pass is
# recomputed in the backward pass, each as the layer graph's forward ops it covers. "core_attn":
# the attention core; "layernorm": input_layernorm and pre_mlp_layernorm; "mla_up_proj": MLA's
# up projections (and RoPE, which the graph folds into them); "mlp": a dense layer's MLP;
# "moe_act": the routed experts' activation; "moe": the MoE layer (router, routed and shared
# experts); "shared_experts". DeepSeek-V3 (report Sec. 3.2.3) recomputes "all RMSNorm
# operations and MLA up-projections": layernorm + mla_up_proj. Megatron-Core recomputes a norm
# only where it is a module of its own (transformer_layer.py: not an IdentityOp), see
# `_fused_norm`; what each module frees of the stored activations: memory.RECOMPUTED_SBH.
RECOMPUTE_MODULES = {
    "core_attn": (),  # the attention ops (kind "attention")
    "layernorm": ("attn_norm", "ffn_norm"),
    "mla_up_proj": ("q_up", "kv_up"),
    "mlp": ("ffn_up", "ffn_act", "ffn_down"),
    "moe_act": ("experts_act",),
    "moe": ("router", "router_topk", "experts_up", "experts_act", "experts_down",
            "experts_extra_up", "experts_extra_down",  # (workload.llm._moe)
            "shared_expert_up", "shared_expert_act", "shared_expert_down"),
    "shared_experts": ("shared_expert_up", "shared_expert_act", "shared_expert_down"),
    # torchtitan's per-op policy (memory.OP_SAC): every forward op but the attention core and
    # the matmuls whose outputs it saves (memory.op_sac_saved); `op_sac_share`
    "op_sac": (),
    # torchtitan's layer policy (memory.LAYER_SAC): every second block's whole forward
    "layer_sac": (),
    # MaxText's `minimal` remat (memory.MAXTEXT_MINIMAL): every forward op but the GEMMs (the
    # projections' dot_generals, whose outputs it saves): the attention core, norms, RoPE, the
    # activation, the residual adds and any input casts
    "maxtext_minimal": (),
    # MaxText's `proj` remat (memory.MAXTEXT_PROJ): the whole forward, as full remat
    "maxtext_proj": (),
}  # fmt: skip
# The modules whose recomputation redoes the attention core (under context parallelism its ring
# of K/V transfers too, training.cp_ring): Megatron-Core's core_attn, and MaxText's `minimal` and
# `proj` policies, neither of which saves the attention core's output (memory.MAXTEXT_MINIMAL,
# MAXTEXT_PROJ). torchtitan's per-op policy saves it (memory.OP_SAC); its layer policy redoes
# every second block whole (training._reforward: LAYER_SAC_SHARE of the layers).
ATTENTION_RECOMPUTED = frozenset({"core_attn", "maxtext_minimal", "maxtext_proj"})
_OP_MODULES = {op: m for m, ops in RECOMPUTE_MODULES.items() if m != "moe" for op in ops}
# the layer graph's GEMMs as torchtitan's block calls its matmuls (memory.op_sac_matmuls)
_OP_SAC_GEMMS = {"qkv_proj": ("wq", "wk", "wv"), "o_proj": ("wo",), "ffn_up": ("w1", "w3"),
                 "ffn_down": ("w2",)}  # fmt: skip


def op_sac_share(c: ModelConfig, part: str) -> float:
    """The share of forward op `part` (a layer graph op's last name part) that torchtitan's
    per-op policy recomputes: a GEMM's unsaved matmuls by their output width, none of the
    attention core, every other op whole."""
    if part == "attention":
        return 0.0
    if part not in _OP_SAC_GEMMS:
        return 1.0
    widths = {n: w for n, w, _ in op_sac_matmuls(c)}
    names = [n for n in _OP_SAC_GEMMS[part] if n in widths]
    saved = op_sac_saved(c)
    return sum(widths[n] for n in names if n not in saved) / sum(widths[n] for n in names)


# The GEMMs each TP collective of a block pipelines with under TP overlap (training's
# `tp_overlap`): with sequence parallelism the block's input all-gather feeds its first GEMMs
# ("attn_in": those before the attention core; "ffn_in": the MLP's up projections and router)
# and its last GEMMs ("attn_out": after the core; "ffn_out": the down projections) feed the
# reduce-scatter. In the backward pass the same GEMMs' dgrads swap roles: the gradient's all-
# gather feeds the *_out dgrads and the *_in dgrads feed the reduce-scatter.
TP_GROUPS = ("attn_in", "attn_out", "ffn_in", "ffn_out")
CACHE_MAX = 20000  # layer shapes kept (a search visits a few hundred; a sweep, more chips)


@dataclass(frozen=True)
class LayerShape:
    """Everything one layer's TP shard costs depend on, and the key of their one cache: the
    chip (compared by its content, `chipkey.chip_key`), the model, TP, the micro-batch of
    `seq`/`cp` tokens per sequence, the dtype and the implementation choices (ATTENTION,
    sequence parallelism, EP, FP8_RECIPES, MOE_DISPATCHERS). A new choice the pricing reads
    is a new field here, so the cache cannot miss it."""

    chip: ChipSpec = field(compare=False, repr=False)  # priced on; compared by `chip_key`
    model: ModelConfig
    tp: int
    mb: int
    seq: int
    cp: int
    dtype: str
    attention: str = "flash"
    sp: bool = True
    ep: int = 1
    fp8_recipe: str = "delayed"
    dispatcher: str = "alltoall"
    eager_ops: bool = False  # EAGER_BYTES
    chip_key: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "chip_key", chipkey.chip_key(self.chip))


class _Priced(NamedTuple):
    costs: tuple[float, float, float, float]  # layer_costs
    modules: dict[str, float]  # module_forward
    tp_gemms: dict[str, tuple[float, float]]  # tp_gemms


_CACHE: dict[LayerShape, _Priced] = {}


def _materialized_ops(c: ModelConfig, tp: int, mb: int, seq: int) -> tuple[list, list]:
    """(forward ops, backward ops) of unfused attention on one TP shard (16-bit scores)."""
    b, s, d = mb * c.heads // tp, seq, c.d_head
    n = b * s * s  # scores on this chip

    def mm(name: str, m: int, nn: int, k: int) -> MatMul:
        return MatMul(name=name, m=m, n=nn, k=k, batch=b, weight=False)

    def vec(name: str, bytes_: float, flops: float = 1, trans: float = 0) -> Vector:
        return Vector(
            name=name,
            elements=n,
            flops_per_element=flops,
            transcendentals_per_element=trans,
            bytes_per_element=bytes_,
        )

    fwd = [
        mm("attn.qk", s, s, d),
        vec("attn.softmax", SOFTMAX_BYTES, 5, 1),
        vec("attn.dropout", DROPOUT_BYTES, 2),
        mm("attn.pv", s, d, s),
    ]
    bwd = [
        mm("attn.dp", s, s, d),  # dP = dO V^T
        mm("attn.dv", s, d, s),  # dV = P^T dO
        vec("attn.dropout_bwd", DROPOUT_BWD_BYTES),
        vec("attn.softmax_bwd", SOFTMAX_BWD_BYTES, 3),
        mm("attn.dq", s, d, s),  # dQ = dS K
        mm("attn.dk", s, d, s),  # dK = dS^T Q
    ]
    return fwd, bwd


def _time(chip: ChipSpec, ops: list) -> float:
    return sum(o.time_s for o in estimate(Graph("attn", tuple(ops)), chip).ops)


def layer_costs(
    shape: LayerShape, *, cached_only: bool = False
) -> tuple[float, float, float, float] | None:
    """(forward s, backward s, attention-core forward s, optimizer s) of one layer's TP shard
    for one micro-batch of `seq`/`cp` tokens per sequence, on one chip (a MoE layer's routed
    experts: experts/ep of them, each with ep times the tokens, and the token `dispatcher`'s
    passes: MOE_DISPATCHERS). Cached; `cached_only`: None where this shape is not cached yet
    (a caller choosing what to price first)."""
    hit = _CACHE.get(shape)
    if hit is None:
        if cached_only:
            return None
        hit = _priced(shape)
    return hit.costs


def module_forward(shape: LayerShape) -> dict[str, float]:
    """Forward seconds of each of RECOMPUTE_MODULES in one layer's TP shard ("core_attn" is
    its attention-core forward). Cached with `layer_costs`."""
    return _priced(shape).modules


def tp_gemms(shape: LayerShape) -> dict[str, tuple[float, float]]:
    """Per TP_GROUPS member: (its forward GEMMs s, their dgrads s) in one layer's TP shard.
    Empty at tp 1. Cached with `layer_costs`."""
    return _priced(shape).tp_gemms


def _priced(shape: LayerShape) -> _Priced:
    hit = _CACHE.get(shape)
    if hit is None:
        hit = _layer(shape)
        if len(_CACHE) >= CACHE_MAX:
            _CACHE.clear()
        _CACHE[shape] = hit
    return hit


def _layer(shape: LayerShape) -> _Priced:
    chip, c, tp, mb, seq, cp = shape.chip, shape.model, shape.tp, shape.mb, shape.seq, shape.cp
    dtype, attention, sp, ep = shape.dtype, shape.attention, shape.sp, shape.ep
    kinds = c.attention_kinds()
    if len(kinds) > 1:  # banded and full layers mixed (GPT-OSS: every other one)
        return _mixed_windows(shape, kinds)
    fp8 = dtype in CAST_BYTES  # narrow GEMMs as Transformer Engine runs them (FP8 or NVFP4)
    base = "bf16" if fp8 else dtype
    s = seq // cp
    kw = dict(phase="train", batch=mb, seq=s, tp=tp, scope="layer", ep=ep)
    graph = build(c, dtype=base, **kw)
    if shape.eager_ops:
        graph = _eager(graph, c, tp)
    ops = estimate(graph, chip)
    gemm = {}
    if fp8:  # the linear layers' GEMMs from the FP8 graph (TE); everything else stays BF16
        g8 = build(c, dtype=dtype, **kw)
        g8_ops = estimate(g8, chip, deployed=True).ops
        gemm = {o.name: o.time_s for o in g8_ops if o.kind == "matmul"}
        linear = [o for o in g8.ops if o.kind == "matmul" and "grad" not in o.name]
        # forward: the input and the weight are cast; backward: the output gradient
        cast_f = sum(o.batch * (o.m * o.k + (o.k * o.n if o.weight else 0)) for o in linear)
        cast_b = sum(o.batch * o.m * o.n for o in linear)
    fwd = bwd = attn = opt = 0.0
    measured = chip.name
    if measured not in MEASURED_CHIPS:
        measured = chipkey.preset_like(chip, MEASURED_CHIPS, ignore=("name", "clock"))
    mods = dict.fromkeys(RECOMPUTE_MODULES, 0.0)
    times = {op.name: gemm.get(op.name, op.time_s) for op in ops.ops}  # each op as priced here
    graph_ops = {o.name: o for o in graph.ops}
    for op in ops.ops:
        t = times[op.name]
        if op.kind == "attention":
            if attention == "materialized":
                continue  # priced below
            cap = KERNEL_UTILIZATION.get(attention, {}).get(measured)
            g = graph_ops[op.name]
            if isinstance(cap, tuple):
                cap = cap[g.backward]
            if cap:
                peak = cap * chip.peak_flops("bf16")
                t = max(t, op.flops / peak)
            band = WINDOW_ATTENTION.get((g.window, g.head_dim), {}).get(measured)
            if band and attention == "flash" and not g.chunked:  # measured on sliding bands
                t = max(t, op.flops / (band[g.backward] * chip.peak_flops("bf16")))
            t *= cp  # CP: each query chunk sees all keys
        if op.kind == "collective":
            continue  # TP communication is priced by `collectives` on the topology
        if sp and op.kind == "vector" and ("norm" in op.name or "residual" in op.name):
            t /= tp  # sequence parallelism splits norms and residuals over the TP ranks
        if op.name.startswith("optimizer"):
            opt += t
        elif ".bwd" in op.name or ".dgrad" in op.name or ".wgrad" in op.name:
            bwd += t
        else:
            fwd += t
            attn += t if op.kind == "attention" else 0.0
            part = op.name.rsplit(".", 1)[-1]
            if part in _OP_MODULES and not _fused_norm(c, part):
                mods[_OP_MODULES[part]] += t
            if part in RECOMPUTE_MODULES["moe"]:
                mods["moe"] += t
            if not c.is_moe:
                mods["op_sac"] += t * op_sac_share(c, part)
                mods["maxtext_minimal"] += 0.0 if op.kind == "matmul" else t
    if attention == "materialized":
        f_ops, b_ops = _materialized_ops(c, tp, mb, s)
        f, b = _time(chip, f_ops) * cp, _time(chip, b_ops) * cp
        fwd, bwd, attn = fwd + f, bwd + b, attn + f
        mods["maxtext_minimal"] += f  # its einsums have batch dimensions: not saved
    if fp8:
        nbytes = FP8_RECIPE_CAST_BYTES[shape.fp8_recipe] if dtype == "fp8" else CAST_BYTES[dtype]
        for n, part in ((cast_f, "fwd"), (cast_b, "bwd")):
            cast = Vector(name=f"{dtype}.cast.{part}", elements=n, bytes_per_element=nbytes)
            t = _time(chip, [cast])
            fwd, bwd = (fwd + t, bwd) if part == "fwd" else (fwd, bwd + t)
            mods["maxtext_minimal"] += t if part == "fwd" else 0.0
    if c.is_moe:  # the token dispatcher's passes on this chip's tokens (SP: 1/tp of them)
        t = mb * s // (tp if sp else 1)
        sorts = 4 * c.top_k if c.experts // ep > 1 and shape.dispatcher == "alltoall" else 0
        rows = (2 + 2 * c.top_k + sorts) * DISPATCH_BYTES_PER_TOKEN_ROW
        moe_frac = c.moe_layer_share
        ops = [
            Vector(name="moe.dispatch", elements=t * c.hidden, bytes_per_element=rows),
            Vector(name="moe.aux_loss", elements=t * c.experts, bytes_per_element=4),
        ]
        t_disp = _time(chip, ops) * moe_frac
        fwd, bwd = fwd + t_disp, bwd + t_disp
        # TEGroupedMLP's eager passes, where they run
        routed = mb * s * c.top_k
        t_eager = _expert_eager(chip, c, routed, tp, 0) * moe_frac
        fwd += t_eager
        bwd += _expert_eager(chip, c, routed, tp, 1) * moe_frac
        # the clamp runs inside the checkpointed activation function
        mods["moe_act"] += _expert_eager(chip, c, routed, tp, 0, bias=False) * moe_frac
        mods["moe"] += t_eager
    modules = {**mods, "core_attn": attn, "layer_sac": fwd * LAYER_SAC_SHARE, "maxtext_proj": fwd}
    return _Priced((fwd, bwd, attn, opt), modules, _tp_groups(graph, times) if tp > 1 else {})


def check_eager_ops(c: ModelConfig) -> None:
    """EAGER_BYTES are counted on torchtitan's Llama block (RMSNorm, RoPE, a gated MLP): a
    model with a plain GELU MLP (GPT's, with LayerNorm, one fused aten kernel each) is refused
    rather than priced at another block's bytes."""
    if c.act not in EAGER_ACTS:
        raise WorkloadError(f"--eager-ops prices torchtitan's Llama block (RMSNorm, RoPE, a "
                            f"gated MLP); {c.name} has a {c.act} MLP")  # fmt: skip


def _eager(graph: Graph, c: ModelConfig, tp: int) -> Graph:
    """The layer graph with its elementwise ops as PyTorch runs them eagerly (EAGER_BYTES) and
    torchtitan's repeat_kv copies after the RoPE (EAGER_REPEAT_KV_BYTES), forward and
    backward."""
    ops = []
    for op in graph.ops:
        part = op.name.removesuffix(".bwd").rsplit(".", 1)[-1]
        if op.kind == "vector" and part in EAGER_BYTES:
            op = replace(op, bytes_per_element=EAGER_BYTES[part][op.name.endswith(".bwd")])
        ops.append(op)
        heads, kvh = c.heads // tp, max(1, c.n_kv_heads // tp)
        if op.kind == "vector" and part == "rope" and kvh < heads:
            n_rep = heads // kvh
            ops.append(Vector(
                name=op.name.replace("rope", "repeat_kv"),
                elements=2 * op.elements / (heads + kvh) * heads,
                bytes_per_element=2.0 + 2.0 / n_rep,
            ))  # fmt: skip
    return replace(graph, ops=tuple(ops))


def _tp_groups(graph: Graph, times: dict[str, float]) -> dict[str, tuple[float, float]]:
    """`tp_gemms` of a layer graph: its forward GEMMs sorted into TP_GROUPS by their place in
    the block (those before the attention core, after it, the MLP's "_down" projections and
    its other GEMMs), each group with its dgrads, at the times `times` gives them (the
    layer's own pricing: the FP8 GEMMs' where the layer runs them so)."""
    group: dict[str, str] = {}
    where = "attn_in"
    for op in graph.ops:
        if op.name.startswith("optimizer") or any(s in op.name for s in (".bwd", "grad")):
            continue
        if op.kind == "attention":
            where = "attn_out"
        elif op.kind == "collective" and where == "attn_out":  # the attention block's reduction
            where = "ffn_in"
        elif op.kind == "matmul":
            down = where == "ffn_in" and op.name.endswith("_down")
            group[op.name] = "ffn_out" if down else where
    out = {g: [0.0, 0.0] for g in TP_GROUPS}
    for o in graph.ops:
        if o.kind == "matmul" and (name := o.name.removesuffix(".dgrad")) in group:
            out[group[name]][o.name.endswith(".dgrad")] += times[o.name]
    return {g: (f, b) for g, (f, b) in out.items()}


def _fused_norm(c: ModelConfig, part: str) -> bool:
    """Whether Megatron-Core's Transformer Engine layer spec fuses norm `part` into the linear
    layer after it, so that "layernorm" recompute leaves it alone (memory.RECOMPUTED_SBH):
    the input norm except under MLA, the pre-MLP norm of a dense MLP."""
    return (part == "attn_norm" and not c.kv_lora) or (part == "ffn_norm" and not c.is_moe)


def _expert_eager(
    chip: ChipSpec, c: ModelConfig, rows: int, tp: int, i: int, *, bias: bool = True
) -> float:
    """Seconds of TEGroupedMLP's eager passes (EXPERT_BIAS_BYTES, GLU_CLAMP_BYTES; `i` 0:
    forward, 1: backward) over `rows` routed token rows of one TP rank; `bias` False: the
    clamp's alone."""
    ops = []
    if c.glu_limit and c.ffn_matrices == 3:
        width = 2 * -(-c.expert_ffn // tp)  # the fc1 output: gate and linear halves
        ops.append(Vector(name="moe.glu_clamp", elements=rows * width,
                          bytes_per_element=GLU_CLAMP_BYTES[i]))  # fmt: skip
    if c.linear_bias and bias:
        ops.append(Vector(name="moe.expert_bias", elements=rows * c.hidden,
                          bytes_per_element=EXPERT_BIAS_BYTES[i]))  # fmt: skip
    return _time(chip, ops) if ops else 0.0


def _mixed_windows(shape: LayerShape, kinds) -> _Priced:
    """A model whose sliding window bands only some layers (`ModelConfig.attention_kinds`): the
    layer graph (scope "layer") stands for one block, so the per-layer cost is the layer-count
    weighted mean of each kind's block (they differ in attention only)."""
    priced = [(n / shape.model.layers, _priced(replace(shape, model=m))) for m, n in kinds]
    first = priced[0][1]
    costs = tuple(sum(w * p.costs[i] for w, p in priced) for i in range(len(first.costs)))
    modules = {m: sum(w * p.modules[m] for w, p in priced) for m in first.modules}
    return _Priced(costs, modules, priced[-1][1].tp_gemms)  # (the same GEMMs in each)
