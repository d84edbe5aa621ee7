"""One site, a comparison of two, and tornado sensitivity data, as plain dicts for the CLI."""

from __future__ import annotations

from chipforge.datacenter.racks import Rack, load_rack, rack_for_chip
from chipforge.datacenter.site import Assumptions
from chipforge.datacenter.tco import breakeven_volume, chip_facts, evaluate_site
from chipforge.datacenter.workload import serving, training

DEFAULT_VOLUME = 500_000  # built chips over which one-time costs are spread (a ~1 GW fleet)
SERVE_MODEL = {"llama3-405b": "llama3-70b"}  # train the big one, serve its 70B sibling


def resolve(chip: str, rack: str | None = None) -> Rack:
    return load_rack(rack) if rack else rack_for_chip(chip)


def site_report(
    chip: str,
    power_w: float | None,
    a: Assumptions | None = None,
    *,
    rack: str | None = None,
    racks: int | None = None,
    model: str | None = None,
    tokens: float | None = None,
    serve_model: str | None = None,
    serve_dtype: str = "bf16",
    volume: int = DEFAULT_VOLUME,
    factors: dict | None = None,
) -> dict:
    """Size and price a site; with a model, time to train it and serve it."""
    a = (a or Assumptions()).check()
    r = resolve(chip, rack)
    facts = chip_facts(r, **(factors or {}))
    out = evaluate_site(
        r, power_w, a, racks=racks, volume=volume if facts.built else None, chip=facts
    )
    if facts.built:
        out["build_volume"] = volume
    if model:
        t = training(out, facts, model, tokens or 20.0 * _params(model))
        s = serving(out, facts, serve_model or SERVE_MODEL.get(model, model), dtype=serve_dtype)
        out.update(
            time_to_train_s=t["time_to_train_s"],
            usd_per_million_tokens=s["usd_per_million_tokens"],
            training=t,
            serving=s,
        )
    return out


def _params(model: str) -> float:
    from chipforge.workload.config import load_model  # noqa: PLC0415

    return float(load_model(model).params())


def compare(chips: list[str], power_w: float, a: Assumptions | None = None, **kw) -> dict:
    """Sites side by side; the first bought chip is the GPU the built ones are measured against."""
    sites = {c: site_report(c, power_w, a, **kw) for c in chips}
    gpu = next((s for s in sites.values() if not s["chip_built"]), None)
    for s in sites.values():
        if s["chip_built"] and gpu is not None:
            s["breakeven_volume"] = breakeven_volume(s, gpu)
    return {"power_w": power_w, "sites": sites}


KNOBS = {  # name: (low, high) multipliers or values, and how each is applied
    "wafer_price": (0.7, 1.3),
    "hbm_price": (0.7, 1.5),
    "gpu_price": (0.7, 1.3),
    "electricity_price": (0.5, 2.0),
    "utilization": (0.30, 0.50),
    "pue": (1.1, 1.4),
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
