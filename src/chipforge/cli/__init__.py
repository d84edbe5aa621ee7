"""The `chipforge` command line. Every command has --json; user errors exit 2 in one line.

The Typer app and its shared options live here; the commands are in `commands` (chips,
workloads, the analytical engine) and `simulate` (compiler and simulators)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from chipforge.atomic import atomic_open, check_target
from chipforge.errors import ChipforgeError
from chipforge.report import to_json

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Define an AI accelerator, run models on it, compare it with GPUs.",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]


def _check_out(path: Path | None) -> Path | None:
    """`--out` is checked before any work: a folder, a missing folder or a read-only file is
    a one-line error now, not after a long run."""
    return check_target(path, "--out") if path is not None else None


OutOpt = Annotated[
    Path | None,
    typer.Option("--out", help="write the output to this file", callback=_check_out),
]
ChipOpt = Annotated[str, typer.Option("--chip", help="preset name or chip TOML path")]
MODEL_HELP = (
    "model preset, llm:<preset>,key=value, llm:custom,..., a HuggingFace config.json or a "
    "folder with one"
)
ModelOptional = typer.Option("--model", help=MODEL_HELP)
ModelOpt = Annotated[str, ModelOptional]
WorkloadOpt = Annotated[
    str,
    typer.Option(
        "--workload",
        help="model preset, llm:..., gemm:..., zoo:..., model.onnx, program.pt2 or "
        "config.json (sizes as ,key=value)",
    ),
]

TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="DANGEROUS: let torch unpickle a .pt2 model file (torch.export.load, pickled "
        "weights), which runs any code the file holds; only for files you trust",
    ),
]


def trusting(trust_pickle: bool) -> bool:
    """`--trust-pickle` as given, said on stderr (one line) when it is."""
    if trust_pickle:
        Console(stderr=True, soft_wrap=True).print(
            "warning: --trust-pickle: a .pt2 model file may be unpickled, which runs any code "
            "it holds",
            style="yellow",
            markup=False,
        )
    return trust_pickle


def emit(data, tables: list, *, as_json: bool, out: Path | None) -> None:
    """Print JSON or tables to stdout, or to `out` (written atomically: a failed write leaves
    the previous file whole)."""
    if out:
        with atomic_open(out, flag="--out") as f:
            _print(Console(file=f, width=160), data, tables, as_json)
        return
    console = Console()
    if not console.is_terminal:
        console.width = 160  # piped or captured: do not wrap at 80 columns
    _print(console, data, tables, as_json)


def _print(console: Console, data, tables: list, as_json: bool) -> None:
    if as_json:
        console.file.write(to_json(data))
    else:
        for table in tables:
            console.print(table)


def deprecated(old: str, new: str) -> None:
    """One warning line on stderr: `old` still works, `new` is the spelling to use."""
    Console(stderr=True, soft_wrap=True).print(
        f"warning: {old} is deprecated; use {new}", style="yellow", markup=False
    )


def warn(result) -> None:
    """A result's warnings on stderr, one line each."""
    for warning in result.warnings:
        Console(stderr=True, soft_wrap=True).print(
            f"warning: {warning}", style="yellow", markup=False
        )


def _version(value: bool) -> None:
    if value:
        from chipforge import __version__

        print(f"chipforge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """Define an AI accelerator, run models on it, compare it with GPUs."""


def main() -> None:
    """Entry point: user errors print one line and exit 2, never a traceback."""
    try:
        app()  # standalone: usage errors exit 2 with the usage line, --help exits 0
    except ChipforgeError as e:
        Console(stderr=True).print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)


# registers the commands
from chipforge.cli import (  # noqa: E402,F401
    commands,
    cost,
    datacenter,
    decide,
    rtl,
    serve,
    simulate,
    sweep,
    train,
)
