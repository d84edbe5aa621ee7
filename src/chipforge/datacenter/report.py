"""One site, a comparison of two, and tornado sensitivity data, as plain dicts for the CLI."""

from __future__ import annotations

from chipforge.cluster.checks import token_count
from chipforge.datacenter.racks import Rack, rack_for
from chipforge.datacenter.site import Assumptions
from chipforge.datacenter.tco import breakeven_volume, chip_facts, evaluate_site
from chipforge.datacenter.workload import serving, site_request, training
from chipforge.dtypes import check_dtype
from chipforge.errors import SpecError
from chipforge.silicon.interfaces import HBM_PRICE_RANGE

DEFAULT_VOLUME = 500_000  # built chips over which one-time costs are spread (a ~1 GW fleet)


def resolve(chip, rack: str | None = None, a: Assumptions | None = None) -> Rack:
    """The rack of a site of `chip` (see `racks.rack_for`)."""
    return rack_for(chip, rack, a or Assumptions())


def site_report(
    chip,
    power_w: float | None,
    a: Assumptions | None = None,
    *,
    rack: str | None = None,
    racks: int | None = None,
    model: str | None = None,
    tokens: float | None = None,
    serve_model: str | None = None,
    serve_dtype: str = "bf16",
    isl: int | None = None,
    osl: int | None = None,
    volume: int = DEFAULT_VOLUME,
    factors: dict | None = None,
    it_power_w: float | None = None,
    grid_w: float | None = None,
) -> dict:
    """Size and price a site of `chip` (preset name, TOML path or `ChipSpec`) of facility
    `power_w`, provisioned `it_power_w` or utility `grid_w`; with a model, time to train it and
    serve it (requests of `isl` in, `osl` out: `site_request`)."""
    check_dtype(serve_dtype, "--dtype")
    token_count(tokens)
    a = (a or Assumptions()).check()
    r = resolve(chip, rack, a)
    facts = chip_facts(r, spec=None if isinstance(chip, str) else chip, **(factors or {}))
    out = evaluate_site(
        r, power_w, a, racks=racks, volume=volume if facts.built else None, chip=facts,
        it_power_w=it_power_w, grid_w=grid_w,
    )  # fmt: skip
    if facts.built:
        out["build_volume"] = volume
        # what capex charges per chip: silicon x markup + one-time costs / volume
        out["chip_capex_usd_per_chip"] = out["capex_usd"]["chips_usd"] / (
            out["chips"] * (1 + a.spares_share)
        )
    else:
        out["chip_capex_usd_per_chip"] = facts.unit_cost_usd
    out["rack_derived"] = r.name.endswith("(derived)")
    out["assumption_origins"] = a.origins()
    if model:
        t = training(out, facts, model, tokens or 20.0 * _params(model))
        isl, osl = site_request(serve_model or model, isl, osl)
        s = serving(out, facts, serve_model or model, isl=isl, osl=osl, dtype=serve_dtype)
        out.update(
            time_to_train_s=t["time_to_train_s"],
            usd_per_million_tokens=s["usd_per_million_tokens"],
            training=t,
            serving=s,
        )
        # the same cost per useful PFLOP-hour at this chip's own training plan (its MFU from
        # the plan, goodput included) instead of the one `utilization` every chip shares
        peak = facts.peak_flops.get("bf16", 0.0)
        useful = 6.0 * _params(model) * t["tokens"] / (t["time_to_train_s"] * t["training_chips"])
        if peak > 0 and useful > 0 and t["method"].startswith("cluster"):  # a plan, no fallback
            out["planned_mfu"] = useful / (peak * a.goodput)
            out["usd_per_useful_pflop_hour_planned"] = out["tco_usd_per_chip_hour"] / (
                useful / 1e15
            )
    return out


def _params(model: str) -> float:
    from chipforge.workload.resolve import resolve_model  # noqa: PLC0415

    return float(resolve_model(model).params())


def compare(chips: list[str], power_w: float, a: Assumptions | None = None, **kw) -> dict:
    """Sites side by side; the first bought chip is the GPU the built ones are measured against."""
    if not chips:
        raise SpecError("`--chip` must name at least one chip, e.g. --chip gb200,forge-n3")
    reports = [site_report(c, power_w, a, **kw) for c in chips]
    sites = {s["chip"]: s for s in reports}
    if len(sites) < len(reports):
        raise SpecError("`--chip` names the same chip twice; give each chip once")
    gpu = next((s for s in sites.values() if not s["chip_built"]), None)
    for s in sites.values():
        if s["chip_built"] and gpu is not None:
            s["breakeven_volume"] = breakeven_volume(s, gpu)
    return {"power_w": power_w, "sites": sites}


