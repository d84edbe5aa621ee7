"""Self-contained HTML reports: Plotly.js inlined once per page (works offline), one chart per
known key of a command's JSON dict, and a table for every other value.

`render_report(kind, data)` returns the page; `write_report(path, kind, data)` writes it.
Kinds: evaluate, compare, cost, train, serve, datacenter, sweep (and `demo`, a list of sections).
"""

from __future__ import annotations

import html
import json
import math
from functools import lru_cache

from chipforge.atomic import atomic_write_text
from chipforge.display import has_unit, label, show
from chipforge.errors import ChipforgeError
from chipforge.report import contract
from chipforge.report.charts import html_safe
from chipforge.report.plans import BUILDERS

KINDS = tuple(BUILDERS)
MAX_ROWS = 200  # table rows shown per list; the JSON output has them all

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:16px 24px;color:#222}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-top:.6em}
.chart{width:100%;min-height:320px;margin:8px 0 20px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:.9em}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
th{background:#f4f4f4}.meta{color:#666;font-size:.9em}details{margin:8px 0}
.report_warning{background:#fff4e5;border:1px solid #f0a020;border-radius:4px;padding:6px 12px;
margin:8px 0}.report_warning ul{margin:4px 0}
"""


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    try:
        from plotly.offline import get_plotlyjs
    except ImportError as exc:  # pragma: no cover - plotly is in the report extra
        raise ChipforgeError("HTML reports need plotly: pip install 'chipforge[report]'") from exc
    return get_plotlyjs()


def _clean(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def _fmt(v, key: str = "") -> str:
    """A cell for a person: `display.show` by the key's unit suffix (never scientific
    notation); a dict as `name value, ...`; a list of records by its length (the JSON has
    them)."""
    if isinstance(v, dict):
        text = "; ".join(f"{label(str(k))} {_fmt(x, _unit_key(key, k))}" for k, x in v.items())
    elif isinstance(v, list) and any(isinstance(x, (list, dict)) for x in v):
        text = f"{len(v)} entries"
    elif isinstance(v, list):
        text = ", ".join(show(key, x) for x in v)
    else:
        return show(key, v)
    return text if len(text) < 200 else text[:197] + "..."


def _table(rows: list[list], head: list[str] | None = None, keys: list[str] | None = None) -> str:
    """Rows of cells; `keys[i]` is the JSON key whose unit column i's numbers carry (a row's
    first cell names its own key when `keys` is None)."""
    e = html.escape
    out = ["<table>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{e(str(h))}</th>" for h in head) + "</tr>")
    for row in rows:
        if not row:
            continue
        ks = keys or [str(row[0])] * len(row)
        cells = [e(label(str(row[0])))] if keys is None else []
        cells += [e(_fmt(c, k)) for c, k in zip(row[len(cells) :], ks[len(cells) :], strict=False)]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "".join(out) + "</table>"


def _unit_key(parent: str, key: str) -> str:
    """The key whose suffix gives the unit of `parent[key]`: the item's own when it has one
    (`capex_usd.chips_usd`), else the parent's (`memory_by_category_bytes.weights`)."""
    k = str(key)
    return k if has_unit(k) else str(parent)


def tables(data: dict) -> str:
    """Scalars as one key/value table; dicts of scalars and lists of records as their own tables.
    Row names and values through `chipforge.display` (units, SI prefixes); JSON keeps the keys."""
    scalars = [[k, v] for k, v in data.items() if not isinstance(v, (dict, list))]
    parts = [_table(scalars, ["figure", "value"])] if scalars else []
    for k, v in data.items():
        e = html.escape(label(str(k)))
        if isinstance(v, dict) and v:
            if all(not isinstance(x, (dict, list)) for x in v.values()):
                body = "".join(
                    f"<tr><td>{html.escape(label(str(a)))}</td>"
                    f"<td>{html.escape(_fmt(b, _unit_key(k, a)))}</td></tr>"
                    for a, b in v.items()
                )
                parts.append(f"<h3>{e}</h3><table><tr><th>item</th><th>{e}</th></tr>{body}</table>")
            else:
                parts.append(f"<details><summary>{e}</summary>{tables(v)}</details>")
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            cols = list(dict.fromkeys(c for x in v[:MAX_ROWS] for c in x))
            rows = [[x.get(c, "") for c in cols] for x in v[:MAX_ROWS]]
            more = f" (first {MAX_ROWS} of {len(v)})" if len(v) > MAX_ROWS else ""
            summary = f"<summary>{e}: {len(v)} rows{more}</summary>"
            head = [label(str(c)) for c in cols]
            if "key" in cols and "value" in cols:  # key/value records: the value's unit by row
                i, j = cols.index("key"), cols.index("value")
                rows = [[*r[:j], show(str(r[i]), r[j]), *r[j + 1 :]] for r in rows]
            shown = " open" if k == "assumptions" else ""  # a report's sources stay in view
            parts.append(
                f"<details{shown}>{summary}{_table(rows, head, [str(c) for c in cols])}</details>"
            )
        elif isinstance(v, list) and v:
            parts.append(_table([[k, v]]))
    return "".join(parts)


