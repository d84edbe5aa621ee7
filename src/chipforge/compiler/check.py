"""Checks that a program is well formed (`check_structure`) and fits a chip (`check_program`).

Each failure is a `ProgramError` of one line: the instruction (`%12 dma.0`), what must hold, what
was found instead, and the fix. The functional simulator runs `check_structure` first, so a bad
program is an error, never a numpy crash halfway through.
"""

from __future__ import annotations

from chipforge.compiler.isa import (
    VECTOR_OPS,
    Buffer,
    Dma,
    Instr,
    LoadWeights,
    OsTile,
    Program,
    ProgramError,
    Region,
    Stream,
    Vector,
)
from chipforge.compiler.tiling import core_sram
from chipforge.dtypes import BYTES
from chipforge.errors import did_you_mean
from chipforge.spec import ChipSpec
from chipforge.units import fmt

_IMM_OPS = ("scale", "fill", "mask")  # vector ops that need an immediate


def _where(i: Instr) -> str:
    mnemonic = i.text().split()[1]  # dma.0, wload.0.1, stream.0.1, vec.0
    return f"%{i.id} {mnemonic}" if i.id >= 0 else f"setup {mnemonic}"


def _fail(i: Instr, message: str) -> None:
    raise ProgramError(f"{_where(i)}: {message}")


def _shape(rows: int, cols: int) -> str:
    return f"{rows}x{cols}"


def _bytes(buf: Buffer) -> float:
    return buf.rows * buf.cols * BYTES[buf.dtype]


def _accumulator(dtype: str) -> str:
    return "int32" if dtype.startswith("int") else "fp32"


def _weight_shape(w: LoadWeights) -> tuple[int, int]:
    """Rows (the K side) and columns of the tile a LoadWeights puts in the array."""
    transposed = getattr(w, "transpose", False)
    return (w.src.cols, w.src.rows) if transposed else (w.src.rows, w.src.cols)


def _regions(i: Instr) -> tuple[Region, ...]:
    if isinstance(i, Vector):
        return (*i.srcs, i.dst)
    if isinstance(i, OsTile):
        return (i.a, i.b, i.dst)
    return tuple(r for r in (getattr(i, "src", None), getattr(i, "dst", None)) if r is not None)


def _check_buffer(b: Buffer) -> None:
    known = list(BYTES)
    if b.dtype not in known:
        raise ProgramError(
            f"buffer `{b.name}`: dtype must be one of {', '.join(known)}, "
            f"not {b.dtype!r}{did_you_mean(b.dtype, known)}"
        )
    if b.space not in ("hbm", "sram") or b.rows < 1 or b.cols < 1:
        raise ProgramError(
            f"buffer `{b.name}` must be in hbm or sram with at least one row and "
            f"column, not {b.space} {_shape(b.rows, b.cols)}: fix its declaration"
        )


def _check_region(program: Program, i: Instr, r: Region) -> None:
    buf = program.buffers.get(r.buffer)
    if buf is None:
        _fail(
            i,
            f"`{r.buffer}` must be a declared buffer{did_you_mean(r.buffer, program.buffers)}"
            f": add a `buffer {r.buffer} ...` line",
        )
    if r.rows < 1 or r.cols < 1:
        _fail(i, f"`{r.text()}` must have at least one row and one column: fix the region")
    if r.row < 0 or r.col < 0 or r.row + r.rows > buf.rows or r.col + r.cols > buf.cols:
        _fail(
            i,
            f"`{r.text()}` must lie inside {buf.name} ({_shape(buf.rows, buf.cols)}): "
            "shrink the region or enlarge the buffer",
        )


def _check_in_core_sram(program: Program, i: Instr, r: Region) -> None:
    buf = program.buffers[r.buffer]
    if buf.space != "sram" or buf.core != i.core:
        where = "hbm" if buf.space == "hbm" else f"core {buf.core}'s SRAM"
        _fail(i, f"`{r.buffer}` must be in core {i.core}'s SRAM, not {where}: DMA it there first")


def _check_dma(program: Program, i: Dma) -> None:
    src, dst = program.buffers[i.src.buffer], program.buffers[i.dst.buffer]
    if (i.src.rows, i.src.cols) != (i.dst.rows, i.dst.cols):
        _fail(
            i,
            f"the destination must have the source's shape {_shape(i.src.rows, i.src.cols)}"
            f", not {_shape(i.dst.rows, i.dst.cols)}: make both regions the same size",
        )
    if {src.space, dst.space} != {"hbm", "sram"}:
        _fail(
            i,
            f"a DMA must copy between hbm and sram, not {src.space} -> {dst.space}: "
            "copy through an hbm buffer",
        )
    sram = src if src.space == "sram" else dst
    if sram.core != i.core:
        _fail(
            i,
            f"the DMA must run on dma.{sram.core} (`{sram.name}` is core {sram.core}'s "
            f"SRAM), not dma.{i.core}: issue it on core {sram.core}",
        )
    if src.dtype != dst.dtype:
        _fail(
            i,
            f"the destination's dtype must be the source's {src.dtype}, not {dst.dtype}: "
            "convert with a vec cast in SRAM",
        )


