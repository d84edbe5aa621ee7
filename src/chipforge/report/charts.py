"""Chart specs (Plotly figure dicts) for each report kind, built from a command's JSON dict.

Every builder reads only keys that are present and returns `[]` for what it cannot draw, so a
report never fails on a missing key. The same dicts feed the HTML page (Plotly.js) and the PNG
writer (matplotlib, `chipforge.report.png`).
"""

from __future__ import annotations

import html
from collections import defaultdict

Chart = dict  # {"id": str, "data": [traces], "layout": {...}}

TOP_OPS = 30  # per-op bars beyond this are folded into "other" to stay readable on a laptop
OFFCHIP = ("HBM", "DDR", "GDDR", "LPDDR", "DRAM")


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _layout(title: str, x: str, y: str, **kw) -> dict:
    lay = {
        "title": {"text": title},
        "xaxis": {"title": {"text": x}, "automargin": True},
        "yaxis": {"title": {"text": y}, "automargin": True},
        "hovermode": "closest",
        "legend": {"orientation": "h", "y": -0.2},
        "margin": {"t": 60, "l": 60, "r": 20, "b": 60},
        "height": 460,
    }
    for k, v in kw.items():
        lay[k] = {**lay.get(k, {}), **v} if isinstance(v, dict) else v
    return lay


_TAGS = ("<br>", "<extra>", "</extra>")  # the markup chart templates here use on purpose


def html_safe(v, key: str = ""):
    """A chart spec as Plotly.js should get it: Plotly renders a subset of HTML in every label
    (links, bold, line breaks), and labels hold names from user files (chip, model, scenario),
    so `<`, `>` and `&` in every string are escaped (Plotly shows the entities as the
    characters); a `*template` key keeps the tags this module writes into it. The PNG writer
    takes the unescaped spec."""
    if isinstance(v, str):
        text = html.escape(v, quote=False)
        if key.endswith("template"):
            for tag in _TAGS:
                text = text.replace(html.escape(tag, quote=False), tag)
        return text
    if isinstance(v, dict):
        return {k: html_safe(x, str(k)) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [html_safe(x, key) for x in v]
    return v


def chart(cid: str, traces: list, layout: dict) -> Chart:
    return {"id": cid, "data": traces, "layout": layout}


def bar(cid: str, title: str, values: dict, unit: str, scale: float = 1.0, name: str = "") -> list:
    """A horizontal bar per key of `values` (numbers only), in `unit` after dividing by `scale`."""
    items = [(str(k), v / scale) for k, v in values.items() if _num(v)]
    if not items:
        return []
    trace = {
        "type": "bar",
        "orientation": "h",
        "y": [k for k, _ in items],
        "x": [v for _, v in items],
        "name": name or title,
        "hovertemplate": "%{y}: %{x:.4g} " + unit + "<extra></extra>",
    }
    lay = _layout(title, unit, "")
    lay["yaxis"]["autorange"] = "reversed"
    lay["height"] = max(320, 26 * len(items) + 140)
    lay["showlegend"] = False
    return [chart(cid, [trace], lay)]


# ---- evaluate / compare ------------------------------------------------------------------


def _offchip_bytes(op_bytes) -> float:
    if not isinstance(op_bytes, dict) or not op_bytes:
        return 0.0
    for level, b in op_bytes.items():
        if any(tag in str(level).upper() for tag in OFFCHIP) and _num(b):
            return float(b)
    return float(max((b for b in op_bytes.values() if _num(b)), default=0.0))


def _chip_roofs(chip_name, peak: float | None = None, spec=None):
    """(peak FLOP/s, off-chip bytes/s, dtype label) of `spec`, else of a named preset, or None
    where it cannot be loaded. `peak` is the result's own (the workload's main dtype); without
    it, bf16."""
    try:
        from chipforge.spec import load_chip

        spec = spec or load_chip(str(chip_name))
        dtypes = list(spec.matrix.macs_per_cycle)
        if peak:
            d = "/".join(t for t in dtypes if spec.peak_flops(t) == peak) or "peak"
            return peak, spec.hbm.bandwidth, d
        d = "bf16" if "bf16" in dtypes else dtypes[0]
        return spec.peak_flops(d), spec.hbm.bandwidth, d
    except Exception:  # noqa: BLE001 - an unknown chip (a TOML path gone) only loses its roofs
        return None


def roofline(cid: str, results: list[dict], specs: dict | None = None) -> list:
    """Each op at (FLOP per off-chip byte, achieved FLOP/s), under its chip's roofs (the chip
    from `specs` by name where given, e.g. an edited chip, else its preset)."""
    traces, xs = [], []
    for r in results:
        pts = []
        for op in r.get("ops") or []:
            f, b, t = op.get("flops"), _offchip_bytes(op.get("bytes")), op.get("time_s")
            if _num(f) and f > 0 and b > 0 and _num(t) and t > 0:
                pts.append((f / b, op.get("achieved_flops_per_s") or f / t, op))
        if not pts:
            continue
        xs += [p[0] for p in pts]
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": f"{r.get('chip', '?')} ops",
                "x": [p[0] for p in pts],
                "y": [p[1] / 1e12 for p in pts],
                "text": [f"{p[2].get('name')} ({p[2].get('kind', '')})" for p in pts],
                "marker": {"size": 9, "opacity": 0.8},
                "hovertemplate": "%{text}<br>%{x:.3g} FLOP/B<br>%{y:.4g} TFLOP/s<extra></extra>",
            }
        )
    if not traces:
        return []
    lo, hi = min(xs) / 4, max(xs) * 4
    for r in results:
        spec = (specs or {}).get(r.get("chip"))
        roofs = _chip_roofs(r.get("chip"), r.get("peak_flops_per_s"), spec)
        if roofs is None:
            continue
        peak, bw, d = roofs
        knee = peak / bw
        rx = sorted({lo, min(max(knee, lo), hi), hi})
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"{r.get('chip')} roof ({d} {peak / 1e12:,.0f} TFLOP/s, "
                f"{bw / 1e12:.2f} TB/s)",
                "x": rx,
                "y": [min(peak, bw * x) / 1e12 for x in rx],
                "line": {"dash": "dash"},
                "hovertemplate": "%{x:.3g} FLOP/B: roof %{y:.4g} TFLOP/s<extra></extra>",
            }
        )
    lay = _layout(
        "Roofline: each op at its arithmetic intensity",
        "arithmetic intensity (FLOP per off-chip byte)",
        "achieved (TFLOP/s)",
        xaxis={"type": "log"},
        yaxis={"type": "log"},
    )
    lay["height"] = 520
    return [chart(cid, traces, lay)]


