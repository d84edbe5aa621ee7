"""Rich tables for the command line."""

from __future__ import annotations

from rich.table import Table

from chipforge.display import duration, percent, si
from chipforge.dtypes import DTYPES
from chipforge.perf.result import OpResult, Result
from chipforge.spec import ChipSpec
from chipforge.units import fmt


def seconds(value: float) -> str:
    return duration(value)


def tflops(value: float) -> str:
    return f"{value / 1e12:,.1f}"


def chip_table(chip: ChipSpec, domain: tuple[str, int] | None = None) -> Table:
    """The chip's figures; `domain`: its default topology's name and scale-up domain (or pod)
    size in chips."""
    t = Table(title=f"{chip.name} ({chip.vendor}, {chip.year}, {chip.node})", show_header=False)
    t.add_column("figure", style="bold")
    t.add_column("value")
    t.add_row(
        "cores x matrix units",
        f"{chip.cores} x {chip.matrix.count} "
        f"({chip.matrix.rows}x{chip.matrix.cols} {chip.matrix.dataflow})",
    )
    t.add_row("clock", fmt(chip.clock, "frequency"))
    if chip.sustained_clock is not None:
        t.add_row(
            "sustained clock",
            f"{fmt(chip.sustained_clock, 'frequency')} (power-limited: --sustained-clock)",
        )
    for dtype in DTYPES:
        if chip.peak_flops(dtype):
            t.add_row(
                f"peak {dtype}",
                f"{tflops(chip.peak_flops(dtype))} TFLOP/s  "
                f"(balance {chip.machine_balance(dtype):,.0f} FLOP/B)",
            )
    t.add_row("vector fp32", f"{tflops(chip.vector_flops)} TFLOP/s")
    for level in chip.memory:
        per = f" per core x {chip.cores}" if level.per_core else ""
        t.add_row(
            f"{level.name} ({level.kind})",
            f"{fmt(level.capacity, 'bytes', binary=level.kind != 'hbm')}{per}, "
            f"{fmt(level.bandwidth, 'bandwidth')}",
        )
    t.add_row("on-chip SRAM + cache", fmt(chip.onchip_bytes, "bytes", binary=True))
    for link in chip.links:
        t.add_row(f"link {link.name}", f"{fmt(link.bandwidth, 'bandwidth')} ({link.ports} ports)")
    if domain is not None:
        t.add_row("scale-up domain", f"{domain[1]:,} chips ({domain[0]})")
    t.add_row("TDP", fmt(chip.tdp, "power"))
    return t


def summary_rows(result: Result) -> list[tuple[str, str]]:
    rows = [
        ("time", seconds(result.time_s)),
        ("FLOPs", si(result.flops, "FLOP")),
        ("achieved", f"{tflops(result.achieved_flops_per_s)} TFLOP/s"),
        ("utilization", percent(result.utilization)),
        ("bound", result.bound),
        *([("FLOP convention", result.convention)] if result.convention else []),
        ("energy", f"{energy(result.energy_j)} ({result.energy_j / result.time_s:,.0f} W average)"),
    ]
    if result.tokens:
        rows.append(("tokens/s", f"{result.tokens / result.time_s:,.1f}"))
    if result.cycles is not None:
        rows.append(("cycles (wall, with dispatch)", f"{result.cycles:,.0f}"))
        rows.append(("array cycles (SCALE-Sim's compute cycles)", f"{result.array_cycles:,.0f}"))
    rows.append(
        (
            "fits in memory",
            f"{'yes' if result.fits_in_memory else 'no'} ({si(result.resident_bytes, 'B')}"
            f" of {si(result.memory_capacity_bytes, 'B')})",
        )
    )
    return rows


def summary_table(result: Result) -> Table:
    t = Table(title=f"{result.workload} on {result.chip} ({result.engine})", show_header=False)
    t.add_column("figure", style="bold")
    t.add_column("value")
    for row in summary_rows(result):
        t.add_row(*row)
    return t


def op_table(result: Result, *, limit: int = 40) -> Table:
    t = Table(title=f"{result.workload} on {result.chip}: per op")
    for col in ("op", "count", "time", "share", "TFLOP/s", "util", "bound"):
        t.add_column(col, justify="left" if col in ("op", "bound") else "right")
    total = result.time_s or 1.0
    ops = sorted(result.ops, key=lambda o: -o.time_s)[:limit]
    if len(result.ops) > limit:
        t.caption = f"{limit} of {len(result.ops)} ops shown (all in --json)"
    for op in ops:
        t.add_row(
            op.name,
            str(op.count),
            seconds(op.time_s),
            percent(op.time_s / total),
            tflops(op.achieved_flops_per_s),
            percent(op.utilization),
            op.bound,
        )
    return t


def compare_table(results: list[Result], title: str) -> Table:
    t = Table(title=title)
    for col in ("chip", "time", "TFLOP/s", "util", "bound", "energy", "tokens/s", "vs first"):
        t.add_column(col, justify="left" if col in ("chip", "bound") else "right")
    base = results[0].time_s
    for r in results:
        tokens = f"{r.tokens / r.time_s:,.0f}" if r.tokens else "-"
        t.add_row(
            r.chip + ("" if r.fits_in_memory else " *"),
            seconds(r.time_s),
            tflops(r.achieved_flops_per_s),
            percent(r.utilization),
            r.bound,
            energy(r.energy_j),
            tokens,
            f"{base / r.time_s:.2f}x",
        )
    return t


SHORT_BOUND = {
    "compute": "cmp",
    "fill": "fill",
    "weight-load": "wld",
    "memory": "mem",
    "vector": "vec",
    "interconnect": "net",
    "latency": "lat",
}


def energy(value: float) -> str:
    return fmt(value, "energy", digits=3)


def _cell(op: OpResult) -> str:
    return f"{seconds(op.time_s)} {percent(op.utilization)} {SHORT_BOUND[op.bound]}"


def ops_by_chip_table(results: list[Result], title: str) -> Table:
    """Rows: ops; columns: chips; cell: time, utilization, bound."""
    t = Table(title=title)
    t.add_column("op")
    for r in results:
        t.add_column(r.chip, justify="right")
    by_chip = [{op.name: op for op in r.ops} for r in results]
    for op in results[0].ops:
        t.add_row(op.name, *[_cell(ops[op.name]) for ops in by_chip])
    t.add_row(
        "total",
        *[f"{seconds(r.time_s)} {percent(r.utilization)} {SHORT_BOUND[r.bound]}" for r in results],
        style="bold",
    )
    t.caption = (
        "cell: time, matrix-unit utilization, bound (cmp compute, fill systolic fill/drain, "
        "wld weight load, mem memory, vec vector, net interconnect, lat dispatch latency)"
    )
    return t
