"""Energy per multiply-accumulate, per vector FLOP and per byte moved, for one chip.

Compute energy is anchored to the chip's own power limit: running the matrix units at their
sustained rate in a dtype draws the TDP (GPUs run at their power cap in large GEMMs; TPU v4's
measured maximum, 192 W, is its top, hw-tpuv4-power). So the dynamic energy of one MAC is
(TDP - idle power) / (sustained MAC/s in that dtype). It stays consistent with the published
chip-level pJ/FLOP (semi-e-h100-chip, semi-e-b200-chip, semi-e-tpuv4-chip) by construction.
A vector-unit fp32 FLOP costs 0.45 of a bf16 MAC: an fp32 add (0.9 pJ) against an fp16 multiply
plus fp32 add (1.1 + 0.9 pJ) in Horowitz's 45 nm table (ISSCC 2014, published.csv semi-e-*).
Memory energy per byte: the level's own figure (HBM: 3.9 pJ/bit, semi-hbm-energy), else DRAM
(Horowitz: 1300 pJ per 64-bit access) or SRAM (Horowitz: 100 pJ per 64-bit read of a 1 MB
array at 45 nm) scaled by the process node's `energy_scale` (spec/nodes.toml).
"""

from __future__ import annotations

from chipforge.spec import ChipSpec, MemoryLevel

PJ = 1e-12
VECTOR_FLOP_PER_BF16_MAC = 0.9 / (1.1 + 0.9)  # Horowitz 2014, 45 nm
SRAM_BYTE_PJ_45NM = 100 / 8  # 1 MB SRAM, 64-bit read: 100 pJ (Horowitz 2014)
DRAM_BYTE_PJ = 1300 / 8  # off-chip DDR3-class DRAM, 64-bit access: 1300 pJ (Horowitz 2014)


def mac_energy(chip: ChipSpec, dtype: str, matrix_frac: float) -> float:
    """J per multiply-accumulate in `dtype` (a dtype the matrix unit runs natively)."""
    macs_per_s = chip.peak_flops(dtype) / 2 * matrix_frac
    return (chip.tdp - chip.static_power) / macs_per_s


def vector_flop_energy(chip: ChipSpec, matrix_frac: float) -> float:
    """J per fp32 vector FLOP, from the chip's bf16 (or its widest) MAC energy."""
    macs = chip.matrix.macs_per_cycle
    dtype = "bf16" if "bf16" in macs else max(macs, key=lambda d: macs[d])
    return VECTOR_FLOP_PER_BF16_MAC * mac_energy(chip, dtype, matrix_frac)


def byte_energy(chip: ChipSpec, level: MemoryLevel) -> float:
    """J per byte moved out of `level`: its own figure, else DRAM or node-scaled SRAM."""
    if level.energy_per_byte is not None:
        return level.energy_per_byte
    if level.kind in ("hbm", "dram"):
        return DRAM_BYTE_PJ * PJ
    return SRAM_BYTE_PJ_45NM * PJ * chip.process.energy_scale
