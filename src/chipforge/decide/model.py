"""The fleet and cash-flow model, vectorised over samples: every array is (samples, quarters).

Both options serve the same demand (useful FLOP/s of the training runs over their windows plus
serving growing each quarter) and fill the same sites as their power comes online (IT capacity =
grid x redundancy / design-peak PUE, as `datacenter.site`), in whole racks, buying only what the
demand calls for:
- buy: GPUs after the order lead time, at most the vendor's allocation a quarter, at a price
  that drifts each year (a next generation takes the allocation from its quarter); with
  `buy.mode = "rent"` nothing is bought and there is no datacenter of its own;
- build: GPUs for the power that comes online before the program's PLANNED volume date (the
  bridge, ordered ahead), then the house chip as the program delivers it: design -> tape-out
  -> first silicon -> (a respin with its probability and delay) -> qualification -> volume,
  ramping over `ramp_quarters`, limited each quarter by wafer starts x good dies (yield
  learning from first silicon), CoWoS packages and HBM stacks; the power the house chips leave
  takes GPUs after them (`build.fallback = "buy"`) or stays for rent (`"rent"`).
Demand a fleet cannot serve is rented per GPU-hour. Cash: chips, racks and network at delivery
((price x (1 + spares) + non-chip) x (1 + storage share), as `datacenter.tco.capex`), facility
at energisation ($/W of provisioned IT), electricity and maintenance each quarter (as
`datacenter.tco.opex`), rent, and the program's NRE (team over design to volume, IP at design
start, masks at tape-out, a respin's masks, partner fees half at start and half at tape-out);
a tax shield when a tax rate is given. Residual book value (straight line) is credited. Costs
before the scenario start are sunk and not counted.
"""

from __future__ import annotations

import numpy as np

from chipforge.datacenter.site import Assumptions
from chipforge.decide.inputs import Scenario
from chipforge.decide.rates import ChipType, workloads
from chipforge.workload.resolve import resolve_model

HOURS_PER_QUARTER = 8760.0 / 4
SECONDS_PER_QUARTER = HOURS_PER_QUARTER * 3600
FACILITY_LIFE_Y = Assumptions().facility_life_y


def inputs(sc: Scenario, u: np.ndarray) -> dict[str, np.ndarray]:
    """Unit-cube samples (n, d) -> each input's values (n,), in `sc.names()` order."""
    names = sc.names()
    if u.ndim != 2 or u.shape[1] != len(names):
        raise ValueError(f"samples must be (n, {len(names)}), not {u.shape}")
    return {k: sc.param(k).at(u[:, i]) for i, k in enumerate(names)}


def nominal(sc: Scenario) -> dict[str, np.ndarray]:
    return {k: np.array([sc.param(k).value]) for k in sc.names()}


def demand(sc: Scenario, x: dict) -> tuple[np.ndarray, dict[str, float], dict]:
    """Demanded useful FLOP/s per quarter (n, Q), the workload mix (share of demanded FLOPs
    over the horizon at nominal growth, for people), and each workload's own demand: key ->
    (FLOP/s per quarter (n, Q), FLOPs per token)."""
    n, Q = len(next(iter(x.values()))), sc.quarters
    m0 = 3.0 * np.arange(Q)
    out = np.zeros((n, Q))
    parts = {}
    for t in sc.train:
        f = 6.0 * resolve_model(t.model).params() * t.tokens
        span = t.end_month - t.start_month
        months = np.clip(np.minimum(m0 + 3, t.end_month) - np.maximum(m0, t.start_month), 0, 3)
        rate = np.broadcast_to(f / (span * SECONDS_PER_QUARTER / 3) * months / 3, (n, Q))
        out += rate
        parts[t.key()] = (rate, 6.0 * resolve_model(t.model).params())
    g = x["workload.serve_growth_per_quarter"][:, None]
    for s in sc.serve:
        fpt = 2.0 * resolve_model(s.model).params()
        q0 = s.start_month / 3
        on = np.clip((m0 + 3 - s.start_month) / 3, 0, 1)
        tokens_per_s = s.tokens_per_day / 86400 * (1 + g) ** np.maximum(np.arange(Q) - q0, 0)
        rate = tokens_per_s * fpt * on
        out += rate
        parts[s.key()] = (rate, fpt)
    # the mix at the nominal growth (fixed, so it does not move with the sample set)
    g0 = sc.param("workload.serve_growth_per_quarter").value
    scale = {k: r[0].sum() if k.startswith("train") else 0.0 for k, (r, _) in parts.items()}
    for s in sc.serve:
        k = s.key()
        on = np.clip((m0 + 3 - s.start_month) / 3, 0, 1)
        q0 = s.start_month / 3
        tps = s.tokens_per_day / 86400 * (1 + g0) ** np.maximum(np.arange(Q) - q0, 0)
        scale[k] += float((tps * on).sum()) * parts[k][1]
    total = sum(scale.values())
    mix = {k: v / total for k, v in scale.items()}
    return out, mix, parts


