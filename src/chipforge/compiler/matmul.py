"""Lowering a matmul to DMA, weight-load, stream and vector instructions (weight-stationary).

Work is split over cores by batch items, dealt out whole in rounds of one per core; the items
left over (all of them when fewer than the cores) by output columns (then rows). Each core
walks its blocks (tiling.py) with double-buffered input slices, two accumulators and two output
staging buffers so that loading, computing and storing overlap. Within a block, each
accumulation chain (a column block of the array's width, or a row chunk of it) stays on one
matrix unit so partial sums never race; chains are dealt round-robin over the core's units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from chipforge.compiler.isa import Dma, LoadWeights, OsTile, Program, Region, Stream, Vector
from chipforge.compiler.tiling import SLOTS, Tiling, choose_tiling
from chipforge.dtypes import nbytes
from chipforge.spec import ChipSpec
from chipforge.workload.ops import MatMul


@dataclass(frozen=True)
class Job:
    """One core's piece of the matmul: batch item b, rows [m0, m1), columns [n0, n1)."""

    b: int
    m0: int
    m1: int
    n0: int
    n1: int


def split_jobs(op: MatMul, chip: ChipSpec) -> list[list[Job]]:
    """Jobs per core. Batch items are dealt out whole, as many rounds as give every core one;
    the items left over (all of them when there are fewer than the cores: `leftover_pieces`)
    are cut into pieces, at most one per core, so no core streams a whole item more than
    another (a grouped GEMM of 5 experts on 4 cores takes 1.25 experts' time, not 2)."""
    whole = op.batch - op.batch % chip.cores
    jobs: list[list[Job]] = [[] for _ in range(chip.cores)]
    for b in range(whole):
        jobs[b % chip.cores].append(Job(b, 0, op.m, 0, op.n))
    for i, job in enumerate(leftover_pieces(op, chip)):
        jobs[i].append(job)
    return jobs


