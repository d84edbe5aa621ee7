"""The studio's pages (Dash): Chip, Run, Cluster, Silicon, Site, Decision, Sweep.

Each callback is a plain function of form values (tests and benchmarks call them directly); it
asks `studio.compute`, which calls the public API, and lays the answer out. The charts are the
report's own builders (`chipforge.report`). The page state is the URL's query string: opening
a shared link rebuilds the same page, uploaded files included (compressed in the link when
small, else named by their key on the studio that received them).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, parse_qsl, urlencode, urlparse

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from chipforge.errors import ChipforgeError
from chipforge.report.charts import bar, compare_charts, cost_charts, html_safe
from chipforge.report.decide import decide_charts
from chipforge.report.plans import cost_tornado, datacenter_charts, sweep_charts, train_charts
from chipforge.report.serving import serve_charts
from chipforge.request_defaults import SERVE_ISL, SERVE_OSL
from chipforge.spec.loader import chip_from_dict, preset_names
from chipforge.spec.nodes import nodes
from chipforge.studio import compute
from chipforge.workload.config import model_names

PAGES = ("chip", "run", "cluster", "silicon", "site", "decide", "sweep")
TITLES = {p: p.capitalize() for p in PAGES} | {"decide": "Decision"}
CUSTOM_KEYS = ("layers", "hidden", "heads", "kv_heads", "ffn", "vocab")
CUSTOM_DEFAULT = {"layers": "32", "hidden": "4096", "heads": "32", "kv_heads": "8",
                  "ffn": "14336", "vocab": "128256"}  # fmt: skip
# form controls kept in the URL, with their defaults
DEFAULTS = {
    "page": "chip",
    "chip": compute.DEFAULT_CHIP,
    "model": "llama3-8b",
    "phase": "decode",
    "batch": "8",
    "seq": "2048",
    "context": "2048",
    "vs": ",".join(compute.DEFAULT_VS),
    "chips": "64",
    "tseq": "4096",
    "tp": "1",
    "pp": "1",
    "tdtype": "bf16",
    "trec": "",
    "topts": "",
    "schips": "8",
    "isl": str(SERVE_ISL),
    "osl": str(SERVE_OSL),
    "sdtype": "bf16",
    "sopts": "",
    "stp": "",
    "spp": "",
    "ttft": "",
    "tpot": "",
    "node": "",
    "power": "100 MW",
    "samples": "256",
    **{f"c-{k}": v for k, v in CUSTOM_DEFAULT.items()},
}
CONTROLS = tuple(k for k in DEFAULTS if k not in ("page", "chip", "vs"))
STYLE = {"fontFamily": "system-ui, sans-serif", "margin": "0 auto", "maxWidth": "1200px"}
ERR = {"color": "#b00020", "fontSize": "0.85em", "minHeight": "1em"}


# ---- state <-> query string ------------------------------------------------------------------


def initial_state(query: str) -> dict:
    """The form's starting values from a URL query string (unknown or bad values fall back to
    the defaults; chip field values are checked when the page computes)."""
    q = {k: v[-1] for k, v in parse_qs(query.lstrip("?"), keep_blank_values=True).items()}
    state = {k: str(q.get(k, d))[:200] for k, d in DEFAULTS.items()}
    if state["page"] not in PAGES:
        state["page"] = "chip"
    if state["chip"] not in preset_names():
        state["chip"] = compute.DEFAULT_CHIP
    if state["model"] not in (*model_names(), "custom"):
        state["model"] = DEFAULTS["model"]
    state["vs"] = [v for v in state["vs"].split(",") if v in preset_names()]
    # uploaded files the link carries (compressed) or names (kept here): read back by the
    # bounded loaders; a bad one is dropped, as any bad value is
    state["base"], state["config"] = f"preset:{state['chip']}", None
    for kind in ("chip", "config"):
        try:
            key = compute.unshare(q, kind)
        except ChipforgeError:
            key = None
        if key and kind == "chip":
            state["base"] = f"upload:{key}"
        elif key:
            state["config"] = key
    base = compute.form_values(compute.base_chip(state["base"]))
    state["fields"] = {f: str(q.get(f"f-{f}", base[f]))[:200] for f in compute.FIELD_IDS}
    return state


def query_of(
    page: str, base: str, fields: dict, vs: list, controls: dict, config: str | None = None
) -> str:
    """The query string of a page state: the chip (a preset's name, or an uploaded file's
    compressed text or key), the fields that differ from it, the uploaded config.json, and
    every control that differs from its default."""
    q = {}
    if page != "chip":
        q["page"] = page
    kind, _, name = str(base).partition(":")
    try:
        if kind == "preset" and name != compute.DEFAULT_CHIP:
            q["chip"] = name
        elif kind == "upload":
            q.update(compute.share(name, "chip"))
        start = compute.form_values(compute.base_chip(base))
        if config:
            q.update(compute.share(config, "config"))
    except ChipforgeError:
        start = {}
    q.update({f"f-{k}": v for k, v in fields.items() if v is not None and start.get(k) != v})
    vs_text = ",".join(vs or [])
    if vs_text != DEFAULTS["vs"]:
        q["vs"] = vs_text
    text = {k: ",".join(v) if isinstance(v, list) else v for k, v in controls.items()}
    q.update({k: v for k, v in text.items() if v is not None and str(v) != DEFAULTS[k]})
    return "?" + urlencode(q) if q else ""


# ---- small layout helpers -----------------------------------------------------------------


CELL = {"padding": "2px 12px", "borderBottom": "1px solid #ddd", "textAlign": "left"}


def _table(rows, head=None) -> html.Table:
    body = [html.Tr([html.Td(str(c), style=CELL) for c in r]) for r in rows]
    top = [html.Thead(html.Tr([html.Th(h, style=CELL) for h in head]))] if head else []
    return html.Table(top + [html.Tbody(body)], className="figures")


def _graphs(prefix: str, charts: list) -> list:
    return [
        dcc.Graph(
            id=f"{prefix}-{c['id']}",
            figure=html_safe({"data": c["data"], "layout": c["layout"]}),
            config={"displaylogo": False},
        )
        for c in charts
    ]


def _input(cid: str, value, label: str, help: str = "") -> html.Div:
    return html.Div(
        [
            html.Label(label, htmlFor=cid, style={"display": "block", "fontWeight": 600}),
            dcc.Input(id=cid, value=value, type="text", debounce=True, style={"width": "95%"}),
            html.Div(help, style={"fontSize": "0.8em", "color": "#666"}),
        ],
        style={"margin": "4px 8px"},
    )


def _pick(cid: str, value, label: str, choices, *, multi: bool = False, blank: str = ""):
    """A dropdown of `choices` (`blank`: the label of an empty choice; `multi`: several, kept
    in the URL as comma-separated text)."""
    options = [{"label": blank, "value": ""}] if blank else []
    options += [{"label": c, "value": c} for c in choices]
    if multi:
        value = [v for v in str(value).split(",") if v in choices]
    return html.Div(
        [
            html.Label(label, htmlFor=cid, style={"display": "block", "fontWeight": 600}),
            dcc.Dropdown(
                options, value, id=cid, multi=multi, clearable=multi, style={"minWidth": "160px"}
            ),  # fmt: skip
        ],
        style={"margin": "4px 8px"},
    )


def _outputs(prefix: str) -> list:
    """A page section's answer: a one-line error, a table of figures, the charts."""
    return [
        html.Div(id=f"{prefix}-error", style=ERR),
        dcc.Loading([html.Div(id=f"{prefix}-table"), html.Div(id=f"{prefix}-charts")]),
    ]