def useful_per_chip(ct: ChipType, mix: dict[str, float]) -> float:
    """Useful FLOP/s per chip on the mix: time split so each workload gets its FLOP share."""
    return 1.0 / sum(share / ct.useful[k] for k, share in mix.items() if share > 0)


def useful_per_quarter(ct: ChipType, parts: dict, mix: dict[str, float]) -> np.ndarray:
    """Useful FLOP/s per chip in each quarter (n, Q), on that quarter's own workload mix: a
    quarter's demand needs sum over workloads of (its FLOP/s / the chip's rate on it) chips, so
    a chip delivers demand / that. A quarter without demand takes the horizon's mix. (A mix
    fixed over the horizon sized the fleet of a quarter that only trains as if it also served,
    which this chip may do at a quarter of the rate.)"""
    total = sum(r for r, _ in parts.values())
    chips = sum(r / ct.useful[k] for k, (r, _) in parts.items())
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(chips > 0, total / chips, useful_per_chip(ct, mix))


def _sites(sc: Scenario, x: dict) -> tuple[np.ndarray, np.ndarray]:
    """Provisioned IT capacity online per quarter (n, Q) and facility capex per quarter."""
    n, Q = len(x["site.pue"]), sc.quarters
    m0 = 3.0 * np.arange(Q)
    cap = np.zeros((n, Q))
    capex = np.zeros((n, Q))
    peak = np.maximum(x["site.pue_peak"], x["site.pue"])
    for s in sc.sites:
        online = s.online_month + x["site.build_delay_months"]
        # provisioned IT as given, or utility capacity -> IT as datacenter.site.it_from_grid
        grid_it = s.grid_w * x["site.redundancy"] / peak
        it = np.full(n, s.it_w) if s.it_w is not None else grid_it
        on = m0[None, :] >= online[:, None] - 1e-9
        cap += it[:, None] * on
        first = np.argmax(on, axis=1)
        has = on.any(axis=1) & (online >= 0)
        rows = np.nonzero(has)[0]
        capex[rows, first[rows]] += (it * x["site.facility_usd_per_w"])[rows]
    return cap, capex


def schedule(sc: Scenario, x: dict) -> dict[str, np.ndarray]:
    """The build program's dates in months after the start (n,), and whether it respins."""
    b = {k.split(".", 1)[1]: v for k, v in x.items() if k.startswith("build.")}
    tape = sc.design_start_month + b["design_months"]
    silicon = tape + b["fab_months"]
    respin = b["respin_draw"] < b["respin_probability"]
    volume = silicon + b["qualification_months"] + respin * b["respin_delay_months"]
    return {"tape_out": tape, "first_silicon": silicon, "volume": volume, "respin": respin}


def planned_volume_month(sc: Scenario) -> float:
    """The volume date the plan assumes (nominal, no respin): the bridge is bought up to it."""
    x = nominal(sc)
    x["build.respin_draw"] = np.ones(1)  # the plan assumes first silicon works
    return float(schedule(sc, x)["volume"][0])


def _yield(ct: ChipType, x: dict, sched: dict, mid: np.ndarray) -> np.ndarray:
    """Die yield at each quarter's middle, learning from first silicon to the mature yield."""
    age = np.maximum(mid[None, :] - sched["first_silicon"][:, None], 0.0)
    y0 = x["build.yield_initial_share"][:, None]
    tau = 3.0 * x["build.yield_learning_quarters"][:, None]
    return ct.mature_yield * (1 - (1 - y0) * np.exp(-age / tau))


