"""The result of `cluster.serving.plan_serving`: one serving plan and its figures."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    tpot_s: float
    throughput_tokens_per_s: float  # output tokens/s over all chips
    kv_cache_capacity_tokens: int  # per replica
    memory_per_chip: dict
    disaggregated: bool = False
    prefill_chips: int = 0
    breakdown: dict = field(default_factory=dict)

    @property
    def concurrency(self) -> int:
        return self.batch * self.dp

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
            },
            "isl": self.isl,
            "osl": self.osl,
            "dtype": self.dtype,
            "kv_dtype": self.kv_dtype,
            "ttft_s": self.ttft_s,
            "tpot_s": self.tpot_s,
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "throughput_tokens_per_s_per_chip": self.throughput_tokens_per_s / self.chips,
            "concurrency": self.concurrency,
            "kv_cache_capacity_tokens": self.kv_cache_capacity_tokens,
            "memory_per_chip_bytes": self.memory_per_chip,
            "breakdown_s": self.breakdown,
        }
