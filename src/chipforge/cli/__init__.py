"""The `chipforge` command line. Every command has --json; user errors exit 2 in one line.

The Typer app and its shared options live here; the commands are in `commands` (chips,
workloads, the analytical engine) and `simulate` (compiler and simulators)."""

from __future__ import annotations

import os
import sys
import traceback
from functools import cache
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from chipforge.atomic import atomic_open, check_target
from chipforge.errors import ChipforgeError
from chipforge.report import to_json
from chipforge.report.jsonout import check_numbers
from chipforge.userfile import forget_inputs, note_input

try:  # typer vendors click from 0.2x on; earlier versions raise click's own exceptions
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Define an AI accelerator, run models on it, compare it with GPUs.",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]


def _check_out(path: Path | None) -> Path | None:
    """`--out` is checked before any work: a folder, a missing folder, a read-only file or an
    input of the command (`userfile.note_output`) is a one-line error now, not after a long
    run."""
    if path is not None:
        check_target(path, "--out", declare=True)
    return path


OutOpt = Annotated[
    Path | None,
    typer.Option("--out", help="write the output to this file", callback=_check_out),
]
ChipOpt = Annotated[str, typer.Option("--chip", help="preset name or chip TOML path")]
SustainedClockOpt = Annotated[
    bool,
    typer.Option(
        "--sustained-clock",
        help="price the layers at the chip's power-limited sustained clock where its "
        "preset states one (sustained_clock), not the boost clock of its peaks",
    ),
]
# A plan's parallel degrees, one option each that `train` and `serve` both take: one type, one
# bound and so one message (click's range check: "0 is not in the range x>=1"), one help
TpOpt = Annotated[
    int | None,
    typer.Option("--tp", min=1, help="tensor-parallel chips per layer (default: searched)"),
]
PpOpt = Annotated[
    int | None, typer.Option("--pp", min=1, help="pipeline stages (default: searched)")
]
EpOpt = Annotated[
    int | None,
    typer.Option("--ep", min=1, help="expert-parallel chips (MoE; default: searched)"),
]
TopologyOpt = Annotated[
    str | None,
    typer.Option(
        "--topology",
        help="network topology preset (default: the chip's own, its scale-up bandwidth from "
        "the chip's link spec)",
    ),
]


def dtype_flag(value: str | None) -> str | None:
    """`--dtype` of `train`, `serve` and `datacenter` (the number format of the model's matmuls):
    one check with one message, before any work (dtypes.check_dtype)."""
    from chipforge.dtypes import check_dtype

    return value if value is None else check_dtype(value, "--dtype")


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
    the previous file whole). A negative or NaN time, FLOP count, energy, throughput or cost in
    `data` is a bug: it stops here (exit 3), never printed."""
    check_numbers(data.to_dict() if hasattr(data, "to_dict") else data)
    if out:
        with atomic_open(out, flag="--out") as f:
            _print(Console(file=f, width=160, markup=False, emoji=False), data, tables, as_json)
        return
    console = Console(markup=False, emoji=False)  # names from files are text, never markup
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


def warn(result, skip=()) -> None:
    """A result's warnings on stderr, one line each (but those in `skip`)."""
    for warning in (w for w in result.warnings if w not in skip):
        Console(stderr=True, soft_wrap=True).print(
            f"warning: {warning}", style="yellow", markup=False
        )


def no_effect(why: dict[str, str]) -> None:
    """One warning line on stderr per run flag the planned run leaves without effect:
    `why` maps each such flag to the reason (train and serve share the wording)."""
    for flag, reason in why.items():
        Console(stderr=True, soft_wrap=True).print(
            f"warning: {flag} has no effect: {reason}", style="yellow", markup=False
        )


def unthrottled(chip: str) -> str | None:
    """Why --sustained-clock has no effect on `chip` (it states no sustained clock below its
    clock, so training and serving price it at its boost clock), or None where it has one."""
    from chipforge.spec.loader import load_chip

    spec = load_chip(chip)
    return None if spec.throttles else f"{spec.name} states no sustained_clock below its clock"


def _version(value: bool) -> None:
    if value:
        from chipforge import __version__

        print(f"chipforge {__version__}")
        raise typer.Exit()


