"""Chart specs for plan reports (train, serve, datacenter, sweep) and the builder table.

Their packages name keys in their own `to_dict`; the builders look keys up by name and skip what
is absent, so a renamed key loses a chart, never the report. `chipforge.report.contract` lists the
charts each kind should have: a missing one becomes a visible `report_warning` on the page, and
tests/test_report_contract.py builds every kind from the real packages so a rename fails a test.
"""

from __future__ import annotations

from chipforge.report.charts import (
    _layout,
    _num,
    bar,
    chart,
    compare_charts,
    cost_charts,
    evaluate_charts,
)
from chipforge.report.decide import decide_charts
from chipforge.report.serving import serve_charts

# ---- train / serve / datacenter / sweep (keys looked up by name; anything absent is skipped) --


def _find(data: dict, *names):
    for n in names:
        if n in data:
            return data[n]
    return None


def _records(data: dict, *names) -> list:
    v = _find(data, *names)
    return [r for r in v if isinstance(r, dict)] if isinstance(v, list) else []


def train_charts(data: dict) -> list:
    mem = _find(
        data, "memory_by_category_bytes", "memory_breakdown_bytes", "memory_bytes", "memory"
    )
    if isinstance(mem, dict):
        mem = {
            str(k).removesuffix("_bytes"): v
            for k, v in mem.items()
            if k not in ("total", "total_bytes")
        }
    else:
        mem = {
            k.removeprefix("memory_").removesuffix("_bytes"): v
            for k, v in data.items()
            if k.startswith("memory_")
            and k.endswith("_bytes")
            and k not in ("memory_per_chip_bytes", "memory_capacity_bytes")
        }
    charts = bar("memory", "Memory per chip by category", mem, "GB", 1e9)
    cap = _find(data, "hbm_capacity_bytes", "memory_capacity_bytes")
    if charts and _num(cap):
        charts[0]["layout"]["shapes"] = [
            {
                "type": "line",
                "x0": cap / 1e9,
                "x1": cap / 1e9,
                "yref": "paper",
                "y0": 0,
                "y1": 1,
                "line": {"dash": "dot", "color": "red"},
            }
        ]
        charts[0]["layout"]["title"]["text"] += f" (capacity {cap / 1e9:,.0f} GB, dotted)"
    step = _find(data, "time_breakdown_s", "step_breakdown_s", "step_time_breakdown_s")
    if isinstance(step, dict):
        step = {str(k).removesuffix("_s"): v for k, v in step.items()}
        charts += bar("step", "Step time by part", step, "ms", 1e-3)
    comm = data.get("exposed_comm_s")
    if isinstance(comm, dict):
        comm = {str(k).removesuffix("_s"): v for k, v in comm.items()}
        charts += bar("comm", "Exposed communication per step", comm, "ms", 1e-3)
    util = {k: data[k] for k in ("mfu", "hfu") if _num(data.get(k))}
    charts += bar("utilization", "Model / hardware FLOP utilization", util, "fraction")
    return charts


def _metric_label(site, value) -> str:
    """The name of `site`'s figure equal to the tornado's base value (the metric it varies)."""
    if isinstance(site, dict) and _num(value):
        for k, v in site.items():
            if _num(v) and abs(v - value) <= 1e-9 * abs(value):
                return k.replace("usd_per_", "USD per ").replace("pflop", "PFLOP").replace("_", " ")
    return "metric at the low / high input"


def tornado(rows: list, base, cid: str = "tornado", who: str = "", site=None) -> list:
    """Bars from the base case to the outcome at each knob's low and high input."""
    lo_keys = ("at_low", "at_low_usd", "tco_low", "low_value", "low", "min")
    hi_keys = ("at_high", "at_high_usd", "tco_high", "high_value", "high", "max")
    bars = []
    for r in rows:
        lo = next((r[k] for k in lo_keys if _num(r.get(k))), None)
        hi = next((r[k] for k in hi_keys if _num(r.get(k))), None)
        name = str(_find(r, "knob", "name", "parameter", "input", "label") or "?")
        if _num(r.get("low")) and _num(r.get("high")) and ("at_low" in r or "at_low_usd" in r):
            name += f" ({r['low']:g} .. {r['high']:g})"
        if lo is not None and hi is not None:
            bars.append((name, lo, hi))
        base = next((r[k] for k in ("base", "base_usd") if _num(r.get(k))), base)
    if not bars:
        return []
    ref = base if _num(base) else (bars[0][1] + bars[0][2]) / 2
    bars.sort(key=lambda t: -abs(t[2] - t[1]))
    names = [b[0] for b in bars]
    traces = [
        {
            "type": "bar",
            "orientation": "h",
            "name": side,
            "y": names,
            "base": ref,
            "x": [v - ref for v in vals],
            "customdata": vals,
            "hovertemplate": "%{y} " + side + ": %{customdata:.4g}<extra></extra>",
        }
        for side, vals in (
            ("low input", [b[1] for b in bars]),
            ("high input", [b[2] for b in bars]),
        )
    ]
    lay = _layout(
        f"Sensitivity (tornado) around the base case {who}".rstrip(),
        _metric_label(site, ref),
        "",
        barmode="overlay",
    )
    lay["yaxis"]["autorange"] = "reversed"
    return [chart(cid, traces, lay)]