# Tornado knobs: name -> (low, high), multipliers of the base price or values (`_apply`). Each
# range brackets the published spread (ids: rows of data/datacenter.csv); where a side has no
# published figure it says "assumption".
KNOBS = {
    # x N3's $20,000 [semi-wafer-n3]: $14,000 ~ what NVIDIA is estimated to pay for 4N
    # [semi-wafer-4n, $13,400], below the N5 estimates ($13,495-16,988) [semi-wafer-n5,
    # semi-wafer-asp-n5-2020]; $26,000 above the N2 forecast [semi-wafer-asp-n2, $24,570]
    "wafer_price": (0.7, 1.3),
    "hbm_price": HBM_PRICE_RANGE,  # x $15/GB HBM3E (silicon.interfaces, sourced there)
    # x street price: Blackwell "$30,000-40,000" = 0.86-1.14x its midpoint [dcx-blackwell-street],
    # H100 $25-30k [dcx-h100-street]; widened to +-30% for unpublished volume discounts and
    # shortage premiums: assumption
    "gpu_price": (0.7, 1.3),
    # x the $0.06/kWh default: $0.03 (long hydro/wind PPAs) to $0.12 (high-price grids), around
    # the US industrial average $0.08 [dcx-eia-industrial]; the ends are assumptions
    "electricity_price": (0.5, 2.0),
    # MFU of large dense training runs: 0.37 [perf-stas-b200-l8b-128k], 0.38-0.43 Llama 3
    # [dcx-llama3-mfu], 0.462 PaLM [perf-palm-mfu], 0.464 MPT-7B [perf-mpt7b-8h100]; 0.30
    # leaves room for a new chip's young software (assumption; GPT-3 on V100 reached 0.213
    # [perf-gpt3-mfu]). Korthikanti's 175B reached 0.514 on A100 [perf-korthikanti-175b],
    # just above the high end.
    "utilization": (0.30, 0.50),
    # Google's fleet 1.10 [dc-pue-google-2023]; 1.4 lies between new large builds (<= 1.3) and
    # the industry average 1.56 [dc-pue-uptime-2024]: a hot-climate or older hall (assumption)
    "pue": (1.1, 1.4),
    # silicon cost -> delivered module. 1.2: board, burn-in and system yield with no partner
    # margin; 2.5: sold at a 60% gross margin, 1 / (1 - 0.6) (both assumptions); below the
    # ~3.4x NVIDIA's DGX H100 price is of its build cost ($270k vs ~$80k) [semi-dgxh100-cost]
    "built_chip_markup": (1.2, 2.5),
}


def sensitivity(
    chip: str,
    power_w: float,
    a: Assumptions | None = None,
    *,
    metric: str = "usd_per_useful_pflop_hour",
    **kw,
) -> list[dict]:
    """Tornado data: the metric at each knob's low and high, others at base. Sorted by swing.

    Wafer and HBM prices move only built chips' cost; the GPU price only bought ones."""
    a = (a or Assumptions()).check()
    base = site_report(chip, power_w, a, **kw)[metric]
    rows = []
    for knob, (lo, hi) in KNOBS.items():
        vals = []
        for v in (lo, hi):
            aa, factors = _apply(knob, v, a)
            vals.append(site_report(chip, power_w, aa, factors=factors, **kw)[metric])
        rows.append(
            {
                "knob": knob,
                "low": lo,
                "high": hi,
                "at_low": vals[0],
                "at_high": vals[1],
                "base": base,
            }
        )
    return sorted(rows, key=lambda r: -abs(r["at_high"] - r["at_low"]))


def _apply(knob: str, v: float, a: Assumptions) -> tuple[Assumptions, dict]:
    if knob == "electricity_price":
        return a.with_(electricity_usd_per_kwh=a.electricity_usd_per_kwh * v), {}
    if knob in ("utilization", "pue", "built_chip_markup"):
        return a.with_(**{knob: v}), {}
    return a, {{"wafer_price": "wafer_x", "hbm_price": "hbm_x", "gpu_price": "gpu_x"}[knob]: v}
