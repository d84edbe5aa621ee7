"""A build-or-buy scenario: what is fixed (chips, sites, workloads, dates) and what is uncertain
(every number with a default, a source or the word "assumption", and a range).

`load_scenario(path)` reads a TOML; any uncertain input may be a number (its value, range zero
wide) or a table `{value = .., low = .., high = .., source = ".."}`. Figures in brackets are rows
of chipforge/data/*.csv (program.csv for the build program).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from chipforge import userfile
from chipforge.datacenter.site import site_watts
from chipforge.errors import ChipforgeError, check_name
from chipforge.request_defaults import SITE_ISL, SITE_OSL

MAX_SCENARIO_BYTES = 1 << 20


@dataclass(frozen=True)
class Param:
    """One uncertain input: `value` is the nominal, sampled uniformly in [low, high]."""

    value: float
    low: float
    high: float
    source: str
    unit: str = ""

    def at(self, u):
        """The value at unit-cube coordinate(s) `u` (a zero-wide range ignores `u`)."""
        return self.low + (self.high - self.low) * u


def P(value: float, low: float, high: float, source: str, unit: str = "") -> Param:
    return Param(float(value), float(low), float(high), source, unit)


# Uncertain inputs by section. Ranges bracket the cited spreads; ends without a source say so.
DEFAULTS: dict[str, dict[str, Param]] = {
    "build": {
        "design_months": P(
            24,
            18,
            30,
            "design start to tape-out. TPU v1 went from start to deployment in 15 months "
            "[prog-tpu1-design-to-deploy] (28 nm, one small die); a 2-die N3 part with HBM: "
            "assumption",
            "months",
        ),
        "fab_months": P(
            4,
            3,
            5,
            "tape-out to first packaged silicon: ~2 months hot lot [prog-tapeout-to-samples] "
            "+ CoWoS packaging and boards (assumption)",
            "months",
        ),
        "qualification_months": P(
            6,
            4,
            9,
            "first silicon to volume: mass-production samples ~20 weeks after tape-out "
            "[prog-tapeout-to-samples]; Blackwell sampled a half year before its ramp "
            "[prog-blackwell-respin]",
            "months",
        ),
        "respin_probability": P(
            0.3,
            0.1,
            0.5,
            "assumption; Blackwell needed a photomask change for yield [prog-blackwell-respin]",
        ),
        "respin_draw": P(
            0.5, 0.0, 1.0, "uniform draw: a respin happens when it is below the respin probability"
        ),
        "respin_delay_months": P(
            6,
            3,
            9,
            "Blackwell: planned summer shipments slipped ~2 quarters [prog-blackwell-respin]; "
            "a metal-only respin ~10 weeks [prog-tapeout-to-samples]",
            "months",
        ),
        "respin_mask_share": P(
            0.5,
            0.3,
            1.0,
            "share of a mask set a respin remakes: metal layers (~0.3) to all (1.0): assumption",
        ),
        "ramp_quarters": P(
            3, 2, 5, "quarters from volume start to full wafer starts: assumption", "quarters"
        ),
        "wafer_starts_per_month": P(
            3000,
            1500,
            5000,
            "N3 wafer starts allocated to the program: assumption (a few % of TSMC's N3 output)",
            "wafers/month",
        ),
        "cowos_wafers_per_month": P(
            5000,
            2000,
            10000,
            "CoWoS allocation: ~5 % of TSMC's 95k/month end 2026 [prog-cowos-2026] "
            "(Broadcom's TPU share ~15k/month); the allocation itself is an assumption",
            "wafers/month",
        ),
        "packages_per_cowos_wafer": P(
            13,
            9,
            16,
            "Rubin 9 [prog-packages-per-cowos-rubin], TPU ~13.5 "
            "[prog-packages-per-cowos-tpu]; 16: assumption",
            "packages/wafer",
        ),
        "hbm_stacks_per_quarter": P(
            2.4e6, 1.2e6, 4e6, "HBM allocation: assumption (8 stacks a chip)", "stacks/quarter"
        ),
        "yield_initial_share": P(
            0.6,
            0.4,
            0.85,
            "die yield at first silicon as a share of the mature yield (silicon model): assumption",
            "",
        ),
        "yield_learning_quarters": P(
            3, 2, 6, "time constant of yield learning: assumption", "quarters"
        ),
        "wafer_price_x": P(
            1.0,
            0.7,
            1.3,
            "x N3 $20,000: 4N as NVIDIA pays it up to the N2 forecast "
            "(datacenter KNOBS wafer_price)",
        ),
        "hbm_price_x": P(1.0, 0.7, 1.5, "x $15/GB HBM3E .. HBM4 (datacenter KNOBS hbm_price)"),
        "built_chip_markup": P(
            1.5,
            1.2,
            2.5,
            "silicon cost -> delivered module incl. partner margin "
            "(datacenter KNOBS built_chip_markup)",
        ),
        "nre_masks_usd": P(
            40e6, 30e6, 60e6, "N3 mask set [prog-mask-set-n3]; ends: assumption", "USD"
        ),
        "nre_ip_usd": P(
            60e6, 30e6, 120e6, "SerDes, HBM PHY, die-to-die IP licences: assumption", "USD"
        ),
        "team_usd_per_year": P(
            200e6,
            150e6,
            300e6,
            "design, verification and software team, ~500 engineers x "
            "$400k loaded: assumption; with IP and masks it brackets the $590M 3 nm design "
            "cost [prog-design-cost-n3]",
            "USD/year",
        ),
        "partner_fee_usd": P(
            150e6,
            50e6,
            300e6,
            "back-end partner NRE (physical design, packaging, test): "
            "assumption; its per-unit margin is in the markup",
            "USD",
        ),
        "mfu_x": P(
            0.9,
            0.7,
            1.0,
            "the house chip's utilisation relative to its planned MFU (young "
            "compiler and kernels): assumption",
        ),
    },
    "buy": {
        "price_usd": P(
            35000,
            30000,
            45000,
            "Blackwell '$30,000-40,000' [dcx-blackwell-street]; 45k: a "
            "shortage premium (assumption)",
            "USD",
        ),
        "price_change_per_year": P(
            -0.10, -0.25, 0.0, "per-GPU price drift as newer parts land: assumption", "1/year"
        ),
        "lead_months": P(
            6,
            3,
            12,
            "order to delivery; Blackwell was 'booked out 12 months' (Morgan Stanley "
            "via DatacenterDynamics, 2024); 3: assumption",
            "months",
        ),
        "allocation_per_quarter": P(
            150000,
            75000,
            300000,
            "GPUs a quarter the vendor allocates to this buyer: "
            "assumption (Abilene's ~400k GB200 [dcx-abilene-gpus] arrive over ~1.5 years)",
            "GPUs/quarter",
        ),
        "mfu_x": P(1.0, 0.9, 1.1, "the GPU's utilisation relative to its planned MFU: assumption"),
        "cloud_usd_per_gpu_hour": P(
            6.0,
            3.0,
            10.5,
            "renting what the fleet cannot serve, per GPU-hour of the bought "
            "chip: CoreWeave GB200 on demand $10.50 [dc-price-cw-gb200] (the high end), H100 "
            "$2.99-6.16 [dc-price-lambda-h100, dc-price-cw-h100]; 6: assumption for "
            "committed Blackwell capacity",
            "USD/GPU-hour",
        ),
        "next_price_usd": P(
            45000,
            38000,
            55000,
            "the next generation's price (buy.next_chip, e.g. GB300): "
            "assumption, above Blackwell's $30-40k [dcx-blackwell-street]",
            "USD",
        ),
    },
    "site": {
        "pue": P(1.2, 1.1, 1.4, "average PUE [dc-pue-google-2024, dc-pue-uptime-2024]"),
        "pue_peak": P(1.35, 1.25, 1.5, "design-peak PUE [dc-pue-peak-vs-annual]: assumption"),
        "redundancy": P(
            0.8, 0.67, 1.0, "usable grid share: N+1 0.8 [dc-redundancy-n1]; 3N/2 0.67 .. N 1.0"
        ),
        "it_headroom": P(
            1.1, 1.05, 1.2, "provisioned IT per typical W [dc-nvl72-power]; ends: assumption"
        ),
        "facility_usd_per_w": P(
            15,
            10,
            20,
            "$10-12M/MW conventional, >= $20M/MW AI liquid [dc-capex-standard, dc-capex-ai]",
            "USD/W",
        ),
        "electricity_usd_per_kwh": P(
            0.06,
            0.03,
            0.12,
            "US industrial ~$0.08 [dcx-eia-industrial]; ends: assumption",
            "USD/kWh",
        ),
        "build_delay_months": P(0, 0, 6, "site energisation slip: assumption", "months"),
    },
    "workload": {
        "serve_growth_per_quarter": P(
            0.15, 0.05, 0.30, "serving demand growth per quarter: assumption", "1/quarter"
        ),
    },
    "finance": {
        "cost_of_capital": P(0.08, 0.06, 0.12, "WACC: assumption (datacenter default 0.08)"),
        "chip_life_y": P(5, 4, 6, "server depreciation 5-6 y [dcx-server-life]", "years"),
        "tax_rate": P(0.0, 0.0, 0.0, "off unless given", ""),
    },
}


# What each input means, for people (tables, charts); the JSON keeps `section.name` too.
LABELS = {
    "build.design_months": "design time to tape-out",
    "build.fab_months": "tape-out to first silicon",
    "build.qualification_months": "first silicon to volume",
    "build.respin_probability": "chance first silicon needs a respin",
    "build.respin_draw": "whether a respin happens",
    "build.respin_delay_months": "delay a respin adds",
    "build.respin_mask_share": "share of masks a respin remakes",
    "build.ramp_quarters": "volume ramp length",
    "build.wafer_starts_per_month": "N3 wafer starts allocated",
    "build.cowos_wafers_per_month": "CoWoS wafers allocated",
    "build.packages_per_cowos_wafer": "packages per CoWoS wafer",
    "build.hbm_stacks_per_quarter": "HBM stacks allocated",
    "build.yield_initial_share": "die yield at first silicon",
    "build.yield_learning_quarters": "yield learning time",
    "build.wafer_price_x": "wafer price",
    "build.hbm_price_x": "HBM price",
    "build.built_chip_markup": "module cost over silicon (partner margin)",
    "build.nre_masks_usd": "mask set cost",
    "build.nre_ip_usd": "IP licences",
    "build.team_usd_per_year": "chip team cost per year",
    "build.partner_fee_usd": "back-end partner fee",
    "build.mfu_x": "house chip software maturity (MFU)",
    "buy.price_usd": "GPU price",
    "buy.price_change_per_year": "GPU price drift per year",
    "buy.lead_months": "GPU lead time",
    "buy.allocation_per_quarter": "GPU allocation per quarter",
    "buy.mfu_x": "GPU utilisation (MFU)",
    "buy.cloud_usd_per_gpu_hour": "cloud price per GPU-hour",
    "buy.next_price_usd": "next-generation GPU price",
    "site.pue": "average PUE",
    "site.pue_peak": "design-peak PUE",
    "site.redundancy": "usable grid share (redundancy)",
    "site.it_headroom": "IT provisioning headroom",
    "site.facility_usd_per_w": "datacenter build cost per watt",
    "site.electricity_usd_per_kwh": "electricity price",
    "site.build_delay_months": "site energisation delay",
    "workload.serve_growth_per_quarter": "serving demand growth per quarter",
    "finance.cost_of_capital": "cost of capital",
    "finance.chip_life_y": "hardware life",
    "finance.tax_rate": "tax rate",
}

# The inputs the lab sets itself, by a contract, a staffing level or a design choice, as opposed
# to what it finds out (schedules, respins, yields, market prices, demand, rates): a driver that
# is a lever is one the planner can act on.
LEVERS = frozenset({
    "build.team_usd_per_year", "build.partner_fee_usd", "build.wafer_starts_per_month",
    "build.cowos_wafers_per_month", "build.hbm_stacks_per_quarter", "buy.allocation_per_quarter",
    "buy.price_usd", "buy.next_price_usd", "buy.cloud_usd_per_gpu_hour", "site.redundancy",
    "site.it_headroom", "site.facility_usd_per_w", "site.electricity_usd_per_kwh",
    "finance.chip_life_y",
})  # fmt: skip

# Where an input can lie at all (a range outside is a user error); the rest: >= 0.
DOMAIN: dict[str, tuple[float, float]] = {
    "build.respin_probability": (0.0, 1.0),
    "build.respin_draw": (0.0, 1.0),
    "build.respin_mask_share": (0.0, 1.0),
    "build.yield_initial_share": (0.01, 1.0),
    "build.ramp_quarters": (0.1, 40.0),
    "build.yield_learning_quarters": (0.1, 40.0),
    "build.packages_per_cowos_wafer": (1.0, 200.0),
    "build.built_chip_markup": (1.0, 10.0),
    "build.mfu_x": (0.01, 2.0),
    "buy.mfu_x": (0.01, 2.0),
    "buy.price_change_per_year": (-0.9, 1.0),
    "site.pue": (1.0, 3.0),
    "site.pue_peak": (1.0, 3.0),
    "site.redundancy": (0.01, 1.0),
    "site.it_headroom": (1.0, 2.0),
    "workload.serve_growth_per_quarter": (-0.5, 2.0),
    "finance.cost_of_capital": (0.0, 1.0),
    "finance.chip_life_y": (0.5, 30.0),
    "finance.tax_rate": (0.0, 0.9),
}
MAX_SAMPLES = 65536  # (samples x quarters) arrays, a few dozen of them: ~0.5 GB at the caps
MAX_QUARTERS = 40
# [[sites]], [[workload.train]], [[workload.serve]] entries: each is priced on every sample and
# quarter (20,000 sites took 90 s at 64 samples); a real program has a handful
MAX_ENTRIES = 1000


@dataclass(frozen=True)
class Site:
    name: str
    grid_w: float  # utility capacity (0 when the site gives its IT capacity)
    online_month: float  # months after the scenario start
    it_w: float | None = None  # provisioned IT capacity, when given instead of the grid


@dataclass(frozen=True)
class Train:
    model: str
    tokens: float
    start_month: float
    end_month: float
    # the plan's options, as `chipforge train`'s flags of the same names (cluster.train_options),
    # each a TOML "key=value" line: hashable, and read back once by `options`
    plan: tuple[str, ...] = ()
    # the job's chips (`train --chips`); None: the first site's, capped (rates.ref_chips)
    chips: int | None = None

    @cached_property
    def _options(self) -> dict:
        return train_plan_options(self.plan, self.model)

    def workload(self) -> tuple:
        """The hashable workload (rates.workloads); its ":"-joined text is the JSON's key."""
        size = () if self.chips is None else (f"chips={self.chips}",)
        return ("train", self.model, self.tokens, *self.plan, *size)

    def key(self) -> str:
        """The workload's name in the JSON."""
        return workload_key(self.workload())

    def options(self) -> dict:
        """`plan_training` keyword arguments of `plan` (read on the first call)."""
        return dict(self._options)


