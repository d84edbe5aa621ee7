"""The functional simulator: a program run on real numbers with numpy.

It is the living definition of what each instruction computes (docs/isa.md): slow and plain,
the reference the compiler and the timing simulator are tested against. Memory is one numpy
array per buffer; the matrix units multiply int8 x int8 into int32 exactly, and narrow floats
(bf16, fp16, fp8) exactly into fp32 sums; the vector unit computes in fp32 and rounds once, to
nearest even, into its destination's format (ml_dtypes for bf16 and fp8).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import ml_dtypes
import numpy as np

from chipforge.compiler.check import check_structure
from chipforge.compiler.isa import (
    Dma,
    Instr,
    LoadWeights,
    OsTile,
    Program,
    ProgramError,
    Region,
    Stream,
)
from chipforge.compiler.isa import Vector as VectorInstr

# chipforge dtype name -> numpy dtype (tf32 is stored as fp32; fp8 is OCP e4m3, no infinities)
_DTYPES: dict[str, np.dtype] = {
    "fp64": np.dtype(np.float64),
    "fp32": np.dtype(np.float32),
    "tf32": np.dtype(np.float32),
    "bf16": np.dtype(ml_dtypes.bfloat16),
    "fp16": np.dtype(np.float16),
    "fp8": np.dtype(ml_dtypes.float8_e4m3fn),
    "fp4": np.dtype(ml_dtypes.float4_e2m1fn),
    "int8": np.dtype(np.int8),
    "int4": np.dtype(ml_dtypes.int4),
    "int32": np.dtype(np.int32),
}


def dtype_of(name: str) -> np.dtype:
    """The numpy dtype that holds chipforge dtype `name` ("bf16" -> ml_dtypes.bfloat16)."""
    if name not in _DTYPES:
        raise ProgramError(f"dtype must be one of {', '.join(_DTYPES)}, not {name!r}")
    return _DTYPES[name]


def _is_int(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.integer) or dtype == np.dtype(ml_dtypes.int4)


def _to_fp32_odd(x: np.ndarray) -> np.ndarray:
    """float64 -> float32 rounded to odd: a second rounding to any format at least two bits
    narrower is then correctly rounded (Boldo & Melquiond, "When double rounding is odd")."""
    y = x.astype(np.float32)
    inexact = y.astype(np.float64) != x
    even = (y.view(np.uint32) & 1) == 0
    fix = inexact & even & np.isfinite(y)
    toward = np.where(x[fix] > y[fix], np.float32(np.inf), np.float32(-np.inf))
    y[fix] = np.nextafter(y[fix], toward)
    return y


def convert(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`values` in `dtype`, rounded once to nearest even; integers saturate at their range."""
    x = np.asarray(values)
    if x.dtype == dtype:
        return x.copy()
    wide = x.astype(np.float64)  # exact for every format the chip holds (int32, fp32 and down)
    if _is_int(dtype):
        info = ml_dtypes.iinfo(dtype)
        return np.clip(np.rint(wide), info.min, info.max).astype(dtype)
    if dtype.itemsize >= 4:
        return wide.astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        return _to_fp32_odd(wide).astype(dtype)


