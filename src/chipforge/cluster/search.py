"""`plan_training`: evaluate an explicit parallelism plan, or search the feasible ones for the
shortest step (ties: less memory). Flags left as None are searched."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, replace
from itertools import product

from chipforge.cluster import checks
from chipforge.cluster.checks import divisors, stage_layers
from chipforge.cluster.chipkey import chip_key
from chipforge.cluster.layer import (
    FP8_RECIPES,
    MOE_DISPATCHERS,
    RECOMPUTE_MODULES,
    check_eager_ops,
    layer_costs,
)
from chipforge.cluster.memory import (
    FRAMEWORK_POLICIES,
    GRAD_BYTES,
    LOSS_BUFFERS,
    OPTIMIZER_BYTES,
    RECOMPUTE,
    WEIGHT_BYTES,
    rank_blocks,
    reserved_bytes,
)
from chipforge.cluster.topology import Topology, topology_for
from chipforge.cluster.training import (
    CP_RINGS,
    FRAMEWORK_OVERHEAD,
    NCCL_GROUPS,
    SCHEDULES,
    Plan,
    RunOptions,
    StageCost,
    TrainingPlan,
    best_counts,
    check_plan,
    default_global_batch,
    finish_plan,
    head_blocks,
    host_bytes,
    layer_shape,
    memory_error,
    offload_layers_to_fit,
    plan_memory,
    pp_exposed,
    pp_hop,
    stage_cost,
    stage_layer_count,
    step_time,
    tp_collectives,
)
from chipforge.errors import ChipforgeError, Infeasible, WorkloadError
from chipforge.spec.loader import load_chip
from chipforge.spec.models import ChipSpec
from chipforge.workload.config import ModelConfig
from chipforge.workload.resolve import resolve_model

POW2 = (1, 2, 4, 8, 16, 32, 64, 128)
_PER_PLAN = ("zero", "recompute", "sequence_parallel")  # a shape's plans differ in these
_PLANS: dict[tuple, TrainingPlan] = {}  # searches done, by everything that sets their answer
PLANS_MAX = 512


def _choices(given, default):
    return [given] if given is not None else list(default)


def _ends_for(c: ModelConfig, blocks: int, pp: int, v: int, ends: tuple, seq: int) -> tuple | None:
    """The end stages a searched plan of `pp` stages of `v` chunks states: the user's (None
    where they do not split so); none where the even or Llama-3 split holds whole layers
    (checks.stage_layers); else Megatron's first/last split with the least busy rank, the
    output layer and loss on the last weighed in (checks.balanced_ends, training.head_blocks
    at `seq`), None where there is none."""
    if ends != (None, None):
        return ends if checks.end_stage_split(c.layers, pp, *ends, v) else None
    if stage_layers(blocks, pp * v):
        return ends
    return checks.balanced_ends(c.layers, c.mtp_layers, pp, v, head_blocks(c, seq))


def _check_flags(c: ModelConfig, chips: int, tp, pp, dp, cp, ends=(None, None)) -> None:
    """Given flags that can never work, named before any search (None: searched; `ends`: the
    first and last stages' stated layers)."""
    checks.positive(error=Infeasible, tp=tp, pp=pp, dp=dp, cp=cp)
    checks.positive(error=WorkloadError, first_stage_layers=ends[0], last_stage_layers=ends[1])
    if tp is not None:
        checks.tp_heads(c, tp, chips, error=Infeasible)
    if pp is not None and ends != (None, None):
        checks.end_stages(c, pp, *ends, error=Infeasible)
    elif pp is not None:
        checks.pp_layers(c, pp, chips, uneven=True, error=Infeasible)
    exact = None not in (tp, pp, dp, cp)
    checks.product(c, chips, exact=exact, uneven=True, error=Infeasible, tp=tp, pp=pp, dp=dp, cp=cp)


@dataclass(frozen=True)
class Batches:
    """The global batches a search may choose: one (`fixed`), any in [lo, hi], or the one
    nearest `target` sequences, per data-parallel degree (each a multiple of dp)."""

    fixed: int | None = None
    lo: int | None = None
    hi: int | None = None
    target: float | None = None

    def per_replica(self, dp: int) -> tuple[int, int]:
        """The range [lo, hi] of sequences per data-parallel replica (global batch / dp) the
        space holds (empty: hi < lo)."""
        if self.fixed is not None:
            k = self.fixed // dp if self.fixed % dp == 0 else 0
            return (k, k) if k else (1, 0)
        if self.target is not None:
            k = max(1, round(self.target / dp))
            return k, k
        return -(-self.lo // dp), self.hi // dp

    def describe(self) -> str | int:
        if self.fixed is not None:
            return self.fixed
        if self.target is not None:
            return f"~{self.target:g} (nearest multiple of dp)"
        return f"{self.lo}:{self.hi}"


def parse_global_batch(text: str | int | tuple | None) -> tuple[int, int] | int | None:
    """`--global-batch`: N or MIN:MAX (sequences per step)."""
    if text is None or isinstance(text, int | tuple):
        return text
    lo, sep, hi = str(text).partition(":")
    try:
        a, b = int(lo), int(hi) if sep else int(lo)
    except ValueError:
        raise WorkloadError(
            f"--global-batch must be N or MIN:MAX sequences, e.g. 1024 or 512:2048, not {text!r}"
        ) from None
    return (a, b) if sep else a


def _batches(global_batch, tokens_per_batch, chips: int, seq: int) -> Batches:
    if global_batch is not None and tokens_per_batch is not None:
        raise WorkloadError("give --global-batch or --tokens-per-batch, not both")
    if tokens_per_batch is not None:
        if not tokens_per_batch > 0:
            raise WorkloadError(f"--tokens-per-batch must be positive, not {tokens_per_batch}")
        if tokens_per_batch / seq > checks.MAX_GLOBAL_BATCH:
            raise WorkloadError(
                f"--tokens-per-batch must be at most {checks.MAX_GLOBAL_BATCH * seq:,} "
                f"({checks.MAX_GLOBAL_BATCH:,} sequences of {seq:,} tokens), "
                f"not {tokens_per_batch:,}"
            )
        return Batches(target=tokens_per_batch / seq)
    if isinstance(global_batch, tuple):
        lo, hi = global_batch
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            raise WorkloadError(f"--global-batch MIN:MAX needs 1 <= MIN <= MAX, not {lo}:{hi}")
        return Batches(lo=lo, hi=hi)
    if global_batch is not None and (not isinstance(global_batch, int) or global_batch < 1):
        raise WorkloadError(f"--global-batch must be a positive integer, not {global_batch!r}")
    return Batches(fixed=global_batch or default_global_batch(chips, seq))


def _no_dp(chips: int, c: ModelConfig, batches: Batches, least: int) -> str:
    """Why no shape splits the batch: no tp*pp*cp choice leaves a data-parallel degree (global
    batch / dp sequences per replica) the batch allows; the fix."""
    fixes = [f"a --global-batch that is a multiple of {least:,}"] * (
        least <= checks.MAX_GLOBAL_BATCH
    )
    fixes.append("fewer --chips")
    return (
        f"no tp*pp*cp choice for {chips:,} chips of {c.name} ({c.layers} layers, {c.heads} "
        f"heads) leaves a data-parallel degree that splits global batch {batches.describe()} "
        f"into whole sequences: the least is dp={least:,} ({chips:,} chips / tp*pp*cp "
        f"{chips // least:,}); give " + ", or ".join(fixes)
    )


def _micro_batches(lo: int, hi: int) -> list[int]:
    """Micro-batch sizes that divide some replica batch in [lo, hi]."""
    if hi < lo:
        return []
    if lo == hi:
        return divisors(hi, upto=hi)
    return [b for b in range(1, hi + 1) if hi // b * b >= lo]


def step_lower_bound(chip: ChipSpec, c: ModelConfig, p: Plan, seq: int, dtype: str) -> float:
    """A lower bound on one pipeline stage's time per micro-batch (`StageCost.stage`): the
    stage's dense matmul FLOPs (6 x active layer parameters per token, forward + backward) at
    the chip's peak for `dtype`. Needs no layer costing; the search skips a plan whose step
    at this bound (with its pipeline bubble) is already slower per sequence than the best."""
    per_tok = 6 * (c.attention_params() + c.ffn_params(c.is_moe, active=True))
    layers = stage_layer_count(c, p)
    tok = p.micro_batch * seq // p.cp
    return layers * per_tok * tok / p.tp / chip.peak_flops(dtype)


def compute_lower_bound(
    chip: ChipSpec,
    c: ModelConfig,
    p: Plan,
    seq: int,
    dtype: str,
    run: RunOptions | None = None,
    *,
    cached_only: bool = False,
) -> float | None:
    """A tighter lower bound on the same stage time: its layers' forward and backward compute
    (`layer_costs`, cached per layer shape, on the chip `stage_cost` runs them on), which every
    plan runs, and the forward again under full recomputation; the rest (a selective
    recomputation, the LM head, offload, communication) only adds to
    `StageCost.stage`. The search prices a shape's layers this way before its plans' memory
    (after it where the layer shape is new), and a plan's before the rest of its stage, and
    skips what is already slower than the best. `cached_only`: None unless the layer shape
    is priced already."""
    run = run or RunOptions()
    costs = layer_costs(layer_shape(chip, c, p, seq, dtype, run), cached_only=cached_only)
    if costs is None:  # (cached_only: a layer shape not priced yet)
        return None
    fwd, bwd, _, _ = costs
    # full recomputation runs the forward again; what a selective one recomputes depends on
    # the run's modules (left out here: a lower bound needs no more)
    again = fwd if p.recompute == "full" else 0.0
    layers = stage_layer_count(c, p)
    return layers * (fwd + bwd + again) * (1 - 1e-12)  # (a rounding's margin)


def comm_lower_bound(
    chip: ChipSpec,
    c: ModelConfig,
    p: Plan,
    topo: Topology,
    seq: int,
    dtype: str,
    run: RunOptions,
    m: int,
    sps: tuple[bool, ...] | None = None,
) -> tuple[float, float]:
    """A lower bound on the communication plan `p` adds to a step of `m` micro-batches, from
    the functions `stage_cost` and `step_time` price it with: (s per micro-batch on a stage,
    s per step). The stage: its TP collectives (`training.tp_collectives`; none where
    `tp_overlap` may hide them under the GEMMs); the step: the PP send/recv it exposes
    (`training.pp_exposed`). Both add to the stage's computation in every schedule (the
    1F1B bubble repeats the stage, so it repeats them too); the rest (EP, CP, DP, offload)
    only adds more. `sps`: the sequence-parallel settings `p` stands for (a shape's plans),
    each part the least over them (either may be the cheaper: sequence parallelism's
    quantized all-gathers and shard sends, or without it the all-reduce the asynchronous
    backward hides under the weight-gradient GEMM); `p`'s own when None."""
    stage, step = math.inf, math.inf
    for sp in (p.sequence_parallel,) if sps is None else sps:
        q = replace(p, sequence_parallel=sp)
        if not run.tp_overlap:
            stage = min(stage, tp_collectives(chip, c, q, topo, seq=seq, dtype=dtype, run=run))
        step = min(step, pp_exposed(q, pp_hop(c, q, topo, seq=seq, dtype=dtype, run=run), m))
    return (0.0 if run.tp_overlap else stage), step


def _nccl_ctas(caps: dict[str, int] | None) -> tuple[tuple[str, int], ...]:
    for group, n in (caps or {}).items():
        if group not in NCCL_GROUPS or not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise WorkloadError(
                f"--nccl-ctas takes GROUP=N pairs, GROUP one of {', '.join(NCCL_GROUPS)} and N a "
                f"positive integer, not {group}={n!r}"
            )
    return tuple(sorted((caps or {}).items()))


def check_block_scaled(chip: ChipSpec, dtype: str, fp8_recipe: str) -> None:
    """MXFP8 and 4-bit training need a matrix unit that applies block scales in the MMA
    (`[matrix] block_scaled`): Transformer Engine refuses MXFP8BlockScaling and
    NVFP4BlockScaling below compute capability 10.0 (its support matrix), so a Hopper-class
    chip is refused here rather than priced."""
    have = chip.matrix.block_scaled
    if dtype == "fp8" and fp8_recipe == "mxfp8" and "mxfp8" not in have:
        raise WorkloadError(
            f"--fp8-recipe mxfp8 needs block-scaled MMA, which {chip.name} lacks "
            f"([matrix] block_scaled = {list(have)}): use --fp8-recipe block, current or delayed"
        )
    if dtype == "fp4" and not {"nvfp4", "mxfp4"} & set(have):
        raise WorkloadError(
            f"--dtype fp4 trains in NVFP4/MXFP4, which needs block-scaled MMA that {chip.name} "
            f"lacks ([matrix] block_scaled = {list(have)}): use --dtype fp8 or bf16"
        )


def plan_training(
    chip: ChipSpec | str,
    model: ModelConfig | str,
    chips: int,
    *,
    tokens: float | None = None,
    seq: int | None = None,
    global_batch: int | tuple[int, int] | str | None = None,
    tokens_per_batch: float | None = None,
    dtype: str = "bf16",
    tp: int | None = None,
    pp: int | None = None,
    dp: int | None = None,
    cp: int | None = None,
    ep: int | None = None,
    zero: int | None = None,
    recompute: str | None = None,
    micro_batch: int | None = None,
    interleave: int | None = None,
    topology: Topology | str | None = None,
    attention: str = "flash",
    parallel_block: bool = False,
    sequence_parallel: bool | None = None,
    tp_overlap: bool = False,
    fp8_recipe: str = "delayed",
    alternatives: int = 0,
    schedule: str = "1f1b",
    overlap_param_gather: bool = False,
    fp8_param_gather: bool = False,
    sustained_clock: bool = False,
    activation_offload: bool = False,
    offload_layers: int | None = None,
    optimizer_offload: bool = False,
    moe_dispatcher: str = "alltoall",
    shared_expert_overlap: bool = False,
    bucket_size: int | None = None,
    recompute_modules: tuple[str, ...] = ("core_attn",),
    nccl_ctas: dict[str, int] | None = None,
    moe_host_sync: bool = False,
    loss: str = "fused",
    tp_async_backward: bool = False,
    fp8_dispatch: bool = False,
    pp_scatter_gather: bool = False,
    eager_ops: bool = False,
    cp_ring: str = "p2p",
    train_metrics: int = 0,
    dp_shard: int | None = None,
    pod: int | None = None,
    first_stage_layers: int | None = None,
    last_stage_layers: int | None = None,
) -> TrainingPlan:
    """The feasible training plan with the most tokens per second (ties: less memory), or the
    given one, for `model` on `chips` chips. Flags left as None are searched: TP over the
    divisors of the heads inside the scale-up domain, PP, CP, EP, ZeRO 1-3, recompute,
    sequence parallelism, interleave 1-8 (where the layers split), any micro-batch dividing
    a replica's batch, and the global batch: fixed (`global_batch` N), any in a range
    ((MIN, MAX) or "MIN:MAX"), or the multiple of dp nearest `tokens_per_batch` / seq.
    Bounds on the step (the peak plus the TP and PP communication, then the layers' compute
    plus it) order and prune the space before memory and the rest of a stage are priced
    (docs/cluster.md); `.search` counts the
    plans evaluated and pruned. `alternatives`: also keep the next fastest feasible plans,
    ranked (`.alternatives`). `overlap_param_gather`, `fp8_param_gather` (FP8 dtype only):
    the distributed optimizer's options (training.FP8_PARAM_BYTES). `sustained_clock`: the
    layers at the chip's power-limited sustained clock where its preset states one.
    `activation_offload`: a plan that does not fit the HBM may keep the fewest layers'
    activations in host memory (`Plan.offload_layers`; the topology's host link and memory);
    `offload_layers` states that count instead; `optimizer_offload`: such a plan may keep the
    optimizer states in host memory, stepped by the CPU (tried first). `moe_dispatcher`:
    Megatron-Core's MoE token dispatcher, "alltoall" (NCCL) or "flex" (DeepEP / HybridEP;
    layer.MOE_DISPATCHERS). `shared_expert_overlap`: the shared experts run beside the EP
    all-to-all (Megatron-Core moe_shared_expert_overlap). `bucket_size`: parameters per
    gradient bucket (Megatron-Core's default when None; training.BUCKET_PARAMS).
    `recompute_modules`: what recompute="selective" recomputes (Megatron-Core
    recompute_modules; layer.RECOMPUTE_MODULES). `nccl_ctas`: CTA caps of NCCL communicators,
    {"dp": 8, "cp": 1, "pp": 2} (training.NCCL_GROUPS). `moe_host_sync`: dropless MoE whose
    experts the host launches after a synchronisation in every MoE layer (Megatron-Core with
    Transformer Engine's grouped GEMM outside CUDA graphs; training.MOE_HOST_S_PER_LAUNCH).
    `loss`: the cross-entropy implementation, "fused" (Megatron-Core's) or "eager" (PyTorch's
    F.cross_entropy; memory.LOSS_BUFFERS). `tp_async_backward`: Megatron's backward TP
    communication under the GEMMs (training.TP_ASYNC_BACKWARD). `fp8_dispatch`: the MoE dispatch
    moves the quantized GEMM input (DeepSeek-V3's FP8 dispatch; training.ep_bytes), else every
    all-to-all moves 16 bits. `pp_scatter_gather`: legacy Megatron-LM's stage send of 1/tp of
    the activations from each TP rank, all-gathered on arrival, without sequence parallelism
    (training.pp_hop). `eager_ops`: the block's norms, RoPE and activation run as PyTorch eager
    kernels (torchtitan without torch.compile; layer.EAGER_BYTES), else fused. `cp_ring`: how
    ring attention moves K and V (training.CP_RINGS; "torch": PyTorch's ring as torchtitan runs
    it, training.torch_ring). `train_metrics`: eager cross-entropies over each micro-batch's
    logits beside the loss (Composer's train metrics; training.TRAIN_METRIC_BYTES). `dp_shard`:
    hybrid sharding, the data-parallel ranks one ZeRO shard group spans (a divisor of dp; 0:
    every one, plain ZeRO/FSDP); None searches every rank and the shard group that fills one
    scale-up domain or pod (`shard_choices`). `pod`: the chips of one torus slice, a job of
    several joined by the data-centre network (topology.topology_for)."""
    chip = load_chip(chip) if isinstance(chip, str) else chip
    c = resolve_model(model)
    checks.token_count(tokens)
    checks.positive(error=WorkloadError, required=("chips",), chips=chips,
                    micro_batch=micro_batch, seq=seq, interleave=interleave)  # fmt: skip
    if isinstance(alternatives, bool) or not isinstance(alternatives, int) or alternatives < 0:
        raise WorkloadError(f"`alternatives` must be a whole number >= 0, not {alternatives!r}")
    checks.attention_kernel(attention)
    if fp8_recipe not in FP8_RECIPES:
        raise WorkloadError(
            f"--fp8-recipe must be one of {', '.join(FP8_RECIPES)}, not {fp8_recipe!r}"
        )
    if schedule not in SCHEDULES:
        raise WorkloadError(f"--schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")
    if recompute is not None and recompute not in RECOMPUTE:  # a flag, not an infeasible plan
        raise WorkloadError(f"--recompute must be one of {', '.join(RECOMPUTE)}, not {recompute!r}")
    if moe_dispatcher not in MOE_DISPATCHERS:
        raise WorkloadError(
            f"--moe-dispatcher must be one of {', '.join(MOE_DISPATCHERS)}, not {moe_dispatcher!r}"
        )
    if bucket_size is not None and (not isinstance(bucket_size, int) or bucket_size <= 0):
        raise WorkloadError(f"--bucket-size must be a positive number of parameters, not "
                            f"{bucket_size!r}")  # fmt: skip
    bad = [m for m in recompute_modules if m not in RECOMPUTE_MODULES] or not recompute_modules
    if bad:
        raise WorkloadError(
            f"--recompute-modules takes one or more of {', '.join(RECOMPUTE_MODULES)}, not "
            f"{','.join(recompute_modules) or 'none'}"
        )
    whole = set(recompute_modules) & set(FRAMEWORK_POLICIES)
    if whole and (len(set(recompute_modules)) > 1 or c.is_moe):
        raise WorkloadError(f"--recompute-modules {','.join(sorted(whole))} (a framework's "
                            "whole-layer policy) stands alone and is for dense models")  # fmt: skip
    if loss not in LOSS_BUFFERS:
        raise WorkloadError(f"--loss must be one of {', '.join(LOSS_BUFFERS)}, not {loss!r}")
    if eager_ops:
        check_eager_ops(c)
    if cp_ring not in CP_RINGS:
        raise WorkloadError(f"--cp-ring must be one of {', '.join(CP_RINGS)}, not {cp_ring!r}")
    if fp8_param_gather and dtype != "fp8":
        raise WorkloadError(f"--fp8-param-gather needs --dtype fp8, not {dtype}")
    if fp8_recipe != "delayed" and dtype != "fp8":  # else priced as if not given
        raise WorkloadError(f"--fp8-recipe {fp8_recipe} needs --dtype fp8, not {dtype}")
    if not chip.peak_flops(dtype):
        raise WorkloadError(f"`dtype` {dtype} is not supported by the matrix unit of {chip.name}")
    check_block_scaled(chip, dtype, fp8_recipe)
    if isinstance(topology, Topology) and pod is not None:
        raise WorkloadError("`pod` takes a topology preset's name, not a Topology")
    topo = (topology if isinstance(topology, Topology)
            else topology_for(chip, chips, topology, pod=pod))  # fmt: skip
    seq = seq or c.seq
    if dp_shard is not None and (
        isinstance(dp_shard, bool) or not isinstance(dp_shard, int) or dp_shard < 0
    ):
        raise WorkloadError(f"--dp-shard must be a whole number >= 0, not {dp_shard!r}")
    # a shard group that divides no data-parallel degree: the rule's own line (Infeasible, as
    # training.check_shard_group's, for a sweep's point), not "does not fit in any plan"
    if dp_shard and dp is not None and dp % dp_shard:
        raise Infeasible(f"--dp-shard must divide --dp {dp}, not {dp_shard}")
    if dp_shard and chips % dp_shard:  # every data-parallel degree divides the chips
        raise Infeasible(f"--dp-shard must divide the data-parallel ranks, a divisor of --chips "
                         f"{chips}, not {dp_shard}")  # fmt: skip
    if isinstance(interleave, int) and interleave > 1 and pp == 1:  # its rule's own line, too
        raise Infeasible(f"--interleave {interleave} splits each pipeline stage into chunks: it "
                         "needs --pp above 1, not 1")  # fmt: skip
    if isinstance(ep, int) and ep > 1 and not c.is_moe:  # its rule's own line, as --dp-shard's
        raise Infeasible(f"--ep {ep} needs a MoE model; {c.name} is dense: use --ep 1")
    checks.at_most(checks.MAX_CHIPS, chips=chips, tp=tp, pp=pp, dp=dp, cp=cp, ep=ep,
                   interleave=interleave, dp_shard=dp_shard)  # fmt: skip
    checks.at_most(checks.MAX_TOKENS, seq=seq)  # also a model's own context length
    global_batch = parse_global_batch(global_batch)
    checks.at_most(checks.MAX_GLOBAL_BATCH, micro_batch=micro_batch, global_batch=global_batch)
    if isinstance(global_batch, tuple) and global_batch[-1] > checks.MAX_BATCH_RANGE:
        raise WorkloadError(
            f"--global-batch MIN:MAX must have MAX at most {checks.MAX_BATCH_RANGE:,} (a range is "
            f"searched size by size), not {global_batch[-1]:,}; give one size N (at most "
            f"{checks.MAX_GLOBAL_BATCH:,}) for a larger batch"
        )
    batches = _batches(global_batch, tokens_per_batch, chips, seq)
    ends = (first_stage_layers, last_stage_layers)
    _check_flags(c, chips, tp, pp, dp, cp, ends)
    explicit = None not in (tp, pp, dp, cp, ep, zero, recompute, micro_batch)
    domain = max(1, topo.domain) if chip.links else 1  # no scale-up links: no tensor parallelism
    tps = _choices(tp, [t for t in checks.divisors(c.heads, upto=domain) if chips % t == 0])
    cps = _choices(cp, [x for x in (1, 2, 4, 8, 16) if seq // x >= 8192 or x == 1])
    eps = _choices(ep, [e for e in POW2 if c.is_moe and c.experts % e == 0] or [1])
    zeros = _choices(zero, (1, 2, 3))
    recs = _choices(recompute, RECOMPUTE)
    sps = _choices(sequence_parallel, (True, False))
    ils = _choices(interleave, range(1, 9) if pp is None or pp > 1 else (1,))
    if schedule in ("zb", "dualpipe") and interleave is None:
        ils = [1]  # one model chunk per stage (training.check_schedule)
    blocks = checks.pipeline_blocks(c)
    usable = chip.hbm.capacity
    overhead = 1 - FRAMEWORK_OVERHEAD
    run = RunOptions(attention=attention, parallel_block=parallel_block, tp_overlap=tp_overlap,
                     fp8_recipe=fp8_recipe, overlap_param_gather=overlap_param_gather,
                     fp8_param_gather=fp8_param_gather, sustained_clock=sustained_clock,
                     moe_dispatcher=moe_dispatcher,
                     shared_expert_overlap=shared_expert_overlap,
                     bucket_size=bucket_size,
                     recompute_modules=tuple(recompute_modules),
                     nccl_ctas=_nccl_ctas(nccl_ctas), moe_host_sync=moe_host_sync,
                     loss=loss, tp_async_backward=tp_async_backward,
                     fp8_dispatch=fp8_dispatch,
                     pp_scatter_gather=pp_scatter_gather,
                     eager_ops=eager_ops, cp_ring=cp_ring,
                     train_metrics=train_metrics)  # fmt: skip
    offload = {"optimizer": optimizer_offload,
               "activations": activation_offload and offload_layers is None}  # fmt: skip
    if offload_layers is not None and not isinstance(offload_layers, int):
        raise WorkloadError(f"--offload-layers must be an integer, not {offload_layers!r}")
    # no stage holds more than every block (pp 1): the rule's own line (Infeasible, as
    # training.evaluate_plan's, for a sweep's point), not "does not fit in any plan"
    if offload_layers is not None and not 0 <= offload_layers < checks.pipeline_blocks(c):
        most = checks.pipeline_blocks(c) - 1
        raise Infeasible(f"--offload-layers must be from 0 to {most:,} (a stage's layers "
                         f"less one; {c.name} has {most + 1:,} blocks), "
                         f"not {offload_layers:,}")  # fmt: skip
    # the same search again (the chip's content, not its name; `tokens` only sets the time to
    # train): the plan found before
    key = (chip_key(chip), c, chips, seq, batches, dtype, tp, pp, dp, cp, ep, zero, recompute,
           micro_batch, interleave, topo, run, tuple(offload.items()), offload_layers,
           sequence_parallel, alternatives, schedule, dp_shard, ends)  # fmt: skip
    hit = _PLANS.get(key)
    if hit is not None:
        return replace(hit, tokens=tokens)
    best: tuple | None = None  # (s per sequence, bytes per chip, rank, micro-batches)
    best_plan: tuple[StageCost, int] | None = None
    ranked: list[tuple] = []  # every feasible plan, when alternatives > 0
    errors: list[tuple[tuple, Infeasible]] = []  # (place in the space's order, why)
    no_split = ""  # why a given dp / micro-batch splits no global batch of the space
    shapes = 0
    reached: set[int] = set()  # the data-parallel degrees the shapes reach (for the error)
    zrs = list(product(zeros, recs, sps))
    count = {"evaluated": 0, "pruned_memory": 0, "pruned_bound": 0, "infeasible": 0}
    # 1. the shapes (tp, cp, ep, pp, interleave, micro-batch) in the space's order, each with
    # its micro-batch counts per step and a lower bound from the peak, which its plans (ZeRO,
    # recompute, sequence parallelism) share
    groups: list[tuple] = []  # (bound, order, shape, count, m_lo, m_hi, n, stride, scale)
    for ai, (t, x, e) in enumerate(product(tps, cps, eps)):
        if chips % (t * x):
            continue
        rest = chips // (t * x)
        pps = (
            [pp]
            if pp is not None
            else [d for d in divisors(rest, upto=64) if _ends_for(c, blocks, d, 1, ends, seq)]
        )
        for pi, p_ in enumerate(pps):
            if chips % (t * x * p_):
                continue
            d = chips // (t * x * p_)
            if dp is not None and d != dp:
                continue
            reached.add(d)
            klo, khi = batches.per_replica(d)  # sequences per replica: global batch / dp
            mbs = [micro_batch] if micro_batch is not None else _micro_batches(klo, khi)
            if khi < klo or not mbs:
                no_split = (
                    no_split or f"global batch {batches.describe()} is not a multiple of dp={d}"
                )
                continue
            shapes += 1
            counts = [max(0, khi // b - -(-klo // b) + 1) for b in mbs]  # global batches per mb
            if not any(counts):
                no_split = no_split or (
                    f"micro-batch {mbs[0]} does not divide the "
                    f"{klo if klo == khi else f'{klo} to {khi}'} sequences per replica "
                    f"(global batch {batches.describe()} / dp={d})"
                )
            for (si, s_), (w, v) in product(
                enumerate(shard_choices(dp_shard, d, t * x, topo, _ep_unit(c, e, x), zeros)),
                enumerate(ils),
            ):
                if p_ == 1 and v > 1:
                    continue
                stated = _ends_for(c, blocks, p_, v, ends, seq) if p_ > 1 else ends
                if stated is None:  # no whole layers per stage
                    count["infeasible"] += len(zrs) * sum(counts)
                    continue
                # the 1F1B bubble repeats the other ranks' times (training._pipeline), each at
                # least its blocks' share of the busiest's: in the busiest's units, at least
                # (blocks / its blocks - 1) / v
                ranks = rank_blocks(c, p_, v, checks.end_stage_split(c.layers, p_, *stated, v))
                fill = 0.0
                if schedule in ("1f1b", "interleaved"):
                    fill = (sum(ranks) / max(ranks) - 1) / v
                for i, mb in enumerate(mbs):
                    if not counts[i]:
                        continue
                    m_lo, m_hi = -(-klo // mb), khi // mb  # micro-batches per step
                    shape = Plan(tp=t, pp=p_, dp=d, cp=x, ep=e, micro_batch=mb, interleave=v,
                                 schedule=schedule, offload_layers=offload_layers or 0,
                                 dp_shard=s_, first_stage_layers=stated[0],
                                 last_stage_layers=stated[1])  # fmt: skip
                    n, stride = counts[i], 1
                    if schedule == "dualpipe":  # an even count, at least pp
                        first = max(m_lo, p_) + max(m_lo, p_) % 2
                        n, stride = max(0, (m_hi - first) // 2 + 1), 2
                        m_lo = first if n else m_lo
                    m_hi = m_lo + (n - 1) * stride
                    scale = (m_hi + fill) / overhead / (d * mb * m_hi) if n else 0.0
                    lb = step_lower_bound(chip, c, shape, seq, dtype) * scale
                    groups.append((lb, (ai, (pi, si), w, i), shape, counts[i], m_lo, m_hi, n,
                                   stride, scale))  # fmt: skip
    # 2. best first, over one queue of shapes and plans by lower bound (s per sequence): a
    # shape's compute bound is priced when its peak bound comes up, its plans checked (shape
    # rules, memory) when that does, a plan's own compute bound next, the rest of its stage
    # last; stop where the bound passes the best. A plan's place in the space's order, after
    # its peak bound, breaks exact ties in (s per sequence, bytes): the first wins, whatever
    # order they are priced in (as in a walk of the plans sorted by their peak bound).
    heap = [(g[0], 0, g[1], j) for j, g in enumerate(groups)]
    heapq.heapify(heap)
    items: list[tuple] = []  # (plan, rank, n, m_lo, m_hi, stride, scale)
    checked: dict[int, list[tuple]] = {}  # shapes whose plans were checked before being bound
    # the smallest micro-batch (its index) whose plan did not fit, per shape without the
    # micro-batch and per ZeRO/recompute/SP: activations grow with it, so the larger ones are
    # skipped unpriced, as a walk up the micro-batches stops at the first that does not fit
    too_big: dict[tuple, int] = {}
    # shapes whose queued bound has their communication's (s per sequence) added
    comm: dict[int, float] = {}
    least_rec = "full" if recs == ["full"] else "none"  # the fewest TP collectives of a shape

    def comm_bound(plan: Plan, m_hi: int, scale: float, options: tuple | None = None) -> float:
        """comm_lower_bound in s per sequence, at the most micro-batches a plan takes (the
        least per sequence: the bubble's and the PP fill's share falls with them), the least
        over the sequence-parallel `options` where given."""
        stage, step = comm_lower_bound(chip, c, plan, topo, seq, dtype, run, m_hi, options)
        per_seq = stage * scale + step / overhead / (plan.dp * plan.micro_batch * m_hi)
        return per_seq * (1 - 1e-12)  # (a rounding's margin)

    reserved = reserved_bytes(chip)

    def memory(q: Plan, m: int) -> dict[str, float]:
        """plan_memory of plan `q` at `m` micro-batches per step."""
        return plan_memory(c, q, seq=seq, dtype=dtype, run=run, microbatches=m, reserved=reserved)

    def check(j: int) -> list[tuple]:
        """Shape j's plans that pass the shape rules and fit the memory (counted, errors kept)."""
        lb, order, shape, total, m_lo, m_hi, n, stride, scale = groups[j]
        count["infeasible"] += (total - n) * len(zrs)
        fields = {k: v for k, v in vars(shape).items() if k not in _PER_PLAN}
        out = []
        # the shape rules, the same for all its plans: past them, check_plan asks only that
        # ZeRO and recompute be known values, and a search offers no other but a given --zero
        refused = None
        first = replace(shape, zero=zrs[0][0], recompute=zrs[0][1])
        try:
            check_plan(c, chips, first, shape.dp * shape.micro_batch * m_lo, seq)
        except Infeasible as err:
            refused = err
        for z_, (z, r, sp) in enumerate(zrs):
            place = (*order[:3], z_, order[3])  # the space's order: mb innermost
            if too_big.get(place[:4], order[3] + 1) < order[3]:
                count["pruned_memory"] += n
                continue
            if refused is not None:
                errors.append((place, refused))
                count["infeasible"] += n
                continue
            plan = Plan(**fields, zero=z, recompute=r, sequence_parallel=sp)  # (as replace)
            if not n:
                continue
            # the group's most micro-batches hold the most (memory.in_flight_chunks)
            mem = memory(plan, m_hi)
            held = _offload(c, plan, mem, seq, usable, topo, m_hi, memory, **offload)
            if held is not None:  # the least moved to host memory that fits (priced again)
                plan, mem = held, None
            elif sum(mem.values()) > usable:
                errors.append((place, memory_error(mem, usable)))
                count["pruned_memory"] += n
                too_big[place[:4]] = min(too_big.get(place[:4], order[3]), order[3])
                continue
            out.append((plan, (lb, place), n, m_lo, m_hi, stride, scale, mem))
        return out

    while heap:
        bound, kind, rank, j = heapq.heappop(heap)
        if best is not None and not alternatives and bound > best[0]:
            heap.append((bound, kind, rank, j))
            count["pruned_bound"] += sum(
                items[q][2]
                if k > 1
                else sum(it[2] for it in checked[q])
                if q in checked
                else groups[q][3] * len(zrs)
                for _, k, _, q in heap
            )
            break
        if kind == 0 and not alternatives and groups[j][6]:
            # its communication, the least any of its plans has, added to its bound: back in
            # the queue (no layer is priced for it)
            g = groups[j]
            if j not in comm:
                try:
                    comm[j] = comm_bound(replace(g[2], recompute=least_rec), g[5], g[8],
                                         tuple(sps))  # fmt: skip
                except ChipforgeError:  # a shape its checks refuse: they say why
                    comm[j] = 0.0
                if comm[j] > 0:
                    heapq.heappush(heap, (bound + comm[j], 0, rank, j))
                    continue
            # its layers' compute, the least any of its plans computes (sequence parallelism
            # where searched), bounds it more tightly: back in the queue. A layer shape not
            # priced before is priced only once one of its plans fits (memory is cheaper).
            least = replace(g[2], sequence_parallel=True in sps)
            try:
                cb = compute_lower_bound(chip, c, least, seq, dtype, run, cached_only=True)
                if cb is None:
                    checked[j] = check(j)
                    if not checked[j]:
                        continue
                    cb = compute_lower_bound(chip, c, least, seq, dtype, run)
            except ChipforgeError:  # a shape its checks refuse: they say why
                cb = 0.0
            if cb * g[8] + comm[j] > bound:
                heapq.heappush(heap, (cb * g[8] + comm[j], 1, rank, j))
                continue
        if kind <= 1:  # a shape: its plans, checked, each queued
            for it in checked.pop(j) if j in checked else check(j):
                items.append(it)
                heapq.heappush(heap, (bound, 2, it[1], len(items) - 1))
            continue
        plan, rank, n, m_lo, m_hi, stride, scale, mem = items[j]
        if kind == 2 and not alternatives:  # its own layers' compute and communication
            cb = compute_lower_bound(chip, c, plan, seq, dtype, run) * scale
            cb += comm_bound(plan, m_hi, scale)
            if cb > bound:
                heapq.heappush(heap, (cb, 3, rank, j))
                continue
        sc = stage_cost(chip, c, plan, topo, seq=seq, dtype=dtype, run=run, microbatches=m_hi,
                        memory=mem)  # fmt: skip
        held = sum(sc.memory.values())
        ms = range(m_lo, m_hi + 1, stride) if alternatives else best_counts(sc, m_lo, m_hi, stride)
        count["pruned_bound"] += n - len(ms)
        per_step = plan.dp * plan.micro_batch
        for m in ms:
            count["evaluated"] += 1
            key_ = (step_time(sc, m) / (per_step * m), held, rank, m)
            if alternatives:
                res = finish_plan(chip, c, chips, sc, topo, seq=seq, global_batch=per_step * m,
                                  dtype=dtype)  # fmt: skip
                ranked.append((*key_, _summary(res)))
            if best is None or key_ < best:
                best, best_plan = key_, (sc, per_step * m)
    first_error = min(errors, key=lambda e: e[0])[1] if errors else None
    if best_plan is not None:
        ranked.sort(key=lambda r: r[:4])
        sc, gb = best_plan
        res = finish_plan(chip, c, chips, sc, topo, seq=seq, global_batch=gb, dtype=dtype,
                          tokens=tokens)  # fmt: skip
        stats = {**count, "global_batch_space": batches.describe()}
        res = replace(res, alternatives=tuple(r[4] for r in ranked[1 : 1 + alternatives]),
                      search=stats)  # fmt: skip
        if len(_PLANS) >= PLANS_MAX:
            _PLANS.clear()
        _PLANS[key] = res
        return res
    if explicit or first_error is not None and shapes == 1:
        raise first_error or Infeasible(no_split or "no plan")
    if shapes == 0:
        raise Infeasible(
            _no_dp(chips, c, batches, min(reached, default=chips))
            if dp is None
            else no_split
            or (
                f"--dp {dp} does not divide --chips {chips}"
                if chips % dp
                else f"no tp*pp*cp split of the {chips // dp} chips of a data-parallel replica "
                f"(--chips {chips} / --dp {dp}) fits {c.name} ({c.layers} layers, {c.heads} "
                "heads) with the other flags"
            )
        )
    if no_split and first_error is None:  # nothing was priced: no plan split the batch
        raise Infeasible(no_split)
    state = c.params() * (WEIGHT_BYTES + GRAD_BYTES + OPTIMIZER_BYTES)  # ZeRO paper Sec. 3.1
    usable = chip.hbm.capacity - reserved_bytes(chip)
    least = 2 ** math.ceil(math.log2(max(1.0, state / max(usable, 1.0))))
    if least <= chips:  # the state fits the chips: say what failed, not "need at least 1 chips"
        why = first_error or ("no shape passes the given flags' rules; leave some out to search "
                              "them")  # fmt: skip
        raise Infeasible(f"no plan of {c.name} on {chips:,} x {chip.name}: {why}")
    raise Infeasible(
        f"{c.name} does not fit on {chips} x {chip.name} in any plan"
        + (f" ({first_error})" if first_error is not None else "")
        + "; its "
        f"{state / 2**30:,.0f} GiB of weights and optimizer state need at least {least} chips "
        f"of {chip.hbm.capacity / 2**30:.0f} GiB"
    )


def shard_choices(given: int | None, dp: int, inner: int, topo: Topology, unit: int,
                  zeros: list) -> list[int]:  # fmt: skip
    """The `Plan.dp_shard` values a search tries for `dp` data-parallel ranks whose shard
    group's ranks are `inner` chips apart (tp x cp): the given one (0 when it is all of dp);
    else every rank (0), and where dp spans several scale-up domains or pods, the largest
    shard group (at least 2 ranks) inside one, its replicas joined by the scale-out network
    (the layout PyTorch's HSDP and MaxText's multi-slice runs use: FSDP on the fast links,
    data parallelism across them). A shard group is a multiple of `unit` ranks (expert
    parallelism: the experts' ranks lie inside one, training.check_shard_group). None beside 0
    for ZeRO 0."""
    if given is not None:
        return [0 if given == dp else given]
    cap = topo.domain // inner
    if dp <= cap or cap < 2 or list(zeros) == [0]:
        return [0]
    fit = max((s for s in divisors(dp, upto=cap) if s >= 2 and s % unit == 0), default=0)
    return [0, fit] if fit else [0]


def _ep_unit(c: ModelConfig, ep: int, cp: int) -> int:
    """Data-parallel ranks a shard group holds a multiple of: (ranks x cp) % ep == 0."""
    return ep // math.gcd(ep, cp) if c.is_moe and ep > 1 else 1


def _offload(c: ModelConfig, plan: Plan, mem: dict, seq: int, usable: float, topo: Topology,
             m: int | None, memory, *, optimizer: bool,
             activations: bool) -> Plan | None:  # fmt: skip
    """`plan` with what must go to host memory for it to fit (None: it fits without, or
    cannot with, offload): the optimizer states first (one copy each way per step), then the
    fewest layers' activations (copies every micro-batch); `mem` planned for `m` micro-batches
    per step; `memory(plan, m)`: plan_memory of a plan so offloaded."""
    if sum(mem.values()) <= usable or not topo.host_bandwidth > 0:
        return None
    full = mem
    if optimizer and topo.host_memory_bandwidth > 0:
        plan = replace(plan, optimizer_offload=True)
        mem = {**mem, "optimizer_bytes": 0.0}
    if activations and sum(mem.values()) > usable:
        k = offload_layers_to_fit(c, plan, mem, seq, usable, m)
        plan = replace(plan, offload_layers=k or 0)
    # k fits the rank counted before the offload; another, with more layers left on the chip,
    # can be the busiest after it (memory_per_chip's `offload`): a layer more until one fits
    held = memory(plan, m)
    while (
        plan.offload_layers
        and sum(held.values()) > usable
        and plan.offload_layers + 1 < stage_layer_count(c, plan)
    ):
        plan = replace(plan, offload_layers=plan.offload_layers + 1)
        held = memory(plan, m)
    fits = sum(held.values()) <= usable
    if not fits or host_bytes(c, plan, full, seq, m) > topo.host_memory:
        return None
    return plan


def _summary(res: TrainingPlan) -> dict:
    """One ranked alternative: its plan and the figures a planner compares."""
    return {
        "plan": res.plan.to_dict(),
        "step_time_s": res.step_time_s,
        "mfu": res.mfu,
        "memory_per_chip_bytes": res.memory_per_chip_bytes,
        "exposed_comm_s": sum(res.exposed_comm.values()),
    }
