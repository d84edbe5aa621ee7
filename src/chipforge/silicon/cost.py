"""Dies per wafer, yield, and the unit cost of one packaged chip; one-time costs apart.

Dies per wafer: pi (d/2)^2 / A - pi d / sqrt(2 A), d the usable wafer diameter, A the die area with
its scribe street (de Vries, "Investigation of gross die per wafer formulas", IEEE TSM 2005; the
form in REFERENCES.md). Yield: negative binomial, Y = (1 + A D0 / alpha)^-alpha (Stapper), with
spare cores repaired: a die with k <= spares bad cores is sold with those cores fused off.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb, pi, sqrt

from chipforge.errors import SpecError
from chipforge.silicon import floorplan as ar
from chipforge.silicon import interfaces
from chipforge.silicon.interfaces import COWOS_USD_PER_MM2, HBM_FOOTPRINT_MM2, INTERPOSER_SPACING
from chipforge.spec import ChipSpec
from chipforge.spec.nodes import ProcessNode

MM2 = 1e-6
WAFER_DIAMETER_MM = 300.0
EDGE_EXCLUSION_MM = 3.0  # [semi-wafer-area conditions]: 3 mm edge exclusion
SCRIBE_MM = 0.1  # assumption: 60-100 um dicing streets on each side shared by neighbours
ALPHA = 3.0  # defect clustering; 2-3 for clustered defects (REFERENCES.md, Stapper); 3 taken
ORGANIC_PACKAGE_USD = 25.0  # assumption: a flip-chip BGA for a DRAM-attached chip without HBM
# Module assembly and test of a CoWoS-class accelerator (substrate attach, burn-in, final and
# system-level test, the module's board): Silicon Analysts' cost bridge (built on Raymond James
# and Epoch AI estimates, siliconanalysts.com/tools/cost-bridge) puts "test & assembly" at $920
# for H100 SXM5 and $600 for MI300X. The lower figure is taken, and not H100's own, so that the
# H100 cost check is not calibrated on itself. $15 for an organic-package chip (assumption).
TEST_ASSEMBLY_USD = 600.0
TEST_ASSEMBLY_ORGANIC_USD = 15.0
# Share of assembled packages that pass final test; a failure scraps the good dies, HBM and
# interposer in it. 95%: the final-test yield of McFarland, "Microprocessor Design" (McGraw-Hill
# 2006), Tables 3-6 and 3-7 (mainstream and server processor cost examples).
PACKAGE_YIELD = 0.95


def dies_per_wafer(die_area: float) -> float:
    """Gross dies of `die_area` (m2, a square die) on a 300 mm wafer."""
    side = sqrt(die_area / MM2) + SCRIBE_MM
    pitch_area = side * side
    d = WAFER_DIAMETER_MM - 2 * EDGE_EXCLUSION_MM
    gross = pi * (d / 2) ** 2 / pitch_area - pi * d / sqrt(2 * pitch_area)
    return max(float(int(gross)), 0.0)


def yield_nb(area: float, defect_density_per_cm2: float, alpha: float = ALPHA) -> float:
    """Negative-binomial yield of `area` (m2) at D0 (defects per cm2)."""
    if defect_density_per_cm2 < 0:
        raise SpecError(
            f"`defect_density` must be >= 0, not {defect_density_per_cm2}; give defects per cm2"
        )
    return (1 + area * 1e4 * defect_density_per_cm2 / alpha) ** -alpha


def die_yield(chip: ChipSpec, chip_area: ar.Area, d0: float) -> float:
    """Yield of one compute die, counting dies with at most `spares` bad cores as good."""
    dies = chip_area.dies
    phys = ar.physical_cores(chip)
    spares = phys - chip.cores
    if spares <= 0:
        return yield_nb(chip_area.die_area, d0)
    core = repairable_area(chip, chip_area) / phys
    fixed = chip_area.die_area - core * phys / dies
    y_core = yield_nb(core, d0)
    cores_per_die, spares_per_die = phys // dies, spares // dies
    ok = sum(
        comb(cores_per_die, k) * (1 - y_core) ** k * y_core ** (cores_per_die - k)
        for k in range(spares_per_die + 1)
    )
    return yield_nb(fixed, d0) * ok


def repairable_area(chip: ChipSpec, chip_area: ar.Area) -> float:
    """m2 of the per-core blocks (matrix, vector, GPU SM parts, per-core SRAM) with their NoC and
    whitespace shares (the channels between core tiles go with the tiles)."""
    per_core = {"matrix", "vector", "fp64", "register_file", "simt_core"} | {
        f"sram:{m.name}" for m in chip.memory[1:] if m.per_core
    }
    inner = sum(v for k, v in chip_area.blocks.items() if k in per_core)
    return inner * (1 + ar.NOC_FRAC) / (1 - ar.WHITESPACE)


@dataclass(frozen=True)
class Costs:
    """Unit cost of one packaged chip (USD) and the inputs each term comes from."""

    items: dict[str, float]  # the terms of the sum, USD
    inputs: dict[str, float | str]  # wafer price, D0, dies per wafer, yield, ...
    one_time: dict[str, float]  # mask set and design NRE, not in the unit cost

    @property
    def unit_cost(self) -> float:
        return sum(self.items.values())


def unit_cost(
    chip: ChipSpec,
    *,
    node: ProcessNode | None = None,
    wafer_price_usd: float | None = None,
    defect_density_per_cm2: float | None = None,
    hbm_price_per_gb_usd: float | None = None,
) -> Costs:
    """Cost of one packaged `chip`; overrides are for sensitivity studies."""
    node = node or chip.process
    wafer = node.wafer_price_usd if wafer_price_usd is None else wafer_price_usd
    d0 = node.defect_density_per_cm2 if defect_density_per_cm2 is None else defect_density_per_cm2
    if wafer <= 0:
        raise SpecError(f"`wafer_price` must be > 0, not {wafer}; give USD per 300 mm wafer")
    chip_area = ar.area(chip, node)
    dpw = dies_per_wafer(chip_area.die_area)
    y = die_yield(chip, chip_area, d0)
    good_die = wafer / (dpw * y)
    hbm_usd, hbm_inputs = _memory_cost(chip, hbm_price_per_gb_usd)
    package, test = _package_cost(chip, chip_area)
    scrap = (good_die * chip_area.dies + hbm_usd + package) * (1 / PACKAGE_YIELD - 1)
    items = {
        "good_dies": good_die * chip_area.dies,
        "hbm": hbm_usd,
        "packaging": package,
        "packaging_yield_loss": scrap,
        "test_assembly": test,
    }
    inputs = {
        "node": node.name,
        "wafer_price_usd": wafer,
        "defect_density_per_cm2": d0,
        "die_area_mm2": chip_area.die_area / MM2,
        "dies": chip_area.dies,
        "dies_per_wafer": dpw,
        "yield": y,
        "good_die_usd": good_die,
        "package_yield": PACKAGE_YIELD,
        **hbm_inputs,
    }
    one_time = {"mask_set_usd": node.mask_set_usd, "design_nre_usd": node.design_nre_usd}
    return Costs(items=items, inputs=inputs, one_time=one_time)


def _memory_cost(chip: ChipSpec, price_per_gb: float | None) -> tuple[float, dict]:
    level = chip.hbm
    if level.kind != "hbm":
        return 0.0, {"hbm_gb": 0.0}
    gen = interfaces.hbm_generation(level)
    price = gen.price_per_gb_usd if price_per_gb is None else price_per_gb
    stacks, stack_gb = interfaces.hbm_purchase(level)
    gb = float(stacks * stack_gb)  # whole stacks are bought, usable capacity may be less
    return gb * price, {
        "hbm_generation": gen.name,
        "hbm_gb": gb,
        "hbm_usable_gb": level.capacity / 1e9,
        "hbm_stacks": stacks,
        "hbm_gb_per_stack": stack_gb,
        "hbm_price_per_gb_usd": price,
    }


def _package_cost(chip: ChipSpec, chip_area: ar.Area) -> tuple[float, float]:
    if chip.hbm.kind != "hbm":
        return ORGANIC_PACKAGE_USD, TEST_ASSEMBLY_ORGANIC_USD
    stacks = interfaces.hbm_stacks(chip.hbm)
    interposer = (chip_area.total / MM2 + stacks * HBM_FOOTPRINT_MM2) * INTERPOSER_SPACING
    return interposer * COWOS_USD_PER_MM2, TEST_ASSEMBLY_USD
