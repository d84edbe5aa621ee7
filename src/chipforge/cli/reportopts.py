"""`--html PATH` and `--png DIR` for any command whose JSON dict has a report kind."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from chipforge.errors import ChipforgeError

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
    try:
        from chipforge.report.html import write_report
        from chipforge.report.png import write_pngs
    except ImportError as e:
        raise ChipforgeError(
            f"--html and --png need the report extra ({e}); pip install 'chipforge[report]'"
        ) from None
    if html is not None:
        write_report(html, kind, data)
        err.print(f"wrote {html}", markup=False)
    if png is not None:
        paths = write_pngs(png, kind, data)
        err.print(f"wrote {len(paths)} PNG charts to {png}", markup=False)
