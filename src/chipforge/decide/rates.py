"""What the Monte-Carlo needs to know about each chip, computed once per chip (not per sample):
its rack, per-chip power and non-chip capex, its cost parts, and the useful FLOP/s it delivers
on each workload of the scenario from the project's own planners (`datacenter.workload.training`
/ `serving`, i.e. `cluster.plan_training` / `plan_serving` or their documented fallbacks), so
each chip's MFU comes from its own plan."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from chipforge.datacenter.racks import Rack, rack_for, rack_from_dict
from chipforge.datacenter.site import Assumptions, network_tiers
from chipforge.datacenter.tco import Chip, facts_from
from chipforge.datacenter.workload import serving, training
from chipforge.decide.inputs import Option, Scenario
from chipforge.errors import ChipforgeError
from chipforge.silicon import evaluate
from chipforge.spec import load_chip
from chipforge.workload.resolve import resolve_model

MAX_TRAINING_CHIPS = 65536  # as datacenter.workload: one job spans at most this many chips


@dataclass(frozen=True)
class ChipType:
    """One accelerator as the fleet model sees it (nominal values; the samples scale them)."""

    name: str
    built: bool
    rack: Rack
    w_it: float  # typical IT W per chip incl. network and storage shares (no headroom)
    other_capex_usd: float  # per chip: rack non-chip content + NIC + switch ports
    price_usd: float  # bought: street price; built: silicon cost (no markup)
    parts: dict[str, float]  # built: silicon cost parts
    dies_per_wafer: float = 0.0
    dies_per_chip: int = 1
    mature_yield: float = 1.0
    package_yield: float = 1.0
    hbm_stacks: int = 0
    one_time_usd: float = 0.0
    peak_bf16: float = 0.0
    useful: dict[str, float] = field(default_factory=dict)  # workload -> useful FLOP/s/chip
    methods: dict[str, str] = field(default_factory=dict)

    # JSON keys carry their unit (the fields keep their short names in the model's code)
    JSON_KEYS = {"w_it": "it_power_w", "peak_bf16": "peak_bf16_flops_per_s",
                 "useful": "useful_flops_per_s_per_chip", "parts": "parts_usd"}  # fmt: skip

    def to_dict(self) -> dict:
        d = {self.JSON_KEYS.get(k, k): v for k, v in asdict(self).items()}
        d["rack"] = self.rack.to_dict()
        return d


def _rack(opt: Option) -> Rack:
    if isinstance(opt.rack, dict):  # an inline table: the option's chip, a rack file's fields
        where = f"the inline rack of {opt.chip}"
        if "chip" in opt.rack:
            raise ChipforgeError(f"{where}: leave out `chip`; it holds the option's `chip`")
        r = rack_from_dict(f"{opt.chip}-rack", {"source": "scenario", **opt.rack}, where)
        return replace(r, chip=opt.chip)
    # a preset or rack TOML, else the chip preset's rack, else the rack template's (as datacenter)
    return rack_for(opt.chip, opt.rack, Assumptions(), "rack")


def _facts(opt: Option, rack: Rack, built: bool, price: float) -> tuple[Chip, dict]:
    """Cost facts: built at its silicon cost; bought at its rack's market price, or `price`
    (the scenario's buy price) where the rack has none (a derived rack)."""
    spec = load_chip(opt.chip)
    sil = evaluate(spec)
    market = None if built else (rack.market_chip_usd or price)
    return facts_from(opt.chip, spec, sil, market), sil.to_dict()


_CACHE: dict[tuple, tuple[float, str]] = {}


def _useful(chip: Chip, workload: tuple, ref_chips: int, options: dict) -> tuple[float, str]:
    """Useful FLOP/s per chip on one workload (goodput included), and how it was obtained;
    cached per (chip, workload, job size): the planners run once, never per sample. `options`:
    the workload entry's plan options as read (`Train.options`, `Serve.options`), which its
    key's "key=value" lines state."""
    key = (chip.name, chip.peak_flops.get("bf16"), chip.hbm_bytes, chip.hbm_bw, workload, ref_chips)
    if key not in _CACHE:
        _CACHE[key] = _plan(chip, workload, ref_chips, options)
    return _CACHE[key]


def _plan(chip: Chip, workload: tuple, ref_chips: int, options: dict) -> tuple[float, str]:
    a = asdict(Assumptions())
    kind = workload[0]
    if kind == "train":
        _, model, tokens, *_ = workload
        site = {"chips": ref_chips, "assumptions": a, "tco_usd_per_chip_hour": 0.0}
        t = training(site, chip, model, tokens, options=options)
        flops = 6.0 * resolve_model(model).params() * tokens
        return flops / (t["time_to_train_s"] * t["training_chips"]), t["method"]
    _, model, isl, osl, dtype, *_ = workload
    site = {"chips": ref_chips, "assumptions": a, "tco_usd_per_year": 1.0}
    s = serving(site, chip, model, isl=isl, osl=osl, dtype=dtype, options=options)
    per_chip = s["throughput_tokens_per_s"] / (s["replicas"] * s["chips_per_replica"])
    return 2.0 * resolve_model(model).params() * per_chip, s["method"]


def workloads(sc: Scenario) -> list[tuple]:
    """Hashable workload keys, trainings then servings."""
    return [w.workload() for w in (*sc.train, *sc.serve)]


def ref_chips(sc: Scenario, rack: Rack) -> int:
    """Chips on the first site at nominal values (the training job's size, capped)."""
    a = Assumptions()
    shares = 1 + a.network_power_share + a.storage_power_share
    it = _it(sc.sites[0], a)
    racks = max(1, math.floor(it / (rack.headroom(a.it_headroom) * shares * rack.power_w)))
    return min(racks * rack.chips, MAX_TRAINING_CHIPS)


def _it(site, a: Assumptions) -> float:
    return site.it_w if site.it_w is not None else site.grid_w * a.redundancy / a.pue_peak


def chip_type(sc: Scenario, opt: Option, built: bool) -> ChipType:
    """The fleet model's view of `opt`'s chip, planners run once per workload."""
    a = Assumptions()
    rack = _rack(opt)
    key = "buy.next_price_usd" if opt is sc.buy_next else "buy.price_usd"
    chip, d = _facts(opt, rack, built, sc.param(key).value)
    shares = 1 + a.network_power_share + a.storage_power_share
    total_it = sum(_it(s, a) for s in sc.sites)
    head = rack.headroom(a.it_headroom)
    fleet = max(1, int(total_it / (head * rack.power_w * shares)) * rack.chips)
    tiers = network_tiers(fleet, a.switch_radix)
    other = (
        rack.other_hw_usd / rack.chips
        + a.nic_usd_per_chip
        + (2 * tiers - 1) * a.usd_per_switch_port
    )
    ci = d["breakdown"].get("cost_inputs", {})
    n_ref = ref_chips(sc, rack)
    useful, methods = {}, {}
    for entry in (*sc.train, *sc.serve):
        w, key = entry.workload(), entry.key()
        n = getattr(entry, "chips", None) or n_ref  # a training job's own chips, if stated
        try:
            useful[key], methods[key] = _useful(chip, w, n, entry.options())
        except ChipforgeError as e:
            raise ChipforgeError(f"workload {key} on {opt.chip}: {e}") from None
        stated = len(w) > (3 if w[0] == "train" else 5)  # the table's plan options (or chips)
        if stated and methods[key].startswith("fallback"):  # it prices without them
            raise ChipforgeError(
                f"workload {key} on {opt.chip}: no plan on {n:,} chips takes "
                f"its plan options, so they would be priced as if not given "
                f"({methods[key]}): change or drop them"
            )
        if not useful[key] > 0:
            raise ChipforgeError(f"workload {key} on {opt.chip} delivers no throughput")
    return ChipType(
        name=str(opt.chip),
        built=built,
        rack=rack,
        w_it=rack.power_w * shares / rack.chips,
        other_capex_usd=other,
        price_usd=chip.unit_cost_usd,
        parts=dict(chip.cost_parts) if built else {},
        dies_per_wafer=float(ci.get("dies_per_wafer", d.get("dies_per_wafer", 0.0))),
        dies_per_chip=int(ci.get("dies", d.get("dies", 1)) or 1),
        mature_yield=float(ci.get("yield", d.get("yield", 1.0))),
        package_yield=float(ci.get("package_yield", 1.0)),
        hbm_stacks=int(ci.get("hbm_stacks", 0) or 0),
        one_time_usd=chip.one_time_usd,
        peak_bf16=float(chip.peak_flops.get("bf16", 0.0)),
        useful=useful,
        methods=methods,
    )
