"""The unit cost's sensitivity to its sourced inputs: rows for a tornado, sorted by swing."""

from __future__ import annotations

from chipforge.errors import Infeasible
from chipforge.silicon.cost import unit_cost
from chipforge.silicon.interfaces import HBM_PRICE_RANGE
from chipforge.silicon.report import evaluate, node_named
from chipforge.spec import ChipSpec

# Ranges of the silicon cost model's inputs: the wafer price between the node table's low and
# high (spec/nodes.toml, sourced per node); the HBM price over interfaces.HBM_PRICE_RANGE
# (sourced there); the defect density from 0.75x to 1.5x the node's
# (N5's D0 fell from 0.10-0.11 to ~0.06 per cm2 over its ramp, [semi-d0-n5]: assumption); the
# cores (so the die area) 25% fewer or more, a design choice; an end whose dies no package holds
# (floorplan.MAX_DIES) is the chip's own count: the range stops at what can be built.
D0_RANGE = (0.75, 1.5)
CORES_RANGE = (0.75, 1.25)


def sensitivity(chip: ChipSpec, node: str | None = None) -> list[dict]:
    """The unit cost (USD) at each cost-model input's low and high end, the rest at the base
    case (`unit_cost` with its overrides; `evaluate` for a design with other cores): rows with
    `knob` (the input's key in the cost breakdown's `cost_inputs`, its unit the key's suffix),
    `low` and `high` (in that unit), `at_low_usd`, `at_high_usd` and `base_usd` (unit costs),
    sorted by swing like `datacenter.report.sensitivity`."""
    proc = node_named(node) if node else chip.process
    on = chip.model_copy(update={"node": proc.name})
    base = unit_cost(on, node=proc)
    inputs = base.inputs

    def cost(**kw) -> float:
        return unit_cost(on, node=proc, **kw).unit_cost

    rows = []

    def row(knob: str, lo: float, hi: float, at_lo: float, at_hi: float) -> None:
        rows.append({"knob": knob, "low": lo, "high": hi, "at_low_usd": at_lo,
                     "at_high_usd": at_hi, "base_usd": base.unit_cost})  # fmt: skip

    lo, hi = proc.wafer_price_low_usd, proc.wafer_price_high_usd
    row("wafer_price_usd", lo, hi, cost(wafer_price_usd=lo), cost(wafer_price_usd=hi))
    d0 = inputs["defect_density_per_cm2"]
    lo, hi = d0 * D0_RANGE[0], d0 * D0_RANGE[1]
    row("defect_density_per_cm2", lo, hi, cost(defect_density_per_cm2=lo),
        cost(defect_density_per_cm2=hi))  # fmt: skip
    if "hbm_price_per_gb_usd" in inputs:
        p = inputs["hbm_price_per_gb_usd"]
        lo, hi = p * HBM_PRICE_RANGE[0], p * HBM_PRICE_RANGE[1]
        row("hbm_price_per_gb_usd", lo, hi, cost(hbm_price_per_gb_usd=lo),
            cost(hbm_price_per_gb_usd=hi))  # fmt: skip
    ends = []
    for f in CORES_RANGE:
        n = max(1, round(chip.cores * f))
        dump = {**chip.model_dump(), "cores": n, "physical_cores": None}
        try:
            ends.append((n, evaluate(ChipSpec.model_validate(dump), proc.name).costs.unit_cost))
        except Infeasible:  # more dies than a package holds: not a design, the chip's own end
            ends.append((chip.cores, base.unit_cost))
    if ends[0][0] != ends[1][0]:
        row("cores", ends[0][0], ends[1][0], ends[0][1], ends[1][1])
    return sorted(rows, key=lambda r: -abs(r["at_high_usd"] - r["at_low_usd"]))
