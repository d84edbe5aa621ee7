"""Serving cases for the multi-chip validation, each with the configuration its source states
(flags left empty are searched; `batching` static/continuous, `gqa_kernel` no where the runtime
read the KV cache once per query head). Two sets, registered in `cluster.validate.CASES` on
import: kind "serving" (data/serving_cases.csv) and kind "serving-heldout"
(data/serving_heldout.csv: further rows of the same and other published tables, never looked at
while the serving model was built; reported separately to guard against overfitting)."""

from __future__ import annotations

from collections.abc import Callable

from chipforge.cluster.serving import plan_serving
from chipforge.cluster.validate import CASES, ClusterCase, _int, cases_from_csv, serving_runtime

METRICS = {
    "output_tokens_per_s": lambda p: p.throughput_tokens_per_s,
    "output_tokens_per_s_per_chip": lambda p: p.throughput_tokens_per_s / p.chips,
    "ttft_s": lambda p: p.ttft_s,
    "tpot_s": lambda p: p.tpot_s,
}


def _predictor(row: dict) -> Callable[[], float]:
    def predict() -> float:
        plan = plan_serving(
            row["chip"],
            row["model"],
            int(row["chips"]),
            isl=int(row["isl"]),
            osl=int(row["osl"]),
            dtype=row["dtype"],
            tp=_int(row["tp"]),
            pp=_int(row["pp"]),
            concurrency=_int(row["concurrency"]),
            batching=row.get("batching") or "continuous",
            gqa_kernel=row.get("gqa_kernel") != "no",
            runtime=serving_runtime(row["source"], row.get("conditions") or ""),
        )
        return METRICS[row["metric"]](plan)

    return predict


def serving_cases() -> list[ClusterCase]:
    return cases_from_csv("serving_cases.csv", "serving", _predictor)


def heldout_cases() -> list[ClusterCase]:
    return cases_from_csv("serving_heldout.csv", "serving-heldout", _predictor)


for _provider in (serving_cases, heldout_cases):
    if _provider not in CASES:
        CASES.append(_provider)
