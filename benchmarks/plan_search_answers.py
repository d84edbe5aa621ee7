"""The training-plan search's answers on a fixed set of 144 cases, one JSON line each (the
result's to_dict() without its `search` counters), to check that a change to the search
leaves every chosen plan and figure as it was: run it on both source trees and diff.

    git archive $(git merge-base HEAD main) src | tar -x -C /tmp/base
    PYTHONPATH=/tmp/base/src python benchmarks/plan_search_answers.py /tmp/before.jsonl
    PYTHONPATH=src python benchmarks/plan_search_answers.py /tmp/after.jsonl
    diff /tmp/before.jsonl /tmp/after.jsonl && echo same

About 1-3 minutes of one core (the global-batch ranges and offload searches are the slow ones).
"""

from __future__ import annotations

import json
import sys

import chipforge as cf
from chipforge.errors import ChipforgeError

VARIANTS = (
    {},
    {"global_batch": "256:1024"},
    {"schedule": "dualpipe"},
    {"tp": 2},
    {"activation_offload": True, "optimizer_offload": True},
)
# run options the search's communication bound reads (TP overlap, the parallel block, NCCL CTA
# caps of the PP group) and the schedules and recomputation it bounds differently
OPTIONS = (
    {"schedule": "zb"},
    {"tp_overlap": True, "parallel_block": True},
    {"nccl_ctas": {"pp": 2, "dp": 8}, "sustained_clock": True},
    {"recompute": "full", "global_batch": "256:1024"},
)


# long sequences (context parallelism), MoE dispatchers, other chips and odd scales
LONG = (
    ("h100", "llama3-8b", 64, {"seq": 32768}),
    ("forge-n3", "llama3-70b", 512, {"seq": 65536}),
    ("gb200", "mixtral-8x7b", 64, {"seq": 32768}),
    ("h100", "llama3-70b", 256, {"seq": 32768, "tp_overlap": True}),
    ("gb200", "llama3-405b", 4096, {"seq": 131072, "schedule": "zb"}),
    ("h100", "mixtral-8x7b", 64, {"moe_dispatcher": "flex", "shared_expert_overlap": True}),
    ("tpu-v5e", "llama3-8b", 256, {"seq": 8192}),
    ("a100", "llama3-70b", 1024, {"parallel_block": True, "interleave": 2}),
    ("h100", "llama3-8b", 48, {"global_batch": "100:300"}),
    ("forge-n3", "llama3-70b", 96, {"seq": 16384, "recompute_modules": ("core_attn", "mlp")}),
)


def cases() -> list[tuple]:
    out = [
        ("forge-n3", "llama3-405b", 65536, {"tokens": 1.5e14}),
        ("h100", "llama3-405b", 16384, {}),
        *((chip, model, n, {"seq": 4096, **kw}) for chip, model, n, kw in LONG),
    ]
    for chip in ("forge-n3", "h100", "gb200"):
        for model in ("llama3-8b", "mixtral-8x7b", "llama3-70b"):
            for n in (8, 512):
                out += [(chip, model, n, kw) for kw in VARIANTS]
                if model == "llama3-8b":
                    out.append((chip, model, n, {"alternatives": 3, "global_batch": "64:96"}))
                if n == 512:
                    out += [(chip, model, n, kw) for kw in OPTIONS]
    return out


def main(path: str) -> None:
    with open(path, "w") as f:
        for i, (chip, model, n, kw) in enumerate(cases()):
            try:
                r = cf.plan_training(chip, model, n, **{"seq": 4096, **kw}).to_dict()
                r.pop("search")
            except ChipforgeError as e:
                r = {"error": str(e)}
            f.write(json.dumps([i, chip, model, n, kw, r], sort_keys=True, default=str) + "\n")
            f.flush()


if __name__ == "__main__":
    main(sys.argv[1])
