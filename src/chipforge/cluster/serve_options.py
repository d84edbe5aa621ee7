"""The serving-plan options of `chipforge serve` as keys of a TOML table (a sweep's [serving], a
decide scenario's [[workload.serve]]) and as the command's own flags: one parser, so a key means
what the flag of the same name means (`--max-num-tokens` -> max_num_tokens, `--gqa-kernel /
--no-gqa-kernel` -> gqa_kernel = true / false, `--ttft-slo 2s` -> ttft_slo = "2s",
`--cuda-graph-batches 128,256` -> cuda_graph_batches = "128,256" or [128, 256], `--decode-pool`
-> decode_pool = true), and the values and pairs `plan_serving` refuses are refused when the
table is read (`serving.check_options`, the plan's own checks), before anything is planned.
`parse` returns `plan_serving`'s keyword arguments."""

from __future__ import annotations

import inspect
import math
import re
from typing import Any

from chipforge.errors import ChipforgeError, WorkloadError
from chipforge.request_defaults import SITE_ISL, SITE_OSL  # the request priced when none is given

# `chipforge serve` parameters that are not options of the plan: the job itself (chip, model,
# chips: the table's own keys or its caller's) and what the command prints
NOT_PLAN_OPTIONS = ("chip", "model", "chips", "html", "png", "json", "out")
WHOLE = ("isl", "osl", "tp", "pp", "ep", "concurrency", "max_batch", "max_num_tokens",
         "dense_cache", "batch_shards")  # fmt: skip  # >= 1
STEPS = ("spec_tokens", "adp_balance", "adp_batching_wait")  # >= 0
NUMBERS = ("osl_cv", "isl_cv", "spec_acceptance")
SWITCHES = ("disaggregated", "decode_pool", "prefill_pool", "gqa_kernel", "ep_overlap", "moe_tp",
            "sustained_clock")  # fmt: skip
TEXT = ("dtype", "kv_dtype", "weight_dtype", "attn_dtype", "topology", "batching", "runtime",
        "slo_percentile")  # fmt: skip
TIMES = ("ttft_slo", "tpot_slo")  # "2 s", "100ms", or seconds
KEYS = WHOLE + STEPS + NUMBERS + SWITCHES + TEXT + TIMES + ("cuda_graph_batches",)
POOLS = ("disaggregated", "decode_pool", "prefill_pool")  # one `disaggregated` keyword


class ServeOptionError(WorkloadError):
    """A bad serving option (one line naming the key or flag and the fix)."""


def parse(
    raw: dict,
    where: str,
    *,
    model=None,
    chips: int | None = None,
    skip: tuple[str, ...] = (),
    cli: bool = False,
) -> dict[str, Any]:
    """`plan_serving` keyword arguments from the keys of `raw` (every key but those in `skip`,
    the table's own, must be an option; None: not given). `model` (and `chips`, the replica's
    chips where known): refuse what `plan_serving` would refuse for them, before any plan.
    `cli`: the values come from `serve`'s flags; errors name the flags, not `where`'s keys."""
    from chipforge.errors import did_you_mean

    def name(key: str) -> str:
        return f"--{key.replace('_', '-')}" if cli else f"`{key}`"

    def fail(text: str) -> ServeOptionError:
        return ServeOptionError(text if cli else f"{where}: {text}")

    given: dict[str, Any] = {}
    for key, v in raw.items():
        if key in skip or v is None:
            continue
        if key not in KEYS:
            raise fail(f"unknown key `{key}`{did_you_mean(key, list(KEYS))}")
        given[key] = _value(key, v, name(key), fail, where)
    pools = [k for k in POOLS if given.get(k)]
    if len(pools) > 1:
        raise fail(f"{' and '.join(map(name, pools))}: {name('disaggregated')} splits the chips "
                   f"into prefill and decode pools, {name('decode_pool')} / {name('prefill_pool')} "
                   "makes them all one pool: give one of them")  # fmt: skip
    spec = given.get("spec_tokens")
    if spec and "spec_acceptance" not in given:  # 0.0 would price every draft as rejected
        raise fail(f"{name('spec_tokens')} {spec} needs {name('spec_acceptance')}, the probability "
                   "each draft token is accepted (e.g. 0.85, as DeepSeek-V3 reports for its MTP "
                   "module)")  # fmt: skip
    out = {k: v for k, v in given.items() if k not in POOLS}
    pool = (
        "decode" if given.get("decode_pool") else "prefill" if given.get("prefill_pool") else None
    )
    if pool or "disaggregated" in given:
        out["disaggregated"] = pool or given["disaggregated"]
    if "topology" in out and not cli:  # the command's is read by topology_for with the chip
        from chipforge.cluster.topology import check_preset_key

        check_preset_key(out["topology"], fail)
    if model is not None:
        _check(out, model, chips, fail)
    return out


