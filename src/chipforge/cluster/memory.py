"""Memory per chip for a training plan: weights, gradients, optimizer states (ZeRO stages,
Rajbhandari et al. SC 2020) and stored activations (Korthikanti et al. 2022)."""

from __future__ import annotations

import functools

from chipforge.workload.config import ModelConfig

GiB = 2**30
# Mixed-precision Adam: bf16 weights (2 B), bf16 gradients (2 B), fp32 master weights, m and v
# (12 B) = 16 B per parameter (ZeRO paper Sec. 3.1; as chipforge.workload.llm).
WEIGHT_BYTES, GRAD_BYTES, OPTIMIZER_BYTES = 2, 2, 12
# CUDA context, communication buffers and allocator fragmentation that GPU training frameworks
# hold outside the tensors (assumption: ~3 GiB, order of PyTorch's context + NCCL buffers).
RESERVED_BYTES = 3 * GiB
# A TPU runs its program from a static XLA buffer assignment, with no CUDA context, NCCL buffers
# or caching allocator: it may use its runtime's HBM limit (JAX `Device.memory_stats()`
# "bytes_limit", the "of N hbm" of XLA:TPU's out-of-memory report, whose "Total hbm usage"
# lists the runtime's "reserved" part beside the program and its arguments, the program's HLO
# temp packed by the compiler: "0.4% fragmentation" in such reports). Set once on the
# designated case, a TPU v5e (16 GiB): "Ran out of memory in memory space hbm. Used 20.44G of
# 15.75G hbm" (GoogleCloudPlatform/kubernetes-engine-samples PR 1467, 2024-10, on v5e slices):
# 16 GiB - 15.75 GiB = 0.25 GiB. Checked, not used to set it: TPU v5p `bytes_limit` 95.74 GiB
# of 96 GiB, 0.26 GiB (MaxText docs/guides/monitoring_and_debugging/understand_logs_and_metrics.md,
# max_utils.print_mem_stats "Using (GB) 44.63 / 95.74"). The reserve differs by generation
# (v4 1.25 GiB; v3 530 MiB and v7 1.26 GiB per TensorCore; v6e 772 MiB): a chip states its own
# in the chip TOML (`runtime_reserved` of its off-chip [[memory]] level, each preset's from a
# published report);
# this is the rule for a TPU (ChipSpec.family "google-tpu") that states none. Every other chip
# that states none keeps RESERVED_BYTES.
XLA_TPU_RESERVED_BYTES = 16 * GiB - 15.75 * GiB
RESERVED_BY_FAMILY = {"google-tpu": XLA_TPU_RESERVED_BYTES}
RECOMPUTE = ("none", "selective", "full")
# ZeRO-3 / FSDP FULL_SHARD gathers each wrapped unit's weights before using it and frees them
# after; with the rate limiter (FSDP `limit_all_gathers`, Zhao et al. VLDB 2023 Sec. 4.3) at
# most two units' gathered weights are alive (the one computing and the one prefetched), and
# one unit's unsharded gradients wait for their reduce-scatter in the backward pass.
ZERO3_GATHERED_UNITS, ZERO3_UNSHARDED_GRAD_UNITS = 2, 1
# Selective recompute of named modules (Megatron-Core `--recompute-modules`, arguments.py:
# "moe_act", "layernorm" and "mla_up_proj" use output-discarding checkpointing, "core_attn",
# "mlp", "moe" and "shared_experts" normal checkpointing): what each frees of the stored
# activations, in bytes per s*b*h of Korthikanti et al. 2022 Table 2 (16-bit):
# - "layernorm": a norm's output where a separate module keeps it (2 sbh). Megatron-Core's
#   Transformer Engine layer spec (gpt_layer_specs.py) fuses the input norm into the QKV
#   projection (TELayerNormColumnParallelLinear: input_layernorm is an IdentityOp, nothing to
#   recompute) except under MLA, and the pre-MLP norm into a dense MLP's fc1, but not before a
#   MoE layer's router (moe_module_specs.py fuse_pre_mlp_layernorm False).
# - "mla_up_proj": the up-projections' outputs, queries, keys and values (4 + 2 sbh, as the
#   table counts Q, K and V; this model counts MLA's like multi-head attention's).
# - "moe_act": the experts' activation output, fc2's input (8 sbh of the MLP's 19, scaled
#   like it by top_k x expert_ffn / 4h), at the width the GEMM keeps it.
# - "mlp" (dense layers), "moe" (MoE layers): the MLP's 19 sbh (its input stays, counted
#   with the layer's norms' inputs).
# - "core_attn": the 5as^2b scores of unfused attention (flash attention keeps none).
# - "shared_experts": nothing (this model does not count the shared experts' activations).
RECOMPUTED_SBH = {"layernorm": 2, "mla_up_proj": 6, "moe_act": 8, "mlp": 19}
# PyTorch per-op selective activation checkpointing as torchtitan applies it to each transformer
# block (`selective_ac_option = "op"`, torchtitan/parallelisms/parallelize_llama.py at 9dec370:
# `_save_list` and `_custom_policy`): the checkpointed block keeps its input and the outputs of
# the ops it must save: aten.mm "except every second mm" (the 1st, 3rd, ... matmul of the block
# in call order), scaled_dot_product_attention and the reduce-scatters (TP's sequence-parallel
# outputs); everything else is recomputed in the backward pass. A Float8 linear still reaches
# the policy as aten.mm (torchao's Float8Tensor dispatches after the checkpoint's mode), so its
# saved outputs are 16-bit. The block's matmuls in call order (torchtitan models/llama/model.py:
# wq, wk, wv; wo; w1, w3 then w2 for SwiGLU, w1 then w2 otherwise), as (name, width per token,
# row-parallel: TP leaves the full width, partial sums, on every rank before the reduce-scatter).
OP_SAC = "op_sac"
# torchtitan's layer policy (`selective_ac_option = "2"`, its default then; the same function:
# `ptd_checkpoint_wrapper._count % ac_freq == 0`): every second block is checkpointed whole (full
# recompute), the others not at all, so a layer keeps on average half of each, and the backward
# pass redoes the whole forward (its TP collectives and CP ring too) of LAYER_SAC_SHARE of them.
LAYER_SAC = "layer_sac"
LAYER_SAC_SHARE = 1 / 2  # ac_freq 2
# MaxText's `remat_policy: minimal` (AI-Hypercomputer/maxtext at 76bd53b, the revision of its
# v5p/v5e tables; configs/base.yml lists "proj, minimal, full, or none"): layers/models.py
# `Decoder.__call__` wraps each DecoderLayer in `nn.remat(..., policy=
# jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims)` (scanned, `scan_layers: True`).
# JAX's policy (jax/_src/ad_checkpoint.py `dot_with_no_batch_dims_saveable`) saves the output
# of every `dot_general` whose dimension numbers have no batch dimensions, and nothing else; the
# checkpointed function's input (the layer input, the scan carry) is kept as always. In the
# layer (layers/attentions.py, layers/linears.py) every projection is such a dot:
# `DenseGeneral.__call__` runs `lax.dot_general(inputs, kernel, ((axis, contract_ind), ((), ())))`
# at `dtype` (bfloat16): query, key, value, out, the MLP's wi (one per activation: wi_0, wi_1
# for a gated MLP) and wo. The attention core is not saved: with `attention: 'flash'` it is
# the Pallas TPU flash-attention kernel (a custom_vjp over pallas_call, no dot_general), with
# 'mha' an einsum over batch and heads (batch dimensions); it, the RMSNorms, RoPE, the
# activation and the residual adds are recomputed in the backward pass. Every saved tensor is
# split over the tensor axis (base.yml logical_axis_rules: activation_embed, activation_heads
# and activation_mlp -> 'tensor'; the batch over data and fsdp).
MAXTEXT_MINIMAL = "maxtext_minimal"
# MaxText's `remat_policy: proj` (same function): `save_only_these_names('query_proj',
# 'value_proj', 'key_proj')`, the names layers/attentions.py gives the queries, keys and values
# after RoPE and their RMSNorms (query_norm, key_norm, value_norm at this revision), bf16, split
# over the tensor axis by heads; the layer input is kept too. The norms' backward needs their
# inputs, the projections' outputs, which are not saved, so the backward pass redoes the whole
# forward, as under full remat (the attention core too: its flash residuals are not saved).
MAXTEXT_PROJ = "maxtext_proj"
FRAMEWORK_POLICIES = (OP_SAC, LAYER_SAC, MAXTEXT_MINIMAL, MAXTEXT_PROJ)  # each stands alone
# fp32 logits-sized buffers alive at the loss's peak (the start of the backward pass, when every
# stored activation is still held), by cross-entropy implementation:
# - "fused": Megatron-Core's vocab-parallel cross entropy (tensor_parallel/cross_entropy.py,
#   VocabParallelCrossEntropy: the logits cast to fp32 once, exponentiated in place, kept as the
#   softmax for the backward pass, which writes the gradient into the same buffer): one.
# - "eager": PyTorch's F.cross_entropy on fp32 logits, as torchtitan runs it (models/llama/
#   model.py `self.output(h).float()`; train.py frees `pred` before `loss.backward()` "to avoid
#   peaking memory"): log_softmax keeps its fp32 output for the backward pass, where the
#   nll_loss gradient and log_softmax's input gradient are allocated beside it: three.
# - "compiled": the same F.cross_entropy(pred.float()) under torch.compile, as torchtitan runs it
#   when compiling from April 2025 (components/loss.py `build_cross_entropy_loss`:
#   `loss_fn = torch.compile(loss_fn)` if training.compile; at 9dec370 that line was commented
#   out, "compiling loss function causes CUDA errors"): Inductor keeps only the bf16 logits and
#   per-row statistics for the backward pass, which writes the bf16 gradient in one kernel: a
#   bf16 input and its bf16 gradient, one fp32 buffer's worth (tests/test_memory_mechanisms.py
#   records what each keeps with saved_tensors_hooks). It is torchtitan's, so it shares the
#   framework's other entries below.
LOSS_BUFFERS = {"fused": 1, "eager": 3, "compiled": 1}
# The loss names a framework: "fused" Megatron-Core's, "eager" and "compiled" torchtitan's. The
# entries below that describe torchtitan's pipeline, FSDP2 and tensor parallelism (each with its
# own source) hold for both of its losses, so they are written from this one list.
TORCHTITAN_LOSSES = ("eager", "compiled")
# Under TP torchtitan runs the eager loss vocabulary-parallel (train.py `loss_parallel()` when
# `ParallelDims.loss_parallel_enabled`: tp > 1, on by default), whose backward
# (torch/distributed/tensor/parallel/loss.py `_nll_loss_and_log_softmax_backward`) computes
# `(grad_input + torch.exp(x)) * grad_output` with `grad_input = torch.zeros_like(x)`: beside the
# saved log-softmax output, the zeros, their sum with exp(x) and the product are alive at once
# (exp(x) freed after the sum): four per TP rank. tests/test_memory_mechanisms.py measures both
# backward peaks on CPU (process RSS above the saved output: 2 more plain, 3 more parallel).
LOSS_BUFFERS_TP = {"eager": 4}
# Whether the last pipeline stage keeps every micro-batch's output (the fp32 logits) until the
# step ends, by the framework the loss implementation names: torchtitan ("eager") runs its
# pipeline with torch.distributed.pipelining (train.py at 9dec370: `pp_schedule.step(target=
# labels, losses=losses)`), whose stage appends each forward's output to `output_chunks`
# (stage.py `forward_one_chunk`: "Prepare for final output merge or reduction"), detached
# after its backward ("only needed to return to the user in merge_output_chunks") and cleared
# at the next step. Megatron-Core ("fused") keeps none: its last stage's output is the loss.
PIPELINE_KEEPS_OUTPUTS = {loss: loss in TORCHTITAN_LOSSES for loss in LOSS_BUFFERS}
# Bytes per parameter a FSDP gradient reduction moves, by the framework the loss names:
# torchtitan's FSDP2 reduces in fp32 (parallelize_llama.py `apply_fsdp`:
# MixedPrecisionPolicy(reduce_dtype=TORCH_DTYPE_MAP[mixed_precision_reduce]), "float32" its only
# choice at 9dec370; FSDP2 `foreach_reduce` allocates the reduce-scatter input in reduce_dtype
# and the HSDP all-reduce runs on that output). Megatron-Core ("fused") reduces in the gradients'
# bf16 (GRAD_BYTES). ZeRO 0 (DDP) keeps GRAD_BYTES.
FSDP_REDUCE_BYTES = dict.fromkeys(TORCHTITAN_LOSSES, 4)
# Whether a pipeline stage sharded by FSDP (ZeRO 2-3) accumulates its whole, unsharded gradients
# in fp32 through the step: torch.distributed.pipelining (torchtitan, "eager") runs every
# micro-batch's backward with `set_requires_gradient_sync(False)` (stage.py
# `backward_maybe_with_nosync`, its FSDPModule branch) and reduce-scatters once after the last
# ("Manually call post backward for FSDP"); meanwhile FSDP2's post-backward upcasts each
# unsharded gradient to the reduce dtype and keeps it (`_fsdp_param.py`
# `to_accumulated_grad_if_needed`: `unsharded_accumulated_grad = unsharded_grad.to(
# self.reduce_dtype)`), torchtitan's `mixed_precision_reduce` being "float32" (config_manager.py
# at 9dec370, its only choice): 4 bytes per parameter of the stage, from the first backward on,
# beside the micro-batches then in flight: the reduce dtype's bytes, FSDP_REDUCE_BYTES.
PIPELINE_FSDP_GRAD_BYTES = FSDP_REDUCE_BYTES
# Whether a pipeline stage sharded by FSDP at ZeRO-3 holds its whole unsharded bf16 weights
# through the step: torch.distributed.pipelining also calls `set_reshard_after_backward(False)`
# before every micro-batch's backward but the last (stage.py `backward_maybe_with_nosync`), so
# each layer stays all-gathered after its backward, and torchtitan (`apply_fsdp` at 9dec370,
# reshard_after_forward_policy "default") passes
# `reshard_after_forward = not pp_enabled`, so nothing reshards after a forward either: the
# stage's bf16 weights whole (its fp32 shards are the optimizer's master copy), its gathered
# units among them; one unit's bf16 gradients still wait beside the fp32 ones (FSDP2's
# `post_backward` folds them in with `accumulate_unsharded_grad_if_needed` only after the
# layer's backward has made them all).
PIPELINE_FSDP_UNSHARDED_WEIGHTS = set(TORCHTITAN_LOSSES)
# Frameworks whose column-parallel linears save their all-gathered (whole-sequence) input for
# the backward pass, not the sequence-parallel shard Megatron saves and gathers again: torchtitan
# ("eager"; parallelize_llama.py at 9dec370 applies `PrepareModuleInput(input_layouts=Shard(1),
# desired_input_layouts=Replicate())` to "attention" and "feed_forward", so wq/wk/wv and w1/w3
# get the gathered tensor and the linear saves it; with Float8 torchao's PrepareFloat8ModuleInput
# casts to float8 before the gather (float8_tensor_parallel.py `_prepare_input_fn`) and
# `manual_float8_matmul_with_args_in_float8` saves that `input_fp8`, at the GEMM input width).
GATHERED_GEMM_INPUTS = set(TORCHTITAN_LOSSES)