def _items(d: dict) -> dict:
    """A breakdown without its total, labels without the unit suffix."""
    return {str(k).removesuffix("_usd"): v for k, v in d.items() if k != "total"}


def datacenter_charts(data: dict) -> list:
    charts = []
    sites = data.get("sites")
    if isinstance(sites, dict):  # --compare: one site per chip
        tco = {c: s.get("tco_usd_per_chip_hour") for c, s in sites.items() if isinstance(s, dict)}
        charts += bar("tco", "TCO per chip-hour by chip", tco, "USD per chip-hour")
        capex = {
            c: (s.get("capex_usd") or {}).get("total")
            for c, s in sites.items()
            if isinstance(s, dict) and isinstance(s.get("capex_usd"), dict)
        }
        charts += bar("capex_by_chip", "Capex by chip", capex, "million USD", 1e6)
    cap = _find(data, "capex_breakdown_usd", "capex_usd")
    if isinstance(cap, dict):
        charts += bar("capex", "Capex by item", _items(cap), "million USD", 1e6)
    opex = _find(data, "opex_breakdown_usd_per_year", "opex_usd_per_year")
    if isinstance(opex, dict):
        charts += bar("opex", "Opex per year by item", _items(opex), "million USD / year", 1e6)
    power = {k: data[k] for k in ("it_power_w", "facility_power_w") if _num(data.get(k))}
    charts += bar("power", "Power", power, "MW", 1e6)
    sens = _find(data, "tornado", "sensitivity")
    base = data.get("tco_usd_per_chip_hour")
    if isinstance(sens, list):
        charts += tornado([r for r in sens if isinstance(r, dict)], base, site=data)
    elif isinstance(sens, dict) and all(isinstance(v, list) for v in sens.values()):
        for i, (who, rows) in enumerate(sens.items()):
            rows = [r for r in rows if isinstance(r, dict)]
            site = sites.get(who) if isinstance(sites, dict) else None
            charts += tornado(rows, None, f"tornado{i}", f"({who})", site)
    elif isinstance(sens, dict):
        rows = [{"name": k, **v} for k, v in sens.items() if isinstance(v, dict)]
        charts += tornado(rows, base, site=data)
    return charts


def sweep_charts(data: dict) -> list:
    rows = _records(data, "rows", "points", "front", "results", "trials")
    if not rows:
        return []
    objs = _find(data, "objectives")
    if isinstance(objs, dict):
        objs = list(objs)
    if not isinstance(objs, list) or len(objs) < 2:
        objs = [k for k, v in rows[0].items() if _num(v) and k not in ("pareto", "trial", "index")][
            -2:
        ]
    if len(objs) < 2:
        return []
    xk, yk = str(objs[0]), str(objs[1])
    flag = next(
        (k for k in ("pareto", "on_front", "pareto_optimal", "is_pareto") if k in rows[0]), None
    )
    traces = []
    for on, label in ((False, "dominated"), (True, "Pareto front")):
        pts = [
            r
            for r in rows
            if bool(flag and r.get(flag)) == on and _num(r.get(xk)) and _num(r.get(yk))
        ]
        if on:
            pts.sort(key=lambda r: r[xk])
        if pts:
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers" if on else "markers",
                    "name": label,
                    "x": [r[xk] for r in pts],
                    "y": [r[yk] for r in pts],
                    "text": [
                        ", ".join(f"{k}={v}" for k, v in r.items() if not _num(v) or k not in objs)[
                            :160
                        ]
                        for r in pts
                    ],
                    "marker": {"size": 10 if on else 6, "opacity": 1 if on else 0.5},
                    "hovertemplate": "%{text}<br>"
                    + xk
                    + ": %{x:.4g}<br>"
                    + yk
                    + ": %{y:.4g}<extra></extra>",
                }
            )
    return [chart("pareto", traces, _layout(f"Sweep: {yk} vs {xk}", xk, yk))] if traces else []


def cost_tornado(rows: list, unit, cid: str = "tornado") -> list:
    """The unit cost's tornado (`silicon.sensitivity` rows): each input named with its range in
    its unit (the knob is the cost input's key, its unit the key's suffix)."""
    from chipforge.display import label, show

    named = []
    for r in rows:
        if not isinstance(r, dict):
            continue
        k, lo, hi = str(r.get("knob")), r.get("low"), r.get("high")
        span = f" ({show(k, lo)} .. {show(k, hi)})" if _num(lo) and _num(hi) else ""
        kept = {x: r[x] for x in ("at_low_usd", "at_high_usd", "base_usd") if x in r}
        named.append({**kept, "knob": label(k) + span})
    return tornado(named, unit, cid, site={"unit cost (USD)": unit})


def cost_report_charts(data: dict) -> list:
    """`cost`'s charts, and with --sensitivity the unit cost's tornado (silicon.sensitivity)."""
    sens = data.get("sensitivity") if isinstance(data.get("sensitivity"), list) else []
    return cost_charts(data) + cost_tornado(sens, data.get("unit_cost_usd"))


BUILDERS = {
    "evaluate": evaluate_charts,
    "compare": compare_charts,
    "cost": cost_report_charts,
    "train": train_charts,
    "serve": serve_charts,
    "datacenter": datacenter_charts,
    "sweep": sweep_charts,
    "decide": decide_charts,
}
