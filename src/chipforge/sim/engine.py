"""The cycle engine: compile each op, schedule it cycle by cycle, return the common Result."""

from __future__ import annotations

from chipforge.compiler.isa import LoadWeights, Program, Stream, Vector
from chipforge.compiler.lower import compile_op
from chipforge.dtypes import nbytes
from chipforge.perf.calibration import calibration
from chipforge.perf.engine import Cost, Machine, cost_collective, finish_op, make_result
from chipforge.perf.result import OpResult, Result
from chipforge.sim.timing import Timeline, schedule, vector_work
from chipforge.spec import ChipSpec
from chipforge.workload import Graph
from chipforge.workload.ops import Collective, Op

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
    )


def simulate_op(
    mc: Machine, op: Op, *, resident: bool = False, program: Program | None = None
) -> tuple[OpResult, Program | None, Timeline | None]:
    """One op on the cycle engine (collectives: the analytical alpha-beta model)."""
    if isinstance(op, Collective):
        return finish_op(mc, op, cost_collective(mc, op)), None, None
    prog = program or compile_op(op, mc.chip, resident=resident)
    tl = schedule(prog, mc.chip, memory_frac=mc.cal.memory_frac)
    busy_compute = max(tl.busiest("mxu"), tl.busiest("vpu"), tl.busiest("eup"))
    record = finish_op(
        mc,
        op,
        _cost(mc, op, prog, tl),
        busy_s=tl.cycles / mc.chip.clock,
        cycles=tl.cycles,
        stall_cycles=tl.cycles - busy_compute,
    )
    return record, prog, tl


def run_timing(graph: Graph, chip: ChipSpec) -> Result:
    """Cost `graph` on `chip` with the cycle-level simulator (one instance of each op)."""
    mc = Machine(chip, calibration(chip.family))
    ops = []
    for op in graph.ops:
        activations = op.bytes - op.weight_bytes
        record, _, _ = simulate_op(mc, op, resident=mc.resident(activations))
        ops.append(record)
    return make_result(graph, chip, mc, tuple(ops), engine="cycle")
