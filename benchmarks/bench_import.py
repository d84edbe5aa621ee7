"""Speed of model import (issue 4: importing a 100-layer model takes under 5 s).

A 100-layer GPT-2-style decoder (hidden 768, 12 heads, 128 tokens) on the meta device, so no
weights are allocated:

- ONNX: the file is exported once (not timed); `from_onnx` is timed: load without weights,
  per-node shape inference and folding, fusion, costing.
- torch: `from_torch(sample_layers=False)` is timed whole, and split into PyTorch's own
  `torch.export` tracing and chipforge's conversion of the exported program
  (`from_exported`); then the default `from_torch`, which samples the layer stack (a meta run
  of the parent, exports of the first 1, 2, 3 layers, extrapolated; asserted the same graph).
- pt2: `load_pt2` of a saved program (reads the archive's serialized graph, no torch), against
  the fallback it replaces: `torch.export.load` then `from_exported`.
- `import torch` itself, in a fresh interpreter (the .pt2 and ONNX paths do not need it).

Each row: median wall time and median CPU time of the process (the machine is shared: CPU time
is what chipforge and torch themselves cost, wall time adds the wait for a core).

Run with `.venv/bin/python benchmarks/bench_import.py`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from chipforge.workload import from_exported, from_onnx, from_torch, load_model, load_pt2
from chipforge.workload.zoo import gpt2

LAYERS, SEQ, RUNS, BUDGET_S = 100, 128, 3, 5.0


def timed(fn) -> tuple[tuple[float, float], object]:
    walls, cpus, result = [], [], None
    for _ in range(RUNS):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return (statistics.median(walls), statistics.median(cpus)), result


def import_torch() -> tuple[float, float]:
    code = (
        "import time; w, c = time.perf_counter(), time.process_time(); import torch; "
        "print(time.perf_counter() - w, time.process_time() - c)"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
        for _ in range(RUNS)
    ]
    walls, cpus = zip(*(map(float, r.split()) for r in runs), strict=True)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    load_before = os.getloadavg()[0]
    config = load_model("gpt2", layers=LAYERS)
    module, inputs = gpt2.build(config, batch=1, seq=SEQ)
    export_s, program = timed(lambda: torch.export.export(module, inputs))
    convert_s, graph = timed(lambda: from_exported(program, name="gpt2-100"))
    whole_s, whole = timed(lambda: from_torch(module, inputs, sample_layers=False))
    sampled_s, sampled = timed(lambda: from_torch(module, inputs, sample_layers=True))
    assert sampled == whole, "sampling the layers changed the graph"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gpt2-100.onnx"
        cpu_module, cpu_inputs = gpt2.build(
            load_model("gpt2", layers=LAYERS, vocab=1000, hidden=256, heads=4, ffn=1024),
            batch=1,
            seq=SEQ,
            device="cpu",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(cpu_module, cpu_inputs, str(path), dynamo=False, opset_version=17)
        onnx_s, onnx_graph = timed(lambda: from_onnx(path))
        pt2 = Path(folder) / "gpt2-100.pt2"
        torch.export.save(torch.export.export(cpu_module, cpu_inputs), str(pt2))
        pt2_s, fast = timed(lambda: load_pt2(pt2))
        load_s, loaded = timed(lambda: torch.export.load(str(pt2)))
        slow_s, slow = timed(lambda: from_exported(loaded, name=pt2.name))
    assert fast == slow, "the archive reader and torch.export.load disagree"
    rows = [
        ("torch: from_torch(sample_layers=False)", whole_s),
        ("  of which torch.export (PyTorch's tracing)", export_s),
        ("  of which chipforge's conversion", convert_s),
        ("torch: from_torch (default: sampled layers)", sampled_s),
        ("onnx: from_onnx (hidden 256, no external weights)", onnx_s),
        ("pt2: load_pt2 (archive reader, hidden 256)", pt2_s),
        ("  was: torch.export.load", load_s),
        ("  then chipforge's conversion", slow_s),
        ("import torch (fresh interpreter)", import_torch()),
    ]
    print(f"{LAYERS}-layer GPT-2-style decoder, {SEQ} tokens; median of {RUNS} runs")
    print(
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, "
        f"{os.cpu_count()} cores"
    )
    print(f"{'':<52} {'wall':>7}   {'cpu':>7}")
    for label, (wall, cpu) in rows:
        print(f"{label:<52} {wall:7.2f} s {cpu:7.2f} s   budget {BUDGET_S:.0f} s")
    print(f"graph ops: torch {len(graph)} (folded), onnx {len(onnx_graph)}, pt2 {len(fast)}")


if __name__ == "__main__":
    main()
