"""Rack presets: how many accelerators share a rack, its IT power, cooling and non-chip cost."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from chipforge.errors import SpecError, did_you_mean


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
        }


@cache
def _presets() -> dict[str, Rack]:
    text = resources.files("chipforge.datacenter").joinpath("racks.toml").read_text()
    out = {}
    for name, r in tomllib.loads(text).items():
        out[name] = Rack(
            name=name,
            chip=r["chip"],
            chips=int(r["chips"]),
            power_w=float(r["power"]),
            cooling=r["cooling"],
            other_hw_usd=float(r["other_hw_usd_per_rack"]),
            market_chip_usd=r.get("market_chip_usd"),
            source=r["source"],
        )
    return out


def rack_names() -> list[str]:
    return sorted(_presets())


def load_rack(name: str) -> Rack:
    """A rack preset by name."""
    racks = _presets()
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
