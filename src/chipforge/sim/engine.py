"""The cycle engine: compile each op, schedule it cycle by cycle, return the common Result."""

from __future__ import annotations

from dataclasses import replace

from chipforge.compiler.isa import LoadWeights, Program, Stream, Vector
from chipforge.compiler.lower import compile_op
from chipforge.dtypes import nbytes
from chipforge.perf.calibration import calibration
from chipforge.perf.engine import RULES, Cost, Machine, finish_op, make_result
from chipforge.perf.result import OpResult, Result
from chipforge.sim import budget
from chipforge.sim.scalesim import array_span
from chipforge.sim.timing import Timeline, schedule, vector_work
from chipforge.spec import ChipSpec
from chipforge.workload import Graph
from chipforge.workload.ops import Attention, Collective, MatMul, Op

ENGINE_BOUND = (
    ("mxu", "compute"),
    ("wload", "compute"),
    ("dma", "memory"),
    ("vpu", "vector"),
    ("eup", "vector"),
)


def _work(prog: Program) -> tuple[float, float, float]:
    """(MACs on the arrays, vector FLOPs, SRAM bytes read by the engines) of one instance."""
    macs = vec = sram = 0.0
    for instr in prog.instrs:
        if isinstance(instr, Stream):
            macs += instr.src.size * instr.dst.cols
            sram += instr.src.size * nbytes(prog.buffers[instr.src.buffer].dtype)
        elif isinstance(instr, LoadWeights):
            sram += instr.src.size * nbytes(prog.buffers[instr.src.buffer].dtype)
        elif isinstance(instr, Vector):
            vec += vector_work(instr, prog.buffers)[0]
    return macs, vec, sram


def _cost(mc: Machine, op: Op, prog: Program, tl: Timeline) -> Cost:
    chip = mc.chip
    parts: dict[str, float] = {}
    for prefix, bound in ENGINE_BOUND:
        parts[bound] = max(parts.get(bound, 0.0), tl.busiest(prefix) / chip.clock)
    macs, vec, sram = _work(prog)
    sram_name = next((m.name for m in chip.memory[1:] if m.kind == "sram"), chip.memory[-1].name)
    dtype = mc.matrix_dtype(op.dtype)[0]
    return Cost(
        parts,
        {chip.hbm.name: tl.hbm_bytes, sram_name: sram},
        macs=macs,
        mac_dtype=dtype,
        vector_flops=vec,
        peak=chip.peak_flops(dtype) if macs else 0.0,
        compute_limit=array_limit(prog, tl, chip) if isinstance(op, MatMul) else "compute",
    )


def array_limit(prog: Program, tl: Timeline, chip: ChipSpec) -> str:
    """What the schedule shows limiting the arrays (as `perf.matmul.systolic_limit` names it
    from the closed forms): per unit, streaming cycles S (the busiest array), exposed weight
    loads (the first, plus the busiest load port beyond S, when loads hide behind streams; all
    of them when not) and fill, the rest of the arrays' span (skew in and out); the largest
    names the bound. Derived from this schedule alone, not from the analytical engine's rule."""
    array = [i.id for i in prog.instrs if i.engine.split(".")[0] in ("mxu", "wload")]
    if not array:
        return "compute"
    stream, loads = tl.busiest("mxu"), tl.busiest("wload")
    # double-buffered: the first load is never hidden, later ones only beyond the streams
    first = chip.matrix.rows if loads else 0.0
    exposed = first + max(0.0, loads - stream) if chip.matrix.double_buffered else loads
    parts = {"compute": stream, "weight-load": exposed}
    parts["fill"] = max(0.0, tl.span(array) - stream - exposed)
    return max(parts, key=parts.get)


def analytical_fallback(op: Op) -> str | None:
    """Why `op` is costed by the analytical model inside the cycle engine, or None: the links
    are not simulated, and the compiler lowers attention's forward pass only."""
    if isinstance(op, Collective):
        return "collectives run on the links: alpha-beta model"
    if isinstance(op, Attention) and op.backward:
        return "attention backward is not lowered yet: analytical model"
    return None


def simulate_op(
    mc: Machine, op: Op, *, resident: bool = False, program: Program | None = None
) -> tuple[OpResult, Program | None, Timeline | None]:
    """One op on the cycle engine (see `analytical_fallback` for the exceptions)."""
    if analytical_fallback(op):
        cost = RULES[type(op)](mc, op)
        seconds = max(cost.parts.values())
        record = finish_op(mc, op, cost, cycles=seconds * mc.chip.clock)
        return record, None, None
    prog = program or compile_op(op, mc.chip, resident=resident)
    tl = schedule(prog, mc.chip, memory_frac=mc.cal.memory_frac)
    busy_compute = max(tl.busiest("mxu"), tl.busiest("vpu"), tl.busiest("eup"))
    record = finish_op(
        mc,
        op,
        _cost(mc, op, prog, tl),
        busy_s=tl.cycles / mc.chip.clock,
        cycles=tl.cycles,
        array_cycles=array_span(prog, tl),
        compute_idle_cycles=tl.cycles - busy_compute,
    )
    return record, prog, tl


def run_timing(
    graph: Graph,
    chip: ChipSpec,
    *,
    on_op=None,
    max_memory: float | None = None,
    max_work: float | None = None,
    functional: bool = False,
) -> Result:
    """Cost `graph` on `chip` with the cycle-level simulator (one instance of each op).

    `on_op(op, program, timeline)` is called after each op (program and timeline are None
    for ops costed analytically): the `simulate` command collects traces and checks there.
    A run over its memory or work budget (`sim/budget.py`; None: the defaults) is refused
    before it starts; `functional` counts the host arrays and MACs of `on_op`'s checks in."""
    size = budget.estimate(graph, chip, functional=functional)
    budget.check(size, max_memory=max_memory, max_work=max_work)
    mc = Machine(chip, calibration(chip.family))
    ops, notes = [], []
    for op in graph.ops:
        activations = op.bytes - op.weight_bytes
        record, prog, tl = simulate_op(mc, op, resident=mc.resident(activations))
        ops.append(record)
        reason = analytical_fallback(op)
        if reason:
            notes.append(f"{op.name}: {reason}")
        if on_op is not None:
            on_op(op, prog, tl)
    result = make_result(graph, chip, mc, tuple(ops), engine="cycle")
    return replace(result, warnings=result.warnings + tuple(notes))