def _value(key: str, v: Any, shown: str, fail, where: str) -> Any:
    if key in WHOLE or key in STEPS:
        from chipforge.cluster.checks import whole

        try:
            return whole(v, shown, 1 if key in WHOLE else 0, error=ServeOptionError)
        except ServeOptionError as e:
            raise fail(str(e)) from None
    if key in NUMBERS:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise fail(f"{shown} must be a finite number, not {v!r}")
        return float(v) if key == "spec_acceptance" else v
    if key in SWITCHES:
        if not isinstance(v, bool):
            raise fail(f"{shown} must be true or false, not {v!r}")
        return v
    if key in TIMES:  # named as `serve` and the sweep's [serving] named them before
        return _seconds(v, shown.strip("`") if shown.startswith("-") else f"{where}.{key}")
    if key == "cuda_graph_batches":
        return _batch_sizes(v, shown, fail)
    if not isinstance(v, str):  # a list or table where a name goes
        raise fail(f"{shown} must be one of {', '.join(_choices(key))}, not {v!r}")
    return v


def _choices(key: str) -> list[str]:
    """The names a text option takes (plan_serving checks a string against the same)."""
    from chipforge.cluster.kvcache import RUNTIMES
    from chipforge.cluster.queueing import PERCENTILES
    from chipforge.cluster.serving import BATCHING
    from chipforge.cluster.topology import topology_names
    from chipforge.dtypes import BYTES

    named = {"batching": BATCHING, "runtime": RUNTIMES, "slo_percentile": PERCENTILES}
    return list(topology_names() if key == "topology" else named.get(key, BYTES))


def _seconds(v: Any, field: str) -> float:
    """`--ttft-slo 2s` / ttft_slo = "2 s" or a number of seconds, > 0 (errors name `field`)."""
    from chipforge.units import parse_quantity

    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ServeOptionError(f'`{field}` must be a time, e.g. "2 s" or "100 ms", not {v!r}')
    try:
        value = parse_quantity(v, "time", field=field)
    except ChipforgeError as e:
        raise ServeOptionError(str(e)) from None
    if not value > 0:
        raise ServeOptionError(f"`{field}` must be > 0, not {v!r}")
    return value


def _batch_sizes(v: Any, shown: str, fail) -> tuple[int, ...]:
    """`--cuda-graph-batches 128,256,384,512` (or a list of them) as integers (plan_serving
    checks their range)."""
    if isinstance(v, list | tuple):
        parts = list(v)
    elif isinstance(v, str):
        try:
            parts = [int(part) for part in v.split(",")] if v else []
        except ValueError:
            parts = [v]
    else:
        parts = [v]
    if not all(isinstance(b, int) and not isinstance(b, bool) for b in parts):
        raise fail(f"{shown} must list whole batch sizes separated by commas "
                   f"(e.g. 128,256,384,512), not {v!r}")  # fmt: skip
    return tuple(parts)


