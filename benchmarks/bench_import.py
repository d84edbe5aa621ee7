"""Speed of model import (issue 4: importing a 100-layer model takes under 5 s).

A 100-layer GPT-2-style decoder (hidden 768, 12 heads, 128 tokens) on the meta device, so no
weights are allocated:

- ONNX: the file is exported once (not timed); `from_onnx` is timed: load without weights,
  per-node shape inference and folding, fusion, costing.
- torch: `from_torch` is timed whole, and split into PyTorch's own `torch.export` tracing and
  chipforge's conversion of the exported program (`from_exported`).

Run with `.venv/bin/python benchmarks/bench_import.py`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from chipforge.workload import from_exported, from_onnx, from_torch, load_model, load_pt2
from chipforge.workload.zoo import gpt2

LAYERS, SEQ, RUNS, BUDGET_S = 100, 128, 3, 5.0


def timed(fn) -> tuple[float, object]:
    times, result = [], None
    for _ in range(RUNS):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    config = load_model("gpt2", layers=LAYERS)
    module, inputs = gpt2.build(config, batch=1, seq=SEQ)
    export_s, program = timed(lambda: torch.export.export(module, inputs))
    convert_s, graph = timed(lambda: from_exported(program, name="gpt2-100"))
    whole_s, _ = timed(lambda: from_torch(module, inputs))
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
        pt2_s, _ = timed(lambda: load_pt2(pt2))
    rows = [
        ("torch: from_torch (export + conversion)", whole_s),
        ("  of which torch.export (PyTorch's tracing)", export_s),
        ("  of which chipforge's conversion", convert_s),
        ("onnx: from_onnx (hidden 256, no external weights)", onnx_s),
        ("pt2: load_pt2 of a saved program (hidden 256)", pt2_s),
    ]
    print(f"{LAYERS}-layer GPT-2-style decoder, {SEQ} tokens; median of {RUNS} runs")
    for label, seconds in rows:
        print(f"{label:<52} {seconds:7.2f} s   budget {BUDGET_S:.0f} s")
    print(f"graph ops: torch {len(graph)} (folded), onnx {len(onnx_graph)}")


if __name__ == "__main__":
    main()
