"""Lowering fused attention: a tiled flash-attention schedule (Dao et al. 2022).

Per query block and KV head: Q is loaded once; for each block of keys, S = Q K^T on a matrix
unit (the key tile loaded transposed as weights), the online softmax on the vector unit
(running max m, normaliser l, rescale of the output), P V on the matrix unit into a fresh
partial that is added to the rescaled output; at the end O / l is cast and stored. Causal
masking skips key blocks wholly after the query block. When a few query rows would starve the
array (decode), both products run on the vector unit instead (`dotT`, `dot`), the same choice
the analytical engine makes.
"""

from __future__ import annotations

import math

from chipforge.compiler.isa import Dma, LoadWeights, Program, Region, Stream, Vector
from chipforge.spec import ChipSpec
from chipforge.workload.ops import Attention


def _key_blocks(op: Attention, q0: int, rows: int, block: int) -> list[tuple[int, int]]:
    """(start, length) of the key blocks that query positions [q0, q0 + rows) attend to."""
    last = op.kv_len if not op.causal else min(op.kv_len, q0 + rows)
    return [(k0, min(block, last - k0)) for k0 in range(0, last, block)]


def use_vector_unit(op: Attention, chip: ChipSpec) -> bool:
    """Whether the products run faster on the vector units than folded over the arrays (each
    fold costs at least the R cycles of its weight load)."""
    R, C = chip.matrix.rows, chip.matrix.cols
    rows = op.heads // op.kv_heads if op.q_len == 1 else op.q_len
    pairs = op.batch * (op.kv_heads if op.q_len == 1 else op.heads)
    folds = math.ceil(op.head_dim / R) * math.ceil(op.kv_len / C) + math.ceil(
        op.kv_len / R
    ) * math.ceil(op.d_v / C)
    matrix_cycles = pairs * folds * max(rows, R) / chip.matrix_units
    vector_cycles = op.flops / (chip.vector.flops_per_cycle * chip.vector.count * chip.cores)
    return vector_cycles < matrix_cycles