def _check_stream(program: Program, i: Stream, w: LoadWeights | None) -> None:
    for r in (i.src, i.dst):
        _check_in_core_sram(program, i, r)
    if w is None:
        _fail(
            i,
            f"unit {i.unit} must have weights loaded before a stream: emit a "
            f"wload.{i.core}.{i.unit} first",
        )
    w_rows, w_cols = _weight_shape(w)
    if i.src.cols != w_rows:
        _fail(
            i,
            f"the source must have as many columns as the weights (%{w.id}) have rows, "
            f"{w_rows}, not {i.src.cols}: load a matching weight tile",
        )
    if (i.dst.rows, i.dst.cols) != (i.src.rows, w_cols):
        _fail(
            i,
            f"the destination must be {_shape(i.src.rows, w_cols)} (source rows x "
            f"weight columns), not {_shape(i.dst.rows, i.dst.cols)}: resize it",
        )
    a, b, acc = (program.buffers[r.buffer].dtype for r in (i.src, w.src, i.dst))
    if a != b:
        _fail(i, f"the source's dtype must be the weights' {b}, not {a}: cast one of them")
    if acc != _accumulator(a):
        _fail(
            i,
            f"the destination must be {_accumulator(a)} (partial sums of {a}), not {acc}: "
            "stream into an accumulator buffer and cast it after",
        )


def _check_vector(program: Program, i: Vector) -> None:
    if i.op not in VECTOR_OPS:
        _fail(
            i,
            f"op must be one of {', '.join(VECTOR_OPS)}, not {i.op!r}"
            f"{did_you_mean(i.op, VECTOR_OPS)}",
        )
    arity = VECTOR_OPS[i.op][0]
    if len(i.srcs) != arity:
        _fail(i, f"{i.op} must have {arity} source(s), not {len(i.srcs)}: list them before ->")
    for r in (*i.srcs, i.dst):
        _check_in_core_sram(program, i, r)
    if i.op in _IMM_OPS and i.imm is None:
        _fail(i, f"{i.op} must have an immediate: append #VALUE")
    want, dst = _vector_shapes(i)
    got = [(r.rows, r.cols) for r in i.srcs]
    if got != want:
        _fail(
            i,
            f"{i.op}'s sources must be {', '.join(_shape(*s) for s in want)}, not "
            f"{', '.join(_shape(*s) for s in got)}: fix the regions",
        )
    if (i.dst.rows, i.dst.cols) != dst:
        _fail(
            i,
            f"{i.op}'s destination must be {_shape(*dst)}, not "
            f"{_shape(i.dst.rows, i.dst.cols)}: fix the region",
        )


def _vector_shapes(i: Vector) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """The source shapes and the destination shape `i.op` needs, given its first source (and,
    for fill and the products, the destination's columns)."""
    rows, cols, out = i.srcs[0].rows, i.srcs[0].cols, i.dst.cols
    if i.op == "fill":  # the source is not read
        return [(rows, cols)], (i.dst.rows, out)
    if i.op in ("rowmax", "rowsum"):
        return [(rows, cols)], (rows, 1)
    if i.op in ("rowscale", "rowsub"):
        return [(rows, cols), (rows, 1)], (rows, cols)
    if i.op == "dot":  # (rows, d) @ (d, out)
        return [(rows, cols), (cols, out)], (rows, out)
    if i.op == "dotT":  # (rows, d) @ (out, d)^T
        return [(rows, cols), (out, cols)], (rows, out)
    return [(rows, cols)] * len(i.srcs), (rows, cols)


def _check_instr(program: Program, i: Instr, weights: dict[tuple[int, int], LoadWeights]) -> None:
    late = [d for d in i.deps if not 0 <= d < i.id]
    if late:
        _fail(
            i,
            f"dependency %{late[0]} must be an earlier instruction (ids are a topological "
            "order): drop it or move that instruction first",
        )
    for r in _regions(i):
        _check_region(program, i, r)
    if isinstance(i, Dma):
        _check_dma(program, i)
    elif isinstance(i, LoadWeights):
        _check_in_core_sram(program, i, i.src)
        weights[(i.core, i.unit)] = i
    elif isinstance(i, Stream):
        _check_stream(program, i, weights.get((i.core, i.unit)))
    elif isinstance(i, OsTile):
        _check_os_tile(program, i)
    elif isinstance(i, Vector):
        _check_vector(program, i)


