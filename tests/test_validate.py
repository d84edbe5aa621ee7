"""chipforge validate: every single-chip measured case, predicted and compared."""

import math

import pytest

from chipforge.data import published
from chipforge.perf.calibration import CALIBRATION_CASES
from chipforge.perf.validate import run_validation, summary


@pytest.fixture(scope="module")
def results():
    return run_validation()


def test_at_least_twelve_cases_each_with_a_source(results):
    assert len(results) >= 12
    for r in results:
        assert r.id in published() and r.source
        assert r.published > 0 and r.predicted > 0


def test_accuracy_targets(results):
    data = summary(results)
    assert data["median_abs_error"] <= 0.10
    assert data["max_abs_error"] <= 0.30
    assert data["held_out_median_abs_error"] <= 0.10


def test_most_cases_are_held_out(results):
    held_out = [r for r in results if not r.calibration]
    assert len(held_out) >= 12
    assert set(CALIBRATION_CASES) <= {r.id for r in results}


def test_calibration_reproduces_its_measurements(results):
    """The documented derivation of each matrix factor holds: the single-case families match
    their case; AMD's factor is the geometric mean of its two runs."""
    by_id = {r.id: r for r in results}
    for case in ("perf-mamf-bf16-h100", "perf-tpuv1-cnn0"):
        assert abs(by_id[case].error) < 0.01
    amd = [by_id["perf-mamf-bf16-mi300x"], by_id["perf-mamf-bf16-mi300xb"]]
    assert (
        abs(
            math.log(amd[0].predicted / amd[0].published)
            + math.log(amd[1].predicted / amd[1].published)
        )
        < 0.02
    )


def test_error_is_signed_and_relative(results):
    for r in results:
        assert r.error == pytest.approx((r.predicted - r.published) / r.published)