def lower_attention(prog: Program, op: Attention, chip: ChipSpec, *, vector: bool) -> None:
    """Append the attention's instructions. The query heads of a GQA group are packed with
    their shared K and V, position-major (row r: position r // group, head r % group), so K
    and V are read once per KV head; KV heads go round-robin over cores and each core keeps
    LANES query blocks in flight."""
    group = op.heads // op.kv_heads
    pairs = op.batch * op.kv_heads
    rows_per_pair = op.q_len * group
    d, dv = op.head_dim, op.d_v
    prog.buffer(f"{op.name}.Q", "hbm", pairs * rows_per_pair, d, op.dtype)
    prog.buffer(f"{op.name}.K", "hbm", pairs * op.kv_len, d, op.dtype)
    prog.buffer(f"{op.name}.V", "hbm", pairs * op.kv_len, dv, op.dtype)
    prog.buffer(f"{op.name}.O", "hbm", pairs * rows_per_pair, dv, op.dtype)
    block_q = min(rows_per_pair, max(group, 4 * chip.matrix.rows // group * group))
    block_k = chip.matrix.rows
    work: list[list[tuple]] = [[] for _ in range(chip.cores)]
    for pair in range(pairs):
        for r0 in range(0, rows_per_pair, block_q):
            rows = min(block_q, rows_per_pair - r0)
            position = op.kv_len - op.q_len + r0 // group  # of the block's first row
            work[pair % chip.cores].append(
                (pair * op.kv_len, pair * rows_per_pair + r0, position, rows)
            )
    for core, items in enumerate(work):
        lanes = [
            _Lane(prog, op, chip, core=core, lane=i, rows=block_q, block_k=block_k, vector=vector)
            for i in range(min(LANES, len(items)))
        ]
        _interleave(lanes, items)


def _interleave(lanes: list, items: list[tuple]) -> None:
    """Emit the query blocks' pipelines side by side, one step per lane in turn, so one
    block's fill and drain overlap another's steady state."""
    queue = list(items)
    while queue or any(lane.busy for lane in lanes):
        for lane in lanes:
            if not lane.busy and queue:
                kv_row, q_row, q0, rows = queue.pop(0)
                lane.begin(kv_row=kv_row, q_row=q_row, q0=q0, rows=rows)
            if lane.busy:
                lane.step()


def _scratch(prog: Program, op: Attention, core: int, lane: int, rows: int, block_k: int) -> dict:
    tag = f"{op.name}.{core}" + (f".l{lane}" if lane else "")
    shapes = {
        "q": (rows, op.head_dim, op.dtype),
        "o": (rows, op.d_v, "fp32"),
        "out": (rows, op.d_v, op.dtype),
        "m": (rows, 1, "fp32"),
        "mnew": (rows, 1, "fp32"),
        "l": (rows, 1, "fp32"),
        "rs": (rows, 1, "fp32"),
    }
    for slot in range(2):  # double-buffered: block i is scored while block i - 1 is finished
        shapes |= {f"s{slot}": (rows, block_k, "fp32"), f"p{slot}": (rows, block_k, op.dtype)}
    for slot in range(FOLD_LAG + 1):  # kept until the block is folded into the output
        shapes |= {f"pv{slot}": (rows, op.d_v, "fp32"), f"alpha{slot}": (rows, 1, "fp32")}
    for slot in range(3):
        shapes |= {
            f"k{slot}": (block_k, op.head_dim, op.dtype),
            f"v{slot}": (block_k, op.d_v, op.dtype),
        }
    names = {}
    for key, (r, c, dtype) in shapes.items():
        name = f"{tag}.{key}"
        if name not in prog.buffers or prog.buffers[name].rows < r:
            prog.buffer(name, "sram", r, c, dtype, core)
        names[key] = name
    return names


# Key blocks between a block's softmax and its fold into the output: enough for P V to leave
# the array (R + C - 2 cycles of drain) while the vector unit softens the next blocks.
FOLD_LAG = 3
# Query blocks in flight per core, each with its own scratch buffers.
LANES = 4


class _Lane:
    """Emits query blocks' instructions as a software pipeline: key block i is scored
    (S = Q K^T) while block i - 1 goes through the softmax and P V and block i - 1 - FOLD_LAG
    is folded into the output, so the in-order engines rarely wait on one another's drains.
    A lane keeps its buffers' readers across query blocks so reuse never races."""

    def __init__(
        self,
        prog: Program,
        op: Attention,
        chip: ChipSpec,
        *,
        core: int,
        lane: int,
        rows: int,
        block_k: int,
        vector: bool,
    ):
        self.prog, self.op, self.chip, self.core = prog, op, chip, core
        self.rows, self.vector, self.block_k = rows, vector, block_k
        self.group = op.heads // op.kv_heads
        self.b = _scratch(prog, op, core, lane, rows, block_k)
        self.unit = lane
        self.q_readers: list[int] = []
        self.out_store: tuple[int, ...] = ()
        self.last_vec: int | None = None
        self.busy = False
        self.kv_readers: dict[int, list[int]] = {0: [], 1: [], 2: []}
        self.s_readers: dict[int, list[int]] = {0: [], 1: []}
        self.pv_readers: dict[int, list[int]] = {s: [] for s in range(FOLD_LAG + 1)}
        self.p_readers: dict[int, list[int]] = {0: [], 1: []}
        self.scored: dict[int, tuple] = {}  # block -> (keys, slot, ends of S)
        self.products: dict[int, tuple] = {}  # block -> ends of P V

    def reg(self, key: str, cols: int | None = None, rows: int | None = None) -> Region:
        buf = self.prog.buffers[self.b[key]]
        return Region(buf.name, 0, 0, rows or self.rows, cols or buf.cols)

    def vec(self, opname: str, dst: Region, *srcs: Region, deps=(), imm=None, imm2=None) -> int:
        """A vector op after the lane's previous one: the lane's vector work is one chain
        split over the VPU and the EUP, so program order must be explicit (other lanes'
        chains still overlap it)."""
        chain = (self.last_vec,) if self.last_vec is not None else ()
        self.last_vec = self.prog.emit(
            Vector,
            core=self.core,
            op=opname,
            dst=dst,
            srcs=srcs,
            deps=tuple(deps) + chain,
            imm=imm,
            imm2=imm2,
        )
        return self.last_vec

    def product(
        self, src: Region, weights: Region, dst: Region, transpose: bool, deps, readers: list[int]
    ) -> list[int]:
        if self.vector:
            ends = [self.vec("dotT" if transpose else "dot", dst, src, weights, deps=deps)]
            readers += ends
            return ends
        self.unit += 1
        return _matrix_product(
            self.prog,
            self.chip,
            self.core,
            src=src,
            weights=weights,
            dst=dst,
            transpose=transpose,
            deps=tuple(deps),
            readers=readers,
            first_unit=self.unit,
        )

    def score(self, i: int, k0: int, keys: int, *, kv_row: int, q_pos: int, q: int) -> None:
        op, d, dv, slot, s_slot = self.op, self.op.head_dim, self.op.d_v, i % 3, i % 2
        free = tuple(self.kv_readers[slot])
        self.kv_readers[slot] = []
        kt = self.prog.emit(
            Dma,
            core=self.core,
            deps=free,
            src=Region(f"{op.name}.K", kv_row + k0, 0, keys, d),
            dst=self.reg(f"k{slot}", d, keys),
        )
        vt = self.prog.emit(
            Dma,
            core=self.core,
            deps=free,
            src=Region(f"{op.name}.V", kv_row + k0, 0, keys, dv),
            dst=self.reg(f"v{slot}", dv, keys),
        )
        s_free = tuple(self.s_readers[s_slot])
        self.s_readers[s_slot] = []
        ends = self.product(
            self.reg("q", d),
            self.reg(f"k{slot}", d, keys),
            self.reg(f"s{s_slot}", keys),
            True,
            (q, kt, *s_free),
            self.kv_readers[slot],
        )
        self.q_readers += ends
        self.scored[i] = (keys, slot, s_slot, ends, vt, q_pos - k0)

    def soften(self, i: int) -> None:
        """Scale, mask, online softmax of block i, then its P V."""
        keys, slot, s_slot, ends, vt, diagonal = self.scored.pop(i)
        f_slot = i % (FOLD_LAG + 1)
        s, alpha = self.reg(f"s{s_slot}", keys), self.reg(f"alpha{f_slot}")
        m, mnew, l_, rs = self.reg("m"), self.reg("mnew"), self.reg("l"), self.reg("rs")
        t = self.vec("scale", s, s, deps=ends, imm=1 / math.sqrt(self.op.head_dim))
        if self.op.causal and diagonal < keys - 1:  # the block crosses the diagonal
            t = self.vec("mask", s, s, deps=(t,), imm=float(diagonal), imm2=float(self.group))
        t = self.vec("rowmax", mnew, s, deps=(t,))
        t = self.vec("max", mnew, mnew, m, deps=(t,))
        t = self.vec("sub", alpha, m, mnew, deps=(t,))
        t = self.vec("exp", alpha, alpha, deps=(t,))
        t = self.vec("rowsub", s, s, mnew, deps=(t,))
        t = self.vec("exp", s, s, deps=(t,))
        t = self.vec("copy", m, mnew, deps=(t,))
        t = self.vec("mul", l_, l_, alpha, deps=(t,))
        t = self.vec("rowsum", rs, s, deps=(t,))
        t = self.vec("add", l_, l_, rs, deps=(t,))
        p = self.vec("cast", self.reg(f"p{s_slot}", keys), s, deps=(t, *self.p_readers[s_slot]))
        self.s_readers[s_slot] = [p]
        self.p_readers[s_slot] = []
        pv_free = tuple(self.pv_readers[f_slot])
        self.pv_readers[f_slot] = []
        self.products[i] = (
            f_slot,
            self.product(
                self.reg(f"p{s_slot}", keys),
                self.reg(f"v{slot}", self.op.d_v, keys),
                self.reg(f"pv{f_slot}"),
                False,
                (p, vt, *pv_free),
                self.p_readers[s_slot],
            ),
        )
        self.kv_readers[slot] += self.p_readers[s_slot]

    def fold(self, i: int) -> None:
        """O = alpha O + P V of block i."""
        f_slot, ends = self.products.pop(i)
        o = self.reg("o")
        t = self.vec("rowscale", o, o, self.reg(f"alpha{f_slot}"))
        t = self.vec("add", o, o, self.reg(f"pv{f_slot}"), deps=(t, *ends))
        self.pv_readers[f_slot].append(t)


def _begin(self, *, kv_row: int, q_row: int, q0: int, rows: int) -> None:
    """Start a query block: load Q, reset the running max, normaliser and output."""
    op, d = self.op, self.op.head_dim
    self.rows, self.kv_row, self.q_row, self.q0 = rows, kv_row, q_row, q0
    self.q = self.prog.emit(
        Dma,
        core=self.core,
        deps=tuple(self.q_readers),
        src=Region(f"{op.name}.Q", q_row, 0, rows, d),
        dst=self.reg("q", d),
    )
    self.q_readers = []
    t = self.vec("fill", self.reg("m"), self.reg("m"), imm=-1e30)  # running max from -inf
    t = self.vec("fill", self.reg("l"), self.reg("l"), deps=(t,), imm=0.0)
    self.vec("fill", self.reg("o"), self.reg("o"), deps=(t,), imm=0.0)
    self.blocks = _key_blocks(op, q0, math.ceil(rows / self.group), self.block_k)
    self.i, self.busy = 0, True


def _step(self) -> None:
    """One pipeline step: score block i, soften block i - 1, fold block i - 1 - FOLD_LAG."""
    i, n = self.i, len(self.blocks)
    if i < n:
        self.score(i, *self.blocks[i], kv_row=self.kv_row, q_pos=self.q0, q=self.q)
    if 0 <= i - 1 < n:
        self.soften(i - 1)
    if 0 <= i - 1 - FOLD_LAG < n:
        self.fold(i - 1 - FOLD_LAG)
    self.i += 1
    if self.i == n + 1 + FOLD_LAG:
        self.finish()


def _finish(self) -> None:
    """O / l, cast, store."""
    dv = self.op.d_v
    o, rs = self.reg("o"), self.reg("rs")
    t = self.vec("recip", rs, self.reg("l"))
    t = self.vec("rowscale", o, o, rs, deps=(t,))
    out = self.vec("cast", self.reg("out", dv), o, deps=(t, *self.out_store))
    self.out_store = (
        self.prog.emit(
            Dma,
            core=self.core,
            src=self.reg("out", dv),
            dst=Region(f"{self.op.name}.O", self.q_row, 0, self.rows, dv),
            deps=(out,),
        ),
    )
    self.busy = False


_Lane.begin, _Lane.step, _Lane.finish = _begin, _step, _finish


def _matrix_product(
    prog: Program,
    chip: ChipSpec,
    core: int,
    *,
    src: Region,
    weights: Region,
    dst: Region,
    transpose: bool,
    deps: tuple[int, ...],
    readers: list[int],
    first_unit: int = 0,
) -> list[int]:
    """dst = src @ W (W = weights, or weights^T) folded over the array; returns the last
    stream of each column block. Folds over the contraction accumulate on one unit."""
    R, C = chip.matrix.rows, chip.matrix.cols
    inner = weights.cols if transpose else weights.rows
    outer = weights.rows if transpose else weights.cols
    ends = []
    for j, c0 in enumerate(range(0, outer, C)):
        unit = (first_unit + j) % chip.matrix.count
        for k0 in range(0, inner, R):
            kd, cd = min(R, inner - k0), min(C, outer - c0)
            w = Region(
                weights.buffer,
                weights.row + (c0 if transpose else k0),
                weights.col + (k0 if transpose else c0),
                cd if transpose else kd,
                kd if transpose else cd,
            )
            wl = prog.emit(LoadWeights, core=core, unit=unit, src=w, transpose=transpose, deps=deps)
            last = prog.emit(
                Stream,
                core=core,
                unit=unit,
                deps=(wl, *deps),
                src=Region(src.buffer, src.row, src.col + k0, src.rows, kd),
                dst=Region(dst.buffer, dst.row, dst.col + c0, dst.rows, cd),
                accumulate=k0 > 0,
            )
            readers += [wl, last]
        ends.append(last)
    return ends
