"""Energy per multiply-accumulate, per vector FLOP and per byte moved, for one chip.

Compute energy is anchored to the chip's own power limit: running the matrix units at their
sustained rate in a dtype draws the TDP (GPUs run at their power cap in large GEMMs; TPU v4's
measured maximum, 192 W, is its top, hw-tpuv4-power). So the dynamic energy of one MAC is
(TDP - idle power) / (sustained MAC/s in that dtype). It stays consistent with the published
chip-level pJ/FLOP (semi-e-h100-chip, semi-e-b200-chip, semi-e-tpuv4-chip) by construction.
A vector-unit fp32 FLOP costs 0.45 of a bf16 MAC: an fp32 add (0.9 pJ) against an fp16 multiply
plus fp32 add (1.1 + 0.9 pJ) in Horowitz's 45 nm table (ISSCC 2014, published.csv semi-e-*).
Memory energy per byte: the level's own `energy_per_byte`, else the default of its memory
technology (`MEMORY_PJ_PER_BIT`, chosen by the level's name as `silicon.interfaces` picks the
HBM generation: "HBM3E", "LPDDR5X", "GDDR7", "DDR5"; an HBM level of no known name counts as
HBM), else, for on-chip levels, SRAM (Horowitz: 100 pJ per 64-bit read of a 1 MB array at
45 nm) scaled by the process node's `energy_scale` (spec/nodes.toml).
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


# pJ per bit moved, by off-chip memory technology (name prefix, longest first); ids: rows of
# data/published.csv. No per-generation HBM3/HBM3E/HBM4 access energy is published that we
# could verify, so the HBM generations share HBM2's figure, as every HBM preset does.
MEMORY_PJ_PER_BIT = {
    "hbm": 3.9,  # [semi-hbm-energy] HBM2 DRAM core + I/O, O'Connor et al. MICRO 2017
    "hbm2": 3.9,  # [semi-hbm-energy]
    "hbm2e": 3.9,  # as HBM2 (assumption: same core and I/O class)
    "hbm3": 3.9,  # as HBM2 (assumption; no verified HBM3 figure)
    "hbm3e": 3.9,  # as HBM2 (assumption; the presets use the same)
    "hbm4": 3.9,  # as HBM2 (assumption; a wider, slower interface, not dearer per bit)
    "lpddr5": 4.0,  # assumption: Micron LPDDR5 ~4 pJ/bit (as the mtia-v2 preset)
    "lpddr5x": 4.0,  # as LPDDR5 (assumption)
    "gddr6": 7.5,  # assumption: GDDR6 ~7.5 pJ/bit (Micron GDDR6X brief; recalled, not verified)
    "gddr6x": 7.25,  # assumption: Micron GDDR6X ~7.25 pJ/bit (recalled, not verified)
    # GDDR6 / 1.5: Micron's GDDR7 announcement (Computex, 4 June 2024) claims a greater than 50%
    # power-efficiency improvement over GDDR6; the GDDR6 base is the assumption above
    "gddr7": 5.0,
    "ddr4": 20.0,  # [semi-e-dram64] DDR3-class DIMM access, 1300 pJ per 64 bits (Horowitz 2014)
    "ddr5": 20.0,  # as DDR3/DDR4 [semi-e-dram64] (assumption: DIMM I/O dominates)
}


def memory_technology(level: MemoryLevel) -> str | None:
    """The off-chip memory technology a level's name says ("HBM3E" -> hbm3e), `hbm` for an HBM
    level of no known name, None for on-chip levels and unnamed DRAM."""
    key = "".join(c for c in level.name.lower() if c.isalnum())
    for name in sorted(MEMORY_PJ_PER_BIT, key=len, reverse=True):
        if key.startswith(name):
            return name
    return "hbm" if level.kind == "hbm" else None


def byte_energy(chip: ChipSpec, level: MemoryLevel) -> float:
    """J per byte moved out of `level`: its own figure, else its memory technology's default,
    else DDR-class DRAM (off-chip) or node-scaled SRAM (on-chip)."""
    if level.energy_per_byte is not None:
        return level.energy_per_byte
    tech = memory_technology(level)
    if tech is not None:
        return MEMORY_PJ_PER_BIT[tech] * 8 * PJ
    if level.kind == "dram":
        return DRAM_BYTE_PJ * PJ
    return SRAM_BYTE_PJ_45NM * PJ * chip.process.energy_scale
