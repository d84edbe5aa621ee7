"""Speed of importing transformers models as users save them.

A 100-layer Llama from transformers' `LlamaConfig` (hidden 64, 4 heads / 2 KV heads, vocab
256, 128 tokens, `use_cache=False`), random weights:

- raw .pt2: `torch.export.save(torch.export.export(model, (ids,)))` once (not timed), then
  `parse_workload("model.pt2")` timed: the archive's JSON graph read and costed (no torch,
  nothing unpickled). Budget 1 s. The same file through the whole command line
  (`python -m chipforge evaluate --chip h100 --workload model.pt2 --json`, a fresh process:
  Python's start and every import included) is shown beside it, without a budget.
- through torch.export: `from_torch(model, ids)` on the live module (layer sampling: a meta
  run of every layer, then exports of the first 1, 2 and 3 layers, extrapolated). Budget 10 s.
  Once, untimed in the budget: `from_torch(..., sample_layers=False)` (every layer exported),
  whose graph the sampled one must equal (every op, count, weight and parameter).

Each row: min and median wall and CPU time of RUNS runs. The machine is shared: wall time adds
the wait for a core, so the load average is printed before and after. Run with
`.venv/bin/python benchmarks/bench_hf_import.py [--runs N]`; it exits 1 when a median wall time
is over its budget or the sampled graph differs from the whole export.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import transformers

from chipforge.workload import from_torch
from chipforge.workload.parse import parse_workload

LAYERS, SEQ = 100, 128
BUDGETS = {"raw .pt2 import": 1.0, "from_torch (torch.export)": 10.0}


def timed(fn, runs: int) -> tuple[list[float], list[float], object]:
    walls, cpus, out = [], [], None
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return walls, cpus, out


def cli(path: Path, runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) of fresh `python -m chipforge evaluate` processes."""
    command = [sys.executable, "-m", "chipforge", "evaluate", "--chip", "h100"]
    command += ["--workload", str(path), "--json"]
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=os.environ.copy())
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def row(name: str, walls: list[float], cpus: list[float], budget: str) -> str:
    w = f"{min(walls):.2f} / {statistics.median(walls):.2f}"
    c = f"{min(cpus):.2f} / {statistics.median(cpus):.2f}"
    return f"| {name} | {w} | {c} | {budget} |"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    warnings.filterwarnings("ignore")
    shape = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4)
    config = transformers.LlamaConfig(
        **shape,
        num_hidden_layers=LAYERS,
        num_key_value_heads=2,
        vocab_size=256,
        max_position_embeddings=SEQ,
        use_cache=False,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 256, (1, SEQ))
    print(f"load average before: {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "llama100.pt2"
        start = time.perf_counter()
        torch.export.save(torch.export.export(model, (ids,)), path)
        print(f"export + save (torch's, not in any budget): {time.perf_counter() - start:.1f} s")
        raw = timed(lambda: parse_workload(str(path)), runs)
        command = cli(path, runs)
        sampled = timed(lambda: from_torch(model, ids), runs)
    whole = timed(lambda: from_torch(model, ids, sample_layers=False), 1)
    print(f"load average after: {load()}")
    same = sampled[2] == whole[2]
    print(
        f"sampled graph == whole export's: {same}; FLOPs raw .pt2 {raw[2].flops:.6g}, "
        f"from_torch {sampled[2].flops:.6g}, params {sampled[2].meta['params']:,}"
    )
    print(
        "\n| path (100-layer Llama, 128 tokens) | wall s, min / median | CPU s, min / median "
        "| budget |\n|---|---:|---:|---:|"
    )
    print(row("raw .pt2: `parse_workload`", raw[0], raw[1], "1 s"))
    print(row("raw .pt2: `chipforge evaluate` process", *command, "—"))
    print(row("`from_torch` (layer sampling)", sampled[0], sampled[1], "10 s"))
    print(row("`from_torch(sample_layers=False)`, once", whole[0], whole[1], "—"))
    over = [
        name
        for name, walls in (("raw .pt2 import", raw[0]), ("from_torch (torch.export)", sampled[0]))
        if statistics.median(walls) > BUDGETS[name]
    ]
    if over or not same:
        print(f"over budget: {over}; sampled == whole: {same}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