def own_supply(ct: ChipType, sc: Scenario, x: dict, sched: dict) -> dict[str, np.ndarray]:
    """House chips the program can deliver each quarter (n, Q), each limit, and die yield."""
    Q = sc.quarters
    m0 = 3.0 * np.arange(Q)
    mid = m0 + 1.5
    vs = sched["volume"][:, None]
    active = np.clip(m0[None, :] + 3 - vs, 0, 3)  # months of the quarter in volume
    ramp_m = 3.0 * x["build.ramp_quarters"][:, None]
    ramp = np.clip(0.25 + 0.75 * (mid[None, :] - vs) / ramp_m, 0.25, 1.0) * (active > 0)
    y = _yield(ct, x, sched, mid)
    wafers = x["build.wafer_starts_per_month"][:, None] * active * ramp
    by_wafer = wafers * ct.dies_per_wafer * y / ct.dies_per_chip * ct.package_yield
    cowos = x["build.cowos_wafers_per_month"][:, None] * active
    by_cowos = cowos * x["build.packages_per_cowos_wafer"][:, None] * ct.package_yield
    by_hbm = x["build.hbm_stacks_per_quarter"][:, None] * active / 3 / max(ct.hbm_stacks, 1)
    supply = np.minimum(np.minimum(by_wafer, by_cowos), by_hbm)
    return {"supply": supply, "wafers": by_wafer, "cowos": by_cowos, "hbm": by_hbm, "yield": y}


def own_unit_cost(ct: ChipType, x: dict, y: np.ndarray) -> np.ndarray:
    """Delivered module cost of a house chip at each quarter's yield (n, Q)."""
    p = ct.parts
    dies = p.get("good_dies", 0.0) * x["build.wafer_price_x"][:, None] * ct.mature_yield
    dies = dies / np.maximum(y, 1e-3)
    rest = sum(v for k, v in p.items() if k not in ("good_dies", "hbm"))
    silicon = dies + p.get("hbm", 0.0) * x["build.hbm_price_x"][:, None] + rest
    return silicon * x["build.built_chip_markup"][:, None]


def nre(sc: Scenario, x: dict, sched: dict) -> np.ndarray:
    """The program's one-time spend per quarter (n, Q); before the start: sunk, not counted."""
    n, Q = len(sched["volume"]), sc.quarters
    m0 = 3.0 * np.arange(Q)
    out = np.zeros((n, Q))
    start = sc.design_start_month
    # team from design start to volume: months of each quarter inside [start, volume]
    months = np.clip(
        np.minimum(m0[None, :] + 3, sched["volume"][:, None]) - np.maximum(m0[None, :], start),
        0,
        3,
    )
    out += x["build.team_usd_per_year"][:, None] / 12 * months

    def at(month: np.ndarray, usd: np.ndarray) -> None:
        q = np.floor(month / 3).astype(int)
        ok = (q >= 0) & (q < Q)
        np.add.at(out, (np.nonzero(ok)[0], q[ok]), usd[ok])

    full = np.full(n, float(start))
    at(full, x["build.nre_ip_usd"] + x["build.partner_fee_usd"] / 2)
    at(sched["tape_out"], x["build.nre_masks_usd"] + x["build.partner_fee_usd"] / 2)
    redo = sched["respin"] * x["build.respin_mask_share"] * x["build.nre_masks_usd"]
    at(sched["first_silicon"], redo)
    return out