@dataclass(frozen=True)
class Serve:
    model: str
    tokens_per_day: float
    start_month: float
    isl: int = SITE_ISL
    osl: int = SITE_OSL
    dtype: str = "bf16"
    # the plan's other options, as `chipforge serve`'s flags of the same names
    # (cluster.serve_options), each a TOML "key=value" line: hashable, read back once by
    # `options`
    plan: tuple[str, ...] = ()

    @cached_property
    def _options(self) -> dict:
        return serve_plan_options(self.plan, self.model, self.isl, self.osl, self.dtype)

    def options(self) -> dict:
        """`plan_serving` keyword arguments of `plan` (isl, osl and dtype are the entry's; read
        on the first call)."""
        return dict(self._options)

    def workload(self) -> tuple:
        """The hashable workload (rates.workloads): without options as it was."""
        return ("serve", self.model, self.isl, self.osl, self.dtype, *self.plan)

    def key(self) -> str:
        """The workload's name in the JSON."""
        return workload_key(self.workload())


def workload_key(workload: tuple) -> str:
    """A workload's name in the JSON: its fields joined by ":"."""
    return ":".join(str(v) for v in workload)


@dataclass(frozen=True)
class Option:
    chip: str
    rack: str | dict | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    start: str  # "2026Q1"
    quarters: int
    build: Option
    buy: Option
    design_start_month: float  # months after `start` (negative: already under way)
    sites: tuple[Site, ...]
    train: tuple[Train, ...]
    serve: tuple[Serve, ...]
    params: dict[str, dict[str, Param]] = field(default_factory=dict)
    samples: int = 16384
    buy_next: Option | None = None  # the generation bought from `next_from_month` on
    next_from_month: float = 0.0
    rent: bool = False  # the buy option rents all its compute (and the build option's bridge)
    fallback_rent: bool = False  # build: rent (not buy GPUs for) what house chips cannot fill

    def names(self) -> list[str]:
        """`section.name` of every uncertain input, in a fixed order."""
        return [f"{s}.{n}" for s, ps in self.params.items() for n in ps]

    def param(self, key: str) -> Param:
        s, n = key.split(".", 1)
        return self.params[s][n]

    def with_param(self, key: str, **kw) -> Scenario:
        s, n = key.split(".", 1)
        params = {k: dict(v) for k, v in self.params.items()}
        params[s][n] = replace(params[s][n], **kw)
        return replace(self, params=params)

    def with_power(self, *, grid_w: float | None = None, it_w: float | None = None) -> Scenario:
        """Every site at utility capacity `grid_w`, or at provisioned IT `it_w`."""
        for flag, w in (("--grid", grid_w), ("--it-power", it_w)):
            if w is not None:
                site_watts(w, f"`{flag}`", error=ChipforgeError)
        if grid_w is not None:
            return replace(self, sites=tuple(replace(s, grid_w=grid_w, it_w=None)
                                             for s in self.sites))  # fmt: skip
        if it_w is not None:
            return replace(self, sites=tuple(replace(s, grid_w=0.0, it_w=it_w)
                                             for s in self.sites))  # fmt: skip
        return self

    def quarter_label(self, q: int) -> str:
        y, k = _quarter(self.start, "scenario.start")
        k += q
        return f"{y + k // 4}Q{k % 4 + 1}"


