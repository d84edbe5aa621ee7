"""The chip's instruction set: dataclasses and a one-instruction-a-line text assembly.

A program declares buffers (tensors in HBM, scratchpads in a core's SRAM) and a list of
instructions. Each instruction runs on one engine of one core (its DMA engine, one of its matrix
units' weight-load ports or arrays, its vector unit or its EUP for transcendentals) and may start
once the instructions it names in `deps` have finished; engines run their own instructions in
program order. See docs/isa.md for the semantics and a complete, checked example:

    %0 dma.0 A[0:128,0:256] -> a0[0:128,0:256]
    %2 wload.0.1 b0[0:128,0:128] after %1
    %3 stream.0.1 a0[0:128,0:128] -> acc0[0:128,0:128] after %0,%2
    %4 vec.0 cast acc0[0:128,0:128] -> c0[0:128,0:128] after %3
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from chipforge.dtypes import nbytes
from chipforge.errors import ChipforgeError

VECTOR_OPS = {  # op: (inputs, FLOPs per element, transcendentals per element)
    "copy": (1, 0, 0),
    "cast": (1, 0, 0),
    "add": (2, 1, 0),
    "mul": (2, 1, 0),
    "max": (2, 1, 0),
    "sub": (2, 1, 0),
    "scale": (1, 1, 0),
    "relu": (1, 1, 0),
    "exp": (1, 1, 1),
    "silu": (1, 4, 1),
    "gelu": (1, 8, 1),
    "rsqrt": (1, 1, 1),
    "rowmax": (1, 1, 0),
    "rowsum": (1, 1, 0),
    "rowscale": (2, 1, 0),
    "rowsub": (2, 1, 0),
    "rmsnorm": (1, 5, 0),
    "silu_mul": (2, 5, 1),
    "recip": (1, 1, 1),
    "fill": (1, 0, 0),  # dst = imm (the source is not read)
    # causal: dst[i, j] = -inf where j > i // imm2 + imm, else src[i, j] (imm2 query rows share
    # a position: the heads of a GQA group packed position-major)
    "mask": (1, 1, 0),
    # small products on the vector unit (multiply and cross-lane add): dst = a @ b^T, a @ b;
    # their FLOPs are 2 x dst elements x the inner dimension
    "dotT": (2, 0, 0),
    "dot": (2, 0, 0),
}


class ProgramError(ChipforgeError):
    """A program that is malformed: unknown buffer, region out of bounds, SRAM overrun."""


@dataclass(frozen=True)
class Buffer:
    name: str
    space: str  # "hbm" or "sram"
    rows: int
    cols: int
    dtype: str
    core: int = 0  # which core's SRAM (ignored for hbm)

    @property
    def nbytes(self) -> float:
        return self.rows * self.cols * nbytes(self.dtype)

    def text(self) -> str:
        where = "hbm" if self.space == "hbm" else f"sram.{self.core}"
        return f"buffer {self.name} {where} {self.rows}x{self.cols} {self.dtype}"


@dataclass(frozen=True)
class Region:
    """A rows x cols window of a buffer starting at (row, col)."""

    buffer: str
    row: int
    col: int
    rows: int
    cols: int

    @property
    def size(self) -> int:
        return self.rows * self.cols

    def text(self) -> str:
        return f"{self.buffer}[{self.row}:{self.row + self.rows},{self.col}:{self.col + self.cols}]"


@dataclass(frozen=True, kw_only=True)
class Instr(ABC):
    id: int
    deps: tuple[int, ...] = ()
    core: int = 0

    @property
    @abstractmethod
    def engine(self) -> str:
        """The engine that executes it: dma.C, mxu.C.U, wload.C.U or vpu.C."""

    @abstractmethod
    def text(self) -> str:
        """The instruction as one line of assembly."""

    def _after(self) -> str:
        return f" after {','.join(f'%{d}' for d in self.deps)}" if self.deps else ""


@dataclass(frozen=True, kw_only=True)
class Dma(Instr):
    """Copy a region between HBM and a core's SRAM (either direction; strided 2-D)."""

    src: Region
    dst: Region

    @property
    def engine(self) -> str:
        return f"dma.{self.core}"

    def text(self) -> str:
        return f"%{self.id} dma.{self.core} {self.src.text()} -> {self.dst.text()}{self._after()}"


@dataclass(frozen=True, kw_only=True)
class LoadWeights(Instr):
    """Shift a weight tile (at most rows x cols of the array) from SRAM into a matrix unit."""

    unit: int
    src: Region
    transpose: bool = False  # load src^T (keys for Q K^T are stored row per key)

    @property
    def engine(self) -> str:
        return f"wload.{self.core}.{self.unit}"

    def text(self) -> str:
        t = "^T" if self.transpose else ""
        return f"%{self.id} wload.{self.core}.{self.unit} {self.src.text()}{t}{self._after()}"


