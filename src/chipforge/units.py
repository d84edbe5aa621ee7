"""Quantities at the edges: parse "3.35 TB/s", "80 GiB", "700 W", "1.98 GHz", "814 mm2".

Inside chipforge every quantity is a plain float in SI base units (s, B, FLOP, W, J, Hz, m², $).
Decimal prefixes are powers of 10 and binary prefixes (Ki, Mi, Gi, ...) powers of 2, always
(a tera is 1e12, never 2**40).
"""

from __future__ import annotations

import math
import re

from chipforge.errors import UnitError

# SI decimal prefixes (powers of 10) and IEC binary prefixes (powers of 2).
DECIMAL = {
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Z": 1e21,
    "m": 1e-3,
    "u": 1e-6,
    "µ": 1e-6,
    "n": 1e-9,
    "p": 1e-12,
    "f": 1e-15,
}
BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}

# base unit symbol -> (dimension, factor to the SI base unit of that dimension)
BASE_UNITS: dict[str, tuple[str, float]] = {
    "B": ("bytes", 1.0),
    "b": ("bytes", 1 / 8),  # bits
    "bit": ("bytes", 1 / 8),
    "B/s": ("bandwidth", 1.0),
    "b/s": ("bandwidth", 1 / 8),
    "bps": ("bandwidth", 1 / 8),
    "W": ("power", 1.0),
    "Hz": ("frequency", 1.0),
    "s": ("time", 1.0),
    "J": ("energy", 1.0),
    "FLOP": ("flops", 1.0),
    "FLOP/s": ("flop_rate", 1.0),
    "FLOPS": ("flop_rate", 1.0),
    "OP/s": ("flop_rate", 1.0),
    "OPS": ("flop_rate", 1.0),
    "J/B": ("energy_per_byte", 1.0),
    "J/bit": ("energy_per_byte", 8.0),
    "J/b": ("energy_per_byte", 8.0),
    "J/FLOP": ("energy_per_flop", 1.0),
    "m2": ("area", 1.0),
    "USD": ("money", 1.0),
    "$": ("money", 1.0),
}
# area prefixes apply to the length, so they are squared: 1 mm2 = (1e-3 m)^2
AREA_UNITS = {
    "mm2": 1e-6,
    "mm^2": 1e-6,
    "mm²": 1e-6,
    "cm2": 1e-4,
    "cm^2": 1e-4,
    "um2": 1e-12,
    "µm2": 1e-12,
    "m2": 1.0,
}
# the unit `fmt` writes for each dimension
DISPLAY_UNIT = {
    "bytes": "B",
    "bandwidth": "B/s",
    "power": "W",
    "frequency": "Hz",
    "time": "s",
    "energy": "J",
    "flops": "FLOP",
    "flop_rate": "FLOP/s",
    "money": "USD",
    "energy_per_byte": "J/B",
    "energy_per_flop": "J/FLOP",
}

# a quantity of each common dimension, as an error's example (a time field's was '3.35 TB/s')
EXAMPLES = {"time": "100 ms", "power": "700 W", "frequency": "1.98 GHz", "bytes": "80 GiB",
            "bandwidth": "3.35 TB/s", "area": "814 mm2", "energy": "1.5 J",
            "flop_rate": "989 TFLOP/s"}  # fmt: skip

_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


def _lookup(unit: str) -> tuple[str, float]:
    if unit in AREA_UNITS:
        return "area", AREA_UNITS[unit]
    if unit in BASE_UNITS:
        return BASE_UNITS[unit]
    for prefixes in (BINARY, DECIMAL):
        for prefix, scale in prefixes.items():
            if prefix and unit.startswith(prefix) and unit[len(prefix) :] in BASE_UNITS:
                dimension, factor = BASE_UNITS[unit[len(prefix) :]]
                if prefixes is BINARY and dimension not in ("bytes", "bandwidth"):
                    break  # binary prefixes only make sense for bytes
                return dimension, scale * factor
    raise KeyError(unit)


def parse_quantity(
    text: str | float | int, dimension: str | None = None, *, field: str = "value"
) -> float:
    """Parse a quantity string into a float in SI base units.

    `dimension` (e.g. "bandwidth", "bytes", "power") is checked when given; a bare number is
    taken as already in base units. `field` names the input in error messages.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return _finite(float(text), text, field)
    if not isinstance(text, str):
        raise UnitError(field, f"must be a number or a quantity string, not {text!r}")
    match = _NUMBER.match(text)
    if not match:
        example = EXAMPLES.get(dimension or "", "3.35 TB/s")  # one of the field's own unit
        raise UnitError(field, f"must be a number with a unit such as '{example}', not {text!r}")
    number, unit = _finite(float(match.group(1)), text, field), match.group(2)
    if not unit:
        return number
    try:
        found, factor = _lookup(unit)
    except KeyError:
        raise UnitError(
            field,
            f"has unknown unit {unit!r} in {text!r}; use one of "
            "B, KiB, GB, TB/s, Gb/s, W, GHz, mm2, s, J, pJ/bit, TFLOP/s",
        ) from None
    if dimension is not None and found != dimension:
        raise UnitError(field, f"must be a {dimension} quantity, not {text!r} (a {found})")
    return _finite(number * factor, text, field)


def _finite(number: float, text, field: str) -> float:
    if not math.isfinite(number):
        raise UnitError(field, f"must be a finite number, not {text!r}")
    return number


def fmt(value: float, dimension: str, *, digits: int = 4, binary: bool = False) -> str:
    """Format a base-unit float for people: fmt(3.35e12, "bandwidth") -> '3.35 TB/s'."""
    if dimension == "area":
        return f"{value / 1e-6:.{digits}g} mm2"
    unit = DISPLAY_UNIT[dimension]
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}"
    table = BINARY if binary else {k: v for k, v in DECIMAL.items() if k not in ("µ",)}
    scale_prefix = max(
        (p for p in table.items() if p[1] <= abs(value)), key=lambda p: p[1], default=("", 1.0)
    )
    if binary and abs(value) < 1024:
        scale_prefix = ("", 1.0)
    prefix, scale = scale_prefix
    return f"{value / scale:.{digits}g} {prefix}{unit}"


_COUNT = re.compile(r"\s*((?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([kKmMbBgGtTpP]?)\s*")
_COUNT_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12, "p": 1e15}


def parse_count(text: str, field: str) -> float:
    """A positive count with an optional decimal suffix: '15.6T' -> 1.56e13 (k, M, B/G, T, P)."""
    m = _COUNT.fullmatch(text)
    if not m:
        raise UnitError(field, f"must be a count such as 15.6T or 2e12, not {text!r}")
    value = _finite(float(m.group(1)) * _COUNT_SCALE[m.group(2).lower()], text, field)
    if value <= 0:
        raise UnitError(field, f"must be > 0, not {text!r}")
    return value
