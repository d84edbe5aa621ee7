"""The Python API: `import chipforge as cf`, then the same vocabulary and results as the CLI.

A chip is a preset name, a chip TOML path or a `ChipSpec`; a model is a preset, `llm:...`,
`llm:custom,...`, a HuggingFace config.json (or its folder) or a `ModelConfig`; a workload (for
`evaluate` and `compare`) is anything `chipforge evaluate --workload` takes. Each function
returns the object the matching command prints as JSON (`.to_dict()` where it has one).

>>> import chipforge as cf
>>> chip = cf.load_chip("forge-n3")
>>> chip.name, chip.tdp
('forge-n3', 1100.0)
>>> cf.load_model("llm:llama3-8b,layers=4").layers
4
"""

from __future__ import annotations

from pathlib import Path

from chipforge.request_defaults import SERVE_ISL, SERVE_OSL
from chipforge.spec.models import ChipSpec
from chipforge.workload.config import ModelConfig


def load_chip(chip: str | Path | ChipSpec) -> ChipSpec:
    """A chip: preset name or chip TOML path (errors name the file and the field).

    >>> round(load_chip("h100").peak_flops("bf16") / 1e12, 1)
    989.4
    """
    if isinstance(chip, ChipSpec):
        return chip
    from chipforge.spec.loader import load_chip as _load

    return _load(chip)


def load_model(model: str | Path | ModelConfig) -> ModelConfig:
    """A transformer: preset, `llm:<preset>,key=value`, `llm:custom,...`, config.json or folder.

    >>> m = load_model("llm:custom,name=tiny,layers=2,hidden=256,heads=4,ffn=1024,vocab=1000")
    >>> m.name, m.params()
    ('tiny', 2609152)
    """
    from chipforge.workload.resolve import resolve_model

    return resolve_model(model)


def evaluate(chip, workload: str, *, engine: str = "analytical"):
    """Cost a workload on one chip (`chipforge evaluate`): a `perf.Result`. A `ModelConfig`
    (`load_model`) is its prefill of one sequence, as its preset name would be.

    >>> r = evaluate("forge-n3", "llama3-8b,phase=decode,batch=8")
    >>> r.chip, r.bound, r.time_s > 0
    ('forge-n3', 'memory', True)
    """
    from chipforge.errors import ChipforgeError
    from chipforge.workload.parse import parse_workload

    if isinstance(workload, ModelConfig):  # the model vocabulary: train and serve take one too
        from chipforge.workload.llm import build

        spec, graph = load_chip(chip), build(workload)
    else:
        spec, graph = load_chip(chip), parse_workload(workload)
    if engine == "analytical":
        from chipforge.perf import estimate

        return estimate(graph, spec)
    if engine == "cycle":
        from chipforge.sim import run_timing

        return run_timing(graph, spec)
    raise ChipforgeError(f"`engine` must be analytical or cycle, not {engine!r}")


def compare(chips, workload: str) -> list:
    """One workload on several chips (`chipforge compare`): a `perf.Result` per chip.

    >>> [r.chip for r in compare("forge-n3,h100", "gpt2")]
    ['forge-n3', 'h100']
    """
    from chipforge.errors import SpecError
    from chipforge.spec.loader import chip_list, load_chips

    if isinstance(chips, str):
        names = chip_list(chips, "chips")
    elif isinstance(chips, list | tuple) and chips:
        names = list(chips)
    else:  # [] compared nothing and returned [], where "" is refused; 5 was a TypeError
        raise SpecError(
            f"`chips` must name a chip: 'a,b' or a non-empty list of chips, not {chips!r:.80}"
        )
    return [evaluate(c, workload) for c in load_chips(names, "chips")]


def plan_training(chip, model, chips: int, **kw):
    """The fastest feasible training plan (`chipforge train`): a `cluster.TrainingPlan`;
    keyword arguments as the command's flags (tp, pp, dp, seq, global_batch, tokens, ...).

    >>> p = plan_training("h100", "llama3-8b", 8, tp=1, pp=1)
    >>> p.chips, 0 < p.mfu < 1
    (8, True)
    """
    from chipforge.cluster import plan_training as _plan

    return _plan(load_chip(chip), load_model(model), chips, **kw)