def _spec(chip: dict | None):
    return chip_from_dict(chip, "chip") if chip else None


# ---- the pages -------------------------------------------------------------------------------


def section_title(section: str, named: bool) -> str:
    """A memory level's or link's section title: how to add one where it has no name."""
    return section if named else f"{section}: type a name to add it"


def _chip_page(s: dict) -> html.Div:
    fields = []
    for section in compute.SECTIONS:
        inputs = [
            html.Div(
                [
                    _input(f"f-{f.id}", s["fields"][f.id], f.label, f.help),
                    html.Div(id=f"err-{f.id}", className="field-error", style=ERR),
                ],
                style={"width": "24%", "display": "inline-block", "verticalAlign": "top"},
            )
            for f in compute.FIELDS
            if f.section == section
        ]
        name = next(f for f in compute.FIELDS if f.section == section)
        if name.path[0] not in compute.LISTS:
            fields += [html.H4(section, style={"margin": "12px 8px 0"}), *inputs]
            continue
        # a memory level or link: folded while it has no name (one typed adds it;
        # register() keeps the fold and the title following the name)
        there = bool(str(s["fields"][name.id]).strip())
        head = html.Summary(section_title(section, there), id=f"summary-{name.id}",
                            style={"fontWeight": 600})  # fmt: skip
        fields.append(html.Details([head, *inputs], open=there, id=f"section-{name.id}",
                                   style={"margin": "12px 8px 0"}))  # fmt: skip
    return html.Div(
        [
            html.Div(
                [
                    html.Label("start from a preset", htmlFor="preset"),
                    dcc.Dropdown(
                        preset_names(),
                        s["chip"],
                        id="preset",
                        clearable=False,
                        style={"width": "240px"},
                    ),  # fmt: skip
                    dcc.Upload(
                        html.Button("or load a chip TOML"),
                        id="chip-upload",
                        multiple=False,
                        max_size=compute.MAX_TEXT_BYTES,
                    ),  # fmt: skip
                    html.Div(id="chip-upload-msg", style=ERR),
                ],
                style={"display": "flex", "gap": "12px", "alignItems": "center"},
            ),
            html.Div(fields),
            html.Div(id="chip-error", style=ERR),
            html.H3("derived"),
            html.Div(id="chip-figures"),
            html.Button("download TOML", id="chip-download-btn"),
            dcc.Download(id="chip-download"),
        ],
        id="page-chip",
    )


