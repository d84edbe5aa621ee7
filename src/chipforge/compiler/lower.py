"""Lowering the remaining ops, and a graph to one program per op.

Vector ops stream their operands through SRAM in row chunks (three in flight per core): DMA in,
one vector instruction, DMA out. An embedding gathers its rows through SRAM. Activations that
the analytical engine keeps on chip (`holds_activations`) are placed by setup DMAs instead of
costed ones.
"""

from __future__ import annotations

import math

from chipforge.compiler.attention import lower_attention, use_vector_unit
from chipforge.compiler.isa import VECTOR_OPS, Dma, Program, Region, Vector
from chipforge.compiler.matmul import lower_matmul
from chipforge.compiler.tiling import core_sram
from chipforge.dtypes import nbytes
from chipforge.errors import ChipforgeError
from chipforge.spec import ChipSpec
from chipforge.workload import Graph
from chipforge.workload.ops import Attention, Collective, Conv2d, Embedding, MatMul, Op
from chipforge.workload.ops import Vector as VectorOp

ROW = 1024  # elements per SRAM row when a vector op's tensor is laid out in 2-D
# IR vector op (by name) -> ISA op with the closest cost per element (compiler/isa.py)
VECTOR_NAMES = (
    ("norm", "rmsnorm"),
    ("residual", "add"),
    ("adam", "rsqrt"),
    ("rope", "mul"),
    ("topk", "max"),
)


class CompileError(ChipforgeError):
    """An op the compiler cannot lower for this chip."""


def isa_vector_op(op: VectorOp) -> str:
    if "act" in op.name:
        return "silu_mul" if op.bytes_per_element >= 3 * nbytes(op.dtype) else "gelu"
    for key, isa_op in VECTOR_NAMES:
        if key in op.name:
            return isa_op
    return "scale"


def lower_vector(prog: Program, op: VectorOp, chip: ChipSpec, *, resident: bool) -> None:
    """Elementwise work in row chunks split over cores; reads and writes as the op's bytes."""
    e = nbytes(op.dtype)
    tensors = max(2, round(op.bytes_per_element / e))
    inputs = tensors - 1
    rows = max(1, math.ceil(op.elements / ROW))
    names = [
        prog.buffer(f"{op.name}.in{i}", "hbm", rows, ROW, op.dtype).name for i in range(inputs)
    ]
    out = prog.buffer(f"{op.name}.out", "hbm", rows, ROW, op.dtype).name
    chunk = max(
        1, min(math.ceil(rows / chip.cores), int(core_sram(chip) / 2 / (3 * tensors * ROW * e)))
    )
    isa_op = isa_vector_op(op)
    for core in range(chip.cores):
        per_core = range(
            core * math.ceil(rows / chip.cores),
            min(rows, (core + 1) * math.ceil(rows / chip.cores)),
            chunk,
        )
        readers: dict[int, list[int]] = {0: [], 1: [], 2: []}
        for i, r0 in enumerate(per_core):
            n = min(chunk, rows - r0, (core + 1) * math.ceil(rows / chip.cores) - r0)
            slot = i % 3
            local = [
                prog.buffer(
                    f"{op.name}.{core}.t{j}s{slot}", "sram", chunk, ROW, op.dtype, core
                ).name
                for j in range(tensors)
            ]
            free = tuple(readers[slot])
            loads = []
            for j, name in enumerate(names):
                src, dst = Region(name, r0, 0, n, ROW), Region(local[j], 0, 0, n, ROW)
                if resident and not op.param_state:
                    prog.setup_dma(src, dst, core)
                else:
                    loads.append(prog.emit(Dma, core=core, src=src, dst=dst, deps=free))
            arity = VECTOR_OPS[isa_op][0]  # the op's operands, from the inputs streamed in
            srcs = tuple(Region(local[j % inputs], 0, 0, n, ROW) for j in range(arity))
            res = Region(local[-1], 0, 0, n, ROW)
            v = prog.emit(
                Vector,
                core=core,
                op=isa_op,
                dst=res,
                srcs=srcs,
                deps=tuple(loads),
                imm=1.0 if isa_op == "scale" else None,
            )
            readers[slot] = [v]
            if not resident or op.param_state:
                readers[slot].append(
                    prog.emit(Dma, core=core, src=res, dst=Region(out, r0, 0, n, ROW), deps=(v,))
                )


