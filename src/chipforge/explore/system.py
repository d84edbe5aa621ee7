"""System-level objectives of a design point: LLM serving through `chipforge.cluster.plan_serving`
and a whole site priced by `chipforge.datacenter` (racks, PUE, hosts, network, capex, opex, TCO).

    [serving]  model = "llama3-70b", chips = 8, isl = 2048, osl = 256, dtype = "fp8",
               tpot_slo = "100 ms"          # optional: every plan option of `chipforge
                                            # serve` by its flag's name (cluster.serve_options)
    [training] model = "llama3-70b", chips = 1024   # optional: every plan option of `chipforge
               dp_shard = 8, zero = 3, ...  # train` by its flag's name (cluster.train_options)
    [site]     power = "1 GW"               # facility power, as `chipforge datacenter --power`
               rack = "forge-n3-rack"       # rack template (default: the base chip's preset)
               volume = 500000              # built chips one-time costs are spread over
               pue = 1.2 ...                # any datacenter.Assumptions field

Training: one job of `chips` design chips, the fastest plan `plan_training` finds (every option
left out searched, as `chipforge train`); no feasible plan makes the point infeasible with the
reason. Serving: one replica of `chips` design chips, the best plan `plan_serving` finds
(TP/PP/batch searched unless fixed) under the SLOs; an infeasible plan (weights do not fit, no
plan meets the SLOs) makes the point infeasible with the reason. Site: the template rack with
each chip's power swapped for the design's modelled TDP (hosts, optics and fans kept), sized
and priced by
`datacenter.evaluate_site`; site tokens/s = replicas x replica throughput x goodput and $ per
million tokens = TCO per year / tokens per year, as `datacenter.workload.serving` computes them.
A base chip with no rack preset (a chip TOML) and no `[site] rack` gets the rack the datacenter's
rack template derives from each design's modelled TDP (`datacenter.racks.derive_rack`, as
`chipforge datacenter --chip my-chip.toml`); `site_method` says so. Stand-in, used only when the
real model is unavailable and named in the row's `serving_method`: no [serving] table ->
per-chip tokens/s of the `[[workloads]]`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from typing import Any

from chipforge.datacenter.report import DEFAULT_VOLUME
from chipforge.datacenter.tco import HOURS_PER_YEAR
from chipforge.errors import ChipforgeError, Infeasible, did_you_mean
from chipforge.request_defaults import SITE_ISL, SITE_OSL
from chipforge.units import parse_quantity

SERVING_OBJECTIVES = {
    "serving_tokens_per_s": "max",  # one replica of `chips` chips
    "serving_tokens_per_s_per_chip": "max",
    "ttft_s": "min",
    "tpot_s": "min",
}
TRAINING_OBJECTIVES = {
    "training_tokens_per_s": "max",  # one job of `chips` chips
    "training_tokens_per_s_per_chip": "max",
    "training_step_s": "min",
    "training_mfu": "max",
}
SITE_OBJECTIVES = {
    "chips_per_site": "max",
    "site_tokens_per_s": "max",
    "site_capex_usd": "min",
    "tco_usd_per_year": "min",
    "tco_usd_per_chip_hour": "min",
    "usd_per_million_tokens": "min",
}
TCO_OBJECTIVES = ("tco_usd_per_year", "tco_usd_per_chip_hour", "usd_per_million_tokens")


class SystemTableError(ChipforgeError):
    """A bad [serving] or [site] table (raised as SpaceError by the caller)."""


@dataclass(frozen=True)
class Serving:
    model: str
    chips: int
    isl: int = SITE_ISL
    osl: int = SITE_OSL
    # the plan options as written (TOML values, lists as tuples), `chipforge serve`'s flags by
    # name (cluster.serve_options; read and checked by parse_serving)
    options: tuple[tuple[str, Any], ...] = ()

    def plan_options(self) -> dict:
        """`plan_serving` keyword arguments of `options` (isl and osl included)."""
        from chipforge.cluster import serve_options

        raw = {"isl": self.isl, "osl": self.osl, **dict(self.options)}
        return serve_options.parse(raw, "serving")


@dataclass(frozen=True)
class Training:
    model: str
    chips: int
    # the plan options as written (TOML values), `chipforge train`'s flags by name
    # (cluster.train_options; read and checked by parse_training)
    options: tuple[tuple[str, Any], ...] = ()

    def plan_options(self) -> dict:
        """`plan_training` keyword arguments of `options`."""
        from chipforge.cluster import train_options

        return train_options.parse(dict(self.options), "training", moe=_model(self.model).is_moe)


@dataclass(frozen=True)
class SiteCfg:
    power_w: float = 1e9
    rack: str | None = None  # template rack preset; None: the rack template (derive_rack)
    volume: int = DEFAULT_VOLUME  # built chips over which one-time costs are spread
    assumptions: tuple[tuple[str, float], ...] = ()


def _chips(raw: dict, table: str) -> int:
    """[serving] / [training] `chips` (8 unless given): a whole number up to the limit
    `plan_serving` and `plan_training` take."""
    from chipforge.cluster.train_options import job_chips

    try:
        return job_chips(raw.get("chips", 8), "chips")
    except ChipforgeError as e:
        raise SystemTableError(f"{table}: {e}") from None


def _quantity(value, dimension: str, where: str) -> float:
    try:
        return parse_quantity(value, dimension, field=where)
    except ChipforgeError as e:
        raise SystemTableError(str(e)) from None


def parse_serving(raw: dict | None) -> Serving | None:
    """[serving]: `model`, `chips` and any plan option of `chipforge serve` (its flag's name
    with underscores; isl and osl 1024 unless given); what `serve` refuses is refused here,
    before any point."""
    if raw is None:
        return None
    from chipforge.cluster import serve_options
    from chipforge.cluster.serving import resolve_model

    keys = ["model", "chips", *serve_options.KEYS]
    for k in raw:
        if k not in keys:
            raise SystemTableError(f"serving: unknown key `{k}`{did_you_mean(k, keys)}")
    if "model" not in raw:
        raise SystemTableError('serving: `model` is missing, e.g. model = "llama3-70b"')
    try:
        c = resolve_model(str(raw["model"]))
    except ChipforgeError as e:
        raise SystemTableError(f"serving: `model` {raw['model']!r}: {e}") from None
    chips = _chips(raw, "serving")
    rest = {k: v for k, v in raw.items() if k not in ("model", "chips")}
    try:
        o = serve_options.parse(
            {"isl": SITE_ISL, "osl": SITE_OSL} | rest, "serving", model=c, chips=chips
        )
    except ChipforgeError as e:
        raise SystemTableError(str(e)) from None
    options = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in rest.items()
                    if k not in ("isl", "osl"))  # fmt: skip
    return Serving(str(raw["model"]), chips, o["isl"], o["osl"], options)


def parse_training(raw: dict | None) -> Training | None:
    """[training]: `model`, `chips` and any plan option of `chipforge train` (its flag's name
    with underscores); the pairs `train` refuses are refused here, before any point."""
    if raw is None:
        return None
    from chipforge.cluster import train_options
    from chipforge.cluster.serving import resolve_model

    if "model" not in raw or "chips" not in raw:
        raise SystemTableError('training: `model` and `chips` are needed, e.g. model = '
                               '"llama3-70b", chips = 1024')  # fmt: skip
    try:
        c = resolve_model(str(raw["model"]))
    except ChipforgeError as e:
        raise SystemTableError(f"training: `model` {raw['model']!r}: {e}") from None
    chips = _chips(raw, "training")
    rest = {k: v for k, v in raw.items() if k not in ("model", "chips")}
    try:
        train_options.parse(rest, "training", moe=c.is_moe)
    except ChipforgeError as e:
        raise SystemTableError(str(e)) from None
    return Training(str(raw["model"]), chips, tuple(rest.items()))


def training_objectives(t: Training, chip) -> dict:
    """Tokens/s, step time and MFU of the fastest feasible plan; `training_infeasible` says
    why none."""
    from chipforge.cluster import plan_training

    o = {"training_method": "cluster.plan_training"}
    try:
        r = plan_training(chip, _model(t.model), t.chips, **t.plan_options())
    except Infeasible as e:
        nan = float("nan")
        return {**o, **dict.fromkeys(TRAINING_OBJECTIVES, nan), "training_infeasible": str(e)}
    p = r.plan
    o.update(
        training_tokens_per_s=r.tokens_per_s,
        training_tokens_per_s_per_chip=r.tokens_per_s / t.chips,
        training_step_s=r.step_time_s,
        training_mfu=r.mfu,
        training_plan=f"tp={p.tp} pp={p.pp} dp={p.dp} cp={p.cp} ep={p.ep} zero={p.zero} "
        f"dp_shard={p.shard_ranks} micro_batch={p.micro_batch}",
    )
    return o


def parse_site(raw: dict, base_name: str) -> SiteCfg:
    from chipforge.datacenter import Assumptions, load_rack, rack_for_chip

    known = ["power", "rack", "volume", *[f.name for f in fields(Assumptions)]]
    for k in raw:
        if k not in known:
            raise SystemTableError(f"site: unknown key `{k}`{did_you_mean(k, known)}")
    from chipforge.datacenter.site import site_watts

    given = raw.get("power", 1e9)
    power = site_watts(_quantity(given, "power", "site.power"), "site: `power`", repr(given),
                       error=SystemTableError)  # fmt: skip
    if "rack" in raw:
        try:
            load_rack(str(raw["rack"]))  # a preset name or a rack TOML path, checked here
            rack = str(raw["rack"])
        except ChipforgeError as e:
            raise SystemTableError(f"site: {e}") from None
    else:
        try:
            rack = rack_for_chip(base_name).name
        except ChipforgeError:
            rack = None  # a chip file with no rack preset: the rack template
    over = {k: v for k, v in raw.items() if k not in ("power", "rack", "volume")}
    for k, v in over.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SystemTableError(f"site: `{k}` must be a number, not {v!r}")
    over = {k: float(v) for k, v in over.items()}
    try:
        Assumptions().with_(**over)
    except ChipforgeError as e:
        raise SystemTableError(f"site: {e}") from None
    from chipforge.cluster.checks import whole

    volume = whole(raw.get("volume", SiteCfg.volume), "site: `volume`", error=SystemTableError)
    return SiteCfg(power, rack, volume, tuple(sorted(over.items())))


@cache
def _model(name: str):
    from chipforge.cluster.serving import resolve_model

    return resolve_model(name)


def _plan(chip, s: Serving):
    """`plan_serving` for one design chip (its per-layer cache is keyed on the chip's content)."""
    from chipforge.cluster import plan_serving

    return plan_serving(chip, _model(s.model), s.chips, **s.plan_options())


def serving_objectives(s: Serving, chip) -> dict:
    """Replica throughput, TTFT and TPOT of the best plan; `serving_infeasible` says why none."""
    nan = float("nan")
    o = {"serving_method": "cluster.plan_serving"}
    try:
        p = _plan(chip, s)
    except Infeasible as e:
        return {**o, **dict.fromkeys(SERVING_OBJECTIVES, nan), "serving_infeasible": str(e)}
    o.update(
        serving_tokens_per_s=p.throughput_tokens_per_s,
        serving_tokens_per_s_per_chip=p.throughput_tokens_per_s / s.chips,
        ttft_s=p.ttft_s,
        tpot_s=nan if p.tpot_s is None else p.tpot_s,  # undefined with one output token
        serving_plan=f"tp={p.tp} pp={p.pp} ep={p.ep} dp={p.dp} batch={p.batch}",
    )
    return o


@cache
def _template(rack_name: str):
    """The rack preset and its own chip's modelled TDP (the part of rack power that scales)."""
    from chipforge import silicon
    from chipforge.datacenter import load_rack
    from chipforge.spec import load_chip

    rack = load_rack(rack_name)
    if not rack.chip:  # a rack TOML for any chip: its power is taken as given
        return rack, None
    return rack, silicon.evaluate(load_chip(rack.chip)).tdp.total


@cache
def _assumptions(over: tuple):
    from chipforge.datacenter import Assumptions

    return Assumptions().with_(**dict(over))


def _site_tokens(s: Serving | None, o: dict, chips: int, goodput: float) -> float:
    """Output tokens/s of `chips` chips: whole replicas x replica throughput (as
    `datacenter.workload.serving`), or chips x the per-chip workload rate without [serving]."""
    if s is not None:
        return o["serving_tokens_per_s"] * (chips // s.chips) * goodput
    return o["tokens_per_s"] * chips * goodput


def site_objectives(cfg: SiteCfg, s: Serving | None, chip, sil, o: dict) -> dict:
    """Chips, capex, TCO, site tokens/s and $ per million tokens of a site of this design;
    `o` holds the point's per-chip objectives and, with [serving], the replica's."""
    nan = float("nan")
    from dataclasses import replace

    from chipforge.datacenter import evaluate_site
    from chipforge.datacenter.racks import derive_rack
    from chipforge.datacenter.tco import facts_from

    a = _assumptions(cfg.assumptions)
    if cfg.rack is None:  # the datacenter's rack template around the design's modelled TDP
        rack = derive_rack(chip.model_copy(update={"tdp": o["tdp_w"]}), chip.name, a)
        method = "datacenter.evaluate_site (rack template)"
    else:
        template, template_tdp = _template(cfg.rack)
        rack = replace(
            template,
            name=f"{template.name} with {chip.name}",
            chip=chip.name,
            power_w=template.power_w
            + (template.chips * (o["tdp_w"] - template_tdp) if template_tdp else 0.0),
            market_chip_usd=None,  # a design point is built, never bought
        )
        method = "datacenter.evaluate_site"
    facts = facts_from(chip.name, chip, sil)  # a design point is built, never bought
    site = evaluate_site(rack, cfg.power_w, a, volume=cfg.volume, chip=facts)
    tps = _site_tokens(s, o, site["chips"], a.goodput)
    per_year = site["tco_usd_per_year"]
    return {
        "site_method": method,
        "chips_per_site": float(site["chips"]),
        "site_racks": float(site["racks"]),
        "site_it_power_w": site["it_power_w"],
        "site_tokens_per_s": tps,
        "site_capex_usd": site["capex_usd"]["total"],
        "tco_usd_per_year": per_year,
        "tco_usd_per_chip_hour": site["tco_usd_per_chip_hour"],
        "usd_per_million_tokens": per_year / (tps * HOURS_PER_YEAR * 3600) * 1e6
        if tps > 0
        else nan,
    }
