"""Racks: how many accelerators share a rack, its IT power, cooling and non-chip cost.

A rack is a preset (racks.toml), a rack TOML file (the same fields as a preset; `chip` may be
left out, the rack then holds the chip it is used with), or, for a chip with no rack preset,
derived from the chip by the rack template (`derive_rack`, assumptions in `site.Assumptions`):

    per-chip IT power = (chip TDP + host_w_per_chip + network_w_per_chip) x (1 + rack_overhead)
    chips per rack    = the largest power of two whose chips fit rack_power_w (a whole torus
                        cube or scale-up domain), at least 1
    rack power        = chips per rack x per-chip IT power
    non-chip hardware = chips per rack x other_hw_usd_per_chip; cooling liquid above 40 kW

Applied to forge-n3 (1,100 W) it gives forge-n3-rack: 64 chips, 90 kW, $320,000.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path

from chipforge.errors import SpecError, UnitError, check_name, did_you_mean
from chipforge.userfile import bare_name, beside, load_toml, missing

AIR_COOLED_MAX_W = 40e3  # assumption: above ~40 kW a rack needs liquid (DGX H100 racks ~41 kW)


@dataclass(frozen=True)
class Rack:
    """One rack (or 8-GPU server treated as the unit of deployment)."""

    name: str
    chip: str
    chips: int
    power_w: float
    cooling: str
    other_hw_usd: float  # per rack, everything but the accelerators
    market_chip_usd: float | None  # bought accelerators: street price; None: built in house
    source: str
    # "typical": power_w is the typical full-load draw (provisioned with Assumptions.it_headroom
    # on top); "max": power_w is already a nameplate maximum or a sum of TDPs (no headroom)
    power_basis: str = "typical"

    def headroom(self, it_headroom: float) -> float:
        """Provisioned IT per watt of `power_w`."""
        return 1.0 if self.power_basis == "max" else it_headroom

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "chip": self.chip,
            "chips": self.chips,
            "power_w": self.power_w,
            "cooling": self.cooling,
            "other_hw_usd": self.other_hw_usd,
            "market_chip_usd": self.market_chip_usd,
            "source": self.source,
            "power_basis": self.power_basis,
        }


RACK_FIELDS = (
    "name", "chip", "chips", "power", "cooling", "other_hw_usd_per_rack", "market_chip_usd",
    "source", "power_basis",
)  # fmt: skip
# the same fields as `Rack.to_dict` (and a decide scenario's inline rack) spells them
RACK_ALIASES = {"power_w": "power", "other_hw_usd": "other_hw_usd_per_rack"}
MAX_RACK_CHIPS = 2**20


def rack_from_dict(name: str, r: dict, where: str) -> Rack:
    """A rack from its TOML table (or an inline table, with `RACK_ALIASES`' spellings); errors
    name `where` and the field as written."""
    from chipforge.units import parse_quantity  # noqa: PLC0415

    known = RACK_FIELDS + tuple(RACK_ALIASES)
    spelt = {}  # field -> the key the table gives it under
    for k in r:
        if k not in known:
            raise SpecError(
                f"{where}: `{k}` is not a rack field{did_you_mean(k, known)}; "
                f"use {', '.join(RACK_FIELDS)}"
            )
        field = RACK_ALIASES.get(k, k)
        if field in spelt:
            raise SpecError(f"{where}: `{spelt[field]}` and `{k}` are the same field; give one")
        spelt[field] = k
    r = {field: r[k] for field, k in spelt.items()}
    also = {v: f" (or `{k}`)" for k, v in RACK_ALIASES.items()}
    for k in ("chips", "power", "other_hw_usd_per_rack"):
        if k not in r:
            raise SpecError(
                f"{where}: `{k}`{also.get(k, '')} is required; add it (see racks.toml for examples)"
            )
    chips = r["chips"]
    if isinstance(chips, bool) or not isinstance(chips, int) or not 1 <= chips <= MAX_RACK_CHIPS:
        raise SpecError(
            f"{where}: `chips` must be a whole number from 1 to {MAX_RACK_CHIPS:,}, not {chips!r}"
        )
    amounts = {}
    for k, dim in (("power", "power"), ("other_hw_usd_per_rack", "money"),
                   ("market_chip_usd", "money")):  # fmt: skip
        if r.get(k) is None:
            continue
        try:
            v = parse_quantity(r[k], dim, field=spelt[k])
        except UnitError as e:
            raise SpecError(f"{where}: {e}") from None
        if v < 0 or (k == "power" and v == 0):
            least = "> 0" if k == "power" else ">= 0"
            raise SpecError(f"{where}: `{spelt[k]}` must be a number {least}, not {r[k]!r}")
        amounts[k] = v
    power = amounts["power"]
    cooling = r.get("cooling", "liquid" if power > AIR_COOLED_MAX_W else "air")
    if cooling not in ("air", "liquid"):
        raise SpecError(f"{where}: `cooling` must be air or liquid, not {cooling!r}")
    basis = r.get("power_basis", "typical")
    if basis not in ("typical", "max"):
        raise SpecError(f"{where}: `power_basis` must be typical or max, not {basis!r}")
    return Rack(
        name=check_name(r.get("name", name), "name", SpecError, where),
        chip=check_name(r["chip"], "chip", SpecError, where) if "chip" in r else "",
        chips=chips,
        power_w=power,
        cooling=cooling,
        other_hw_usd=amounts["other_hw_usd_per_rack"],
        market_chip_usd=amounts.get("market_chip_usd"),
        source=str(r.get("source", where)),
        power_basis=basis,
    )


@cache
def _presets() -> dict[str, Rack]:
    text = resources.files("chipforge.datacenter").joinpath("racks.toml").read_text()
    return {
        name: rack_from_dict(name, r, f"rack {name}") for name, r in tomllib.loads(text).items()
    }


def rack_names() -> list[str]:
    return sorted(_presets())


def load_rack(name: str) -> Rack:
    """A rack preset by name, or a rack TOML file by path. Spaces around it are dropped (as
    around a chip) unless a file is named so."""
    racks = _presets()
    name = bare_name(name)
    if name.endswith(".toml") or Path(name).is_file():
        path = Path(name)
        if not path.is_file():
            raise SpecError(f"rack file {name!r} {missing(path)}; give a preset or a TOML path")
        data = load_toml(path, what="rack file", error=SpecError)
        r = rack_from_dict(path.stem, data, name)
        return replace(r, chip=beside(r.chip, path.parent)) if r.chip else r
    if name not in racks:
        raise SpecError(
            f"`--rack` must be one of {', '.join(sorted(racks))}, not {name!r}"
            + did_you_mean(name, racks)
        )
    return racks[name]


def rack_for_chip(chip: str) -> Rack:
    """The default rack for a chip preset name."""
    for rack in _presets().values():
        if rack.chip == chip:
            return rack
    known = sorted({r.chip for r in _presets().values()})
    raise SpecError(
        f"`--chip` {chip!r} has no rack definition; use one of {', '.join(known)} "
        "or pass --rack" + did_you_mean(chip, known)
    )


def derive_rack(spec, chip_ref: str, a) -> Rack:
    """The rack the template (module docstring; assumptions `a`) builds around `spec`, whose
    chip is loaded from `chip_ref` (a preset name or a TOML path)."""
    per_chip = (spec.tdp + a.host_w_per_chip + a.network_w_per_chip) * (1 + a.rack_overhead)
    if per_chip > a.rack_power_w:
        raise SpecError(
            f"`rack_power_w` {a.rack_power_w:,.0f} W holds no {spec.name} chip "
            f"({per_chip:,.0f} W with host and network); pass --set rack_power_w=... or --rack"
        )
    chips = 2 ** int(math.floor(math.log2(a.rack_power_w / per_chip)))
    power = chips * per_chip
    return Rack(
        name=f"{spec.name}-rack (derived)",
        chip=chip_ref,
        chips=chips,
        power_w=power,
        cooling="liquid" if power > AIR_COOLED_MAX_W else "air",
        other_hw_usd=chips * a.other_hw_usd_per_chip,
        market_chip_usd=None,
        power_basis="max",  # a sum of TDPs
        source=(
            f"rack template: {chips} chips x ({spec.tdp:,.0f} W TDP + {a.host_w_per_chip:,.0f} W "
            f"host + {a.network_w_per_chip:,.0f} W network) x {1 + a.rack_overhead:.2f} "
            f"= {power / 1e3:,.1f} kW (rack_power_w {a.rack_power_w / 1e3:,.0f} kW); "
            f"${a.other_hw_usd_per_chip:,.0f} other hardware per chip"
        ),
    )


def _held(chip: str) -> str:
    """The name of the chip a rack holds: its chip TOML's (`load_rack` made the path relative
    to the rack file; a file that is there is read, so what is wrong with it is said), else
    `chip` as written."""
    from chipforge.spec import load_chip  # noqa: PLC0415

    try:
        is_file = chip.endswith(".toml") and Path(chip).is_file()
    except (OSError, ValueError):  # a name too long, a NUL
        is_file = False
    return load_chip(chip).name if is_file else chip


def rack_for(chip, rack: str | None, a, flag: str = "--rack") -> Rack:
    """The rack a site of `chip` (preset name, TOML path or `ChipSpec`) uses: `rack` (a preset or
    TOML, which must hold this chip or name none), else the chip preset's rack, else the
    template's. The returned rack's `chip` is `chip` (a spec: its name; `chip_facts` then takes
    the spec), so the chip priced is always the one asked for. `flag`: how the error names
    where `rack` came from."""
    from chipforge.spec import load_chip, preset_names  # noqa: PLC0415

    if isinstance(chip, str):
        chip = bare_name(chip)  # the name `load_chip` reads
    spec = load_chip(chip)
    is_preset = chip in preset_names()
    if not isinstance(chip, str):  # a spec: a preset's own spec is that preset
        is_preset = spec.name in preset_names() and load_chip(spec.name) == spec
        chip = spec.name
    if rack:
        r = load_rack(rack)
        if r.chip and r.chip not in (chip, spec.name) and _held(r.chip) != spec.name:
            raise SpecError(
                f"`{flag}` {r.name} holds {r.chip}, not {spec.name}; give a rack TOML for "
                f"{spec.name} (leave out `chip` to use it with any chip), or leave out {flag} "
                "for a rack derived from the chip"
            )
        return replace(r, chip=chip)
    if is_preset:
        preset = next((r for r in _presets().values() if r.chip == chip), None)
        if preset is not None:
            return preset
    return derive_rack(spec, chip, a)
