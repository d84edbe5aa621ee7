"""Time to train and serving throughput for a site.

Uses `chipforge.cluster.plan_training` / `plan_serving`. Where the cluster search finds no
feasible plan, a documented first-order fallback, and `method` says so and why:
- training: time = 6 * N * D / (chips * peak * utilization * goodput) (Kaplan et al. 2020
  6ND; utilization = MFU, default 40% as Llama 3 405B on H100, Llama 3 paper Table 4);
- serving: one replica = the fewest chips (power of two) whose HBM holds the weights twice
  over (half for weights, half for KV cache); decode step = max(weights + KV bytes / (chips x
  HBM bw x 0.8, `HBM_EFFICIENCY`, an assumption), 2 N B / (chips x peak x utilization)) at
  the batch B the KV space allows; prefill adds 2 N isl FLOPs per request at the same utilization.
"""

from __future__ import annotations

import math

from chipforge.cluster import plan_serving, plan_training
from chipforge.cluster.checks import whole, within_context
from chipforge.cluster.search import check_block_scaled
from chipforge.datacenter.tco import HOURS_PER_YEAR, Chip
from chipforge.dtypes import nbytes
from chipforge.errors import ChipforgeError, Infeasible
from chipforge.request_defaults import SITE_ISL, SITE_OSL
from chipforge.spec import load_chip
from chipforge.workload.resolve import resolve_model

MAX_TRAINING_CHIPS = 65536  # one job: beyond ~64K chips the largest public runs stop (Llama 3: 16K)
# Share of peak HBM bandwidth the fallback's decode step reaches. Assumption, bracketed by two
# sourced figures: streaming kernels reach 0.90 of spec on NVIDIA, 0.85 on AMD (`memory_frac`,
# perf/calibration.py), an upper bound; NIM Llama 3.3 70B FP8 TP2 on 2 x H100 reads ~36.1 GB per
# chip a token (35.3 GB weights + KV of 5,250 tokens) in 18.58 ms [perf-nim-h100x2-itl-c1]:
# 1.94 TB/s = 0.58 of 3.35 TB/s [hw-h100-hbm-bw] end to end, collectives and launch gaps
# included, a lower bound. 0.8 is between them; no measurement isolates decode's share.
HBM_EFFICIENCY = 0.8


def _try(fn, *args, **kw) -> tuple[dict | None, str]:
    """The cluster plan as a dict, or None and the cluster's reason (no feasible plan)."""
    try:
        return fn(*args, **kw).to_dict(), ""
    except ChipforgeError as e:
        return None, f" (cluster: {e})"


def training(
    site: dict, chip: Chip, model, tokens: float, dtype: str = "bf16", options: dict | None = None
) -> dict:
    """Time to train `model` on `tokens` with the site's chips (capped) and its cost;
    `options`: more `plan_training` keywords (the plan's flags; their `dtype` wins)."""
    m = resolve_model(model)
    chips = min(site["chips"], MAX_TRAINING_CHIPS)
    a = site["assumptions"]
    kw = {"dtype": dtype, **(options or {})}
    dtype = kw["dtype"]
    spec = chip.spec or load_chip(chip.name)
    # refused, not priced by the fallback below: the chip cannot run the format at all
    check_block_scaled(spec, dtype, kw.get("fp8_recipe", "delayed"))
    plan, why = _try(plan_training, spec, m, chips, tokens=tokens, **kw)
    if plan is not None:
        seconds, method = plan["time_to_train_s"] / a["goodput"], "cluster.plan_training / goodput"
    else:
        flops = 6.0 * m.params() * tokens
        rate = chips * chip.peak_flops[dtype] * a["utilization"] * a["goodput"]
        seconds, method = flops / rate, "fallback 6ND / (chips x peak x MFU x goodput)" + why
    cost = seconds / 3600 * chips * site["tco_usd_per_chip_hour"]
    return {
        "model": m.name,
        "tokens": tokens,
        "training_chips": chips,
        "time_to_train_s": seconds,
        "usd_per_trained_model": cost,
        "method": method,
    }


