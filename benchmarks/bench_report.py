"""Time to build an HTML report, its PNG charts and its Perfetto timeline for a graph of about
100 ops (issue 10: under 2 s)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from chipforge.perf import estimate
from chipforge.report.html import _plotly_js, render_report
from chipforge.report.png import write_pngs
from chipforge.report.timeline import write_result_trace
from chipforge.spec import load_chip
from chipforge.workload import parse_workload


def main() -> None:
    graph = parse_workload("llm:llama3-70b,phase=prefill,batch=1,seq=8192")
    results = [estimate(graph, load_chip(c)).to_dict() for c in ("forge-n3", "h100")]
    # A 100-op graph: the Result's ops repeated under new names (the report only reads the dict).
    ops = results[0]["ops"]
    big = {
        **results[0],
        "ops": [{**ops[i % len(ops)], "name": f"l{i // 10}.op{i}"} for i in range(100)],
    }
    for label, kind, data in (
        ("evaluate, 100 ops", "evaluate", big),
        ("compare, 2 chips", "compare", {"workload": graph.name, "results": results}),
    ):
        _plotly_js.cache_clear()
        t = time.perf_counter()
        page = render_report(kind, data)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        render_report(kind, data)
        warm = time.perf_counter() - t
        print(
            f"{label:22s} html {cold:6.3f} s first, {warm:6.3f} s again, {len(page) / 1e6:.1f} MB"
        )
    with tempfile.TemporaryDirectory() as d:
        for when in ("first (matplotlib import included)", "again"):
            t, cpu = time.perf_counter(), time.process_time()
            n = len(write_pngs(Path(d), "evaluate", big))
            wall, cpu = time.perf_counter() - t, time.process_time() - cpu
            print(f"{'evaluate, 100 ops':22s} png  {wall:6.3f} s wall, {cpu:.3f} s CPU, {when}")
        print(f"{'':22s} ({n} charts; wall above CPU means other work shares the cores)")
        t = time.perf_counter()
        write_result_trace(Path(d) / "t.json", [big])
        print(f"{'evaluate, 100 ops':22s} trace {time.perf_counter() - t:5.3f} s (Perfetto JSON)")


if __name__ == "__main__":
    main()
