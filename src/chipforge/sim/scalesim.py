"""Our cycle engine on SCALE-Sim's terms: one systolic array, 1-byte words, stall-free
bandwidth, so its compute cycles can be held against SCALE-Sim 3.0's (Samajdar et al., ISPASS
2020; reference runs in tests/data/scalesim3_reference.csv, docs/scalesim.md)."""

from __future__ import annotations

from chipforge.compiler import compile_op
from chipforge.sim.timing import schedule
from chipforge.spec import ChipSpec, load_chip
from chipforge.workload import MatMul

DATAFLOW = {"os": "output-stationary", "ws": "weight-stationary"}


def array_chip(rows: int, cols: int, dataflow: str) -> ChipSpec:
    """A TPU-v1-like chip reduced to one rows x cols int8 array as SCALE-Sim models it: no
    double-buffered weights (the weight load is paid every fold), ample SRAM, and DRAM so fast
    that nothing stalls."""
    base = load_chip("tpu-v1")
    matrix = base.matrix.model_copy(
        update={
            "rows": rows,
            "cols": cols,
            "dataflow": DATAFLOW[dataflow],
            "double_buffered": False,
            "macs_per_cycle": {"int8": rows * cols},
        }
    )
    hbm = base.hbm.model_copy(update={"bandwidth": 1e18})
    sram = base.memory[1].model_copy(update={"capacity": 256 * 2**20})
    return base.model_copy(update={"matrix": matrix, "memory": (hbm, sram, *base.memory[2:])})


def array_cycles(m: int, n: int, k: int, *, rows: int, cols: int, dataflow: str) -> float:
    """Cycles the array is busy for (m x k) @ (k x n): first weight load or operand in to the
    last result out."""
    chip = array_chip(rows, cols, dataflow)
    program = compile_op(MatMul(name="gemm", m=m, n=n, k=k, dtype="int8"), chip)
    return array_span(program, schedule(program, chip))


def array_span(program, tl) -> float:
    """The array's busy span in a scheduled program: first weight load or operand in to the
    last result out (SCALE-Sim's compute cycles; 0 for a program with no matrix work)."""
    return tl.span(i.id for i in program.instrs if i.engine.split(".")[0] in ("mxu", "wload"))
