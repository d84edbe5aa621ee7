"""Die area by block, from the spec alone, and the split into chiplets over the reticle.

Blocks: matrix units (gate-count model, `gates`), vector units (fp32 FMA lanes and transcendental
units), SRAM (bitcell / array efficiency), caches (plus tags), off-chip memory PHYs, SerDes, the
GPU SM parts a ChipSpec leaves out (FP64, register file, SIMT machinery), NoC/control as a share,
I/O, and the die-to-die interface when the design is split into chiplets. Logic is synthesized
NAND2 equivalents (the project's RTL where it exists) over the node's standard-cell density, times
one global IMPLEMENTATION factor (placement utilization and timing closure).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from math import ceil

from chipforge.errors import Infeasible
from chipforge.silicon import gates, interfaces, reference
from chipforge.spec import ChipSpec
from chipforge.spec.nodes import ProcessNode

MM2 = 1e-6
RETICLE = 858e-6  # m2: 26 x 33 mm scanner field [semi-reticle]
# Tags, state and the cache controller as a share of a cache's data array. Assumption: a 40-bit
# tag + state per 128-byte line is 4%; MSHRs, fill buffers and the slice controller about as much.
CACHE_TAG_FRAC = 0.10
# On-chip network, clocking, global control and DMA engines as a share of core logic + SRAM.
# Assumption: 10%. The TPU v1 floor plan (Jouppi et al. ISCA 2017, Fig. 2) gives control 2%;
# GPUs and multi-core TPUs spend more on crossbars and NoC, so 10% is taken for all.
NOC_FRAC = 0.10
# Die-to-die interface (NV-HBI, UCIe-class) as a share of each chiplet's area when a design has more
# than one compute die. Assumption: 5% (no vendor publishes the area; UCIe advanced-package PHYs
# move ~1 TB/s per mm of shoreline, so a 10 TB/s link is a few tens of mm2 per die).
D2D_FRAC = 0.05
# Chip-level whitespace: top-level routing channels, power grid straps, clock spines, pad and
# bump keep-outs, fill between blocks, as a share of the die. 0.21: the TPU v1 floor plan (Jouppi
# et al., ISCA 2017, Fig. 2 caption) gives data buffers 37% of the die, compute 30%, I/O 10% and
# control 2%, so 21% is none of them; the only accelerator floor plan with published shares. One
# global constant for every chip; for GPUs the V100 calibration of the SIMT ratio is taken net of
# it (calibrated_simt_ratio), so there it moves area from "simt_core" to "whitespace". TPU v1's own
# area check is therefore not independent of it.
WHITESPACE = 0.21
# Most compute dies one package holds. Assumption: CoWoS-L interposers reach ~3.3 reticles in
# 2025-26 (TSMC roadmap), i.e. at most ~4 reticle-sized dies; 8 smaller dies (MI300X) is the
# most shipped.
MAX_DIES = 8
# Laid-out logic area / placed standard-cell area of synthesized gates: 1 / placement utilization
# x timing closure. Utilization 0.5: "40-55% for high-performance designs (CPU, GPU cores)",
# 60-70% for ordinary SoC blocks (ecrionix.org, "RTL to silicon", ch. 3 Floorplan; 70% is the
# common SoC assumption, chipbuddyvlsi.com vol. 1 ch. 12). Timing closure 1.5: assumption, cell
# upsizing, buffering and fast adders at GHz clocks over Yosys' unconstrained generic mapping (the
# same 1.5 as gates.PREFIX_ADDER). One global constant, set from these sources, fitted to no chip.
PLACEMENT_UTILIZATION = 0.5
TIMING_CLOSURE = 1.5
IMPLEMENTATION = TIMING_CLOSURE / PLACEMENT_UTILIZATION
# NVIDIA data-center SMs: 65,536 32-bit registers (256 KiB) per SM and FP64 lanes at half the FP32
# lanes (Volta, Ampere and Hopper whitepapers: 64/32, 64/32, 128/64 FP32/FP64 per SM). AMD's CDNA 3
# CU alike: FP64 vector 81.7 TFLOP/s, half the 163.4 of packed FP32 (MI300X data sheet).
GPU_RF_BYTES = 256 * 1024
GPU_FP64_PER_FP32 = 0.5
# First year each GPU family's matrix units run FP64, by family (the year alone does not hold:
# AMD's 2020 part had none). NVIDIA's tensor cores since Ampere (A100 19.5 TFLOP/s FP64 tensor vs
# 9.7 vector, Ampere whitepaper; H100 66.9 vs 33.5 [hw-h100-fp64-tc]), Volta's not. AMD's matrix
# cores since CDNA 2 (MI250X 95.7 TFLOP/s FP64 matrix vs 47.9 vector, MI250X data sheet; MI300X
# 163.4 vs 81.7, MI300X data sheet); CDNA 1's (MI100, 2020: 11.5 TFLOP/s FP64, vector only) not.
# Other families: no FP64 matrix format (assumption: no ML accelerator has published one). The
# FP64 format is one more format of the matrix unit: gates.MULTI_FORMAT_FRAC of its widest datapath.
GPU_FP64_MATRIX_SINCE = {"nvidia-gpu": 2020, "amd-gpu": 2021}
# Register-file bit area as a multiple of an SRAM array bit. Assumption: banked 1R1W register files
# use 8T two-port cells and more periphery per bit, ~2x a 6T high-density array.
RF_BIT_FACTOR = 2.0


@dataclass(frozen=True)
class Area:
    """Silicon area of one package's compute dies, by block (m2, all dies together)."""

    blocks: dict[str, float]
    dies: int
    hbm: str  # e.g. "5 x hbm3"

    @property
    def total(self) -> float:
        return sum(self.blocks.values())

    @property
    def die_area(self) -> float:
        """m2 of one compute die."""
        return self.total / self.dies

    @property
    def fits_reticle(self) -> bool:
        return self.die_area <= RETICLE

    def to_dict(self) -> dict:
        return {
            "die_area_mm2": self.die_area / MM2,
            "total_area_mm2": self.total / MM2,
            "dies": self.dies,
            "fits_reticle": self.fits_reticle,
            "reticle_mm2": RETICLE / MM2,
            "offchip_memory": self.hbm,
            "blocks_mm2": {k: v / MM2 for k, v in self.blocks.items()},
        }


