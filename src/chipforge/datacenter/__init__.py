"""Racks, sites, power and cooling, capex/opex, TCO, $/Mtoken, time to train, build vs buy.

`site_report(chip_or_rack, power)` sizes a site and prices it; `compare` sets two side by side
with the break-even volume; `sensitivity` gives tornado data. Sources: data/datacenter.csv.
"""

from chipforge.datacenter.racks import Rack, load_rack, rack_for_chip, rack_names
from chipforge.datacenter.report import compare, sensitivity, site_report
from chipforge.datacenter.site import Assumptions, Site, size
from chipforge.datacenter.tco import breakeven_volume, chip_facts, evaluate_site

__all__ = [
    "Assumptions",
    "Rack",
    "Site",
    "breakeven_volume",
    "chip_facts",
    "compare",
    "evaluate_site",
    "load_rack",
    "rack_for_chip",
    "rack_names",
    "sensitivity",
    "site_report",
    "size",
]
