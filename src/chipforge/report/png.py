"""PNG charts for slides: the HTML report's chart specs drawn with matplotlib (no browser)."""

from __future__ import annotations

from pathlib import Path

from chipforge.errors import ChipforgeError
from chipforge.report.plans import BUILDERS


def _title(d) -> str:
    return (d or {}).get("title", {}).get("text", "") if isinstance(d, dict) else ""


def _draw(ax, spec: dict) -> None:
    lay = spec["layout"]
    hbars = [t for t in spec["data"] if t.get("type") == "bar" and t.get("orientation") == "h"]
    vbars = [t for t in spec["data"] if t.get("type") == "bar" and t.get("orientation") != "h"]
    if hbars:
        labels = list(dict.fromkeys(y for t in hbars for y in t["y"]))
        n, height = len(hbars), 0.8 / len(hbars)
        for i, t in enumerate(hbars):
            pos = {y: j for j, y in enumerate(labels)}
            ys = [pos[y] + (i - (n - 1) / 2) * height if n > 1 else pos[y] for y in t["y"]]
            base = t.get("base", 0)
            ax.barh(ys, t["x"], height=height, left=base, label=t.get("name"))
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
    if vbars:
        stack = lay.get("barmode") == "stack"
        bottom = [0.0] * len(vbars[0]["x"])
        for t in vbars:
            ax.bar(t["x"], t["y"], bottom=bottom if stack else None, label=t.get("name"))
            if stack:
                bottom = [b + (y or 0) for b, y in zip(bottom, t["y"], strict=False)]
    for t in spec["data"]:
        if t.get("type") == "scatter":
            mode = t.get("mode", "markers")
            style = (
                ("--" if "lines" in mode and mode == "lines" else "-o") if "lines" in mode else "o"
            )
            ax.plot(t["x"], t["y"], style, label=t.get("name"), markersize=4)
    xa, ya = lay.get("xaxis", {}), lay.get("yaxis", {})
    if xa.get("type") == "log":
        ax.set_xscale("log")
    if ya.get("type") == "log":
        ax.set_yscale("log")
    ax.set_title(_title(lay), fontsize=11)
    ax.set_xlabel(_title(xa))
    ax.set_ylabel(_title(ya))
    ax.grid(alpha=0.3)
    if len(spec["data"]) > 1:
        ax.legend(fontsize=8)


def write_pngs(out_dir, kind: str, data: dict) -> list[Path]:
    """One PNG per chart of `kind` into `out_dir` (created); returns the paths written."""
    if kind not in BUILDERS:
        raise ChipforgeError(f"report kind {kind!r}: use one of {', '.join(BUILDERS)}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is in the report extra
        raise ChipforgeError("`--png` needs matplotlib: pip install 'chipforge[report]'") from exc
    data = data.to_dict() if hasattr(data, "to_dict") else dict(data or {})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in BUILDERS[kind](data):
        rows = max(
            (len(t.get("y", [])) for t in spec["data"] if t.get("orientation") == "h"), default=0
        )
        fig, ax = plt.subplots(figsize=(10, max(4.5, 0.28 * rows + 1.5)), dpi=110)
        try:
            _draw(ax, spec)
            fig.tight_layout()
            path = out / f"{kind}_{spec['id']}.png"
            fig.savefig(path)
            paths.append(path)
        finally:
            plt.close(fig)
    return paths
