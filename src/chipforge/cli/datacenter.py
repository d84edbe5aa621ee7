"""`chipforge datacenter`: racks, chips, power, capex/opex, TCO, time to train, $/Mtoken."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from chipforge.cli import JsonOpt, OutOpt, app, emit
from chipforge.cli.reportopts import HtmlOpt, PngOpt, write_reports
from chipforge.datacenter import Assumptions, compare, sensitivity, site_report
from chipforge.datacenter.site import parse_redundancy
from chipforge.errors import ChipforgeError
from chipforge.units import parse_count, parse_quantity


def _rows(title: str, rows: dict, fmt: str = ",.4g") -> Table:
    table = Table(title=title)
    table.add_column("item")
    table.add_column("value", justify="right")
    for k, v in rows.items():
        table.add_row(k, format(v, fmt) if isinstance(v, int | float) else str(v))
    return table


def site_tables(d: dict) -> list[Table]:
    summary = {
        "chip / rack": f"{d['chip']} / {d['rack']['name']} ({d['cooling']} cooled)",
        "racks": d["racks"],
        "chips": d["chips"],
        **({"grid capacity (W)": d["grid_power_w"]} if d.get("grid_power_w") else {}),
        "IT capacity (W)": d.get("it_capacity_w") or d["it_power_w"],
        "IT power drawn (W)": d["it_power_w"],
        "facility power (W)": d["facility_power_w"],
        "all-in W per chip": d["all_in_w_per_chip"],
        "chip cost (USD, " + ("built" if d["chip_built"] else "bought") + ")": d[
            "chip_unit_cost_usd"
        ],
        "delivered FLOP/s": d["delivered_flops_per_s"],
        "TCO (USD/year)": d["tco_usd_per_year"],
        "TCO (USD/chip-hour)": d["tco_usd_per_chip_hour"],
        "USD per useful PFLOP-hour": d["usd_per_useful_pflop_hour"],
    }
    for k in ("time_to_train_s", "usd_per_million_tokens", "breakeven_volume"):
        if k in d:
            summary[k] = d[k]
    return [
        _rows(f"datacenter: {d['chip']}", summary),
        _rows("capex (USD)", d["capex_usd"], ",.0f"),
        _rows("opex (USD per year)", d["opex_usd_per_year"], ",.0f"),
        _rows("assumptions (override with options)", d["assumptions"], ".4g"),
    ]


def compare_table(data: dict) -> Table:
    sites = data["sites"]
    first = next(iter(data["sites"].values()), {})
    watts = data["power_w"] or first.get("grid_power_w") or first.get("it_capacity_w") or 0.0
    what = "grid" if first.get("grid_power_w") else ("IT" if not data["power_w"] else "facility")
    table = Table(title=f"compare at {watts / 1e9:g} GW ({what})")
    table.add_column("metric")
    for name in sites:
        table.add_column(name, justify="right")
    keys = [
        "chips",
        "facility_power_w",
        "tco_usd_per_year",
        "tco_usd_per_chip_hour",
        "usd_per_useful_pflop_hour",
        "time_to_train_s",
        "usd_per_million_tokens",
        "breakeven_volume",
    ]
    for k in keys:
        table.add_row(k, *(format(s[k], ",.4g") if k in s else "-" for s in sites.values()))
    table.add_row(
        "USD per trained model",
        *(
            format(s["training"]["usd_per_trained_model"], ",.4g") if "training" in s else "-"
            for s in sites.values()
        ),
    )
    return table


def _site_kw(kw: dict) -> dict:
    return {k: kw[k] for k in ("grid_w", "it_power_w") if k in kw}


@app.command()
def datacenter(
    chip: Annotated[
        str, typer.Option("--chip", help="chip preset with a rack definition")
    ] = "gb200",
    power: Annotated[
        str | None,
        typer.Option("--power", help="facility power at average draw, e.g. 1.2GW (default 1GW)"),
    ] = None,
    grid: Annotated[
        str | None,
        typer.Option(
            "--grid", help="utility capacity, e.g. 1.2GW; IT = grid x redundancy / peak PUE"
        ),
    ] = None,
    it_power: Annotated[
        str | None, typer.Option("--it-power", help="provisioned IT capacity, e.g. 10MW")
    ] = None,
    redundancy: Annotated[
        str | None,
        typer.Option("--redundancy", help="electrical redundancy for --grid: N, N+1 or 2N"),
    ] = None,
    rack: Annotated[
        str | None, typer.Option("--rack", help="rack preset (default: the chip's)")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="model to train (and serve)")] = None,
    tokens: Annotated[
        str | None, typer.Option("--tokens", help="training tokens, e.g. 15.6T")
    ] = None,
    serve_dtype: Annotated[
        str, typer.Option("--serve-dtype", help="serving dtype (bf16, fp8, ...)")
    ] = "bf16",
    compare_: Annotated[
        str | None, typer.Option("--compare", help="chips side by side: gb200,forge-n3")
    ] = None,
    pue: Annotated[float | None, typer.Option("--pue")] = None,
    electricity_price: Annotated[
        float | None, typer.Option("--electricity-price", help="USD/kWh")
    ] = None,
    utilization: Annotated[float | None, typer.Option("--utilization", help="MFU, 0-1")] = None,
    sensitivity_: Annotated[bool, typer.Option("--sensitivity", help="add tornado data")] = False,
    html: HtmlOpt = None,
    png: PngOpt = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Size and price a datacenter of one chip, or compare several."""
    a = Assumptions().with_(
        pue=pue,
        electricity_usd_per_kwh=electricity_price,
        utilization=utilization,
        redundancy=parse_redundancy(redundancy) if redundancy else None,
    )
    given = [n for n, v in (("--power", power), ("--grid", grid), ("--it-power", it_power)) if v]
    if len(given) > 1:
        raise ChipforgeError(f"pass one of {', '.join(given)}, not several")
    watts = parse_quantity(power or ("1GW" if not given else "0W"), "power", field="--power")
    n_tokens = parse_count(tokens, "--tokens") if tokens else None
    kw = {"model": model, "tokens": n_tokens, "serve_dtype": serve_dtype}
    if grid or it_power:
        watts = None
        kw["grid_w"] = parse_quantity(grid, "power", field="--grid") if grid else None
        kw["it_power_w"] = (
            parse_quantity(it_power, "power", field="--it-power") if it_power else None
        )
    if compare_:
        data = compare([c.strip() for c in compare_.split(",") if c.strip()], watts, a, **kw)
        if sensitivity_:
            data["sensitivity"] = {
                c: sensitivity(c, watts, a, **_site_kw(kw)) for c in data["sites"]
            }
        tables = [compare_table(data)]
    else:
        data = site_report(chip, watts, a, rack=rack, **kw)
        if sensitivity_:
            data["sensitivity"] = sensitivity(chip, watts, a, rack=rack, **_site_kw(kw))
        tables = site_tables(data)
    write_reports("datacenter", data, html, png)
    emit(data, tables, as_json=as_json, out=out)