DEBUG_ENV = "CHIPFORGE_DEBUG"


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="on an internal error, print the traceback (anywhere on the command line; "
            f"or {DEBUG_ENV}=1)",
        ),
    ] = False,
) -> None:
    """Define an AI accelerator, run models on it, compare it with GPUs."""
    ctx.call_on_close(forget_inputs)  # the next command (or API call) starts afresh


def _say(text: str) -> None:
    Console(stderr=True).print(text, markup=False, highlight=False, soft_wrap=True)


@cache
def _command():
    """The click command of `app`, built once per process (Typer rebuilds it, ~0.1 s, on every
    call of `app()`)."""
    return typer.main.get_command(app)


OUTPUT_FLAGS = ("--out", "--html", "--trace")


def _inputs_named(args: list[str]) -> list[Path]:
    """The existing files the arguments name: a path, each part of a comma list, the head of
    `llm:PATH,key=value`, a model folder's config.json."""
    found = []
    for arg in args:
        parts = {arg, *arg.split(",")}
        for part in {*parts, *(p.removeprefix("llm:") for p in parts),
                     *(p.partition("=")[2] for p in parts)} - {""}:  # fmt: skip
            try:
                p = Path(part)
                if p.is_dir():
                    p = p / "config.json"
                if p.is_file():
                    found.append(p)
            except (OSError, ValueError):  # a name too long, a NUL: not a file
                continue
    return found


def _note_named_inputs(args: list[str]) -> None:
    """The files the arguments name, but the output flags' values, are this command's inputs
    (`userfile.note_input`), read by chipforge's loaders or not (torch reading a trusted .pt2):
    an output flag naming one is refused when it is checked, before any work."""
    rest, i = [], 0
    while i < len(args):
        flag, eq, _ = args[i].partition("=")
        if flag in OUTPUT_FLAGS:
            i += 1 if eq else 2
            continue
        rest.append(args[i])
        i += 1
    for p in _inputs_named(rest):
        note_input(p, "file named on the command line")


def main(argv: list[str] | None = None) -> None:
    """Entry point. A user error prints one line and exits 2 (usage errors too); anything else
    is a bug: one line, exit 3, and the traceback with `--debug` (anywhere on the command line)
    or CHIPFORGE_DEBUG=1."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    forget_inputs()  # files read by an earlier command of this process are not this one's
    try:
        _note_named_inputs(args)
        code = _command().main(args=args, prog_name="chipforge", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as e:
        e.show()  # `chipforge` alone: the help
        sys.exit(2)
    except click_errors.ClickException as e:  # one line, not click's boxed usage block
        ctx = getattr(e, "ctx", None)
        _say(f"error: {e.format_message()} (see {ctx.command_path if ctx else 'chipforge'} --help)")
        sys.exit(e.exit_code)
    except typer.Abort:
        _say("aborted")
        sys.exit(1)
    except ChipforgeError as e:
        _say(f"error: {_one_line(e)}")
        sys.exit(2)
    except KeyboardInterrupt:
        _say("interrupted")
        sys.exit(130)
    except BrokenPipeError:  # `chipforge ... | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except OSError as e:
        if e.filename is None:
            _internal(e, debug)
        # a path the user gave that cannot be read or written (each loader names its field;
        # this catches the rest)
        _say(f"error: {str(e.filename)[:120]!r}: {e.strerror or e}")
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - the one place that turns a bug into one line
        _internal(e, debug)
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(e: ChipforgeError) -> str:
    """The error's one line: a line break it echoes from the user's input (a TOML key holding
    one) written as \\n, so the message stays one line; an error that carries a tool's own
    log (`verbatim`, e.g. a failed Verilator build) keeps its lines."""
    text = str(e)
    if getattr(e, "verbatim", False):
        return text
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _internal(e: BaseException, debug: bool) -> None:
    """A bug: one line (the traceback with --debug), exit 3."""
    if debug:
        traceback.print_exception(e)
    what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    _say(
        f"internal error: {what.splitlines()[0][:300]}; "
        "rerun with --debug for the traceback and report it"
    )
    sys.exit(3)


# registers the commands
from chipforge.cli import (  # noqa: E402,F401
    commands,
    cost,
    datacenter,
    decide,
    rtl,
    serve,
    simulate,
    studio,
    sweep,
    train,
)
