"""`chipforge decide scenario.toml`: build or buy, answered first (verdict and probability),
then the saving, break-even, delivered compute, cash flows and the drivers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from chipforge.cli import JsonOpt, OutOpt, app, emit
from chipforge.cli.reportopts import HtmlOpt
from chipforge.display import count, money, prefix_of, si
from chipforge.errors import ChipforgeError
from chipforge.units import parse_quantity


def _usd(v: float) -> str:
    return money(v)  # display's one money format ("$24.1 B"), as every other table


def _pct(v: float) -> str:
    return f"{100 * v:+.1f} %"


def summary_tables(d: dict) -> list:
    """The terminal summary, answer first."""
    s, u = d["saving_fraction"], d["saving_usd"]
    be = d["breakeven"]
    sched = d["schedule_p50"]
    head = Table(title=f"decide: {d['scenario']}", show_header=False)
    head.add_column("item")
    head.add_column("value")
    head.add_row("VERDICT", d["verdict"])
    head.add_row(
        "saving (build vs buy)",
        f"P10 {_pct(s['p10'])} / P50 {_pct(s['p50'])} / P90 {_pct(s['p90'])} per useful token; "
        f"{_usd(u['p10'])} / {_usd(u['p50'])} / {_usd(u['p90'])} (PV) on the demand served",
    )
    if "p50_quarter" in be:
        head.add_row(
            "break-even",
            f"{be['p50_quarter']} (P10 {be['p10_quarter']}, P90 {be['p90_quarter']}) after "
            f"{be['p50_volume_chips']:,.0f} house chips; reached by {d['end']} in "
            f"{100 * be['probability_within_horizon']:.0f} % of scenarios",
        )
    else:
        head.add_row("break-even", f"not reached by {d['end']} in any scenario")
    head.add_row(
        "house chip program",
        f"tape-out {sched['tape_out']}, volume {sched['volume']} (P90 {sched['volume_p90']}; "
        f"planned {sched['planned_volume']}), a respin in {100 * sched['respin_share']:.0f} % "
        "of scenarios",
    )
    head.add_row("scenarios", f"{d['samples']:,} (scrambled Sobol, seed {d['seed']})")
    opts = Table(title="per option (P10 / P50 / P90)")
    opts.add_column("metric")
    for o in ("buy", "build"):
        opts.add_column(o, justify="right")

    def trio(x: dict, f) -> str:
        return " / ".join(f(x[k]) for k in ("p10", "p50", "p90"))

    opts.add_row(
        "USD per useful PFLOP-hour",
        *(trio(d["usd_per_useful_pflop_hour"][o], money) for o in ("buy", "build")),
    )
    opts.add_row(
        "USD per million useful tokens",
        *(trio(d["usd_per_million_tokens"][o], money) for o in ("buy", "build")),
    )
    opts.add_row("NPV of cost", *(trio(d["npv_cost_usd"][o], _usd) for o in ("buy", "build")))
    opts.add_row(
        "useful tokens delivered (P50)",
        *(count(d["useful_tokens_delivered_p50"][o]) + " tokens" for o in ("buy", "build")),
    )
    opts.add_row(
        "share of it rented (P50)",
        *(f"{100 * d['rented_share'][o]:.1f} %" for o in ("buy", "build")),
    )
    # one SI prefix for the table, from its largest figure (a fixed EFLOP/s printed a small
    # scenario's whole fleet as 0.0)
    top = max(
        max([*d["delivered_flops_per_s"][o]["p90"], *d["rented_flops_per_s"][o]["p50"], 0.0])
        for o in ("buy", "build")
    )
    scale, prefix = prefix_of(top)
    compute = Table(
        title=f"useful compute per quarter, {prefix}FLOP/s: own fleet P50 [P10-P90] "
        "(supply-limited) + rented P50 (the rest of the demand)"
    )
    compute.add_column("quarter")
    for o in ("buy", "build"):
        compute.add_column(f"{o}: fleet", justify="right")
        compute.add_column("rented", justify="right")
    for i, q in enumerate(d["quarters"]):
        cells = []
        for o in ("buy", "build"):
            p = {k: [v / scale for v in vs] for k, vs in d["delivered_flops_per_s"][o].items()}
            cells.append(f"{p['p50'][i]:,.1f} [{p['p10'][i]:,.1f}-{p['p90'][i]:,.1f}]")
            cells.append(f"{d['rented_flops_per_s'][o]['p50'][i] / scale:,.1f}")
        compute.add_row(q, *cells)
    cash = Table(title="yearly cash out (mean)")
    cash.add_column("year")
    for o in ("buy", "build"):
        cash.add_column(o, justify="right")
    for y in d["yearly_cash_usd"]["buy"]:
        cash.add_row(y, *(_usd(d["yearly_cash_usd"][o][y]) for o in ("buy", "build")))
    drivers = Table(
        title="what drives the saving (USD, PV): top 5 inputs by total-order Sobol index; "
        "lever: set by the lab (a contract, staffing, a design choice)"
    )
    for c in ("input", "S1", "ST", "range", "source"):
        drivers.add_column(c)
    src = {a["input"]: a for a in d["assumptions"]}
    for r in d["drivers"][:5]:
        a = src[r["input"]]
        lever = " [lever]" if r.get("lever") else ""
        name = f"{r.get('label', r['input'])} ({r['input']}){lever}"
        span = f"{a['low']:g} .. {a['high']:g} {a['unit']}".strip()
        drivers.add_row(name, f"{r['s1']:.2f}", f"{r['st']:.2f}", span, a["source"][:70])
    return [head, assumed_table(d), opts, compute, cash, drivers]


def assumed_table(d: dict) -> Table:
    """What the answer rests on, for a planner to check: each workload's dates and each chip's
    useful rate on it with the plan (or the fallback, and why) that gave it; the prices; the
    sites and the program's dates."""
    t = Table(title="what it assumed (nominal values; ranges in --json under assumptions)",
              show_header=False)  # fmt: skip
    t.add_column("item")
    t.add_column("value")
    chips = [*d["chips"]["buy"], d["chips"]["build"]]
    for w in d["workloads"]:
        if w["kind"] == "train":
            what = f"{count(w['tokens'])} tokens, {w['start']} to {w['end']}"
            if w.get("chips"):
                what += f" on {w['chips']:,} chips"
        else:
            what = (f"{si(w['tokens_per_day'], '')} output tokens/day from {w['start']}, "
                    f"isl {w['isl']:,} osl {w['osl']:,} {w['dtype']}")  # fmt: skip
        rates = []
        for c in chips:
            m = c["methods"][w["key"]]
            how = "plan" if m.startswith("cluster.") else "FALLBACK: " + m.removeprefix("fallback ")
            rates.append(f"{c['name']} {si(c['useful_flops_per_s_per_chip'][w['key']], 'FLOP/s')}"
                         f" per chip ({how})")  # fmt: skip
        t.add_row(f"{w['kind']} {w['model']}", f"{what}; " + "; ".join(rates))
    a = {x["input"]: x for x in d["assumptions"]}

    def v(k: str) -> float:
        return a[k]["value"]

    buy = d["chips"]["buy"]
    then = f" then {buy[1]['name']} at {money(v('buy.next_price_usd'))}" if len(buy) > 1 else ""
    t.add_row(
        "bought chip",
        f"{buy[0]['name']} at {money(v('buy.price_usd'))}{then}"
        f" ({100 * v('buy.price_change_per_year'):+.0f} %/year), lead "
        f"{v('buy.lead_months'):g} months, {count(v('buy.allocation_per_quarter'))} a quarter; "
        f"renting {money(v('buy.cloud_usd_per_gpu_hour'))} per GPU-hour",
    )
    b = d["chips"]["build"]
    t.add_row(
        "house chip",
        f"{b['name']}: silicon {money(b['price_usd'])} at mature yield x "
        f"{v('build.built_chip_markup'):g} markup; design start {d['design_start']}, planned "
        f"volume {d['schedule_p50']['planned_volume']} (P50: tape-out "
        f"{d['schedule_p50']['tape_out']}, volume {d['schedule_p50']['volume']})",
    )
    for s in d["sites"]:
        power = (f"{si(s['it_power_w'], 'W')} IT" if s["it_power_w"] is not None
                 else f"{si(s['grid_w'], 'W')} grid")  # fmt: skip
        t.add_row(f"site {s['name']}", f"{power}, online {s['online']}")
    t.add_row(
        "power and money",
        f"{money(v('site.electricity_usd_per_kwh'))}/kWh, PUE {v('site.pue'):g}, facility "
        f"{money(v('site.facility_usd_per_w'))}/W; cost of capital "
        f"{100 * v('finance.cost_of_capital'):g} %, hardware life {v('finance.chip_life_y'):g} y",
    )
    return t


