"""Monte-Carlo over the stated ranges (scrambled Sobol points, `scipy.stats.qmc`), global
sensitivity (SALib Sobol first and total order), and the answer-first summary.

The answer is about cost per useful unit of compute delivered through the horizon: each option's
levelized cost = PV(cash out - residual book value at the horizon) / PV(useful PFLOP-hours
delivered), discounted at the cost of capital. Saving = 1 - build / buy; in dollars, the saving
on the compute the build option delivered.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.stats import qmc

from chipforge.decide.inputs import DEFAULTS, LABELS, LEVERS, MAX_SAMPLES, Scenario
from chipforge.decide.model import SECONDS_PER_QUARTER, nominal, run
from chipforge.decide.rates import ChipType, chip_type
from chipforge.errors import ChipforgeError

SOBOL_BASE = 512  # SALib base samples: (d + 2) x 512 model runs for first and total order


def unit_samples(d: int, n: int, seed: int) -> np.ndarray:
    """`n` scrambled Sobol points in [0, 1)^d (rounded up to a power of two)."""
    m = max(6, math.ceil(math.log2(max(n, 2))))
    return qmc.Sobol(d, scramble=True, seed=seed).random_base2(m)


def saving(r: dict) -> tuple[np.ndarray, np.ndarray]:
    """Saving fraction 1 - build / buy per sample, and in USD on the compute delivered (both
    options serve the same demand; what a fleet cannot serve is rented)."""
    buy = r["buy_lc"]["usd_per_pflop_hour"]
    build = r["build_lc"]["usd_per_pflop_hour"]
    frac = np.where(np.isfinite(build) & np.isfinite(buy) & (buy > 0), 1 - build / buy, -1.0)
    usd = np.where(np.isfinite(build), (buy - build) * r["build_lc"]["pv_pflop_hours"], 0.0)
    return frac, usd


def sobol_indices(sc: Scenario, gpu, own: ChipType, seed: int = 0,
                  base: int = SOBOL_BASE) -> list[dict]:  # fmt: skip
    """First and total order Sobol indices of the saving in dollars (PV cost of buying less
    PV cost of building: the verdict is its sign) for every input (SALib), sorted by total
    order, each row saying whether the input is a lever (`inputs.LEVERS`). Not of the saving
    fraction: its denominator, the buy option's whole cost, moves with costs both options
    pay alike (the sites' $/W drove a fraction's variance by a quarter while moving neither
    the dollars saved nor the verdict). Inputs live on the unit cube, so a zero-wide range is
    sampled like the others and must come out with an index of ~0."""
    from SALib.analyze import sobol as analyze
    from SALib.sample import sobol as sample

    names = sc.names()
    problem = {"num_vars": len(names), "names": names, "bounds": [[0.0, 1.0]] * len(names)}
    u = sample.sample(problem, base, calc_second_order=False, seed=seed)
    r = run(sc, gpu, own, _x(sc, u))
    usd = r["buy_lc"]["pv_cost"] - r["build_lc"]["pv_cost"]
    # SALib seeds its bootstrap (the confidence intervals) only for a truthy seed: 0 would draw
    # them from numpy's global state, different on every run
    with warnings.catch_warnings():  # a saving the same in every run: SALib warns, gives 0
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        res = analyze.analyze(problem, usd, calc_second_order=False, seed=seed + 1)
    rows = [
        {
            "input": k,
            "label": LABELS.get(k, k),
            "lever": k in LEVERS,
            "s1": float(res["S1"][i]),
            "st": float(res["ST"][i]),
            "s1_conf": float(res["S1_conf"][i]),
            "st_conf": float(res["ST_conf"][i]),
            "low": sc.param(k).low,
            "high": sc.param(k).high,
        }
        for i, k in enumerate(names)
    ]
    return sorted(rows, key=lambda r: -r["st"])


def market_prices(sc: Scenario, gpus: list[ChipType]) -> Scenario:
    """A bought chip's price the scenario does not give is its rack's market price, the
    default range scaled to it (the defaults are Blackwell's)."""
    for key, g in zip(("buy.price_usd", "buy.next_price_usd"), gpus, strict=False):
        p, d = sc.param(key), DEFAULTS["buy"][key.split(".")[1]]
        if p == d and g.price_usd > 0 and g.price_usd != p.value:
            k = g.price_usd / p.value
            sc = sc.with_param(
                key, value=g.price_usd, low=p.low * k, high=p.high * k,
                source=f"{g.rack.name} market price (datacenter racks); range scaled from: "
                + d.source,
            )  # fmt: skip
    return sc


def _x(sc: Scenario, u: np.ndarray) -> dict:
    return {k: sc.param(k).at(u[:, i]) for i, k in enumerate(sc.names())}


def _pct(a: np.ndarray, axis=0) -> dict:
    p = np.percentile(a, [10, 50, 90], axis=axis)
    return {"p10": p[0].tolist(), "p50": p[1].tolist(), "p90": p[2].tolist()}


def breakeven(sc: Scenario, r: dict) -> dict:
    """Per sample, the first quarter from which building stays cheaper per useful PFLOP-hour
    (PV cost to date net of the book value then, over PV output to date); the house chips
    delivered by
    then; the share of samples that break even within the horizon."""
    lcs = []
    for o in ("buy", "build"):
        lc = r[f"{o}_lc"]
        with np.errstate(divide="ignore", invalid="ignore"):
            lcs.append(np.where(lc["cum_pv_out"] > 0, lc["cum_pv_cost"] / lc["cum_pv_out"], np.inf))
    cheaper = lcs[1] < lcs[0]  # strictly, as the verdict counts a scenario for building
    # stays cheaper from q on: reverse cumulative AND
    stays = np.flip(np.logical_and.accumulate(np.flip(cheaper, axis=1), axis=1), axis=1)
    has = stays.any(axis=1)
    q = np.where(has, np.argmax(stays, axis=1), -1)
    own = np.cumsum(r["build"]["own_buys"], axis=1)
    vol = np.where(has, own[np.arange(len(q)), np.maximum(q, 0)], np.nan)
    out = {"probability_within_horizon": float(has.mean())}
    if has.any():
        qm = int(np.percentile(q[has], 50, method="nearest"))
        out.update(
            p50_quarter=sc.quarter_label(qm),
            p10_quarter=sc.quarter_label(int(np.percentile(q[has], 10, method="nearest"))),
            p90_quarter=sc.quarter_label(int(np.percentile(q[has], 90, method="nearest"))),
            p50_volume_chips=float(np.nanmedian(vol)),
        )
    return out


def _workloads(sc: Scenario) -> list[dict]:
    """Each workload as the scenario states it, with its dates, under the key its rates have
    in `chips` (useful FLOP/s per chip and the plan's method)."""
    out = [
        {"key": t.key(), "kind": "train", "model": t.model, "tokens": t.tokens,
         "chips": t.chips,
         "start": sc.quarter_label(math.floor(t.start_month / 3)),
         "end": sc.quarter_label(math.floor(t.end_month / 3) - 1)}
        for t in sc.train
    ]  # fmt: skip
    out += [
        {"key": s.key(), "kind": "serve", "model": s.model,
         "tokens_per_day": s.tokens_per_day, "isl": s.isl, "osl": s.osl, "dtype": s.dtype,
         "start": sc.quarter_label(math.floor(s.start_month / 3))}
        for s in sc.serve
    ]  # fmt: skip
    return out


def yearly(sc: Scenario, cash: np.ndarray) -> dict[str, float]:
    """Mean cash out per calendar year."""
    years: dict[str, float] = {}
    mean = cash.mean(axis=0)
    for q in range(sc.quarters):
        y = sc.quarter_label(q)[:4]
        years[y] = years.get(y, 0.0) + float(mean[q])
    return years


def analyse(sc: Scenario, *, samples: int | None = None, seed: int = 0,
            sobol: bool = True, sobol_base: int = SOBOL_BASE) -> dict:  # fmt: skip
    """The whole answer: verdict, saving, break-even, delivered compute, cash flows, NPV,
    Sobol drivers, the nominal point and the assumptions with their sources."""
    n = sc.samples if samples is None else samples
    if not isinstance(seed, int) or seed < 0:
        raise ChipforgeError(f"`--seed` must be a whole number >= 0, not {seed}")
    if not 64 <= n <= MAX_SAMPLES:
        raise ChipforgeError(f"`--samples` must be 64 to {MAX_SAMPLES:,}, not {n}")
    gpu = chip_type(sc, sc.buy, built=False)
    if sc.buy_next is not None:
        gpu = [gpu, chip_type(sc, sc.buy_next, built=False)]
    own = chip_type(sc, sc.build, built=True)
    sc = market_prices(sc, gpu if isinstance(gpu, list) else [gpu])
    u = unit_samples(len(sc.names()), n, seed)
    r = run(sc, gpu, own, _x(sc, u))
    frac, usd = saving(r)
    p_build = float((frac > 0).mean())
    nom = run(sc, gpu, own, nominal(sc))
    nf, nu = saving(nom)
    quarters = [sc.quarter_label(q) for q in range(sc.quarters)]
    # useful FLOP/s averaged over each quarter: what the option's own fleet delivers (supply-
    # and demand-limited), and what it rents to meet the rest of the demand
    fleet = {o: _pct(r[o]["fleet_flops"]) for o in ("buy", "build")}
    rented = {o: _pct(r[o]["cloud_flops"]) for o in ("buy", "build")}
    cum = {o: _pct(r[o]["cash"].cumsum(axis=1)) for o in ("buy", "build")}
    cum_lc = {}
    for o in ("buy", "build"):
        lc_o = r[f"{o}_lc"]
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(lc_o["cum_pv_out"] > 0, lc_o["cum_pv_cost"] / lc_o["cum_pv_out"], np.nan)
        ok = np.isfinite(v).any(axis=0)
        p = np.full((3, sc.quarters), np.nan)
        if ok.any():
            p[:, ok] = np.nanpercentile(v[:, ok], [10, 50, 90], axis=0)
        # a quarter before any output has no cost per PFLOP-hour: null in the JSON, not NaN
        cum_lc[o] = {
            k: [float(v) if np.isfinite(v) else None for v in row]
            for k, row in zip(("p10", "p50", "p90"), p, strict=True)
        }
    lc = {o: _pct(r[f"{o}_lc"]["usd_per_pflop_hour"]) for o in ("buy", "build")}
    npv = {o: _pct(r[f"{o}_lc"]["pv_cost"]) for o in ("buy", "build")}
    # per useful token: PV cost over PV tokens, each quarter's tokens from its own workloads
    per_mtok = {o: _pct(r[f"{o}_lc"]["usd_per_token"] * 1e6) for o in ("buy", "build")}
    delivered_total = {  # both options deliver the demand (what a fleet cannot, it rents)
        o: float(np.median(r["tokens_per_s"].sum(axis=1) * SECONDS_PER_QUARTER))
        for o in ("buy", "build")
    }
    drivers = sobol_indices(sc, gpu, own, seed=seed, base=sobol_base) if sobol else []
    p_buy = float((frac < 0).mean())  # a tie (the same cost) counts for neither
    verdict_option = "building" if p_build >= p_buy else "buying"
    p = max(p_build, p_buy)
    end = sc.quarter_label(sc.quarters - 1)
    sched = r["schedule"]
    sf, su, be = _pct(frac), _pct(usd), breakeven(sc, r)
    headline = {
        "saving": (
            f"P10 {100 * sf['p10']:+.1f} % / P50 {100 * sf['p50']:+.1f} % / P90 "
            f"{100 * sf['p90']:+.1f} % per useful token; P50 {su['p50'] / 1e9:+.2f} B USD (PV)"
        ),
        "break_even": (
            f"{be['p50_quarter']} (P10 {be['p10_quarter']}, P90 {be['p90_quarter']}) after "
            f"{be['p50_volume_chips']:,.0f} house chips; within the horizon in "
            f"{100 * be['probability_within_horizon']:.0f} % of scenarios"
            if "p50_quarter" in be
            else f"not reached by {end} in any scenario"
        ),
        "drivers": ", ".join(f"{d['label']} (ST {d['st']:.2f})" for d in drivers[:5]),
    }
    return {
        "kind": "decide",
        "scenario": sc.name,
        "start": sc.start,
        "end": end,
        "samples": int(len(frac)),
        "seed": seed,
        "verdict": (
            f"{verdict_option} is cheaper per useful token delivered through {end} with "
            f"probability {p:.2f}"
            if p > 0
            else f"building and buying cost the same per useful token through {end} in "
            "every scenario"
        ),
        "headline_saving": headline["saving"],
        "headline_break_even": headline["break_even"],
        "headline_drivers": headline["drivers"],
        "probability_build_cheaper": p_build,
        "saving_fraction": sf,
        "saving_usd": su,
        "saving_fraction_mean": float(frac.mean()),
        "breakeven": be,
        "usd_per_useful_pflop_hour": lc,
        "usd_per_million_tokens": per_mtok,
        "npv_cost_usd": npv,
        "useful_tokens_delivered_p50": delivered_total,
        "quarters": quarters,
        "delivered_flops_per_s": fleet,
        "rented_flops_per_s": rented,
        "rented_share": {
            o: float(
                np.median(
                    r[o]["cloud_flops"].sum(axis=1)
                    / np.maximum(r[o]["delivered_flops"].sum(axis=1), 1e-30)
                )
            )
            for o in ("buy", "build")
        },  # fmt: skip
        "cumulative_cash_usd": cum,
        "cumulative_usd_per_pflop_hour": cum_lc,
        "yearly_cash_usd": {o: yearly(sc, r[o]["cash"]) for o in ("buy", "build")},
        "schedule_p50": {
            "tape_out": sc.quarter_label(int(np.median(sched["tape_out"]) // 3)),
            "volume": sc.quarter_label(int(np.median(sched["volume"]) // 3)),
            "volume_p90": sc.quarter_label(int(np.percentile(sched["volume"], 90) // 3)),
            "respin_share": float(sched["respin"].mean()),
            "planned_volume": sc.quarter_label(int(r["planned_volume_month"] // 3)),
        },
        "house_chips_delivered": _pct(r["build"]["own_buys"].sum(axis=1)),
        "drivers": drivers,
        "nominal": {
            "saving_fraction": float(nf[0]),
            "saving_usd": float(nu[0]),
            "buy_usd_per_useful_pflop_hour": float(nom["buy_lc"]["usd_per_pflop_hour"][0]),
            "build_usd_per_useful_pflop_hour": float(nom["build_lc"]["usd_per_pflop_hour"][0]),
        },
        "chips": {
            "buy": [g.to_dict() for g in (gpu if isinstance(gpu, list) else [gpu])],
            "build": own.to_dict(),
        },
        "workload_mix": r["mix"],
        "sites": [
            {
                "name": s.name,
                "online": sc.quarter_label(math.floor(s.online_month / 3)),
                "grid_w": s.grid_w if s.it_w is None else None,
                "it_power_w": s.it_w,
            }
            for s in sc.sites
        ],  # fmt: skip
        "workloads": _workloads(sc),
        "design_start": sc.quarter_label(math.floor(sc.design_start_month / 3)),
        "assumptions": [
            {
                "input": k,
                "label": LABELS.get(k, k),
                "lever": k in LEVERS,
                "value": sc.param(k).value,
                "low": sc.param(k).low,
                "high": sc.param(k).high,
                "unit": sc.param(k).unit,
                "source": sc.param(k).source,
            }
            for k in sc.names()
        ],
    }