def _check(o: dict, model, chips: int | None, fail) -> None:
    """What `plan_serving` refuses for these options whatever the chip (serving.check_options,
    its own checks, messages naming the flags). Without `chips` (a replica sized later from the
    weights, datacenter.workload.serving) its chip-count rules wait for the plan."""
    from chipforge.cluster.serving import check_options, plan_serving, resolve_model
    from chipforge.cluster.serving_plan import _check as check_shape
    from chipforge.cluster.serving_plan import check_ep

    c = resolve_model(model)
    sig = inspect.signature(plan_serving).parameters
    kw = {k: p.default for k, p in sig.items() if p.kind is p.KEYWORD_ONLY}
    kw |= {"isl": SITE_ISL, "osl": SITE_OSL} | o  # isl, osl: the table's (their callers' defaults)
    wanted = inspect.signature(check_options).parameters
    try:
        check_options(c, chips or kw["batch_shards"],
                      **{k: v for k, v in kw.items() if k in wanted})  # fmt: skip
    except WorkloadError as e:
        raise fail(as_keys(str(e))) from None
    moe_only(o, c, fail)
    tp, pp, ep = o.get("tp"), o.get("pp"), o.get("ep")
    if not chips:  # the model's part of the plan's shape checks; the chip count's waits
        for k, v, need, what in (("tp", tp, c.heads, "heads"), ("pp", pp, c.layers, "layers")):
            if v and need % v:
                raise fail(f"`{k}` {v} must divide {c.name}'s {need} {what}")
    try:
        if chips:  # the plan's own checks of its shape (tp x pp dividing the chips too)
            check_shape(c, chips, tp, pp, ep)
        elif ep:
            check_ep(c, tp, ep)
    except WorkloadError as e:
        raise fail(as_keys(str(e))) from None
    if ep and chips and chips % ep:  # plan_serving refuses it once it places the EP group
        raise fail(f"`ep` {ep} must divide `chips` {chips}")


def moe_only(o: dict, c, fail) -> None:
    """Options that act only on a MoE model, refused on a dense one (`serve` warns of them; a
    table and the API have no warning line, and priced them as if not given)."""
    dead = no_effect(o, c)
    for key, what in (("ep_overlap", "hides a MoE model's EP all-to-all"),
                      ("adp_balance", "balances a MoE model's DP-attention groups")):  # fmt: skip
        if key in dead:
            raise fail(f"`{key}` {what}; {c.name} is dense: drop it")


def no_effect(o: dict, c, plan: dict | None = None) -> dict[str, str]:
    """The options of `o` (`plan_serving`'s keywords, as given) that the planned run leaves
    without effect, each with why: {key: reason}, the one list of these rules. `c`: the
    model's ModelConfig; `plan`: the planned run's (its to_dict()["plan"]), None before any
    plan (then only the model's part is known). `serve` warns of each (cli.no_effect); a table
    and the API refuse those the model alone decides (`moe_only`)."""
    why: dict[str, str] = {}
    # serving._block overlaps only a MoE model's EP all-to-all (ep > 1)
    if o.get("ep_overlap") and not c.is_moe:
        why["ep_overlap"] = f"{c.name} has no MoE layers"
    elif o.get("ep_overlap") and plan and plan["ep"] == 1:
        why["ep_overlap"] = "EP 1 runs no all-to-all to hide"
    # serving balances DP-attention groups, which exist only where EP exceeds TP
    if o.get("adp_balance") and (not c.is_moe or (plan and plan["ep"] <= plan["tp"])):
        why["adp_balance"] = ("the plan has no DP-attention groups to balance (--ep above "
                              "--tp, a MoE model)")  # fmt: skip
    return why


def as_keys(text: str) -> str:
    """A message of `plan_serving` (naming `serve`'s flags) naming a table's keys instead:
    `--max-num-tokens` -> `max_num_tokens` (`--chips`: the table's own `chips`)."""

    def key(m: re.Match) -> str:
        k = m.group(1).replace("-", "_")
        return f"`{k}`" if k in KEYS or k == "chips" else m.group(0)

    return re.sub(r"--([a-z][a-z0-9-]*)", key, text)
