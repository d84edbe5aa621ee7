"""`chipforge datacenter`: racks, chips, power, capex/opex, TCO, time to train, $/Mtoken."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from chipforge.cli import JsonOpt, ModelOptional, OutOpt, app, deprecated, dtype_flag, emit
from chipforge.cli.reportopts import HtmlOpt, PngOpt, write_reports
from chipforge.display import label, show
from chipforge.errors import ChipforgeError, SpecError
from chipforge.request_defaults import SITE_ISL, SITE_OSL
from chipforge.units import parse_count, parse_quantity


def _rows(title: str, rows: dict) -> Table:
    table = Table(title=title)
    table.add_column("item")
    table.add_column("value", justify="right")
    for k, v in rows.items():
        table.add_row(label(k), show(k, v))
    return table


def _usd(parts: dict) -> dict:
    return {f"{k}_usd" if k == "total" else k: v for k, v in parts.items()}


def site_tables(d: dict) -> list[Table]:
    built = d["chip_built"]
    summary = {
        "chip / rack": f"{d['chip']} / {d['rack']['name']} ({d['cooling']} cooled)",
        "racks": d["racks"],
        "chips": d["chips"],
        **({"grid_capacity_w": d["grid_power_w"]} if d.get("grid_power_w") else {}),
        "it_capacity_w": d.get("it_capacity_w") or d["it_power_w"],
        "it_power_drawn_w": d["it_power_w"],
        "facility_power_w": d["facility_power_w"],
        "all_in_w_per_chip": d["all_in_w_per_chip"],
        ("silicon_cost_usd" if built else "chip_price_usd"): d["chip_unit_cost_usd"],
        "chip_capex_usd_per_chip": d["chip_capex_usd_per_chip"],
        "delivered_flops_per_s": d["delivered_flops_per_s"],
        "tco_usd_per_year": d["tco_usd_per_year"],
        "tco_usd_per_chip_hour": d["tco_usd_per_chip_hour"],
        "usd_per_useful_pflop_hour": d["usd_per_useful_pflop_hour"],
    }
    if "training" in d:
        t = d["training"]
        summary["training"] = (
            f"{t['model']}, {show('tokens', t['tokens'])} on {t['training_chips']:,} chips"
        )
    if "serving" in d:
        s = d["serving"]
        summary["serving"] = f"{s['model']}, {s['isl']:,} in / {s['osl']:,} out tokens a request"
    for k in ("time_to_train_s", "usd_per_million_tokens", "breakeven_volume"):
        if k in d:
            summary[k] = d[k]
    title = f"datacenter: {d['chip']}"
    if "training" in d:
        title += f", {d['training']['model']}"
    tables = [
        _rows(title, summary),
        _rows("capex", _usd(d["capex_usd"])),
        _rows("opex per year", _usd(d["opex_usd_per_year"])),
    ]
    if d.get("rack_derived"):
        note = Table(title="rack (an assumption: derived by the rack template)", show_header=False)
        note.add_column("rack")
        note.add_row(d["rack"]["source"])
        tables.append(note)
    a = Table(title="assumptions (override: --set key=value or --assumptions site.toml)")
    for col in ("assumption", "key", "value", "origin"):
        a.add_column(col, justify="right" if col == "value" else "left")
    for o in d["assumption_origins"]:
        a.add_row(label(o["key"]), o["key"], show(o["key"], o["value"]), o["origin"])
    return [*tables, a]


def compare_table(data: dict) -> Table:
    sites = data["sites"]
    first = next(iter(data["sites"].values()), {})
    watts = data["power_w"] or first.get("grid_power_w") or first.get("it_capacity_w") or 0.0
    what = "grid" if first.get("grid_power_w") else ("IT" if not data["power_w"] else "facility")
    table = Table(title=f"compare at {show('power_w', watts)} ({what})")
    table.add_column("metric")
    for name in sites:
        table.add_column(name, justify="right")
    keys = [
        "chips",
        "facility_power_w",
        "chip_capex_usd_per_chip",
        "tco_usd_per_year",
        "tco_usd_per_chip_hour",
        "usd_per_useful_pflop_hour",
        "planned_mfu",
        "usd_per_useful_pflop_hour_planned",
        "time_to_train_s",
        "usd_per_million_tokens",
        "breakeven_volume",
    ]
    for k in keys:
        table.add_row(label(k), *(show(k, s[k]) if k in s else "-" for s in sites.values()))
    table.add_row(
        "$ per trained model",
        *(
            show("usd", s["training"]["usd_per_trained_model"]) if "training" in s else "-"
            for s in sites.values()
        ),
    )
    return table


def tornado_table(rows: list[dict], who: str = "") -> Table:
    """Sensitivity rows (knob, low, high, at_low, at_high, base) as a table, widest first."""
    base = rows[0]["base"] if rows else 0.0
    table = Table(title=f"sensitivity {who}: USD per useful PFLOP-hour at each knob's ends "
                  f"(base {base:.4g}; one knob at a time)".replace("  ", " "))  # fmt: skip
    for c in ("knob", "range", "at low", "at high", "swing"):
        table.add_column(c, justify="left" if c == "knob" else "right")
    for r in rows:
        table.add_row(
            r["knob"], f"{r['low']:g} .. {r['high']:g}", f"{r['at_low']:.4g}",
            f"{r['at_high']:.4g}", f"{abs(r['at_high'] - r['at_low']):.4g}",
        )  # fmt: skip
    return table


def _site_kw(kw: dict) -> dict:
    return {k: kw[k] for k in ("grid_w", "it_power_w") if k in kw}


def _serve_dtype(value: str | None) -> str | None:
    """`--serve-dtype`, the old spelling of `--dtype`: one warning line, then --dtype's check
    naming the flag as typed."""
    if value is not None:
        from chipforge.dtypes import check_dtype

        deprecated("--serve-dtype", "--dtype")
        check_dtype(value, "--serve-dtype")
    return value


# the site assumptions datacenter's own flags set: a range error names the flag as typed
_FLAGS = {
    "pue": "--pue",
    "electricity_usd_per_kwh": "--electricity-price",
    "utilization": "--utilization",
    "redundancy": "--redundancy",
}


@app.command()
def datacenter(
    ctx: typer.Context,
    chip: Annotated[
        str | None,
        typer.Option(
            "--chip",
            help="chip preset or TOML path; a comma list compares sites side by side "
            "(default: gb200, or the chip --rack holds)",
        ),
    ] = None,
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
        str | None,
        typer.Option(
            "--rack",
            help="rack preset or rack TOML (default: the chip's preset rack, else one derived "
            "from the chip by the rack template)",
        ),
    ] = None,
    model: Annotated[str | None, ModelOptional] = None,
    tokens: Annotated[
        str | None, typer.Option("--tokens", help="training tokens, e.g. 15.6T")
    ] = None,
    dtype: Annotated[
        str,
        typer.Option(
            "--dtype",
            help="the served model's weights/activations dtype, as serve's (bf16, fp8, ...; "
            "the training job is priced at bf16)",
            callback=dtype_flag,
        ),
    ] = "bf16",
    serve_dtype: Annotated[
        str | None,
        typer.Option(
            "--serve-dtype", hidden=True, help="deprecated: use --dtype", callback=_serve_dtype
        ),
    ] = None,
    isl: Annotated[
        int | None,
        typer.Option(
            "--isl",
            min=1,
            help="input (prompt) tokens per request, as serve's "
            f"(default: {SITE_ISL}, or what fits the model's context)",
        ),
    ] = None,
    osl: Annotated[
        int | None,
        typer.Option(
            "--osl", min=1, help=f"output tokens per request, as serve's (default: {SITE_OSL})"
        ),
    ] = None,
    compare_: Annotated[
        str | None,
        typer.Option("--compare", hidden=True, help="deprecated: use --chip a,b"),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="override an assumption: key=value (repeatable)"),
    ] = None,
    assumptions: Annotated[
        Path | None,
        typer.Option("--assumptions", help="TOML file of assumption overrides (key = value)"),
    ] = None,
    pue: Annotated[float | None, typer.Option("--pue")] = None,
    electricity_price: Annotated[
        float | None, typer.Option("--electricity-price", help="USD/kWh")
    ] = None,
    utilization: Annotated[float | None, typer.Option("--utilization", help="MFU, 0-1")] = None,
    sensitivity_: Annotated[
        bool,
        typer.Option(
            "--sensitivity",
            help="add tornado data: the site's $ per useful PFLOP-hour at each assumption's low "
            "and high end",
        ),
    ] = False,
    html: HtmlOpt = None,
    png: PngOpt = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Size and price a datacenter of one chip, or compare several (--chip a,b)."""
    from chipforge.datacenter import Assumptions, compare, load_rack, sensitivity, site_report
    from chipforge.datacenter.site import load_assumptions, parse_overrides, parse_redundancy

    over = load_assumptions(assumptions) if assumptions else {}
    over |= parse_overrides(set_ or [])
    flags = {  # the fields the flags set (_FLAGS: field -> flag)
        "pue": pue,
        "electricity_usd_per_kwh": electricity_price,
        "utilization": utilization,
        "redundancy": parse_redundancy(redundancy) if redundancy else None,
    }
    by_flag = {k: v for k, v in flags.items() if v is not None}
    try:
        a = Assumptions().with_(**over | by_flag)
    except SpecError as e:  # a flag's value out of its range: named as typed, not as the field
        field = next((f for f in by_flag if str(e).startswith(f"`{f}` ")), None)
        if field is None:
            raise
        raise SpecError(f"`{_FLAGS[field]}`{str(e)[len(field) + 2 :]}") from None
    given = [n for n, v in (("--power", power), ("--grid", grid), ("--it-power", it_power)) if v]
    if len(given) > 1:
        raise ChipforgeError(f"pass one of {', '.join(given)}, not several")
    watts = parse_quantity(power or ("1GW" if not given else "0W"), "power", field="--power")
    n_tokens = parse_count(tokens, "--tokens") if tokens else None
    if serve_dtype is not None:
        if ctx.get_parameter_source("dtype").name != "DEFAULT":  # the old spelling won silently
            raise ChipforgeError("pass --dtype or --serve-dtype (its old spelling), not both")
        dtype = serve_dtype
    kw = {"model": model, "tokens": n_tokens, "serve_dtype": dtype, "isl": isl, "osl": osl}
    if grid or it_power:
        watts = None
        kw["grid_w"] = parse_quantity(grid, "power", field="--grid") if grid else None
        kw["it_power_w"] = (
            parse_quantity(it_power, "power", field="--it-power") if it_power else None
        )
    if compare_:  # its chips join --chip's, as `compare --chips` does
        deprecated("--compare", "--chip a,b")
        chip = compare_ if chip is None else f"{chip},{compare_}"
    if chip is None:
        chip = (load_rack(rack).chip or "gb200") if rack else "gb200"
    from chipforge.spec.loader import chip_list

    chips = chip_list(chip)
    if len(chips) > 1:
        data = compare(chips, watts, a, rack=rack, **kw)
        if sensitivity_:
            data["sensitivity"] = {
                name: sensitivity(c, watts, a, rack=rack, **_site_kw(kw))
                for name, c in zip(data["sites"], chips, strict=True)
            }
        tables = [compare_table(data)]
        for who, rows in (data.get("sensitivity") or {}).items():
            tables.append(tornado_table(rows, f"({who})"))
    else:
        data = site_report(chips[0], watts, a, rack=rack, **kw)
        if sensitivity_:
            data["sensitivity"] = sensitivity(chips[0], watts, a, rack=rack, **_site_kw(kw))
        tables = site_tables(data)
        if sensitivity_:
            tables.append(tornado_table(data["sensitivity"]))
    write_reports("datacenter", data, html, png)
    emit(data, tables, as_json=as_json, out=out)
