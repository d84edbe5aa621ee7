"""`--html PATH`, `--png DIR` and `--trace PATH` for any command whose JSON dict has a report
kind (the trace: evaluate and compare)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from chipforge.atomic import check_created
from chipforge.errors import ChipforgeError
from chipforge.report.jsonout import check_numbers
from chipforge.userfile import note_output


def _file(flag: str):
    """A file output flag's check before any work (`check_created`), and its declaration as an
    output: an input of the command, read already or read later (a scenario's chip TOML), is
    refused as soon as both are known (`userfile.note_output`)."""

    def check(path: Path | None) -> Path | None:
        if path is not None:
            note_output(check_created(path, flag), flag)
        return path

    return check


def _png(path: Path | None) -> Path | None:
    return check_created(path, "--png", folder=True) if path is not None else None


HtmlOpt = Annotated[
    Path | None,
    typer.Option(
        "--html",
        help="also write a self-contained HTML report with charts to this file",
        callback=_file("--html"),
    ),
]
PngOpt = Annotated[
    Path | None,
    typer.Option(
        "--png", help="also write the report's charts as PNG into this folder", callback=_png
    ),
]
TraceOpt = Annotated[
    Path | None,
    typer.Option(
        "--trace",
        help="also write a Perfetto timeline (Chrome trace JSON) here; --html links it",
        callback=_file("--trace"),
    ),
]


def write_trace(path: Path | None, results: list[dict], cycle=None) -> None:
    """The run's timeline at `path`: the cycle engine's per-engine trace when `cycle` is
    `(runs, clock_hz)` with runs, else the analytical per-op timeline (one process per chip)."""
    if path is None:
        return
    if cycle and cycle[0]:
        from chipforge.sim.trace import write_trace as write_cycle_trace

        write_cycle_trace(path, *cycle)
    else:
        from chipforge.report.timeline import write_result_trace

        write_result_trace(path, results)
    Console(stderr=True, soft_wrap=True).print(f"wrote {path}", markup=False)


def _link(trace: Path, html: Path) -> str:
    """The trace's path as the page should link it: relative to the page's folder."""
    return Path(os.path.relpath(Path(trace).resolve(), Path(html).resolve().parent)).as_posix()


def write_reports(
    kind: str, data, html: Path | None, png: Path | None, *, trace: Path | None = None
) -> None:
    """Write the HTML page and/or PNG charts of `data` (a dict or anything with `to_dict`);
    a `trace` file already written is linked from the page."""
    if html is None and png is None:
        return
    data = data.to_dict() if hasattr(data, "to_dict") else data
    check_numbers(data)  # as `emit`: a negative or NaN figure is a bug, never drawn
    err = Console(stderr=True, soft_wrap=True)
    try:
        from chipforge.report.html import write_report
        from chipforge.report.png import write_pngs
    except ImportError as e:
        raise ChipforgeError(
            f"--html and --png need the report extra ({e}); pip install 'chipforge[report]'"
        ) from None
    if html is not None:
        page = {**data, "trace": _link(trace, html)} if trace is not None else data
        for w in write_report(html, kind, page):
            err.print(f"warning: report: {w}", style="yellow", markup=False)
        err.print(f"wrote {html}", markup=False)
    if png is not None:
        if html is None:
            from chipforge.report.contract import warnings
            from chipforge.report.plans import BUILDERS

            for w in warnings(kind, data, BUILDERS[kind](data)):
                err.print(f"warning: report: {w}", style="yellow", markup=False)
        paths = write_pngs(png, kind, data)
        err.print(f"wrote {len(paths)} PNG charts to {png}", markup=False)
