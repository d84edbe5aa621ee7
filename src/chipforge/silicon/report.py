"""One result object for a chip on a node: area, cost, power, perf/W and perf/$ per dtype."""

from __future__ import annotations

from dataclasses import dataclass

from chipforge.errors import SpecError, did_you_mean, flag
from chipforge.silicon.cost import Costs, unit_cost
from chipforge.silicon.floorplan import Area, area
from chipforge.silicon.power import Power, main_dtype, power_at_peak
from chipforge.spec import ChipSpec
from chipforge.spec.nodes import ProcessNode, nodes

ONE_TIME_SOURCES = {
    "mask_set_usd": "per node, spec/nodes.toml: press ranges citing IBS and Semiconductor "
    "Engineering (recalled, not re-verified)",
    "design_nre_usd": "per node, spec/nodes.toml: IBS via Semiconductor Engineering, 'Big "
    "Trouble At 3nm' (2018); N2 extrapolated (assumption)",
}


def node_named(name: str) -> ProcessNode:
    """The process node `name` (case-insensitive), or a SpecError naming the choices."""
    key = name.lower()
    if key not in nodes():
        raise SpecError(
            f"{flag('node')} must be one of {', '.join(nodes())}, not {name!r}"
            f"{did_you_mean(key, nodes())}"
        )
    return nodes()[key]


@dataclass(frozen=True)
class Silicon:
    """Area, unit cost and power of one chip design on one node."""

    chip: str
    node: str
    area: Area
    costs: Costs
    tdp: Power  # the model's power with every engine at peak in the main dtype
    peak_flops: dict[str, float]  # per dtype, FLOP/s

    @property
    def unit_cost_usd(self) -> float:
        return self.costs.unit_cost

    def perf_per_watt(self) -> dict[str, float]:
        """FLOP/s per W at the model's TDP, per dtype."""
        return {d: f / self.tdp.total for d, f in self.peak_flops.items()}

    def perf_per_dollar(self) -> dict[str, float]:
        """FLOP/s per USD of unit cost, per dtype."""
        return {d: f / self.unit_cost_usd for d, f in self.peak_flops.items()}

    def to_dict(self) -> dict:
        a = self.area.to_dict()
        return {
            "chip": self.chip,
            "node": self.node,
            "die_area_mm2": a["die_area_mm2"],
            "total_area_mm2": a["total_area_mm2"],
            "dies": self.area.dies,
            "fits_reticle": self.area.fits_reticle,
            "dies_per_wafer": self.costs.inputs["dies_per_wafer"],
            "yield": self.costs.inputs["yield"],
            "unit_cost_usd": self.unit_cost_usd,
            "tdp_w": self.tdp.total,
            "energy_per_flop_at_tdp_j": {d: self.tdp.total / f for d, f in self.peak_flops.items()},
            "breakdown": {
                "area_mm2": a["blocks_mm2"],
                "cost_usd": dict(self.costs.items),
                "cost_inputs": dict(self.costs.inputs),
                "power_w": dict(self.tdp.parts),
            },
            "offchip_memory": a["offchip_memory"],
            "one_time_usd": dict(self.costs.one_time),
            "one_time_sources": dict(ONE_TIME_SOURCES),
            "peak_flops_per_s": dict(self.peak_flops),
            "flops_per_s_per_w": self.perf_per_watt(),
            "flops_per_s_per_usd": self.perf_per_dollar(),
        }


def evaluate(chip: ChipSpec, node: str | None = None) -> Silicon:
    """The whole silicon model for `chip`, on its own node or re-targeted to `node`."""
    proc = node_named(node) if node is not None else chip.process
    chip = chip.model_copy(update={"node": proc.name})
    dtypes = list(chip.matrix.macs_per_cycle)
    return Silicon(
        chip=chip.name,
        node=proc.name,
        area=area(chip, proc),
        costs=unit_cost(chip, node=proc),
        tdp=power_at_peak(chip, main_dtype(chip), proc),
        peak_flops={d: chip.peak_flops(d) for d in dtypes},
    )