def _fill(
    sc: Scenario,
    x: dict,
    cap: np.ndarray,
    types: list[tuple[ChipType, np.ndarray, np.ndarray]],
    need: np.ndarray,
    eff: list[np.ndarray],
) -> list[np.ndarray]:
    """Chips delivered per quarter for each (type, limit per quarter, unit capex per quarter),
    in priority order, into the power left and no more than the demand `need` (useful FLOP/s,
    each chip giving `eff` (n, Q) that quarter) calls for; chips retire after their life."""
    n, Q = cap.shape
    life = np.maximum(np.rint(4 * x["finance.chip_life_y"]).astype(int), 1)
    head = x["site.it_headroom"]
    buys = [np.zeros((n, Q)) for _ in types]
    installed = [np.zeros(n) for _ in types]
    for q in range(Q):
        for k in range(len(types)):
            if q > 0:
                old = q - life
                ok = old >= 0
                installed[k][ok] -= buys[k][np.nonzero(ok)[0], old[ok]]
        # power is reserved by whole racks; a partly filled rack takes new chips first
        rack_w = [ct.w_it * ct.rack.headroom(head) * ct.rack.chips for ct, _, _ in types]
        racks = [
            np.ceil(inst / ct.rack.chips - 1e-9)
            for inst, (ct, _, _) in zip(installed, types, strict=True)
        ]
        room = cap[:, q] - sum(r * w for r, w in zip(racks, rack_w, strict=True))
        short = need[:, q] - sum(i * e[:, q] for i, e in zip(installed, eff, strict=True))
        for k, (ct, limit, _) in enumerate(types):
            new_racks = np.floor(np.maximum(room, 0.0) / rack_w[k])
            slots = (new_racks + racks[k]) * ct.rack.chips - installed[k]
            wanted = np.ceil(np.maximum(short, 0.0) / eff[k][:, q])
            got = np.maximum(np.minimum(np.minimum(slots, np.floor(limit[:, q])), wanted), 0.0)
            short = short - got * eff[k][:, q]
            buys[k][:, q] = got
            installed[k] += got
            grown = np.ceil(installed[k] / ct.rack.chips - 1e-9)
            room = room - (grown - racks[k]) * rack_w[k]
            racks[k] = grown
    return buys


def _stock(buys: np.ndarray, life_q: np.ndarray) -> np.ndarray:
    """Installed count per quarter from deliveries and a life in quarters (n,)."""
    n, Q = buys.shape
    total = np.cumsum(buys, axis=1)
    gone = np.arange(Q)[None, :] - life_q[:, None]  # deliveries up to here have retired
    retired = np.take_along_axis(total, np.clip(gone, 0, Q - 1), axis=1) * (gone >= 0)
    return total - retired


def option(
    sc: Scenario,
    x: dict,
    types: list[tuple[ChipType, np.ndarray, np.ndarray]],
    cap: np.ndarray,
    fac_capex: np.ndarray,
    flops_demand: np.ndarray,
    mix: dict[str, float],
    mfu_x: list[np.ndarray],
    extra_cash: np.ndarray | None = None,
    parts: dict | None = None,
) -> dict[str, np.ndarray]:
    """Fill, cash flows and delivered compute of one option. Demand the fleet cannot meet is
    rented: the shortfall in GPU-hours of the first bought chip at `buy.cloud_usd_per_gpu_hour`,
    so both options deliver the same demand and a late or short supply costs what renting
    the gap costs."""
    a = Assumptions()
    n, Q = cap.shape
    # each chip's useful FLOP/s in each quarter, on that quarter's mix (`parts`: demand's own
    # per workload), else on the horizon's
    eff = [
        (useful_per_quarter(ct, parts, mix) if parts else np.full((n, Q), useful_per_chip(ct, mix)))
        * mx[:, None]
        for (ct, _, _), mx in zip(types, mfu_x, strict=True)
    ]
    buys = _fill(sc, x, cap, types, flops_demand, eff)
    life_q = np.maximum(np.rint(4 * x["finance.chip_life_y"]).astype(int), 1)
    price_x = x["site.electricity_usd_per_kwh"][:, None]
    draw = x["site.pue"][:, None] * a.power_draw_fraction * HOURS_PER_QUARTER / 1e3
    capex_it = np.zeros((n, Q))
    elec = np.zeros((n, Q))
    flops_cap = np.zeros((n, Q))
    stock_value = np.zeros((n, Q))  # IT capex of the installed chips (for maintenance)
    book_end = np.zeros(n)  # IT book value at the horizon
    depreciation = np.zeros((n, Q))
    installed_by = []
    ages = (Q - np.arange(Q))[None, :]  # quarters from each delivery to the horizon
    for (ct, _, unit), b, e in zip(types, buys, eff, strict=True):
        per_chip = (unit * (1 + a.spares_share) + ct.other_capex_usd) * (1 + a.storage_capex_share)
        flow = b * per_chip
        capex_it += flow
        stock = _stock(b, life_q)
        installed_by.append(stock)
        elec += stock * ct.w_it * draw * price_x
        flops_cap += stock * e
        stock_value += _stock(flow, life_q)
        book_end += (flow * np.clip(1 - ages / life_q[:, None], 0, 1)).sum(axis=1)
        depreciation += _stock(flow, life_q) / life_q[:, None]  # straight line over life
    maint = (
        a.maintenance_it_share * stock_value
        + a.maintenance_facility_share * np.cumsum(fac_capex, axis=1)
    ) / 4
    nre_cash = extra_cash if extra_cash is not None else np.zeros((n, Q))
    fac_age = (Q - np.arange(Q))[None, :] / 4
    book_end += (fac_capex * np.clip(1 - fac_age / FACILITY_LIFE_Y, 0, 1)).sum(axis=1)
    fac_dep = np.cumsum(fac_capex, axis=1) / (4 * FACILITY_LIFE_Y)
    tax = x["finance.tax_rate"][:, None]
    fleet = np.minimum(flops_cap, flops_demand)
    gap = flops_demand - fleet
    gpu_hours = gap * SECONDS_PER_QUARTER / eff[0] / 3600
    cloud = gpu_hours * x["buy.cloud_usd_per_gpu_hour"][:, None]
    shield = tax * (elec + maint + nre_cash + cloud + depreciation + fac_dep)
    cash = capex_it + fac_capex + elec + maint + nre_cash + cloud - shield
    delivered = flops_demand
    return {
        "buys": buys,
        "installed": installed_by,
        "cash": cash,
        "capex_it": capex_it,
        "electricity": elec,
        "maintenance": maint,
        "nre": nre_cash,
        "facility": fac_capex,
        "capacity_flops": flops_cap,
        "fleet_flops": fleet,
        "cloud_flops": gap,
        "cloud": cloud,
        "delivered_flops": delivered,
        "book_end": book_end,
    }


