"""Perfetto timeline of an analytical run: the Result's ops laid end to end, one process per chip.

The analytical engine has no schedule, so the timeline is the op order with each op's modelled time
(all its repeats); a second track names each op's bound, so Perfetto colours compute-, memory- and
vector-bound stretches apart. `write_events` is the one trace writer: the cycle simulator's
per-engine trace (`chipforge.sim.trace.write_trace`) goes through it too, so both engines' files
share one format. It lives here, not under sim, so an analytical report does not import the
simulator (ml_dtypes and the compiler: about 1 s).
"""

from __future__ import annotations

import json
from pathlib import Path

from chipforge.atomic import atomic_write_text

TRACKS = {"ops": 1, "bound": 2}  # thread ids inside each chip's process


def _meta(pid: int, tid: int | None, kind: str, args: dict) -> dict:
    ev = {"ph": "M", "name": kind, "pid": pid, "args": args}
    if tid is not None:
        ev["tid"] = tid
    return ev


def result_trace_events(results: list[dict]) -> list[dict]:
    """Chrome trace events (microseconds) for Result dicts (`Result.to_dict()`), one pid each."""
    events: list[dict] = []
    for pid, r in enumerate(results, start=1):
        label = f"{r.get('chip', '?')}: {r.get('workload', '')} ({r.get('engine', 'analytical')})"
        events.append(_meta(pid, None, "process_name", {"name": label}))
        events.append(_meta(pid, None, "process_sort_index", {"sort_index": pid}))
        for name, tid in TRACKS.items():
            events.append(_meta(pid, tid, "thread_name", {"name": name}))
            events.append(_meta(pid, tid, "thread_sort_index", {"sort_index": tid}))
        t_us = 0.0
        for op in r.get("ops") or []:
            dur = float(op.get("time_s") or 0.0) * 1e6
            bound = str(op.get("bound", "?"))
            args = {
                "bound": bound,
                "count": op.get("count", 1),
                "time_s": op.get("time_s"),
                "flops": op.get("flops"),
                "achieved_tflops_per_s": (op.get("achieved_flops_per_s") or 0.0) / 1e12,
                "utilization": op.get("utilization"),
                "bytes": op.get("bytes", {}),
                "parts_s": op.get("parts_s", {}),
            }
            common = {"ph": "X", "pid": pid, "ts": t_us, "dur": dur}
            events.append(
                {
                    **common,
                    "name": str(op.get("name")),
                    "cat": str(op.get("kind", "op")),
                    "tid": TRACKS["ops"],
                    "args": args,
                }
            )
            events.append(
                {
                    **common,
                    "name": bound,
                    "cat": "bound",
                    "tid": TRACKS["bound"],
                    "args": {"op": str(op.get("name"))},
                }
            )
            t_us += dur
    return events


def write_events(path: str | Path, events: list[dict]) -> Path:
    """Write Chrome trace events to `path` (parents created): opens in Perfetto
    (ui.perfetto.dev) or chrome://tracing."""
    text = json.dumps({"traceEvents": events, "displayTimeUnit": "ns"})
    return atomic_write_text(path, text, flag="--trace", mkdir=True)


def write_result_trace(path: str | Path, results: list[dict]) -> Path:
    """Write the per-op timeline of `results` (Result dicts) as a Perfetto-loadable JSON file."""
    return write_events(path, result_trace_events(results))
