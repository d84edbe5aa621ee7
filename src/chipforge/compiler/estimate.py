"""How many instructions `compile_op` would emit, from the op's shape alone (nothing emitted).

The simulators' budgets (`sim/budget.py`) are checked against these counts before any work
starts: a GEMM of 131072^3 or a batch of 10^5 is refused in milliseconds instead of compiling
for minutes. The counts follow the lowerings loop for loop (matmul.py, attention.py, lower.py):
matmuls and vector ops exactly, attention to within a few percent (tests compare both with
real compilations).
"""

from __future__ import annotations

import math

from chipforge.compiler.attention import use_vector_unit
from chipforge.compiler.matmul import core_tiling, leftover_pieces
from chipforge.compiler.tiling import Tiling, core_sram
from chipforge.dtypes import nbytes
from chipforge.spec import ChipSpec
from chipforge.workload.ops import Attention, Collective, Conv2d, Embedding, MatMul, Op
from chipforge.workload.ops import Vector as VectorOp


def _block(op: MatMul, chip: ChipSpec, t: Tiling, rows: int, cols: int, resident: bool) -> int:
    """Instructions of one rows x cols block of C (matmul.py `_lower_block`)."""
    R, C = chip.matrix.rows, chip.matrix.cols
    chunk = math.ceil(rows / t.row_splits)
    splits = sum(1 for rc in range(t.row_splits) if rc * chunk < rows)
    col_blocks = math.ceil(cols / C)
    steps = math.ceil(op.k / t.tk)
    loads = steps * (1 if resident else 2)
    if chip.matrix.dataflow == "output-stationary":
        work = steps * col_blocks * splits * t.k_groups
    else:
        last = op.k - (steps - 1) * t.tk
        folds = (steps - 1) * math.ceil(t.tk / R) + math.ceil(last / R)
        work = 2 * folds * col_blocks * splits
    groups = t.k_groups - 1 if t.k_groups > 1 else 0
    return loads + work + groups + 1 + (0 if resident else 1)  # + cast (+ store)


def _job(op: MatMul, chip: ChipSpec, t: Tiling, m: int, n: int, resident: bool) -> int:
    """Instructions of one core's m x n job (blocks of the tiling, edge blocks smaller)."""
    total = 0
    for rows, nr in _extents(m, t.tm):
        for cols, nc in _extents(n, t.tn):
            total += nr * nc * _block(op, chip, t, rows, cols, resident)
    return total


def _extents(size: int, tile: int) -> list[tuple[int, int]]:
    """(extent, count) of the blocks `range(0, size, tile)` cuts."""
    full, rest = divmod(size, tile)
    return [(tile, full)] * (full > 0) + [(rest, 1)] * (rest > 0)


def matmul_instructions(op: MatMul, chip: ChipSpec, *, resident: bool = False) -> int:
    # matmul.split_jobs without its list of whole items: `whole` of them on every core, one
    # leftover piece on each of the first cores
    whole = op.batch // chip.cores
    item = [((op.m, op.n), whole)] if whole else []
    pieces = leftover_pieces(op, chip)
    groups = [(item + [((j.m1 - j.m0, j.n1 - j.n0), 1)], 1) for j in pieces]  # (jobs, cores)
    if item and chip.cores > len(pieces):
        groups.append((item, chip.cores - len(pieces)))
    total = 0
    for jobs, cores in groups:
        shapes = [shape for shape, _ in jobs]
        t = core_tiling(op, chip, shapes, sum(m * k for (m, _), k in jobs), resident=resident)
        total += cores * sum(k * _job(op, chip, t, m, n, resident) for (m, n), k in jobs)
    return total


def _product(chip: ChipSpec, outer: int, inner: int, vector: bool) -> int:
    if vector:
        return 1
    return 2 * math.ceil(outer / chip.matrix.cols) * math.ceil(inner / chip.matrix.rows)


def attention_instructions(op: Attention, chip: ChipSpec) -> int:
    """attention.py: per query block 8 (Q load, fills, O / l, cast, store); per key block
    2 loads, S = Q K^T, 14 vector ops (+ a mask on the diagonal), P V."""
    vector = use_vector_unit(op, chip)
    group = op.heads // op.kv_heads
    pairs = op.batch * op.kv_heads
    rows_per_pair = op.q_len * group
    block_q = min(rows_per_pair, max(group, 4 * chip.matrix.rows // group * group))
    block = chip.matrix.rows
    per_pair = 0
    qblocks = math.ceil(rows_per_pair / block_q)
    for r0 in range(0, min(rows_per_pair, block_q * 4096), block_q):  # the rest scaled below
        rows = min(block_q, rows_per_pair - r0)
        q_pos = op.kv_len - op.q_len + r0 // group
        last = op.kv_len if not op.causal else min(op.kv_len, q_pos + math.ceil(rows / group))
        full, rest = divmod(last, block)
        count = 8
        for keys, n in ((block, full), (rest, 1 if rest else 0)):
            if n:
                prods = _product(chip, keys, op.head_dim, vector)
                prods += _product(chip, op.d_v, keys, vector)
                count += n * (16 + prods)
        if op.causal:  # blocks that cross the diagonal get a mask
            starts = range(max(0, (q_pos - block + 2) // block * block), last, block)
            count += sum(1 for k0 in starts if q_pos - k0 < min(block, last - k0) - 1)
        per_pair += count
    seen = min(qblocks, 4096)
    return pairs * math.ceil(per_pair * qblocks / seen)


def vector_instructions(op: VectorOp, chip: ChipSpec, *, resident: bool = False) -> int:
    """lower.py `lower_vector`: per row chunk, a load per input, the op, a store."""
    from chipforge.compiler.lower import ROW

    e = nbytes(op.dtype)
    tensors = max(2, round(op.bytes_per_element / e))
    rows = max(1, math.ceil(op.elements / ROW))
    chunk = max(
        1, min(math.ceil(rows / chip.cores), int(core_sram(chip) / 2 / (3 * tensors * ROW * e)))
    )
    share = math.ceil(rows / chip.cores)
    chunks = sum(
        math.ceil(max(0, min(rows, (c + 1) * share) - c * share) / chunk) for c in range(chip.cores)
    )
    costed = not resident or op.param_state
    return chunks * ((tensors - 1 if costed else 0) + 1 + (1 if costed else 0))


def instructions(op: Op, chip: ChipSpec, *, resident: bool = False) -> int:
    """Instructions of one instance of `op` as `compile_op` lowers it (0 for collectives and
    attention backward, which the cycle engine costs analytically); `compile_op`'s own errors
    (a GPU, a dtype the arrays lack) first."""
    from chipforge.compiler.lower import check_compilable

    if isinstance(op, Collective) or (isinstance(op, Attention) and op.backward):
        return 0
    check_compilable(op, chip)
    if isinstance(op, Conv2d):
        op = op.as_matmul()
    if isinstance(op, MatMul):
        return matmul_instructions(op, chip, resident=resident and op.weight)
    if isinstance(op, Attention) and not op.backward:
        return attention_instructions(op, chip)
    if isinstance(op, VectorOp):
        return vector_instructions(op, chip, resident=resident)
    if isinstance(op, Embedding):
        return 2 * min(chip.cores, op.tokens)
    if isinstance(op, Collective):
        return 0
    return 0
