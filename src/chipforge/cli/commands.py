"""Commands on chips, workloads and the analytical engine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from chipforge.cli import (
    ChipOpt,
    JsonOpt,
    OutOpt,
    TrustOpt,
    WorkloadOpt,
    app,
    deprecated,
    emit,
    trusting,
    warn,
)
from chipforge.cli.budgetopts import MaxMemoryOpt, MaxWorkOpt
from chipforge.cli.reportopts import HtmlOpt, PngOpt, TraceOpt, write_reports, write_trace
from chipforge.display import show as human
from chipforge.errors import ChipforgeError
from chipforge.perf import estimate
from chipforge.perf.validate import run_sustained, run_validation, summary, sustained_summary
from chipforge.report import tables as tb
from chipforge.spec import load_chip, preset_names
from chipforge.spec.loader import chip_list, load_chips
from chipforge.workload import load_model, model_names, parse_workload

DEMO_CHIPS = ("forge-n3", "gb200", "b200", "h100", "tpu-v7")
DEMO_SCENARIOS = (
    ("Llama-3-70B prefill, 8k tokens, batch 1", "llm:llama3-70b,phase=prefill,batch=1,seq=8192"),
    (
        "Llama-3-70B decode, batch 64, 4k context",
        "llm:llama3-70b,phase=decode,batch=64,context=4096",
    ),
    (
        "Llama-3-70B one layer, forward + backward, micro-batch 1 x 8k tokens",
        "llm:llama3-70b,phase=train,batch=1,seq=8192,scope=layer",
    ),
)


@app.command()
def presets(as_json: JsonOpt = False, out: OutOpt = None) -> None:
    """List the shipped chips and models."""
    chips = [load_chip(n) for n in preset_names()]
    models = [load_model(n) for n in model_names()]
    ct = Table(title="chips")
    for col in ("name", "vendor", "year", "node", "peak bf16", "memory", "bandwidth", "TDP"):
        ct.add_column(
            col, justify="right" if col in ("peak bf16", "memory", "bandwidth", "TDP") else "left"
        )
    for c in chips:
        ct.add_row(
            c.name,
            c.vendor,
            str(c.year),
            c.node,
            human("peak_flops_per_s", c.peak_flops("bf16")),
            human("capacity_bytes", c.hbm.capacity) + f" {c.hbm.name}",
            human("bandwidth_bytes_per_s", c.hbm.bandwidth),
            human("tdp_w", c.tdp),
        )
    mt = Table(title="models (a bare name means prefill of one sequence at the model's seq)")
    for col in ("name", "params (B)", "active (B)", "layers", "hidden", "heads/kv", "experts"):
        mt.add_column(col)
    for m in models:
        mt.add_row(
            m.name,
            f"{m.params() / 1e9:.1f}",
            f"{m.params(active=True) / 1e9:.1f}",
            str(m.layers),
            str(m.hidden),
            f"{m.heads}/{m.n_kv_heads}",
            f"{m.top_k}/{m.experts}" if m.is_moe else "-",
        )
    data = {
        "chips": [c.model_dump() for c in chips],
        "models": [
            {"name": m.name, "params": m.params(), "active_params": m.params(active=True)}
            for m in models
        ],
    }
    emit(data, [ct, mt], as_json=as_json, out=out)


@app.command()
def show(
    chip: Annotated[str, typer.Argument(help="preset name or chip TOML path")],
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """A chip's derived figures: peak FLOP/s per dtype, memory, links, TDP, machine balance."""
    spec = load_chip(chip)
    dtypes = list(spec.matrix.macs_per_cycle)
    data = {
        "spec": spec.model_dump(),
        "peak_flops_per_s": {d: spec.peak_flops(d) for d in dtypes},
        "machine_balance_flop_per_byte": {d: spec.machine_balance(d) for d in dtypes},
        "hbm_capacity_bytes": spec.hbm.capacity,
        "hbm_bandwidth_bytes_per_s": spec.hbm.bandwidth,
        "onchip_bytes": spec.onchip_bytes,
        "vector_flops_per_s": spec.vector_flops,
        "link_bandwidth_bytes_per_s": spec.link_bandwidth,
        "tdp_w": spec.tdp,
    }
    from chipforge.cluster.topology import topology_for

    topo = topology_for(spec, 1 << 20)  # as many chips as fill a whole domain or pod
    data["scale_up_domain"] = {"topology": topo.name, "chips": topo.domain}
    emit(data, [tb.chip_table(spec, (topo.name, topo.domain))], as_json=as_json, out=out)


