"""The result of `cluster.serving.plan_serving` (one serving plan, its figures and curve) and
the checks and loaders of its inputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from chipforge.cluster import checks
from chipforge.errors import WorkloadError
from chipforge.spec.loader import load_chip
from chipforge.spec.models import ChipSpec
from chipforge.workload.config import ModelConfig
from chipforge.workload.resolve import resolve_model  # noqa: F401  (re-exported)

# What the serving model costs (cluster.serving): a serving engine samples one token per
# sequence, so the LM head runs on the last position of each prompt and each decode step
# (workload `llm:` graphs compute every position unless `logits=last`).
SERVING_CONVENTION = "logits: last position (the sampled token); attention: causal"


@dataclass(frozen=True)
class ServingPlan:
    chip: str
    model: str
    chips: int
    tp: int
    pp: int
    ep: int
    dp: int
    batch: int  # running sequences per replica (continuous batching)
    isl: int
    osl: int
    dtype: str
    kv_dtype: str
    ttft_s: float
    tpot_s: float | None  # None with one output token (no time between tokens)
    throughput_tokens_per_s: float  # output tokens/s over all chips
    kv_cache_capacity_tokens: int  # per replica, every layer holding them (`Memory.kv_tokens`)
    memory_per_chip: dict
    disaggregated: bool | str = False  # True, or "decode" / "prefill": one pool only
    prefill_chips: int = 0
    breakdown: dict = field(default_factory=dict)
    batching: str = "continuous"  # "static" (one batch at a time), "interleaved" (JetStream)
    clients: int = 0  # requests in the system over all replicas (0: batch x dp); more queue
    # TTFT percentiles under Poisson arrivals at this plan's throughput (cluster.queueing);
    # empty where not modelled (static batching, disaggregated)
    ttft_percentiles_s: dict = field(default_factory=dict)
    # TPOT percentiles under Poisson arrivals (cluster.queueing.tpot_percentiles); empty where
    # not modelled (static batching, disaggregated, a closed-loop concurrency)
    tpot_percentiles_s: dict = field(default_factory=dict)
    osl_cv: float = 0.0  # coefficient of variation of the output lengths
    isl_cv: float = 0.0  # coefficient of variation of the prompt lengths
    attn_dtype: str | None = None  # attention modules' precision where it differs from dtype
    ep_overlap: bool = False  # EP all-to-all hidden behind computation
    spec_tokens: int = 0  # draft tokens per decode step (MTP / speculative decoding)
    spec_acceptance: float = 0.0  # probability each draft is accepted (given the earlier ones)
    # ADP balance timeout (steps); 0: DP-attention groups prefill unbalanced; None: balanced
    adp_balance: int | None = None
    adp_batching_wait: int = 0  # ADP balance's wait once every group holds a prompt (steps)
    prefix_hit: float = 0.0  # fraction of prompt tokens already in the KV cache
    max_num_tokens: int | None = None  # the engine's per-step token budget (chunked prefill)
    dense_cache: int | None = None  # a preallocated cache per sequence, attended whole
    weight_dtype: str | None = None  # weights stored at this format, computed at dtype (W8A16)
    batch_shards: int = 1  # groups of tp x pp chips one engine's batch is split over (per replica)
    cuda_graph_batches: tuple[int, ...] = ()  # captured decode batch sizes, padded up to
    moe_tp: bool = False  # DP attention's FFN sliced over the ep chips (serving.MOE_TP)
    runtime: str = "vllm"  # how the KV cache is sized (kvcache.RUNTIMES)
    # latency/throughput curve along this plan's configuration, built on demand by the planner
    curve_fn: Callable[[], list[dict]] | None = field(default=None, compare=False, repr=False)

    @property
    def input_tokens_per_s(self) -> float:
        """Prompt tokens/s over all chips (cached prefix tokens included): requests/s x isl."""
        return self.throughput_tokens_per_s / self.osl * self.isl

    @property
    def concurrency(self) -> int:
        return self.clients or self.batch * self.dp

    @property
    def curve(self) -> list[dict]:
        """One point per batch (powers of two up to what the KV cache holds, plus this plan's):
        concurrency, batch, throughput (total and per chip), TTFT, TPOT, feasible (SLOs met)."""
        return self.curve_fn() if self.curve_fn else []

    def ttft_at(self, percentile: str | None) -> float:
        """TTFT at a percentile under Poisson arrivals (p50/p90/p99); the mean when None or
        not modelled for this plan."""
        if percentile is None:
            return self.ttft_s
        return self.ttft_percentiles_s.get(percentile, self.ttft_s)

    def tpot_at(self, percentile: str | None) -> float | None:
        """TPOT at a percentile under Poisson arrivals; the mean when None or not modelled
        (None with one output token)."""
        if percentile is None:
            return self.tpot_s
        return self.tpot_percentiles_s.get(percentile, self.tpot_s)

    def point(self, feasible: bool = True) -> dict:
        return {
            "concurrency": self.concurrency,
            "batch": self.batch,
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "throughput_tokens_per_s_per_chip": self.throughput_tokens_per_s / self.chips,
            "ttft_s": self.ttft_s,
            "tpot_s": self.tpot_s,
            "feasible": feasible,
        }

    def to_dict(self) -> dict:
        return {
            "chip": self.chip,
            "model": self.model,
            "chips": self.chips,
            "plan": {
                "tp": self.tp,
                "pp": self.pp,
                "ep": self.ep,
                "dp": self.dp,
                "batch": self.batch,
                "disaggregated": self.disaggregated,
                "prefill_chips": self.prefill_chips,
                "batching": self.batching,
                "dense_cache_tokens": self.dense_cache,
                "batch_shards": self.batch_shards,
                "cuda_graph_batches": list(self.cuda_graph_batches),
                "moe_tp": self.moe_tp,
                "runtime": self.runtime,  # the engine's rules it was priced by
            },
            "isl": self.isl,
            "osl": self.osl,
            "dtype": self.dtype,
            "kv_dtype": self.kv_dtype,
            "weight_dtype": self.weight_dtype or self.dtype,  # weights' stored format
            "ttft_s": self.ttft_s,
            "tpot_s": self.tpot_s,
            "ttft_percentiles_s": self.ttft_percentiles_s,
            "tpot_percentiles_s": self.tpot_percentiles_s,
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "throughput_tokens_per_s_per_chip": self.throughput_tokens_per_s / self.chips,
            "concurrency": self.concurrency,
            "kv_cache_capacity_tokens": self.kv_cache_capacity_tokens,
            "memory_per_chip_bytes": self.memory_per_chip,
            "breakdown_s": self.breakdown,
            "curve": self.curve,
            "flop_convention": SERVING_CONVENTION,
        }


def _check(c: ModelConfig, chips: int, tp: int | None, pp: int | None, ep: int | None) -> None:
    """The plan's shape, for the flags given (None: searched, checked per candidate); serving
    splits the layers evenly over the pipeline stages and carves the expert-parallel group out
    of the tensor-parallel one, or (wide EP, `ep` a multiple of `tp`) spreads the experts over
    `ep` chips whose attention runs data-parallel in groups of `tp`."""
    checks.positive(error=WorkloadError, tp=tp, pp=pp, ep=ep)
    if tp:
        checks.tp_heads(c, tp, chips, error=WorkloadError)
    if pp:
        checks.pp_layers(c, pp, chips, uneven=False, error=WorkloadError)
    if tp and pp:
        checks.product(c, chips, exact=False, uneven=False, error=WorkloadError, tp=tp, pp=pp)
    if ep:
        check_ep(c, tp, ep)


def check_ep(c: ModelConfig, tp: int | None, ep: int) -> None:
    """`ep` carved out of the tensor-parallel group divides it and the routed experts; wide EP
    (`ep` a multiple of `tp`) needs only a MoE model (its experts spread unevenly, see serving).
    Whatever the chips: a serving table's keys are checked by it before they are known
    (cluster.serve_options)."""
    if not (tp and ep > tp and ep % tp == 0):
        within = {f"the experts of {c.name}": c.experts} | ({"--tp": tp} if tp else {})
        checks.ep_divides(c, ep, within, error=WorkloadError)
    elif not c.is_moe:  # wide EP: DP attention, see serving
        checks.ep_divides(c, ep, {}, error=WorkloadError)


@lru_cache(maxsize=64)
def _load_chip(name: str) -> ChipSpec:
    """Presets by name, loaded once so the per-layer cache (keyed on the spec) hits."""
    return load_chip(name)
