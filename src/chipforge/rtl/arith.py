"""The MAC datapaths as Amaranth expressions: int8 x int8 + int32, and bf16 x bf16 + fp32.

The float path is the functional simulator's arithmetic (`chipforge.sim.functional._fold`,
numpy float32) in gates: the bf16 x bf16 product is computed exactly (8 x 8 significand bits)
and rounded once into fp32 (it is exact unless it falls in fp32's subnormal range or
overflows), then added to the fp32 partial sum with one rounding, to nearest, ties to even.
Subnormal inputs and results are supported (no flush to zero), infinities follow IEEE 754
(inf - inf and 0 x inf give NaN); every NaN comes out as the quiet NaN 0x7FC00000 (numpy keeps
payloads, so co-simulation compares NaNs by being NaN).

Every function takes the `Module` it adds its intermediate signals to and returns a Value.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed

QNAN32 = 0x7FC00000  # IEEE 754-2008 canonical quiet NaN of binary32 (sign 0, quiet bit set)
_EXP_BIAS = 127  # binary32 exponent bias (IEEE 754-2008, table 3.5)
_MANT32 = 23  # binary32 trailing significand bits
_MANT16 = 7  # bfloat16 trailing significand bits (Google bfloat16: fp32 with 16 low bits cut)
_MIN_LSB = -149  # weight of fp32's smallest subnormal: 2^(1 - 127 - 23)
_EXP_W = signed(12)  # wide enough for every unbiased exponent met below (-300 .. 300)


def msb_index(m: Module, x: Value, name: str) -> Signal:
    """The index of the highest set bit of `x` (0 when x == 0): a priority encoder."""
    idx = Signal(range(max(len(x), 2)), name=name)
    expr: Value = Const(0, idx.shape())
    for bit in range(len(x)):  # the last assignment (the highest bit) wins
        expr = Mux(x[bit], bit, expr)
    m.d.comb += idx.eq(expr)
    return idx


def round_pack32(m: Module, sign: Value, lsb_exp: Value, sig: Value, name: str) -> Signal:
    """binary32 bits of (-1)^sign x sig x 2^lsb_exp, rounded to nearest even, with gradual
    underflow and overflow to infinity. `sig` may carry guard and sticky bits below its ulp."""
    width = len(sig)
    out = Signal(32, name=name)
    p = msb_index(m, sig, f"{name}_p")
    lead = Signal(_EXP_W, name=f"{name}_lead")  # unbiased exponent of the leading bit
    target = Signal(_EXP_W, name=f"{name}_lsb")  # weight of the result's last significand bit
    shift = Signal(_EXP_W, name=f"{name}_shift")
    m.d.comb += [
        lead.eq(p + lsb_exp),
        target.eq(Mux(lead - _MANT32 > _MIN_LSB, lead - _MANT32, _MIN_LSB)),
        shift.eq(target - lsb_exp),
    ]
    # right shift (dropping bits into guard and sticky) or exact left shift
    right = Signal(range(width + 2), name=f"{name}_rsh")
    m.d.comb += right.eq(Mux(shift > width + 1, width + 1, Mux(shift > 0, shift, 0)))
    ext = Cat(Const(0, width + 1), sig) >> right  # (sig << width + 1) >> right
    q_right, guard, sticky = ext[width + 1 :], ext[width], ext[:width].any()
    left = Signal(range(_MANT32 + 2), name=f"{name}_lsh")
    m.d.comb += left.eq(Mux(shift < 0, -shift, 0))
    q = Signal(_MANT32 + 2, name=f"{name}_q")
    m.d.comb += q.eq(Mux(shift > 0, q_right, sig << left))
    rounded = Signal(_MANT32 + 2, name=f"{name}_rnd")
    m.d.comb += rounded.eq(q + (guard & (sticky | q[0])))
    carry = rounded[_MANT32 + 1]  # 2^24: renormalise one place (the value is exactly 2^k)
    frac = Mux(carry, rounded[1:], rounded)[: _MANT32 + 1]
    biased = Signal(_EXP_W, name=f"{name}_e")
    m.d.comb += biased.eq(Mux(frac[_MANT32], target + carry + _EXP_BIAS + _MANT32, 0))
    with m.If(biased >= 255):
        m.d.comb += out.eq(Cat(Const(0, _MANT32), Const(255, 8), sign))
    with m.Else():
        m.d.comb += out.eq(Cat(frac[:_MANT32], biased[:8], sign))
    return out


def _fields(x: Value, mant: int) -> tuple[Value, Value, Value]:
    """(sign, biased exponent, trailing significand) of a binary float of `len(x)` bits."""
    return x[-1], x[mant:-1], x[:mant]


def _eff_exp(m: Module, biased: Value, name: str) -> Signal:
    """The exponent that scales the integer significand: 1 for subnormals (signed, wide)."""
    eff = Signal(_EXP_W, name=name)
    m.d.comb += eff.eq(Mux(biased == 0, 1, biased))
    return eff


def fp32_add(m: Module, a: Value, b: Value, name: str) -> Signal:
    """binary32 a + b, rounded once to nearest even (IEEE 754 addition)."""
    out = Signal(32, name=name)
    swap = a[:31] < b[:31]  # x: the operand of larger magnitude
    x = Signal(32, name=f"{name}_x")
    y = Signal(32, name=f"{name}_y")
    m.d.comb += [x.eq(Mux(swap, b, a)), y.eq(Mux(swap, a, b))]
    sx, ex, fx = _fields(x, _MANT32)
    sy, ey, fy = _fields(y, _MANT32)
    ex_eff, ey_eff = _eff_exp(m, ex, f"{name}_ex"), _eff_exp(m, ey, f"{name}_ey")
    grs = 3  # guard, round and sticky bits below the ulp: enough for one correct rounding
    big = Cat(Const(0, grs), fx, ex != 0)  # (24 + 3) bits
    small = Cat(Const(0, grs), fy, ey != 0)
    dist = Signal(range(len(big) + 1), name=f"{name}_d")
    diff = ex_eff - ey_eff  # >= 0: x is the larger
    m.d.comb += dist.eq(Mux(diff > len(big), len(big), diff))
    shifted = Cat(Const(0, len(big)), small) >> dist
    kept = shifted[len(big) :]  # small >> dist; what fell off is ORed into the sticky bit
    aligned = Cat(kept[0] | shifted[: len(big)].any(), kept[1:])
    total = Signal(len(big) + 1, name=f"{name}_sum")
    m.d.comb += total.eq(Mux(sx == sy, big + aligned, big - aligned))
    packed = round_pack32(m, sx, ex_eff - (_EXP_BIAS + _MANT32 + grs), total, f"{name}_rp")
    nan_x, nan_y = (ex == 255) & (fx != 0), (ey == 255) & (fy != 0)
    inf_x, inf_y = (ex == 255) & (fx == 0), (ey == 255) & (fy == 0)
    with m.If(nan_x | nan_y | (inf_x & inf_y & (sx != sy))):
        m.d.comb += out.eq(QNAN32)
    with m.Elif(inf_x):  # the larger magnitude is the infinity
        m.d.comb += out.eq(x)
    with m.Elif(total == 0):  # exact zero: +0 unless both operands are -0 (IEEE 754 6.3)
        m.d.comb += out.eq(Cat(Const(0, 31), a[31] & b[31]))
    with m.Else():
        m.d.comb += out.eq(packed)
    return out


def bf16_mul(m: Module, a: Value, b: Value, name: str) -> Signal:
    """binary32 bits of bf16 a x bf16 b: the exact 16-bit significand product, rounded once
    (only products in fp32's subnormal range or past its largest value are inexact)."""
    out = Signal(32, name=name)
    sa, ea, fa = _fields(a, _MANT16)
    sb, eb, fb = _fields(b, _MANT16)
    sig = Signal(16, name=f"{name}_sig")
    m.d.comb += sig.eq(Cat(fa, ea != 0) * Cat(fb, eb != 0))
    lsb = Signal(_EXP_W, name=f"{name}_lsb")  # weight of the product's bit 0
    ea_eff, eb_eff = _eff_exp(m, ea, f"{name}_ea"), _eff_exp(m, eb, f"{name}_eb")
    m.d.comb += lsb.eq(ea_eff + eb_eff - 2 * (_EXP_BIAS + _MANT16))
    sign = sa ^ sb
    packed = round_pack32(m, sign, lsb, sig, f"{name}_rp")
    nan_a, nan_b = (ea == 255) & (fa != 0), (eb == 255) & (fb != 0)
    inf_a, inf_b = (ea == 255) & (fa == 0), (eb == 255) & (fb == 0)
    zero_a, zero_b = a[:15] == 0, b[:15] == 0
    with m.If(nan_a | nan_b | (inf_a & zero_b) | (inf_b & zero_a)):
        m.d.comb += out.eq(QNAN32)
    with m.Elif(inf_a | inf_b):
        m.d.comb += out.eq(Cat(Const(0, _MANT32), Const(255, 8), sign))
    with m.Elif(sig == 0):
        m.d.comb += out.eq(Cat(Const(0, 31), sign))
    with m.Else():
        m.d.comb += out.eq(packed)
    return out


def int8_mac(m: Module, psum: Value, a: Value, w: Value, name: str) -> Signal:
    """psum + a x w on two's complement int8 inputs into an int32 that wraps, as adders do."""
    out = Signal(32, name=name)
    m.d.comb += out.eq((psum.as_signed() + a.as_signed() * w.as_signed())[:32])
    return out


def bf16_mac(m: Module, psum: Value, a: Value, w: Value, name: str) -> Signal:
    """psum + a x w: the fp32 sum of the fp32 partial sum and the bf16 product, one rounding
    for the product (exact but for underflow/overflow) and one for the add."""
    return fp32_add(m, psum, bf16_mul(m, a, w, f"{name}_mul"), name)


MACS = {"int8": int8_mac, "bf16": bf16_mac}
IN_BITS = {"int8": 8, "bf16": 16}  # input operand width per dtype
ACC_BITS = {"int8": 32, "bf16": 32}  # int32 / fp32 partial sums
ACC_DTYPE = {"int8": "int32", "bf16": "fp32"}  # the Stream destination format (docs/isa.md)
