"""Predict every single-chip measured case and compare with the published figure.

Burst benchmarks (MAMF's best shape, TPU v1 apps, decode) are priced at the preset's clock, the
boost clock its peaks quote; the long back-to-back GEMM runs of data/sustained_gemm.csv
(`run_sustained`, kind "gemm-sustained") at its `sustained_clock`, and are reported apart.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from chipforge.perf.calibration import CALIBRATION_CASES
from chipforge.perf.cases import SKIPPED, Case, cases, sustained_cases
from chipforge.perf.engine import estimate
from chipforge.spec import ChipSpec, load_chip


@dataclass(frozen=True)
class CaseResult:
    id: str
    chip: str
    kind: str
    predicted: float
    published: float
    calibration: bool  # this figure set a calibration constant (not held out)
    source: str
    clock_hz: float = 0.0  # the clock the prediction was priced at
    at_boost: float | None = None  # sustained rows: the prediction at the boost clock
    measured_clock_hz: float | None = None  # sustained rows: the clock the source measured, if any

    @property
    def error(self) -> float:
        """Signed relative error: (predicted - published) / published."""
        return (self.predicted - self.published) / self.published

    @property
    def error_at_boost(self) -> float | None:
        return None if self.at_boost is None else (self.at_boost - self.published) / self.published

    def to_dict(self) -> dict:
        d = {
            "id": self.id,
            "chip": self.chip,
            "kind": self.kind,
            "predicted": self.predicted,
            "published": self.published,
            "error": self.error,
            "calibration": self.calibration,
            "source": self.source,
            "clock_hz": self.clock_hz,
        }
        if self.at_boost is not None:
            d |= {
                "predicted_at_boost": self.at_boost,
                "error_at_boost": self.error_at_boost,
                "measured_clock_hz": self.measured_clock_hz,
            }
        return d


def _predict(case: Case, chip: ChipSpec) -> float:
    graph = case.workload()
    return case.metric(graph, estimate(graph, chip))


def _result(case: Case) -> CaseResult:
    boost = load_chip(case.chip)
    chip = boost.at_sustained_clock() if case.clock == "sustained" else boost
    sustained = case.clock == "sustained"
    measured = case.row.get("clock_mhz") if sustained else None
    return CaseResult(
        case.id,
        case.chip,
        case.kind,
        _predict(case, chip),
        case.published,
        case.id in CALIBRATION_CASES,
        case.source,
        chip.clock,
        _predict(case, boost) if sustained else None,
        float(measured) * 1e6 if measured else None,
    )


def run_validation() -> list[CaseResult]:
    """The burst cases, at the boost clock."""
    return [_result(case) for case in cases()]


def run_sustained() -> list[CaseResult]:
    """The sustained GEMM rows, at each chip's sustained clock (the boost clock where its preset
    states none: `clock_hz` shows which)."""
    return [_result(case) for case in sustained_cases()]


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


def sustained_summary(results: list[CaseResult]) -> dict:
    """The sustained rows' errors at the sustained clock, and at the boost clock beside them.
    None of them set a constant: all are held out."""
    errors = [abs(r.error) for r in results]
    at_boost = [abs(r.error_at_boost) for r in results]
    return {
        "cases": [r.to_dict() for r in results],
        "rule": "chipforge/data/sustained_gemm.csv header (S1-S4)",
        "median_abs_error": statistics.median(errors),
        "max_abs_error": max(errors),
        "median_abs_error_at_boost": statistics.median(at_boost),
        "max_abs_error_at_boost": max(at_boost),
    }
