"""The one result type that the analytical and the cycle-level engines both return."""

from __future__ import annotations

from dataclasses import dataclass, field

# compute: the matrix units stream operands; fill / weight-load: the systolic array mostly fills
# and drains (skew) or loads weights (perf.matmul.systolic_limit), not computing
BOUNDS = ("compute", "fill", "weight-load", "memory", "vector", "interconnect", "latency")


def cost_keys(cost: OpResult | Result) -> dict:
    """The keys an op record and a whole result share in JSON."""
    return {
        "time_s": cost.time_s,
        "flops": cost.flops,
        "achieved_flops_per_s": cost.achieved_flops_per_s,
        "utilization": cost.utilization,
        "bound": cost.bound,
        "energy_j": cost.energy_j,
    }


@dataclass(frozen=True)
class OpResult:
    """Cost of one op (all `count` repeats together)."""

    name: str
    kind: str
    count: int
    time_s: float
    flops: float
    bytes_by_level: dict[str, float]
    energy_j: float
    bound: str
    peak_flops_per_s: float  # of the op's dtype on this chip; 0 for non-matrix work
    parts_s: dict[str, float] = field(default_factory=dict)  # per bound, all repeats
    # cycle engine only, all repeats: wall cycles (simulated timeline + the dispatch overhead)
    cycles: float | None = None
    # the matrix array's busy span, first weight/operand in to last result out, no dispatch:
    # the figure SCALE-Sim reports as compute cycles (None: costed analytically, no array run)
    array_cycles: float | None = None
    # timeline cycles in which the busiest compute engine (MXU, VPU or EUP) was not busy:
    # waiting on DMA, fill and drain, dependencies (not SCALE-Sim's memory-stall count)
    compute_idle_cycles: float | None = None

    @property
    def achieved_flops_per_s(self) -> float:
        return self.flops / self.time_s if self.time_s else 0.0

    @property
    def utilization(self) -> float:
        """Achieved / peak FLOP/s of the matrix unit in the op's dtype (0 for non-matrix ops)."""
        if not self.peak_flops_per_s or not self.time_s:
            return 0.0
        return min(1.0, self.achieved_flops_per_s / self.peak_flops_per_s)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "count": self.count,
            **cost_keys(self),
            "bytes": dict(self.bytes_by_level),
            **(
                {
                    "cycles": self.cycles,
                    "array_cycles": self.array_cycles,
                    "compute_idle_cycles": self.compute_idle_cycles,
                }
                if self.cycles is not None
                else {}
            ),
            "parts_s": {k: v for k, v in self.parts_s.items()},
        }


@dataclass(frozen=True)
class Result:
    """Per-op costs of a graph on one chip, and their totals."""

    chip: str
    workload: str
    engine: str
    ops: tuple[OpResult, ...]
    peak_flops_per_s: float  # the chip's peak in the workload's main dtype
    memory_capacity_bytes: float
    resident_bytes: float
    tokens: int = 0
    warnings: tuple[str, ...] = ()
    convention: str = ""  # how the FLOPs were counted: LM-head positions, attention masking

    @property
    def time_s(self) -> float:
        return sum(op.time_s for op in self.ops)

    @property
    def flops(self) -> float:
        return sum(op.flops for op in self.ops)

    @property
    def energy_j(self) -> float:
        return sum(op.energy_j for op in self.ops)

    @property
    def achieved_flops_per_s(self) -> float:
        return self.flops / self.time_s if self.time_s else 0.0

    @property
    def utilization(self) -> float:
        return (
            min(1.0, self.achieved_flops_per_s / self.peak_flops_per_s)
            if self.peak_flops_per_s
            else 0.0
        )

    @property
    def bytes_by_level(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for op in self.ops:
            for level, value in op.bytes_by_level.items():
                totals[level] = totals.get(level, 0.0) + value
        return totals

    @property
    def time_by_bound(self) -> dict[str, float]:
        totals = dict.fromkeys(BOUNDS, 0.0)
        for op in self.ops:
            totals[op.bound] += op.time_s
        return totals

    @property
    def bound(self) -> str:
        """The bound that limits most of the time."""
        by_bound = self.time_by_bound
        return max(by_bound, key=by_bound.get)

    @property
    def cycles(self) -> float | None:
        """Total cycles (cycle engine only)."""
        if any(op.cycles is None for op in self.ops):
            return None
        return sum(op.cycles for op in self.ops)

    @property
    def array_cycles(self) -> float | None:
        """The matrix array's busy cycles, summed over the simulated ops (cycle engine only;
        no dispatch overhead, no analytically costed op)."""
        if self.cycles is None:
            return None
        return sum(op.array_cycles or 0.0 for op in self.ops)

    @property
    def fits_in_memory(self) -> bool:
        return self.resident_bytes <= self.memory_capacity_bytes

    def to_dict(self) -> dict:
        out = {
            "chip": self.chip,
            "workload": self.workload,
            "engine": self.engine,
            **cost_keys(self),
            "peak_flops_per_s": self.peak_flops_per_s,
            "average_power_w": self.energy_j / self.time_s if self.time_s else 0.0,
            "bytes": self.bytes_by_level,
            "time_by_bound_s": self.time_by_bound,
            "fits_in_memory": self.fits_in_memory,
            "resident_bytes": self.resident_bytes,
            "memory_capacity_bytes": self.memory_capacity_bytes,
            "warnings": list(self.warnings),
        }
        if self.convention:
            out["flop_convention"] = self.convention
        if self.cycles is not None:
            out["cycles"] = self.cycles
            out["array_cycles"] = self.array_cycles
        if self.tokens:
            out["tokens"] = self.tokens
            out["tokens_per_s"] = self.tokens / self.time_s if self.time_s else 0.0
        out["ops"] = [op.to_dict() for op in self.ops]
        return out