def pipeline_fsdp_unsharded(pp: int, zero: int, dp: int, loss: str) -> bool:
    """Whether a pipeline stage sharded at ZeRO-3 over `dp` ranks keeps its whole bf16 weights
    through the step (PIPELINE_FSDP_UNSHARDED_WEIGHTS: torchtitan's pipelined FSDP)."""
    return pp > 1 and zero == 3 and dp > 1 and loss in PIPELINE_FSDP_UNSHARDED_WEIGHTS


def pipeline_fsdp_reduces_after(pp: int, zero: int, dp: int, loss: str) -> bool:
    """Whether a pipelined stage sharded by FSDP (ZeRO 2-3) over `dp` ranks accumulates its
    whole gradients and reduce-scatters them once after the step's last backward
    (PIPELINE_FSDP_GRAD_BYTES: torchtitan's pipelined FSDP)."""
    return pp > 1 and zero >= 2 and dp > 1 and loss in PIPELINE_FSDP_GRAD_BYTES


def reserved_bytes(chip) -> float:
    """Bytes of HBM a chip (a ChipSpec) holds back from the training program: the off-chip
    level's `runtime_reserved` where the chip states it, else its family's rule
    (RESERVED_BY_FAMILY, else RESERVED_BYTES)."""
    stated = chip.hbm.runtime_reserved
    return stated if stated is not None else RESERVED_BY_FAMILY.get(chip.family, RESERVED_BYTES)


