"""Decide report charts (`chipforge decide --json`): fan chart of cumulative cash for both
options, delivered useful compute per quarter, cumulative cost per useful PFLOP-hour with the
break-even quarter, and the Sobol bars of the drivers."""

from __future__ import annotations

from chipforge.report.charts import _layout, _num, chart

COLOURS = {"buy": "#1f77b4", "build": "#d62728"}
FILL = {"buy": "rgba(31,119,180,0.18)", "build": "rgba(214,39,40,0.18)"}


def _band(name: str, x: list, pct: dict, scale: float, unit: str) -> list:
    """A P10-P90 band and the P50 line of one option."""
    if not all(isinstance(pct.get(k), list) for k in ("p10", "p50", "p90")):
        return []
    lo, mid, hi = (
        [None if v is None else v / scale for v in pct[k]] for k in ("p10", "p50", "p90")
    )
    c = COLOURS.get(name, "#555")
    return [
        {"type": "scatter", "x": x, "y": hi, "mode": "lines", "line": {"width": 0},
         "showlegend": False, "name": f"{name} P90",
         "hovertemplate": "%{x}: %{y:.4g} " + unit + f"<extra>{name} P90</extra>"},
        {"type": "scatter", "x": x, "y": lo, "mode": "lines", "line": {"width": 0},
         "fill": "tonexty", "fillcolor": FILL.get(name, "rgba(0,0,0,0.1)"),
         "name": f"{name} P10-P90",
         "hovertemplate": "%{x}: %{y:.4g} " + unit + f"<extra>{name} P10</extra>"},
        {"type": "scatter", "x": x, "y": mid, "mode": "lines+markers", "name": f"{name} P50",
         "line": {"color": c},
         "hovertemplate": "%{x}: %{y:.4g} " + unit + f"<extra>{name} P50</extra>"},
    ]  # fmt: skip


def decide_charts(data: dict) -> list:
    x = data.get("quarters")
    if not isinstance(x, list):
        return []
    charts = []
    for key, cid, title, scale, unit in (
        ("cumulative_cash_usd", "fan", "Cumulative cash out (P10-P90 band, P50 line)", 1e9,
         "billion USD"),
        ("delivered_flops_per_s", "delivered", "Useful compute the own fleet delivers per quarter "
         "(supply-limited; the rest of the demand is rented)", 1e18, "useful EFLOP/s"),
        ("cumulative_usd_per_pflop_hour", "breakeven", "Cumulative cost per useful PFLOP-hour "
         "(break-even where build falls below buy)", 1.0, "USD per PFLOP-hour"),
    ):  # fmt: skip
        d = data.get(key)
        if not isinstance(d, dict):
            continue
        traces = []
        for name in ("buy", "build"):
            if isinstance(d.get(name), dict):
                traces += _band(name, x, d[name], scale, unit)
        if not traces:
            continue
        lay = _layout(title, "quarter", unit)
        be = (data.get("breakeven") or {}).get("p50_quarter")
        if cid == "breakeven" and be in x:
            lay["shapes"] = [{"type": "line", "x0": be, "x1": be, "yref": "paper", "y0": 0,
                              "y1": 1, "line": {"dash": "dot", "color": "black"}}]  # fmt: skip
            lay["title"]["text"] += f"; P50 break-even {be}"
            lay["yaxis"]["type"] = "log"
        charts.append(chart(cid, traces, lay))
    drivers = [r for r in data.get("drivers") or [] if _num(r.get("st"))][:10]
    if drivers:
        names = [str(r.get("label") or r["input"]) for r in drivers]
        traces = [
            {"type": "bar", "orientation": "h", "name": label, "y": names,
             "x": [r[k] for r in drivers],
             "hovertemplate": "%{y} " + label + ": %{x:.3f}<extra></extra>"}
            for k, label in (("s1", "first order S1"), ("st", "total order ST"))
        ]  # fmt: skip
        lay = _layout("What drives the saving (USD, PV): Sobol indices (share of its variance)",
                      "index", "", barmode="group")  # fmt: skip
        lay["yaxis"]["autorange"] = "reversed"
        lay["height"] = max(320, 40 * len(drivers) + 140)
        charts.append(chart("sobol", traces, lay))
    return charts
