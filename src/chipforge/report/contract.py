"""The charts each report kind should draw, and the keys each one reads.

Chart builders skip what they cannot find, so a key renamed in another package's `to_dict` would
silently drop a chart. `warnings(kind, data, charts)` names every expected chart that was not drawn
and the keys it needs; the page shows them in a `report_warning` box and the CLI prints them.
tests/test_report_contract.py builds each kind from the real packages and asserts these ids.
"""

from __future__ import annotations

_ROOF = "ops[] with flops, time_s and bytes at an off-chip (HBM/DDR) level"

EVALUATE = {
    "roofline": ("Roofline", _ROOF),
    "time_per_op": ("Time per op", "ops[] with name and time_s"),
    "time_by_bound": ("Time by bound", "time_by_bound_s"),
}
COMPARE = {
    "time_per_chip": ("Time per chip", "results[].time_s"),
    "time_by_bound": ("Time by bound per chip", "results[].time_by_bound_s"),
    "roofline": ("Roofline", "results[]." + _ROOF),
    "time_per_op": ("Time per op by chip", "results[].ops[] with name and time_s"),
}
COST = {
    "area": ("Area by block", "breakdown.area_mm2"),
    "power": ("Power at TDP by block", "breakdown.power_w"),
    "unit_cost": ("Unit cost", "breakdown.cost_usd"),
    "one_time": ("One-time costs", "one_time_usd"),
    "peak": ("Peak throughput per dtype", "peak_flops_per_s"),
}
TRAIN = {
    "memory": ("Memory per chip by category", "memory_by_category_bytes"),
    "step": ("Step time by part", "time_breakdown_s"),
    "comm": ("Exposed communication", "exposed_comm_s"),
    "utilization": ("MFU / HFU", "mfu, hfu"),
}
SERVE = {
    "latency_throughput": (
        "Latency vs throughput",
        "curve[] with concurrency, batch, throughput_tokens_per_s(_per_chip), ttft_s, tpot_s, "
        "feasible",
    ),
    "latency": ("Latency", "ttft_s, tpot_s"),
    "memory": ("Memory per chip by category", "memory_per_chip_bytes"),
    "phases": ("Time per request by phase", "breakdown_s"),
}
SITE = {
    "capex": ("Capex by item", "capex_usd"),
    "opex": ("Opex per year by item", "opex_usd_per_year"),
    "power": ("Power", "it_power_w, facility_power_w"),
}
SITES = {
    "tco": ("TCO per chip-hour by chip", "sites.*.tco_usd_per_chip_hour"),
    "capex_by_chip": ("Capex by chip", "sites.*.capex_usd.total"),
}
DECIDE = {
    "fan": ("Cumulative cash out", "quarters, cumulative_cash_usd.{buy,build}.{p10,p50,p90}"),
    "delivered": ("Delivered useful compute", "delivered_flops_per_s.{buy,build}.{p10,p50,p90}"),
    "breakeven": ("Cumulative cost per useful PFLOP-hour", "cumulative_usd_per_pflop_hour"),
    "sobol": ("Sobol indices", "drivers[] with input, s1, st"),
}
SWEEP = {"pareto": ("Pareto front", "objectives (two) and rows[] holding them, with pareto")}
TORNADO = ("Sensitivity (tornado)", "sensitivity[] with knob, at_low, at_high, base")


def expected(kind: str, data: dict) -> dict[str, tuple[str, str]]:
    """{chart id: (title, keys it reads)} that `kind` should draw for `data`."""
    if kind == "datacenter":
        if isinstance(data.get("sites"), dict):
            out = dict(SITES)
            sens = data.get("sensitivity")
            for i, who in enumerate(sens if isinstance(sens, dict) else {}):
                out[f"tornado{i}"] = (f"{TORNADO[0]} ({who})", f"sensitivity.{who}[]")
            return out
        return {**SITE, **({"tornado": TORNADO} if "sensitivity" in data else {})}
    if kind == "cost" and "sensitivity" in data:
        return {**COST, "tornado": TORNADO}
    table = {
        "evaluate": EVALUATE,
        "compare": COMPARE,
        "cost": COST,
        "train": TRAIN,
        "serve": SERVE,
        "sweep": SWEEP,
        "decide": DECIDE,
    }
    return dict(table.get(kind, {}))


def warnings(kind: str, data: dict, charts: list[dict]) -> list[str]:
    """One line per expected chart of `kind` that `charts` lacks (ids without a section prefix)."""
    drawn = {c["id"] for c in charts}
    return [
        f"chart '{title}' ({cid}) not drawn: the data lacks {needs}"
        for cid, (title, needs) in expected(kind, data).items()
        if cid not in drawn
    ]
