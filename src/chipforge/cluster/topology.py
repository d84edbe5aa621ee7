"""Cluster topologies: a switched scale-up domain (NVLink/NVSwitch) under a scale-out fat tree,
or a 2D/3D torus (TPU ICI; optical circuit switches make any torus shape, with wrap-around)
whose pods are joined by a data-centre network.

Bandwidths here are ONE direction: per chip into the switch (`up_bandwidth`), per torus link
(`link_bandwidth`) and per chip NIC (`nic_bandwidth`). Presets are in topologies.toml.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources

from chipforge.errors import SpecError, did_you_mean, flag
from chipforge.spec.models import ChipSpec


@dataclass(frozen=True)
class Topology:
    """The network `chips` accelerators sit on (see the module docstring for units)."""

    name: str
    chips: int
    kind: str = "switched"  # "switched" or "torus"
    domain: int = 8  # chips in one scale-up domain (switched) or one torus pod
    up_bandwidth: float = 450e9  # switched: B/s per chip per direction into the switch
    up_latency: float = 2e-6  # s per collective step inside the domain (alpha)
    dims: tuple[int, ...] = ()  # torus shape of one pod (product = domain)
    link_bandwidth: float = 0.0  # torus: B/s per link per direction
    wrap: bool = True  # torus wrap-around links
    nic_bandwidth: float = 50e9  # scale-out B/s per chip per direction
    out_latency: float = 5e-6  # s per collective step across the scale-out network
    oversubscription: float = 1.0  # fat-tree taper (>= 1): bandwidth divides by it
    tiers: int = 3  # fat-tree switch tiers
    # the host each chip can move activations to (training `activation_offload`): B/s per chip
    # per direction and bytes per chip (0: no host offload path modelled)
    host_bandwidth: float = 0.0
    host_memory: float = 0.0
    host_memory_bandwidth: float = 0.0  # B/s per chip of the host's memory (CPU optimizer)
    # ring channels NCCL's topology search gives a collective inside the domain (each channel
    # one CTA carrying an equal share of the bandwidth; 0: not modelled): a run that caps a
    # communicator's CTAs below it gets that share (training.RunOptions.nccl_ctas)
    nccl_channels: int = 0

    def __post_init__(self):
        if self.kind not in ("switched", "torus"):
            raise SpecError(f"`kind` must be switched or torus, not {self.kind!r}")
        for f in ("chips", "domain", "nic_bandwidth", "oversubscription", "tiers"):
            if not getattr(self, f) > 0:
                raise SpecError(f"topology `{f}` must be positive, not {getattr(self, f)}")
        if self.kind == "torus" and math.prod(self.dims) != self.domain:
            raise SpecError(f"torus `dims` {self.dims} must multiply to the pod size {self.domain}")
        if self.kind == "switched" and not self.up_bandwidth > 0:
            raise SpecError("switched topology `up_bandwidth` must be positive")
        if self.kind == "torus" and not self.link_bandwidth > 0:
            raise SpecError("torus topology `link_bandwidth` must be positive")

    @property
    def domains(self) -> int:
        """Scale-up domains (or pods) the chips fill."""
        return math.ceil(self.chips / self.domain)

    @property
    def scale_up_bandwidth(self) -> float:
        """Per-chip injection bandwidth inside the domain, one direction (B/s)."""
        if self.kind == "switched":
            return self.up_bandwidth
        return 2 * len(self.dims) * self.link_bandwidth

    def scaled(self, factor: float) -> Topology:
        """The same topology with every link `factor` times faster (for what-ifs)."""
        return replace(
            self,
            up_bandwidth=self.up_bandwidth * factor,
            link_bandwidth=self.link_bandwidth * factor,
            nic_bandwidth=self.nic_bandwidth * factor,
        )


@cache
def torus_shape(n: int, rank: int = 3) -> tuple[int, ...]:
    """The most cubic `rank`-D shape with n chips (smallest largest side; largest first)."""
    if rank == 1:
        return (n,)
    shapes = [
        tuple(sorted((a, *torus_shape(n // a, rank - 1)), reverse=True))
        for a in range(1, n + 1)
        if n % a == 0
    ]
    return min(shapes, key=lambda s: (s[0], s))


@cache
def _presets() -> dict[str, dict]:
    text = (resources.files("chipforge.cluster") / "topologies.toml").read_text()
    return tomllib.loads(text)


def topology_names() -> list[str]:
    return sorted(_presets())


def check_preset_key(name: str, fail: Callable[[str], Exception]) -> None:
    """A table's `topology` key (a sweep's [training] / [serving], decide's workloads) names a
    preset; `fail` turns the message into the caller's error (its own class and prefix)."""
    names = topology_names()
    if name not in names:
        raise fail(f"`topology` must be a preset ({', '.join(names)}), not {name!r}")


