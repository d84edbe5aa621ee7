"""The generator's parameters, validated once, and the errors bad ones raise."""

from __future__ import annotations

from dataclasses import dataclass, field

from chipforge.errors import ChipforgeError

DTYPES = ("int8", "bf16")  # the MACs the generator builds (rtl/arith.py)

# Largest array (rows x cols PEs) each simulator is allowed to run. Amaranth's Python
# simulator evaluates every PE's gates in Python: bf16 32x32 runs at ~1 cycle/s there
# (benchmarks/bench_rtl.py), so 32x32 is the largest it finishes a tile of in minutes.
# Verilator compiles the array to C++ (rtl/verilator.py): 32x32 bf16 builds in ~70 s on two
# cores; 64x64 is allowed, larger builds take too long for a check run from the command line.
MAX_PES = {"amaranth": 32 * 32, "verilator": 64 * 64}
# Elaborating the array to Verilog (generate, synth) holds every PE's netlist in Python: bf16
# 16x16 took 36 s and 470 MB peak RSS, 32x32 167 s and 1.7 GB (`/usr/bin/time -v chipforge rtl
# generate --rows 32 --cols 32`, loaded 2-core machine): ~1.8 MB and ~0.16 s a PE. A 256x256
# array (forge-n3's) would need ~120 GB; the largest any simulator runs is the cap.
MAX_GENERATE_PES = MAX_PES["verilator"]
BYTES_PER_PE = 2 * 2**20


class RtlError(ChipforgeError):
    """Parameters the RTL generator, co-simulation or synthesis cannot take."""


@dataclass(frozen=True, kw_only=True)
class ArrayParams:
    """A weight-stationary systolic array: `rows` (the K side) x `cols` (the N side)."""

    rows: int
    cols: int
    dtype: str = "int8"
    double_buffered: bool = True  # the house design's default (spec.MatrixUnit)

    def __post_init__(self) -> None:
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise RtlError(f"`{name}` must be a positive integer, not {value!r}")
        if self.dtype not in DTYPES:
            raise RtlError(
                f"`dtype` must be one of {', '.join(DTYPES)}, not {self.dtype!r}: "
                "the RTL has int8 and bf16 MACs only"
            )

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    @property
    def latency_cycles(self) -> int:
        """Cycles from a row's accept to its results' valid cycle: R + C - 1 (rtl/array.py)."""
        return self.rows + self.cols - 1

    def check_generate(self) -> None:
        """Raise unless the array is small enough to elaborate to Verilog here."""
        if self.pes > MAX_GENERATE_PES:
            raise RtlError(
                f"`rows` x `cols` {self.rows:.3g}x{self.cols:.3g} is {self.pes:.3g} PEs; "
                f"elaborating it would take ~{self.pes * BYTES_PER_PE / 1e9:.3g} GB and "
                f"~{self.pes * 0.16 / 60:.3g} min; the RTL is capped at {MAX_GENERATE_PES:,} "
                "PEs (64x64): pass a smaller --rows/--cols"
            )

    def check_simulator(self, simulator: str) -> None:
        """Raise unless `simulator` exists and runs an array this large."""
        if simulator not in MAX_PES:
            raise RtlError(f"`simulator` must be one of {', '.join(MAX_PES)}, not {simulator!r}")
        if self.pes > MAX_PES[simulator]:
            raise RtlError(
                f"`rows` x `cols` must be at most {MAX_PES[simulator]} PEs for the "
                f"{simulator} simulator, not {self.rows}x{self.cols}: use a smaller array"
            )


@dataclass
class Seen:
    """What the RTL produced: result rows (C raw words each) and their cycles. Both simulators
    (`pysim`, `verilator`) return one; `cosim.compare` checks it."""

    rows: list[list[int]] = field(default_factory=list)
    row_cycles: list[int] = field(default_factory=list)
    act_cycles: list[int] = field(default_factory=list)  # accept cycle of every input row
    cycles: int = 0  # cycles simulated