def _normal(rng: np.random.Generator, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    if _is_int(dtype):
        info = ml_dtypes.iinfo(dtype)
        low, high = max(info.min, -1024), min(info.max, 1024)  # int32: sums of int8 products
        return rng.integers(low, high, size=shape, endpoint=True).astype(dtype)
    return convert(rng.standard_normal(shape), dtype)


def random_inputs(program: Program, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random contents for every HBM buffer: integers over their range (int32 in +-1024),
    floats ~ N(0, 1) rounded to the buffer's format."""
    return {
        b.name: _normal(rng, (b.rows, b.cols), dtype_of(b.dtype))
        for b in program.buffers.values()
        if b.space == "hbm"
    }


class _Machine:
    """Memory, loaded weight tiles and the semantics of each instruction."""

    def __init__(self, program: Program, inputs: dict[str, np.ndarray]):
        self.mem = {
            b.name: np.zeros((b.rows, b.cols), dtype_of(b.dtype)) for b in program.buffers.values()
        }
        for name, values in inputs.items():
            self._place(program, name, values)
        self.bound, self.uses = _bind_weights(program.instrs)
        self.loaded: dict[int, np.ndarray] = {}  # LoadWeights id -> the tile it loaded

    def _place(self, program: Program, name: str, values: np.ndarray) -> None:
        buf = program.buffers.get(name)
        if buf is None or buf.space != "hbm":
            raise ProgramError(f"input `{name}` must name an hbm buffer of {program.name}")
        if np.shape(values) != (buf.rows, buf.cols):
            raise ProgramError(
                f"input `{name}` must be {buf.rows}x{buf.cols}, "
                f"not {'x'.join(map(str, np.shape(values)))}"
            )
        self.mem[name] = convert(values, self.mem[name].dtype)

    def view(self, r: Region) -> np.ndarray:
        return self.mem[r.buffer][r.row : r.row + r.rows, r.col : r.col + r.cols]

    def run(self, instr: Instr) -> None:
        _SEMANTICS[type(instr)](self, instr)

    def dma(self, i: Dma) -> None:
        self.view(i.dst)[...] = self.view(i.src)

    def load_weights(self, i: LoadWeights) -> None:
        tile = self.view(i.src)
        self.loaded[i.id] = (tile.T if getattr(i, "transpose", False) else tile).copy()

    def stream(self, i: Stream) -> None:
        wid = self.bound[i.id]
        w, a, dst = self.loaded[wid], self.view(i.src), self.view(i.dst)
        self.uses[wid] -= 1
        if not self.uses[wid]:
            del self.loaded[wid]
        part = _fold(a, w)
        with np.errstate(over="ignore"):
            dst[...] = dst + part if i.accumulate else part

    def os_tile(self, i: OsTile) -> None:
        dst, part = self.view(i.dst), _fold(self.view(i.a), self.view(i.b))
        with np.errstate(over="ignore"):
            dst[...] = dst + part if i.accumulate else part

    def vector(self, i: VectorInstr) -> None:
        dst, srcs = self.view(i.dst), [self.view(r) for r in i.srcs]
        if i.op in ("cast", "copy"):  # one rounding from the source's exact value
            dst[...] = convert(srcs[0], dst.dtype)
        elif i.op in INTEGER_OPS and all(_is_int(x.dtype) for x in (*srcs, dst)):
            dst[...] = convert(INTEGER_OPS[i.op](*(x.astype(np.int64) for x in srcs)), dst.dtype)
        else:
            assert i.op in VECTOR_SEMANTICS, f"vector op {i.op} needs a VECTOR_SEMANTICS entry"
            args = [x.astype(np.float32) for x in srcs]
            imm = (i.imm, getattr(i, "imm2", None))
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                result = np.asarray(VECTOR_SEMANTICS[i.op](*args, imm=imm), np.float32)
            dst[...] = convert(np.broadcast_to(result, dst.shape), dst.dtype)


def _fold(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """a @ w as the weight-stationary array sums it: each column's partial sum enters the top
    row at zero and gains one product per row, in increasing K, in fp32 (int32 for integers)."""
    if _is_int(a.dtype):  # exact products and sums; int32 wraps as the hardware's adders do
        return (a.astype(np.int64) @ w.astype(np.int64)).astype(np.int32)
    a32, w32 = a.astype(np.float32), w.astype(np.float32)  # (rows, K), (K, cols)
    part = np.zeros((a.shape[0], w.shape[1]), np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(a.shape[1]):  # products of bf16/fp8/fp16 values are exact in fp32
            part += a32[:, k : k + 1] * w32[k : k + 1, :]
    return part


def _bind_weights(instrs: Iterable[Instr]) -> tuple[dict[int, int], Counter[int]]:
    """Each Stream's weights: the last LoadWeights on its unit before it in program order."""
    current: dict[tuple[int, int], int] = {}
    bound: dict[int, int] = {}
    for i in instrs:
        if isinstance(i, LoadWeights):
            current[(i.core, i.unit)] = i.id
        elif isinstance(i, Stream):
            bound[i.id] = current[(i.core, i.unit)]
    return bound, Counter(bound.values())


_SEMANTICS: dict[type, Callable] = {
    Dma: _Machine.dma,
    LoadWeights: _Machine.load_weights,
    Stream: _Machine.stream,
    OsTile: _Machine.os_tile,
    VectorInstr: _Machine.vector,
}

_F32 = np.float32
_GELU_C = _F32(np.sqrt(2 / np.pi))  # gelu, tanh form (Hendrycks & Gimpel 2016, eq. in sec. 2)


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (_F32(1) + np.exp(-x))


def _mask(a: np.ndarray, offset: float, rows_per_position: float) -> np.ndarray:
    """Causal mask: -inf where column j > i // rows_per_position + offset (region-local i, j;
    rows_per_position query rows, e.g. a GQA group's heads, share one position)."""
    i, j = np.indices(a.shape)
    return np.where(j > i // rows_per_position + offset, _F32(-np.inf), a)


# op -> fp32 function of its source arrays (row ops: r is rows x 1) and immediates (imm, imm2)
VECTOR_SEMANTICS: dict[str, Callable[..., np.ndarray]] = {
    "add": lambda a, b, imm: a + b,
    "mul": lambda a, b, imm: a * b,
    "sub": lambda a, b, imm: a - b,
    "max": lambda a, b, imm: np.maximum(a, b),
    "scale": lambda a, imm: a * _F32(imm[0]),
    "relu": lambda a, imm: np.maximum(a, _F32(0)),
    "exp": lambda a, imm: np.exp(a),
    "silu": lambda a, imm: _silu(a),
    "gelu": lambda a, imm: _F32(0.5) * a * (1 + np.tanh(_GELU_C * (a + _F32(0.044715) * a**3))),
    "rsqrt": lambda a, imm: _F32(1) / np.sqrt(a),
    "silu_mul": lambda a, b, imm: _silu(a) * b,
    "rowmax": lambda a, imm: a.max(axis=1, keepdims=True),
    "rowsum": lambda a, imm: a.sum(axis=1, keepdims=True, dtype=np.float32),
    "rowscale": lambda a, r, imm: a * r,
    "rowsub": lambda a, r, imm: a - r,
    "rmsnorm": lambda a, imm: a / np.sqrt(np.mean(a * a, axis=1, keepdims=True) + _F32(1e-6)),
    "recip": lambda a, imm: _F32(1) / a,
    "fill": lambda a, imm: _F32(imm[0]),  # the source is not read
    "mask": lambda a, imm: _mask(a, imm[0], imm[1] or 1),
    "dot": lambda a, b, imm: a @ b,  # (rows, d) @ (d, cols), fp32
    "dotT": lambda a, b, imm: a @ b.T,  # (rows, d) @ (cols, d)^T, fp32
}


# integer sources into an integer destination (e.g. summing int32 partial sums of K groups):
# exact, then saturated into the destination
INTEGER_OPS: dict[str, Callable[..., np.ndarray]] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "max": np.maximum,
    "relu": lambda a: np.maximum(a, 0),
}


def _check_order(program: Program, order: list[int]) -> None:
    """`order` must list every id once, after its deps and after its engine's earlier ones."""
    if sorted(order) != list(range(len(program.instrs))):
        raise ProgramError(
            f"order must list each of the {len(program.instrs)} instruction ids once"
        )
    position = {iid: p for p, iid in enumerate(order)}
    last: dict[str, int] = {}
    for i in program.instrs:
        before = [*i.deps, *([last[i.engine]] if i.engine in last else [])]
        late = [d for d in before if position[d] > position[i.id]]
        if late:
            raise ProgramError(f"order must run %{late[0]} before %{i.id}, not after it")
        last[i.engine] = i.id


def run_functional(
    program: Program, inputs: dict[str, np.ndarray], *, order: list[int] | None = None
) -> dict[str, np.ndarray]:
    """Run `program` once (setup first, teardown last) on `inputs` (HBM buffer name -> array;
    missing buffers start at zero) and return every HBM buffer's final contents.

    `order` runs the instructions in another legal schedule (deps and each engine's program
    order respected); a program whose deps cover its data hazards gives the same result."""
    check_structure(program)
    machine = _Machine(program, inputs)
    for instr in program.setup:
        machine.run(instr)
    if order is None:
        order = list(range(len(program.instrs)))
    else:
        _check_order(program, order)
    for iid in order:
        machine.run(program.instrs[iid])
    for instr in program.teardown:
        machine.run(instr)
    return {b.name: machine.mem[b.name] for b in program.buffers.values() if b.space == "hbm"}


def random_order(program: Program, rng: np.random.Generator) -> list[int]:
    """A random legal order: after its deps and after its engine's earlier instructions."""
    waits = {i.id: set(i.deps) for i in program.instrs}
    last: dict[str, int] = {}
    for i in program.instrs:
        if i.engine in last:
            waits[i.id].add(last[i.engine])
        last[i.engine] = i.id
    order, done = [], set()
    ready = [iid for iid, w in waits.items() if not w]
    users: dict[int, list[int]] = {}
    for iid, w in waits.items():
        for d in w:
            users.setdefault(d, []).append(iid)
    while ready:
        iid = ready.pop(int(rng.integers(len(ready))))
        order.append(iid)
        done.add(iid)
        ready += [u for u in users.get(iid, []) if waits[u] <= done and u not in ready]
    return order
