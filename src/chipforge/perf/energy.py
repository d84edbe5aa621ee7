"""Energy per operation and per byte on a chip's process node.

Bare-operation energies are Horowitz's 45 nm table (ISSCC 2014, "Computing's energy problem",
published.csv semi-e-*), scaled to the node by `ProcessNode.energy_scale` (see spec/nodes.toml),
times the family's datapath factor (operand delivery and control, perf/calibration.py).
"""

from __future__ import annotations

from chipforge.spec import ChipSpec, MemoryLevel

PJ = 1e-12
# One multiply-accumulate at 45 nm, pJ: multiply + accumulate-width add (Horowitz 2014):
MAC_PJ_45NM = {
    "int8": 0.2 + 0.1,  # int8 mult 0.2 + int32 add 0.1
    "int4": 0.1 + 0.05,  # assumption: half of int8
    "fp8": 0.5 * (1.1 + 0.9),  # assumption: half a bf16 MAC (two fp8 MACs per bf16 MAC slot)
    "fp4": 0.25 * (1.1 + 0.9),  # assumption: a quarter of a bf16 MAC
    "bf16": 1.1 + 0.9,  # fp16 mult 1.1 + fp32 add 0.9 (bf16's 8-bit mantissa: no larger)
    "fp16": 1.1 + 0.9,
    "tf32": 2 * (1.1 + 0.9),  # assumption: 10-bit mantissa, fp32 range: twice bf16
    "fp32": 3.7 + 0.9,  # fp32 mult 3.7 + add 0.9
    "fp64": 4 * (3.7 + 0.9),  # assumption: ~4x fp32 (mantissa area ~ quadratic)
}
VECTOR_FLOP_PJ_45NM = 0.9  # an fp32 add (Horowitz 2014)
SRAM_BYTE_PJ_45NM = 100 / 8  # 1 MB SRAM, 64-bit read: 100 pJ (Horowitz 2014)
DRAM_BYTE_PJ = 1300 / 8  # off-chip DDR3-class DRAM, 64-bit access: 1300 pJ (Horowitz 2014)


def mac_energy(chip: ChipSpec, dtype: str, datapath_factor: float) -> float:
    """J per multiply-accumulate in `dtype` on `chip`."""
    return MAC_PJ_45NM[dtype] * PJ * chip.process.energy_scale * datapath_factor


def vector_flop_energy(chip: ChipSpec, datapath_factor: float) -> float:
    return VECTOR_FLOP_PJ_45NM * PJ * chip.process.energy_scale * datapath_factor


def byte_energy(chip: ChipSpec, level: MemoryLevel) -> float:
    """J per byte moved out of `level`: its own figure, else DRAM or node-scaled SRAM."""
    if level.energy_per_byte is not None:
        return level.energy_per_byte
    if level.kind in ("hbm", "dram"):
        return DRAM_BYTE_PJ * PJ
    return SRAM_BYTE_PJ_45NM * PJ * chip.process.energy_scale