def in_flight_chunks(pp: int, v: int, rank: int, m: int | None = None) -> int:
    """Model chunks (each 1/v of a rank's layers) pipeline rank `rank` holds activations of
    at its peak, of `m` micro-batches per step (None: unbounded). 1F1B (v = 1): pp - rank
    forwards before the first backward (torch.distributed.pipelining Schedule1F1B: "first
    stage `num_stages` warmups", `warmup_chunks = min(n_microbatches, num_stages -
    stage_index)`; Megatron-Core's schedules.py the same), at most m. Interleaved 1F1B: (v-1)*p
    + 2*(p-1-rank) warmup forwards, capped at m*v (torch's `_get_warmup_ops`: "We cannot have
    more warmup operations than there are number of microbatches"; Megatron-Core's
    `num_warmup_microbatches` the same), then each steady step's forward before its backward:
    one more, at most m*v."""
    if v == 1:
        return min(pp - rank, m) if m else pp - rank
    warm = (v - 1) * pp + 2 * (pp - 1 - rank)
    return min(warm + 1, m * v) if m else warm + 1


def op_sac_matmuls(c: ModelConfig) -> list[tuple[str, int, bool]]:
    """A dense block's matmuls in torchtitan's call order: (name, output width, row-parallel)."""
    q, kv = c.heads * c.d_head, c.n_kv_heads * c.d_head
    mlp = [("w1", c.ffn, False)] + ([("w3", c.ffn, False)] if c.ffn_matrices == 3 else [])
    return [("wq", q, False), ("wk", kv, False), ("wv", kv, False), ("wo", c.hidden, True),
            *mlp, ("w2", c.hidden, True)]  # fmt: skip


