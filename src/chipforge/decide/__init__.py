"""Build or buy: a program schedule, supply limits, cash flows and uncertainty for a house
accelerator against buying GPUs, answered first as a verdict with its probability.

`analyse(load_scenario(path))` runs the Monte-Carlo (scrambled Sobol points), SALib Sobol
indices and the summary; `chipforge decide scenario.toml` prints it (docs/decide.md).
"""

from chipforge.decide.analysis import analyse, sobol_indices
from chipforge.decide.inputs import DEFAULTS, Param, Scenario, load_scenario, scenario_from_dict

__all__ = [
    "DEFAULTS",
    "Param",
    "Scenario",
    "analyse",
    "load_scenario",
    "scenario_from_dict",
    "sobol_indices",
]
