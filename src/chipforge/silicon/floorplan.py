"""Die area by block, from the spec alone, and the split into chiplets over the reticle.

Blocks: matrix units (gate-count model, `gates`), vector units (fp32 FMA lanes and transcendental
units), SRAM (bitcell / array efficiency), caches (plus tags), off-chip memory PHYs, SerDes, the
SIMT core overhead of GPU cores, NoC/control as a share, I/O, and the die-to-die interface when
the design is split into chiplets. Logic gates become m2 through the node's `gate_density`.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from chipforge.errors import Infeasible
from chipforge.silicon import gates, interfaces
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
# Most compute dies one package holds. Assumption: CoWoS-L interposers reach ~3.3 reticles in
# 2025-26 (TSMC roadmap), i.e. at most ~4 reticle-sized dies; 8 smaller dies (MI300X) is the
# most shipped.
MAX_DIES = 8


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


def matrix_area(chip: ChipSpec, node: ProcessNode) -> float:
    """m2 of all matrix units; a double-buffered weight-stationary cell holds two weights."""
    copies = 2 if chip.matrix.dataflow == "weight-stationary" and chip.matrix.double_buffered else 1
    per_unit = gates.matrix_unit_ge(chip.matrix.macs_per_cycle, weight_copies=copies)
    return per_unit * chip.matrix.count * physical_cores(chip) / node.gate_density


def vector_area(chip: ChipSpec, node: ProcessNode) -> float:
    """m2 of fp32 FMA lanes (2 FLOP each) and transcendental units."""
    lanes = chip.vector.flops_per_cycle / 2 + gates.SFU_FMA * chip.vector.transcendentals_per_cycle
    return lanes * gates.fma_ge() * chip.vector.count * physical_cores(chip) / node.gate_density


def sram_area(chip: ChipSpec, node: ProcessNode) -> dict[str, float]:
    """m2 per on-chip memory level (caches with their tags); per-core levels on every core."""
    out = {}
    for level in chip.memory[1:]:
        copies = physical_cores(chip) if level.per_core else 1
        bits = level.capacity * 8 * copies
        array = bits * node.sram_bitcell_um2 * 1e-12 / node.sram_macro_efficiency
        out[f"sram:{level.name}"] = array * (1 + CACHE_TAG_FRAC if level.kind == "cache" else 1)
    return out


def simt_area(chip: ChipSpec, node: ProcessNode) -> float:
    """m2 of the SIMT machinery of GPU cores (register files, schedulers, load/store, texture,
    fp64), which a ChipSpec does not describe: a per-core gate budget calibrated on V100
    (`reference.simt_core_ge`), never on the chips it is tested against. Zero for systolic cores."""
    if chip.matrix.dataflow != "tensor-core":
        return 0.0
    from chipforge.silicon.reference import simt_core_ge

    return simt_core_ge() * physical_cores(chip) / node.gate_density


def core_blocks(chip: ChipSpec, node: ProcessNode) -> dict[str, float]:
    """Every block but the die-to-die interface, for the whole package (m2)."""
    blocks = {
        "matrix": matrix_area(chip, node),
        "vector": vector_area(chip, node),
        "simt_core": simt_area(chip, node),
        **sram_area(chip, node),
    }
    blocks["noc_control"] = NOC_FRAC * sum(blocks.values())
    memory_phy, _ = interfaces.offchip_memory_area(chip)
    blocks["memory_phy"] = memory_phy
    blocks["serdes"] = interfaces.serdes_area(chip)
    blocks["io"] = interfaces.IO_MM2 * MM2
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