def op_sac_saved(c: ModelConfig) -> set[str]:
    """The matmuls whose outputs torchtitan's op policy saves: the odd ones in call order."""
    return {name for i, (name, _, _) in enumerate(op_sac_matmuls(c)) if i % 2 == 0}


def op_sac_bytes_per_token(c: ModelConfig, tp: int, sp: bool) -> float:
    """Stored bytes per token of one block under torchtitan's op policy (16-bit tensors): the
    block input (split over TP by sequence parallelism), the saved matmul outputs (a column-
    parallel one split over TP, a row-parallel one whole), the attention output and its fp32
    log-sum-exp per head, and under TP with sequence parallelism the two reduce-scatters'
    outputs."""
    saved = op_sac_saved(c)
    mm = sum(w / (1 if row and tp > 1 else tp) for n, w, row in op_sac_matmuls(c) if n in saved)
    sdpa = c.heads * c.d_head / tp + 2 * c.heads / tp  # output (16-bit) and lse (fp32)
    rs = 2 * c.hidden / tp if tp > 1 and sp else 0.0
    return 2 * (c.hidden / (tp if sp else 1) + mm + sdpa + rs)


def maxtext_minimal_saved(c: ModelConfig) -> list[tuple[str, int]]:
    """The tensors MaxText's `minimal` remat policy keeps of one layer (MAXTEXT_MINIMAL): the
    layer input and every projection's output, as (name, width per token)."""
    q, kv = c.heads * c.d_head, c.n_kv_heads * c.d_head
    wi = [(f"wi_{i}", c.ffn) for i in range(c.ffn_matrices - 1)]  # one per MLP activation
    return [("input", c.hidden), ("query", q), ("key", kv), ("value", kv), ("out", c.hidden),
            *wi, ("wo", c.hidden)]  # fmt: skip


def maxtext_minimal_bytes_per_token(c: ModelConfig, tp: int, act_bytes: int = 2) -> float:
    """Stored bytes per token of one layer under MaxText's `minimal` policy: the saved tensors
    (maxtext_minimal_saved) at the activation dtype, each split over TP (the tensor axis)."""
    return act_bytes * sum(w for _, w in maxtext_minimal_saved(c)) / tp


