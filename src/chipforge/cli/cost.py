"""`chipforge cost`: area by block, reticle/chiplets, yield, unit cost, power, perf/W, perf/$."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from chipforge.cli import ChipOpt, JsonOpt, OutOpt, app, emit
from chipforge.cli.reportopts import HtmlOpt, PngOpt, write_reports
from chipforge.display import has_unit, label, show
from chipforge.spec import load_chip

NodeOpt = Annotated[
    str | None, typer.Option("--node", help="re-target the design to this node (n7 ... n2)")
]


def _table(title: str, rows: dict[str, float | str], unit_key: str = "") -> Table:
    """Rows named by `display.label`, values by `display.show` (the unit of a key without one
    from `unit_key`)."""
    table = Table(title=title)
    table.add_column("item")
    table.add_column("value", justify="right")
    for name, value in rows.items():
        key = name if has_unit(name) or not unit_key else f"{name}{unit_key}"
        table.add_row(label(name), show(key, value))
    return table


def sensitivity_table(rows: list[dict]) -> Table:
    """`silicon.sensitivity` rows as a table: each input's range in its unit, the unit cost at
    each end and the swing, widest first."""
    base = rows[0]["base_usd"] if rows else 0.0
    table = Table(title=f"sensitivity: unit cost at each input's ends (base {show('usd', base)}; "
                  "one input at a time)")  # fmt: skip
    for c in ("input", "range", "at low", "at high", "swing"):
        table.add_column(c, justify="left" if c == "input" else "right")
    for r in rows:
        k = r["knob"]
        table.add_row(
            label(k), f"{show(k, r['low'])} .. {show(k, r['high'])}",
            show("usd", r["at_low_usd"]), show("usd", r["at_high_usd"]),
            show("usd", abs(r["at_high_usd"] - r["at_low_usd"])),
        )  # fmt: skip
    return table


def cost_tables(data: dict) -> list[Table]:
    """Summary, area, cost and power tables of a `Silicon.to_dict()`."""
    b = data["breakdown"]
    summary = {
        "die_area_mm2": data["die_area_mm2"],
        "compute_dies": data["dies"],
        "dies_per_wafer": data["dies_per_wafer"],
        "yield": data["yield"],
        "unit_cost_usd": data["unit_cost_usd"],
        "tdp_model_w": data["tdp_w"],
    }
    perf = Table(title="perf per W and per $ (peak, dense)")
    for col in ("dtype", "TFLOP/s", "GFLOP/s per W", "GFLOP/s per $"):
        perf.add_column(col, justify="right")
    for d, f in data["peak_flops_per_s"].items():
        perf.add_row(
            d,
            f"{f / 1e12:,.1f}",
            f"{data['flops_per_s_per_w'][d] / 1e9:,.0f}",
            f"{data['flops_per_s_per_usd'][d] / 1e9:,.2f}",
        )
    fits = "fits the reticle" if data["fits_reticle"] else "over the reticle"
    return [
        _table(f"{data['chip']} on {data['node']} ({fits})", summary),
        _table("area by block (all dies)", b["area_mm2"], "_mm2"),
        _table("unit cost", b["cost_usd"], "_usd"),
        _table("unit cost inputs", b["cost_inputs"]),
        _table("power at TDP (model)", b["power_w"], "_w"),
        _table("one-time costs (not in the unit cost)", data["one_time_usd"], "_usd"),
        perf,
    ]


@app.command()
def cost(
    chip: ChipOpt,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
    html: HtmlOpt = None,
    png: PngOpt = None,
    sensitivity_: Annotated[
        bool,
        typer.Option(
            "--sensitivity",
            help="add tornado data: the unit cost at each cost input's low and high end",
        ),
    ] = False,
) -> None:
    """Area by block, dies per wafer, yield, unit cost, power at TDP, perf/W and perf/$."""
    from chipforge.silicon import evaluate, sensitivity

    spec = load_chip(chip)
    data = evaluate(spec, node).to_dict()
    tables = cost_tables(data)
    if sensitivity_:
        data["sensitivity"] = sensitivity(spec, node)
        tables.append(sensitivity_table(data["sensitivity"]))
    emit(data, tables, as_json=as_json, out=out)
    write_reports("cost", data, html, png)