def _run_page(s: dict) -> html.Div:
    custom = [_input(f"c-{k}", s[f"c-{k}"], k) for k in CUSTOM_KEYS]
    return html.Div(
        [
            html.Div(
                [
                    html.Label("model", htmlFor="model"),
                    dcc.Dropdown(
                        [*model_names(), "custom"],
                        s["model"],
                        id="model",
                        clearable=False,
                        style={"width": "240px"},
                    ),  # fmt: skip
                    dcc.Upload(
                        html.Button("or load a config.json"),
                        id="config-upload",
                        max_size=compute.MAX_TEXT_BYTES,
                    ),  # fmt: skip
                    html.Div(id="config-msg"),
                    dcc.Store(id="config-key", data=s["config"]),
                ],
                style={"display": "flex", "gap": "12px", "alignItems": "center"},
            ),
            html.Div(
                custom,
                id="custom-fields",
                style={"display": "flex"} if s["model"] == "custom" else {"display": "none"},
            ),  # fmt: skip
            html.Div(
                [
                    dcc.RadioItems(["prefill", "decode"], s["phase"], id="phase", inline=True),
                    _input("batch", s["batch"], "batch"),
                    _input("seq", s["seq"], "sequence (prefill)"),
                    _input("context", s["context"], "context (decode)"),
                ],
                style={"display": "flex", "alignItems": "end"},
            ),
            html.Label("against"),
            dcc.Dropdown(preset_names(), s["vs"], id="vs", multi=True),
            html.Div(id="run-error", style=ERR),
            html.Div(
                [
                    html.Button("run the cycle engine on one layer", id="cycle-btn"),
                    html.Button("download its Perfetto trace", id="cycle-trace-btn"),
                    html.A(
                        "open ui.perfetto.dev (then open the trace file)",
                        href="https://ui.perfetto.dev",
                        target="_blank",
                        rel="noopener",
                    ),  # fmt: skip
                    dcc.Store(id="cycle-trace"),
                    dcc.Download(id="cycle-download"),
                ],
                style={"display": "flex", "gap": "12px", "alignItems": "center"},
            ),
            dcc.Loading(html.Div(id="cycle-table")),
            html.H2(id="speed-vs-h100"),
            html.Div(id="run-table"),
            html.Div(id="run-charts"),
        ],
        id="page-run",
    )


def _cluster_page(s: dict) -> html.Div:
    return html.Div(
        [
            html.H3("training"),
            html.Div(
                [
                    _input("chips", s["chips"], "chips (--chips)"),
                    _input("tseq", s["tseq"], "sequence (--seq)"),
                    _input("tp", s["tp"], "tensor parallel (--tp)", "blank: searched (slower)"),
                    _input("pp", s["pp"], "pipeline parallel (--pp)", "blank: searched (slower)"),
                    _pick("tdtype", s["tdtype"], "dtype (--dtype)", compute.DTYPES),
                    _pick(
                        "trec",
                        s["trec"],
                        "recompute (--recompute)",
                        compute.RECOMPUTES,
                        blank="searched",
                    ),
                    _pick("topts", s["topts"], "run options", compute.TRAIN_OPTIONS, multi=True),
                ],
                style={"display": "flex", "flexWrap": "wrap"},
            ),
            *_outputs("train"),
            html.H3("serving"),
            html.Div(
                [
                    _input("schips", s["schips"], "chips (--chips)"),
                    _input("isl", s["isl"], "input tokens (--isl)"),
                    _input("osl", s["osl"], "output tokens (--osl)"),
                    _pick("sdtype", s["sdtype"], "dtype (--dtype)", compute.DTYPES),
                    _input("stp", s["stp"], "tensor parallel (--tp)", "blank: searched"),
                    _input("spp", s["spp"], "pipeline parallel (--pp)", "blank: searched"),
                    _input("ttft", s["ttft"], "TTFT SLO (--ttft-slo)", "e.g. 2 s; blank: none"),
                    _input("tpot", s["tpot"], "TPOT SLO (--tpot-slo)", "e.g. 50 ms; blank: none"),
                    _pick("sopts", s["sopts"], "run options", compute.SERVE_OPTIONS, multi=True),
                ],
                style={"display": "flex", "flexWrap": "wrap"},
            ),
            *_outputs("serve"),
        ],
        id="page-cluster",
    )


