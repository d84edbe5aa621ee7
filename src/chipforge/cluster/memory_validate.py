"""Memory per chip against published peak memory (data/memory_published.csv): each row names a
configuration of data/check_heldout.csv, and `plan_training`'s memory per chip for that plan is
compared with the memory the run logged. Registered in `cluster.validate.CASES` as kinds
"memory" (the designated rows, on which mechanisms are chosen) and "memory-heldout" (the rest,
reported apart). The plan is priced on a copy of its chip with unbounded memory, so a plan the
model would refuse still gets its figure (the refusal is the error being measured)."""

from __future__ import annotations

from collections.abc import Callable

from chipforge.cluster import check_validate as cv
from chipforge.cluster.memory import GiB
from chipforge.cluster.validate import CASES, ClusterCase, csv_rows, training_plan
from chipforge.spec.loader import load_chip

FILENAME = "memory_published.csv"
KINDS = {"designated": "memory", "heldout": "memory-heldout"}
UNBOUNDED = 2.0**60  # bytes: no plan is refused for memory while its memory is measured


def rows() -> list[dict]:
    """The CSV's rows (its '#' header lines state the selection rule)."""
    return csv_rows(FILENAME)


def predicted_gib(config: dict) -> float:
    """Memory per chip, GiB, of the check row `config`'s plan (its chip's memory unbounded)."""
    chip = cv.chip_for(config)
    chip = load_chip(chip) if isinstance(chip, str) else chip
    hbm = chip.hbm.model_copy(update={"capacity": UNBOUNDED})
    chip = chip.model_copy(update={"memory": (hbm, *chip.memory[1:])})
    return training_plan({**cv.training_row(config), "chip": chip}).memory_per_chip_bytes / GiB


def _predictor(config: dict) -> Callable[[], float]:
    return lambda: predicted_gib(config)


def cases() -> list[ClusterCase]:
    configs = {r["id"]: r for r in cv.rows()}
    return [
        ClusterCase(
            id=row["id"],
            kind=KINDS[row["set"]],
            metric="peak_memory_gib",
            published=float(row["value_gib"]),
            source=row["source"],
            predict=_predictor(configs[row["config"]]),
            may_fail=True,
        )
        for row in rows()
    ]


if cases not in CASES:
    CASES.append(cases)
