"""Area, power, yield and unit cost of a chip on a process node (TSMC N28 ... N2).

`area(chip)` by block (gate-count model for matrix units, SRAM from bitcells, PHYs, SerDes,
NoC/control), split into chiplets over the reticle; `unit_cost(chip)` from dies per wafer,
negative-binomial yield, HBM, CoWoS-class packaging and test, one-time costs apart;
`power_at_peak` / `power_for_result` from node-scaled Horowitz energies plus leakage;
`evaluate(chip, node)` all of it as one result with `to_dict()`; `sensitivity(chip, node)` the
unit cost at each sourced input's ends (tornado rows, sorted by swing).
"""

from chipforge.silicon.cost import Costs, dies_per_wafer, unit_cost, yield_nb
from chipforge.silicon.floorplan import Area, area
from chipforge.silicon.power import Power, power_at_peak, power_for_result
from chipforge.silicon.report import Silicon, evaluate, node_named
from chipforge.silicon.sensitivity import sensitivity

__all__ = [
    "Area",
    "Costs",
    "Power",
    "Silicon",
    "area",
    "dies_per_wafer",
    "evaluate",
    "node_named",
    "power_at_peak",
    "power_for_result",
    "sensitivity",
    "unit_cost",
    "yield_nb",
]