def _silicon_page(s: dict) -> html.Div:
    return html.Div(
        [
            html.Label("re-target to node", htmlFor="node"),
            dcc.Dropdown(
                [{"label": "(the chip's own)", "value": ""}, *nodes()],
                s["node"],
                id="node",
                clearable=False,
                style={"width": "240px"},
            ),  # fmt: skip
            *_outputs("silicon"),
        ],
        id="page-silicon",
    )


def _site_page(s: dict) -> html.Div:
    return html.Div(
        [
            _input("power", s["power"], "facility power", "e.g. 100 MW, 1 GW"),
            *_outputs("site"),
        ],
        id="page-site",
    )


def _decide_page(s: dict) -> html.Div:
    return html.Div(
        [
            html.P(
                "Build or buy, on the scenario the studio was started with (--scenario): "
                "uncertain inputs sampled quasi-randomly, the verdict with its probability."
            ),
            dcc.Checklist(
                [{"label": "build the chip from the Chip page", "value": "chip"}],
                ["chip"],
                id="decide-chip",
            ),  # fmt: skip
            html.Label("samples", htmlFor="samples"),
            dcc.Dropdown(
                [str(n) for n in compute.SAMPLES],
                s["samples"],
                id="samples",
                clearable=False,
                style={"width": "120px"},
            ),  # fmt: skip
            dcc.Checklist(
                [{"label": "drivers (Sobol indices; seconds, not ms)", "value": "sobol"}],
                [],
                id="decide-sobol",
            ),  # fmt: skip
            *_outputs("decide"),
        ],
        id="page-decide",
    )


def _sweep_page(s: dict) -> html.Div:
    return html.Div(
        [
            html.P(
                "The sweep the studio was started with (--space, --store): its Pareto front. "
                "Click a point to open its chip on the Chip page."
            ),
            html.Div(id="sweep-error", style=ERR),
            dcc.Loading(
                [
                    dcc.Graph(id="sweep-pareto", figure={"data": [], "layout": {}}),
                    html.Div(id="sweep-table"),
                ]
            ),
        ],
        id="page-sweep",
    )


def layout(query: str = "") -> html.Div:
    s = initial_state(query)
    return html.Div(
        [
            dcc.Location(id="url", refresh=False),
            html.H1("chipforge studio"),
            dcc.Tabs(
                id="page",
                value=s["page"],
                children=[dcc.Tab(label=TITLES[p], value=p, id=f"tab-{p}") for p in PAGES],
            ),  # fmt: skip
            html.Div(
                [
                    html.Button("download this page as an HTML report", id="export-html"),
                    html.Button("as JSON", id="export-json"),
                    dcc.Download(id="export"),
                    html.Button("save state", id="state-save"),
                    dcc.Download(id="state-download"),
                    dcc.Upload(
                        html.Button("load state"),
                        id="state-upload",
                        max_size=compute.STATE_MAX_BYTES,
                    ),  # fmt: skip
                    dcc.Location(id="state-go", refresh=True),
                    html.Span(id="export-error", style=ERR),
                ],
                style={"display": "flex", "gap": "12px", "margin": "8px 0"},
            ),
            dcc.Store(id="base", data=s["base"]),
            dcc.Store(id="chip", data=None),
            html.Div(
                [
                    _chip_page(s),
                    _run_page(s),
                    _cluster_page(s),
                    _silicon_page(s),
                    _site_page(s),
                    _decide_page(s),
                    _sweep_page(s),
                ],
                style={"padding": "8px"},
            ),
        ],
        style=STYLE,
    )


# ---- callbacks (plain functions; `register` wires them) -------------------------------------


def chip_source(preset, contents, click=None, trigger=None, sweep=(None, None)):
    """A preset picked, a chip TOML uploaded or a sweep point clicked (`trigger`: which; in a
    request, the input that fired): the form's base, a message, the page to show and every
    field's value."""
    trigger = trigger or ctx.triggered_id
    page = no_update
    try:
        if trigger == "chip-upload" and contents:
            base = f"upload:{compute.save_upload(contents, 'chip')}"
            spec = compute.base_chip(base)
            msg = f"loaded {spec.name}"
        elif trigger == "sweep-pareto" and click:
            point = click["points"][0]
            spec = compute.sweep_point(*sweep, point["x"], point["y"])
            base = f"upload:{compute.keep(compute.chip_toml(spec).encode(), 'chip')}"
            msg, page = "opened from the sweep", "chip"
        else:
            base, msg = f"preset:{preset}", ""
            spec = compute.base_chip(base)
    except ChipforgeError as e:
        return (no_update, str(e), no_update, *([no_update] * len(compute.FIELDS)))
    values = compute.form_values(spec)
    return (base, msg, page, *[values[f] for f in compute.FIELD_IDS])


