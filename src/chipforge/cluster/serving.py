"""LLM serving on many chips: prefill and decode time with TP/PP/EP, continuous or static
batching, paged KV cache, optional disaggregated prefill/decode; latency and throughput at a
concurrency (queueing what the KV cache cannot hold) or the best plan under TTFT/TPOT SLOs,
and the latency/throughput curve along the chosen plan.

Per-chip compute: one transformer block from `chipforge.workload.llm.build(scope="layer")` costed
by `chipforge.perf.estimate`, times layers / PP, plus the LM head (one matmul, costed by
`estimate` the same way); cached per shape. The graph's collectives are replaced by
`cluster.collectives.collective_time` on the topology: TP all-reduces, except the MoE block's,
which becomes EP's dispatch + combine all-to-all when ep > 1.
Continuous batching (Orca, Yu et al. OSDI 2022; Sarathi-Serve chunked prefill, Agrawal et al.
2024): in steady state each of `batch` running sequences gets one token per step, and each step
also carries batch/osl new prompts' prefill, chunked so prompts share the weight reads; so
TPOT = decode step + prefill share and TTFT = one prompt's prefill + one decode step of
queueing. Static batching (TensorRT-LLM gptSessionBenchmark): the batch is prefilled in one
pass, then decoded. PP runs `pp` micro-batches in flight. docs/cluster.md ("Serving") has the
formulas and the validation."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from functools import cache, lru_cache
from statistics import NormalDist

from chipforge.cluster.checks import (
    MAX_CHIPS,
    MAX_SEQUENCES,
    MAX_TOKENS,
    at_most,
    divisors,
    positive,
    within_context,
)
from chipforge.cluster.chipkey import chip_key
from chipforge.cluster.collectives import BANDWIDTH_EFFICIENCY, collective_time
from chipforge.cluster.kvcache import ACTIVATION_TOKENS, RUNTIMES, Memory, absorb_dtype, memory
from chipforge.cluster.queueing import (
    PERCENTILES,
    length_factors,
    tpot_percentiles,
    ttft_percentiles,
    wait_percentiles,
)
from chipforge.cluster.serving_plan import ServingPlan, _check, _load_chip, resolve_model
from chipforge.cluster.static_budget import static_budget_schedule
from chipforge.cluster.topology import Topology, topology_for
from chipforge.cluster.tp_allreduce import tp_all_reduce
from chipforge.dtypes import BYTES, nbytes
from chipforge.errors import Infeasible, WorkloadError, flag
from chipforge.perf import estimate
from chipforge.spec.models import ChipSpec
from chipforge.workload.config import ModelConfig
from chipforge.workload.graph import Graph
from chipforge.workload.llm import build, shard
from chipforge.workload.ops import Attention, MatMul

# The one calibration constant: a fixed per-layer, per-step overhead of the serving runtime
# (kernel launches and synchronisation: ~6 kernels per block at ~5 us each, the CUDA launch
# latency NVIDIA quotes; Nsight traces of vLLM/TRT-LLM decode show the same order). Global.
LAYER_OVERHEAD_S = 30e-6
# Narrow dtypes (fp8/fp4) run at the deployed-model rate of perf/calibration.py (`narrow_frac`,
# set on MLPerf H100x8 Offline): the blocks and the LM head are costed with
# `estimate(..., deployed=True)`.
BATCHES = tuple(2**i for i in range(0, 11))  # 1..1024 sequences per replica (search grid)
# The search's answer does not rest on that grid: where a grid batch meets the SLOs and the next
# one misses them (or cannot run), the largest batch between them that meets them is found by
# bisection, to one sequence per micro-batch of each attention group (`_largest_meeting`). MLPerf
# Inference's Server metric is the "Maximum Poisson throughput parameter supported"
# (mlcommons/inference_policies inference_rules.adoc, scenario table): submitters tune the
# target QPS up to the largest whose p99 TTFT / TPOT meet the bounds (loadgen reports "Reduce
# target QPS" above it), not to a power of two.
# Prompt tokens prefilled together in one chunk: TensorRT-LLM's max_num_tokens default (8192)
# and vLLM's max_num_batched_tokens for chunked prefill; the KV-cache workspace uses the same.
PREFILL_CHUNK_TOKENS = ACTIVATION_TOKENS
BATCHING = ("continuous", "static", "interleaved")
# "interleaved": JetStream's serving on one TPU slice (jetstream-pytorch run_server.py passes one
# engine as `interleaved_engine_create_fns`, so prefill and generate share the chips; JetStream
# orchestrator._prefill_thread prefills one request per call, its tokens padded by
# token_utils.pad_tokens to the next of the buckets 16, 32, ..., 32768): each prompt is
# prefilled alone, at batch 1 and its padded length, between the decode steps. jetstream-pytorch's
# own time model of its ShareGPT benchmark (benchmarks/analyze_sharegpt.py) is the same: the
# prefills' time plus the output tokens x the decode step / batch. It prices each request's
# prefill at that request's own bucket, so with a spread of prompt lengths (`isl_cv`) the mean
# prefill is taken over the lengths (queueing.length_factors), not at the mean length's bucket.
PREFILL_BUCKET_MIN = 16  # JetStream token_utils.pad_tokens' smallest bucket
# BATCH_SHARDS (`batch_shards`): one engine whose running batch is split over several groups of
# tp x pp chips (data parallel inside one program), stepping together, its prompts prefilled by
# the one engine. jetstream-pytorch (2ba0dd8) --shard_on_batch: one engine for the slice
# (environment.py's mesh over jax.device_count() chips), --batch_size its running batch
# (engine.max_concurrent_decodes), decode state and KV cache split on the batch axis
# (cache_sharding_axis 0, get_decode_state_sharding x_sharding), and JetStream's one prefill
# thread prefills one request per call for the whole engine, its result replicated on every
# chip (get_prefix_destination_sharding). So a shard decodes batch / shards sequences per step,
# a prompt's prefill costs one shard's, and the engine's prompts are prefilled one after
# another (with interleaved batching, batch / osl of them per step for the whole engine).
# Priced as if each shard held the whole weights: --shard_on_batch splits them on their first
# axis, and the collectives XLA's partitioner inserts for them are not modelled.
# WEIGHT_ONLY (`weight_dtype`): weight-only quantization. The weights are stored (and read from
# HBM) at the narrow format and widened to the 16-bit `dtype` on chip; activations, the
# products' rate and every collective stay at `dtype`. jetstream-pytorch (2ba0dd8):
# --quantize_weights builds layers.WeightOnlyPerChannelQuantizedLinear, whose forward is
# F.linear(bf16 inputs, int8 weight) times the per-output-channel scale; int8 x int8 only with
# --quantize_activation (default False, config.py). TensorRT-LLM's W8A16 / W4A16 weight-only
# GEMMs (weightOnlyQuantMatmul plugin) and vLLM's AWQ/GPTQ kernels are the same form.
# The collective that ends a MoE block in `workload.llm.build`: ffn_block's row-parallel
# all-reduce ("ffn_allreduce") inside the "moe_layers" prefix (the other is "attn_allreduce").
# With EP the experts' outputs are combined by the dispatch + combine all-to-all instead.
MOE_COLLECTIVE = "moe_layers.ffn_allreduce"
# MOE_TP (`moe_tp`): DP attention with a tensor-parallel FFN, as SGLang's --enable-dp-attention
# ran without --enable-ep-moe (sgl-project/sglang PR 1970, Nov 2024: "model forward with DP
# attention + TP MoE"; docs/references/deepseek.md, Jan 2025: each DP worker's batch is
# "synchronized before and after processing through the Mixture-of-Experts (MoE) layer"). The
# attention (MLA) runs data-parallel, a group of `tp` chips per batch of sequences with its own
# KV cache; each layer then all-gathers every group's hidden states, runs its MLP -- the routed
# and shared experts, or a dense layer's MLP -- tensor-parallel over all `ep` chips on every
# token, all-reduces the output and keeps its own rows (`_tp_ffn_block`).
COMBINE_DTYPE = "bf16"  # the MoE combine all-to-all returns expert outputs at this precision
# Pipeline stages pass the residual stream, never a quantized GEMM input, so an FP8/FP4 model
# sends 16-bit activations: TensorRT-LLM's PyTorch backend allocates its PipelineInterface
# tensors in the checkpoint's `config.torch_dtype` (tensorrt_llm/_torch/models/modeling_utils.py
# create_pipeline_interface_factory, at 323e846; quantization lives in the separate quant
# config), vLLM its IntermediateTensors in the model dtype (models/utils.py
# make_empty_intermediate_tensors_factory).
PP_DTYPE = "bf16"
# Each hop sends TWO such tensors of tokens x hidden, as two messages: the block output and
# the residual stream, which the next stage's fused add + RMSNorm takes apart. TensorRT-LLM
# (323e846): DecoderModel.__pp_init__ builds its PipelineInterface from
# pp_interface_keys = ["hidden_states", "residual"] (_torch/models/modeling_utils.py), and
# PipelineInterface.send sends hidden_states, then residual (_torch/pipeline_interface.py).
# vLLM (e06c9ba): LlamaModel.forward returns IntermediateTensors({"hidden_states": ...,
# "residual": ...}) on every stage but the last, its make_empty_intermediate_tensors_factory(
# ["hidden_states", "residual"], config.hidden_size) (models/llama.py; Qwen3, DeepSeek-V2/V3,
# Mixtral, GPT-OSS alike), sent tensor by tensor by send_tensor_dict; SGLang's PPProxyTensors
# carry the same two (bf7a0e2, srt/models/llama.py LlamaModel.forward). (Training's hop is
# one tensor: Megatron folds the residual into the layer output, see training.PP_BYTES.)
PP_TENSORS = 2
# The MoE dispatch or combine inside one scale-up domain runs as a one-sided all-to-all
# (TensorRT-LLM's NVLinkOneSided kernels, tech_blog18; DeepEP's NVLink path): each rank writes
# its tokens straight into every peer's receive buffer at once, behind two flag barriers, so it
# takes a fixed kernel time plus the bytes at the links' achieved bandwidth -- not a ring's
# (n - 1) hop latencies. The fixed time, 25 us per dispatch or combine, is set on ONE case:
# tech_blog18's EP8, 1-token run on GB200 NVL72 (18.9 us dispatch + 31.0 us combine); its
# EP16/32/64 and 2..2048-token rows are held out (tests/test_serving_frontier.py).
A2A_KERNEL_S = 25e-6
# The attention module's matmuls in `workload.llm.attention_block` (GQA and MLA): the ones an
# `attn_dtype` keeps at another precision than the FFN/experts.
ATTENTION_MATMULS = frozenset(
    ("qkv_proj", "q_proj", "q_down", "q_up", "kv_down", "kv_up", "q_absorb", "v_absorb", "o_proj")
)


# MLA's absorbed products in decode (`workload.llm._mla`), which a runtime may run at its own
# precision (kvcache.ABSORB_16BIT_RUNTIMES)
ABSORBED_MATMULS = frozenset(("q_absorb", "v_absorb"))


@dataclass(frozen=True, kw_only=True)
class _Absorbing(ModelConfig):
    """An MLA model as a runtime serves it that runs the absorbed products at `absorb`, 16-bit
    weights and activations (kvcache.absorb_dtype); `evaluate` passes it down as it does
    `_unbanded`'s model, so each step's graph reads it (`_graph`)."""

    absorb: str


@lru_cache(maxsize=64)
def _absorbing(c: ModelConfig, runtime: str, dt: str) -> ModelConfig:
    """`c` as `runtime` serves it at `dt` (unchanged where the runtime runs the absorbed
    products as its projections, or `c` has no MLA)."""
    absorb = absorb_dtype(c, runtime, dt)
    if not absorb:
        return c
    return _Absorbing(**{f.name: getattr(c, f.name) for f in fields(ModelConfig)}, absorb=absorb)


# The routed experts' grouped matmuls in `workload.llm._moe` (the busiest chip's experts hit,
# `batch` of them in each of its two groups, each n x k weights).
EXPERT_MATMULS = frozenset(("experts_up", "experts_down", "experts_extra_up", "experts_extra_down"))


_CACHE: dict[tuple, object] = {}  # block and LM-head costs, keyed on chip content and shape
_CACHE_MAX = 20000


def _cached(key: tuple, cost):
    hit = _CACHE.get(key)
    if hit is None:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        hit = _CACHE[key] = cost()
    return hit


def _layer(
    chip: ChipSpec, c: ModelConfig, phase: str, b: int, n: int, tp: int, dt: str, kvd: str,
    dep: int = 1, adt: str | None = None, past: int = 0, combine: bool = False,
    wdt: str | None = None, part: str = "",
):  # fmt: skip
    """(compute s, ((collective name, bytes), ...)) of one block: prefill n = prompt length,
    decode n = context; `dep` > 1: the routed experts split over `dep` attention groups (DP
    attention, see `evaluate`); `adt`: the attention module's matmul dtype where it differs
    from `dt`; `past`: prefill only, tokens already cached before the n new ones. Cached on
    the chip's content, the model and the shape. `combine`: the MoE routes' outputs weighted
    and summed in the block (without EP; with it the combine all-to-all's kernel does it).
    `wdt`: the weights stored at this format, widened to `dt` for the product (WEIGHT_ONLY).
    `part`: "attention" or "ffn" (its ops from `ffn_norm` on): that part of the block only;
    "core": its attention over the KV cache alone (the Attention ops)."""
    key = (chip_key(chip), c, phase, b, n, tp, dt, kvd, dep, adt, past, combine, wdt, part)
    return _cached(
        key,
        lambda: _layer_uncached(
            chip, c, phase, b, n, tp, dt, kvd, dep, adt, past, combine, wdt, part
        ),
    )


@lru_cache(maxsize=4096)
def _graph(
    c: ModelConfig, phase: str, b: int, n: int, tp: int, dt: str, kvd: str, dep: int = 1,
    adt: str | None = None, past: int = 0, combine: bool = False, wdt: str | None = None,
):  # fmt: skip
    """One block's graph; chip-independent, so a sweep over designs builds it once. `past`
    (prefill): the n new tokens follow `past` cached ones, which they attend to (and, in MLA's
    expanded prefill form, whose latent is up-projected to keys and values again)."""
    kw = {"seq": n, "past": past} if phase == "prefill" else {"context": n}
    kw |= {"ep": dep} if dep > 1 else {}
    g = build(
        c, phase=phase, batch=b, tp=tp, dtype=dt, kv_dtype=kvd, scope="layer", combine=combine, **kw
    )
    if adt and adt != dt:  # the attention module's matmuls kept at `adt` (see `evaluate`)
        g = _retyped(g, lambda op: _part(op) in ATTENTION_MATMULS, dtype=adt)
    if wdt and wdt != dt:  # weight-only quantization (WEIGHT_ONLY): weights stored at `wdt`
        g = _retyped(g, lambda op: op.weight, weight_dtype=wdt)
    if isinstance(c, _Absorbing):  # the runtime's 16-bit absorbed products (ABSORBED_MATMULS)
        g = _retyped(g, lambda op: _part(op) in ABSORBED_MATMULS, dtype=c.absorb, weight_dtype=None)
    return g


def _part(op) -> str:
    """An op's name within its block (`q_absorb` of `moe_layers.q_absorb`)."""
    return op.name.rsplit(".", 1)[-1]


def _retyped(g, chosen, **change):
    """`g` with `change` made to each of its MatMuls that `chosen(op)` selects."""
    ops = tuple(
        replace(op, **change) if isinstance(op, MatMul) and chosen(op) else op for op in g.ops
    )
    return replace(g, ops=ops)


def _layer_uncached(
    chip, c, phase, b, n, tp, dt, kvd, dep=1, adt=None, past=0, combine=False, wdt=None, part=""
):  # fmt: skip
    kinds = c.attention_kinds()
    if len(kinds) > 1:  # sliding-window and full-attention layers mixed (GPT-OSS, Gemma 2/3):
        # one block stands for each layer, so the layer-count weighted mean of each kind's
        # (they differ in attention alone: its band, its KV reads), as training prices them
        # (`cluster.layer._mixed_windows`)
        parts = [(k, _layer(chip, m, phase, b, n, tp, dt, kvd, dep, adt, past, combine, wdt=wdt,
                            part=part)) for m, k in kinds]  # fmt: skip
        return sum(k * t for k, (t, _) in parts) / c.layers, parts[-1][1][1]
    g = _graph(c, phase, b, n, tp, dt, kvd, dep, adt, past, combine, wdt=wdt)
    if part == "core":  # the attention over the KV cache alone
        g = replace(g, ops=tuple(op for op in g.ops if isinstance(op, Attention)))
    elif part:  # the attention module's ops, or the FFN's (from its norm on)
        ffn = next(i for i, op in enumerate(g.ops) if _part(op) == "ffn_norm")
        g = replace(g, ops=g.ops[:ffn] if part == "attention" else g.ops[ffn:])
    r = estimate(g, chip, deployed=True)
    rate = chip.mla_decode_rate if phase == "decode" else None  # ChipSpec.mla_decode_rate
    # the routed experts' grouped GEMM in decode streams its weights no faster than a measured
    # kernel does on this chip (ChipSpec.moe_decode_bandwidth; TensorRT-LLM tech_blog8)
    stream = chip.moe_decode_bandwidth if phase == "decode" else None
    compute = 0.0
    for op, o in zip(g.ops, r.ops, strict=True):
        if o.kind == "collective":
            continue
        t = o.time_s
        if rate and isinstance(op, Attention) and op.v_in_k:
            t = max(t, op.flops / rate)
        elif stream and isinstance(op, MatMul) and _part(op) in EXPERT_MATMULS:
            t = max(t, op.batch * op.n * op.k * nbytes(op.b_dtype) / stream)
        compute += t
    collectives = tuple((op.name, op.size) for op in g.ops if op.kind == "collective")
    return compute, collectives


def _head(chip: ChipSpec, c: ModelConfig, b: int, tp: int, dt: str, wdt=None) -> float:
    """LM head for `b` last positions on one TP shard, costed like the blocks' matmuls (the
    `lm_head` of `workload.llm.build`, scope="model"). Cached."""
    key = (chip_key(chip), "lm_head", c.vocab, c.hidden, b, tp, dt, wdt)
    return _cached(key, lambda: _head_uncached(chip, c, b, tp, dt, wdt))


def _head_uncached(chip: ChipSpec, c: ModelConfig, b: int, tp: int, dt: str, wdt=None) -> float:
    wdt = wdt if wdt and wdt != dt else None
    head = MatMul(name="lm_head", m=b, n=shard(c.vocab, tp), k=c.hidden, dtype=dt, weight=True,
                  weight_dtype=wdt)  # fmt: skip
    return estimate(Graph("lm_head", (head,)), chip, deployed=True).time_s


def _block(
    chip, c, topo, phase, b, n, tp, ep, dt, kvd, adt=None, overlap=False, past=0, wdt=None,
    moe_tp=False,
):  # fmt: skip
    """Seconds for one block of `c` (its compute, collectives and the runtime's overhead).
    `overlap`: the EP all-to-all runs under the computation (DeepSeek's inference system, Open
    Infra Index day 6: decode and prefill split the batch into two micro-batches, one's
    dispatch/combine hidden behind the other's attention and MoE; `_two_micro_batches`). One
    decoding sequence cannot be split, so its all-to-all is not hidden. `moe_tp`: the FFN
    tensor-parallel over the `ep` chips instead (`_tp_ffn_block`)."""
    if moe_tp and ep > tp:
        return _tp_ffn_block(chip, c, topo, phase, b, n, tp, ep, dt, kvd, adt, past, wdt)
    dep = ep // tp if ep > tp else 1  # wide EP: experts split over the attention groups
    # without EP the routes' outputs are weighted and summed on the chip (TensorRT-LLM's
    # finalize kernel); with EP inside the combine all-to-all's kernel (DeepEP's combine)
    combine = ep == 1 and c.is_moe
    if overlap and ep > 1 and c.is_moe and (b > 1 or (phase == "prefill" and n > 1)):
        return _two_micro_batches(chip, c, topo, phase, b, n, tp, ep, dt, kvd, adt, past, wdt=wdt)
    # (one sequence decoding, one token: no second micro-batch to hide its all-to-all behind)
    compute, collectives = _layer(
        chip, c, phase, b, n, tp, dt, kvd, dep, adt, past, combine, wdt=wdt
    )
    comm = 0.0
    for name, size in collectives:
        if not (ep > 1 and name == MOE_COLLECTIVE):
            comm += tp_all_reduce(chip, size, tp, topo)  # custom AR, else RCCL/NCCL
    if ep > 1 and c.is_moe:  # MoE: dispatch + combine all-to-all of each token's top_k copies
        # (also without TP, where the graph has no MoE all-reduce to stand in for it)
        # dispatch in the experts' GEMM dtype, combine in BF16 (DeepEP: FP8 dispatch, BF16
        # combine; TensorRT-LLM: NVFP4 dispatch for NVFP4 experts, BF16 combine)
        comm += _moe_exchange(c, topo, phase, b, n, ep, dt)
    return compute + comm + LAYER_OVERHEAD_S


def _tp_ffn_block(chip, c, topo, phase, b, n, tp, ep, dt, kvd, adt, past, wdt) -> float:
    """Seconds for one block of SGLang's DP attention with a tensor-parallel MoE (MOE_TP): the
    attention of this group's `b` sequences on its `tp` chips, then the FFN (routed and shared
    experts, or a dense layer's MLP) of every group's tokens, each weight sliced over the `ep`
    chips, after an all-gather of those tokens' hidden states and ended by the FFN's all-reduce
    over the `ep` chips; each group keeps its own rows of the result."""
    groups = ep // tp
    attn, attn_coll = _layer(chip, c, phase, b, n, tp, dt, kvd, 1, adt, past, False, wdt=wdt,
                             part="attention")  # fmt: skip
    ffn, ffn_coll = _layer(chip, c, phase, b * groups, n, ep, dt, kvd, 1, adt, past, c.is_moe,
                           wdt=wdt, part="ffn")  # fmt: skip
    comm = sum(tp_all_reduce(chip, size, tp, topo) for _, size in attn_coll)
    comm += sum(tp_all_reduce(chip, size, ep, topo) for _, size in ffn_coll)
    tokens = b * groups * (n if phase == "prefill" else 1)
    hidden = tokens * c.hidden * max(nbytes(dt), nbytes(PP_DTYPE))  # the residual stream's
    comm += collective_time("all_gather", hidden, ep, topo)
    return attn + ffn + comm + LAYER_OVERHEAD_S


def _two_micro_batches(chip, c, topo, phase, b, n, tp, ep, dt, kvd, adt, past, wdt=None):
    """Seconds for one block as DeepSeek's inference system overlaps it (Open Infra Index day 6;
    deepseek-ai/profile-data README and its decode/prefill schematics): the batch is split into
    two micro-batches that run one after the other on the SMs, each with its own attention,
    shared and routed experts -- so each reads the block's weights -- and its own dispatch and
    combine, which run on the network while the other micro-batch computes (decode: DeepEP's
    low-latency kernels occupy no SMs). The block takes the longer of the two streams: the
    micro-batches' computations summed, or their all-to-alls summed. Decode splits the
    sequences; prefill splits the tokens (the same prompt may be split between the micro-
    batches: the second half attends to the first as cached context)."""
    if phase == "decode" or b > 1:  # whole sequences (prompts) to each micro-batch
        halves = ((b // 2, n, past), (b - b // 2, n, past))
    else:  # one prompt: its first tokens, then the rest after them
        halves = ((1, n // 2, past), (1, n - n // 2, past + n // 2))
    compute = a2a = 0.0
    for mb, tokens, before in halves:
        block = _block(chip, c, topo, phase, mb, tokens, tp, ep, dt, kvd, adt, past=before, wdt=wdt)
        exchange = _moe_exchange(c, topo, phase, mb, tokens, ep, dt)
        compute += block - exchange  # its computation, TP collectives and launch overhead
        a2a += exchange
    return max(compute, a2a)


def _moe_exchange(c, topo, phase, b, n, ep, dt) -> float:
    """Seconds of one block's MoE dispatch (in the experts' GEMM dtype) + combine (BF16)."""
    size = b * (n if phase == "prefill" else 1) * c.hidden * c.top_k
    return _moe_all_to_all(size * nbytes(dt), ep, topo) + _moe_all_to_all(
        size * nbytes(COMBINE_DTYPE), ep, topo
    )


def _moe_all_to_all(size: float, ep: int, topo: Topology) -> float:
    """Seconds for one MoE dispatch or combine of `size` bytes per rank over `ep` ranks: the
    one-sided all-to-all inside a switched scale-up domain (`A2A_KERNEL_S`), else the
    collective model's all-to-all (across domains: each remote share crosses the NIC)."""
    if topo.kind == "switched" and ep <= topo.domain:
        return A2A_KERNEL_S + (ep - 1) / ep * size / (topo.up_bandwidth * BANDWIDTH_EFFICIENCY)
    return collective_time("all_to_all", size, ep, topo)


@lru_cache(maxsize=64)
def _unbanded(c: ModelConfig) -> ModelConfig:
    """`c` without sliding windows: a dense preallocated cache (`dense_cache`) holds every
    position in every layer and its attention reads them all (jetstream-pytorch's
    layers.AttentionKernel without ragged_mha: dense attention over the whole cache)."""
    return replace(c, window=0, window_layers=None, chunked=False) if c.window else c


@lru_cache(maxsize=64)
def _dense_of(c: ModelConfig) -> ModelConfig:
    """The MoE model `c` without its experts: its leading dense blocks (built once per model)."""
    return replace(
        c, experts=0, top_k=0, shared_experts=0, moe_ffn=None, shared_ffn=None, dense_layers=0
    )


def _step(
    chip, c, topo, phase, b, n, tp, pp, ep, dt, kvd, adt=None, overlap=False, past=0, wdt=None,
    moe_tp=False,
):  # fmt: skip
    """Seconds for one full forward step (all stages, one micro-batch) of the replica. A MoE
    model's leading dense layers (DeepSeek-V3: first_k_dense_replace = 3) are costed as the
    same model's dense block, which reads one FFN's weights instead of the experts'. `moe_tp`:
    see `_tp_ffn_block` (the dense layers' MLP tensor-parallel over the `ep` chips too)."""
    block = _block(chip, c, topo, phase, b, n, tp, ep, dt, kvd, adt, overlap, past, wdt=wdt,
                   moe_tp=moe_tp)  # fmt: skip
    t = (c.layers - c.dense_layers) * block if c.is_moe else c.layers * block
    if c.is_moe and c.dense_layers:
        dense = _block(chip, _dense_of(c), topo, phase, b, n, tp, ep if moe_tp else 1, dt, kvd,
                       adt, past=past, wdt=wdt, moe_tp=moe_tp)  # fmt: skip
        t += c.dense_layers * dense
    t += _head(chip, c, b, tp, dt, wdt=wdt)
    if pp > 1:  # activations sent between stages
        act = b * (n if phase == "prefill" else 1) * c.hidden * max(nbytes(dt), nbytes(PP_DTYPE))
        t += (pp - 1) * PP_TENSORS * collective_time("send_recv", act, 2, topo, stride=tp)
    return t


def _prefill_share(
    chip, c, topo, isl, batch, tp, pp, ep, dt, kvd, adt=None, overlap=False, past=0, chunk=None,
    wdt=None, moe_tp=False,
):  # fmt: skip
    """Replica seconds one prompt's prefill adds under continuous batching. Prompts are prefilled
    in chunks of up to PREFILL_CHUNK_TOKENS tokens that share one pass over the weights (with
    each other and the running decode batch), so a short prompt costs its compute, not a fresh
    read of the weights; at batch 1 there is nothing to share with. With `pp` stages a prompt
    holds each stage for its share of the layers while the other stages work on other
    micro-batches, so it adds one stage's time, not the whole pass (GPipe's pipelining, as the
    decode micro-batches already run). `chunk`: the prompt tokens a step takes where a token
    budget sets it (`max_num_tokens`), instead of PREFILL_CHUNK_TOKENS."""
    k = max(1, min(batch, (chunk or PREFILL_CHUNK_TOKENS) // isl))
    stages = max(1, min(pp, batch))  # stages busy with other micro-batches meanwhile
    t = _step(chip, c, topo, "prefill", k, isl, tp, pp, ep, dt, kvd, adt, overlap, past, wdt=wdt,
              moe_tp=moe_tp)  # fmt: skip
    return t / k / stages


def _on_grid(cost, n: int) -> float:
    """`cost(n)` interpolated linearly between the powers of two around n (exact on them), so a
    step-by-step schedule prices a few shapes instead of one per step."""
    lo = 1 << (max(1, n).bit_length() - 1)
    if n <= lo:
        return cost(lo)
    return cost(lo) + (cost(2 * lo) - cost(lo)) * (n - lo) / lo


def _largest_meeting(run, lo: int, hi: int, step: int, meets) -> list:
    """The plans evaluated while bisecting for the largest batch in [lo, hi) that meets the
    SLOs, on lo + k x step: `lo` meets them, `hi` misses them or cannot run (Infeasible), and a
    larger batch between them is assumed to miss them once a smaller one does (TPOT and the
    prompt queue's load grow with the batch). At most log2((hi - lo) / step) + 1 evaluations."""
    good, bad, plans = 0, -(-(hi - lo) // step), []  # in steps above lo
    while bad - good > 1:
        mid = (good + bad) // 2
        try:
            plan = run(lo + mid * step)
        except Infeasible:
            bad = mid
            continue
        if meets(plan):
            good = mid
            plans.append(plan)
        else:
            bad = mid
    return plans


def _busiest(groups: int, rate: float) -> float:
    """E[max of `groups` Poisson(rate) counts] / rate: how much longer a lockstep step's prefill
    takes when each of `groups` DP-attention groups prefills the prompts it received (a Poisson
    count at `rate` per step) and every group waits for the busiest (TensorRT-LLM tech_blog10:
    an attention-DP iteration lasts as long as its slowest rank). 1 for one group."""
    if groups <= 1 or rate <= 0:
        return 1.0
    # E[max] = sum over n >= 0 of P(max > n) = 1 - F(n)^groups. Below `start` (12 standard
    # deviations under the mean) F(n) < 1e-30, so each term there is 1; the probabilities are
    # taken in logs from `start` (exp(-rate) underflows to 0 past rate ~745)
    start = max(0, math.floor(rate - 12 * math.sqrt(rate)))
    busiest, cdf, n = float(start), 0.0, start
    term = math.exp(n * math.log(rate) - rate - math.lgamma(n + 1))
    while True:
        cdf += term
        tail = 1 - min(1.0, cdf) ** groups
        if tail < 1e-9 and n >= rate:
            return busiest / rate
        busiest += tail
        n += 1
        term *= rate / n


MAX_ADP_BALANCE = 10_000  # steps; TensorRT-LLM's examples wait tens (2**62 looped for ever)


def _balance_cycle(groups: int, rate: float, timeout: int, batching: int = 0) -> dict[int, float]:
    """The law of an ADP-balance cycle's length in steps, as TensorRT-LLM's executor runs it
    (PyExecutor._balance_adp_requests; tech_blog10): after a release every group's prompts are
    gone; each step a group that holds none receives one with probability 1 - exp(-rate)
    (Poisson arrivals at `rate` per step). While some group holds none, a counter runs and the
    held prompts are released when it reaches `timeout`; once every group holds one the
    counter stops and they are released `batching` steps later (`batching_wait_iters`). So with
    S the step every group first holds one, P(S <= s) = (1 - exp(-rate s))^groups, the cycle
    lasts S + batching if S <= timeout, else timeout. Returns {length: probability}."""
    miss = math.exp(-rate)

    def filled(s: int) -> float:  # P(S <= s)
        return (1.0 - miss**s) ** groups if s > 0 else 0.0

    law: dict[int, float] = {}
    for s in range(1, timeout + 1):
        law[s + batching] = law.get(s + batching, 0.0) + filled(s) - filled(s - 1)
    law[timeout] = law.get(timeout, 0.0) + 1.0 - filled(timeout)
    return law


def _balance_wait(groups: int, rate: float, timeout: int, batching: int = 0) -> dict[str, float]:
    """Steps a prompt waits under ADP balance (`_balance_cycle`): prompts arrive evenly over a
    cycle, so one lands in a cycle of length r with probability proportional to r and waits
    uniformly 0 .. r - 1 steps: P(W > k) = sum over r of P(r) (r - 1 - k)+ / E[r]. Returns the
    mean and the p50 / p90 / p99 (steps). (Checked against a step-by-step run of the executor's
    rule in tests/test_serving_frontier.py.)"""
    law = sorted(_balance_cycle(groups, rate, timeout, batching).items())
    cycle = sum(r * q for r, q in law)
    tails, mass, weighted = [], 0.0, 0.0  # sums over the cycles longer than k + 1 steps
    top = law[-1][0]
    i = len(law)
    for k in range(top - 1, -1, -1):  # from the longest cycle down
        while i and law[i - 1][0] > k + 1:
            i -= 1
            mass += law[i][1]
            weighted += law[i][0] * law[i][1]
        tails.append(max(0.0, (weighted - (k + 1) * mass) / cycle))
    tails.reverse()
    out = {"mean": sum(tails)}
    for key, q in PERCENTILES.items():
        out[key] = float(next((k for k, t in enumerate(tails) if t <= 1 - q), len(tails)))
    return out


@lru_cache(maxsize=256)
def _normal_max(n: int) -> float:
    """E[max of n independent standard normals] (midpoint rule on n x phi(x) Phi(x)^(n-1))."""
    nd, h = NormalDist(), 0.01
    xs = [-8 + h * (i + 0.5) for i in range(1600)]
    return sum(x * n * nd.pdf(x) * nd.cdf(x) ** (n - 1) * h for x in xs)


def _busiest_context(groups, seqs, isl, osl, isl_cv=0.0, osl_cv=0.0) -> int:
    """Mean context of the busiest of `groups` DP-attention groups of `seqs` running sequences
    each: the attention module's iteration time is the maximum over the ranks (TensorRT-LLM
    tech_blog10, "time_i = max over m of time_i,m"), and a rank's decode attention reads its
    sequences' contexts. A running sequence's context is its prompt (mean isl, CV isl_cv) plus
    a uniform point of its output, output lengths length-biased (lognormal, CV osl_cv:
    E[U O] = osl (1 + cv^2) / 2, E[(U O)^2] = osl^2 (1 + cv^2)^3 / 3); the groups' sums are
    independent and near normal (CLT), so the busiest is E[max of G normals] above the mean."""
    b = 1 + osl_cv * osl_cv
    mean = isl + osl * b / 2
    var = (isl * isl_cv) ** 2 + osl * osl * b**3 / 3 - (osl * b / 2) ** 2
    spread = math.sqrt(max(0.0, var) / max(1, seqs)) / mean
    return round(mean * (1 + _normal_max(groups) * spread))


@lru_cache(maxsize=1024)
def _max_quantile(groups: int, ratio: float, q: float) -> float:
    """x with P(ratio Z0 + max of `groups` standard normals <= x) = q, Z0 a standard normal of
    its own: E over Z0 (midpoint rule) of Phi(x - ratio Z0)^groups, bisected."""
    if groups <= 1:
        return math.sqrt(1 + ratio * ratio) * NormalDist().inv_cdf(q)
    h = 0.05
    zs = [-6 + h * (i + 0.5) for i in range(240)]
    ws = [h * math.exp(-z * z / 2) / math.sqrt(2 * math.pi) for z in zs]

    def cdf(x: float) -> float:
        return sum(w * (0.5 * math.erfc((ratio * z - x) / math.sqrt(2))) ** groups
                   for z, w in zip(zs, ws, strict=True))  # fmt: skip

    lo, hi = -8.0, 8.0 + 6 * ratio
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < q else (lo, mid)
    return (lo + hi) / 2


def _context_quantile(groups, seqs, isl, osl, q, isl_cv=0.0, osl_cv=0.0) -> float:
    """The q-quantile over time of the busiest of `groups` DP-attention groups' running contexts
    (per sequence, `seqs` sequences a group on average) under Poisson arrivals (MLPerf Server).
    Requests arrive as a Poisson process and each runs for its own length, so the number
    running is Poisson (the busy servers of an M/G/inf queue: Takacs, "Introduction to the
    Theory of Queues", 1962; Ross, "Stochastic Processes", 1996), each at a uniform point of
    its own (length-biased) output: contexts c of `_busiest_context`'s law. TensorRT-LLM's
    attention-DP router keeps the groups' counts level (ADPRouter.route_requests: a new request
    goes to a group below ceil(running / groups), the fewest prompt tokens first), so a group's
    summed context S -- what its decode attention reads -- is a common part, the total count's
    Poisson spread over the groups (variance seqs E[c]^2 / groups), plus its own sequences'
    contexts (variance seqs Var[c]), near normal (CLT). The groups step in lockstep at the
    busiest one's pace (tech_blog10): the q-quantile of the common part plus the max of the
    groups' own parts (`_max_quantile`). One group: the compound Poisson sum, variance
    seqs E[c^2]. Returned as S / seqs."""
    b = 1 + osl_cv * osl_cv
    mean = isl + osl * b / 2
    var = max(1e-9, (isl * isl_cv) ** 2 + osl * osl * b**3 / 3 - (osl * b / 2) ** 2)
    ratio = round(mean / math.sqrt(groups * var) if groups > 1 else mean / math.sqrt(var), 3)
    seqs = max(1, seqs)
    return mean + math.sqrt(var / seqs) * _max_quantile(max(1, groups), ratio, q)


def _lockstep(groups: int, rate: float, timeout: int | None, batching: int = 0) -> float:
    """How much longer the prefills of lockstep DP-attention groups take than balanced ones:
    E[max] / mean of the groups' prompt counts when a context step runs. Each group receives
    prompts at `rate` per step (Poisson). Without ADP balance (`timeout` 0) every step prefills
    what arrived since the last one. With it (TensorRT-LLM's executor, `timeout_iters` and
    `batching_wait_iters`: `_balance_cycle`), a context step prefills what the groups gathered
    over a cycle of mean length E[r] and still waits for the busiest group: at low load the
    timeout fires with most groups empty. None: balanced, the lockstep not modelled (1)."""
    if timeout is None or groups <= 1:
        return 1.0
    cycle = 1.0
    if timeout and rate > 0:
        cycle = sum(r * q for r, q in _balance_cycle(groups, rate, timeout, batching).items())
    return _busiest(groups, rate * cycle)


def _graph_batch(b: int, sizes: tuple[int, ...]) -> int:
    """The batch a decode step of `b` sequences runs at when the engine replays CUDA graphs
    captured at `sizes` with padding on: the smallest captured size >= b; b itself (eager, not
    padded) above the largest or without graphs. TensorRT-LLM's CUDAGraphRunner
    (_torch/pyexecutor/cuda_graph_runner.py: `_round_up_batch_size`, `_get_padded_batch`) pads a
    generation-only batch with copies of one dummy generation request
    (`kv_cache_manager.add_dummy_requests(..., is_gen=True)`), so the padded rows run every
    matmul, the router, the experts' all-to-all and the LM head, while their attention reads
    one cached token; tech_blog3 ("the padding itself has some overhead due to wasted tokens
    computation") and tech_blog20 ("wasting some compute on empty slots") describe the cost."""
    above = [s for s in sizes if s >= b]
    return min(above) if above else b


def _speculative(
    chip, c, topo, mb, ctx, tp, pp, ep, dt, kvd, eng, k, accept, wdt=None, moe_tp=False
) -> float:
    """Seconds per generated token of a decode step with `k` draft tokens per sequence
    (DeepSeek-V3's MTP modules, Sec. 2.2 / EAGLE: one decoder block plus the shared LM head per
    draft, run autoregressively) that the model verifies in one pass over k + 1 tokens per
    sequence. Each draft is accepted with probability `accept` given the ones before it, so a
    step yields (1 - a^(k+1)) / (1 - a) tokens (Leviathan et al., ICML 2023, Eq. 1). The verify
    pass is priced as a decode of k + 1 times the sequences at the same context (its KV cache read
    once per verified token: an upper bound where the kernel shares it among the k + 1 queries)."""
    verify = _step(chip, c, topo, "decode", mb * (k + 1), ctx, tp, pp, ep, dt, kvd, *eng, wdt=wdt,
                   moe_tp=moe_tp)  # fmt: skip
    draft = k * (_block(chip, c, topo, "decode", mb, ctx, tp, ep, dt, kvd, *eng, wdt=wdt,
                        moe_tp=moe_tp) + _head(chip, c, mb, tp, dt, wdt=wdt))  # fmt: skip
    tokens = (1 - accept ** (k + 1)) / (1 - accept)
    return (verify + draft) / tokens


def _attending(chip, c, mem, mb, ctx, tp, pp, ep, dt, kvd, adt, wdt, gqa_kernel, k, accept):
    """Seconds a decode step of `mb` sequences at context `ctx` spends in attention over the KV
    cache (every layer's Attention ops; the re-reads without a GQA kernel; with `k` draft tokens
    per token generated, the verify pass's k + 1 rows and the k drafts, as `_speculative`).
    Linear in the context: what a step's cost gains with the running contexts."""

    def core(b: int) -> float:
        dep = ep // tp if ep > tp else 1
        return c.layers * _layer(chip, c, "decode", b, ctx, tp, dt, kvd, dep, adt, 0,
                                 ep == 1 and c.is_moe, wdt=wdt, part="core")[0]  # fmt: skip

    t = core(mb) + (0.0 if gqa_kernel else _kv_reread(c, chip, mem, mb, ctx, pp))
    if k:
        tokens = (1 - accept ** (k + 1)) / (1 - accept)
        t = (core(mb * (k + 1)) + k * core(mb)) / tokens
    return t


def _kv_reread(c: ModelConfig, chip: ChipSpec, mem: Memory, seqs: int, ctx: int, pp: int):
    """Extra seconds per decode step when the decode attention reads each KV head once per query
    head instead of once per group: TensorRT-LLM's masked-MHA kernel; its GQA kernel (XQA) needs
    a paged KV cache (TensorRT-LLM docs/source/gpt_attention.md, v0.6/v0.7, "XQA Optimization")."""
    group = 1 if c.kv_lora else c.heads // c.n_kv_heads
    return (group - 1) * seqs * mem.kv_bytes(ctx) * pp / chip.hbm.bandwidth


def evaluate(
    chip, c, chips, topo, *, isl, osl, tp, pp, ep, batch, dt, kvd, disaggregated=False,
    batching="continuous", gqa_kernel=True, clients=None, rate=None, osl_cv=0.0,
    attn_dtype=None, ep_overlap=False, spec_tokens=0, spec_acceptance=0.0, adp_balance=None,
    prefix_hit=0.0, isl_cv=0.0, max_num_tokens=None, dense_cache=None, adp_batching_wait=0,
    weight_dtype=None, batch_shards=1, cuda_graph_batches=(), moe_tp=False, runtime="vllm",
) -> ServingPlan:  # fmt: skip
    """One plan at `batch` running sequences per replica; raises Infeasible if it does not fit.
    `clients` (per replica, closed loop) above `batch` wait in a queue for a free slot. `rate`
    (requests/s over all replicas, Poisson): the TTFT percentiles at that load instead of at
    the plan's throughput. `osl_cv`, `isl_cv`, `attn_dtype`, `ep_overlap`, `spec_*`,
    `max_num_tokens`, `dense_cache`, `weight_dtype`, `batch_shards`, `cuda_graph_batches`,
    `moe_tp`, `runtime`: see `plan_serving`."""
    _check(c, chips, tp, pp, ep)
    shards = batch_shards  # one engine's batch split over this many groups (BATCH_SHARDS)
    if shards > 1 and (batching != "interleaved" or pp > 1 or ep > tp or chips % (tp * shards)):
        raise Infeasible(f"--batch-shards {shards} is modelled for one interleaved engine "
                         "(--batching interleaved) without --pp or wide --ep, on a multiple "
                         "of tp x shards chips")  # fmt: skip
    wdt = weight_dtype if weight_dtype != dt else None
    opt = {"wdt": wdt, "moe_tp": moe_tp}  # every step's weight format and FFN sharding
    # DP attention with wide EP (DeepSeek's inference system, Open Infra Index day 6: MLA and
    # the shared expert data-parallel, routed experts over EP144): one replica is `ep` chips in
    # ep/tp attention groups of tp chips; each group serves batch/groups sequences and the
    # routed experts (whole, redundant copies where ep does not divide them: EPLB, DeepSeek-V3
    # Sec. 3.4) are spread over all ep chips, fed by the all-to-all across them.
    groups = ep // tp if ep > tp else 1
    if groups > 1 and (pp > 1 or chips % ep):
        raise Infeasible(f"--ep {ep} above --tp {tp} needs --pp 1 and --chips a multiple of it")
    c = _absorbing(_unbanded(c) if dense_cache else c, runtime, dt)
    mem = memory(c, chip.hbm.capacity, tp=tp, pp=pp, dtype=dt, kv_dtype=kvd, ep=ep,
                 attn_dtype=attn_dtype, weight_dtype=wdt, moe_tp=moe_tp and ep > tp,
                 runtime=runtime)  # fmt: skip
    if mem.kv_tokens <= 0:
        raise Infeasible(
            f"{c.name} weights need {mem.weights / 2**30:.1f} GiB per chip at tp={tp} pp={pp}, "
            f"{chip.name} has {chip.hbm.capacity / 2**30:.1f} GiB: raise --tp or --pp"
        )
    held = dense_cache or _held(isl, osl, osl_cv)
    fits = mem.sequences(held) * groups * shards
    if batch > fits:
        raise Infeasible(
            f"batch {batch} needs more KV cache than {mem.kv_tokens} tokens per replica; "
            f"at most {fits} sequences of {held} tokens fit"
            + ("" if fits else ": lower --isl/--osl or raise --tp/--pp")
        )
    dp = chips // (tp * pp * groups * shards)
    # mean context of the running sequences: a step's sequences are length-biased (each stays
    # for its own output length), so with output lengths of mean osl and coefficient of
    # variation cv the mean position reached is E[o^2] / (2 E[o]) = osl (1 + cv^2) / 2
    ctx = isl + round(osl * (1 + osl_cv**2) / 2)
    if dense_cache:  # attention over every position of each slot's preallocated cache
        ctx = dense_cache
    # micro-batch per pipeline stage (per attention group); a batch shard steps with the
    # busiest shard's share
    mb = max(1, -(-(batch // (pp * groups)) // shards))
    eng = (attn_dtype, ep_overlap)  # the engine's attention precision and EP overlap
    # DP-attention groups step in lockstep, so the decode step lasts as long as the attention of
    # the group whose sequences hold the most context (`_busiest_context`)
    busy = _busiest_context(groups, mb, isl, osl, isl_cv, osl_cv) if groups > 1 else ctx
    busy = dense_cache or busy
    decode = _step(chip, c, topo, "decode", mb, busy, tp, pp, ep, dt, kvd, *eng, **opt)
    if not gqa_kernel:
        decode += _kv_reread(c, chip, mem, mb, ctx, pp)
    if spec_tokens:
        decode = _speculative(chip, c, topo, mb, ctx, tp, pp, ep, dt, kvd, eng, spec_tokens,
                              spec_acceptance, **opt)  # fmt: skip

    def step_at(b: int) -> float:  # a decode step of b sequences at a context of 1 token
        if spec_tokens:
            return _speculative(chip, c, topo, b, 1, tp, pp, ep, dt, kvd, eng, spec_tokens,
                                spec_acceptance, **opt)  # fmt: skip
        return _step(chip, c, topo, "decode", b, 1, tp, pp, ep, dt, kvd, *eng, **opt)

    pad = _graph_batch(mb, cuda_graph_batches)
    if pad > mb:  # CUDA-graph padding: pad - mb dummy sequences, one cached token each
        decode += step_at(pad) - step_at(mb)
    # prompt tokens found in the KV cache (a shared prefix, DeepSeek's on-disk cache) are not
    # recomputed: prefill computes the rest, attending to the cached ones too
    fresh = max(1, round(isl * (1 - prefix_hit)))
    pre = (*eng, isl - fresh)  # prefill: the engine, then the cached tokens before the fresh
    prefill = _step(chip, c, topo, "prefill", 1, fresh, tp, pp, ep, dt, kvd, *pre, **opt)
    replicas, p_chips = dp, 0
    if disaggregated == "prefill":
        # a prefill pool only: it prefills prompts (chunks shared, the attention groups side by
        # side) and hands their KV cache to a decode pool; throughput counts the output tokens
        # the prompts it prefills go on to produce (requests/s x osl); no decode here
        share = _prefill_share(chip, c, topo, fresh, batch // groups, tp, pp, ep, dt, kvd, *pre,
                               **opt)  # fmt: skip
        tpot, ttft = 0.0, prefill
        thr = dp * groups * osl / share
    elif disaggregated == "decode":
        # a decode pool only: its prompts are prefilled on another pool (not among `chips`)
        # and arrive with their KV cache (DeepSeek's inference system: prefill and decode
        # nodes sized separately; its decode throughput is per decode node)
        tpot, ttft = decode, prefill
        thr = dp * batch / decode
    elif disaggregated:
        tpot, ttft = decode, prefill
        out_rate = batch / tpot  # decode pool, per replica
        # prefill replicas needed so prompts arrive as fast as decode finishes them (prompts
        # prefilled in shared chunks, as in co-located serving)
        share = _prefill_share(chip, c, topo, fresh, batch, tp, pp, ep, dt, kvd, *pre, **opt)
        need = out_rate / osl * share
        frac = need / (need + 1)
        p_chips = max(tp * pp, round(chips * frac / (tp * pp)) * tp * pp)
        if p_chips >= chips:
            raise Infeasible(f"disaggregated serving needs more than {chips} chips at tp x pp")
        d_rep = (chips - p_chips) // (tp * pp)
        p_rep = p_chips // (tp * pp)
        thr = min(d_rep * out_rate, p_rep / share * osl)
        replicas = d_rep  # decode replicas hold the running sequences
    elif batching == "interleaved":
        # JetStream (BATCHING): per decode step, batch / osl prompts each prefilled alone at
        # batch 1 and the bucket its length pads to, on the same chips, in turn with the step
        if groups > 1 or spec_tokens:
            raise Infeasible("interleaved batching is modelled without attention groups or "
                             "draft tokens")  # fmt: skip
        buckets = [max(PREFILL_BUCKET_MIN, 1 << (max(1, round(fresh * x)) - 1).bit_length())
                   for x in length_factors(isl_cv)]  # fmt: skip
        prefill = sum(
            _step(chip, c, topo, "prefill", 1, n, tp, pp, ep, dt, kvd, *pre, **opt) for n in buckets
        ) / len(buckets)
        tpot = decode + (batch - 1) / osl * prefill
        ttft = prefill + (decode if batch > 1 else 0.0)
        thr = dp * batch / (decode + batch / osl * prefill)
        percentiles, tpots = {}, {}
    elif batching == "static":
        # one batch at a time: prefill all prompts in one pass, then osl-1 decode steps; the
        # throughput counts the whole batch latency (TensorRT-LLM blogs/XQA-kernel.md:
        # out_tps = output_seqlen * batch_size / total_latency / tp)
        prefill = _step(chip, c, topo, "prefill", mb, fresh, tp, pp, ep, dt, kvd, *pre, **opt)
        tpot, ttft = decode, prefill
        thr = dp * batch * osl / (prefill + (osl - 1) * decode)
        if max_num_tokens:  # vLLM V0's chunked prefill of the batch (cluster.static_budget)
            if pp > 1 or groups > 1 or spec_tokens:
                raise Infeasible("a static batch under max_num_tokens is modelled for pp 1, "
                                 "without attention groups or draft tokens")  # fmt: skip

            @cache
            def chunk(m, q):  # a pass over m prompt tokens after q of their prompt's
                return _step(chip, c, topo, "prefill", 1, m, tp, pp, ep, dt, kvd, *eng,
                             isl - fresh + q, **opt)  # fmt: skip

            # what attending to o earlier tokens adds: linear in o (the attention's FLOPs and
            # KV reads are), taken at a context as long as the prompt's power of two
            ref = 1 << (fresh - 1).bit_length()
            total, ttft = static_budget_schedule(
                batch, fresh, osl, max_num_tokens,
                lambda d: _on_grid(lambda n: _step(chip, c, topo, "decode", n, busy, tp, pp, ep,
                                                   dt, kvd, *eng, **opt), d),
                lambda n: _on_grid(lambda m: chunk(m, 0), n),
                lambda n, o: o / ref * _on_grid(lambda m: chunk(m, ref) - chunk(m, 0), n),
            )  # fmt: skip
            tpot = (total - ttft) / max(1, osl - 1)
            thr = dp * batch * osl / total
    else:
        # each step carries batch/osl prompts' prefill: a stream waits for the others' prefills
        # (the attention groups of a wide-EP replica prefill their own prompts side by side)
        room = None  # prompt tokens a step takes beside its decode tokens (a token budget)
        if max_num_tokens:
            room = max_num_tokens - mb * (1 + spec_tokens)  # a verify step's k + 1 per sequence
            if room <= 0:
                raise Infeasible(
                    f"max_num_tokens {max_num_tokens} leaves no room for prompts beside "
                    f"{mb * (1 + spec_tokens)} decode tokens per step: lower the batch or raise it"
                )
        share = _prefill_share(chip, c, topo, fresh, batch // groups, tp, pp, ep, dt, kvd, *pre,
                               chunk=room, **opt)  # fmt: skip
        pshare = share  # one prompt's, in its attention group (each has its own budget)
        share /= groups
        # attention groups step in lockstep (the MoE all-to-all joins them), so a step that
        # prefills takes as long as its busiest group's prefills (see `_lockstep`)
        step = share * _lockstep(groups, batch / groups / osl, adp_balance, adp_batching_wait)
        tpot = decode + (batch - 1) / osl * step
        ttft = prefill + (decode if batch > 1 else 0.0)  # queue for the running step's end
        thr = dp * batch / (decode + batch / osl * step)
        # Poisson arrivals at this throughput: prompts queue for prefill (M/D/1, cluster.queueing)
        lam = (rate if rate is not None else thr / osl) / dp  # requests/s per replica
        own, service, arrive = prefill, share, lam  # own prefill; the prompt queue's service
        if room:
            # chunked prefill under a per-step token budget (TensorRT-LLM max_num_tokens with
            # chunked context, FCFS chunking): a step takes `room` prompt tokens beside its
            # decode tokens, so a prompt's prefill runs over fresh / room steps, each also
            # carrying the decode batch; the pp micro-batches take a chunk each per cycle, and
            # each DP-attention group (its own budget) queues its own prompts
            # A step's budget takes every waiting prompt that fits, in arrival order, the last
            # one chunked (TensorRT-LLM batch_manager/microBatchScheduler.cpp: all context
            # requests are gathered, then `setCtxRequestsChunkSize` under
            # kFIRST_COME_FIRST_SERVED fills max_num_tokens less the generation tokens in
            # order; Sarathi-Serve's stall-free batching, arXiv 2403.02310 Algorithm 1, alike),
            # so room // fresh short prompts share one pass (`_prefill_share`): the queue
            # serves a prompt in its share of that pass plus its fresh / room of the step's
            # decode; its first token comes at the end of the whole step that carries its last
            # chunk, decode batch included (at least one decode). A prompt longer than the room
            # is alone in its steps: its own prefill over fresh / room steps, as before.
            stages = max(1, min(pp, batch))
            own = prefill + max(1.0, fresh / room) * decode
            service, arrive = pshare + fresh / room * decode / stages, lam / groups
            if arrive * service >= 1:
                raise Infeasible(
                    f"max_num_tokens {max_num_tokens} admits prompts at {1 / service:.3g}/s per "
                    f"replica, {arrive:.3g}/s arrive: lower the batch or raise it"
                )
            ttft += own - prefill
        ok = batch > 1 and arrive * service < 1
        waits = {}
        if ok and isl_cv:  # prompt lengths spread: M/G/1, each prompt's own prefill too
            spread = ttft_percentiles(arrive, service, own, isl_cv)
            waits = {k: t - own for k, t in spread.items()}
        elif ok:
            waits = wait_percentiles(arrive, service)
        base, held = ttft, {}  # the percentiles add each wait's own percentile to the base
        if adp_balance and groups > 1:  # a prompt waits for the other groups' (steps, below)
            held = _balance_wait(groups, lam / groups * tpot, adp_balance, adp_batching_wait)
            ttft += held.pop("mean") * tpot
        percentiles = {k: base + w + held.get(k, 0.0) * tpot for k, w in waits.items()}
        tpots = tpot_percentiles(tpot, lam, step, osl, isl_cv) if batch > 1 else {}
        if tpots and not dense_cache:
            # a request decodes at the running contexts of its time, which vary (Poisson
            # arrivals, lengths spread: `_context_quantile`); what the contexts add to a step
            # (its attention over the KV cache) is linear in them. Taken as the step at a random
            # time: a request's own TPOT averages its life, so this bounds the spread above
            base = ctx if spec_tokens else busy
            attend = _attending(chip, c, mem, mb, base, tp, pp, ep, dt, kvd, attn_dtype, wdt,
                                gqa_kernel, spec_tokens, spec_acceptance)  # fmt: skip
            for k, q in PERCENTILES.items():
                at = _context_quantile(groups, mb, isl, osl, q, isl_cv, osl_cv)
                tpots[k] += attend * (at / base - 1)
    if disaggregated or batching in ("static", "interleaved"):
        percentiles, tpots = {}, {}
    queue = 0.0
    if clients and clients > batch:  # closed loop: a client waits until a slot frees up
        cycle = clients * replicas / thr * osl  # Little's law over all replicas
        queue = max(0.0, cycle - (ttft + (osl - 1) * tpot))
    if osl == 1:  # one output token: no time between tokens to report (vLLM's and TensorRT-LLM's
        # benchmarks define TPOT = (e2e - TTFT) / (osl - 1), undefined at osl 1)
        tpot, tpots = None, {}
    return ServingPlan(
        chip.name, c.name, chips, tp, pp, ep, replicas, batch, isl, osl, dt, kvd,
        ttft + queue, tpot, thr, mem.kv_tokens, mem.to_dict(),
        disaggregated if disaggregated in ("decode", "prefill") else bool(disaggregated), p_chips,
        {"prefill": prefill, "decode": decode, "queue": queue}, batching,
        (clients or batch) * replicas, percentiles if not clients else {},
        osl_cv=osl_cv, attn_dtype=attn_dtype, ep_overlap=bool(ep_overlap),
        spec_tokens=spec_tokens, spec_acceptance=spec_acceptance, adp_balance=adp_balance,
        prefix_hit=prefix_hit, isl_cv=isl_cv, max_num_tokens=max_num_tokens,
        tpot_percentiles_s=tpots if not clients else {}, dense_cache=dense_cache,
        adp_batching_wait=adp_batching_wait, weight_dtype=wdt, batch_shards=shards,
        cuda_graph_batches=tuple(cuda_graph_batches), moe_tp=bool(moe_tp), runtime=runtime,
    )  # fmt: skip


def check_options(
    c: ModelConfig,
    chips: int,
    *,
    isl,
    osl,
    dtype,
    kv_dtype,
    tp,
    pp,
    ep,
    concurrency,
    ttft_slo,
    tpot_slo,
    disaggregated,
    batching,
    slo_percentile,
    max_batch,
    osl_cv,
    attn_dtype,
    ep_overlap,
    spec_tokens,
    spec_acceptance,
    adp_balance,
    prefix_hit,
    isl_cv,
    max_num_tokens,
    dense_cache,
    adp_batching_wait,
    weight_dtype,
    batch_shards,
    cuda_graph_batches,
    moe_tp,
    runtime,
) -> tuple[int, ...]:
    """The values and pairs of `plan_serving`'s options it refuses whatever the chip (one line
    naming the flags, WorkloadError), so a table of them (cluster.serve_options) is refused
    before any plan runs; returns `cuda_graph_batches` sorted, without repeats."""
    kvd = kv_dtype or dtype
    if runtime not in RUNTIMES:
        raise WorkloadError(f"{flag('runtime')} must be one of {', '.join(RUNTIMES)}, "
                            f"not {runtime!r}")  # fmt: skip
    for name, value in (("dtype", dtype), ("kv_dtype", kvd), ("attn_dtype", attn_dtype or dtype),
                        ("weight_dtype", weight_dtype or dtype)):  # fmt: skip
        if value not in BYTES:
            raise WorkloadError(f"{flag(name)} must be one of {', '.join(BYTES)}, not {value!r}")
    if weight_dtype and weight_dtype != dtype and nbytes(weight_dtype) >= nbytes(dtype):
        raise WorkloadError(
            f"--weight-dtype {weight_dtype} must be narrower than --dtype {dtype} (weight-only "
            "quantization widens the stored weights to dtype): drop it or use a narrower one"
        )
    if weight_dtype and attn_dtype:
        raise WorkloadError("--weight-dtype and --attn-dtype are not modelled together: drop one")
    positive(error=WorkloadError, required=("chips", "isl", "osl", "batch_shards"), chips=chips,
             isl=isl, osl=osl, max_batch=max_batch, max_num_tokens=max_num_tokens,
             dense_cache=dense_cache, concurrency=concurrency,
             batch_shards=batch_shards)  # fmt: skip
    if isinstance(cuda_graph_batches, str | bytes) or not all(
        isinstance(b, int) and not isinstance(b, bool) and 0 < b <= MAX_SEQUENCES
        for b in (cuda_graph_batches if isinstance(cuda_graph_batches, tuple | list) else [None])
    ):
        given = cuda_graph_batches  # the list as the flag writes it, not a tuple's repr
        if isinstance(given, tuple | list):
            given = ",".join(map(str, given))
        raise WorkloadError(
            f"{flag('cuda_graph_batches')} must list batch sizes from 1 to {MAX_SEQUENCES:,} "
            f"(e.g. 128,256,384,512), not {given!r}"
        )
    cuda_graph_batches = tuple(sorted(set(cuda_graph_batches)))
    for name, slo in (("ttft_slo", ttft_slo), ("tpot_slo", tpot_slo)):
        if slo is not None and not (
            isinstance(slo, int | float) and not isinstance(slo, bool) and 0 < slo < math.inf
        ):
            raise WorkloadError(f"{flag(name)} must be a positive number of seconds, not {slo!r}")
    at_most(MAX_CHIPS, chips=chips, tp=tp, pp=pp, ep=ep, batch_shards=batch_shards)
    at_most(MAX_TOKENS, isl=isl, osl=osl, dense_cache=dense_cache)
    if dense_cache and dense_cache < isl + osl:
        raise WorkloadError(
            f"--dense-cache {dense_cache} is shorter than --isl + --osl = {isl + osl:,}: a rolling "
            "window over the cache is not modelled; raise it or drop it"
        )
    at_most(MAX_SEQUENCES, max_batch=max_batch, concurrency=concurrency)
    within_context(c, isl, osl, fields="--isl + --osl")
    if (
        isinstance(spec_tokens, bool)
        or not isinstance(spec_tokens, int)
        or not 0 <= spec_tokens <= 8
    ):
        raise WorkloadError(f"--spec-tokens must be an integer from 0 to 8, not {spec_tokens!r}")
    if not (isinstance(spec_acceptance, (int, float)) and 0 <= spec_acceptance < 1):
        raise WorkloadError(
            f"--spec-acceptance must be a probability in [0, 1), not {spec_acceptance!r}"
        )
    if spec_acceptance and not spec_tokens:  # else priced as if not given
        raise WorkloadError("--spec-acceptance needs --spec-tokens, the draft tokens per step")
    if spec_tokens and osl == 1:  # else priced as if not given
        raise WorkloadError(
            "--spec-tokens with --osl 1: the one output token comes from the prefill, no decode "
            "step is speculated; drop --spec-tokens or raise --osl"
        )
    for name, cv in (("osl_cv", osl_cv), ("isl_cv", isl_cv)):
        if isinstance(cv, bool) or not (isinstance(cv, (int, float)) and 0 <= cv < 100):
            raise WorkloadError(f"{flag(name)} must be a number in [0, 100), not {cv!r}")
    if disaggregated not in (False, True, "decode", "prefill"):
        raise WorkloadError(
            "`disaggregated` must be true, false, 'decode' or 'prefill' (one pool), "
            f"not {disaggregated!r}"
        )
    if disaggregated == "decode" and osl == 1:  # the prefill pool makes each request's token
        raise WorkloadError(
            "--decode-pool with --osl 1: a request's one output token comes from its prefill, "
            "on the prefill pool, so a decode pool has nothing to decode; raise --osl or drop "
            "--decode-pool"
        )
    # the waits' law is tabulated step by step (adp_balance None: off)
    for name, steps in (("adp_balance", 0 if adp_balance is None else adp_balance),
                        ("adp_batching_wait", adp_batching_wait)):  # fmt: skip
        if (
            isinstance(steps, bool)
            or not isinstance(steps, int)
            or not 0 <= steps <= MAX_ADP_BALANCE
        ):
            raise WorkloadError(f"{flag(name)} must be a whole number of steps from 0 (off) to "
                                f"{MAX_ADP_BALANCE:,}, not {steps!r}")  # fmt: skip
    if adp_batching_wait and not adp_balance:
        raise WorkloadError(
            f"{flag('adp_batching_wait')} is a wait of ADP balance: give --adp-balance (its "
            "timeout) too"
        )
    if not (isinstance(prefix_hit, (int, float)) and 0 <= prefix_hit < 1):
        raise WorkloadError(f"`prefix_hit` must be a fraction in [0, 1), not {prefix_hit!r}")
    if batching not in BATCHING:
        raise WorkloadError(f"--batching must be one of {', '.join(BATCHING)}, not {batching!r}")
    if max_num_tokens and disaggregated:
        raise WorkloadError(
            "--max-num-tokens budgets the steps of co-located batching: drop it, or drop "
            "--disaggregated / --decode-pool"
        )
    if batching != "continuous" and disaggregated:  # its pools run their own batches
        raise WorkloadError(
            f"--batching {batching} runs prefill and decode on the same chips: drop it, or drop "
            "--disaggregated / --decode-pool"
        )
    if chips % batch_shards:
        raise WorkloadError(
            f"--batch-shards {batch_shards} must divide --chips {chips} (each shard is a group "
            "of chips): change one of them"
        )
    if batch_shards > 1 and (batching != "interleaved" or (pp or 1) > 1):
        raise WorkloadError(
            "--batch-shards splits one engine's batch as JetStream's does: it needs --batching "
            "interleaved and no --pp above 1 (or drop it)"
        )
    if batching == "interleaved" and max_num_tokens:  # JetStream: no per-step token budget
        raise WorkloadError(
            "--max-num-tokens budgets chunked prefill; interleaved batching (JetStream) prefills "
            "each prompt alone at its padded length: drop one of them"
        )
    if slo_percentile is not None and slo_percentile not in PERCENTILES:
        raise WorkloadError(
            f"--slo-percentile must be one of {', '.join(PERCENTILES)}, not {slo_percentile!r}"
        )
    # the Poisson-arrival percentiles exist for co-located continuous batching at an offered
    # load only (`_evaluate`); elsewhere the SLOs would be held on the mean
    pool = {True: "--disaggregated", "decode": "--decode-pool", "prefill": "--prefill-pool"}
    without = (
        f"{pool[disaggregated]} (the pools' queues are not modelled)"
        if disaggregated
        else f"--batching {batching} (only continuous batching's queue is modelled)"
        if batching != "continuous"
        else "--concurrency (a closed loop of clients, not Poisson arrivals)"
        if concurrency
        else None
    )
    if slo_percentile is not None and without:
        raise WorkloadError(
            f"--slo-percentile {slo_percentile} is not modelled with {without}: drop one of them"
        )
    if disaggregated == "prefill":  # a prefill pool runs no decode step: priced as if not given
        given = [f for f, on in (("--tpot-slo", tpot_slo), ("--spec-tokens", spec_tokens),
                                 ("--cuda-graph-batches", cuda_graph_batches)) if on]  # fmt: skip
        if given:
            raise WorkloadError(
                f"--prefill-pool with {', '.join(given)}: a prefill pool runs no decode step "
                "(its requests decode on another pool); drop them or drop --prefill-pool"
            )
    if moe_tp and not (tp and ep and ep > tp and c.is_moe):
        raise WorkloadError(
            "--moe-tp slices the FFN of DP-attention groups over the --ep chips: give --tp and "
            "--ep, --ep a multiple of --tp above it, for a MoE model"
        )
    if moe_tp and ep_overlap:
        raise WorkloadError("--moe-tp has no all-to-all for --ep-overlap to hide: drop one")
    return cuda_graph_batches


def plan_serving(
    chip,
    model,
    chips: int,
    *,
    isl: int,
    osl: int,
    dtype: str = "bf16",
    kv_dtype: str | None = None,
    tp: int | None = None,
    pp: int | None = None,
    ep: int | None = None,
    concurrency: int | None = None,
    ttft_slo: float | None = None,
    tpot_slo: float | None = None,
    disaggregated: bool | str = False,
    topology: Topology | str | None = None,
    batching: str = "continuous",
    gqa_kernel: bool = True,
    slo_percentile: str | None = None,
    max_batch: int | None = None,
    osl_cv: float = 0.0,
    attn_dtype: str | None = None,
    ep_overlap: bool = False,
    spec_tokens: int = 0,
    spec_acceptance: float = 0.0,
    adp_balance: int | None = None,
    prefix_hit: float = 0.0,
    isl_cv: float = 0.0,
    max_num_tokens: int | None = None,
    dense_cache: int | None = None,
    adp_batching_wait: int = 0,
    weight_dtype: str | None = None,
    batch_shards: int = 1,
    cuda_graph_batches: tuple[int, ...] | list[int] = (),
    moe_tp: bool = False,
    runtime: str = "vllm",
    sustained_clock: bool = False,
) -> ServingPlan:
    """Evaluate a serving plan, searching the parallelism/batch left as None for the highest
    throughput meeting the SLOs. `concurrency`: requests in the system over all replicas (those
    beyond what the KV cache holds wait in a queue). `batching`: "continuous" (in-flight, chunked
    prefill) or "static" (one batch at a time). `disaggregated`: True splits the chips into
    prefill and decode pools sized to each other; "decode": the chips are a decode pool fed by
    a prefill pool not counted here; "prefill": a prefill pool (its throughput: the output
    tokens/s of the prompts it prefills; TPOT 0). `gqa_kernel=False`: decode attention reads the
    KV cache once per query head (TensorRT-LLM without XQA). `slo_percentile` (p50/p90/p99):
    the TTFT and TPOT SLOs hold at that percentile under Poisson arrivals (MLPerf Server: p99)
    instead of on the mean. `max_batch`: the engine's largest running batch per replica
    (TensorRT-LLM max_batch_size; vLLM max_num_seqs), a cap on the search and on a stated
    concurrency's running batch (the other requests queue). `osl_cv`: the
    coefficient of variation of the output lengths (0: all `osl` long); a step's sequences are
    length-biased, so their mean context is isl + osl (1 + cv^2) / 2. `attn_dtype`: the
    attention modules' matmuls and weights at this precision instead of `dtype` (NVIDIA's NVFP4
    DeepSeek-R1 checkpoint quantizes only the FFN/MoE layers). `ep_overlap`: the EP
    all-to-all hidden behind computation (two micro-batches; DeepSeek's inference system).
    `spec_tokens`: draft tokens per decode step (MTP / speculative decoding), each accepted
    with probability `spec_acceptance` given the ones before it (DeepSeek-V3 reports 85-90 %
    for its one MTP module); TPOT and throughput count the tokens a step yields. `adp_balance`
    (DP attention): n > 0: the engine gathers the groups' prefills into the same steps, a
    prompt waiting at most n steps for the others' (TensorRT-LLM's ADP balance,
    `adp_balancing_timeout_iters`); 0: off, each step waits for the busiest group's prefills;
    None (default): balanced, the wait not modelled. `adp_batching_wait` (with `adp_balance`
    n > 0): once every group holds a prompt, the steps the engine still waits before
    prefilling them (`adp_balancing_batching_wait_iters`; TensorRT-LLM's own default is 10;
    here 0 unless given). `prefix_hit`: the
    fraction of prompt tokens already in the KV cache (not recomputed). `isl_cv`: the
    coefficient of variation of the prompt lengths (0: all `isl` long): under Poisson arrivals
    the prefill queue is M/G/1 and a long prompt's own prefill is longer (TTFT/TPOT percentiles).
    `max_num_tokens`: the engine's per-step token budget with chunked
    prefill (TensorRT-LLM max_num_tokens, vLLM max_num_batched_tokens): a step takes that many
    tokens, its decode tokens first, so a prompt is prefilled over several steps that also carry
    the decode batch, and a batch whose prompts cannot get in fast enough is infeasible; with
    static batching the batch's prompts are chunked in that way, step by step
    (`cluster.static_budget`: vLLM V0's chunked prefill of a benchmark_latency batch).
    `batching="interleaved"`: JetStream's (see BATCHING): each prompt prefilled alone at its
    padded bucket between the decode steps. `dense_cache`: every running sequence holds a
    preallocated cache of this many positions and decode attention reads all of them
    (jetstream-pytorch without --ragged_mha: layers.AttentionKernel's dense attention over the
    whole cache of --max_cache_length; `ragged_mha` defaults to False in jetstream_pt/config.py).
    `weight_dtype`: weight-only quantization (see WEIGHT_ONLY): every weight held and read at
    this format, the matmuls and activations at `dtype` (int8 with bf16: W8A16).
    `batch_shards`: one engine's running batch (`max_batch`, the plan's batch) split over this
    many groups of tp chips that decode in step, its prompts prefilled one at a time by the one
    engine (see BATCH_SHARDS; jetstream-pytorch --shard_on_batch: 8 on a v5e-8); with
    `batching="interleaved"` only.
    `cuda_graph_batches`: the decode batch sizes (per attention group and micro-batch) the
    engine captured CUDA graphs for, with padding on (TensorRT-LLM `cuda_graph_batch_sizes`
    with `cuda_graph_padding_enabled`): a continuous-batching decode step of b sequences runs
    at the smallest captured size >= b, the extra rows costing every matmul, exchange and the
    LM head but reading one cached token each (`_graph_batch`); above the largest size the
    step is not padded. Empty (default): no padding.
    `moe_tp` (DP attention, `ep` a multiple of `tp` above it): every FFN weight (routed and
    shared experts, the dense layers' MLP) sliced over the `ep` chips, fed by an all-gather of
    every attention group's tokens and ended by an all-reduce, instead of whole experts fed by
    the all-to-all (MOE_TP: SGLang's --enable-dp-attention without --enable-ep-moe).
    `runtime`: how the KV cache is sized, "vllm" (a fraction of the whole memory, vLLM and
    SGLang) or "tensorrt-llm" (a fraction of what the weights and activations leave free;
    kvcache.RUNTIMES), and the precision of MLA's absorbed products ("vllm": 16 bits,
    kvcache.ABSORB_16BIT_RUNTIMES).
    `sustained_clock`: the layers at the chip's power-limited sustained clock where it states
    one (`training.at_sustained_clock`, as `plan_training`'s option of that name), not the
    boost clock of its peaks.
    `.curve` / `to_dict()["curve"]`: the latency/throughput curve of the chosen configuration."""
    chip = _load_chip(chip) if isinstance(chip, str) else chip
    if not isinstance(sustained_clock, bool):
        raise WorkloadError(f"{flag('sustained_clock')} must be true or false, "
                            f"not {sustained_clock!r}")  # fmt: skip
    if sustained_clock:
        from chipforge.cluster.training import at_sustained_clock

        chip = at_sustained_clock(chip)
    c = resolve_model(model)
    kvd = kv_dtype or dtype
    cuda_graph_batches = check_options(
        c,
        chips,
        isl=isl,
        osl=osl,
        dtype=dtype,
        kv_dtype=kv_dtype,
        tp=tp,
        pp=pp,
        ep=ep,
        concurrency=concurrency,
        ttft_slo=ttft_slo,
        tpot_slo=tpot_slo,
        disaggregated=disaggregated,
        batching=batching,
        slo_percentile=slo_percentile,
        max_batch=max_batch,
        osl_cv=osl_cv,
        attn_dtype=attn_dtype,
        ep_overlap=ep_overlap,
        spec_tokens=spec_tokens,
        spec_acceptance=spec_acceptance,
        adp_balance=adp_balance,
        prefix_hit=prefix_hit,
        isl_cv=isl_cv,
        max_num_tokens=max_num_tokens,
        dense_cache=dense_cache,
        adp_batching_wait=adp_batching_wait,
        weight_dtype=weight_dtype,
        batch_shards=batch_shards,
        cuda_graph_batches=cuda_graph_batches,
        moe_tp=moe_tp,
        runtime=runtime,
    )
    topo = topology if isinstance(topology, Topology) else topology_for(chip, chips, topology)
    _check(c, chips, tp, pp, ep)  # the given flags, before any search
    # no scale-up links (a chip TOML without [[links]]): replicas of one chip's tensor shard
    tps = (
        [tp] if tp else [d for d in divisors(chips) if c.heads % d == 0 and (d == 1 or chip.links)]
    )
    pps = [pp] if pp else [d for d in divisors(chips) if c.layers % d == 0 and d <= 8]
    pps = [1] if batch_shards > 1 else pps  # a batch-sharded engine is modelled without stages
    kw = dict(isl=isl, osl=osl, dt=dtype, kvd=kvd, disaggregated=disaggregated,
              batching=batching, gqa_kernel=gqa_kernel, osl_cv=osl_cv, attn_dtype=attn_dtype,
              weight_dtype=weight_dtype, ep_overlap=ep_overlap, spec_tokens=spec_tokens,
              spec_acceptance=spec_acceptance, adp_balance=adp_balance,
              adp_batching_wait=adp_batching_wait,
              prefix_hit=prefix_hit, isl_cv=isl_cv, max_num_tokens=max_num_tokens,
              dense_cache=dense_cache, batch_shards=batch_shards,
              cuda_graph_batches=cuda_graph_batches, moe_tp=moe_tp, runtime=runtime)  # fmt: skip
    s = batch_shards

    def run(t, p, e, b, clients=None):
        return evaluate(chip, c, chips, topo, tp=t, pp=p, ep=e, batch=b, clients=clients, **kw)

    def tpot_of(plan) -> float:  # an undefined TPOT (one output token) meets any bound
        t = plan.tpot_at(slo_percentile)
        return 0.0 if t is None else t

    def meets(plan) -> bool:
        return not (ttft_slo and plan.ttft_at(slo_percentile) > ttft_slo) and not (
            tpot_slo and tpot_of(plan) > tpot_slo
        )

    best, why, closest = None, None, math.inf
    # (bound, the plan at a grid batch meeting the SLOs, the next grid batch, which does not):
    # the edges to refine; bound: the next batch's throughput (the most a batch between them
    # reaches, throughput growing with the batch), inf where it could not run
    edges = []
    for t in tps:
        eps = [ep] if ep else [e for e in divisors(t) if c.is_moe and c.experts % e == 0] or [1]
        if not ep and c.is_moe:  # wide EP with DP attention: power-of-two multiples of tp
            eps += [e for e in (t * 2**k for k in range(1, 12)) if e <= chips and chips % e == 0]
            eps += [chips] if chips > t and chips not in eps else []
        for p in pps:
            if chips % (t * p * s):
                continue
            for e in eps:
                if t % e and (e % t or p > 1):  # a given --ep this searched --tp cannot hold
                    continue
                g = e // t if e > t else 1  # attention groups of a wide-EP replica
                dp = chips // (t * p * g * s)  # replicas
                fits = _fits(c, chip, t, p, dtype, kvd, isl, osl, e, attn_dtype, osl_cv,
                             dense_cache, wdt=weight_dtype, shards=s, moe_tp=moe_tp,
                             runtime=runtime)  # fmt: skip
                # a stated concurrency queues what the KV cache cannot hold; the search stops
                # at the largest batch that fits
                top = min(fits, BATCHES[-1] * g * s, max_batch or fits)
                grid = sorted({b * g * s for b in BATCHES if b * g * s < top} | {top})
                wanted = [-(-concurrency // dp)] if concurrency else grid
                prev = None  # the previous grid batch's plan, where it met the SLOs
                for b in wanted:
                    # a stated concurrency runs at most max_batch sequences too (vLLM's scheduler
                    # admits at most max_num_seqs per step, TensorRT-LLM max_batch_size); the
                    # other clients wait for a free slot (closed loop, `evaluate`)
                    run_b = min(b, fits, max_batch or fits)
                    try:
                        plan = run(t, p, e, run_b, b if concurrency else None)
                    except Infeasible as err:
                        # the reason worth giving: a plan whose weights fit says what else does
                        # not (the KV cache, a token budget), not another plan's weights
                        why = err if why is None or "weights need" in str(why) else why
                        if prev:
                            edges.append((math.inf, prev, b))
                        break
                    if not meets(plan):
                        if prev:
                            edges.append((plan.throughput_tokens_per_s, prev, b))
                        prev = None
                        miss = max(
                            plan.ttft_at(slo_percentile) / (ttft_slo or math.inf),
                            tpot_of(plan) / (tpot_slo or math.inf),
                        )
                        if miss < closest:
                            closest, why = (
                                miss,
                                Infeasible(
                                    f"no plan meets the SLOs (closest: tp={t} pp={p} batch={b} "
                                    f"TTFT {plan.ttft_s * 1e3:.0f} ms"
                                    + (
                                        ""
                                        if plan.tpot_s is None  # undefined: not 0
                                        else f", TPOT {plan.tpot_s * 1e3:.1f} ms"
                                    )
                                    + ")"
                                ),
                            )
                        continue
                    prev = None if concurrency else plan
                    if best is None or plan.throughput_tokens_per_s > best.throughput_tokens_per_s:
                        best = plan
    # refine each edge whose bound beats the best plan so far, the most promising first
    for bound, lo, hi in sorted(edges, key=lambda edge: -edge[0]):
        if bound <= best.throughput_tokens_per_s:
            break
        # a sequence per micro-batch (of each attention group and batch shard)
        step = lo.pp * (lo.ep // lo.tp if lo.ep > lo.tp else 1) * lo.batch_shards

        def at(b, lo=lo):
            return run(lo.tp, lo.pp, lo.ep, b)

        for plan in _largest_meeting(at, lo.batch, hi, step, meets):
            if plan.throughput_tokens_per_s > best.throughput_tokens_per_s:
                best = plan
    if best is None:
        if why is None or "weights need" in str(why):
            need = c.params() * nbytes(weight_dtype or dtype)
            raise Infeasible(
                f"{c.name} does not fit on {chips} x {chip.name}: weights alone need "
                f"{need / 2**30:.0f} GiB in {dtype}, {chips} chips have "
                f"{chips * chip.hbm.capacity / 2**30:.0f} GiB; use >= "
                f"{int(-(-need // (chip.hbm.capacity * 0.8)))} chips or a smaller --dtype"
            )
        raise why

    def curve() -> list[dict]:
        t, p, e = best.tp, best.pp, best.ep
        top = min(_fits(c, chip, t, p, dtype, kvd, isl, osl, e, attn_dtype, osl_cv, dense_cache,
                        wdt=weight_dtype, shards=s, moe_tp=moe_tp, runtime=runtime),
                  BATCHES[-1] * s)  # fmt: skip
        batches = sorted({b * s for b in BATCHES if b * s <= top} | {top, min(best.batch, top)})
        points = []
        for b in batches:
            try:
                points.append(run(t, p, e, b))
            except Infeasible:  # a token budget (max_num_tokens) caps the batch
                break
        return [q.point(meets(q)) for q in points]

    return replace(best, curve_fn=curve)


def at_rate(plan: ServingPlan, rate: float, *, topology=None, gqa_kernel=True) -> ServingPlan:
    """`plan`'s configuration under Poisson arrivals of `rate` requests/s (MLPerf Server's
    target QPS): the running batch is the smallest that sustains the rate (Little's law:
    continuous batching admits what arrives), and the TTFT percentiles are those of that load
    (`cluster.queueing`). Raises Infeasible when even the largest batch cannot keep up."""
    chip, c = _load_chip(plan.chip), resolve_model(plan.model)
    topo = topology if isinstance(topology, Topology) else topology_for(chip, plan.chips, topology)
    kw = dict(isl=plan.isl, osl=plan.osl, tp=plan.tp, pp=plan.pp, ep=plan.ep, dt=plan.dtype,
              kvd=plan.kv_dtype, batching=plan.batching, gqa_kernel=gqa_kernel,
              rate=rate, osl_cv=plan.osl_cv, attn_dtype=plan.attn_dtype,
              weight_dtype=plan.weight_dtype,
              ep_overlap=plan.ep_overlap, spec_tokens=plan.spec_tokens,
              spec_acceptance=plan.spec_acceptance, adp_balance=plan.adp_balance,
              adp_batching_wait=plan.adp_batching_wait,
              prefix_hit=plan.prefix_hit, isl_cv=plan.isl_cv,
              max_num_tokens=plan.max_num_tokens, dense_cache=plan.dense_cache,
              batch_shards=plan.batch_shards,
              cuda_graph_batches=plan.cuda_graph_batches, moe_tp=plan.moe_tp,
              runtime=plan.runtime)  # fmt: skip
    need = rate * plan.osl  # output tokens/s the load asks for
    lo, hi = 1, _fits(c, chip, plan.tp, plan.pp, plan.dtype, plan.kv_dtype, plan.isl, plan.osl,
                      plan.ep, plan.attn_dtype, plan.osl_cv, plan.dense_cache,
                      wdt=plan.weight_dtype, shards=plan.batch_shards,
                      moe_tp=plan.moe_tp, runtime=plan.runtime)  # fmt: skip
    try:
        top = evaluate(chip, c, plan.chips, topo, batch=hi, **kw)
    except Infeasible:  # a token budget caps the batch below the KV cache's: the largest it takes
        while lo < hi:
            mid = (lo + hi + 1) // 2
            try:
                evaluate(chip, c, plan.chips, topo, batch=mid, **kw)
                lo = mid
            except Infeasible:
                hi = mid - 1
        lo, top = 1, evaluate(chip, c, plan.chips, topo, batch=hi, **kw)
    if top.throughput_tokens_per_s < need:
        raise Infeasible(
            f"{rate:g} requests/s need {need:,.0f} output tokens/s; this configuration peaks at "
            f"{top.throughput_tokens_per_s:,.0f}"
        )
    while lo < hi:  # throughput grows with the batch: the smallest that keeps up
        mid = (lo + hi) // 2
        if evaluate(chip, c, plan.chips, topo, batch=mid, **kw).throughput_tokens_per_s >= need:
            hi = mid
        else:
            lo = mid + 1
    return evaluate(chip, c, plan.chips, topo, batch=lo, **kw)


def _held(isl: int, osl: int, cv: float = 0.0) -> int:
    """KV tokens a running sequence holds: its whole length (isl + osl, reserved), or, when
    the output lengths spread so widely (CV > 1) that the running sequences' mean context
    isl + osl (1 + cv^2) / 2 is longer, that (the cache must hold what the batch has cached)."""
    return max(isl + osl, isl + round(osl * (1 + cv**2) / 2))


def _fits(
    c, chip, tp, pp, dtype, kvd, isl, osl, ep=1, attn_dtype=None, osl_cv=0.0, dense_cache=None,
    wdt=None, shards=1, moe_tp=False, runtime="vllm",
) -> int:  # fmt: skip
    """Sequences of `_held` tokens (`dense_cache` where set) one replica's KV cache holds (at
    least 1: 0 fails later); a wide-EP replica holds its ep/tp attention groups' caches, a
    batch-sharded engine its shards' (BATCH_SHARDS)."""
    c = _unbanded(c) if dense_cache else c
    mem = memory(c, chip.hbm.capacity, tp=tp, pp=pp, dtype=dtype, kv_dtype=kvd, ep=ep,
                 attn_dtype=attn_dtype, weight_dtype=wdt, moe_tp=moe_tp,
                 runtime=runtime)  # fmt: skip
    held = dense_cache or _held(isl, osl, osl_cv)
    return max(1, mem.sequences(held)) * (ep // tp if ep > tp else 1) * shards