def lower_embedding(prog: Program, op: Embedding, chip: ChipSpec) -> None:
    """Gather token rows: table rows into SRAM, then out to the activation tensor."""
    table = prog.buffer(f"{op.name}.table", "hbm", op.vocab, op.hidden, op.dtype).name
    out = prog.buffer(f"{op.name}.out", "hbm", op.tokens, op.hidden, op.dtype).name
    per_core = math.ceil(op.tokens / chip.cores)
    for core in range(chip.cores):
        t0, t1 = core * per_core, min(op.tokens, (core + 1) * per_core)
        if t0 >= t1:
            continue
        buf = prog.buffer(f"{op.name}.{core}.rows", "sram", t1 - t0, op.hidden, op.dtype, core).name
        # token ids are data: the rows gathered are modelled as the first ones of the table
        load = prog.emit(
            Dma,
            core=core,
            src=Region(table, t0 % op.vocab, 0, t1 - t0, op.hidden),
            dst=Region(buf, 0, 0, t1 - t0, op.hidden),
        )
        prog.emit(
            Dma,
            core=core,
            src=Region(buf, 0, 0, t1 - t0, op.hidden),
            dst=Region(out, t0, 0, t1 - t0, op.hidden),
            deps=(load,),
        )


def check_compilable(op: Op, chip: ChipSpec) -> None:
    """The errors `compile_op` raises before lowering anything (a GPU, a missing dtype)."""
    if chip.matrix.dataflow == "tensor-core":
        raise CompileError(
            f"chip {chip.name} is a GPU (tensor-core dataflow): the compiler "
            "targets systolic scratchpad chips; use the analytical engine"
        )
    if isinstance(op, Attention) and op.window:
        raise CompileError(
            f"{op.name}: the compiler lowers full and causal attention, not a sliding window "
            f"or chunks ({op.window} keys); cost it with --engine analytical"
        )
    if isinstance(op, MatMul) and op.b_dtype != op.dtype:  # its B buffer would be op.dtype's
        raise CompileError(
            f"{op.name}: the compiler lowers the weight in its product's dtype, not weight-only "
            f"quantization (weight_dtype {op.weight_dtype} widened to {op.dtype}); cost it with "
            "--engine analytical"
        )
    matrix_work = isinstance(op, (MatMul, Conv2d, Attention))
    if matrix_work and op.dtype not in chip.matrix.macs_per_cycle:
        raise CompileError(
            f"chip {chip.name}'s matrix unit has no {op.dtype}: use one of "
            f"{', '.join(chip.matrix.macs_per_cycle)} (workload dtype=...)"
        )


def compile_op(op: Op, chip: ChipSpec, *, resident: bool = False) -> Program | None:
    """One instance of `op` as a program (None for collectives: they run on the links, costed
    by the analytical alpha-beta model)."""
    check_compilable(op, chip)
    prog = Program(name=op.name, repeat=op.count)
    if isinstance(op, Conv2d):
        op = op.as_matmul()
    if isinstance(op, MatMul):
        lower_matmul(prog, op, chip, resident=resident and op.weight)
    elif isinstance(op, Attention) and op.backward:
        raise CompileError(
            f"{op.name}: the compiler lowers attention's forward pass only; "
            "cost training graphs with --engine analytical"
        )
    elif isinstance(op, Attention):
        lower_attention(prog, op, chip, vector=use_vector_unit(op, chip))
    elif isinstance(op, VectorOp):
        lower_vector(prog, op, chip, resident=resident)
    elif isinstance(op, Embedding):
        lower_embedding(prog, op, chip)
    elif isinstance(op, Collective):
        return None
    else:
        raise CompileError(f"the compiler has no lowering for {type(op).__name__} ops")
    return prog


def compile_graph(
    graph: Graph, chip: ChipSpec, *, resident=lambda op: False
) -> list[tuple[Op, Program | None]]:
    """Each op of `graph` with its program (one instance; `program.repeat` = op.count)."""
    return [(op, compile_op(op, chip, resident=resident(op))) for op in graph.ops]