def chip_update(base, *values):
    """The edited chip: its dump (for the other pages), an error per field, derived figures."""
    spec, errors = compute.build_chip(base, dict(zip(compute.FIELD_IDS, values, strict=True)))
    field_errors = [errors.get(f, "") for f in compute.FIELD_IDS]
    if spec is None:
        return (None, errors.get("_", "fix the field marked above"), html.Div(), *field_errors)
    try:
        figures = _table(compute.chip_figures(spec))
    except ChipforgeError as e:
        return (None, str(e), html.Div(), *field_errors)
    return (spec.model_dump(mode="json"), "", figures, *field_errors)


def _safe_model(model, config_key, custom_values):
    try:
        return _model(model, config_key, custom_values)
    except ChipforgeError as e:
        return e


def _model(model, config_key, custom_values):
    return compute.model_source(
        model, dict(zip(CUSTOM_KEYS, custom_values, strict=True)), config_key
    )


def run_update(chip, model, config_key, phase, batch, seq, context, vs, *custom):
    """The chip against the chosen chips on one workload: headline, table, charts."""
    if not chip:
        return "fix the chip first (Chip page)", "", html.Div(), []
    try:
        spec = _spec(chip)
        wl = compute.workload(_model(model, config_key, custom), phase, batch, seq, context)
        out = compute.run(spec, wl, list(vs or []))
    except ChipforgeError as e:
        return str(e), "", html.Div(), []
    rows = out["rows"]
    table = _table([list(r.values()) for r in rows], list(rows[0]))
    charts = compare_charts({"results": out["results"]}, {spec.name: spec})
    head = f"{spec.name}: {out['speed_vs_h100']:.3g}x the H100 on {out['results'][0]['workload']}"
    return "", head, table, _graphs("run", charts)


def cycle_run(_clicks, chip, model, config_key, phase, batch, seq, context, *custom):
    """The cycle engine on one layer of the Run page's workload: a table and the trace."""
    if not chip:
        return html.Div("fix the chip first (Chip page)", style=ERR), None
    try:
        m = _model(model, config_key, custom)
        out = compute.cycle_layer(_spec(chip), m, phase, batch, seq, context)
    except ChipforgeError as e:
        return html.Div(str(e), style=ERR), None
    return _table(out["rows"]), out["trace"]


def cycle_download(_clicks, trace):
    if not trace:
        return no_update
    return {"content": json.dumps(trace), "filename": "studio-cycle-trace.json"}


def config_upload(contents):
    """An uploaded config.json, checked by the model loader: its key, and what it holds."""
    if not contents:
        return no_update, ""
    try:
        key = compute.save_upload(contents, "config")
        m = compute.cf.load_model(compute.upload_path(key))
    except ChipforgeError as e:
        return None, html.Span(str(e), style=ERR)
    return key, f"config.json: {m.name}, {m.layers} layers, {m.params() / 1e9:.3g} B parameters"


def _answer(prefix: str, chip, figure, charts, *args):
    """(error, table, charts) of `figure(spec, *args)` from `studio.compute`."""
    if not chip:
        return "fix the chip first (Chip page)", html.Div(), []
    try:
        out = figure(_spec(chip), *args)
    except ChipforgeError as e:
        return str(e), html.Div(), []
    return "", _table(out["rows"]), _graphs(prefix, charts(out["data"]))


def train_update(chip, model, config_key, chips, seq, tp, pp, dtype, recompute, options,
                 *custom):  # fmt: skip
    """The training plan of the chip (Cluster page)."""
    m = _safe_model(model, config_key, custom)
    if isinstance(m, ChipforgeError):
        return str(m), html.Div(), []
    return _answer("train", chip, compute.train, train_charts, m, chips, seq, tp, pp, dtype,
                   recompute, options)  # fmt: skip


def serve_update(chip, model, config_key, chips, isl, osl, dtype, options, tp, pp, ttft, tpot,
                 *custom):  # fmt: skip
    """The serving plan of the chip (Cluster page)."""
    m = _safe_model(model, config_key, custom)
    if isinstance(m, ChipforgeError):
        return str(m), html.Div(), []
    return _answer("serve", chip, compute.serve, serve_charts, m, chips, isl, osl, dtype,
                   options, tp, pp, ttft, tpot)  # fmt: skip


