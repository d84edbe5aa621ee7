"""PNG charts for slides: the HTML report's chart specs drawn with matplotlib (no browser).

Speed (issue 10: a report under 2 s): matplotlib is imported on first use, without pyplot (no GUI
backend, no global figure registry: `Figure` drawn on the Agg canvas directly), and margins are set
from the label lengths instead of a `tight_layout` pass, which measured text twice per chart.
"""

from __future__ import annotations

from pathlib import Path

from chipforge.atomic import atomic_path, output_dir
from chipforge.errors import ChipforgeError
from chipforge.report.plans import BUILDERS

DPI = 100  # 1000 x 450+ px at the 10 in width: sharp on a 1080p slide, smaller files than 150 dpi
WIDTH_IN = 10.0
MARKERS = {"x": "x", "star": "*", "circle": "o", "diamond": "D", "square": "s"}
DASHES = {"dash": "--", "dot": ":", "dashdot": "-."}


def _title(d) -> str:
    return (d or {}).get("title", {}).get("text", "") if isinstance(d, dict) else ""


def _scatter(ax, t: dict) -> None:
    mode = t.get("mode", "markers")
    marker = t.get("marker") or {}
    line = t.get("line") or {}
    style = {
        "marker": MARKERS.get(marker.get("symbol"), "o") if "markers" in mode else "",
        "linestyle": DASHES.get(line.get("dash"), "-") if "lines" in mode else "none",
        "markersize": max(3, (marker.get("size") or 8) / 2),
        "label": t.get("name"),
    }
    if marker.get("color") or line.get("color"):
        style["color"] = marker.get("color") or line["color"]
    ax.plot(t["x"], t["y"], **style)


def _log_ticks(axis) -> None:
    """Labelled ticks at 1, 2 and 5 per decade, plain numbers, and no minor ticks (matplotlib's
    minor log ticks tripled the drawing time and labelled nothing on a short range)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(NullLocator())


def _draw(ax, spec: dict) -> int:
    """Draw `spec` on `ax`; returns the longest y tick label (characters) for the margin."""
    lay = spec["layout"]
    hbars = [t for t in spec["data"] if t.get("type") == "bar" and t.get("orientation") == "h"]
    vbars = [t for t in spec["data"] if t.get("type") == "bar" and t.get("orientation") != "h"]
    longest = 8
    if hbars:
        labels = list(dict.fromkeys(y for t in hbars for y in t["y"]))
        pos = {y: j for j, y in enumerate(labels)}
        n, height = len(hbars), 0.8 / len(hbars)
        for i, t in enumerate(hbars):
            ys = [pos[y] + (i - (n - 1) / 2) * height if n > 1 else pos[y] for y in t["y"]]
            ax.barh(ys, t["x"], height=height, left=t.get("base", 0), label=t.get("name"))
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        longest = max(len(str(y)) for y in labels)
    if vbars:
        stack = lay.get("barmode") == "stack"
        bottom = [0.0] * len(vbars[0]["x"])
        for t in vbars:
            ax.bar(t["x"], t["y"], bottom=bottom if stack else None, label=t.get("name"))
            if stack:
                bottom = [b + (y or 0) for b, y in zip(bottom, t["y"], strict=False)]
    for t in spec["data"]:
        if t.get("type") == "scatter":
            _scatter(ax, t)
    xa, ya = lay.get("xaxis", {}), lay.get("yaxis", {})
    if xa.get("type") == "log":
        ax.set_xscale("log")
        _log_ticks(ax.xaxis)
    if ya.get("type") == "log":
        ax.set_yscale("log")
        _log_ticks(ax.yaxis)
    ax.set_title(_title(lay), fontsize=11)
    ax.set_xlabel(_title(xa))
    ax.set_ylabel(_title(ya))
    ax.grid(alpha=0.3)
    if len(spec["data"]) > 1:
        ax.legend(fontsize=8)
    return longest


def _figure_tools():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is in the report extra
        raise ChipforgeError("`--png` needs matplotlib: pip install 'chipforge[report]'") from exc
    return Figure, FigureCanvasAgg


def write_pngs(out_dir, kind: str, data: dict, *, dpi: int = DPI) -> list[Path]:
    """One PNG per chart of `kind` into `out_dir` (created); returns the paths written."""
    if kind not in BUILDERS:
        raise ChipforgeError(f"report kind {kind!r}: use one of {', '.join(BUILDERS)}")
    data = data.to_dict() if hasattr(data, "to_dict") else dict(data or {})
    specs = BUILDERS[kind](data)
    if not specs:
        return []
    Figure, FigureCanvasAgg = _figure_tools()
    from matplotlib import rc_context

    out = output_dir(out_dir, "--png")
    with rc_context({"text.parse_math": False}):  # a `$..$` in a chip's name is text, not TeX
        return [_png(Figure, FigureCanvasAgg, out, kind, spec, dpi) for spec in specs]


def _png(Figure, FigureCanvasAgg, out: Path, kind: str, spec: dict, dpi: int) -> Path:
    """One chart of `kind` as a PNG in `out`."""
    rows = max(
        (len(t.get("y", [])) for t in spec["data"] if t.get("orientation") == "h"), default=0
    )
    h = max(4.5, 0.28 * rows + 1.5)
    fig = Figure(figsize=(WIDTH_IN, h), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    longest = _draw(ax, spec)
    # margins in inches, from the tick label length (8 pt text: ~0.075 in a character)
    left = min(0.45, (0.75 + 0.075 * min(longest, 48)) / WIDTH_IN)
    fig.subplots_adjust(left=left, right=0.98, top=1 - 0.45 / h, bottom=0.75 / h)
    path = out / f"{kind}_{spec['id']}.png"
    with atomic_path(path, flag="--png") as tmp:
        fig.savefig(tmp, format="png")
    return path