def plan_serving(chip, model, chips: int, *, isl: int = SERVE_ISL, osl: int = SERVE_OSL, **kw):
    """The serving plan that maximises throughput under the SLOs (`chipforge serve`): a
    `cluster.ServingPlan`; keyword arguments as the command's flags, read by its own parser
    (`cluster.serve_options`: isl, osl, tp, ttft_slo="2 s" or seconds, decode_pool=True,
    cuda_graph_batches="128,256", ...); `cluster.plan_serving`'s keywords that are no flag
    (prefix_hit, a Topology, disaggregated="decode") as they are.

    >>> p = plan_serving("h100", "llama3-8b", 1, concurrency=8)
    >>> p.chips, p.throughput_tokens_per_s > 0
    (1, True)
    >>> plan_serving("h100", "llama3-8b", 1, decode_pool=True).disaggregated
    'decode'
    """
    from chipforge.cluster import plan_serving as _plan
    from chipforge.cluster import serve_options
    from chipforge.errors import WorkloadError

    def flag(k: str, v) -> bool:  # a flag's value, not plan_serving's own form of it
        own = (k == "disaggregated" and isinstance(v, str)) or (
            k == "topology" and v is not None and not isinstance(v, str)
        )
        return k in serve_options.KEYS and not own

    flags = {k: v for k, v in kw.items() if flag(k, v)}
    rest = {k: v for k, v in kw.items() if k not in flags}
    m = load_model(model)
    options = serve_options.parse({"isl": isl, "osl": osl} | flags, "plan_serving")
    # ep_overlap / adp_balance on a dense model: serve warns, the API has no warning line
    serve_options.moe_only(options, m, lambda text: WorkloadError(f"plan_serving: {text}"))
    return _plan(load_chip(chip), m, chips, **options, **rest)


def cost(chip, node: str | None = None):
    """Area, yield, unit cost and power (`chipforge cost`): a `silicon` result.

    >>> c = cost("forge-n3")
    >>> c.unit_cost_usd > 1000
    True
    """
    from chipforge.silicon import evaluate as _silicon

    return _silicon(load_chip(chip), node)


def cost_sensitivity(chip, node: str | None = None) -> list[dict]:
    """The unit cost's sensitivity (the tornado behind `cost`): the unit cost in USD at each
    sourced input's low and high end (wafer price, defect density, HBM price, cores), the rest
    at the base case, on the chip's own node or `node`; rows (knob, low, high, at_low_usd,
    at_high_usd, base_usd; `silicon.sensitivity`) sorted by swing.

    >>> rows = cost_sensitivity("forge-n3")
    >>> all(r["at_low_usd"] > 0 and r["at_high_usd"] > 0 for r in rows), rows[0]["base_usd"] > 1000
    (True, True)
    """
    from chipforge.silicon import sensitivity

    return sensitivity(load_chip(chip), node)


def site(
    chip,
    power: str | float = "1GW",
    *,
    rack: str | None = None,
    model=None,
    tokens: float | None = None,
    grid: str | float | None = None,
    it_power: str | float | None = None,
    isl: int | None = None,
    osl: int | None = None,
    dtype: str = "bf16",
    **assumptions,
) -> dict:
    """Size and price a datacenter of `chip` (`chipforge datacenter`): the command's JSON
    dict. `chip` is a preset, TOML path or `ChipSpec` (a chip without a rack preset gets the
    template rack; a preset's own spec, e.g. `load_chip("h100")`, is that preset);
    `power` is the facility power, or give `grid` (utility capacity) or `it_power` (provisioned
    IT) as `--grid` / `--it-power`; `isl` / `osl` / `dtype` the served request and dtype as
    `--isl` / `--osl` / `--dtype`;
    `assumptions` override any listed assumption (`pue=1.3`).

    >>> s = site("forge-n3", "100MW", pue=1.3)
    >>> s["chip"], s["assumptions"]["pue"], s["chips"] > 0
    ('forge-n3', 1.3, True)
    >>> site("gb200", grid="1.2GW")["chips"]
    359136
    """
    from chipforge.datacenter import Assumptions, site_report
    from chipforge.units import parse_quantity

    kw = {}
    if grid is not None or it_power is not None:
        kw["grid_w"] = parse_quantity(grid, "power", field="grid") if grid is not None else None
        kw["it_power_w"] = (
            parse_quantity(it_power, "power", field="it_power") if it_power is not None else None
        )
        watts = None
    else:
        watts = parse_quantity(power, "power", field="power")
    if not isinstance(chip, ChipSpec):
        chip = str(chip)
    return site_report(
        chip, watts, Assumptions().with_(**assumptions), rack=rack, model=model, tokens=tokens,
        isl=isl, osl=osl, serve_dtype=dtype, **kw,
    )  # fmt: skip


def build_or_buy(
    scenario,
    *,
    samples: int | None = None,
    seed: int = 0,
    sobol: bool = True,
    base: str | Path | None = None,
) -> dict:
    """Build or buy (`chipforge decide SCENARIO.toml`): the command's JSON dict, verdict first.
    `scenario` is a TOML path or a dict of the same sections (docs/decide.md); a dict's relative
    file paths (chip TOML, config.json) are taken from `base` (default: the working folder)."""
    from chipforge.decide import analyse, load_scenario, scenario_from_dict

    if isinstance(scenario, dict):
        sc = scenario_from_dict(scenario, Path(base) if base is not None else None)
    else:
        sc = load_scenario(scenario)
    return analyse(sc, samples=samples, seed=seed, sobol=sobol)


def sweep(space: str | Path, store: str | Path, **kw) -> dict:
    """Run a design-space sweep (`chipforge sweep SPACE.toml`) into `store`: the counts
    (points, evaluated, skipped, ...). Keyword arguments as the command's (workers, resume)."""
    from chipforge.explore import load_space
    from chipforge.explore import sweep as _sweep

    return _sweep(load_space(space), store, **kw)