@dataclass(frozen=True, kw_only=True)
class Stream(Instr):
    """Stream input rows through the loaded weights: dst (+)= src @ W (fp32/int32 partials)."""

    unit: int
    src: Region
    dst: Region
    accumulate: bool = False

    @property
    def engine(self) -> str:
        return f"mxu.{self.core}.{self.unit}"

    def text(self) -> str:
        acc = " +=" if self.accumulate else ""
        return (
            f"%{self.id} stream.{self.core}.{self.unit} {self.src.text()} -> "
            f"{self.dst.text()}{acc}{self._after()}"
        )


@dataclass(frozen=True, kw_only=True)
class OsTile(Instr):
    """Output-stationary: dst (+)= a @ b for one output tile of at most the array's rows x
    cols, with a's rows and b's columns streaming in over K (no weight load)."""

    unit: int
    a: Region
    b: Region
    dst: Region
    accumulate: bool = False

    @property
    def engine(self) -> str:
        return f"mxu.{self.core}.{self.unit}"

    def text(self) -> str:
        acc = " +=" if self.accumulate else ""
        return (
            f"%{self.id} ostile.{self.core}.{self.unit} {self.a.text()} * {self.b.text()} -> "
            f"{self.dst.text()}{acc}{self._after()}"
        )


@dataclass(frozen=True, kw_only=True)
class Vector(Instr):
    """An elementwise or row-wise op on the vector unit, SRAM to SRAM."""

    op: str
    dst: Region
    srcs: tuple[Region, ...]
    imm: float | None = None
    imm2: float | None = None

    @property
    def engine(self) -> str:
        """Transcendental ops issue to the core's EUP, the rest to its VPU (they overlap)."""
        return f"eup.{self.core}" if VECTOR_OPS[self.op][2] else f"vpu.{self.core}"

    def text(self) -> str:
        imm = f" #{self.imm!r}" if self.imm is not None else ""
        imm += f" #{self.imm2!r}" if self.imm2 is not None else ""
        srcs = ", ".join(r.text() for r in self.srcs)
        return (
            f"%{self.id} vec.{self.core} {self.op} {srcs} -> {self.dst.text()}{imm}{self._after()}"
        )


@dataclass
class Program:
    """Buffers and instructions for one op instance; `repeat` instances run back to back.

    `setup` places data that an earlier op left in SRAM (activations kept on chip) and
    `teardown` copies out what the next op would find there: the functional simulator runs
    them before and after, the timing simulator does not count them."""

    name: str
    buffers: dict[str, Buffer] = field(default_factory=dict)
    instrs: list[Instr] = field(default_factory=list)
    repeat: int = 1
    setup: list[Instr] = field(default_factory=list)
    teardown: list[Instr] = field(default_factory=list)

    def buffer(
        self, name: str, space: str, rows: int, cols: int, dtype: str, core: int = 0
    ) -> Buffer:
        buf = Buffer(name, space, rows, cols, dtype, core)
        self.buffers[name] = buf
        return buf

    def emit(self, cls: type[Instr], **fields) -> int:
        """Append an instruction; returns its id."""
        instr = cls(id=len(self.instrs), **fields)
        self.instrs.append(instr)
        return instr.id

    def setup_dma(self, src: Region, dst: Region, core: int) -> None:
        self.setup.append(Dma(id=-1 - len(self.setup), core=core, src=src, dst=dst))

    def teardown_dma(self, src: Region, dst: Region, core: int) -> None:
        self.teardown.append(Dma(id=-1 - len(self.teardown), core=core, src=src, dst=dst))

    def text(self) -> str:
        head = [f"; {self.name}" + (f" x{self.repeat}" if self.repeat > 1 else "")]
        setup = [f"setup {i.text().split(' ', 1)[1]}" for i in self.setup]
        setup += [f"teardown {i.text().split(' ', 1)[1]}" for i in self.teardown]
        return (
            "\n".join(
                head
                + [b.text() for b in self.buffers.values()]
                + setup
                + [i.text() for i in self.instrs]
            )
            + "\n"
        )

    def sram_bytes(self, core: int) -> float:
        return sum(b.nbytes for b in self.buffers.values() if b.space == "sram" and b.core == core)


# ---------------------------------------------------------------------------------------------
# Parsing the text form back (round trip: parse(p.text()).text() == p.text()).

