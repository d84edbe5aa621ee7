"""Commands on the compiler and the simulators: compile, simulate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from chipforge.atomic import atomic_write_text
from chipforge.cli import ChipOpt, JsonOpt, OutOpt, TrustOpt, WorkloadOpt, app, emit, trusting, warn
from chipforge.cli.budgetopts import MaxMemoryOpt, MaxWorkOpt
from chipforge.cli.commands import UnsupportedOpt
from chipforge.cli.reportopts import HtmlOpt, PngOpt, TraceOpt, write_reports
from chipforge.errors import ChipforgeError
from chipforge.report import tables as tb
from chipforge.spec import load_chip
from chipforge.workload import parse_workload

DtypeOpt = Annotated[
    str,
    typer.Option(
        "--dtype", help="functional run of a .onnx/.pt2 model: bf16, int8 or int8-channel"
    ),
]
InputsOpt = Annotated[
    Path | None,
    typer.Option(
        "--inputs",
        help="functional run of a .onnx/.pt2 model: its input arrays from this .npz "
        "(numpy.savez; never unpickled); inputs it does not name get valid random values",
    ),
]


@app.command("compile")
def compile_cmd(
    chip: ChipOpt,
    workload: WorkloadOpt,
    as_json: JsonOpt = False,
    out: OutOpt = None,
    trust_pickle: TrustOpt = False,
    max_memory: MaxMemoryOpt = None,
    max_work: MaxWorkOpt = None,
) -> None:
    """Compile a workload to the chip's assembly (one instruction a line)."""
    from chipforge.compiler.isa import text_all
    from chipforge.compiler.lower import compile_op
    from chipforge.sim import budget

    spec = load_chip(chip)
    graph = parse_workload(workload, trust_pickle=trusting(trust_pickle))
    limits = budget.parse_limits(max_memory, max_work)
    budget.check(
        budget.estimate(graph, spec, functional=False), max_memory=limits[0], max_work=limits[1]
    )
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
        atomic_write_text(out, text, flag="--out")
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
    dtype: DtypeOpt = "bf16",
    as_json: JsonOpt = False,
    out: OutOpt = None,
    html: HtmlOpt = None,
    png: PngOpt = None,
    trust_pickle: TrustOpt = False,
    max_memory: MaxMemoryOpt = None,
    max_work: MaxWorkOpt = None,
    allow_unsupported: UnsupportedOpt = False,
    inputs: InputsOpt = None,
) -> None:
    """Run a workload cycle by cycle on the chip (one instance of each repeated op); with
    --functional a .onnx/.pt2 model runs end to end on real numbers (docs/import.md).
    Runs estimated over --max-memory or --max-work are refused before they start."""
    from chipforge.sim import budget
    from chipforge.sim.engine import run_timing
    from chipforge.sim.reference import check_op
    from chipforge.sim.trace import write_trace

    spec, trust = load_chip(chip), trusting(trust_pickle)
    limits = budget.parse_limits(max_memory, max_work)
    if functional and workload.split(",")[0].lower().endswith((".onnx", ".pt2")):
        given = [f for f, v in (("--trace", trace), ("--html", html), ("--png", png)) if v]
        if given:  # the model's end-to-end run has no per-op timeline or report to write
            raise ChipforgeError(
                f"`{given[0]}`: a --functional run of a .onnx/.pt2 model writes its check table "
                "only (--json, --out); drop it, or leave out --functional for the cycle run's"
            )
        if max_work is not None:  # graph_run.run_model estimates memory, not work
            raise ChipforgeError(
                "`--max-work`: a --functional run of a .onnx/.pt2 model is bounded by "
                "--max-memory only (its work is not estimated); drop it"
            )
        _simulate_model(
            spec,
            workload,
            dtype,
            as_json=as_json,
            out=out,
            trust_pickle=trust,
            max_memory=limits[0],
            inputs=inputs,
        )
        return
    if inputs is not None:
        from chipforge.errors import WorkloadError

        raise WorkloadError("`--inputs` is for --functional runs of a .onnx or .pt2 model")
    graph = parse_workload(workload, allow_unsupported=allow_unsupported, trust_pickle=trust)
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

        result = run_timing(
            graph, spec, on_op=each, max_memory=limits[0], max_work=limits[1], functional=functional
        )
    warn(result)
    if trace:
        write_trace(trace, runs, spec.clock)
    data = result.to_dict() | ({"functional": checks} if functional else {})
    tables = [tb.summary_table(result), tb.op_table(result)]
    if functional:
        tables.append(_functional_table(checks))
    emit(data, tables, as_json=as_json, out=out)
    write_reports("evaluate", result, html, png, trace=trace)
    if any(c["result"] == "MISMATCH" for c in checks):
        raise typer.Exit(1)


def _model_table(data: dict) -> list[Table]:
    t = Table(
        title=f"{data['workload']} on {data['chip']} ({data['dtype']}) vs {data['reference']}"
    )
    for col in ("node", "max abs diff", "max rel diff"):
        t.add_column(col)
    for r in data["nodes"]:
        t.add_row(r["node"], f"{r['max_abs_diff']:.3g}", f"{r['max_rel_diff']:.3g}")
    verdict = Table(title="end-to-end verdict")
    for col in ("outputs max abs diff", "max rel diff", "bound", "bit exact", "result"):
        verdict.add_column(col)
    bound = data["bound"] if isinstance(data["bound"], str) else f"{data['bound']:.3g}"
    verdict.add_row(
        f"{data['max_abs_diff']:.3g}",
        f"{data['max_rel_diff']:.3g}",
        bound,
        "yes" if data["bit_exact"] else "no",
        data["result"],
    )
    tables = [t, verdict]
    if data.get("routing"):  # a MoE router's top-k: fp32's own choices vs the chip run's
        r = data["routing"]
        routing = Table(title=f"router top-k vs {r['reference']}")
        for col in ("rows flipped", "largest fp32 margin flipped", "max rel diff"):
            routing.add_column(col)
        routing.add_row(
            f"{r['flipped']} of {r['rows']}", f"{r['max_gap']:.3g}", f"{r['max_rel_diff']:.3g}"
        )
        tables.append(routing)
    if data.get("attention"):
        attention = Table(title="attention nodes")
        for col in ("node", "ran as", "why"):
            attention.add_column(col)
        for a in data["attention"]:
            ran = a["program"] + (
                f" (products on {a['products_on']})" if "products_on" in a else ""
            )
            attention.add_row(a["node"], ran, a.get("why", ""))
        tables.append(attention)
    return tables


def _simulate_model(
    spec,
    workload: str,
    dtype: str,
    *,
    as_json: bool,
    out,
    trust_pickle: bool = False,
    max_memory=None,
    inputs=None,
) -> None:
    """The model file run end to end on the functional simulator with real numbers."""
    from chipforge.sim.graph_run import run_model
    from chipforge.workload.parse import _int, _pairs

    head, _, tail = workload.partition(",")
    args = _pairs("file", [i for i in tail.split(",") if i.strip()])
    dims = {k: _int(k, v) for k, v in args.items()}
    err = Console(stderr=True)
    with Progress(transient=True, console=err, disable=not err.is_terminal) as progress:
        task = progress.add_task(f"running {Path(head).name} ({dtype})", total=None)
        data = run_model(
            head,
            spec,
            dtype=dtype,
            dims=dims,
            on_node=lambda *_: progress.advance(task),
            trust_pickle=trust_pickle,
            max_memory=max_memory,
            inputs=inputs,
        )
    emit(data, _model_table(data), as_json=as_json, out=out)
    if data["result"] == "MISMATCH":
        raise typer.Exit(1)
