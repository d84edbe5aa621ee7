"""Co-simulation: the RTL against chipforge's functional and timing simulators.

A batch of tiles becomes the program the compiler would emit for them (docs/isa.md): per tile
a `wload` of its weights and a `stream` of its rows into its own output region, the loads
ordered after the stream two back on the unit when weights are double-buffered (the shadow
tile), else after the stream before. `run_functional` gives every expected output and
`timing.schedule` every expected cycle; the RTL runs the same tiles back to back, as fast as
its ready signals allow, and must agree on every output bit and on every stream's cycles:

- cycle 0 is the cycle the first weight row is accepted (the first `wload` starts at 0);
- a stream's `start` is the cycle its first row is accepted;
- its `done` is the cycle its last result row is valid on `results` (sim/timing.py: start +
  M + R + C - 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chipforge.compiler.isa import LoadWeights, Program, Region, Stream
from chipforge.rtl.arith import ACC_DTYPE, IN_BITS
from chipforge.rtl.params import ArrayParams, RtlError, Seen
from chipforge.sim.functional import dtype_of, run_functional
from chipforge.sim.timing import schedule
from chipforge.spec import load_chip


@dataclass(frozen=True)
class Tile:
    """One weight tile (k x n, at most R x C) and the m x k rows streamed through it."""

    weights: np.ndarray  # (k, n), the input dtype
    acts: np.ndarray  # (m, k)


@dataclass
class Expected:
    """What the simulators say the RTL must produce."""

    outputs: list[np.ndarray]  # per tile: (m, n) int32 / fp32
    starts: list[int]  # per tile: the stream's first-row cycle
    dones: list[int]  # per tile: the stream's last-result cycle


def random_tiles(
    params: ArrayParams, count: int, rng: np.random.Generator, *, max_rows: int | None = None
) -> list[Tile]:
    """`count` tiles of random shape (k <= R, n <= C, 1 <= m <= max_rows, default 2R) and
    values: int8 over its whole range, bf16 ~ N(0, 1) rounded."""
    dtype = dtype_of(params.dtype)
    tiles = []
    for _ in range(count):
        full = rng.random() < 0.5  # half the tiles fill the array, half are zero-padded
        k = params.rows if full else int(rng.integers(1, params.rows + 1))
        n = params.cols if full else int(rng.integers(1, params.cols + 1))
        m = int(rng.integers(1, (max_rows or 2 * params.rows) + 1))
        tiles.append(Tile(_values(rng, (k, n), dtype), _values(rng, (m, k), dtype)))
    return tiles


def _values(rng: np.random.Generator, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-128, 128, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def tile_program(params: ArrayParams, tiles: list[Tile]) -> Program:
    """The tiles as one program on core 0, unit 0: setup DMAs place the operands in SRAM
    (free), each tile is a wload then a stream, a teardown DMA copies the outputs out."""
    p, r, c = Program(name="rtl-cosim"), params.rows, params.cols
    total_m = sum(t.acts.shape[0] for t in tiles)
    acc = ACC_DTYPE[params.dtype]
    for space, suffix in (("hbm", ""), ("sram", "_s")):
        p.buffer(f"A{suffix}", space, total_m, r, params.dtype)
        p.buffer(f"W{suffix}", space, len(tiles) * r, c, params.dtype)
        p.buffer(f"C{suffix}", space, total_m, c, acc)
    for name, rows, cols in (("A", total_m, r), ("W", len(tiles) * r, c)):
        p.setup_dma(Region(name, 0, 0, rows, cols), Region(f"{name}_s", 0, 0, rows, cols), 0)
    p.teardown_dma(Region("C_s", 0, 0, total_m, c), Region("C", 0, 0, total_m, c), 0)
    streams: list[int] = []
    row = 0
    back = 2 if params.double_buffered else 1  # the stream whose bank this load reuses
    for i, t in enumerate(tiles):
        (m, k), n = t.acts.shape, t.weights.shape[1]
        deps = (streams[i - back],) if i >= back else ()
        load = p.emit(LoadWeights, unit=0, src=Region("W_s", i * r, 0, k, n), deps=deps)
        src, dst = Region("A_s", row, 0, m, k), Region("C_s", row, 0, m, n)
        streams.append(p.emit(Stream, unit=0, src=src, dst=dst, deps=(load,)))
        row += m
    return p


def expected(params: ArrayParams, tiles: list[Tile], *, chip: str = "forge-n3") -> Expected:
    """Outputs from `run_functional` and cycles from `timing.schedule` on `chip` with its
    matrix unit set to this array (one row per cycle, as the RTL streams)."""
    program = tile_program(params, tiles)
    r, c = params.rows, params.cols
    inputs = {
        "A": np.concatenate([np.pad(t.acts, ((0, 0), (0, r - t.acts.shape[1]))) for t in tiles]),
        "W": np.concatenate([np.pad(t.weights, ((0, r - t.weights.shape[0]),
                                                (0, c - t.weights.shape[1]))) for t in tiles]),
    }  # fmt: skip
    out = run_functional(program, inputs)["C"]
    spec = load_chip(chip)
    matrix = spec.matrix.model_copy(
        update={
            "rows": r,
            "cols": c,
            "double_buffered": params.double_buffered,
            "macs_per_cycle": {params.dtype: r * c},
        }
    )
    timeline = schedule(program, spec.model_copy(update={"matrix": matrix}))
    streams = [i for i in program.instrs if isinstance(i, Stream)]
    return Expected(
        outputs=[out[s.dst.row : s.dst.row + s.dst.rows, : s.dst.cols] for s in streams],
        starts=[int(timeline.start[s.id]) for s in streams],
        dones=[int(timeline.done[s.id]) for s in streams],
    )


def pack(values: np.ndarray, bits: int) -> int:
    """A row of values as one integer, element i in bits [i*bits, (i+1)*bits)."""
    raw = values.view(f"u{bits // 8}").astype(object)
    return sum(int(v) << (i * bits) for i, v in enumerate(raw))


def stimulus(params: ArrayParams, tiles: list[Tile]) -> tuple[list[int], list[tuple[int, int]]]:
    """Weight beats (R per tile, zero-padded) and (act row, last) beats, in order."""
    r, c, bits = params.rows, params.cols, IN_BITS[params.dtype]
    weights, acts = [], []
    for t in tiles:
        w = np.zeros((r, c), t.weights.dtype)
        w[: t.weights.shape[0], : t.weights.shape[1]] = t.weights
        weights += [pack(w[k], bits) for k in range(r)]
        a = np.zeros((t.acts.shape[0], r), t.acts.dtype)
        a[:, : t.acts.shape[1]] = t.acts
        acts += [(pack(a[i], bits), int(i == len(a) - 1)) for i in range(len(a))]
    return weights, acts


@dataclass
class Report:
    """The verdict on one batch of tiles."""

    tiles: int
    mismatches: int  # output elements that differ (NaN equals NaN)
    expected_dones: list[int]
    seen_dones: list[int]
    expected_starts: list[int]
    seen_starts: list[int]
    cycles: int

    @property
    def cycles_match(self) -> bool:
        return self.expected_dones == self.seen_dones and self.expected_starts == self.seen_starts

    @property
    def passed(self) -> bool:
        return self.mismatches == 0 and self.cycles_match


def compare(params: ArrayParams, tiles: list[Tile], exp: Expected, seen: Seen) -> Report:
    """Every output element bit for bit, every stream's start and done cycle."""
    acc = dtype_of(ACC_DTYPE[params.dtype])
    mismatches, row, starts, dones = 0, 0, [], []
    for want in exp.outputs:
        m, n = want.shape
        got = np.array(seen.rows[row : row + m], dtype=np.uint32).reshape(-1, params.cols)
        got = got[:, :n].view(acc)
        if got.shape != want.shape:
            return Report(len(tiles), want.size, exp.dones, [], exp.starts, [], seen.cycles)
        same = got.view(np.uint32) == want.view(np.uint32)
        if acc.kind == "f":
            same |= np.isnan(got) & np.isnan(want)
        mismatches += int((~same).sum())
        starts.append(seen.act_cycles[row])
        dones.append(seen.row_cycles[row + m - 1])
        row += m
    return Report(len(tiles), mismatches, exp.dones, dones, exp.starts, starts, seen.cycles)


def cosim(
    params: ArrayParams,
    tiles: list[Tile],
    *,
    simulator: str = "amaranth",
    chip: str = "forge-n3",
) -> Report:
    """Run `tiles` through the RTL under `simulator` and compare with the simulators."""
    params.check_simulator(simulator)
    if not tiles:
        raise RtlError("`tiles` must hold at least one tile, not none")
    exp = expected(params, tiles, chip=chip)
    weights, acts = stimulus(params, tiles)
    if simulator == "verilator":
        from chipforge.rtl.verilator import run_verilator as run
    else:
        from chipforge.rtl.pysim import run_amaranth as run

    return compare(params, tiles, exp, run(params, weights, acts))