EngineOpt = Annotated[
    str, typer.Option("--engine", help="analytical (fast model) or cycle (compile and simulate)")
]
UnsupportedOpt = Annotated[
    bool,
    typer.Option(
        "--allow-unsupported",
        help="cost an imported model's ops without a cost rule as vector work (and say so)",
    ),
]


def _workload(text: str, allow_unsupported: bool, trust_pickle: bool = False):
    trust = trusting(trust_pickle)
    return parse_workload(text, allow_unsupported=allow_unsupported, trust_pickle=trust)


@app.command()
def evaluate(
    chip: ChipOpt,
    workload: WorkloadOpt,
    engine: EngineOpt = "analytical",
    allow_unsupported: UnsupportedOpt = False,
    as_json: JsonOpt = False,
    out: OutOpt = None,
    html: HtmlOpt = None,
    png: PngOpt = None,
    trace: TraceOpt = None,
    trust_pickle: TrustOpt = False,
    max_memory: MaxMemoryOpt = None,
    max_work: MaxWorkOpt = None,
) -> None:
    """Cost a workload on one chip, op by op (--engine cycle: within --max-memory and
    --max-work, as `simulate`)."""
    if engine not in ("analytical", "cycle"):
        raise ChipforgeError(f"`--engine` must be analytical or cycle, not {engine!r}")
    graph, spec = _workload(workload, allow_unsupported, trust_pickle), load_chip(chip)
    runs: list = []  # the cycle engine's programs and timelines, for its per-engine trace

    def keep(op, prog, tl) -> None:
        if prog is not None:
            runs.append((op.name, prog, tl))

    if engine == "analytical":
        result = estimate(graph, spec)
    else:
        from chipforge.sim import budget, run_timing

        limits = budget.parse_limits(max_memory, max_work)
        result = run_timing(
            graph, spec, on_op=keep if trace else None, max_memory=limits[0], max_work=limits[1]
        )
    warn(result)
    emit(result, [tb.summary_table(result), tb.op_table(result)], as_json=as_json, out=out)
    write_trace(trace, [result.to_dict()], (runs, spec.clock))
    write_reports("evaluate", result, html, png, trace=trace)


@app.command()
def compare(
    workload: WorkloadOpt,
    chip: Annotated[
        str | None, typer.Option("--chip", help="chips side by side: presets or TOML paths, a,b")
    ] = None,
    chips: Annotated[
        str | None, typer.Option("--chips", hidden=True, help="deprecated: use --chip a,b")
    ] = None,
    allow_unsupported: UnsupportedOpt = False,
    as_json: JsonOpt = False,
    out: OutOpt = None,
    html: HtmlOpt = None,
    png: PngOpt = None,
    trace: TraceOpt = None,
    trust_pickle: TrustOpt = False,
) -> None:
    """Cost one workload on several chips side by side (--chip a,b)."""
    if chips is not None:
        deprecated("compare --chips a,b", "--chip a,b (--chips is a count everywhere)")
        chip = chips if chip is None else f"{chip},{chips}"
    names = chip_list(chip)
    graph = _workload(workload, allow_unsupported, trust_pickle)
    results = [estimate(graph, spec) for spec in load_chips(names)]
    shown: set[str] = set()  # the workload's own warnings (unsupported ops) once, not per chip
    for r in results:
        warn(r, skip=shown)
        shown |= set(r.warnings)
    data = {"workload": graph.name, "results": [r.to_dict() for r in results]}
    emit(data, [tb.compare_table(results, graph.name)], as_json=as_json, out=out)
    write_trace(trace, data["results"])
    write_reports("compare", data, html, png, trace=trace)