def maxtext_proj_bytes_per_token(c: ModelConfig, tp: int, act_bytes: int = 2) -> float:
    """Stored bytes per token of one layer under MaxText's `proj` policy (MAXTEXT_PROJ): the
    layer input and the named queries, keys and values, each split over TP."""
    saved = dict(maxtext_minimal_saved(c))
    return act_bytes * sum(saved[n] for n in ("input", "query", "key", "value")) / tp


def block_params(c: ModelConfig, tp: int, ep: int) -> float:
    """Parameters of all transformer blocks one chip holds with no pipeline (TP splits every
    block, EP splits the routed experts further)."""
    if not c.is_moe:
        return c.layers * (c.attention_params() + c.ffn_params(False)) / tp
    moe_layers = c.layers - c.dense_layers
    expert = c.experts * c.expert_params
    shared = c.ffn_params(True) - expert
    dense = c.layers * c.attention_params() + c.dense_layers * c.ffn_params(False)
    return (dense + moe_layers * shared) / tp + moe_layers * expert / (tp * ep)


def stage_params(
    c: ModelConfig,
    pp: int,
    tp: int,
    ep: int,
    split: tuple[int, ...] | None = None,
    interleave: int = 1,
) -> float:
    """Parameters one chip holds on the heaviest pipeline stage (the first or the last, which
    also hold the embedding / LM head; Megatron splits both over TP): the blocks of the rank
    holding the most (rank_blocks; `split`: the decoder layers of each rank where the end
    stages are stated, checks.end_stage_split)."""
    embeds = c.vocab * c.hidden / tp * (1 if pp > 1 or c.tied_embeddings else 2)
    return block_params(c, tp, ep) * _heaviest(c, pp, split, interleave) / c.layers + embeds


def pipeline_blocks(c: ModelConfig) -> int:
    """Transformer blocks a training pipeline splits: the layers and the MTP modules."""
    return c.layers + c.mtp_layers


def _heaviest(c: ModelConfig, pp: int, split: tuple[int, ...] | None, interleave: int) -> int:
    return max(rank_blocks(c, pp, interleave, split))


def rank_blocks(
    c: ModelConfig, pp: int, interleave: int = 1, split: tuple[int, ...] | None = None
) -> tuple[int, ...]:
    """Transformer blocks each of `pp` pipeline ranks holds (all its `interleave` chunks): its
    decoder layers and, on the last, the MTP modules (Megatron-Core builds them in the last
    stage's post-process, gpt_model.py `mtp_process`; DeepSeek-V3 report Sec. 2.2). `split`:
    the decoder layers of each rank where the end stages are stated (checks.end_stage_split);
    otherwise the automatic split of the layers and MTP modules over pp x interleave stages
    (checks.stage_layers), whose stages a block short are the last (the loss's slot,
    Megatron-Core's account_for_loss_in_pipeline_split) and, two short, the first too (the
    embedding's, account_for_embedding_in_pipeline_split; Llama 3 paper Sec. 3.3.2). Memory
    and the step time both count these (training.stage_layer_count, training.stage_cost)."""
    if split:
        return (*split[:-1], split[-1] + c.mtp_layers)
    return _automatic_blocks(pipeline_blocks(c), pp, interleave)


