"""Power: dynamic energy x activity + leakage, at TDP (every engine at its peak) or for a Result.

Dynamic energy per operation is Horowitz's 45 nm table (ISSCC 2014; published.csv semi-e-*)
scaled by the node's `energy_scale` (spec/nodes.toml):
- a MAC is a multiply in the input format plus an add in the accumulator format: fp16 multiply
  1.1 pJ and fp32 add 0.9 pJ; int8 multiply 0.2 pJ and int32 add 0.1 pJ. Other widths scale the
  multiply with the square of the mantissa (array multiplier partial products; an assumption).
- a vector fp32 FMA: fp32 multiply 3.7 pJ + fp32 add 0.9 pJ; a transcendental as 2 FMAs.
- bytes moved at each memory level: `perf.energy.byte_energy` (the level's own figure, or the
  node-scaled 1 MB SRAM read), the same figures the perf engine charges. At TDP an on-chip level
  carries the operand stream the matrix units draw at peak, capped at its bandwidth: an SRAM
  burns energy per access, and its bandwidth is what it could deliver, not what a GEMM asks.
  The stream follows from the array's operand reuse (`operand_bytes_per_mac`).
- partial sums of a GPU tensor core live in the register file (Hopper) or tensor memory
  (Blackwell) and are read and written once per MMA instruction (`accumulator_bytes_per_mac`),
  at the access energy of a 64 KiB SRAM (`sram_byte_energy`).
- SerDes: 5 pJ/bit (assumption: long-reach 100G-class links are 3-7 pJ/bit).
The clock tree and control take CLOCK_SHARE of on-die dynamic power; leakage is the node's
`leakage_frac` of total power at full load, and the same watts at any activity (leakage depends on
voltage and temperature, not on switching).
"""

from __future__ import annotations

from dataclasses import dataclass

from chipforge.perf.energy import byte_energy
from chipforge.perf.result import Result
from chipforge.silicon.floorplan import GPU_RF_BYTES
from chipforge.silicon.gates import FORMATS, SFU_FMA
from chipforge.spec import ChipSpec
from chipforge.spec.nodes import ProcessNode

PJ = 1e-12
FP16_MUL_PJ, FP32_ADD_PJ = 1.1, 0.9  # Horowitz 2014 [semi-e-fp16-mul, semi-e-fp32-add]
FP32_MUL_PJ = 3.7  # [semi-e-fp32-mul]
INT8_MUL_PJ, INT32_ADD_PJ = 0.2, 0.1  # [semi-e-int8-mul, semi-e-int32-add]
SERDES_PJ_PER_BIT = 5.0  # assumption (module docstring)
# Clock generation and distribution as a share of on-die dynamic power: "at least a quarter of the
# power budget of existing microprocessors" (Duarte, Vijaykrishnan & Irwin, "A clock power model to
# evaluate impact of architectural and technology optimizations", IEEE TVLSI 10(6), 2002); 30-40%
# of dynamic power in high-performance designs is the figure repeated across microprocessor papers.
# 0.30 of on-die dynamic power, i.e. 0.30 / 0.70 on top of the datapath and SRAM energy (the
# earlier model added 0.30 on top, which is a 23% share, below either source).
CLOCK_SHARE = 0.30
# A partial sum (fp32 or int32) is read and written, 4 + 4 bytes, once per pass through the
# hardware's reduction depth: the array's rows (the K side) for a weight-stationary systolic
# array, one MMA instruction's k for a tensor core.
ACC_RW_BYTES = 8.0
# PTX ISA (mma.sync, wgmma.mma_async, tcgen05.mma shapes): an MMA instruction reduces over 32 bytes
# of each input operand: k = 16 for bf16/fp16, 32 for fp8/int8, 8 for tf32.
TC_K_BYTES = 32.0
# The register file of one SM sub-partition, 64 KiB (4 per SM: Volta-Hopper whitepapers); the
# Blackwell tensor memory, another 256 KiB SRAM per SM beside the tensor cores, taken alike.
RF_BANK_BYTES = GPU_RF_BYTES / 4
# Horowitz 2014 (45 nm) 64-bit SRAM reads: 32 KB 20 pJ [semi-e-sram32k], 1 MB 100 pJ
# [semi-e-sram1m]; between them energy grows as capacity^(ln 5 / ln 32) = capacity^0.46 (the
# word- and bit-line length of a square array grows as sqrt(capacity)).
SRAM_32K_BYTE_PJ = 20 / 8
SRAM_SIZE_EXPONENT = 0.4644  # ln(100 / 20) / ln(1024 / 32)


def mac_energy(dtype: str, node: ProcessNode) -> float:
    """J per multiply-accumulate in `dtype` on `node`."""
    kind, bits, _, _ = FORMATS[dtype]
    if kind == "int":
        pj = INT8_MUL_PJ * (bits / 8) ** 2 + INT32_ADD_PJ
    else:
        pj = FP16_MUL_PJ * (bits / 11) ** 2 + FP32_ADD_PJ
    return pj * PJ * node.energy_scale


def fma_energy(node: ProcessNode) -> float:
    """J per fp32 vector FMA."""
    return (FP32_MUL_PJ + FP32_ADD_PJ) * PJ * node.energy_scale