def levelized(
    sc: Scenario, x: dict, opt: dict, tokens: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """PV of cost net of the residual book value, PV of delivered useful PFLOP-hours, and
    their ratio (USD per useful PFLOP-hour); the same per useful token when `tokens` (tokens
    a second per quarter, (n, Q)) is given; cumulative versions per quarter (residual
    straight-line at each quarter's end). Levelized cost as NREL's LCOE: discounted cost over
    discounted output (https://www.nrel.gov/analysis/tech-lcoe-documentation.html), cash and
    output at each quarter's middle (the mid-period convention)."""
    Q = sc.quarters
    r = x["finance.cost_of_capital"][:, None]
    df = (1 + r) ** (-(np.arange(Q)[None, :] + 0.5) / 4)
    pv_cash = (opt["cash"] * df).sum(axis=1)
    df_end = (1 + x["finance.cost_of_capital"]) ** (-Q / 4)
    pv_cost = pv_cash - opt["book_end"] * df_end
    pflop_h = opt["delivered_flops"] * SECONDS_PER_QUARTER / 1e15 / 3600
    pv_out = (pflop_h * df).sum(axis=1)
    no_tokens = np.zeros_like(pv_out)
    pv_tokens = no_tokens if tokens is None else (tokens * SECONDS_PER_QUARTER * df).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lc = np.where(pv_out > 0, pv_cost / pv_out, np.inf)
        per_token = np.where(pv_tokens > 0, pv_cost / pv_tokens, np.inf)
    # the same at the end of every quarter: cash to date less the book value then (straight
    # line: IT over the chip life, facility over its life), so the last equals `pv_cost`
    life_q = np.maximum(np.rint(4 * x["finance.chip_life_y"]), 1)[:, None]
    cum_pv = np.cumsum(opt["cash"] * df, axis=1)
    net = np.empty_like(cum_pv)
    for q in range(Q):
        age = q + 1 - np.arange(q + 1)[None, :]
        book = (opt["capex_it"][:, : q + 1] * np.clip(1 - age / life_q, 0, 1)).sum(axis=1)
        book += (opt["facility"][:, : q + 1] * np.clip(1 - age / (4 * FACILITY_LIFE_Y), 0, 1)).sum(
            axis=1
        )
        net[:, q] = cum_pv[:, q] - book * (1 + r[:, 0]) ** (-(q + 1) / 4)
    return {
        "pv_cash": pv_cash,
        "pv_cost": pv_cost,
        "pv_pflop_hours": pv_out,
        "usd_per_pflop_hour": lc,
        "pv_tokens": pv_tokens,
        "usd_per_token": per_token,
        "cum_cash": np.cumsum(opt["cash"], axis=1),
        "cum_pv_cash": cum_pv,
        "cum_pv_cost": net,
        "cum_pv_out": np.cumsum(pflop_h * df, axis=1),
        "pflop_hours": pflop_h,
    }


def simulate(sc: Scenario, gpu, own: ChipType, u: np.ndarray) -> dict:
    """Both options for every sample row of `u` (unit cube, `sc.names()` order)."""
    x = inputs(sc, u)
    return run(sc, gpu, own, x)


def run(sc: Scenario, gpu, own: ChipType, x: dict) -> dict:
    """Both options for input values `x` (arrays of one length, `inputs()` or `nominal()`).
    `gpu`: the bought chip, or [it, the next generation bought from `sc.next_from_month`]."""
    gpus = list(gpu) if isinstance(gpu, (list, tuple)) else [gpu]
    Q = sc.quarters
    m0 = 3.0 * np.arange(Q)
    cap, fac = _sites(sc, x)
    flops_demand, mix, parts = demand(sc, x)
    # useful tokens a second each quarter: each workload's FLOP/s over its FLOPs per token
    tokens = sum(r / f for r, f in parts.values())
    # buy: the vendor allocation after the lead time, at the drifting price; a next generation
    # takes over the allocation from its first quarter
    lead = x["buy.lead_months"][:, None]
    alloc = x["buy.allocation_per_quarter"][:, None] * np.clip((m0 + 3 - lead) / 3, 0, 1)
    if sc.rent:  # buy.mode = "rent": no GPU is bought; the demand is rented (cloud price)
        alloc = np.zeros_like(alloc)
    drift = (1 + x["buy.price_change_per_year"][:, None]) ** (m0 / 12)
    prices = [x["buy.price_usd"][:, None] * drift]
    windows = [np.ones(Q, dtype=bool)]
    if len(gpus) > 1:
        switch = m0 >= sc.next_from_month
        windows = [~switch, switch]
        prices.append(x["buy.next_price_usd"][:, None] * (1 + x["buy.price_change_per_year"][
            :, None]) ** (np.maximum(m0 - sc.next_from_month, 0) / 12))  # fmt: skip
    mfu = [x["buy.mfu_x"]] * len(gpus)
    buy_types = [(g, alloc * w, p) for g, w, p in zip(gpus, windows, prices, strict=True)]
    if sc.rent:  # renting needs no datacenter of its own
        buy = option(sc, x, buy_types, 0 * cap, 0 * fac, flops_demand, mix, mfu, parts=parts)
    else:
        buy = option(sc, x, buy_types, cap, fac, flops_demand, mix, mfu, parts=parts)
    # build: the bridge up to the planned volume date, then the program's chips
    sched = schedule(sc, x)
    planned = planned_volume_month(sc)
    bridge = [(g, lim * (m0[None, :] < planned), p) for g, lim, p in buy_types]
    sup = own_supply(own, sc, x, sched)
    unit_own = own_unit_cost(own, x, sup["yield"])
    # after the planned date, power the house chips cannot fill takes GPUs (within the
    # allocation, after the house chips each quarter) unless the program rents the gap instead
    fallback = [] if sc.fallback_rent else [
        (g, lim * (m0[None, :] >= planned), p) for g, lim, p in buy_types
    ]  # fmt: skip
    build = option(
        sc,
        x,
        [*bridge, (own, sup["supply"], unit_own), *fallback],
        cap,
        fac,
        flops_demand,
        mix,
        [*mfu, x["build.mfu_x"], *(mfu if fallback else [])],
        extra_cash=nre(sc, x, sched),
        parts=parts,
    )
    build["own_index"] = len(bridge)
    build["own_buys"] = build["buys"][len(bridge)]
    price = prices[0]
    return {
        "x": x,
        "buy": buy,
        "build": build,
        "buy_lc": levelized(sc, x, buy, tokens),
        "build_lc": levelized(sc, x, build, tokens),
        "schedule": sched,
        "supply": sup,
        "unit_own": unit_own,
        "price_gpu": price,
        "capacity_w": cap,
        "demand_flops": flops_demand,
        "tokens_per_s": tokens,
        "mix": mix,
        "planned_volume_month": planned,
        "workloads": workloads(sc),
    }