@functools.lru_cache(maxsize=4096)
def _automatic_blocks(blocks: int, pp: int, interleave: int) -> tuple[int, ...]:
    """rank_blocks' automatic split, by the counts alone: a plan's evaluation asks for it a
    dozen times (stage_layer_count, the memory, the pipeline), and the import this needs costs
    more than the split."""
    from chipforge.cluster.checks import stage_layers  # (checks imports this)

    stages = pp * interleave
    per = stage_layers(blocks, stages)
    if per is None:  # not a split the plan checks pass: every rank the even share, rounded up
        return (-(-blocks // stages) * interleave,) * pp
    counts = [per * interleave] * pp
    short = per * stages - blocks
    if short:
        counts[-1] -= 1
    if short == 2:
        counts[0] -= 1
    return tuple(counts)


def charged_rank(
    c: ModelConfig,
    pp: int,
    interleave: int,
    split: tuple[int, ...] | None,
    microbatches: int | None,
    last: bool,
) -> int:
    """The pipeline rank whose activations `memory_per_chip` counts: the last where it holds
    the loss's logits there (`last`), else the first or the second, whichever holds more
    blocks' chunks in flight (in_flight_chunks; `microbatches` per step, None: unbounded)."""
    if pp == 1:
        return 0
    if last:
        return pp - 1
    blocks = rank_blocks(c, pp, interleave, split)
    first = blocks[0] * in_flight_chunks(pp, interleave, 0, microbatches)
    second = blocks[1] * in_flight_chunks(pp, interleave, 1, microbatches)
    return 0 if first >= second else 1


def charged_blocks(
    c: ModelConfig,
    pp: int,
    interleave: int,
    split: tuple[int, ...] | None,
    microbatches: int | None,
    last: bool,
) -> int:
    """Blocks of the rank whose activations `memory_per_chip` counts (charged_rank)."""
    rank = charged_rank(c, pp, interleave, split, microbatches, last)
    return rank_blocks(c, pp, interleave, split)[rank]


def expert_share(c: ModelConfig, p) -> float:
    """Share of the parameters of `stage_params` (training.Plan `p`) that are routed experts."""
    from chipforge.cluster.checks import end_stage_split  # (checks imports this module)

    ends = (p.first_stage_layers, p.last_stage_layers)
    split = end_stage_split(c.layers, p.pp, *ends, p.interleave)
    return _expert_share(c, p.pp, p.tp, p.ep, split, p.interleave)


def zero_held_share(xshare: float, n: int, ep: int) -> float:
    """Share of a stage's parameters whose states one chip keeps when they shard over `n`
    data-parallel ranks and `xshare` of them are routed experts, which shard over the
    expert-data-parallel ranks n / ep only (EP is carved out of DP x CP): Megatron-Core's
    distributed optimizer keeps the experts' buffers over expert_data_parallel_group
    (parallel_state: world / (pp x expert_tp x ep)); torchtitan FSDP-shards them over
    dp_shard_mod_ep = dp_shard x cp / ep (parallel_dims, llama4 parallelize apply_fsdp)."""
    if n <= 1:
        return 1.0
    return (1 - xshare) / n + xshare / max(1, n // ep)


def _expert_share(c: ModelConfig, pp: int, tp: int, ep: int, split, interleave: int) -> float:
    if not c.is_moe:
        return 0.0
    expert = c.experts * c.expert_params / (tp * ep)
    on_stage = c.moe_layer_share * expert * _heaviest(c, pp, split, interleave)
    return on_stage / stage_params(c, pp, tp, ep, split, interleave)


def activation_bytes_per_layer(
    c: ModelConfig,
    *,
    mb: int,
    seq: int,
    tp: int,
    recompute: str,
    act_bytes: int = 2,
    attention: str = "flash",
    sp: bool = True,
    gemm_input_bytes: float = 2,
    recompute_modules: tuple[str, ...] = ("core_attn",),
    gathered_inputs: bool = False,
) -> float:
    """Stored activations of one layer for one micro-batch with sequence parallelism
    (Korthikanti et al. 2022, Table 2: s*b*h*34/t with flash attention / selective
    recompute, + 5*a*s^2*b/t without either; full recompute keeps the layer input, 2*s*b*h/t).
    Scaled by act_bytes/2 (the paper counts 16-bit activations). `gemm_input_bytes` < 2: the
    linear layers' inputs are kept in the narrow format their GEMMs ran in (Transformer Engine
    saves the FP8/NVFP4-cast input for the backward pass): of the 34, the QKV, projection and
    two MLP inputs (2 + 2 + 2 + 8 sbh, Table 2) shrink to that width. `recompute_modules`: what
    recompute="selective" recomputes (Megatron-Core recompute_modules; default core_attn):
    the tensors those modules keep for the backward pass are freed (RECOMPUTED_SBH).
    `gathered_inputs`: the QKV and MLP inputs are kept whole, as gathered under TP with
    sequence parallelism (GATHERED_GEMM_INPUTS), not split over TP."""
    sbh = seq * mb * c.hidden
    if recompute == "selective" and OP_SAC in recompute_modules:
        return op_sac_bytes_per_token(c, tp, sp) * seq * mb
    if recompute == "selective" and MAXTEXT_MINIMAL in recompute_modules:
        return maxtext_minimal_bytes_per_token(c, tp, act_bytes) * seq * mb
    if recompute == "selective" and MAXTEXT_PROJ in recompute_modules:
        return maxtext_proj_bytes_per_token(c, tp, act_bytes) * seq * mb
    if recompute == "selective" and LAYER_SAC in recompute_modules:
        kw = dict(mb=mb, seq=seq, tp=tp, act_bytes=act_bytes, attention=attention, sp=sp,
                  gemm_input_bytes=gemm_input_bytes, gathered_inputs=gathered_inputs)  # fmt: skip
        none = activation_bytes_per_layer(c, recompute="none", **kw)
        full = activation_bytes_per_layer(c, recompute="full", **kw)
        return none * (1 - LAYER_SAC_SHARE) + full * LAYER_SAC_SHARE
    if recompute == "full":  # the layer input, split over TP only with sequence parallelism
        return 2 * sbh / (tp if sp else 1) * act_bytes / 2
    # flash attention stores no attention scores; without SP the norms' and dropouts' 10 of
    # the 34 bytes are replicated on every TP rank (Table 2: sbh(10 + 24/t))
    per = 34 * sbh / tp if sp else sbh * (10 + 24 / tp)
    narrow = 1 - gemm_input_bytes / 2  # the saved share of the GEMM inputs
    per -= narrow * (14 * sbh / tp if sp else sbh * (4 + 10 / tp))
    if gathered_inputs and sp and tp > 1:  # the QKV and fc1 inputs (2 + 2 sbh/t) kept whole
        per += 2 * gemm_input_bytes * sbh * (1 - 1 / tp)
    modules = set(recompute_modules) if recompute == "selective" else set()
    if attention == "materialized" and "core_attn" not in modules and recompute != "full":
        per += 5 * c.heads * seq * seq * mb / tp  # scores, probs, dropout mask
    # the FFN part (19 of 34, Table 2) grows with top_k experts of expert_ffn
    moe = c.top_k * c.expert_ffn / (4 * c.hidden) if c.is_moe else 1.0
    if c.is_moe:
        per += 19 * sbh / tp * (moe - 1)
    # the norms' outputs are whole on every TP rank without sequence parallelism, the rest split
    freed = {m: recomputed_sbh(c, m, narrow) for m in modules}
    per -= freed.pop("layernorm", 0.0) * sbh / (tp if sp else 1) + sum(freed.values()) * sbh / tp
    return max(per, 2 * sbh / (tp if sp else 1)) * act_bytes / 2


def recomputed_sbh(c: ModelConfig, module: str, narrow: float = 0.0) -> float:
    """Stored bytes per s*b*h (Korthikanti et al. 2022, Table 2, 16-bit) that recomputing
    `module` frees (RECOMPUTED_SBH; `narrow`: the share of the GEMM inputs saved narrower)."""
    moe = c.top_k * c.expert_ffn / (4 * c.hidden) if c.is_moe else 0.0
    dense = c.dense_layers / c.layers if c.is_moe else 1.0
    keep = 1 - narrow  # a GEMM input's stored width, of 16 bits
    if module == "layernorm":  # the unfused norms' outputs: MoE's pre-MLP norm, MLA's input one
        return RECOMPUTED_SBH["layernorm"] * ((1 - dense) * bool(c.is_moe) + bool(c.kv_lora))
    if module == "mla_up_proj":
        return RECOMPUTED_SBH["mla_up_proj"] if c.kv_lora else 0.0
    if module == "moe_act":  # the activation output, the experts' fc2 input
        return RECOMPUTED_SBH["moe_act"] * moe * keep
    if module == "mlp":  # dense layers' MLP: its inputs, activation and mask
        return (RECOMPUTED_SBH["mlp"] - 10 * narrow) * dense
    if module == "moe":
        return (RECOMPUTED_SBH["mlp"] - 10 * narrow) * moe * (1 - dense)
    return 0.0  # core_attn (flash attention keeps no scores); shared_experts (not counted)


def memory_per_chip(
    c: ModelConfig,
    *,
    tp: int,
    pp: int,
    dp: int,
    cp: int,
    ep: int,
    zero: int,
    recompute: str,
    mb: int,
    seq: int,
    interleave: int = 1,
    act_bytes: int = 2,
    attention: str = "flash",
    sp: bool = True,
    gemm_input_bytes: float = 2,
    recompute_modules: tuple[str, ...] = ("core_attn",),
    loss: str = "fused",
    microbatches: int | None = None,
    reserved: float = RESERVED_BYTES,
    split: tuple[int, ...] | None = None,
    offload: int = 0,
) -> dict[str, float]:
    """Bytes by category on the busiest chip (the first pipeline stage, which holds `pp`
    micro-batches of activations under 1F1B, or the second when the first is a layer short;
    interleaving adds (pp-1)/(pp*v) of that; or the last stage, which holds one micro-batch
    (interleaved: (v-1)*p + 1 chunks) and the loss's logits, where that is more; ZeRO-3 adds
    its gathered units; `loss`: the cross-entropy implementation, LOSS_BUFFERS; `microbatches`:
    per step, which caps those in flight, in_flight_chunks; None: as many as the schedule
    can hold; `reserved`: what the chip's runtime holds back, reserved_bytes; `split`: the
    decoder layers of each rank where the end stages are stated, checks.end_stage_split;
    `offload`: layers of every rank whose activations live in host memory (Megatron-Core
    --cpu-offloading-num-layers, per rank), a share of each rank's own: the busiest rank is
    chosen after it, so a rank with more layers left can become the one counted)."""
    params = stage_params(c, pp, tp, ep, split, interleave)
    shard = {0: (1, 1, 1), 1: (1, 1, dp), 2: (1, dp, dp), 3: (dp, dp, dp)}[zero]
    # the routed experts' ZeRO states shard over the expert-data-parallel ranks (zero_held_share)
    xshare = _expert_share(c, pp, tp, ep, split, interleave)

    def held(n: int) -> float:
        """Parameters this chip keeps of states sharded over n data-parallel ranks."""
        return params * zero_held_share(xshare, n, ep)

    # 1F1B: stage i holds pp - i micro-batches in flight. With an uneven split (Llama 3: 126
    # layers on 16 stages, the first and last a layer short) the second stage can be busiest.
    blocks = rank_blocks(c, pp, interleave, split)  # the MTP modules on the last
    first, per, last_layers = blocks[0], blocks[min(1, pp - 1)], blocks[-1]
    v, m = interleave, microbatches
    # in flight on the first rank (in_flight_chunks), each chunk 1/v of the rank's layers: under
    # interleaving (1 + (p-1)/(p*v)) times p micro-batches while m allows (Korthikanti et al.
    # 2022 Sec. 4.2.3); the second rank, a layer more, holds fewer chunks
    fronts = ((first, first * in_flight_chunks(pp, v, 0, m) / v),
              (per, per * in_flight_chunks(pp, v, 1, m) / v))  # fmt: skip

    def on_chip(held_bytes: float, blocks: int) -> float:
        """What a rank of `blocks` blocks keeps on the chip of its `held_bytes` (`offload`)."""
        return held_bytes - held_bytes * min(offload, blocks) / blocks

    kw = dict(mb=mb, seq=seq // cp, tp=tp, act_bytes=act_bytes, attention=attention, sp=sp,
              gemm_input_bytes=gemm_input_bytes,
              gathered_inputs=loss in GATHERED_GEMM_INPUTS)  # fmt: skip
    per_layer = activation_bytes_per_layer(
        c, recompute=recompute, recompute_modules=recompute_modules, **kw
    )
    logits = loss_bytes(c, mb=mb, seq=seq // cp, tp=tp, loss=loss)
    held_logits = logits if pp == 1 else 0.0
    # A recomputed layer's activations exist again during its own backward pass: activation
    # checkpointing reruns the layer's forward when its backward starts and frees what it
    # made as that backward ends (torch.utils.checkpoint: the first unpack of a saved tensor
    # recomputes the whole checkpointed forward; Megatron-Core's CheckpointFunction.backward
    # "recompute[s] the forward" of the chunk, one layer for --recompute-num-layers 1): the
    # layer's un-recomputed activations less those it keeps, one micro-batch, one layer at a
    # time. The loss's buffers are freed by then (its backward runs before the last layer's).
    work = 0.0
    if recompute != "none":
        none = activation_bytes_per_layer(c, recompute="none", **kw)
        work = max(0.0, none - per_layer)
    extra = max(0.0, work - held_logits)  # pp 1: the loss's peak or the backward's
    acts = max(on_chip(per_layer * batches + extra, n) for n, batches in fronts)
    # The last rank holds the loss's logits, and under 1F1B one micro-batch in flight (each
    # forward is followed at once by its backward: Narayanan et al. 2021 Sec. 2.2.1, PipeDream-
    # Flush), interleaved (v-1)*p + 1 chunks (in_flight_chunks), over as many layers as the
    # first rank (Llama 3's split shortens both). Where the schedule keeps every micro-batch's
    # output (PIPELINE_KEEPS_OUTPUTS), the last of m backward passes finds m fp32 logits kept.
    # It is the busiest chip where the logits outweigh the first rank's further micro-batches
    # (a large vocabulary, few stages, the eager loss's three buffers).
    if pp > 1:
        kept = (m or pp) * logits / loss_buffers(loss, tp)  # None: pp, torchtitan's default m
        last = per_layer * last_layers * in_flight_chunks(pp, v, pp - 1, m) / v
        last_logits = logits + (kept if PIPELINE_KEEPS_OUTPUTS[loss] else 0.0)
        last = on_chip(last + max(0.0, work - logits), last_layers)
        if last + last_logits > acts:
            acts, held_logits = last, last_logits
    grads = held(shard[1]) * GRAD_BYTES
    if pp > 1 and zero >= 2 and loss in PIPELINE_FSDP_GRAD_BYTES:
        grads = params * PIPELINE_FSDP_GRAD_BYTES[loss]
    weights = held(shard[0]) * WEIGHT_BYTES
    gathered = zero3_gathered(c, tp=tp, ep=ep) if zero == 3 and dp > 1 else 0.0
    if pipeline_fsdp_unsharded(pp, zero, dp, loss):
        weights = params * WEIGHT_BYTES
        gathered = zero3_gathered(c, tp=tp, ep=ep, weight_units=0)
    return {
        "weights_bytes": weights,
        "gradients_bytes": grads,
        "optimizer_bytes": held(shard[2]) * OPTIMIZER_BYTES,
        "activations_bytes": acts,
        "loss_bytes": held_logits,  # on the last stage only
        "zero3_gathered_bytes": gathered,
        "reserved_bytes": reserved,
    }


def loss_bytes(c: ModelConfig, *, mb: int, seq: int, tp: int, loss: str = "fused") -> float:
    """The loss's fp32 logits-sized buffers of one micro-batch on the last stage (LOSS_BUFFERS;
    `seq` per CP rank; the vocabulary split over TP)."""
    return loss_buffers(loss, tp) * 4 * mb * seq * c.vocab / tp


def loss_buffers(loss: str, tp: int) -> int:
    """fp32 logits-sized buffers at the loss's peak: LOSS_BUFFERS, LOSS_BUFFERS_TP under TP."""
    return LOSS_BUFFERS_TP.get(loss, LOSS_BUFFERS[loss]) if tp > 1 else LOSS_BUFFERS[loss]


def zero3_gathered(
    c: ModelConfig, *, tp: int, ep: int, weight_units: int = ZERO3_GATHERED_UNITS
) -> float:
    """Unsharded bytes ZeRO-3 holds besides the shards: `weight_units` units' bf16 weights
    (ZERO3_GATHERED_UNITS; 0 where the whole weights are counted already) and
    ZERO3_UNSHARDED_GRAD_UNITS units' bf16 gradients, a unit being the largest FSDP-wrapped
    piece on this chip: one transformer layer's TP (and EP) shard, or the embedding."""
    unit = max(block_params(c, tp, ep) / c.layers, c.vocab * c.hidden / tp)
    return unit * (weight_units * WEIGHT_BYTES + ZERO3_UNSHARDED_GRAD_UNITS * GRAD_BYTES)