def _trace_link(data: dict) -> str:
    trace = data.get("trace") or data.get("trace_path")
    if not (isinstance(trace, str) and trace):
        return ""
    t = html.escape(trace)
    what = "Cycle-level timeline" if data.get("engine") == "cycle" else "Per-op timeline"
    if data.get("results"):
        what += " (one process per chip)"
    return (
        f'<p class="trace">{what}: <a href="{t}">{t}</a> (Perfetto JSON; open it in '
        '<a href="https://ui.perfetto.dev">ui.perfetto.dev</a> or chrome://tracing).</p>'
    )


def _section(kind: str, data: dict, heading: str, prefix: str) -> tuple[str, list, list]:
    try:
        charts = BUILDERS[kind](data)
        notes = contract.warnings(kind, data, charts)
    except Exception as exc:  # noqa: BLE001 - a chart must never take the report down
        charts, notes = [], [f"charts skipped: {type(exc).__name__}: {exc}"]
    if notes:
        data = {**data, "report_warning": "; ".join(notes)}
    for c in charts:
        c["id"] = f"{prefix}{c['id']}"
    divs = "".join(f'<div class="chart" id="{c["id"]}"></div>' for c in charts)
    box = ""
    if notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        box = (
            f'<div class="report_warning" role="alert" id="{prefix}report_warning">'
            f"<b>report_warning</b>: expected charts missing<ul>{items}</ul></div>"
        )
    body = (
        f"<h2>{html.escape(heading)}</h2>{box}{_trace_link(data)}{divs}"
        f"<h3>Figures</h3>{tables(data)}"
    )
    return body, charts, notes


def render_sections(sections: list[tuple[str, str, dict]], title: str) -> str:
    """One page of several (kind, heading, data) sections; Plotly.js inlined once."""
    return _render(sections, title)[0]


def _render(sections: list[tuple[str, str, dict]], title: str) -> tuple[str, list[str]]:
    bodies, charts, notes = [], [], []
    for i, (kind, heading, data) in enumerate(sections):
        if kind not in BUILDERS:
            raise ChipforgeError(f"report kind {kind!r}: use one of {', '.join(KINDS)}")
        body, cs, ns = _section(kind, data if isinstance(data, dict) else {}, heading, f"s{i}_")
        bodies.append(body)
        charts += cs
        notes += [f"{heading}: {n}" if len(sections) > 1 else n for n in ns]
    specs = json.dumps(
        [
            {
                "id": c["id"],
                "data": html_safe(_clean(c["data"])),
                "layout": html_safe(_clean(c["layout"])),
            }
            for c in charts
        ]  # fmt: skip
    ).replace("</", "<\\/")
    script = (
        "window.cfErrors=[];window.addEventListener('error',function(e){window.cfErrors.push("
        "String(e.message));document.body.setAttribute('data-errors',window.cfErrors.length);});"
        f"var specs={specs};var done=0;"
        "specs.forEach(function(s){Plotly.newPlot(s.id,s.data,s.layout,{responsive:true,"
        "displaylogo:false}).then(function(){done++;document.body.setAttribute("
        "'data-rendered',done);});});"
    )
    e = html.escape(title)
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{e}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<style>{STYLE}</style><script>{_plotly_js()}</script></head>"
        f'<body data-charts="{len(charts)}" data-rendered="0" data-errors="0" '
        f'data-warnings="{len(notes)}"><h1>{e}</h1>'
        '<p class="meta">Generated by chipforge. Hover a chart for values; drag to zoom, '
        "double-click to reset.</p>"
        f"{''.join(bodies)}<script>{script}</script></body></html>"
    )
    return page, notes


def _one(kind: str, data, title: str | None) -> tuple[list, str]:
    if kind not in BUILDERS:
        raise ChipforgeError(f"report kind {kind!r}: use one of {', '.join(KINDS)}")
    data = data.to_dict() if hasattr(data, "to_dict") else dict(data or {})
    name = data.get("chip") or data.get("workload") or ""
    title = title or f"chipforge {kind}" + (f": {name}" if isinstance(name, str) and name else "")
    return [(kind, kind, data)], title


def render_report(kind: str, data: dict, *, title: str | None = None) -> str:
    """The page for one command's JSON dict (`kind` is the command's name)."""
    return _render(*_one(kind, data, title))[0]


def write_report(path, kind: str, data: dict, *, title: str | None = None) -> list[str]:
    """Write `render_report(kind, data)` to `path` (parent folders created); returns the
    page's report warnings (expected charts the data could not draw)."""
    page, notes = _render(*_one(kind, data, title))
    atomic_write_text(path, page, flag="--html", mkdir=True)
    return notes