def silicon_update(chip, node):
    """Area, cost and power by block on the chosen node, and the design on every node."""
    err, table, graphs = _answer("silicon", chip, compute.silicon, cost_charts, node)
    if err:
        return err, table, graphs
    nodes_ = compute.by_node(_spec(chip))
    charts = bar("node_cost", "Unit cost on each node (the same design re-targeted)",
                 {n: v["unit_cost_usd"] for n, v in nodes_.items()}, "USD")  # fmt: skip
    charts += bar("node_area", "Die area on each node", {n: v["die_area_mm2"] for n, v in
                  nodes_.items()}, "mm²")  # fmt: skip
    sens = compute.silicon_sensitivity(_spec(chip), node)
    charts += cost_tornado(sens["sensitivity"], sens["base_usd"], "cost_tornado")
    inputs = html.Div([html.H3("sensitivity: the unit cost at each input's ends"),
                       _table(sens["rows"], ["input", "low .. high", "unit cost"])])  # fmt: skip
    return err, [table, inputs], graphs + _graphs("silicon", charts)


def site_update(chip, base, power):
    return _answer("site", chip, compute.site, datacenter_charts, base, power)


def decide_update(scenario, chip, base, use_chip, samples, sobol):
    """Build or buy on the start-up scenario (Decision page)."""
    return _answer(
        "decide", chip, compute.decide, decide_charts, base, scenario, "chip" in (use_chip or []),
        samples, "sobol" in (sobol or []),
    )  # fmt: skip


def sweep_update(sweep):
    """The start-up sweep's Pareto front (Sweep page): error, figure, table."""
    try:
        out = compute.sweep_front(*sweep)
    except ChipforgeError as e:
        return str(e), {"data": [], "layout": {}}, html.Div()
    charts = sweep_charts(out["data"])
    fig = html_safe({"data": charts[0]["data"], "layout": charts[0]["layout"]}) if charts else {}
    return "", fig, _table(out["rows"], out["head"])


def page_sections(
    page,
    chip,
    base,
    controls: dict,
    vs,
    config_key,
    use_chip,
    sobol,
    scenario=None,
    sweep=(None, None),
) -> list[tuple[str, str, dict]]:
    """The (report kind, heading, data) sections of a page, as the matching commands' JSON;
    recomputed through `studio.compute` from the page's controls."""
    c = controls
    if page == "sweep":
        return [("sweep", "Pareto front of the sweep", compute.sweep_front(*sweep)["data"])]
    if not chip:
        raise ChipforgeError("fix the chip first (Chip page)")
    spec = _spec(chip)
    model = _model(c["model"], config_key, [c[f"c-{k}"] for k in CUSTOM_KEYS])
    if page == "run":
        wl = compute.workload(model, c["phase"], c["batch"], c["seq"], c["context"])
        out = compute.run(spec, wl, list(vs or []))
        return [("compare", f"{spec.name} against {', '.join(vs or [])}: {wl}",
                 {"workload": wl, "results": out["results"]})]  # fmt: skip
    if page == "cluster":
        train = compute.train(spec, model, c["chips"], c["tseq"], c["tp"], c["pp"], c["tdtype"],
                              c["trec"], c["topts"])["data"]  # fmt: skip
        serve = compute.serve(spec, model, c["schips"], c["isl"], c["osl"], c["sdtype"],
                              c["sopts"], c["stp"], c["spp"], c["ttft"],
                              c["tpot"])["data"]  # fmt: skip
        return [("train", f"training {spec.name}", train), ("serve", f"serving {spec.name}", serve)]
    if page == "site":
        return [("datacenter", f"a site of {spec.name}",
                 compute.site(spec, base, c["power"])["data"])]  # fmt: skip
    if page == "decide":
        data = compute.decide(spec, base, scenario, "chip" in (use_chip or []), c["samples"],
                              "sobol" in (sobol or []))["data"]  # fmt: skip
        return [("decide", "build or buy", data)]
    node = c["node"] if page == "silicon" else ""
    return [("cost", f"silicon of {spec.name}", compute.silicon(spec, node)["data"])]


def export(
    kind,
    page,
    chip,
    base,
    vs,
    config_key,
    use_chip,
    sobol,
    *values,
    scenario=None,
    sweep=(None, None),
):
    """The page as the CLI's HTML report or JSON (`kind`: html or json), for dcc.Download."""
    from chipforge.report import render_report, to_json
    from chipforge.report.html import render_sections

    controls = dict(zip(CONTROLS, values, strict=True))
    try:
        sections = page_sections(page, chip, base, controls, vs, config_key, use_chip, sobol,
                                 scenario, sweep)  # fmt: skip
    except ChipforgeError as e:
        return no_update, str(e)
    name = f"studio-{page}"
    if kind == "json":
        data = sections[0][2] if len(sections) == 1 else {k: d for k, _, d in sections}
        return {"content": to_json(data), "filename": f"{name}.json"}, ""
    if len(sections) == 1:
        html_text = render_report(sections[0][0], sections[0][2], title=sections[0][1])
    else:
        html_text = render_sections(sections, f"chipforge studio: {page}")
    return {"content": html_text, "filename": f"{name}.html"}, ""


STATE_KEY = "chipforge_studio_state"


FILE_PARAMS = ("chipz", "chipkey", "configz", "configkey")