def _preset_for_chip(chip: ChipSpec) -> str:
    for name, p in _presets().items():
        if chip.name.lower() in p["chips"]:
            return name
    link = chip.links[0].name.lower() if chip.links else ""
    return "tpu-v5p-pod" if "ici" in link else "dgx-h100"


def topology_for(
    chip: ChipSpec, chips: int, name: str | None = None, pod: int | None = None
) -> Topology:
    """The topology `chips` copies of `chip` sit on: preset `name`, or the chip's default
    preset with the scale-up bandwidth taken from the chip's own link spec. `pod` (torus
    presets): the chips of one slice, a job of several slices joined by the data-centre network
    (TPU multi-slice; PaLM's two pods), else one slice of all the chips up to the preset's pod."""
    if chips <= 0:
        raise SpecError(f"`chips` must be a positive integer, not {chips}")
    default = _preset_for_chip(chip)
    name = name.strip() if name is not None else None  # a preset only, never a file
    label = name
    if name is None:
        name = default
        # a chip no preset lists (a chip TOML) gets the template's shape under its own name
        listed = chip.name.lower() in _presets()[name]["chips"]
        label = name if listed else f"{chip.name} {_presets()[name]['kind']}"
    if name not in _presets():
        raise SpecError(
            f"{flag('topology')} must be one of {', '.join(topology_names())}, not {name!r}"
            f"{did_you_mean(name, topology_names())}"
        )
    p = dict(_presets()[name])
    kind = _presets()[default]["kind"]
    if p["kind"] != kind:  # the chip's links would be re-read as the other kind's
        fits = [n for n in topology_names() if _presets()[n]["kind"] == kind]
        raise SpecError(
            f"`topology` {name} is a {p['kind']} network, but {chip.name}'s links make a "
            f"{kind} one ({default}); use one of {', '.join(fits)}"
        )
    link = chip.links[0] if chip.links else None
    common = dict(
        name=label,
        chips=chips,
        kind=p["kind"],
        nic_bandwidth=p["nic_bandwidth"],
        out_latency=p["out_latency"],
        oversubscription=p["oversubscription"],
        tiers=p["tiers"],
        up_latency=link.latency if link else p["up_latency"],
        host_bandwidth=p.get("host_bandwidth", 0.0),
        host_memory=p.get("host_memory", 0.0),
        host_memory_bandwidth=p.get("host_memory_bandwidth", 0.0),
        nccl_channels=p.get("nccl_channels", 0),
    )
    if p["kind"] == "switched":
        if pod is not None:
            raise SpecError(f"`pod` (chips per slice) is for torus topologies; {name}'s "
                            "scale-up domain is its preset's")  # fmt: skip
        up = link.bandwidth / 2 if link else p["up_bandwidth"]  # spec: both directions summed
        return Topology(domain=p["domain"], up_bandwidth=up, **common)
    per_link = link.bandwidth / 2 / link.ports if link else p["link_bandwidth"]
    if link and link.ports > 6:  # several ports per neighbour (forge-n3: 2 per neighbour)
        per_link *= link.ports / 6
    if pod is not None:
        if isinstance(pod, bool) or not isinstance(pod, int) or not 0 < pod <= p["pod"]:
            raise SpecError(f"`pod` must be a whole number of chips from 1 to {name}'s pod of "
                            f"{p['pod']:,}, not {pod!r}")  # fmt: skip
        if chips % pod:
            raise SpecError(f"`pod` {pod:,} must divide the {chips:,} chips: a job of whole "
                            "slices")  # fmt: skip
        if pod < chips:
            common["name"] = f"{label}, {chips // pod:,} slices of {pod:,}"
    else:
        pod = min(chips, p["pod"]) if p.get("ocs") else p["pod"]
    dims = tuple(p["dims"]) if "dims" in p and pod == p["pod"] else torus_shape(pod)
    return Topology(domain=pod, dims=dims, link_bandwidth=per_link, wrap=True, **common)
