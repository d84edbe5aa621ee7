"""Serving cases for the multi-chip validation (data/serving_cases.csv, each with the
configuration its source states; flags left empty are searched). Registered in
`cluster.validate.CASES` on import."""

from __future__ import annotations

from collections.abc import Callable

from chipforge.cluster.serving import plan_serving
from chipforge.cluster.validate import CASES, ClusterCase, cases_from_csv

METRICS = {
    "output_tokens_per_s": lambda p: p.throughput_tokens_per_s,
    "output_tokens_per_s_per_chip": lambda p: p.throughput_tokens_per_s / p.chips,
    "ttft_s": lambda p: p.ttft_s,
    "tpot_s": lambda p: p.tpot_s,
}


def _int(v: str) -> int | None:
    return int(v) if v else None


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
        )
        return METRICS[row["metric"]](plan)

    return predict


def serving_cases() -> list[ClusterCase]:
    return cases_from_csv("serving_cases.csv", "serving", _predictor)


if serving_cases not in CASES:
    CASES.append(serving_cases)