def state_save(_clicks, search, base=None, config=None):
    """The page's state as a small JSON file: its URL query and the text of the uploaded
    files it uses (a chip TOML, a config.json), so it reopens on another studio too."""
    try:
        files = compute.state_files(base or "", config)
    except ChipforgeError:
        files = {}  # an upload this studio no longer holds: the query alone
    state = {STATE_KEY: 1, "query": search or "", **({"files": files} if files else {})}
    return {"content": json.dumps(state, indent=2) + "\n", "filename": "studio-state.json"}


def state_load(contents):
    """A saved state file: the URL to open (its query, re-checked as a shared URL is; its
    files kept again and read back by the bounded loaders), or an error."""
    try:
        key = compute.save_upload(contents, "state", compute.STATE_MAX_BYTES)
        data = compute.load_state(compute.upload_path(key))
        if (
            not isinstance(data, dict)
            or STATE_KEY not in data
            or not isinstance(data.get("query"), str)
        ):
            return no_update, f"not a studio state file (no {STATE_KEY!r} and query)"
        files = compute.restore_files(data.get("files"))
    except ChipforgeError as e:
        return no_update, str(e)
    q = [(k, v) for k, v in parse_qsl(data["query"].lstrip("?"), keep_blank_values=True)
         if k not in FILE_PARAMS]  # fmt: skip
    st = initial_state(urlencode([*q, *files.items()]))
    controls = {k: st[k] for k in CONTROLS}
    return "./" + query_of(st["page"], st["base"], st["fields"], st["vs"], controls,
                           st["config"]), ""  # fmt: skip


def chip_download(_clicks, chip):
    if not chip:
        return no_update
    spec = _spec(chip)
    return {"content": compute.chip_toml(spec), "filename": f"{spec.name}.toml"}


def url_update(page, base, vs, config, *values):
    n = len(compute.FIELD_IDS)
    fields = dict(zip(compute.FIELD_IDS, values[:n], strict=True))
    controls = dict(zip(CONTROLS, values[n:], strict=True))
    return query_of(page, base, fields, vs, controls, config)


def show_page(page):
    return [{"display": "block" if p == page else "none"} for p in PAGES]


def show_custom(model):
    return {"display": "flex"} if model == "custom" else {"display": "none"}


def when_shown(page: str, fn, outputs: int):
    """`fn` run only while `page` is the one shown (the first argument): an edit recomputes
    what the user is looking at, and opening a page brings it up to date."""

    def update(shown, *args):
        if shown != page:
            return (no_update,) * outputs
        return fn(*args)

    update.__name__ = fn.__name__
    return update


