"""Capex by category, opex per year, TCO per chip-hour and per useful PFLOP-hour, sensitivity
(tornado) and the build-vs-buy break-even volume.

Capex is annuitised over each category's life at the cost of capital; TCO per year = annuities
+ electricity + maintenance. Bought accelerators cost their street price (vendor margin in);
built ones cost `chipforge.silicon.evaluate(chip).unit_cost_usd` plus their share of one-time
costs (masks, design NRE) when a volume is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chipforge.datacenter.racks import Rack
from chipforge.datacenter.site import Assumptions, Site, size
from chipforge.silicon import evaluate
from chipforge.spec import load_chip

HOURS_PER_YEAR = 8760.0


@dataclass(frozen=True)
class Chip:
    """What the datacenter needs to know about one accelerator."""

    name: str
    peak_flops: dict[str, float]
    unit_cost_usd: float  # built: silicon cost; bought: street price
    built: bool
    one_time_usd: float
    hbm_bytes: float
    hbm_bw: float
    cost_parts: dict[str, float] = field(default_factory=dict)
    spec: object = field(default=None, compare=False, repr=False)  # the ChipSpec


def chip_facts(
    rack: Rack, *, wafer_x: float = 1.0, hbm_x: float = 1.0, gpu_x: float = 1.0, spec=None
) -> Chip:
    """Cost and speed of the rack's accelerator (`spec`, else the chip the rack names); `*_x`
    scale wafer, HBM and GPU prices."""
    spec = load_chip(spec if spec is not None else rack.chip)
    return facts_from(
        spec.name, spec, evaluate(spec), rack.market_chip_usd, wafer_x=wafer_x, hbm_x=hbm_x,
        gpu_x=gpu_x,
    )  # fmt: skip


def facts_from(
    name: str,
    spec,
    sil,
    market_usd: float | None = None,
    *,
    wafer_x: float = 1.0,
    hbm_x: float = 1.0,
    gpu_x: float = 1.0,
) -> Chip:
    """`Chip` facts of a spec and its silicon result: built at its silicon cost, or bought at
    `market_usd` (a design point of a sweep is built)."""
    d = sil.to_dict()
    parts = dict(d["breakdown"]["cost_usd"])
    if market_usd is None:
        parts["good_dies"] = parts.get("good_dies", 0.0) * wafer_x
        parts["hbm"] = parts.get("hbm", 0.0) * hbm_x
        cost, built = sum(parts.values()), True
    else:
        cost, built = market_usd * gpu_x, False
    hbm = spec.hbm  # the off-chip memory (HBM or DRAM: the spec puts it first)
    return Chip(
        name=name,
        peak_flops=dict(d["peak_flops_per_s"]),
        unit_cost_usd=cost,
        built=built,
        one_time_usd=float(sum(d.get("one_time_usd", {}).values())),
        hbm_bytes=hbm.capacity if hbm else 0.0,
        hbm_bw=hbm.bandwidth if hbm else 0.0,
        cost_parts=parts,
        spec=spec,
    )


def annuity(capex: float, life_y: float, rate: float) -> float:
    """Yearly payment that repays `capex` over `life_y` years at `rate`."""
    if rate == 0:
        return capex / life_y
    return capex * rate / (1 - (1 + rate) ** -life_y)


def capex(rack: Rack, chip: Chip, site: Site, a: Assumptions, volume: int | None = None) -> dict:
    """Capex by category in USD."""
    per_chip = chip.unit_cost_usd
    if chip.built:
        per_chip = per_chip * a.built_chip_markup + (chip.one_time_usd / volume if volume else 0.0)
    chips = per_chip * site.chips * (1 + a.spares_share)
    racks = rack.other_hw_usd * site.racks
    network = site.chips * (a.nic_usd_per_chip + site.switch_ports_per_chip * a.usd_per_switch_port)
    storage = a.storage_capex_share * (chips + racks + network)
    facility = a.facility_usd_per_it_w * (site.it_capacity_w or site.it_power_w)
    return {
        "chips_usd": chips,
        "racks_servers_usd": racks,
        "network_usd": network,
        "storage_usd": storage,
        "facility_usd": facility,
    }


def opex(cap: dict, site: Site, a: Assumptions) -> dict:
    """Opex per year in USD."""
    energy_kwh = site.facility_power_w * a.power_draw_fraction * HOURS_PER_YEAR / 1e3
    it_capex = cap["chips_usd"] + cap["racks_servers_usd"] + cap["network_usd"] + cap["storage_usd"]
    return {
        "electricity_usd": energy_kwh * a.electricity_usd_per_kwh,
        "maintenance_usd": a.maintenance_it_share * it_capex
        + a.maintenance_facility_share * cap["facility_usd"],
    }


def yearly_capex(cap: dict, a: Assumptions) -> float:
    it = cap["chips_usd"] + cap["racks_servers_usd"] + cap["storage_usd"]
    return (
        annuity(it, a.chip_life_y, a.cost_of_capital)
        + annuity(cap["network_usd"], a.network_life_y, a.cost_of_capital)
        + annuity(cap["facility_usd"], a.facility_life_y, a.cost_of_capital)
    )


def evaluate_site(
    rack: Rack,
    facility_power_w: float | None,
    a: Assumptions,
    *,
    racks: int | None = None,
    dtype: str = "bf16",
    volume: int | None = None,
    chip: Chip | None = None,
    it_power_w: float | None = None,
    grid_w: float | None = None,
) -> dict:
    """Everything about one site: sizing, capex, opex, TCO rates and delivered FLOP/s."""
    chip = chip or chip_facts(rack)
    site = size(rack, facility_power_w, a, racks, it_power_w=it_power_w, grid_w=grid_w)
    cap = capex(rack, chip, site, a, volume)
    op = opex(cap, site, a)
    per_year = yearly_capex(cap, a) + sum(op.values())
    chip_hour = per_year / (site.chips * HOURS_PER_YEAR)
    peak = chip.peak_flops.get(dtype, 0.0)
    useful = peak * a.utilization * a.goodput
    return {
        "chip": chip.name,
        "rack": rack.to_dict(),
        "chips": site.chips,
        "racks": site.racks,
        "cooling": rack.cooling,
        "power_budget_w": facility_power_w,
        "facility_power_w": site.facility_power_w,
        "it_power_w": site.it_power_w,
        "it_capacity_w": site.it_capacity_w,
        **({"grid_power_w": site.grid_power_w} if site.grid_power_w else {}),
        "rack_power_budget_w": site.rack_power_budget_w,
        "all_in_w_per_chip": site.facility_power_w / site.chips,
        "network_tiers": site.network_tiers,
        "chip_unit_cost_usd": chip.unit_cost_usd,
        "chip_built": chip.built,
        "chip_one_time_usd": chip.one_time_usd,
        "capex_usd": {"total": sum(cap.values()), **cap},
        "opex_usd_per_year": {"total": sum(op.values()), **op},
        "tco_usd_per_year": per_year,
        "tco_usd_per_chip_hour": chip_hour,
        "peak_flops_per_s": peak * site.chips,
        "delivered_flops_per_s": useful * site.chips,
        "usd_per_useful_pflop_hour": chip_hour / (useful / 1e15) if useful else float("inf"),
        "dtype": dtype,
        "assumptions": a.__dict__.copy(),
    }


def breakeven_volume(house: dict, gpu: dict, *, gpu_x: float = 1.0) -> float:
    """Chips to build before one-time costs pay back vs buying GPUs for the same useful FLOPs.

    Per built chip we save (GPU lifetime TCO per useful FLOP x the chip's useful FLOPs) minus the
    built chip's lifetime TCO (one-time costs excluded); volume = one-time / saving. `gpu_x`
    scales the GPU price (sensitivity). inf when building never pays back."""
    life_h = house["assumptions"]["chip_life_y"] * HOURS_PER_YEAR
    gpu_chip_hour = gpu["tco_usd_per_chip_hour"] + _gpu_price_hourly(gpu) * (gpu_x - 1)
    ratio = (house["delivered_flops_per_s"] / house["chips"]) / (
        gpu["delivered_flops_per_s"] / gpu["chips"]
    )
    saving = (ratio * gpu_chip_hour - house["tco_usd_per_chip_hour"]) * life_h
    if saving <= 0:
        return float("inf")
    return house["chip_one_time_usd"] / saving


def _gpu_price_hourly(gpu: dict) -> float:
    """The GPU purchase price's share of $/chip-hour (annuitised, with spares)."""
    a = gpu["assumptions"]
    price = gpu["chip_unit_cost_usd"] * (1 + a["spares_share"]) * (1 + a["storage_capex_share"])
    return annuity(price, a["chip_life_y"], a["cost_of_capital"]) / HOURS_PER_YEAR