@app.command()
def decide(
    scenario: Annotated[Path, typer.Argument(help="scenario TOML (examples/decide/*.toml)")],
    samples: Annotated[
        int | None, typer.Option("--samples", help="Monte-Carlo scenarios (default: the file's)")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="quasi-random scrambling seed")] = 0,
    grid: Annotated[
        str | None,
        typer.Option("--grid", help="every site's utility capacity, e.g. 1.2GW (IT derived)"),
    ] = None,
    it_power: Annotated[
        str | None,
        typer.Option("--it-power", help="every site's provisioned IT capacity, e.g. 700MW"),
    ] = None,
    html: HtmlOpt = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Build or buy: verdict with probability, saving, break-even, compute, cash flows, drivers."""
    try:
        from chipforge.decide import analyse, load_scenario
    except ImportError as e:
        raise ChipforgeError(
            f"decide needs scipy and SALib ({e}); pip install 'chipforge[decide]'"
        ) from None

    if grid and it_power:
        raise ChipforgeError("pass one of --grid, --it-power, not both")
    sc = load_scenario(scenario).with_power(
        grid_w=parse_quantity(grid, "power", field="--grid") if grid else None,
        it_w=parse_quantity(it_power, "power", field="--it-power") if it_power else None,
    )
    data = analyse(sc, samples=samples, seed=seed)
    if html is not None:
        from chipforge.report.html import write_report

        write_report(html, "decide", data, title=f"Build or buy: {data['verdict']}")
        from rich.console import Console

        Console(stderr=True, soft_wrap=True).print(f"wrote {html}", markup=False)
    emit(data, summary_tables(data), as_json=as_json, out=out)
