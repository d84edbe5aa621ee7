"""Numbers for people: one formatter for every table and every HTML figure table.

Values inside chipforge are plain SI floats and JSON keys carry their unit as a suffix
(`it_power_w`, `time_to_train_s`, `capex_usd`); `show(key, value)` writes such a value the way a
person reads it, with an SI prefix and the unit ("1.00 GW", "7.2 days", "$46.3 B", "1.96 GHz",
"40 µm²", "555,552"), and `label(key)` names the row ("IT power", "time to train"). Never
scientific notation: a number too large or too small for its unit takes a prefix instead.

>>> show("it_power_w", 1e9), show("time_to_train_s", 6.197e5), show("capex_usd", 4.63e10)
('1.00 GW', '7.2 days', '$46.3 B')
>>> show("chips", 555552), show("clock_hz", 1.959e9), show("area_m2", 4e-11), show("mfu", 0.671)
('555,552', '1.96 GHz', '40.0 µm²', '0.67')
>>> label("usd_per_useful_pflop_hour"), label("it_power_w")
('$ per useful PFLOP-hour', 'IT power')
"""

from __future__ import annotations

import math

PREFIXES = (
    (1e18, "E"),
    (1e15, "P"),
    (1e12, "T"),
    (1e9, "G"),
    (1e6, "M"),
    (1e3, "k"),
    (1.0, ""),
    (1e-3, "m"),
    (1e-6, "µ"),
    (1e-9, "n"),
    (1e-12, "p"),
    (1e-15, "f"),
    (1e-18, "a"),
)


def _sig(x: float, digits: int = 3) -> str:
    """`x` (1 <= |x| < 1000, or 0) to `digits` significant figures, fixed point."""
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(x)))))
    return f"{x:,.{decimals}f}"


def prefix_of(value: float) -> tuple[float, str]:
    """The SI scale and prefix `value` reads in (the largest not above |value|): 2.5e18 ->
    (1e18, "E"); a table of figures takes its largest's."""
    return next(((s, p) for s, p in PREFIXES if abs(value) >= s), PREFIXES[-1])


def si(value: float, unit: str, digits: int = 3) -> str:
    """`value` with an SI prefix on `unit`: si(1e9, "W") -> '1.00 GW'."""
    if not math.isfinite(value):
        return f"{value} {unit}".strip()
    if value == 0:
        return f"0 {unit}".strip()
    scale, prefix = prefix_of(value)
    mantissa = float(f"{value / scale:.{digits}g}")
    if abs(mantissa) >= 1000 and scale < 1e18:  # rounding carries into the next prefix
        scale *= 1e3
        prefix = next(p for s, p in PREFIXES if math.isclose(s, scale))
        mantissa = float(f"{value / scale:.{digits}g}")
    return f"{_sig(mantissa, digits)} {prefix}{unit}".rstrip()


def count(value: float) -> str:
    """A count: digits grouped ('555,552'); beyond a trillion an SI prefix ('1.20 P')."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1e12:
        return si(value, "")
    if value == int(value) or abs(value) >= 100:
        return f"{round(value):,}"
    return plain(value)


def plain(value: float) -> str:
    """A dimensionless number: 3 significant figures, never scientific notation."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e6:
        decimals = max(0, 2 - int(math.floor(math.log10(abs(value)))))
        return f"{value:,.{decimals}f}"
    return si(value, "")


def money(value: float) -> str:
    """Dollars: '$11,740', '$46.3 B', '$2.41', '$0.0123'."""
    if not math.isfinite(value):
        return f"${value}"
    sign, v = ("-" if value < 0 else ""), abs(value)
    for scale, word in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if v >= scale * 0.9995:
            return f"{sign}${_sig(v / scale)} {word}"
    if v >= 100:
        return f"{sign}${v:,.0f}"
    return f"{sign}${plain(v)}"


def duration(seconds: float) -> str:
    """A time in the unit a person thinks in: '3.89 ms', '45.0 s', '2.5 h', '7.2 days'."""
    if not math.isfinite(seconds):
        return f"{seconds} s"
    s = abs(seconds)
    if s < 60:
        return si(seconds, "s")
    for scale, unit in ((365.25 * 86400, "years"), (86400, "days"), (3600, "h"), (60, "min")):
        if s >= 2 * scale or unit == "min":
            return f"{seconds / scale:,.1f} {unit}"
    return si(seconds, "s")  # unreachable


def area(m2: float) -> str:
    """An area: '814 mm²' down to 0.01 mm², then '40.0 µm²'."""
    if m2 == 0 or not math.isfinite(m2):
        return f"{m2} mm²"
    if abs(m2) >= 1e-8:
        mm2 = m2 / 1e-6
        return f"{mm2:,.0f} mm²" if abs(mm2) >= 100 else f"{_sig(mm2)} mm²"
    um2 = m2 / 1e-12
    return f"{_sig(um2)} µm²" if abs(um2) >= 1 else f"{plain(um2)} µm²"


def ratio(value: float) -> str:
    """A ratio or fraction: two decimals ('0.67', '1.20'), else as `plain`."""
    return f"{value:.2f}" if 0.01 <= abs(value) < 100 or value == 0 else plain(value)


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


