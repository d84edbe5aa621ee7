"""Published figures the models are calibrated and validated against, with their sources.

`published.csv` is the project's copy of the shared calibration set (id, category, quantity,
value, unit, conditions, source, confidence); `measured.csv` (hardware figures) and
`validation.csv` (performance measurements) and `program.csv` (chip program: masks, design
cost, tape-out to volume, CoWoS) add public figures found since, in the same
columns. All ship in the package so chipforge runs on its own. `sustained_gemm.csv` holds the
long back-to-back GEMM runs its '#' header's rule selects (their own columns: shape, dtype,
duration, measured clock). `grouped_gemm.csv` holds one library's measured dense and MoE-grouped
GEMMs at stated shapes (the check of the engine's grouped-GEMM price; its header states the rule).
"""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources

FILES = ("published.csv", "measured.csv", "validation.csv", "program.csv")


@cache
def published() -> dict[str, dict[str, str]]:
    """Every row of the shipped figure tables, keyed by id."""
    rows: dict[str, dict[str, str]] = {}
    for name in FILES:
        path = resources.files("chipforge.data") / name
        if path.is_file():
            with path.open(newline="") as fh:
                for row in csv.DictReader(fh):
                    assert row["id"] not in rows, f"duplicate figure id {row['id']}"
                    rows[row["id"]] = row
    return rows


def figure(figure_id: str) -> float:
    """The numeric value of one published figure, in the units of its `unit` column."""
    return float(published()[figure_id]["value"])


@cache
def sustained_gemm() -> dict[str, dict[str, str]]:
    """The sustained GEMM rows (sustained_gemm.csv, whose '#' header states the rule that selects
    them), keyed by id."""
    return _commented_csv("sustained_gemm.csv")


def _commented_csv(name: str) -> dict[str, dict[str, str]]:
    text = (resources.files("chipforge.data") / name).read_text()
    lines = (line for line in text.splitlines() if not line.startswith("#"))
    return {row["id"]: row for row in csv.DictReader(lines)}


@cache
def grouped_gemm() -> dict[str, dict[str, str]]:
    """DeepGEMM's measured dense and MoE-grouped FP8 GEMMs on H800 (grouped_gemm.csv, whose '#'
    header states the source and the rule that selects them), keyed by id."""
    return _commented_csv("grouped_gemm.csv")
