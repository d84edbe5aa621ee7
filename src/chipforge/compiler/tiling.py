"""The matmul mapper: how a core's share of a matmul is cut into tiles and chains.

A core computes C[Mc, Nc] = A[Mc, K] @ B[K, Nc] block by block: a tm x tn block of C stays in
SRAM as fp32 partial sums while tk-deep slices of A and B stream in from HBM (SLOTS slices in
flight). Inside a block, each accumulation chain (one array-wide column block, or a row chunk of
it, or a group of its K folds) stays on one matrix unit, so partial sums never race; K groups
get their own accumulators and are added at the end. The search minimises an estimate of the
core's cycles over tilings that fit the core's SRAM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chipforge.dtypes import nbytes
from chipforge.errors import Infeasible
from chipforge.spec import ChipSpec

# Input slices in flight: with three, the load of slice s + 3 waits only for slice s's readers,
# leaving a slice of slack for the transfer and the weight shift (two would serialise them).
SLOTS = 3


@dataclass(frozen=True)
class Tiling:
    tm: int  # rows of A (and C) per block
    tn: int  # columns of B (and C) per block
    tk: int  # depth of one streamed slice of A and B
    row_splits: int = 1  # row chunks per column block (each its own chain)
    k_groups: int = 1  # groups of K folds per column block (each its own chain and accumulator)

    def sram_bytes(self, dtype: str, out_dtype: str, resident: bool) -> float:
        """SRAM a core needs: SLOTS input slices, two sets of accumulators, two output stages."""
        e, e_out = nbytes(dtype), nbytes(out_dtype)
        a = 0 if resident else SLOTS * self.tm * self.tk * e
        c = 0 if resident else 2 * self.tm * self.tn * e_out
        acc = 2 * self.k_groups * self.tm * self.tn * 4
        return a + SLOTS * self.tk * self.tn * e + acc + c


def core_sram(chip: ChipSpec) -> float:
    """Bytes of the software-managed SRAM of one core (the first level of kind sram)."""
    for level in chip.memory[1:]:
        if level.kind == "sram":
            return level.capacity if level.per_core else level.capacity / chip.cores
    raise Infeasible(
        f"chip {chip.name} has no software-managed SRAM level (kind sram) for the "
        "compiler to tile into; the cycle engine models scratchpad chips"
    )


def chains(tm: int, tn: int, k: int, chip: ChipSpec) -> tuple[int, int]:
    """(row splits, K groups) that give every matrix unit of a core a chain of its own: rows
    are split while chunks stay at least an array tall (streams then hide weight loads);
    otherwise K folds are grouped."""
    units, rows = chip.matrix.count, chip.matrix.rows
    col_blocks = math.ceil(tn / chip.matrix.cols)
    if chip.matrix.dataflow == "output-stationary":  # one chain per array-sized output tile
        return math.ceil(tm / rows), 1
    if col_blocks >= units:
        return 1, 1
    needed = math.ceil(units / col_blocks)
    if math.ceil(tm / needed) >= rows:
        return needed, 1
    return 1, max(1, min(needed, math.ceil(k / rows)))


def block_cycles(t: Tiling, k: int, chip: ChipSpec) -> float:
    """Matrix-unit cycles of one block over depth k (pipelined folds, chains over units)."""
    rows, cols, units = chip.matrix.rows, chip.matrix.cols, chip.matrix.count
    count = math.ceil(t.tn / cols) * t.row_splits * t.k_groups
    chunk = math.ceil(t.tm / t.row_splits)
    folds = math.ceil(math.ceil(k / rows) / t.k_groups)
    if chip.matrix.dataflow == "output-stationary":  # each tile streams K, then drains
        return math.ceil(count / units) * (k + rows + cols - 2)
    per_fold = max(chunk, rows) if chip.matrix.double_buffered else rows + chunk + rows + cols - 2
    return math.ceil(count / units) * folds * per_fold


def _candidates(extent: int, step: int) -> list[int]:
    """Multiples of `step` (powers of two times it) up to `extent`, and `extent` itself."""
    values, size = {extent}, step
    while size < extent:
        values.add(size)
        size *= 2
    return sorted(values)


def choose_tiling(
    m: int,
    n: int,
    k: int,
    *,
    chip: ChipSpec,
    dtype: str,
    out_dtype: str,
    resident: bool,
    bandwidth: float,
    reserved: float = 0.0,
) -> Tiling:
    """The tiling of one core's (m x k) @ (k x n) that minimises its estimated cycles.

    `bandwidth` is the core's share of HBM bandwidth in bytes per cycle. Each K slice costs the
    longer of its matrix work and its transfers (the block's store shares the DMA engine); the
    first slice's load and the last block's store are not hidden. `reserved` bytes of the
    core's SRAM are already taken (resident activations)."""
    capacity = core_sram(chip) - reserved
    depths = _candidates(k, chip.matrix.rows)
    if (
        chip.matrix.dataflow == "output-stationary"
        and Tiling(64, chip.matrix.cols, k).sram_bytes(dtype, out_dtype, resident) <= capacity
    ):
        depths = [k]  # a tile streams all of K at once: its skew is paid once
    e, e_out = nbytes(dtype), nbytes(out_dtype)
    best, best_cost = None, math.inf
    for tm in _candidates(m, 64):
        for tn in _candidates(n, chip.matrix.cols):
            for tk in depths:
                t = Tiling(tm, tn, tk, *chains(tm, tn, k, chip))
                if t.sram_bytes(dtype, out_dtype, resident) > capacity:
                    continue
                steps = math.ceil(k / tk)
                store = 0.0 if resident else tm * tn * e_out / bandwidth
                load = ((0 if resident else tm * tk * e) + tk * tn * e) / bandwidth
                step = max(block_cycles(t, k, chip) / steps, load + store / steps)
                blocks = math.ceil(m / tm) * math.ceil(n / tn)
                # each block ends with the array's drain and the K groups' sum before its cast
                finish = chip.matrix.rows + chip.matrix.cols + t.k_groups
                cost = blocks * (steps * step + finish) + load + store
                if cost < best_cost:
                    best, best_cost = t, cost
    if best is None:
        need = Tiling(64, chip.matrix.cols, chip.matrix.rows).sram_bytes(dtype, out_dtype, resident)
        raise Infeasible(
            f"the smallest matmul tile needs {need / 2**20:.2f} MiB of SRAM per "
            f"core; {chip.name} has {capacity / 2**20:.2f} MiB"
        )
    return best