def leftover_pieces(op: MatMul, chip: ChipSpec) -> list[Job]:
    """The pieces of the batch items left over after whole rounds (batch % cores of them):
    each cut into col_groups x row_groups pieces (columns in multiples of the array width),
    at most cores pieces in all, choosing the cut that reads least from HBM: splitting
    columns re-reads A per group, splitting rows re-reads B."""
    cores, cols = chip.cores, chip.matrix.cols
    left = op.batch % cores
    if not left:
        return []
    per_item = cores // left
    macs_per_cycle = chip.matrix.count * chip.matrix.rows * chip.matrix.cols
    bytes_per_cycle = chip.hbm.bandwidth / chip.clock / nbytes(op.dtype)

    def cycles(g: tuple[int, int]) -> float:  # the slower of compute and HBM reads
        pieces = g[0] * g[1] * left  # each busy core brings its share of HBM bandwidth
        share = min(pieces, cores) / cores
        compute = op.m * op.n * op.k / (g[0] * g[1] * macs_per_cycle)
        reads = op.m * op.k * g[0] + op.k * op.n * g[1]
        return max(compute, reads / (bytes_per_cycle * share))

    shapes = [
        (c, r)
        for c in range(1, min(per_item, math.ceil(op.n / cols)) + 1)
        for r in range(1, min(per_item // c, math.ceil(op.m / 8)) + 1)
    ]
    col_groups, row_groups = min(shapes, key=cycles)
    width = math.ceil(math.ceil(op.n / col_groups) / cols) * cols
    height = math.ceil(op.m / row_groups)
    return [
        Job(b, r * height, min(op.m, (r + 1) * height), c * width, min(op.n, (c + 1) * width))
        for b in range(op.batch - left, op.batch)
        for c in range(col_groups)
        for r in range(row_groups)
        if c * width < op.n and r * height < op.m
    ]


@dataclass
class CoreState:
    """Dependency bookkeeping for one core while its instructions are emitted."""

    core: int
    step: int = 0  # slices issued so far (selects the input slot)
    block: int = 0  # blocks issued so far (selects the accumulator and staging slot)
    slot_readers: dict[int, list[int]] = field(
        default_factory=lambda: {s: [] for s in range(SLOTS)}
    )
    unit_streams: dict[int, list[int]] = field(default_factory=dict)
    acc_readers: dict[int, int | None] = field(default_factory=lambda: {0: None, 1: None})
    stage_store: dict[int, int | None] = field(default_factory=lambda: {0: None, 1: None})
    pending_store: tuple | None = None
    resident_rows: int = 0  # rows of earlier jobs in the core's resident A and C


def core_tiling(
    op: MatMul, chip: ChipSpec, shapes: list[tuple[int, int]], rows: int, *, resident: bool
) -> Tiling:
    """The tiling one core uses for its jobs of `op` (their (m, n) `shapes`; `rows` of A and C
    held resident when `resident`): `choose_tiling` for the largest job, at the core's share of
    HBM bandwidth. The lowering and `estimate.matmul_instructions` both take it from here."""
    out_dtype = op.out_dtype or op.dtype
    tn = max(s[1] for s in shapes)
    reserved = rows * (op.k * nbytes(op.dtype) + tn * nbytes(out_dtype)) if resident else 0
    return choose_tiling(
        max(s[0] for s in shapes),
        tn,
        op.k,
        chip=chip,
        dtype=op.dtype,
        out_dtype=out_dtype,
        resident=resident,
        bandwidth=chip.hbm.bandwidth / chip.cores / chip.clock,
        reserved=reserved,
    )


def lower_matmul(prog: Program, op: MatMul, chip: ChipSpec, *, resident: bool = False) -> None:
    """Append `op`'s instructions to `prog` (buffers A, B, C in HBM; scratch in SRAM)."""
    out_dtype = op.out_dtype or op.dtype
    a = prog.buffer(f"{op.name}.A", "hbm", op.batch * op.m, op.k, op.dtype)
    w = prog.buffer(f"{op.name}.B", "hbm", op.batch * op.k, op.n, op.dtype)
    c = prog.buffer(f"{op.name}.C", "hbm", op.batch * op.m, op.n, out_dtype)
    for core, jobs in enumerate(split_jobs(op, chip)):
        if not jobs:
            continue
        shapes = [(j.m1 - j.m0, j.n1 - j.n0) for j in jobs]
        tiling = core_tiling(op, chip, shapes, sum(s[0] for s in shapes), resident=resident)
        _scratch(prog, op, core, tiling, out_dtype, resident, jobs)
        state = CoreState(core)
        for job in jobs:
            _lower_job(
                prog,
                op,
                chip,
                job,
                tiling,
                state,
                names=(a.name, w.name, c.name),
                resident=resident,
            )
        _flush_store(prog, state)


def _scratch(
    prog: Program, op: MatMul, core: int, t: Tiling, out_dtype: str, resident: bool, jobs: list[Job]
) -> None:
    tag = f"{op.name}.{core}"
    acc_dtype = "int32" if op.dtype.startswith("int") else "fp32"
    for slot in range(SLOTS):
        prog.buffer(f"{tag}.w{slot}", "sram", t.tk, t.tn, op.dtype, core)
        if not resident:
            prog.buffer(f"{tag}.a{slot}", "sram", t.tm, t.tk, op.dtype, core)
    for slot in (0, 1):
        for group in range(t.k_groups):
            prog.buffer(_acc(tag, slot, group), "sram", t.tm, t.tn, acc_dtype, core)
        if not resident:
            prog.buffer(f"{tag}.c{slot}", "sram", t.tm, t.tn, out_dtype, core)
    if resident:  # activations already on chip: the whole of this core's A and C
        rows = sum(j.m1 - j.m0 for j in jobs)
        a_res = prog.buffer(f"{tag}.A", "sram", rows, op.k, op.dtype, core).name
        c_res = prog.buffer(
            f"{tag}.C", "sram", rows, max(j.n1 - j.n0 for j in jobs), out_dtype, core
        ).name
        row = 0
        for j in jobs:  # where the previous op left A, and where the next one finds C
            height = j.m1 - j.m0
            prog.setup_dma(
                Region(f"{op.name}.A", j.b * op.m + j.m0, 0, height, op.k),
                Region(a_res, row, 0, height, op.k),
                core,
            )
            prog.teardown_dma(
                Region(c_res, row, 0, height, j.n1 - j.n0),
                Region(f"{op.name}.C", j.b * op.m + j.m0, j.n0, height, j.n1 - j.n0),
                core,
            )
            row += height


def _lower_job(
    prog: Program,
    op: MatMul,
    chip: ChipSpec,
    job: Job,
    t: Tiling,
    st: CoreState,
    *,
    names: tuple[str, str, str],
    resident: bool,
) -> None:
    for r0 in range(job.m0, job.m1, t.tm):
        for c0 in range(job.n0, job.n1, t.tn):
            rows, cols = min(t.tm, job.m1 - r0), min(t.tn, job.n1 - c0)
            _lower_block(
                prog,
                op,
                chip,
                st,
                job=job,
                r0=r0,
                c0=c0,
                rows=rows,
                cols=cols,
                t=t,
                names=names,
                resident=resident,
            )


def _acc(tag: str, slot: int, group: int) -> str:
    return f"{tag}.acc{slot}" + (f"g{group}" if group else "")


def _lower_block(
    prog: Program,
    op: MatMul,
    chip: ChipSpec,
    st: CoreState,
    *,
    job: Job,
    r0: int,
    c0: int,
    rows: int,
    cols: int,
    t: Tiling,
    names: tuple[str, str, str],
    resident: bool,
) -> None:
    """One rows x cols block of C: its K slices, the K groups' sum, the cast to the output."""
    a_name, b_name, c_name = names
    R, C, units = chip.matrix.rows, chip.matrix.cols, chip.matrix.count
    tag, acc_slot = f"{op.name}.{st.core}", st.block % 2
    chunk = math.ceil(rows / t.row_splits)
    chain_list = [
        (rc, nb, g)
        for nb in range(math.ceil(cols / C))
        for rc in range(t.row_splits)
        for g in range(t.k_groups)
        if rc * chunk < rows
    ]
    res_row = r0 - job.m0 + st.resident_rows  # this block's rows in the core's resident A / C
    last: dict[tuple[int, int, int], int] = {}
    fold = 0
    for k0 in range(0, op.k, t.tk):
        depth, slot = min(t.tk, op.k - k0), st.step % SLOTS
        st.step += 1
        free = tuple(st.slot_readers[slot])
        st.slot_readers[slot] = []
        loads = []
        if resident:
            a_buf, a_row, a_col = f"{tag}.A", res_row, k0
        else:
            a_buf, a_row, a_col = f"{tag}.a{slot}", 0, 0
            loads.append(
                prog.emit(
                    Dma,
                    core=st.core,
                    deps=free,
                    src=Region(a_name, job.b * op.m + r0, k0, rows, depth),
                    dst=Region(a_buf, 0, 0, rows, depth),
                )
            )
        w_load = prog.emit(
            Dma,
            core=st.core,
            deps=free,
            src=Region(b_name, job.b * op.k + k0, c0, depth, cols),
            dst=Region(f"{tag}.w{slot}", 0, 0, depth, cols),
        )
        if k0 == min(SLOTS - 1, math.ceil(op.k / t.tk) - 1) * t.tk:
            # the previous block's store, behind this block's first loads: by now its
            # accumulators have drained, and the store does not hold up the next slices
            _flush_store(prog, st)
        if chip.matrix.dataflow == "output-stationary":
            for i, (rc, nb, _) in enumerate(chain_list):
                n_rows, n_cols = min(chunk, rows - rc * chunk), min(C, cols - nb * C)
                acc_region = Region(_acc(tag, acc_slot, 0), rc * chunk, nb * C, n_rows, n_cols)
                last[(rc, nb, 0)] = _os_tile(
                    prog,
                    st,
                    unit=i % units,
                    acc=acc_region,
                    first=(rc, nb, 0) not in last,
                    a=Region(a_buf, a_row + rc * chunk, a_col, n_rows, depth),
                    b=Region(f"{tag}.w{slot}", 0, nb * C, depth, n_cols),
                    loads=(w_load, *loads),
                    slot=slot,
                    acc_slot=acc_slot,
                )
            continue
        for kk in range(0, depth, R):
            kd, group = min(R, depth - kk), fold % t.k_groups
            for i, (rc, nb, g) in enumerate(chain_list):
                if g != group:
                    continue
                n_rows, n_cols = min(chunk, rows - rc * chunk), min(C, cols - nb * C)
                last[(rc, nb, g)] = _fold(
                    prog,
                    chip,
                    st,
                    unit=i % units,
                    w_src=Region(f"{tag}.w{slot}", kk, nb * C, kd, n_cols),
                    a_src=Region(a_buf, a_row + rc * chunk, a_col + kk, n_rows, kd),
                    acc=Region(_acc(tag, acc_slot, g), rc * chunk, nb * C, n_rows, n_cols),
                    first=(rc, nb, g) not in last,
                    loads=(w_load, *loads),
                    slot=slot,
                    acc_slot=acc_slot,
                )
            fold += 1
    acc = Region(_acc(tag, acc_slot, 0), 0, 0, rows, cols)
    done = _sum_groups(prog, st, t, acc=acc, last=last, tag=tag, acc_slot=acc_slot)
    _finish_block(
        prog,
        op,
        st,
        deps=done,
        acc=acc,
        job=job,
        r0=r0,
        c0=c0,
        res_row=res_row,
        c_name=c_name,
        resident=resident,
    )
    if r0 + rows >= job.m1 and c0 + cols >= job.n1:
        st.resident_rows += job.m1 - job.m0


def _os_tile(
    prog: Program,
    st: CoreState,
    *,
    unit: int,
    a: Region,
    b: Region,
    acc: Region,
    first: bool,
    loads: tuple[int, ...],
    slot: int,
    acc_slot: int,
) -> int:
    """One output-stationary tile over a K slice (its chain stays on one unit)."""
    deps = loads
    if first and st.acc_readers[acc_slot] is not None:
        deps += (st.acc_readers[acc_slot],)
    tile = prog.emit(
        OsTile, core=st.core, unit=unit, a=a, b=b, dst=acc, accumulate=not first, deps=deps
    )
    st.slot_readers[slot].append(tile)
    return tile


def _sum_groups(
    prog: Program, st: CoreState, t: Tiling, *, acc: Region, last: dict, tag: str, acc_slot: int
) -> tuple[int, ...]:
    """Add the K groups' partial sums into group 0's accumulator; returns what the cast waits
    for."""
    if t.k_groups == 1:
        return tuple(last.values())
    total = prog.emit(
        Vector,
        core=st.core,
        op="add",
        dst=acc,
        deps=tuple(last.values()),
        srcs=(acc, Region(_acc(tag, acc_slot, 1), 0, 0, acc.rows, acc.cols)),
    )
    for group in range(2, t.k_groups):
        total = prog.emit(
            Vector,
            core=st.core,
            op="add",
            dst=acc,
            deps=(total,),
            srcs=(acc, Region(_acc(tag, acc_slot, group), 0, 0, acc.rows, acc.cols)),
        )
    return (total,)


def _fold(
    prog: Program,
    chip: ChipSpec,
    st: CoreState,
    *,
    unit: int,
    w_src: Region,
    a_src: Region,
    acc: Region,
    first: bool,
    loads: tuple[int, ...],
    slot: int,
    acc_slot: int,
) -> int:
    """Load one weight tile into a unit and stream the rows through it; returns the stream."""
    history = st.unit_streams.setdefault(unit, [])
    # the tile goes into the shadow weight buffer, free once the stream two back has finished
    # (one back without double-buffered weights)
    back = 2 if chip.matrix.double_buffered else 1
    w_deps = (loads[0],) + ((history[-back],) if len(history) >= back else ())
    wload = prog.emit(LoadWeights, core=st.core, unit=unit, src=w_src, deps=w_deps)
    s_deps = (wload, *loads[1:])
    if first and st.acc_readers[acc_slot] is not None:
        s_deps += (st.acc_readers[acc_slot],)  # the accumulator's previous block was cast
    stream = prog.emit(
        Stream, core=st.core, unit=unit, src=a_src, dst=acc, accumulate=not first, deps=s_deps
    )
    history.append(stream)
    st.slot_readers[slot] += [wload, stream]
    return stream


def _finish_block(
    prog: Program,
    op: MatMul,
    st: CoreState,
    *,
    deps: tuple[int, ...],
    acc: Region,
    job: Job,
    r0: int,
    c0: int,
    res_row: int,
    c_name: str,
    resident: bool,
) -> None:
    tag, slot = f"{op.name}.{st.core}", st.block % 2
    if resident:
        dst = Region(f"{tag}.C", res_row, c0 - job.n0, acc.rows, acc.cols)
    else:
        dst = Region(f"{tag}.c{slot}", 0, 0, acc.rows, acc.cols)
        if st.stage_store[slot] is not None:
            deps += (st.stage_store[slot],)
    cast = prog.emit(Vector, core=st.core, op="cast", srcs=(acc,), dst=dst, deps=deps)
    st.acc_readers[slot] = cast
    if not resident:
        st.pending_store = (
            dst,
            Region(c_name, job.b * op.m + r0, c0, acc.rows, acc.cols),
            cast,
            slot,
        )
    st.block += 1


def _flush_store(prog: Program, st: CoreState) -> None:
    if st.pending_store is None:
        return
    src, dst, cast, slot = st.pending_store
    st.stage_store[slot] = prog.emit(Dma, core=st.core, src=src, dst=dst, deps=(cast,))
    st.pending_store = None