def site_request(model, isl: int | None = None, osl: int | None = None) -> tuple[int, int]:
    """The request (isl, osl) a site serves. Neither stated (`chipforge datacenter` without
    --isl/--osl): the site's own, 1024 in and 1024 out, and a model whose maximum context is
    shorter serves requests that fill it, split as isl : osl (plan_serving refuses longer ones,
    and so would the model). Stated (either; the other 1024): as given, within the model's
    context (one line naming --isl + --osl otherwise, as `serve` says it)."""
    c = resolve_model(model)
    if isl is None and osl is None:
        isl, osl = SITE_ISL, SITE_OSL
        top = c.max_context
        if top and isl + osl > top:
            return max(1, top * isl // (isl + osl)), max(1, top * osl // (isl + osl))
        return isl, osl
    isl, osl = SITE_ISL if isl is None else isl, SITE_OSL if osl is None else osl
    for flag, n in (("--isl", isl), ("--osl", osl)):
        whole(n, flag)
    within_context(c, isl, osl, fields="--isl + --osl")
    return isl, osl


def serving(
    site: dict,
    chip: Chip,
    model,
    isl: int = SITE_ISL,
    osl: int = SITE_OSL,
    dtype: str = "bf16",
    options: dict | None = None,
) -> dict:
    """Output tokens/s of the whole site serving `model`, and $ per million output tokens;
    `options`: more `plan_serving` keywords (the plan's flags, cluster.serve_options) for each
    replica's plan (the roofline fallback, where no plan is feasible, prices without them)."""
    m = resolve_model(model)
    b = nbytes(dtype)
    weights = m.params() * b
    a = site["assumptions"]
    if chip.hbm_bytes <= 0:
        raise Infeasible(f"`--chip` {chip.name} has no off-chip memory; serving needs one")
    group = 2 ** math.ceil(math.log2(max(1.0, 2 * weights / chip.hbm_bytes)))
    plan, why = _try(
        plan_serving,
        chip.spec or load_chip(chip.name),
        m,
        group,
        isl=isl,
        osl=osl,
        dtype=dtype,
        **(options or {}),
    )
    if plan is not None:
        per_group, method = plan["throughput_tokens_per_s"], "cluster.plan_serving"
    else:
        kv_space = group * chip.hbm_bytes - weights
        # a Gated DeltaNet layer's fixed state per sequence beside the attention layers' KV
        kv_seq = m.kv_bytes_per_token(b) * (isl + osl / 2) + m.delta_layers * m.delta_state_bytes(b)
        batch = max(1, int(kv_space / kv_seq))
        bw = group * chip.hbm_bw * HBM_EFFICIENCY
        compute = group * chip.peak_flops[dtype] * a["utilization"]
        step = max((weights + batch * kv_seq) / bw, 2 * m.params() * batch / compute)
        prefill = 2 * m.params() * isl * batch / osl / compute  # per decode step, amortised
        per_group, method = (
            batch / (step + prefill),
            "fallback HBM/compute roofline per replica" + why,
        )
    groups = site["chips"] // group
    if groups < 1:  # one replica needs more chips than the site holds: no rate to price
        raise Infeasible(
            f"`--model` {m.name} needs {group:,} x {chip.name} per serving replica for its "
            f"{weights / 1e9:,.0f} GB of {dtype} weights; the site holds {site['chips']:,}"
        )
    tps = per_group * groups * a["goodput"]
    usd_per_mtok = site["tco_usd_per_year"] / (tps * HOURS_PER_YEAR * 3600) * 1e6
    return {
        "model": m.name,
        "isl": isl,
        "osl": osl,
        "chips_per_replica": group,
        "replicas": groups,
        "throughput_tokens_per_s": tps,
        "usd_per_million_tokens": usd_per_mtok,
        "method": method,
    }