def register(app: Dash, scenario=None, sweep=(None, None)) -> None:
    fields = [f"f-{f}" for f in compute.FIELD_IDS]
    for f in compute.FIELDS:  # a level's or link's section: open and titled while it is named
        if f.path[0] in compute.LISTS and f.path[-1] == "name":
            app.clientside_callback(
                "function(v) { const named = !!(v && v.trim());"
                f" return [named, named ? {json.dumps(section_title(f.section, True))}"
                f" : {json.dumps(section_title(f.section, False))}]; }}",
                Output(f"section-{f.id}", "open"), Output(f"summary-{f.id}", "children"),
                Input(f"f-{f.id}", "value"),
            )  # fmt: skip
    custom = [Input(f"c-{k}", "value") for k in CUSTOM_KEYS]
    model = [Input("model", "value"), Input("config-key", "data")]
    app.callback(
        Output("base", "data"), Output("chip-upload-msg", "children"), Output("page", "value"),
        *[Output(f, "value") for f in fields],
        Input("preset", "value"), Input("chip-upload", "contents"),
        Input("sweep-pareto", "clickData"), prevent_initial_call=True,
    )(lambda preset, upload, click: chip_source(preset, upload, click, sweep=sweep))  # fmt: skip
    app.callback(
        Output("sweep-error", "children"), Output("sweep-pareto", "figure"),
        Output("sweep-table", "children"), Input("page", "value"),
    )(when_shown("sweep", lambda: sweep_update(sweep), 3))  # fmt: skip
    app.callback(
        Output("chip", "data"), Output("chip-error", "children"),
        Output("chip-figures", "children"),
        *[Output(f"err-{f}", "children") for f in compute.FIELD_IDS],
        Input("base", "data"), *[Input(f, "value") for f in fields],
    )(chip_update)  # fmt: skip
    app.callback(
        Output("run-error", "children"), Output("speed-vs-h100", "children"),
        Output("run-table", "children"), Output("run-charts", "children"),
        Input("page", "value"), Input("chip", "data"), *model, Input("phase", "value"),
        Input("batch", "value"), Input("seq", "value"), Input("context", "value"),
        Input("vs", "value"), *custom,
    )(when_shown("run", run_update, 4))  # fmt: skip
    app.callback(
        Output("cycle-table", "children"), Output("cycle-trace", "data"),
        Input("cycle-btn", "n_clicks"), State("chip", "data"), State("model", "value"),
        State("config-key", "data"), State("phase", "value"), State("batch", "value"),
        State("seq", "value"), State("context", "value"),
        *[State(f"c-{k}", "value") for k in CUSTOM_KEYS], prevent_initial_call=True,
    )(cycle_run)  # fmt: skip
    app.callback(
        Output("cycle-download", "data"), Input("cycle-trace-btn", "n_clicks"),
        State("cycle-trace", "data"), prevent_initial_call=True,
    )(cycle_download)  # fmt: skip
    app.callback(
        Output("config-key", "data"), Output("config-msg", "children"),
        Input("config-upload", "contents"), prevent_initial_call=True,
    )(config_upload)  # fmt: skip
    app.callback(
        Output("train-error", "children"), Output("train-table", "children"),
        Output("train-charts", "children"),
        Input("page", "value"), Input("chip", "data"), *model, Input("chips", "value"),
        Input("tseq", "value"), Input("tp", "value"), Input("pp", "value"),
        Input("tdtype", "value"), Input("trec", "value"), Input("topts", "value"), *custom,
    )(when_shown("cluster", train_update, 3))  # fmt: skip
    app.callback(
        Output("serve-error", "children"), Output("serve-table", "children"),
        Output("serve-charts", "children"),
        Input("page", "value"), Input("chip", "data"), *model, Input("schips", "value"),
        Input("isl", "value"), Input("osl", "value"), Input("sdtype", "value"),
        Input("sopts", "value"), Input("stp", "value"), Input("spp", "value"),
        Input("ttft", "value"), Input("tpot", "value"), *custom,
    )(when_shown("cluster", serve_update, 3))  # fmt: skip
    app.callback(
        Output("silicon-error", "children"), Output("silicon-table", "children"),
        Output("silicon-charts", "children"),
        Input("page", "value"), Input("chip", "data"), Input("node", "value"),
    )(when_shown("silicon", silicon_update, 3))  # fmt: skip
    app.callback(
        Output("site-error", "children"), Output("site-table", "children"),
        Output("site-charts", "children"),
        Input("page", "value"), Input("chip", "data"), State("base", "data"),
        Input("power", "value"),
    )(when_shown("site", site_update, 3))  # fmt: skip
    app.callback(
        Output("decide-error", "children"), Output("decide-table", "children"),
        Output("decide-charts", "children"),
        Input("page", "value"), Input("chip", "data"), State("base", "data"),
        Input("decide-chip", "value"), Input("samples", "value"), Input("decide-sobol", "value"),
    )(when_shown("decide", lambda *a: decide_update(scenario, *a), 3))  # fmt: skip
    app.callback(
        Output("export", "data"), Output("export-error", "children"),
        Input("export-html", "n_clicks"), Input("export-json", "n_clicks"),
        State("page", "value"), State("chip", "data"), State("base", "data"),
        State("vs", "value"), State("config-key", "data"), State("decide-chip", "value"),
        State("decide-sobol", "value"), *[State(c, "value") for c in CONTROLS],
        prevent_initial_call=True,
    )(lambda _h, _j, *a: export("json" if ctx.triggered_id == "export-json" else "html", *a,
                                scenario=scenario, sweep=sweep))  # fmt: skip
    app.callback(
        Output("state-download", "data"), Input("state-save", "n_clicks"),
        State("url", "search"), State("base", "data"), State("config-key", "data"),
        prevent_initial_call=True,
    )(state_save)  # fmt: skip
    app.callback(
        Output("state-go", "href"), Output("export-error", "children", allow_duplicate=True),
        Input("state-upload", "contents"), prevent_initial_call=True,
    )(state_load)  # fmt: skip
    app.callback(
        Output("chip-download", "data"), Input("chip-download-btn", "n_clicks"),
        State("chip", "data"), prevent_initial_call=True,
    )(chip_download)  # fmt: skip
    app.callback(
        Output("url", "search"),
        Input("page", "value"), Input("base", "data"), Input("vs", "value"),
        Input("config-key", "data"), *[Input(f, "value") for f in fields],
        *[Input(c, "value") for c in CONTROLS],
    )(url_update)  # fmt: skip
    app.callback(*[Output(f"page-{p}", "style") for p in PAGES], Input("page", "value"))(show_page)
    app.callback(Output("custom-fields", "style"), Input("model", "value"))(show_custom)


def referrer_query() -> str:
    """The query string of the page that asked for the layout (its Referer), so a shared
    URL opens the state it names."""
    from flask import has_request_context, request

    if not has_request_context() or not request.referrer:
        return ""
    return urlparse(request.referrer).query
