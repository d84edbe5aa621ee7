"""Cost of one matrix multiply on a chip's matrix units: cycles and the bytes each memory level
must deliver.

Systolic cycles follow the closed forms of SCALE-Sim (Samajdar et al., ISPASS 2020), which its
cycle-level runs match within one cycle per fold:
  weight-stationary, per fold:  [R weight load] + M stream + R + C - 2 skew in and out
  output-stationary, per fold:  K stream + R + C - 2
where folds tile the two spatial dimensions (K x N for WS, M x N for OS). With double-buffered
weights (TPU v1: a four-tile weight FIFO, Jouppi et al. ISCA 2017) the next fold's weights load
during the current stream and consecutive folds pipeline, so the skew is paid once per unit.
GPU tensor cores compute output tiles; cost = waves of tiles over the SMs (wave quantization).
The compiler's choice is modelled by a small search (split M or K across idle units, tile shape).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from functools import lru_cache

from chipforge.spec import MatrixUnit

SPLITS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _ceil(a: float, b: float) -> int:
    return -(-int(a) // int(b))


@lru_cache(maxsize=65536)
def systolic_schedule(
    m: int,
    n: int,
    k: int,
    batch: int,
    *,
    rows: int,
    cols: int,
    units: int,
    rate: float,
    dataflow: str,
    double_buffered: bool,
) -> tuple[float, str]:
    """The best split of the stream over the units: its cycles, and the part of them (compute,
    fill or weight-load) that is largest. See `systolic_cycles` and `systolic_limit`."""
    skew = rows + cols - 2
    if dataflow == "output-stationary":
        folds, stream, split_dim = batch * _ceil(m, rows) * _ceil(n, cols), k, k
    else:
        folds, stream, split_dim = batch * _ceil(k, rows) * _ceil(n, cols), m, m
    best = (math.inf, "compute")
    for split in SPLITS:
        if split > 1 and (split > split_dim or split > units):
            break
        chunk = _ceil(stream, split) / rate
        per_unit = _ceil(folds * split, units)
        if dataflow == "output-stationary":  # operands stream in, no weight preload
            parts = {"compute": per_unit * chunk, "fill": per_unit * skew}
        elif double_buffered:  # loads hide behind streams; the skew is paid once per unit
            parts = {
                "compute": per_unit * chunk,
                "weight-load": rows + per_unit * max(0.0, rows - chunk),
                "fill": skew,
            }
        else:
            parts = {"compute": per_unit * chunk, "weight-load": per_unit * rows,
                     "fill": per_unit * skew}  # fmt: skip
        total = sum(parts.values())
        if total < best[0]:
            best = (total, max(parts, key=parts.get))
    return best


def systolic_cycles(m: int, n: int, k: int, batch: int, **array) -> float:
    """Cycles for `batch` (m x k) @ (k x n) products on `units` systolic arrays of rows x cols
    (keywords rows, cols, units, rate, dataflow, double_buffered).

    `rate` is MACs per PE per cycle for the dtype (2 for fp8 on a bf16 array that packs two)."""
    return systolic_schedule(m, n, k, batch, **array)[0]


def systolic_limit(m: int, n: int, k: int, batch: int, **array) -> str:
    """What limits the array in `systolic_cycles`' best schedule: `compute` when streaming
    operands takes most of its cycles, `fill` when the skew in and out (rows + cols - 2 per
    fold, or once per unit when folds pipeline) does, `weight-load` when loading each fold's
    rows of weights does (a stream shorter than the array, e.g. a few decode rows)."""
    return systolic_schedule(m, n, k, batch, **array)[1]


def matmul_limit(m: int, n: int, k: int, batch: int, mu: MatrixUnit, units: int, dtype: str) -> str:
    """`systolic_limit` of the orientation `matmul_cycles` picks; `compute` on tensor cores."""
    if mu.dataflow == "tensor-core":
        return "compute"
    macs = mu.macs_per_cycle[dtype]
    kw = dict(rows=mu.rows, cols=mu.cols, units=units, rate=macs / (mu.rows * mu.cols),
              dataflow=mu.dataflow, double_buffered=mu.double_buffered)  # fmt: skip
    a, b = min(((m, n), (n, m)), key=lambda ab: systolic_cycles(ab[0], ab[1], k, batch, **kw))
    return systolic_limit(a, b, k, batch, **kw)


@lru_cache(maxsize=65536)
def tensor_core_split_cycles(
    m: int, n: int, k: int, batch: int, *, rows: int, cols: int, units: int, macs_per_cycle: int
) -> tuple[tuple[int, float], ...]:
    """(split-K factor, cycles) for output tiles over `units` SMs in waves, per split the
    library may use: for each, the best tile (rows x cols or a half of either side, as
    cuBLAS/hipBLASLt heuristics do). K is split only when there are fewer tiles than SMs."""
    best: dict[int, float] = {}
    for tile_m, tile_n in (
        (rows, cols),
        (rows // 2, cols),
        (rows, cols // 2),
        (rows // 2, cols // 2),
    ):
        tiles = batch * _ceil(m, tile_m) * _ceil(n, tile_n)
        for split in SPLITS:
            if split > 1 and (tiles * split > 4 * units or split > k // 64):
                break
            waves = _ceil(tiles * split, units)
            cycles = waves * tile_m * tile_n * _ceil(k, split) / macs_per_cycle
            best[split] = min(best.get(split, math.inf), cycles)
    return tuple(sorted(best.items()))


# Split-K reduction: a split GEMM writes `split` partial C tiles to a global workspace in the
# compute type (fp32) and a separate step sums them (cublasLt.h, CUBLASLT_REDUCTION_SCHEME_
# COMPUTE_TYPE: "Intermediate results are stored in compute type in the workspace and reduced in a
# separate step"; CUTLASS split-K parallel: a partitioned GEMM plus a reduction kernel). Set by no
# case: 4 B is the accumulator width of 16- and 8-bit GEMMs.
PARTIAL_BYTES = 4


def split_k_partial_bytes(m: int, n: int, batch: int, split: int) -> float:
    """Bytes the partial sums of a K split move through memory: written once, read once."""
    return 0.0 if split == 1 else 2.0 * PARTIAL_BYTES * batch * m * n * split


def tensor_core_cycles(
    m: int, n: int, k: int, batch: int, *, rows: int, cols: int, units: int, macs_per_cycle: int
) -> float:
    """Cycles for output tiles over `units` SMs in waves at the best tile and split-K (the
    matrix-unit time alone; `perf.engine` also charges the split's reduction)."""
    splits = tensor_core_split_cycles(
        m, n, k, batch, rows=rows, cols=cols, units=units, macs_per_cycle=macs_per_cycle
    )
    return min(cycles for _, cycles in splits)


def matmul_cycles(
    m: int, n: int, k: int, batch: int, mu: MatrixUnit, units: int, dtype: str
) -> float:
    """Matrix-unit cycles of one matmul (before the family's sustained-rate factor)."""
    macs = mu.macs_per_cycle[dtype]
    if mu.dataflow == "tensor-core":
        return tensor_core_cycles(
            m, n, k, batch, rows=mu.rows, cols=mu.cols, units=units, macs_per_cycle=macs
        )
    # C^T = B^T A^T: the compiler may hold either operand stationary and stream the other
    # (decode attention streams the long KV side past a handful of query rows)
    return min(
        systolic_cycles(
            a,
            b,
            k,
            batch,
            rows=mu.rows,
            cols=mu.cols,
            units=units,
            rate=macs / (mu.rows * mu.cols),
            dataflow=mu.dataflow,
            double_buffered=mu.double_buffered,
        )
        for a, b in ((m, n), (n, m))
    )


TILES = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


@lru_cache(maxsize=65536)
def tile_rereads(
    m: int, n: int, k: int, e_in: float, e_out: float, capacity: float
) -> tuple[int, int]:
    """How often A and B cross into a buffer of `capacity` bytes for (m x k) @ (k x n).

    Output-tiled schedule: a Tm x Tn block of C stays in the buffer (fp32 partial sums) while
    A and B stream through in double-buffered K-slices of depth Tk; A is then read ceil(N/Tn)
    times and B ceil(M/Tm) times. The (Tm, Tn) that moves fewest bytes is taken, as a mapper
    would (the classic tiling analysis of Timeloop / the roofline of Williams et al. 2009);
    ties go to the smaller Tm, then the smaller Tn. When no tile fits, the smallest (64 x 64)
    is charged. (Ten candidates a side: plain Python, no numpy on the analytical path.)
    """
    tk = min(k, 128)
    tms = [float(min(t, m)) for t in (*TILES, m)]  # non-decreasing, and the fit test below
    tns = [float(min(t, n)) for t in (*TILES, n)]  # grows with either side

    def fits(tm: float, tn: float) -> bool:
        return 2 * e_in * (tm + tn) * tk + 4 * tm * tn <= capacity

    mk, kn = m * k, k * n
    best: tuple[float, int, int] | None = None
    for tm in tms:
        # the tiles that fit form a prefix of tns; A's re-reads fall along it, so the row's
        # least traffic is at its last tile (found by the bound, then checked exactly)
        j = bisect_right(tns, (capacity - 2 * e_in * tm * tk) / (2 * e_in * tk + 4 * tm))
        while j < len(tns) and fits(tm, tns[j]):
            j += 1
        while j and not fits(tm, tns[j - 1]):
            j -= 1
        if not j:
            break  # a taller tile fits even less
        a_reads, b_reads = math.ceil(n / tns[j - 1]), math.ceil(m / tm)
        traffic = e_in * (mk * float(a_reads) + kn * float(b_reads))
        if best is None or traffic < best[0]:
            best = (traffic, a_reads, b_reads)
    if best is None:
        return math.ceil(n / min(TILES[0], n)), math.ceil(m / min(TILES[0], m))
    return best[1], best[2]


def tiled_traffic(
    m: int, n: int, k: int, e_in: float, e_out: float, capacity: float, e_b: float | None = None
) -> float:
    """Bytes that must cross into a buffer of `capacity` bytes for (m x k) @ (k x n): A and B
    as often as the best tiling re-reads them (`tile_rereads`), C written once. `e_b`: B's
    bytes per element where it is stored narrower than A (a weight-only quantized weight; the
    tiling is chosen at `e_in`, the width both operands have on chip once B is widened)."""
    a_reads, b_reads = tile_rereads(m, n, k, e_in, e_out, capacity)
    e_b = e_in if e_b is None else e_b
    return e_in * m * k * a_reads + e_b * k * n * b_reads + e_out * m * n
