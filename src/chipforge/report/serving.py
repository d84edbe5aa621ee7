"""Serve report charts: the latency/throughput curve of a serving plan, its latencies, memory and
phases, from `ServingPlan.to_dict()` (`chipforge serve --json`).

The curve is the list under `curve`, one record per concurrency the planner tried, with the keys
agreed with the serving model: `concurrency`, `batch`, `throughput_tokens_per_s`,
`throughput_tokens_per_s_per_chip`, `ttft_s`, `tpot_s`, `feasible`.
"""

from __future__ import annotations

from chipforge.report.charts import _layout, _num, bar, chart

# (key, label, line dash, colour): each latency's infeasible points are crosses in its colour
SERIES = (("tpot_s", "TPOT", "solid", "#1f77b4"), ("ttft_s", "TTFT", "dash", "#ff7f0e"))


def _x_key(pts: list[dict], data: dict) -> str:
    """Per-chip throughput when every point and the chosen plan have it, else the total."""
    per_chip = "throughput_tokens_per_s_per_chip"
    if all(_num(p.get(per_chip)) for p in pts) and _num(data.get(per_chip)):
        return per_chip
    return "throughput_tokens_per_s"


def _text(p: dict) -> str:
    flag = "feasible" if p.get("feasible", True) else "infeasible"
    parts = [str(p["_label"])] if p.get("_label") else []
    parts += [f"concurrency {p.get('concurrency', '?')}", f"batch {p.get('batch', '?')}", flag]
    if _num(p.get("throughput_tokens_per_s")):
        parts.append(f"{p['throughput_tokens_per_s']:,.0f} tok/s in all")
    return ", ".join(parts)


def _series(name: str, pts: list, xk: str, yk: str, style: dict) -> dict | None:
    pts = [p for p in pts if _num(p.get(xk)) and _num(p.get(yk))]
    if not pts:
        return None
    return {
        "type": "scatter",
        "name": name,
        "x": [p[xk] for p in pts],
        "y": [p[yk] * 1e3 for p in pts],
        "text": [_text(p) for p in pts],
        "hovertemplate": "%{text}<br>%{x:,.4g} tok/s<br>" + name + ": %{y:.4g} ms<extra></extra>",
        **style,
    }


def latency_throughput(data: dict) -> list:
    """TPOT and TTFT (ms, log) against throughput over the curve; the chosen plan starred and
    infeasible points greyed out."""
    pts = [p for p in data.get("curve") or [] if isinstance(p, dict)]
    if not pts:
        return []
    xk = _x_key(pts, data)
    ok = [p for p in pts if p.get("feasible", True)]
    bad = [p for p in pts if not p.get("feasible", True)]
    traces = []
    for yk, label, dash, color in SERIES:
        line = {
            "mode": "lines+markers",
            "line": {"dash": dash, "color": color},
            "marker": {"size": 7, "color": color},
        }
        traces.append(_series(label, ok, xk, yk, line))
        cross = {"mode": "markers", "marker": {"symbol": "x", "size": 9, "color": color}}
        traces.append(_series(f"{label}, infeasible (SLO missed)", bad, xk, yk, cross))
    if _num(data.get(xk)):
        chosen = [
            {
                **data,
                "batch": (data.get("plan") or {}).get("batch"),
                "_y": data[yk],
                "_label": label,
            }
            for yk, label in (("tpot_s", "TPOT"), ("ttft_s", "TTFT"))
            if _num(data.get(yk))
        ]
        star = {"mode": "markers", "marker": {"symbol": "star", "size": 16, "color": "#d62728"}}
        traces.append(_series("chosen plan", chosen, xk, "_y", star))
    traces = [t for t in traces if t is not None]
    if not traces:
        return []
    chips = data.get("chips")
    xlabel = "output tokens/s per chip" if xk.endswith("_per_chip") else "output tokens/s"
    if _num(chips):
        xlabel += f" ({chips:g} chips)"
    lay = _layout(
        "Latency vs throughput over concurrency (star: chosen plan; x: infeasible)",
        xlabel,
        "latency (ms, log)",
        yaxis={"type": "log"},
    )
    return [chart("latency_throughput", traces, lay)]


def serve_charts(data: dict) -> list:
    charts = latency_throughput(data)
    lat = {
        k.removesuffix("_s"): v
        for k, v in data.items()
        if k in ("ttft_s", "tpot_s", "e2e_latency_s")
    }
    charts += bar("latency", "Latency", lat, "ms", 1e-3)
    mem = data.get("memory_per_chip_bytes")
    if isinstance(mem, dict):
        skip = ("capacity_bytes", "kv_bytes_per_token", "total", "total_bytes")
        cats = {str(k).removesuffix("_bytes"): v for k, v in mem.items() if k not in skip}
        cap = mem.get("capacity_bytes")
        title = "Memory per chip by category" + (
            f" (capacity {cap / 1e9:,.0f} GB)" if _num(cap) else ""
        )
        charts += bar("memory", title, cats, "GB", 1e9)
    parts = data.get("breakdown_s")
    if isinstance(parts, dict):
        charts += bar("phases", "Time per request by phase", parts, "ms", 1e-3)
    return charts
