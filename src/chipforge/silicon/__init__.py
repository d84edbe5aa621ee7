"""Area, power, yield and unit cost of a chip on a process node (TSMC N28 ... N2).

`area(chip)` by block (gate-count model for matrix units, SRAM from bitcells, PHYs, SerDes,
NoC/control), split into chiplets over the reticle; `unit_cost(chip)` from dies per wafer,
negative-binomial yield, HBM, CoWoS-class packaging and test, one-time costs apart;
`power_at_peak` / `power_for_result` from node-scaled Horowitz energies plus leakage;
`evaluate(chip, node)` all of it as one result with `to_dict()`.
"""

from chipforge.silicon.cost import Costs, dies_per_wafer, unit_cost, yield_nb
from chipforge.silicon.floorplan import Area, area
from chipforge.silicon.power import Power, power_at_peak, power_for_result
from chipforge.silicon.report import Silicon, evaluate, node_named

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
    "unit_cost",
    "yield_nb",
]
