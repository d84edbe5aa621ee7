"""Predict every single-chip measured case and compare with the published figure."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from chipforge.perf.calibration import CALIBRATION_CASES
from chipforge.perf.cases import SKIPPED, cases
from chipforge.perf.engine import estimate
from chipforge.spec import load_chip


@dataclass(frozen=True)
class CaseResult:
    id: str
    chip: str
    kind: str
    predicted: float
    published: float
    calibration: bool  # this figure set a calibration constant (not held out)
    source: str

    @property
    def error(self) -> float:
        """Signed relative error: (predicted - published) / published."""
        return (self.predicted - self.published) / self.published

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "chip": self.chip,
            "kind": self.kind,
            "predicted": self.predicted,
            "published": self.published,
            "error": self.error,
            "calibration": self.calibration,
            "source": self.source,
        }


def run_validation() -> list[CaseResult]:
    results = []
    for case in cases():
        graph = case.workload()
        result = estimate(graph, load_chip(case.chip))
        results.append(
            CaseResult(
                case.id,
                case.chip,
                case.kind,
                case.metric(graph, result),
                case.published,
                case.id in CALIBRATION_CASES,
                case.source,
            )
        )
    return results


def summary(results: list[CaseResult]) -> dict:
    errors = [abs(r.error) for r in results]
    held_out = [abs(r.error) for r in results if not r.calibration]
    return {
        "cases": [r.to_dict() for r in results],
        "median_abs_error": statistics.median(errors),
        "max_abs_error": max(errors),
        "held_out_median_abs_error": statistics.median(held_out),
        "held_out_max_abs_error": max(held_out),
        "skipped": [{"id": k, "reason": v} for k, v in SKIPPED.items()],
    }