def _op_times(r: dict) -> dict:
    out: dict = {}
    for op in r.get("ops") or []:
        if _num(op.get("time_s")):
            out[str(op.get("name"))] = out.get(str(op.get("name")), 0.0) + op["time_s"]
    return out


def _top(times: dict, n: int = TOP_OPS) -> dict:
    items = sorted(times.items(), key=lambda kv: -kv[1])
    top = dict(items[:n])
    if len(items) > n:
        top[f"other ({len(items) - n} ops)"] = sum(v for _, v in items[n:])
    return top


def _layer(name: str) -> str:
    return name.split(".", 1)[0] if "." in name else name


def evaluate_charts(data: dict) -> list:
    charts = roofline("roofline", [data])
    times = _op_times(data)
    charts += bar("time_per_op", "Time per op (all repeats)", _top(times), "µs", 1e-6)
    layers: dict = defaultdict(float)
    for name, t in times.items():
        layers[_layer(name)] += t
    if len(layers) > 1:
        charts += bar("time_per_layer", "Time per layer group", dict(layers), "µs", 1e-6)
    tb = data.get("time_by_bound_s")
    if isinstance(tb, dict):
        charts += bar("time_by_bound", "Time by bound", tb, "µs", 1e-6)
    return charts


def compare_charts(data: dict, specs: dict | None = None) -> list:
    results = [r for r in data.get("results") or [] if isinstance(r, dict)]
    if not results:
        return []
    chips = [str(r.get("chip", i)) for i, r in enumerate(results)]
    charts = []
    if all(_num(r.get("time_s")) for r in results):
        charts += bar(
            "time_per_chip",
            "Time per chip",
            dict(zip(chips, [r["time_s"] for r in results], strict=True)),
            "ms",
            1e-3,
        )
    bounds = sorted({k for r in results for k in (r.get("time_by_bound_s") or {})})
    if bounds:
        traces = [
            {
                "type": "bar",
                "name": b,
                "x": chips,
                "y": [((r.get("time_by_bound_s") or {}).get(b) or 0) / 1e-3 for r in results],
                "hovertemplate": "%{x} " + b + ": %{y:.4g} ms<extra></extra>",
            }
            for b in bounds
        ]
        charts.append(
            chart(
                "time_by_bound",
                traces,
                _layout("Time by bound per chip", "chip", "time (ms)", barmode="stack"),
            )
        )
    charts += roofline("roofline", results, specs)
    times = [_op_times(r) for r in results]
    ops = list(_top(times[0], 15))  # slowest first on the first chip
    if ops:
        traces = [
            {
                "type": "bar",
                "orientation": "h",
                "name": c,
                "y": ops,
                "x": [t.get(o, 0.0) / 1e-6 for o in ops],
                "hovertemplate": "%{y}: %{x:.4g} µs<extra>" + c + "</extra>",
            }
            for c, t in zip(chips, times, strict=True)
        ]
        lay = _layout("Time per op by chip", "µs", "", barmode="group")
        lay["yaxis"]["autorange"] = "reversed"
        lay["height"] = max(360, 16 * len(ops) * len(chips) + 160)
        charts.append(chart("time_per_op", traces, lay))
    return charts


# ---- cost ---------------------------------------------------------------------------------


def cost_charts(data: dict) -> list:
    b = data.get("breakdown") if isinstance(data.get("breakdown"), dict) else {}
    charts = []
    charts += bar("area", "Area by block (all dies)", b.get("area_mm2") or {}, "mm²")
    charts += bar("power", "Power at TDP by block", b.get("power_w") or {}, "W")
    charts += bar("unit_cost", "Unit cost", b.get("cost_usd") or {}, "USD")
    charts += bar("one_time", "One-time costs", data.get("one_time_usd") or {}, "million USD", 1e6)
    peak = data.get("peak_flops_per_s")
    if isinstance(peak, dict):
        charts += bar("peak", "Peak dense throughput per dtype", peak, "TFLOP/s", 1e12)
    return charts
