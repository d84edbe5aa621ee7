"""A workload: a short list of (possibly repeated) ops plus what must stay resident in memory."""

from __future__ import annotations

from dataclasses import dataclass, field

from chipforge.workload.ops import Op


@dataclass(frozen=True)
class Graph:
    """Ops in execution order; `resident` maps a category (weights, kv_cache, optimizer,
    activations) to bytes that must stay in device memory while the graph runs."""

    name: str
    ops: tuple[Op, ...]
    resident: dict[str, float] = field(default_factory=dict)
    tokens: int = 0  # tokens processed per execution (0 when not a language model)
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def flops(self) -> float:
        """Total FLOPs: the sum over ops of FLOPs x repeat count."""
        return sum(op.flops * op.count for op in self.ops)

    @property
    def bytes(self) -> float:
        return sum(op.bytes * op.count for op in self.ops)

    @property
    def resident_bytes(self) -> float:
        return sum(self.resident.values())

    def __len__(self) -> int:
        return len(self.ops)