def physical_cores(chip: ChipSpec) -> int:
    return chip.physical_cores or chip.cores


def logic_area(gate_equivalents: float, node: ProcessNode) -> float:
    """m2 of laid-out logic for synthesized NAND2 equivalents on `node`."""
    return gate_equivalents / node.gate_density * IMPLEMENTATION


def matrix_area(chip: ChipSpec, node: ProcessNode) -> float:
    """m2 of all matrix units, from the RTL-synthesized PE (double-buffered weights)."""
    per_unit = gates.matrix_unit_ge(chip.matrix.macs_per_cycle)
    return logic_area(per_unit * chip.matrix.count * physical_cores(chip), node)


def vector_area(chip: ChipSpec, node: ProcessNode) -> float:
    """m2 of fp32 FMA lanes (2 FLOP each) and transcendental units."""
    lanes = chip.vector.flops_per_cycle / 2 + gates.SFU_FMA * chip.vector.transcendentals_per_cycle
    return logic_area(lanes * gates.fma_ge() * chip.vector.count * physical_cores(chip), node)


def gpu_sm_blocks(
    chip: ChipSpec, node: ProcessNode, simt_ratio: float | None = None
) -> dict[str, float]:
    """m2 of what a ChipSpec leaves out of a GPU SM or CU: FP64 lanes (and FP64 in the matrix
    units where `has_fp64_matrix`), the register file, and the
    SIMT machinery (schedulers, operand collectors, load/store, texture, instruction caches, and
    the GPU uncore) as `calibrated_simt_ratio()` x the SM's datapath logic, calibrated on V100."""
    if chip.matrix.dataflow != "tensor-core":
        return {}
    if simt_ratio is None:
        simt_ratio = calibrated_simt_ratio()
    cores = physical_cores(chip)
    fp64 = chip.vector.flops_per_cycle / 2 * GPU_FP64_PER_FP32 * gates.fma_ge("fp64")
    if has_fp64_matrix(chip):
        formats = len(chip.matrix.macs_per_cycle)
        widest = gates.matrix_unit_ge(chip.matrix.macs_per_cycle) / (
            1 + gates.MULTI_FORMAT_FRAC * (formats - 1)
        )
        fp64 += gates.MULTI_FORMAT_FRAC * widest * chip.matrix.count
    out = {
        "fp64": logic_area(fp64 * cores, node),
        "register_file": GPU_RF_BYTES * 8 * cores * sram_bit_area(node) * RF_BIT_FACTOR,
    }
    datapath = matrix_area(chip, node) + vector_area(chip, node) + out["fp64"]
    out["simt_core"] = simt_ratio * datapath
    return out


