"""Gate counts of multiply-accumulate and FMA datapaths, in NAND2 equivalents (GE).

The model is a textbook one, kept deliberately naive so every term can be checked by hand:

- an n x n multiplier is n^2 AND2 partial products reduced by a Dadda tree (n^2 - 4n + 3 full
  adders, n - 1 half adders; Dadda 1965, counts as in Weste & Harris, "CMOS VLSI Design", 4th ed.,
  ch. 11) and a 2n-bit carry-propagate adder;
- a carry-propagate adder of w bits is w full adders x 1.5 (assumption: a parallel-prefix adder,
  needed at GHz clocks, costs ~1.5x a ripple adder's cells);
- a floating-point add aligns (barrel shift), adds, counts leading zeros, normalises (barrel
  shift) and rounds (an incrementer); the exponent path is two small adders;
- registers: the operand and partial-sum bits a cell holds (a weight-stationary cell holds its
  weight twice when double-buffered).

Cell areas are the Nangate 45 nm Open Cell Library (FreePDK45) X1 cells divided by NAND2_X1
(0.798 um2): AND2 1.064, FA 4.256, HA 2.660, DFF 4.522, MUX2 1.862 um2 (library datasheet).
"""

from __future__ import annotations

from functools import cache
from math import ceil, log2

from chipforge.errors import SpecError

NAND2_UM2 = 0.798  # Nangate 45 nm NAND2_X1
AND2 = 1.064 / NAND2_UM2
FA = 4.256 / NAND2_UM2
HA = 2.660 / NAND2_UM2
DFF = 4.522 / NAND2_UM2
MUX2 = 1.862 / NAND2_UM2
PREFIX_ADDER = 1.5  # assumption: parallel-prefix vs ripple adder cells (see module docstring)
LZC_GE_PER_BIT = 2.0  # assumption: a leading-zero counter is ~2 GE per input bit (a log-depth tree)
ACC_FP_MANTISSA = 24  # fp32 accumulation of float products (all the presets' matrix units)
ACC_FP_EXPONENT = 8
ACC_INT_BITS = 32  # int32 accumulation of integer products
# Extra area for each further format a multi-format unit supports, as a share of the largest
# single-format datapath. Assumption: multi-precision MACs share the mantissa multiplier array
# (an int8 multiplier doubles as two fp8 or half a bf16 one) and add muxing, exponent logic and
# format conversion of ~10% per format.
MULTI_FORMAT_FRAC = 0.10
# A transcendental (exp, rsqrt) unit as a multiple of an fp32 FMA. Assumption: quadratic
# interpolation (Oberman & Siu, ARITH 2005, the GPU SFU) needs two multipliers, an adder and small
# coefficient ROMs, ~2 FMAs.
SFU_FMA = 2.0

# (kind, mantissa bits with the hidden one | integer bits, exponent bits, storage bits)
FORMATS: dict[str, tuple[str, int, int, int]] = {
    "fp64": ("float", 53, 11, 64),
    "fp32": ("float", 24, 8, 32),
    "tf32": ("float", 11, 8, 19),
    "bf16": ("float", 8, 8, 16),
    "fp16": ("float", 11, 5, 16),
    "fp8": ("float", 4, 4, 8),  # e4m3
    "fp4": ("float", 2, 2, 4),  # e2m1
    "int8": ("int", 8, 0, 8),
    "int4": ("int", 4, 0, 4),
}


def multiplier_ge(n: int) -> float:
    """An n x n unsigned multiplier: partial products, Dadda reduction, final adder."""
    return n * n * AND2 + max(n * n - 4 * n + 3, 0) * FA + max(n - 1, 0) * HA + adder_ge(2 * n)


def adder_ge(width: int) -> float:
    """A width-bit carry-propagate adder."""
    return width * FA * PREFIX_ADDER


def fp_adder_ge(mantissa: int, exponent: int) -> float:
    """A floating-point adder: align, add, leading-zero count, normalise, round, exponents."""
    width = mantissa + 3  # guard, round and sticky bits
    shifter = width * ceil(log2(width)) * MUX2
    return (
        2 * shifter
        + adder_ge(width)
        + width * LZC_GE_PER_BIT
        + mantissa * HA
        + 2 * adder_ge(exponent)
    )


def _format(dtype: str) -> tuple[str, int, int, int]:
    if dtype not in FORMATS:
        raise SpecError(
            f"`matrix.macs_per_cycle` dtype must be one of {', '.join(FORMATS)}, not {dtype!r}"
        )
    return FORMATS[dtype]


def mac_ge(dtype: str, *, weight_copies: int = 1) -> float:
    """One multiply-accumulate cell in `dtype` with its operand and partial-sum registers."""
    kind, bits, exponent, storage = _format(dtype)
    if kind == "int":
        datapath = multiplier_ge(bits) + adder_ge(ACC_INT_BITS)
        acc_bits = ACC_INT_BITS
    else:
        acc_m = max(ACC_FP_MANTISSA, bits)
        acc_e = max(ACC_FP_EXPONENT, exponent)
        datapath = multiplier_ge(bits) + adder_ge(exponent) + fp_adder_ge(acc_m, acc_e)
        acc_bits = acc_m + acc_e
    registers = ((1 + weight_copies) * storage + acc_bits) * DFF
    return datapath + registers


def fma_ge(dtype: str = "fp32") -> float:
    """A fused multiply-add lane of a vector unit (accumulating in its own format), scaled to
    synthesized gates by `rtl_scale`."""
    return mac_ge(dtype) * rtl_scale()


# Yosys synthesis of chipforge's own RTL PE (docs/rtl.md, `chipforge rtl synth --rows 8 --cols 8
# --dtype int8|bf16`, Yosys 0.70): a double-buffered weight-stationary PE is 1,698.3 NAND2
# equivalents in int8 and 5,046.3 in bf16 (IEEE rounding, subnormals). Copied here so the model
# runs without Yosys. Formats without RTL take the textbook count x RTL_SCALE, the geometric mean
# of RTL / textbook over the two synthesized PEs (1.70 and 2.46).
RTL_PE_GE = {"int8": 1698.3, "bf16": 5046.3}
# Formats narrower than 8 bits are packed into the 8-bit / bf16 multiplier array (an 8x8
# multiplier computes several 4x4 or 2x2 products); they add MULTI_FORMAT_FRAC, not a datapath.
PACKED = frozenset({"fp8", "fp4", "int4"})


@cache
def rtl_scale() -> float:
    """Synthesized / textbook gates, geometric mean over the PEs synthesized from RTL."""
    ratio = 1.0
    for dtype, ge in RTL_PE_GE.items():
        ratio *= ge / mac_ge(dtype, weight_copies=2)
    return ratio ** (1 / len(RTL_PE_GE))


def pe_ge(dtype: str) -> float:
    """NAND2 equivalents of one double-buffered MAC cell in `dtype`: RTL where synthesized."""
    if dtype in RTL_PE_GE:
        return RTL_PE_GE[dtype]
    return mac_ge(dtype, weight_copies=2) * rtl_scale()


def matrix_unit_ge(macs_per_cycle: dict[str, int]) -> float:
    """Gates of one matrix unit: the largest unpacked per-format datapath plus the
    multi-format share for every further format."""
    wide = [d for d in macs_per_cycle if d not in PACKED] or list(macs_per_cycle)
    sized = [macs_per_cycle[d] * pe_ge(d) for d in wide]
    return max(sized) * (1 + MULTI_FORMAT_FRAC * (len(macs_per_cycle) - 1))