@app.command()
def validate(
    as_json: JsonOpt = False,
    out: OutOpt = None,
    cluster: Annotated[
        bool, typer.Option("--cluster", help="the multi-chip (training, serving) cases instead")
    ] = False,
) -> None:
    """Predict every single-chip measured case and print the error against the published value:
    burst benchmarks at the boost clock, long back-to-back GEMM runs at the sustained clock."""
    if cluster:
        from chipforge.cluster.validate import report

        data, tables = report()
        emit(data, tables, as_json=as_json, out=out)
        return
    results = run_validation()
    data = summary(results)
    t = Table(title="predictions vs published measurements (C: sets a calibration constant)")
    for col in ("case", "chip", "predicted", "published", "unit", "error"):
        t.add_column(col, justify="left" if col in ("case", "chip", "unit") else "right")
    for r in results:
        unit, name = (1e12, "TFLOP/s") if r.kind != "decode" else (1.0, "tokens/s")
        t.add_row(
            r.id + (" (C)" if r.calibration else ""),
            r.chip,
            f"{r.predicted / unit:,.1f}",
            f"{r.published / unit:,.1f}",
            name,
            f"{100 * r.error:+.1f}%",
        )
    foot = Table(show_header=False)
    foot.add_column("figure", style="bold")
    foot.add_column("value")
    for key in (
        "median_abs_error",
        "max_abs_error",
        "held_out_median_abs_error",
        "held_out_max_abs_error",
    ):
        foot.add_row(key.replace("_", " "), tb.percent(data[key]))
    for skipped in data["skipped"]:
        foot.add_row(f"skipped {skipped['id']}", skipped["reason"])
    data["sustained"] = sustained_summary(run_sustained())
    emit(data, [t, foot, _sustained_table(data["sustained"])], as_json=as_json, out=out)


def _sustained_table(data: dict) -> Table:
    """The long back-to-back GEMM runs (data/sustained_gemm.csv), at the sustained clock and, beside
    it, at the boost clock."""
    t = Table(
        title="sustained GEMM runs (data/sustained_gemm.csv rule), priced at the preset's "
        "sustained clock; none sets a constant"
    )
    cols = ("case", "chip", "clock", "measured clock", "predicted TFLOP/s", "at boost",
            "published", "error", "at boost")  # fmt: skip
    for col in cols:
        t.add_column(col, justify="left" if col in ("case", "chip") else "right")
    for r in data["cases"]:
        t.add_row(
            r["id"],
            r["chip"],
            f"{r['clock_hz'] / 1e9:.3f} GHz",
            "-" if r["measured_clock_hz"] is None else f"{r['measured_clock_hz'] / 1e9:.3f} GHz",
            f"{r['predicted'] / 1e12:,.1f}",
            f"{r['predicted_at_boost'] / 1e12:,.1f}",
            f"{r['published'] / 1e12:,.1f}",
            f"{100 * r['error']:+.1f}%",
            f"{100 * r['error_at_boost']:+.1f}%",
        )
    t.caption = (
        f"median |error| {tb.percent(data['median_abs_error'])}, max "
        f"{tb.percent(data['max_abs_error'])} (at the boost clock "
        f"{tb.percent(data['median_abs_error_at_boost'])}, "
        f"{tb.percent(data['max_abs_error_at_boost'])})"
    )
    return t


DemoHtmlOpt = Annotated[
    Path, typer.Option("--html", help="where the demo writes its HTML report (the whole story)")
]


DetailsOpt = Annotated[
    bool, typer.Option("--details", help="also print each scenario's comparison and per-op tables")
]


def demo_summary(chips: list, scenarios: list[dict]) -> list[dict]:
    """Per chip: Llama-3-70B decode speed and prefill time (the demo's scenarios), the chip's
    cost as a site's capex charges it (street price bought, silicon x markup + NRE built),
    decode tokens/s per W of TDP and per $1,000, and a 1 GW site's $ per useful PFLOP-hour."""
    from chipforge.datacenter import site_report
    from chipforge.report.demo import DATACENTER_POWER_W

    prefill, decode = scenarios[0]["results"], scenarios[1]["results"]
    rows = []
    for chip, pre, dec in zip(chips, prefill, decode, strict=True):
        site = site_report(chip.name, DATACENTER_POWER_W)
        tps = dec["tokens_per_s"]
        usd = site["chip_capex_usd_per_chip"]
        rows.append(
            {
                "chip": chip.name,
                "decode_tokens_per_s": tps,
                "prefill_time_s": pre["time_s"],
                "fits_in_memory": dec["fits_in_memory"],
                "chip_capex_usd_per_chip": usd,
                "decode_tokens_per_s_per_w": tps / chip.tdp,
                "decode_tokens_per_s_per_kusd": tps / usd * 1e3,
                "usd_per_useful_pflop_hour": site["usd_per_useful_pflop_hour"],
            }
        )
    return rows


