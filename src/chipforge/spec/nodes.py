"""Process nodes (TSMC N28 ... N2): the per-node figures the models scale by (see nodes.toml)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class ProcessNode:
    name: str
    energy_scale: float  # dynamic energy per operation relative to 45 nm (see nodes.toml)
    logic_density: float  # MTr/mm2 of placed standard cells (Bohr metric)
    sram_bitcell_um2: float  # high-density 6T bitcell area, um2
    sram_macro_efficiency: float  # bitcell area / product-level SRAM array area
    wafer_price_usd: float  # default price of one 300 mm wafer
    wafer_price_low_usd: float
    wafer_price_high_usd: float
    defect_density_per_cm2: float  # D0 of the mature node
    leakage_frac: float  # leakage share of total power at full load
    mask_set_usd: float  # one full mask set (one-time)
    design_nre_usd: float  # typical design cost of a large SoC on the node (one-time)

    @property
    def gate_density(self) -> float:
        """NAND2-equivalent gates per m2 of placed standard cells (4 transistors per NAND2)."""
        return self.logic_density * 1e6 / 4 / 1e-6


@cache
def nodes() -> dict[str, ProcessNode]:
    data = tomllib.loads((resources.files("chipforge.spec") / "nodes.toml").read_text())
    return {name: ProcessNode(name=name, **fields) for name, fields in data.items()}
