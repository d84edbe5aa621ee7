"""Cycle-level timing of a program: every instruction on its engine, every dependency honoured.

Engines (each core's DMA engine, its matrix units' weight-load ports and arrays, its vector
unit) run their instructions in program order. An instruction starts when its engine is free
and its dependencies allow: a consumer that reads what a producer wrote waits for the result
(`done`, after a systolic array's drain); any other dependency (a buffer about to be
overwritten) waits only until the producer's engine has finished with it (`busy_end`). Because
engines are in order and dependencies point backwards, one pass in program order gives the exact
schedule of this machine model: no event queue is needed.

Per instruction (cycles): Dma moves bytes at the core's share of HBM bandwidth (the compiler
splits work evenly over cores, so HBM is partitioned among their DMA engines); LoadWeights
shifts the array's R rows in; Stream occupies the array one cycle per input row (per `rate`
rows for packed narrow formats) and its results leave after the R + C - 2 cycle skew (SCALE-Sim,
Samajdar et al. ISPASS 2020); Vector work runs at the core's vector FLOP and transcendental
rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from chipforge.compiler.isa import (
    VECTOR_OPS,
    Dma,
    Instr,
    LoadWeights,
    OsTile,
    Program,
    Stream,
    Vector,
)
from chipforge.dtypes import nbytes
from chipforge.spec import ChipSpec


@dataclass
class Timeline:
    """The schedule of one program instance."""

    start: list[float]
    busy_end: list[float]
    done: list[float]
    engine_busy: dict[str, float] = field(default_factory=dict)
    hbm_bytes: float = 0.0

    @property
    def cycles(self) -> float:
        return max(self.done, default=0.0)

    def span(self, ids) -> float:
        """Cycles from the first start to the last finish of instructions `ids` (0: none)."""
        ids = list(ids)
        if not ids:
            return 0.0
        return max(self.done[i] for i in ids) - min(self.start[i] for i in ids)

    def busiest(self, prefix: str) -> float:
        return max((v for k, v in self.engine_busy.items() if k.startswith(prefix)), default=0.0)


def vector_work(instr: Vector, buffers) -> tuple[float, float]:
    """(FLOPs, transcendentals) of a vector instruction."""
    _, flops, trans = VECTOR_OPS[instr.op]
    elements = instr.dst.size if instr.op not in ("rowmax", "rowsum") else instr.srcs[0].size
    if instr.op in ("dot", "dotT"):
        inner = instr.srcs[0].cols
        return 2.0 * instr.dst.size * inner, 0.0
    return elements * flops, elements * trans


def _durations(
    instr: Instr,
    prog: Program,
    chip: ChipSpec,
    dma_bytes_per_cycle: float,
) -> tuple[float, float, float]:
    """(occupancy, extra latency, bytes moved off-chip) of one instruction."""
    mu = chip.matrix
    if isinstance(instr, Dma):
        moved = instr.src.size * nbytes(prog.buffers[instr.src.buffer].dtype)
        return math.ceil(moved / dma_bytes_per_cycle), 0.0, moved
    if isinstance(instr, LoadWeights):
        return float(mu.rows), 0.0, 0.0
    if isinstance(instr, Stream):
        dtype = prog.buffers[instr.src.buffer].dtype
        rate = mu.macs_per_cycle.get(dtype, mu.rows * mu.cols) / (mu.rows * mu.cols)
        return math.ceil(instr.src.rows / rate), float(mu.rows + mu.cols - 2), 0.0
    if isinstance(instr, OsTile):  # K streams through; the results drain out after the skew
        return float(instr.a.cols), float(mu.rows + mu.cols - 2), 0.0
    assert isinstance(instr, Vector)
    flops, trans = vector_work(instr, prog.buffers)
    cycles = max(
        flops / chip.vector.flops_per_cycle / chip.vector.count,
        trans / chip.vector.transcendentals_per_cycle / chip.vector.count,
        1.0,
    )
    return math.ceil(cycles), 0.0, 0.0


def _writes(instr: Instr) -> str | None:
    return getattr(instr, "dst", None) and instr.dst.buffer


def _reads(instr: Instr) -> set[str]:
    if isinstance(instr, Vector):
        return {r.buffer for r in instr.srcs}
    if isinstance(instr, OsTile):
        return {instr.a.buffer, instr.b.buffer, instr.dst.buffer}
    return {instr.src.buffer}


def schedule(prog: Program, chip: ChipSpec, *, memory_frac: float = 1.0) -> Timeline:
    """Start, engine-free and result-ready cycle of every instruction of `prog`.

    `memory_frac`: the share of HBM's peak that DRAM delivers when streaming (refresh, bank
    and row switches), the same figure the analytical engine uses."""
    n = len(prog.instrs)
    start, busy_end, done = [0.0] * n, [0.0] * n, [0.0] * n
    free: dict[str, float] = {}
    busy: dict[str, float] = {}
    previous: dict[str, Instr] = {}
    dma_rate = chip.hbm.bandwidth * memory_frac / chip.cores / chip.clock  # B/cycle per core
    timeline = Timeline(start, busy_end, done, busy)
    for instr in prog.instrs:
        occupancy, latency, moved = _durations(instr, prog, chip, dma_rate)
        reads = _reads(instr)
        ready = 0.0
        for dep in instr.deps:
            producer = prog.instrs[dep]
            raw = _writes(producer) in reads
            # without double-buffered weights the next tile can only shift in once the
            # previous stream has drained out of the array (SCALE-Sim's per-fold skew)
            drain = (
                not chip.matrix.double_buffered
                and isinstance(instr, LoadWeights)
                and isinstance(producer, Stream)
            )
            ready = max(ready, done[dep] if raw or drain else busy_end[dep])
        engine = instr.engine
        t0 = max(free.get(engine, 0.0), ready)
        before = previous.get(engine)
        if isinstance(instr, OsTile) and isinstance(before, OsTile) and before.dst != instr.dst:
            t0 = max(t0, done[before.id])  # a new output tile: the last one drains out first
        previous[engine] = instr
        i = instr.id
        start[i], busy_end[i] = t0, t0 + occupancy
        done[i] = busy_end[i] + latency
        free[engine] = busy_end[i]
        busy[engine] = busy.get(engine, 0.0) + occupancy
        timeline.hbm_bytes += moved
    return timeline
