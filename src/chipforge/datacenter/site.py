"""Site assumptions and sizing: grid or facility power -> IT power -> racks -> chips.

Every default carries its source (ids are rows of chipforge/data/datacenter.csv). Three ways in:
- `--power` is the facility power the racks draw on average: IT = facility / average PUE;
- `--it-power` is the provisioned IT capacity: racks are placed at their typical draw times the
  provisioning headroom (`it_headroom`), or at their power as given where that is already a
  maximum (`Rack.power_basis = "max"`: datasheet maxima, sums of TDPs);
- `--grid` is the utility capacity: IT capacity = grid x usable share under the electrical
  redundancy (`redundancy`) / design-peak PUE (`pue_peak`), then as `--it-power`.
Network and storage take fixed shares of IT power; the rest is racks. Energy is always charged
at the average PUE; the peak PUE only sizes. Held-out campus checks: data/campuses.csv.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from chipforge.datacenter.racks import Rack
from chipforge.errors import SpecError, did_you_mean

MAX_ASSUMPTION = 1e12  # any site assumption (W, USD, shares, years): far beyond a real site
MAX_PUE = 10.0  # the worst facilities measured are near 3
MAX_SITE_W = 1e13  # --power, --grid, --it-power: 10 TW, several times the world's average draw


def site_watts(w: float, name: str, shown=None, *, error: type[Exception] = SpecError) -> float:
    """A site's power `w` in W (a scenario's sites, decide's --grid / --it-power, a sweep's
    [site] power) if it is > 0 and at most MAX_SITE_W; the error names it as `name` and shows
    the value as given (`shown`; default: `w` in W)."""
    if not 0 < w <= MAX_SITE_W:
        shown = f"{w:g} W" if shown is None else shown
        raise error(f"{name} must be > 0 and at most {MAX_SITE_W:g} W (10 TW), not {shown}")
    return w


@dataclass(frozen=True)
class Assumptions:
    """Site and finance assumptions; override any with `replace` or the CLI."""

    pue: float = (
        1.2  # [dc-pue-google-2024] 1.09 fleet best; [dc-pue-uptime-2024] new large builds <= 1.3
    )
    # Design-peak PUE sizes the electrical plant: cooling on the hottest hour, not the yearly
    # average (peak vs seasonal PUE are distinct figures [dc-pue-peak-vs-annual]). 1.35 = the
    # average 1.2 plus the chillers/dry coolers at design-day conditions: assumption, between
    # new large builds (<= 1.3) and the industry average 1.56 [dc-pue-uptime-2024]
    pue_peak: float = 1.35
    # Usable share of grid capacity under the electrical redundancy: N = 1, N+1 = 0.8 (four
    # blocks carry the load, a fifth is spare [dc-redundancy-n1]; Tier III, concurrently
    # maintainable, the common choice [dc-redundancy-tiers]), 2N = 0.5 (Tier IV)
    redundancy: float = 0.8
    # Provisioned IT per watt of typical rack draw: NVL72 power shelves 132 kW for ~120 kW
    # typical [dc-nvl72-power] = 1.1
    it_headroom: float = 1.1
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
    # The rack template: a chip without a rack preset (a chip TOML) gets a rack derived from
    # these (`racks.derive_rack`); the house rack (forge-n3-rack) is this template applied to
    # forge-n3 (64 x (1100 + 150 + 94) W x 1.05 = 90 kW).
    rack_power_w: float = 120e3  # [dc-nvl72-power] the liquid-cooled rack envelope NVL72 forces
    host_w_per_chip: float = 150.0  # assumption: 16 host CPUs x 600 W per 64 chips (forge-n3-rack)
    network_w_per_chip: float = 94.0  # assumption: ~6 kW of retimers, optics, NICs per 64 chips
    rack_overhead: float = 0.05  # assumption: fans, pumps and 54 V conversion, share of rack power
    other_hw_usd_per_chip: float = 5000.0  # assumption: hosts, boards, cooling per chip
    # (forge-n3-rack's $320k / 64; NVL72's non-GPU content is ~$6.7k per GPU [dc-nvl72-price])

    def check(self) -> Assumptions:
        for field, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SpecError(f"`{field}` must be a number, not {value!r}")
            if not math.isfinite(value) or value < 0:
                raise SpecError(f"`{field}` must be a finite number >= 0, not {value}")
            if value > MAX_ASSUMPTION:  # products of a few such stay finite
                raise SpecError(f"`{field}` must be at most {MAX_ASSUMPTION:g}, not {value:g}")
        for f in ("chip_life_y", "network_life_y", "facility_life_y"):
            if not 0.1 <= getattr(self, f) <= 100:  # an annuity over 1e-300 years divides by 0
                raise SpecError(f"`{f}` must be 0.1 to 100 years, not {getattr(self, f)}")
        if not 0 <= self.cost_of_capital <= 1:
            raise SpecError(f"`cost_of_capital` must be in [0, 1], not {self.cost_of_capital}")
        if self.switch_radix <= 2 or self.switch_radix != int(self.switch_radix):
            # a fat tree grows by r/2 per tier: it never ends for r <= 2
            raise SpecError(f"`switch_radix` must be a whole number of ports > 2, not "
                            f"{self.switch_radix}")  # fmt: skip
        for f in ("pue", "pue_peak"):
            if getattr(self, f) > MAX_PUE:
                raise SpecError(f"`{f}` must be at most {MAX_PUE:g}, not {getattr(self, f):g}")
        if not 0 < self.redundancy <= 1:
            raise SpecError(
                f"`redundancy` must be in (0, 1] (usable share of the grid: N 1, N+1 0.8, 2N 0.5),"
                f" not {self.redundancy}"
            )
        if self.it_headroom < 1.0:
            raise SpecError(f"`it_headroom` must be >= 1.0, not {self.it_headroom}")
        if self.pue_peak < 1.0:
            raise SpecError(f"`pue_peak` must be >= 1.0, not {self.pue_peak}")
        if self.pue < 1.0:
            raise SpecError(
                f"`pue` must be >= 1.0, not {self.pue}; a facility cannot use less than its IT load"
            )
        for f in ("utilization", "goodput", "power_draw_fraction"):
            if not 0 < getattr(self, f) <= 1:
                raise SpecError(f"`{f}` must be in (0, 1], not {getattr(self, f)}")
        zeros = {f: 0.0 for f, v in asdict(self).items() if v == 0 and math.copysign(1, v) < 0}
        return replace(self, **zeros) if zeros else self  # -0.0 would print as a cost of $-0

    def with_(self, **overrides) -> Assumptions:
        unknown = sorted(set(overrides) - set(SOURCES))
        if unknown:
            raise SpecError(
                f"`{unknown[0]}` is not a site assumption{did_you_mean(unknown[0], SOURCES)}; "
                f"known: {', '.join(SOURCES)}"
            )
        return replace(self, **{k: v for k, v in overrides.items() if v is not None}).check()

    def origins(self) -> list[dict]:
        """Each assumption's key, value and where it comes from: the user, or the default's
        source."""
        default = Assumptions()
        return [
            {
                "key": k,
                "value": v,
                "origin": "user" if v != getattr(default, k) else f"default: {SOURCES[k]}",
            }
            for k, v in asdict(self).items()
        ]


# where each default comes from (ids: rows of chipforge/data/datacenter.csv)
SOURCES = {
    "pue": "dc-pue-google-2024 (1.09 fleet best), dc-pue-uptime-2024 (new builds <= 1.3)",
    "pue_peak": "assumption (design-day PUE; dc-pue-peak-vs-annual, dc-pue-uptime-2024)",
    "redundancy": "dc-redundancy-n1, dc-redundancy-tiers (N+1: 0.8 of the grid usable)",
    "it_headroom": "dc-nvl72-power (power shelves 132 kW for ~120 kW typical)",
    "network_power_share": "assumption (scale-out switches and optics ~5% of IT power)",
    "storage_power_share": "assumption (storage servers ~3% of IT power)",
    "facility_usd_per_it_w": "dc-capex-standard $10-12M/MW, dc-capex-ai >= $20M/MW; midpoint",
    "nic_usd_per_chip": "assumption (one 800G NIC per accelerator)",
    "usd_per_switch_port": "assumption (800G switch port + transceiver)",
    "switch_radix": "51.2T switch at 800G (Tomahawk 5 / Spectrum-X class)",
    "storage_capex_share": "assumption (storage ~3% of IT capex)",
    "electricity_usd_per_kwh": "assumption (US industrial ~$0.08/kWh, EIA 2024; PPAs lower)",
    "power_draw_fraction": "assumption (training fleets run near full draw)",
    "chip_life_y": "hyperscaler server depreciation 5-6 years (MSFT/GOOG 10-K 2023-24)",
    "network_life_y": "assumption (as servers)",
    "facility_life_y": "dc-capex-standard (shell and MEP 15-20 years)",
    "cost_of_capital": "assumption (WACC)",
    "maintenance_it_share": "assumption (IT maintenance and spares per year)",
    "maintenance_facility_share": "assumption (facility O&M per year)",
    "built_chip_markup": "assumption (board, burn-in, system yield, partner margin)",
    "spares_share": "assumption (hot spares)",
    "goodput": "perf-llama3-interruptions (>90% effective training time at 16K GPUs)",
    "utilization": "Llama 3 405B MFU 38-43% bf16 on H100 (Llama 3 paper Table 4)",
    "rack_power_w": "dc-nvl72-power (liquid rack envelope); rack template",
    "host_w_per_chip": "assumption (16 x 600 W hosts per 64 chips); rack template",
    "network_w_per_chip": "assumption (~6 kW optics, retimers, NICs per 64 chips); rack template",
    "rack_overhead": "assumption (fans, pumps, power conversion); rack template",
    "other_hw_usd_per_chip": "assumption (the house rack's $320k / 64 chips); rack template",
}


def parse_overrides(items: list[str], where: str = "--set") -> dict[str, float]:
    """`key=value` assumption overrides (a bare number in the field's unit, or a quantity such as
    '120 kW' or '0.07'); one-line errors name the key."""
    from chipforge.units import parse_quantity  # noqa: PLC0415

    out = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise SpecError(f"`{where}` must be key=value, not {item!r}; e.g. pue=1.3")
        if key not in SOURCES:
            raise SpecError(
                f"`{where}` {key!r} is not a site assumption{did_you_mean(key, SOURCES)}; "
                f"known: {', '.join(SOURCES)}"
            )
        if key in out:  # as a model string's key given twice: not the last silently winning
            raise SpecError(f"`{where}` gives {key} twice; give it once")
        out[key] = parse_quantity(value.strip(), None, field=f"{where} {key}")
    return out


def load_assumptions(path) -> dict[str, float]:
    """An assumptions TOML (`key = value` lines, any of `SOURCES`) as overrides."""
    from pathlib import Path  # noqa: PLC0415

    from chipforge.userfile import load_toml  # noqa: PLC0415

    p = Path(path)
    if not p.is_file():
        raise SpecError(f"`--assumptions` {str(p)!r} does not exist; give a TOML file")
    data = load_toml(p, what="`--assumptions` file", error=SpecError)
    items = []
    for k, v in data.items():
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise SpecError(f"{p}: `{k}` must be a number or a quantity string, not {v!r}")
        items.append(f"{k}={v}")
    return parse_overrides(items, where=str(p))


REDUNDANCY = {"N": 1.0, "N+1": 0.8, "2N": 0.5}  # usable share of grid capacity (see Assumptions)


def parse_redundancy(text: str) -> float:
    """`N`, `N+1`, `2N` or a usable share in (0, 1]."""
    key = text.strip().upper()
    if key in REDUNDANCY:
        return REDUNDANCY[key]
    try:
        value = float(key)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise SpecError(
            f"`--redundancy` must be N, N+1, 2N or a usable share in (0, 1], not {text!r}"
        )
    return value


@dataclass(frozen=True)
class Site:
    facility_power_w: float
    it_power_w: float
    rack_power_budget_w: float
    racks: int
    chips: int
    network_tiers: int
    switch_ports_per_chip: int
    it_capacity_w: float | None = None  # provisioned IT (facility is built for it)
    grid_power_w: float | None = None  # utility capacity, when sized from the grid

    def to_dict(self) -> dict:
        return asdict(self)


def network_tiers(chips: int, radix: int) -> int:
    """Fat-tree tiers for `chips` endpoints: k tiers of radix-r switches reach r*(r/2)^(k-1)."""
    tiers = 1
    while radix * (radix / 2) ** (tiers - 1) < chips:
        tiers += 1
    return tiers


def it_from_grid(grid_w: float, a: Assumptions) -> float:
    """Provisioned IT capacity a utility connection of `grid_w` carries at the design peak (a
    peak PUE below the average one is read as the average)."""
    return grid_w * a.redundancy / max(a.pue_peak, a.pue)


def size(
    rack: Rack,
    facility_power_w: float | None,
    a: Assumptions,
    racks: int | None = None,
    *,
    it_power_w: float | None = None,
    grid_w: float | None = None,
) -> Site:
    """Racks and chips that fit in `facility_power_w` (average draw), in a provisioned IT
    capacity `it_power_w`, or behind a grid connection `grid_w`; or the power `racks` need.

    IT power and facility power are those of the racks actually deployed (plus network and
    storage), so the unused remainder of a power budget is neither built nor paid for; with
    `it_power_w` or `grid_w` the facility is built for the racks' provisioned capacity."""
    shares = 1 + a.network_power_share + a.storage_power_share
    for flag, w in (("--power", facility_power_w), ("--grid", grid_w), ("--it-power", it_power_w)):
        if w is not None and w > MAX_SITE_W:
            raise SpecError(f"`{flag}` must be at most {MAX_SITE_W:g} W (10 TW), not {w:g} W")
    if grid_w is not None:
        if grid_w <= 0:
            raise SpecError(f"`--grid` must be > 0, not {grid_w} W")
        site = size(rack, None, a, it_power_w=it_from_grid(grid_w, a))
        return replace(site, grid_power_w=grid_w)
    if it_power_w is not None:
        if it_power_w <= 0:
            raise SpecError(f"`--it-power` must be > 0, not {it_power_w} W")
        head = rack.headroom(a.it_headroom)
        n = math.floor(it_power_w / (head * shares * rack.power_w))
        if n < 1:
            need = rack.power_w * shares * head
            raise SpecError(
                f"`--it-power` {it_power_w:.4g} W is too small for one {rack.name} rack "
                f"({rack.power_w:.4g} W x {head:g} headroom); pass at least "
                f"{need:.4g} W"
            )
        site = size(rack, None, a, racks=n)
        return replace(site, it_capacity_w=site.it_power_w * head)
    if racks is not None:
        if racks < 1:
            raise SpecError(f"`--racks` must be >= 1, not {racks}")
        it = racks * rack.power_w * shares
        chips = racks * rack.chips
        tiers = network_tiers(chips, a.switch_radix)
        # each tier below the top has an up and a down port per endpoint; the top only down
        return Site(it * a.pue, it, racks * rack.power_w, racks, chips, tiers, 2 * tiers - 1, it)
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