def _check_os_tile(program: Program, i: OsTile) -> None:
    for r in (i.a, i.b, i.dst):
        _check_in_core_sram(program, i, r)
    if i.a.cols != i.b.rows or (i.dst.rows, i.dst.cols) != (i.a.rows, i.b.cols):
        _fail(
            i,
            f"the product must be ({_shape(i.a.rows, i.a.cols)}) @ "
            f"({_shape(i.b.rows, i.b.cols)}) -> {_shape(i.a.rows, i.b.cols)}, not into "
            f"{_shape(i.dst.rows, i.dst.cols)}: match the tiles",
        )
    a, b, acc = (program.buffers[r.buffer].dtype for r in (i.a, i.b, i.dst))
    if a != b or acc != _accumulator(a):
        _fail(
            i,
            f"inputs must share a dtype and accumulate in {_accumulator(a)}, not {a}, "
            f"{b} -> {acc}: cast them",
        )


def check_structure(program: Program) -> None:
    """Raise `ProgramError` unless every buffer, region and instruction of `program` is well
    formed on its own terms (no chip needed)."""
    for buf in program.buffers.values():
        _check_buffer(buf)
    for i in program.setup:
        if not isinstance(i, Dma):
            _fail(i, f"setup must hold only DMAs, not {type(i).__name__}: move it to the body")
        for r in _regions(i):
            _check_region(program, i, r)
        _check_dma(program, i)
    weights: dict[tuple[int, int], LoadWeights] = {}
    for position, i in enumerate(program.instrs):
        if i.id != position:
            raise ProgramError(
                f"instruction ids must count 0, 1, 2, ... in program order, not "
                f"%{i.id} at position {position}: renumber the instructions"
            )
        _check_instr(program, i, weights)


def _check_on_chip(chip: ChipSpec, i: Instr) -> None:
    if not 0 <= i.core < chip.cores:
        _fail(
            i,
            f"core must be below {chip.cores} ({chip.name}'s cores), not {i.core}: "
            "spread the work over the chip's cores",
        )
    unit = getattr(i, "unit", 0)
    if not 0 <= unit < chip.matrix.count:
        _fail(
            i,
            f"unit must be below {chip.matrix.count} ({chip.name}'s matrix units per core), "
            f"not {unit}: deal the chains over the units it has",
        )


def _check_fits(program: Program, chip: ChipSpec, i: Instr) -> None:
    rows, cols = chip.matrix.rows, chip.matrix.cols
    if isinstance(i, LoadWeights):
        w_rows, w_cols = _weight_shape(i)
        if w_rows > rows or w_cols > cols:
            _fail(
                i,
                f"the weight tile must be at most {_shape(rows, cols)} ({chip.name}'s "
                f"array), not {_shape(w_rows, w_cols)}: split it into array-sized tiles",
            )
    if isinstance(i, OsTile) and (i.dst.rows > rows or i.dst.cols > cols):
        _fail(
            i,
            f"the output tile must be at most {_shape(rows, cols)} ({chip.name}'s array), "
            f"not {_shape(i.dst.rows, i.dst.cols)}: split it into array-sized tiles",
        )
    if isinstance(i, (Stream, OsTile)):
        dtype = program.buffers[(i.src if isinstance(i, Stream) else i.a).buffer].dtype
        if dtype not in chip.matrix.dtypes:
            _fail(
                i,
                f"the input dtype must be one of {', '.join(chip.matrix.dtypes)} on "
                f"{chip.name}'s matrix unit, not {dtype}: cast the inputs to one of those",
            )


def check_program(program: Program, chip: ChipSpec) -> None:
    """Raise `ProgramError` unless `program` is well formed and runs on `chip`: cores, units,
    weight tiles within the array, input dtypes the matrix unit multiplies, SRAM per core."""
    check_structure(program)
    for i in [*program.setup, *program.instrs]:
        _check_on_chip(chip, i)
        _check_fits(program, chip, i)
    capacity = core_sram(chip)
    need: dict[int, float] = {}
    for buf in program.buffers.values():
        if buf.space == "sram":
            need[buf.core] = need.get(buf.core, 0.0) + _bytes(buf)
    for core, sram_bytes in sorted(need.items()):
        if core >= chip.cores:
            raise ProgramError(
                f"buffer core must be below {chip.cores} ({chip.name}'s cores), "
                f"not {core}: place the buffers on the chip's cores"
            )
        if sram_bytes > capacity:
            raise ProgramError(
                f"core {core} needs {fmt(sram_bytes, 'bytes', binary=True)} of "
                f"SRAM, {chip.name} has {fmt(capacity, 'bytes', binary=True)} "
                "per core: use smaller tiles"
            )