def has_fp64_matrix(chip: ChipSpec) -> bool:
    """Whether the chip's matrix units run FP64 (`GPU_FP64_MATRIX_SINCE`, by family and year)."""
    since = GPU_FP64_MATRIX_SINCE.get(chip.family)
    return since is not None and chip.year >= since


def sram_bit_area(node: ProcessNode) -> float:
    """m2 per bit of a product-level SRAM array."""
    return node.sram_bitcell_um2 * 1e-12 / node.sram_macro_efficiency


def sram_area(chip: ChipSpec, node: ProcessNode) -> dict[str, float]:
    """m2 per on-chip memory level (caches with their tags); per-core levels on every core."""
    out = {}
    for level in chip.memory[1:]:
        copies = physical_cores(chip) if level.per_core else 1
        bits = level.capacity * 8 * copies
        array = bits * sram_bit_area(node)
        out[f"sram:{level.name}"] = array * (1 + CACHE_TAG_FRAC if level.kind == "cache" else 1)
    return out


def core_blocks(chip: ChipSpec, node: ProcessNode) -> dict[str, float]:
    """Every block but the die-to-die interface, for the whole package (m2)."""
    blocks = {
        "matrix": matrix_area(chip, node),
        "vector": vector_area(chip, node),
        **gpu_sm_blocks(chip, node),
        **sram_area(chip, node),
    }
    blocks["noc_control"] = NOC_FRAC * sum(blocks.values())
    memory_phy, _ = interfaces.offchip_memory_area(chip)
    blocks["memory_phy"] = memory_phy
    blocks["serdes"] = interfaces.serdes_area(chip)
    blocks["io"] = interfaces.IO_MM2 * MM2
    blocks["whitespace"] = WHITESPACE / (1 - WHITESPACE) * sum(blocks.values())
    return {k: v for k, v in blocks.items() if v > 0 or k == "matrix"}


def area(chip: ChipSpec, node: ProcessNode | None = None) -> Area:
    """Area of `chip` on its own node or on `node`, split into chiplets if over the reticle."""
    node = node or chip.process
    blocks = core_blocks(chip, node)
    _, hbm = interfaces.offchip_memory_area(chip)
    base = sum(blocks.values())
    dies = chiplet_count(base, chip.dies)
    if dies > 1:
        blocks["d2d"] = base * D2D_FRAC / (1 - D2D_FRAC)
    return Area(blocks=blocks, dies=dies, hbm=hbm)


def chiplet_count(base_area: float, spec_dies: int) -> int:
    """Dies needed so each (with its die-to-die share) fits the reticle; at least the spec's."""
    dies = max(spec_dies, 1)
    if dies == 1 and base_area <= RETICLE:
        return 1
    dies = max(dies, 2, ceil(base_area / (1 - D2D_FRAC) / RETICLE - 1e-12))
    if dies > MAX_DIES:
        raise Infeasible(
            f"`chip` needs {dies} reticle-sized dies ({base_area / MM2:,.0f} mm2 of silicon), "
            f"more than the {MAX_DIES} a package holds; shrink the matrix units or on-chip SRAM, "
            "or choose a denser node with --node"
        )
    return dies


@cache
def calibrated_simt_ratio() -> float:
    """SIMT machinery per unit of SM datapath area (see `silicon.reference`): V100's die net of
    the chip-level whitespace, minus every block the model derives, over its SM datapath (tensor
    cores, FP32, SFU and FP64 lanes)."""
    chip = reference.v100()
    node = chip.process
    sm = gpu_sm_blocks(chip, node, simt_ratio=0.0)
    datapath = matrix_area(chip, node) + vector_area(chip, node) + sm["fp64"]
    inner = sum(sram_area(chip, node).values()) + sm["register_file"]
    memory_phy, _ = interfaces.offchip_memory_area(chip)
    edge = memory_phy + interfaces.serdes_area(chip) + interfaces.IO_MM2 * reference.MM2
    die = reference.V100_DIE_MM2 * reference.MM2
    simt = (die * (1 - WHITESPACE) - edge) / (1 + NOC_FRAC) - inner - datapath
    assert simt > 0, "V100 calibration left no area for the SIMT machinery"
    return simt / datapath