def _answer_table(rows: list[dict]) -> Table:
    t = Table(
        title="forge-n3 against the GPUs and TPU v7 (Llama-3-70B, bf16, one chip; site: 1 GW)"
    )
    cols = (
        "chip", "decode tokens/s", "prefill 8k", "chip cost", "tokens/s per W",
        "tokens/s per $1k", "site $/PFLOP-h",
    )  # fmt: skip
    for col in cols:
        t.add_column(col, justify="left" if col == "chip" else "right")
    for r in rows:
        t.add_row(
            r["chip"] + ("" if r["fits_in_memory"] else " *"),
            f"{r['decode_tokens_per_s']:,.0f}",
            human("prefill_time_s", r["prefill_time_s"]),
            human("chip_capex_usd", r["chip_capex_usd_per_chip"]),
            f"{r['decode_tokens_per_s_per_w']:,.2f}",
            f"{r['decode_tokens_per_s_per_kusd']:,.1f}",
            human("usd", r["usd_per_useful_pflop_hour"]),
        )
    return t


@app.command()
def demo(
    as_json: JsonOpt = False,
    out: OutOpt = None,
    html: DemoHtmlOpt = Path("out/report.html"),
    details: DetailsOpt = False,
) -> None:
    """The main job: the house chip forge-n3 against GB200, B200, H100 and TPU v7 on
    Llama-3-70B: the answer on one screen, the whole story in the HTML report."""
    chips = [load_chip(c) for c in DEMO_CHIPS]
    tables, data = [], {"chips": list(DEMO_CHIPS), "scenarios": []}
    for title, text in DEMO_SCENARIOS:
        graph = parse_workload(text)
        results = [estimate(graph, c) for c in chips]
        tables += [
            tb.compare_table(results, title),
            tb.ops_by_chip_table(results, title + ": per op"),
        ]
        data["scenarios"].append(
            {"title": title, "workload": text, "results": [r.to_dict() for r in results]}
        )
    data["summary"] = demo_summary(chips, data["scenarios"])
    note = Table(show_header=False, box=None)
    note.add_column("note")
    note.add_row(
        "decode: batch 64 at 4k context; chip cost: what a site's capex charges per chip (street "
        "price bought; silicon x markup + NRE / 500k built); site: chipforge datacenter --chip C"
    )
    note.add_row(
        "* the working set exceeds the chip's memory: costed on one chip anyway; "
        "a deployment shards it over several chips."
    )
    if not details:
        for title, _ in DEMO_SCENARIOS:
            note.add_row(f"{title}: per-op tables with --details, charts in {html}")
        note.add_row(f"silicon cost, training and serving plans, the 1 GW site: {html}")
    shown = [_answer_table(data["summary"]), note] + (tables if details else [])
    emit(data, shown, as_json=as_json, out=out)
    from chipforge.report.demo import write_demo_report

    write_demo_report(html, data)
    Console(stderr=True).print(f"wrote {html}", markup=False)


@app.command()
def schema(
    kind: Annotated[str, typer.Argument(help="chip: the chip TOML format")] = "chip",
    as_json: JsonOpt = True,
    out: OutOpt = None,
) -> None:
    """Print the JSON Schema of a chip TOML (docs/chip-spec.md is the same, as a table)."""
    if kind != "chip":
        raise ChipforgeError(f"`schema` must be chip, not {kind!r}")
    from chipforge.spec.reference import schema as chip_schema

    emit(chip_schema(kind), [], as_json=True, out=out)