def sram_byte_energy(capacity_bytes: float, node: ProcessNode) -> float:
    """J per byte read from an SRAM array of `capacity_bytes` on `node` (Horowitz, interpolated)."""
    ratio = capacity_bytes / 32768
    return SRAM_32K_BYTE_PJ * ratio**SRAM_SIZE_EXPONENT * PJ * node.energy_scale


def _input_bytes(dtype: str) -> float:
    return FORMATS[dtype][3] / 8


def operand_bytes_per_mac(chip: ChipSpec, dtype: str) -> float:
    """Bytes the matrix units stream through on-chip SRAM per MAC. Weight-stationary: an input
    serves a row of `cols` MACs, a partial sum leaves after `rows` (read and written). Tensor
    core and output-stationary: the A and B tiles of a rows x cols output tile, each element
    reused across the other side."""
    m = chip.matrix
    width = _input_bytes(dtype)
    if m.dataflow == "weight-stationary":
        return width / m.cols + ACC_RW_BYTES / m.rows
    return width * (1 / m.rows + 1 / m.cols)


def accumulator_bytes_per_mac(chip: ChipSpec, dtype: str) -> float:
    """Register-file bytes per MAC for a tensor core's partial sums (0 for systolic arrays,
    whose partial sums stay in the array until they leave through the operand stream)."""
    if chip.matrix.dataflow != "tensor-core":
        return 0.0
    return ACC_RW_BYTES * _input_bytes(dtype) / TC_K_BYTES


@dataclass(frozen=True)
class Power:
    """Power by component (W) at one activity."""

    parts: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def to_dict(self) -> dict:
        return {"power_w": self.total, "parts_w": dict(self.parts)}


def _finish(
    ondie: dict[str, float],
    offdie: dict[str, float],
    node: ProcessNode,
    leakage: float | None = None,
) -> Power:
    """Add the clock share and leakage: `leakage` watts, or the node's share of this total."""
    parts = dict(ondie)
    parts["clock_control"] = CLOCK_SHARE / (1 - CLOCK_SHARE) * sum(ondie.values())
    parts.update(offdie)
    dynamic = sum(parts.values())
    if leakage is None:
        leakage = dynamic * node.leakage_frac / (1 - node.leakage_frac)
    parts["leakage"] = leakage
    return Power(parts)


def power_at_peak(chip: ChipSpec, dtype: str, node: ProcessNode | None = None) -> Power:
    """Every engine at its peak: matrix units in `dtype`, vector units, on-chip levels at the
    operand stream of the matrix units (capped at their bandwidth), the register file's partial
    sums, off-chip memory and links at full bandwidth. This is the model's TDP."""
    node = node or chip.process
    chip = chip.model_copy(update={"node": node.name})
    macs = chip.peak_flops(dtype) / 2
    ondie = {"matrix": macs * mac_energy(dtype, node)}
    fma_per_s = chip.vector_flops / 2 + SFU_FMA * chip.transcendentals_per_s
    ondie["vector"] = fma_per_s * fma_energy(node)
    stream = macs * operand_bytes_per_mac(chip, dtype)
    for level in chip.memory[1:]:
        ondie[f"sram:{level.name}"] = min(level.bandwidth, stream) * byte_energy(chip, level)
    accumulators = macs * accumulator_bytes_per_mac(chip, dtype)
    if accumulators:
        ondie["register_file"] = accumulators * sram_byte_energy(RF_BANK_BYTES, node)
    offdie = {
        "memory": chip.hbm.bandwidth * byte_energy(chip, chip.hbm),
        "serdes": sum(link.bandwidth for link in chip.links) * 8 * SERDES_PJ_PER_BIT * PJ,
    }
    return _finish(ondie, offdie, node)


def main_dtype(chip: ChipSpec) -> str:
    """bf16 when the matrix unit runs it, else its widest dtype."""
    macs = chip.matrix.macs_per_cycle
    return "bf16" if "bf16" in macs else min(macs, key=lambda d: macs[d])


def power_for_result(chip: ChipSpec, result: Result, node: ProcessNode | None = None) -> Power:
    """Average power while running `result`: its FLOPs and bytes at the model's energies over its
    time, the clock share, and the leakage of the chip at TDP."""
    node = node or chip.process
    chip = chip.model_copy(update={"node": node.name})
    time_s = result.time_s
    assert time_s > 0, "a result with no time has no power"
    dtype = main_dtype(chip)
    macs = result.flops / 2
    ondie = {"matrix": macs * mac_energy(dtype, node) / time_s}
    accumulators = macs * accumulator_bytes_per_mac(chip, dtype)
    if accumulators:
        ondie["register_file"] = accumulators * sram_byte_energy(RF_BANK_BYTES, node) / time_s
    offdie = {"memory": 0.0}
    levels = {m.name: m for m in chip.memory}
    for name, nbytes in result.bytes_by_level.items():
        if name not in levels:
            continue  # interconnect traffic is costed by the cluster model
        joules = nbytes * byte_energy(chip, levels[name])
        if levels[name] is chip.hbm:
            offdie["memory"] += joules / time_s
        else:
            ondie[f"sram:{name}"] = joules / time_s
    leakage = power_at_peak(chip, dtype, node).parts["leakage"]
    return _finish(ondie, offdie, node, leakage)
