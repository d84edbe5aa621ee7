"""Chrome / Perfetto trace of simulated programs: one track per engine (matrix unit, its
weight-load port, vector unit, EUP, DMA engine) of every core, one slice per instruction."""

from __future__ import annotations

from pathlib import Path

from chipforge.compiler.isa import Program
from chipforge.report.timeline import write_events
from chipforge.sim.timing import Timeline

ENGINE_ORDER = {"mxu": 0, "wload": 1, "vpu": 2, "eup": 3, "dma": 4}


def trace_events(runs: list[tuple[str, Program, Timeline]], clock_hz: float) -> list[dict]:
    """Events for programs run back to back (each op's first instance), in microseconds."""
    events: list[dict] = []
    tids: dict[str, int] = {}
    offset = 0.0
    for name, prog, tl in runs:
        for instr in prog.instrs:
            engine = instr.engine
            kind, core = engine.split(".")[0], int(engine.split(".")[1])
            if engine not in tids:
                tids[engine] = len(tids)
                label = engine.replace(".", " ", 1).replace(".", " unit ")
                events.append(
                    {
                        "ph": "M",
                        "name": "thread_name",
                        "pid": core,
                        "tid": tids[engine],
                        "args": {"name": label},
                    }
                )
                events.append(
                    {
                        "ph": "M",
                        "name": "thread_sort_index",
                        "pid": core,
                        "tid": tids[engine],
                        "args": {"sort_index": ENGINE_ORDER.get(kind, 9) * 100 + tids[engine]},
                    }
                )
            i = instr.id
            label = getattr(instr, "op", type(instr).__name__.lower())
            events.append(
                {
                    "name": label,
                    "cat": name,
                    "ph": "X",
                    "pid": core,
                    "tid": tids[engine],
                    "ts": (offset + tl.start[i]) / clock_hz * 1e6,
                    "dur": (tl.busy_end[i] - tl.start[i]) / clock_hz * 1e6,
                    "args": {"op": name, "instr": instr.text()},
                }
            )
        offset += tl.cycles
    cores = sorted({e["pid"] for e in events})
    events += [
        {"ph": "M", "name": "process_name", "pid": c, "args": {"name": f"core {c}"}} for c in cores
    ]
    return events


def write_trace(
    path: str | Path, runs: list[tuple[str, Program, Timeline]], clock_hz: float
) -> None:
    """Write a trace that opens in Perfetto (ui.perfetto.dev) or chrome://tracing (the writer
    the analytical per-op timeline shares: `chipforge.report.timeline.write_events`)."""
    write_events(path, trace_events(runs, clock_hz))
