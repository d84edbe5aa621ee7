"""`--html PATH` and `--png DIR` for any command whose JSON dict has a report kind."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

HtmlOpt = Annotated[
    Path | None,
    typer.Option("--html", help="also write a self-contained HTML report with charts to this file"),
]
PngOpt = Annotated[
    Path | None,
    typer.Option("--png", help="also write the report's charts as PNG into this folder"),
]


def write_reports(kind: str, data, html: Path | None, png: Path | None) -> None:
    """Write the HTML page and/or PNG charts of `data` (a dict or anything with `to_dict`)."""
    if html is None and png is None:
        return
    data = data.to_dict() if hasattr(data, "to_dict") else data
    err = Console(stderr=True, soft_wrap=True)
    if html is not None:
        from chipforge.report.html import write_report

        write_report(html, kind, data)
        err.print(f"wrote {html}", markup=False)
    if png is not None:
        from chipforge.report.png import write_pngs

        paths = write_pngs(png, kind, data)
        err.print(f"wrote {len(paths)} PNG charts to {png}", markup=False)
