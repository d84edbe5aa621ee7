"""Commands on the compiler and the simulators: compile, simulate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from chipforge.cli import ChipOpt, JsonOpt, OutOpt, WorkloadOpt, app, emit, warn
from chipforge.compiler.isa import text_all
from chipforge.compiler.lower import compile_op
from chipforge.report import tables as tb
from chipforge.sim.engine import run_timing
from chipforge.sim.reference import check_op
from chipforge.sim.trace import write_trace
from chipforge.spec import load_chip
from chipforge.workload import parse_workload

TraceOpt = Annotated[Path | None, typer.Option("--trace", help="write a Perfetto trace here")]


@app.command("compile")
def compile_cmd(
    chip: ChipOpt, workload: WorkloadOpt, as_json: JsonOpt = False, out: OutOpt = None
) -> None:
    """Compile a workload to the chip's assembly (one instruction a line)."""
    spec, graph = load_chip(chip), parse_workload(workload)
    programs = [(op, compile_op(op, spec)) for op in graph.ops]
    text = text_all([p for _, p in programs if p is not None])
    summary = [
        {
            "op": op.name,
            "count": op.count,
            "instructions": len(p.instrs) if p else 0,
            "sram_bytes_per_core": max((p.sram_bytes(c) for c in range(spec.cores)), default=0)
            if p
            else 0,
        }
        for op, p in programs
    ]
    if as_json:
        emit(
            {"workload": graph.name, "chip": spec.name, "programs": summary},
            [],
            as_json=True,
            out=None,
        )
    if out:
        out.write_text(text)
    elif not as_json:
        print(text, end="")


def _functional_table(rows: list[dict]) -> Table:
    t = Table(title="functional check against numpy")
    for col in ("op", "outputs", "max abs error", "max rel error", "result"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r["op"],
            str(r["outputs"]),
            f"{r['max_abs_error']:.3g}",
            f"{r['max_rel_error']:.3g}",
            r["result"],
        )
    return t


@app.command()
def simulate(
    chip: ChipOpt,
    workload: WorkloadOpt,
    functional: Annotated[
        bool, typer.Option("--functional", help="also run on real numbers and check against numpy")
    ] = False,
    trace: TraceOpt = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Run a workload cycle by cycle on the chip (one instance of each repeated op)."""
    spec, graph = load_chip(chip), parse_workload(workload)
    runs, checks = [], []
    err = Console(stderr=True)
    with Progress(transient=True, console=err, disable=not err.is_terminal) as progress:
        task = progress.add_task("simulating", total=len(graph.ops))

        def each(op, prog, tl) -> None:
            if prog is not None:
                runs.append((op.name, prog, tl))
                if functional:
                    checks.append(check_op(op, prog))
            progress.advance(task)

        result = run_timing(graph, spec, on_op=each)
    warn(result)
    if trace:
        write_trace(trace, runs, spec.clock)
    data = result.to_dict() | ({"functional": checks} if functional else {})
    tables = [tb.summary_table(result), tb.op_table(result)]
    if functional:
        tables.append(_functional_table(checks))
    emit(data, tables, as_json=as_json, out=out)
    if any(c["result"] == "MISMATCH" for c in checks):
        raise typer.Exit(1)
