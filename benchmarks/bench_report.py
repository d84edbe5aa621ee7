"""Time to build an HTML report for a graph of about 100 ops (issue 10: under 2 s)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from chipforge.perf import estimate
from chipforge.report.html import _plotly_js, render_report
from chipforge.report.png import write_pngs
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
        t = time.perf_counter()
        n = len(write_pngs(Path(d), "evaluate", big))
        print(f"{'evaluate, 100 ops':22s} png  {time.perf_counter() - t:6.3f} s for {n} charts")


if __name__ == "__main__":
    main()