def _quarter(text: str, where: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d{4})\s*[Qq]([1-4])\s*", str(text))
    if not m:
        raise ChipforgeError(f"`{where}` must be a quarter like 2027Q1, not {text!r}")
    return int(m.group(1)), int(m.group(2)) - 1


def months_between(start: str, date: str, where: str) -> float:
    """Months from the start of quarter `start` to the start of quarter `date`."""
    y0, q0 = _quarter(start, "scenario.start")
    y, q = _quarter(date, where)
    return 12.0 * (y - y0) + 3.0 * (q - q0)


def _param(raw, default: Param, where: str) -> Param:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, dict)):
        raise ChipforgeError(
            f"`{where}` must be a number or a table {{value, low, high, source}}, not {raw!r}"
        )
    if isinstance(raw, (int, float)):
        p = replace(default, value=float(raw), low=float(raw), high=float(raw),
                    source="scenario (fixed)")  # fmt: skip
    else:
        unknown = set(raw) - {"value", "low", "high", "source", "unit"}
        if unknown:
            raise ChipforgeError(f"`{where}` has unknown keys {sorted(unknown)}; use value, "
                                 "low, high, source")  # fmt: skip
        for key in ("value", "low", "high"):
            v = raw.get(key, 0.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ChipforgeError(f"`{where}.{key}` must be a number, not {v!r}")
        value = float(raw.get("value", default.value))
        p = Param(
            value,
            float(raw.get("low", value if "value" in raw else default.low)),
            float(raw.get("high", value if "value" in raw else default.high)),
            str(raw.get("source", default.source if "value" not in raw else "assumption")),
            default.unit,
        )
    for v in (p.value, p.low, p.high):
        if not math.isfinite(v):
            raise ChipforgeError(f"`{where}` must be finite, not {v}")
    if not p.low <= p.value <= p.high:
        raise ChipforgeError(
            f"`{where}` needs low <= value <= high, not {p.low:g} <= {p.value:g} <= {p.high:g}"
        )
    lo, hi = DOMAIN.get(where, (0.0, math.inf))
    if p.low < lo or p.high > hi:
        raise ChipforgeError(f"`{where}` must lie in [{lo:g}, {hi:g}], not [{p.low:g}, {p.high:g}]")
    return p


def _option(raw: dict, where: str, chip: str) -> Option:
    rack = raw.get("rack")
    if rack is not None and not isinstance(rack, (str, dict)):
        raise ChipforgeError(f"`{where}.rack` must be a preset name or a table, not {rack!r}")
    return Option(str(raw.get("chip", chip)), rack)


def _within_context(s: Serve) -> None:
    """`s.isl` + `s.osl` within the model's maximum context, as plan_serving refuses it (the
    roofline fallback would price it); a model that does not resolve passes (the rates say why,
    naming it)."""
    from chipforge.cluster.checks import within_context
    from chipforge.workload.resolve import resolve_model

    try:
        c = resolve_model(s.model)
    except ChipforgeError:
        return
    within_context(c, s.isl, s.osl, fields="workload.serve: `isl` + `osl`", error=ChipforgeError)


def scenario_from_dict(d: dict, base: Path | None = None) -> Scenario:
    """A `Scenario` from a parsed TOML dict (paths relative to `base`)."""
    known = {"scenario", "build", "buy", "site", "sites", "workload", "finance"}
    unknown = set(d) - known
    if unknown:
        raise ChipforgeError(f"scenario has unknown sections {sorted(unknown)}; use "
                             f"{', '.join(sorted(known))}")  # fmt: skip
    head = _table(d, "scenario")
    start = str(head.get("start", "2026Q1"))
    end = str(head.get("end", "2030Q4"))
    _quarter(start, "scenario.start")
    quarters = int(months_between(start, end, "scenario.end") // 3) + 1
    if not 1 <= quarters <= MAX_QUARTERS:
        raise ChipforgeError(f"`scenario.end` must be 1 to {MAX_QUARTERS} quarters after the "
                             f"start, not {quarters}")  # fmt: skip
    samples = _int(head.get("samples", 16384), "scenario.samples")
    if not 64 <= samples <= MAX_SAMPLES:
        raise ChipforgeError(f"`scenario.samples` must be 64 to {MAX_SAMPLES:,}, not {samples}")

    def rel(value):
        """A chip, rack or model named relative to the scenario file (`userfile.beside`); a
        preset or an inline rack table as given."""
        if base is None or not isinstance(value, str):
            return value
        head, sep, rest = value.partition(",")
        return userfile.beside(head, base) + sep + rest

    build_raw, buy_raw = _table(d, "build"), _table(d, "buy")
    build = _option(build_raw, "build", "forge-n3")
    buy = _option(buy_raw, "buy", "gb200")
    build = replace(build, chip=rel(build.chip), rack=rel(build.rack))
    buy = replace(buy, chip=rel(buy.chip), rack=rel(buy.rack))
    design_start = months_between(start, str(build_raw.get("design_start", "2025Q3")),
                                  "build.design_start")  # fmt: skip

    params: dict[str, dict[str, Param]] = {}
    sections = {"build": build_raw, "buy": buy_raw, "site": _table(d, "site"),
                "workload": _table(d, "workload"), "finance": _table(d, "finance")}  # fmt: skip
    fixed = {"build": {"chip", "rack", "design_start", "fallback"},
             "buy": {"chip", "rack", "next_chip", "next_rack", "next_from", "mode"},
             "workload": {"train", "serve"}, "site": set(), "finance": set()}  # fmt: skip
    for s, defaults in DEFAULTS.items():
        raw = sections[s]
        if not isinstance(raw, dict):
            raise ChipforgeError(f"`{s}` must be a table")
        extra = set(raw) - set(defaults) - fixed[s]
        if extra:
            from chipforge.errors import did_you_mean

            name = sorted(extra)[0]
            raise ChipforgeError(
                f"`{s}.{name}` is not an input of the scenario"
                + did_you_mean(name, list(defaults) + sorted(fixed[s]))
            )
        params[s] = {n: _param(raw[n], p, f"{s}.{n}") if n in raw else p
                     for n, p in defaults.items()}  # fmt: skip

    sites = []
    for i, s in enumerate(_tables(d, "sites", "sites")):
        w = f"sites[{i}]"
        if not isinstance(s, dict) or "online" not in s or ("grid" in s) == ("it_power" in s):
            raise ChipforgeError(
                f"`{w}` needs online (e.g. 2027Q1) and one of grid (utility capacity, e.g. "
                "'1GW') or it_power (provisioned IT, e.g. '700MW')"
            )
        online = months_between(start, str(s["online"]), f"{w}.online")
        name = check_name(s.get("name", f"site{i + 1}"), f"{w}.name")
        if "grid" in s:
            sites.append(Site(name, _watts(s["grid"], f"{w}.grid"), online))
        else:
            it = _watts(s["it_power"], f"{w}.it_power")
            sites.append(Site(name, 0.0, online, it))
    if not sites:
        raise ChipforgeError("the scenario needs at least one [[sites]] with grid and online")

    wl = sections["workload"]
    train = tuple(
        Train(rel(str(t["model"])), _count(t["tokens"], "workload.train.tokens"),
              months_between(start, str(t.get("start", start)), "workload.train.start"),
              months_between(start, str(t.get("end", end)), "workload.train.end") + 3,
              _plan_lines(t), _job_chips(t.get("chips")))
        for t in _tables(wl, "train", "workload.train", need=("model", "tokens"))
    )  # fmt: skip
    for t in train:  # each plan option read and its pairs checked before any sample
        t.options()
    serve = tuple(
        Serve(rel(str(t["model"])), _count(t["tokens_per_day"], "workload.serve.tokens_per_day"),
              months_between(start, str(t.get("start", start)), "workload.serve.start"),
              _int(t.get("isl", SITE_ISL), "workload.serve.isl"),
              _int(t.get("osl", SITE_OSL), "workload.serve.osl"), _dtype(t.get("dtype", "bf16")),
              _plan_lines(t, SERVE_OWN))
        for t in _tables(wl, "serve", "workload.serve", need=("model", "tokens_per_day"))
    )  # fmt: skip
    for s in serve:
        _within_context(s)
        s.options()  # each plan option read and its pairs checked before any sample
    if not train and not serve:
        raise ChipforgeError("the scenario needs a workload: [[workload.train]] or "
                             "[[workload.serve]]")  # fmt: skip
    for t in train:
        if t.end_month <= t.start_month:
            raise ChipforgeError(f"`workload.train` {t.model}: end must be after start")
    horizon = 3.0 * quarters
    if not any(t.start_month < horizon and t.end_month > 0 for t in train) and not any(
        s.start_month < horizon for s in serve
    ):
        raise ChipforgeError(f"no workload runs between scenario.start {start} and "
                             f"scenario.end {end}: start a [[workload.train]] or "
                             "[[workload.serve]] by the end, or end later")  # fmt: skip
    if design_start >= horizon:
        raise ChipforgeError(f"`build.design_start` must be by scenario.end {end}: a program "
                             "starting later spends and delivers nothing by then, so building "
                             "would be buying")  # fmt: skip
    fallback = str(build_raw.get("fallback", "buy"))
    if fallback not in ("buy", "rent"):
        raise ChipforgeError(f"`build.fallback` must be buy or rent, not {fallback!r}")
    mode = str(buy_raw.get("mode", "purchase"))
    if mode not in ("purchase", "rent"):
        raise ChipforgeError(f"`buy.mode` must be purchase or rent, not {mode!r}")
    nxt, nxt_from = None, 0.0
    if "next_chip" in buy_raw:
        if "next_from" not in buy_raw:
            raise ChipforgeError("`buy.next_chip` needs buy.next_from, the first quarter it is "
                                 "bought (e.g. 2027Q3)")  # fmt: skip
        nxt = Option(rel(str(buy_raw["next_chip"])), rel(buy_raw.get("next_rack")))
        nxt_from = months_between(start, str(buy_raw["next_from"]), "buy.next_from")
    name = check_name(head.get("name", "build or buy"), "scenario.name")
    return Scenario(name, start, quarters, build, buy, design_start, tuple(sites), train, serve,
                    params, samples, nxt, nxt_from, mode == "rent", fallback == "rent")  # fmt: skip


# [[workload.train]]'s keys, not plan options
TRAIN_OWN = ("model", "tokens", "start", "end", "chips")


def _job_chips(v) -> int | None:
    """A training job's chips, as `train --chips` (train_options.job_chips, as a sweep's
    [training] `chips`), at most the planner's job (rates.MAX_TRAINING_CHIPS); None: not given."""
    from chipforge.cluster.train_options import job_chips
    from chipforge.decide.rates import MAX_TRAINING_CHIPS

    return None if v is None else job_chips(v, "workload.train.chips", MAX_TRAINING_CHIPS)


# [[workload.serve]]'s own keys (isl, osl, dtype: `serve`'s flags, read as they were before the
# other options)
SERVE_OWN = ("model", "tokens_per_day", "start", "isl", "osl", "dtype")


def _plan_lines(t: dict, own: tuple[str, ...] = TRAIN_OWN) -> tuple[str, ...]:
    """The plan options of a [[workload.train]] (or .serve) entry as TOML "key=value" lines."""
    import json
    import re

    out = []
    for k, v in t.items():
        if k in own:
            continue
        # a key TOML cannot write bare ("dp shard", one with a newline) is quoted, so the
        # options' parser names it as the table's own key, on one line
        k = k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)
        if isinstance(v, bool):
            text = "true" if v else "false"
        elif isinstance(v, int | float):
            text = repr(v)
        elif isinstance(v, str):
            text = json.dumps(v)  # a TOML basic string
        else:
            text = repr(v)  # refused by train_options with the key's name
        out.append(f"{k}={text}")
    return tuple(out)


def _toml_line(line: str) -> bool:
    import tomllib

    try:
        tomllib.loads(line)
    except tomllib.TOMLDecodeError:
        return False
    return True


def train_plan_options(lines: tuple[str, ...], model: str) -> dict:
    """`plan_training` keyword arguments of [[workload.train]] "key=value" lines
    (cluster.train_options: the keys of `chipforge train`'s flags)."""
    import tomllib

    from chipforge.cluster import train_options
    from chipforge.workload.resolve import resolve_model

    try:
        raw = tomllib.loads("\n".join(lines))
    except tomllib.TOMLDecodeError:
        bad = next((line for line in lines if not _toml_line(line)), ", ".join(lines))
        raise ChipforgeError(f"`workload.train` {model}: a plan option must be a number, "
                             f"true / false or a string, not {bad}") from None  # fmt: skip
    moe = resolve_model(model).is_moe
    return train_options.parse(raw, f"workload.train {model}", moe=moe)


def serve_plan_options(
    lines: tuple[str, ...],
    model: str,
    isl: int = SITE_ISL,
    osl: int = SITE_OSL,
    dtype: str = "bf16",
) -> dict:
    """`plan_serving` keyword arguments of [[workload.serve]] "key=value" lines
    (cluster.serve_options: the keys of `chipforge serve`'s flags); what `serve` refuses is
    refused here, but the rules on the replica's chip count (sized later from the weights,
    datacenter.workload.serving). A model that does not resolve: types only (the rates say
    why, naming it)."""
    import tomllib

    from chipforge.cluster import serve_options
    from chipforge.workload.resolve import resolve_model

    where = f"workload.serve {model}"
    try:
        raw = tomllib.loads("\n".join(lines))
    except tomllib.TOMLDecodeError:
        raise ChipforgeError(f"`{where}`: a plan option must be a number, true / false, a "
                             f"string or a list: {', '.join(lines)}") from None  # fmt: skip
    own = [k for k in raw if k in SERVE_OWN]
    if own:
        raise ChipforgeError(f"{where}: `{own[0]}` given twice")
    try:
        c = resolve_model(model)
    except ChipforgeError:
        c = None
    entry = {"isl": isl, "osl": osl, "dtype": dtype}
    o = serve_options.parse(entry | raw, where, model=c)
    return {k: v for k, v in o.items() if k not in entry}


def _table(d: dict, key: str) -> dict:
    """Section `key` of `d`, which must be a TOML table when present."""
    raw = d.get(key, {})
    if not isinstance(raw, dict):
        raise ChipforgeError(f"`{key}` must be a table ([{key}]), not {type(raw).__name__}")
    return raw


def _tables(d: dict, key: str, where: str, need: tuple[str, ...] = ()) -> list[dict]:
    """`[[key]]` entries of `d`: a list of tables, each with the keys in `need`."""
    raw = d.get(key, [])
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ChipforgeError(f"`{where}` must be a list of tables ([[{where}]])")
    if len(raw) > MAX_ENTRIES:
        raise ChipforgeError(f"`{where}` has {len(raw):,} entries; at most {MAX_ENTRIES:,}")
    for i, t in enumerate(raw):
        missing = [k for k in need if k not in t]
        if missing:
            raise ChipforgeError(f"`{where}[{i}]` needs {', '.join(missing)}")
    return raw


def _dtype(v) -> str:
    from chipforge.dtypes import DTYPES

    if v not in DTYPES:
        raise ChipforgeError(
            f"`workload.serve.dtype` must be one of {', '.join(DTYPES)}, not {v!r}"
        )
    return v


def _int(v, where: str) -> int:
    """A positive whole number from the scenario (2.7 or true is an error, not 2 or 1): the
    count check and wording of `train` and `serve` (cluster.checks.whole)."""
    from chipforge.cluster.checks import whole

    return whole(v, f"`{where}`", error=ChipforgeError)


def _watts(v, where: str) -> float:
    from chipforge.units import parse_quantity

    if isinstance(v, bool):
        raise ChipforgeError(f"`{where}` must be a power such as '1GW', not {v!r}")
    w = float(v) if isinstance(v, (int, float)) else parse_quantity(str(v), "power", field=where)
    return site_watts(w, f"`{where}`", v, error=ChipforgeError)  # datacenter's bound


def _count(v, where: str) -> float:
    from chipforge.units import parse_count

    if isinstance(v, bool):
        raise ChipforgeError(f"`{where}` must be a count such as '15T', not {v!r}")
    n = float(v) if isinstance(v, (int, float)) else parse_count(str(v), where)
    if not 0 < n < math.inf:
        raise ChipforgeError(f"`{where}` must be > 0, not {v}")
    return n


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario TOML (size-checked before reading)."""
    p = Path(path)
    d = userfile.load_toml(p, what="scenario file", limit=MAX_SCENARIO_BYTES)
    return scenario_from_dict(d, p.parent)
