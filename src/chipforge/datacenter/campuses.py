"""Published campuses and pods (data/campuses.csv) against the site sizing: chips predicted from
each row's power and basis (grid, IT capacity or a pod's own power) with the default
`Assumptions`. Every included row is held out (the file's header states the selection rule)."""

from __future__ import annotations

import csv
import math
from functools import cache
from importlib import resources

from chipforge.datacenter.racks import load_rack
from chipforge.datacenter.site import Assumptions, size


@cache
def campuses() -> list[dict]:
    """Every row of data/campuses.csv (comment lines skipped), included or not."""
    text = resources.files("chipforge.data").joinpath("campuses.csv").read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    return list(csv.DictReader(lines))


def predicted_chips(row: dict, a: Assumptions | None = None) -> int:
    """Chips the model puts behind a row's power, on the row's basis."""
    a = a or Assumptions()
    rack = load_rack(row["rack"])
    watts = float(row["power_w"])
    if row["basis"] == "pod":
        return math.floor(watts / rack.power_w) * rack.chips
    if row["basis"] == "it":
        return size(rack, None, a, it_power_w=watts).chips
    return size(rack, None, a, grid_w=watts).chips


def check(a: Assumptions | None = None) -> list[dict]:
    """Included rows with the reported and predicted chips and the relative error."""
    out = []
    for row in campuses():
        if row["included"] != "yes":
            continue
        got, want = predicted_chips(row, a), float(row["chips_reported"])
        out.append(
            {
                "id": row["id"],
                "basis": row["basis"],
                "reported": int(want),
                "predicted": got,
                "error": got / want - 1,
            }
        )
    return out