_REGION = r"([\w.]+)\[(\d+):(\d+),(\d+):(\d+)\]"
_AFTER = r"(?: after ((?:%\d+,?)+))?"
_PATTERNS = {
    "buffer": re.compile(r"^buffer ([\w.]+) (hbm|sram\.(\d+)) (\d+)x(\d+) (\w+)$"),
    "dma": re.compile(rf"^%(\d+) dma\.(\d+) {_REGION} -> {_REGION}{_AFTER}$"),
    "wload": re.compile(rf"^%(\d+) wload\.(\d+)\.(\d+) {_REGION}(\^T)?{_AFTER}$"),
    "stream": re.compile(rf"^%(\d+) stream\.(\d+)\.(\d+) {_REGION} -> {_REGION}( \+=)?{_AFTER}$"),
    "ostile": re.compile(
        rf"^%(\d+) ostile\.(\d+)\.(\d+) {_REGION} \* {_REGION} -> {_REGION}( \+=)?{_AFTER}$"
    ),
    "vec": re.compile(
        rf"^%(\d+) vec\.(\d+) (\w+) (.+?) -> {_REGION}(?: #(\S+))?(?: #(\S+))?{_AFTER}$"
    ),
}


def _region(groups: tuple[str, ...]) -> Region:
    name, r0, r1, c0, c1 = groups
    return Region(name, int(r0), int(c0), int(r1) - int(r0), int(c1) - int(c0))


def _deps(text: str | None) -> tuple[int, ...]:
    return tuple(int(d) for d in text.replace("%", "").split(",") if d) if text else ()


def _parse_instr(line: str) -> Instr:
    words = line.split()
    kind = words[1].split(".")[0] if len(words) > 1 else ""
    match = _PATTERNS[kind].match(line) if kind in _PATTERNS and kind != "buffer" else None
    if not match:
        raise ProgramError(f"assembly line must be an instruction, not {line!r}")
    g = match.groups()
    if kind == "dma":
        return Dma(
            id=int(g[0]),
            core=int(g[1]),
            src=_region(g[2:7]),
            dst=_region(g[7:12]),
            deps=_deps(g[12]),
        )
    if kind == "wload":
        return LoadWeights(
            id=int(g[0]),
            core=int(g[1]),
            unit=int(g[2]),
            src=_region(g[3:8]),
            transpose=bool(g[8]),
            deps=_deps(g[9]),
        )
    if kind == "stream":
        return Stream(
            id=int(g[0]),
            core=int(g[1]),
            unit=int(g[2]),
            src=_region(g[3:8]),
            dst=_region(g[8:13]),
            accumulate=bool(g[13]),
            deps=_deps(g[14]),
        )
    if kind == "ostile":
        return OsTile(
            id=int(g[0]),
            core=int(g[1]),
            unit=int(g[2]),
            a=_region(g[3:8]),
            b=_region(g[8:13]),
            dst=_region(g[13:18]),
            accumulate=bool(g[18]),
            deps=_deps(g[19]),
        )
    srcs = tuple(_region(re.match(_REGION, s.strip()).groups()) for s in g[3].split(", "))
    return Vector(
        id=int(g[0]),
        core=int(g[1]),
        op=g[2],
        srcs=srcs,
        dst=_region(g[4:9]),
        imm=float(g[9]) if g[9] else None,
        imm2=float(g[10]) if g[10] else None,
        deps=_deps(g[11]),
    )


def parse(text: str) -> Program:
    """A program from its text form."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    name, repeat = "program", 1
    if lines and lines[0].startswith(";"):
        head = lines.pop(0)[1:].strip()
        found = re.match(r"^(.*) x(\d+)$", head)
        name, repeat = (found.group(1), int(found.group(2))) if found else (head, 1)
    program = Program(name=name, repeat=repeat)
    for line in lines:
        if line.startswith("setup "):
            dma = _parse_instr(f"%0 {line.removeprefix('setup ')}")
            program.setup_dma(dma.src, dma.dst, dma.core)
        elif line.startswith("teardown "):
            dma = _parse_instr(f"%0 {line.removeprefix('teardown ')}")
            program.teardown_dma(dma.src, dma.dst, dma.core)
        elif line.startswith("buffer"):
            m = _PATTERNS["buffer"].match(line)
            if not m:
                raise ProgramError(
                    f"buffer line must be 'buffer NAME hbm|sram.C RxC DTYPE', not {line!r}"
                )
            name_, where, core, rows, cols, dtype = m.groups()
            program.buffer(
                name_,
                "hbm" if where == "hbm" else "sram",
                int(rows),
                int(cols),
                dtype,
                int(core or 0),
            )
        else:
            program.instrs.append(_parse_instr(line))
    return program


def parse_all(text: str) -> list[Program]:
    """Every program of an assembly file (each starts with its '; name' line)."""
    chunks: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith(";") or not chunks:
            chunks.append([])
        chunks[-1].append(line)
    return [parse("\n".join(chunk)) for chunk in chunks if any(s.strip() for s in chunk)]


def text_all(programs: list[Program]) -> str:
    """Programs as one assembly file, a blank line between them."""
    return "\n".join(p.text() for p in programs)