# key suffix -> how to show the value; longest suffix wins
SUFFIXES: dict[str, object] = {
    "_usd_per_chip_hour": lambda v: money(v) + " per chip-hour",
    "_usd_per_year": lambda v: money(v) + " per year",
    "_usd_per_kwh": lambda v: money(v) + " per kWh",
    "_usd_per_it_w": lambda v: money(v) + " per W (IT)",
    "_usd_per_chip": lambda v: money(v) + " per chip",
    "_usd_per_switch_port": money,
    "_usd": money,
    "_w_per_chip": lambda v: si(v, "W") + " per chip",
    "_w": lambda v: si(v, "W"),
    "_j": lambda v: si(v, "J"),
    "_j_per_byte": lambda v: si(v, "J/B"),
    "_s": duration,
    "_bytes_per_s": lambda v: si(v, "B/s"),
    "_bytes": lambda v: si(v, "B"),
    "_flops_per_s": lambda v: si(v, "FLOP/s"),
    "_flop_per_s": lambda v: si(v, "FLOP/s"),
    "_flops": lambda v: si(v, "FLOP"),
    "_flop_per_byte": lambda v: plain(v) + " FLOP/B",
    "_hz": lambda v: si(v, "Hz"),
    "_mm2": lambda v: area(v * 1e-6),
    "_m2": area,
    "_tokens_per_s_per_chip": lambda v: plain(v) + " tokens/s per chip",
    "_tokens_per_s": lambda v: count(v) + " tokens/s",
    "_tokens": lambda v: count(v) + " tokens",
    "_y": lambda v: plain(v) + " years",
    "_per_s": lambda v: plain(v) + " /s",
}
PREFIX_KEYS = {  # keys whose unit comes first
    "usd_per_million_tokens": lambda v: money(v) + " per million tokens",
    "usd_per_useful_pflop_hour": lambda v: money(v) + " per PFLOP-hour",
    "usd_per_useful_pflop_hour_planned": lambda v: money(v) + " per PFLOP-hour",
    "usd_per_trained_model": money,
    "usd_per_switch_port": lambda v: money(v) + " per port",
}
RATIOS = ("pue", "mfu", "hfu", "utilization", "goodput", "yield", "_share", "_fraction", "_markup")
RATIOS += ("cost_of_capital", "rack_overhead", "_frac", "_x", "efficiency")
WORDS = {
    "it": "IT",
    "usd": "$",
    "tco": "TCO",
    "pue": "PUE",
    "hbm": "HBM",
    "mfu": "MFU",
    "hfu": "HFU",
    "sram": "SRAM",
    "tdp": "TDP",
    "kv": "KV",
    "pflop": "PFLOP",
    "tflop": "TFLOP",
    "flops": "FLOP/s",
    "nic": "NIC",
    "kwh": "kWh",
    "gb": "GB",
    "zero3": "ZeRO-3",
    "ttft": "TTFT",
    "tpot": "TPOT",
    "isl": "input tokens",
    "osl": "output tokens",
    "wacc": "WACC",
    "nre": "NRE",
    "dtype": "dtype",
    "tp": "TP",
    "pp": "PP",
    "dp": "DP",
    "ep": "EP",
    "cp": "CP",
}
UNIT_WORDS = (  # suffixes dropped from a label: the value carries its unit
    "_usd_per_chip_hour",
    "_usd_per_year",
    "_usd_per_kwh",
    "_usd_per_it_w",
    "_usd_per_chip",
    "_usd",
    "_w_per_chip",
    "_w",
    "_j",
    "_s",
    "_bytes_per_s",
    "_bytes",
    "_flops_per_s",
    "_flop_per_s",
    "_hz",
    "_mm2",
    "_m2",
    "_y",
)


def show(key: str, value) -> str:
    """`value` of the JSON key `key`, for a person (unit from the key's suffix)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list | tuple):
        return (
            ", ".join(f"{label(k)} {show(k, v)}" for k, v in dict(value).items())
            if isinstance(value, dict)
            else ", ".join(show(key, v) for v in value)
        )
    if not isinstance(value, int | float):
        return str(value)
    k = "_" + key.lower()  # a bare unit key ("tokens_per_s") matches its suffix too
    if k[1:] in PREFIX_KEYS:
        return PREFIX_KEYS[k[1:]](value)
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if k.endswith(suffix):
            return SUFFIXES[suffix](value)
    if any(k[1:] == r or k.endswith(r) for r in RATIOS):
        return ratio(value)
    if isinstance(value, int) or float(value).is_integer():
        return count(value)
    return plain(value)


LABELS = {
    "usd_per_useful_pflop_hour_planned": "$ per useful PFLOP-hour at the chip's own plan",
    "planned_mfu": "MFU of the chip's own training plan",
    "delivered_flops_per_s": "delivered compute",
    "peak_flops_per_s": "peak compute",
    "chip_unit_cost_usd": "chip cost before markup, NRE and spares",
    "chip_capex_usd_per_chip": "chip cost as capex charges it",
    "all_in_w_per_chip": "all-in power per chip",
    "tco_usd_per_year": "TCO per year",
    "tco_usd_per_chip_hour": "TCO per chip-hour",
    "opex_usd_per_year": "opex per year",
}


def label(key: str) -> str:
    """A JSON key as a row name: 'it_power_w' -> 'IT power'."""
    if key in LABELS:
        return LABELS[key]
    k = key
    if k in PREFIX_KEYS:
        return " ".join(WORDS.get(w, w) for w in k.split("_")).replace("PFLOP hour", "PFLOP-hour")
    for suffix in sorted(UNIT_WORDS, key=len, reverse=True):
        if k.endswith(suffix) and len(k) > len(suffix):
            k = k[: -len(suffix)]
            break
    return " ".join(WORDS.get(w, w) for w in k.split("_"))


def has_unit(key: str) -> bool:
    """Whether `key` says how its numbers read (a unit suffix or a known ratio)."""
    k = "_" + key.lower()
    return (
        k[1:] in PREFIX_KEYS
        or any(k.endswith(s) for s in SUFFIXES)
        or any(k[1:] == r or k.endswith(r) for r in RATIOS)
    )
