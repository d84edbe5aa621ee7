"""Site assumptions and sizing: facility power -> IT power -> racks -> chips.

Every default carries its source (ids are rows of chipforge/data/datacenter.csv). `--power` is
the facility (utility) power; IT power = facility / PUE; network and storage take fixed shares
of IT power; the rest is racks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from chipforge.datacenter.racks import Rack
from chipforge.errors import SpecError


@dataclass(frozen=True)
class Assumptions:
    """Site and finance assumptions; override any with `replace` or the CLI."""

    pue: float = (
        1.2  # [dc-pue-google-2024] 1.09 fleet best; [dc-pue-uptime-2024] new large builds <= 1.3
    )
    network_power_share: float = 0.05  # assumption: scale-out switches + optics ~5% of IT power
    storage_power_share: float = 0.03  # assumption: storage servers ~3% of IT power
    facility_usd_per_it_w: float = (
        15.0  # [dc-capex-standard] $10-12M/MW, [dc-capex-ai] >=$20M/MW liquid; midpoint
    )
    nic_usd_per_chip: float = 1500.0  # assumption: one 800G NIC per accelerator (ConnectX-8 class)
    usd_per_switch_port: float = 1500.0  # assumption: 800G switch port + transceiver, per port
    switch_radix: int = 64  # 51.2T switch at 800G (Tomahawk 5 / Spectrum-X class)
    storage_capex_share: float = 0.03  # assumption: storage ~3% of IT capex
    electricity_usd_per_kwh: float = (
        0.06  # assumption: US industrial ~$0.08/kWh (EIA 2024); Texas PPAs lower
    )
    power_draw_fraction: float = 0.8  # average IT draw / provisioned, training fleets run near full
    chip_life_y: float = 5.0  # hyperscaler server depreciation 5-6 y (MSFT/GOOG 10-K 2023-24)
    network_life_y: float = 5.0
    facility_life_y: float = 20.0  # shell and MEP 15-20 y (dc-capex-standard)
    cost_of_capital: float = 0.08  # assumption: WACC for annuitising capex
    maintenance_it_share: float = (
        0.03  # assumption: IT maintenance/spares per year, share of IT capex
    )
    maintenance_facility_share: float = (
        0.02  # assumption: facility O&M per year, share of facility capex
    )
    built_chip_markup: float = 1.5  # assumption: silicon cost -> delivered module (board, burn-in,
    # system yield, custom-ASIC partner margin); partner gross margins are reported ~50-65%
    spares_share: float = 0.03  # assumption: hot spares bought, share of chips
    goodput: float = 0.92  # [perf-llama3-interruptions] >90% effective training time at 16K GPUs
    utilization: float = 0.40  # MFU: Llama 3 405B 38-43% bf16 on H100 (Llama 3 paper Table 4)

    def check(self) -> Assumptions:
        for field, value in asdict(self).items():
            if value < 0:
                raise SpecError(f"`{field}` must be >= 0, not {value}; pass a non-negative value")
        if self.pue < 1.0:
            raise SpecError(
                f"`pue` must be >= 1.0, not {self.pue}; a facility cannot use less than its IT load"
            )
        for f in ("utilization", "goodput", "power_draw_fraction"):
            if not 0 < getattr(self, f) <= 1:
                raise SpecError(f"`{f}` must be in (0, 1], not {getattr(self, f)}")
        return self

    def with_(self, **overrides) -> Assumptions:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None}).check()


@dataclass(frozen=True)
class Site:
    facility_power_w: float
    it_power_w: float
    rack_power_budget_w: float
    racks: int
    chips: int
    network_tiers: int
    switch_ports_per_chip: int

    def to_dict(self) -> dict:
        return asdict(self)


def network_tiers(chips: int, radix: int) -> int:
    """Fat-tree tiers for `chips` endpoints: k tiers of radix-r switches reach r*(r/2)^(k-1)."""
    tiers = 1
    while radix * (radix / 2) ** (tiers - 1) < chips:
        tiers += 1
    return tiers


def size(
    rack: Rack, facility_power_w: float | None, a: Assumptions, racks: int | None = None
) -> Site:
    """Racks and chips that fit in `facility_power_w`, or the power a fleet of `racks` needs.

    IT power and facility power are those of the racks actually deployed (plus network and
    storage), so the unused remainder of a power budget is neither built nor paid for."""
    shares = 1 + a.network_power_share + a.storage_power_share
    if racks is not None:
        if racks < 1:
            raise SpecError(f"`--racks` must be >= 1, not {racks}")
        it = racks * rack.power_w * shares
        chips = racks * rack.chips
        tiers = network_tiers(chips, a.switch_radix)
        # each tier below the top has an up and a down port per endpoint; the top only down
        return Site(it * a.pue, it, racks * rack.power_w, racks, chips, tiers, 2 * tiers - 1)
    if facility_power_w is None or facility_power_w <= 0:
        raise SpecError(f"`--power` must be > 0, not {facility_power_w} W")
    it = facility_power_w / a.pue
    budget = it / shares
    racks = math.floor(budget / rack.power_w)
    if racks < 1:
        need = rack.power_w * shares * a.pue
        raise SpecError(
            f"`--power` {facility_power_w:.4g} W is too small for one {rack.name} rack "
            f"({rack.power_w:.4g} W IT); pass at least {need:.4g} W"
        )
    return size(rack, None, a, racks=racks)
