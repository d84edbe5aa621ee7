"""Speed of importing transformers models as users save them.

A 100-layer Llama from transformers' `LlamaConfig` (hidden 64, 4 heads / 2 KV heads, vocab
256, 128 tokens, `use_cache=False`), random weights:

- raw .pt2: `torch.export.save(torch.export.export(model, (ids,)))` once (not timed), then
  `parse_workload("model.pt2")` timed: the archive's JSON graph read, costed (no torch, nothing
  unpickled). Budget 1 s.
- through torch.export: `from_torch(model, ids)` on the live module (layer sampling: a meta run
  and exports of the first 1, 2, 3 layers, extrapolated). Budget 10 s.

Each row: median wall and CPU time of RUNS runs (the machine is shared: wall time adds the
wait for a core). Run with `.venv/bin/python benchmarks/bench_hf_import.py`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
import transformers

from chipforge.workload import from_torch
from chipforge.workload.parse import parse_workload

LAYERS, SEQ, RUNS = 100, 128, 3
BUDGETS = {"raw .pt2 import": 1.0, "from_torch (torch.export)": 10.0}


def timed(fn) -> tuple[float, float, object]:
    walls, cpus, out = [], [], None
    for _ in range(RUNS):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), out


def main() -> None:
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
    model = transformers.LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 256, (1, SEQ))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "llama100.pt2"
        start = time.perf_counter()
        torch.export.save(torch.export.export(model, (ids,)), path)
        print(f"export + save (not timed in the budget): {time.perf_counter() - start:.1f} s")
        rows = {
            "raw .pt2 import": timed(lambda: parse_workload(str(path))),
            "from_torch (torch.export)": timed(lambda: from_torch(model, ids)),
        }
    flops = {name: out.flops for name, (_, _, out) in rows.items()}
    print(f"{'path':<28}{'wall s':>8}{'cpu s':>8}{'budget s':>10}  FLOPs")
    for name, (wall, cpu, _) in rows.items():
        print(f"{name:<28}{wall:>8.2f}{cpu:>8.2f}{BUDGETS[name]:>10.1f}  {flops[name]:.4g}")


if __name__ == "__main__":
    main()
