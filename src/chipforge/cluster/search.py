"""`plan_training`: evaluate an explicit parallelism plan, or search the feasible ones for the
shortest step (ties: less memory). Flags left as None are searched."""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from itertools import product

from chipforge.cluster import checks
from chipforge.cluster.checks import divisors, stage_layers
from chipforge.cluster.layer import FP8_RECIPES
from chipforge.cluster.memory import (
    GRAD_BYTES,
    OPTIMIZER_BYTES,
    RECOMPUTE,
    RESERVED_BYTES,
    WEIGHT_BYTES,
)
from chipforge.cluster.topology import Topology, topology_for
from chipforge.cluster.training import (
    SCHEDULES,
    Plan,
    TrainingPlan,
    default_global_batch,
    evaluate_plan,
)
from chipforge.errors import Infeasible, WorkloadError
from chipforge.spec.loader import load_chip
from chipforge.spec.models import ChipSpec
from chipforge.workload.config import ModelConfig
from chipforge.workload.resolve import resolve_model

POW2 = (1, 2, 4, 8, 16, 32, 64, 128)


def _choices(given, default):
    return [given] if given is not None else list(default)


def _check_flags(c: ModelConfig, chips: int, tp, pp, dp, cp) -> None:
    """Given flags that can never work, named before any search (None: searched)."""
    checks.positive(error=Infeasible, tp=tp, pp=pp, dp=dp, cp=cp)
    if tp is not None:
        checks.tp_heads(c, tp, chips, error=Infeasible)
    if pp is not None:
        checks.pp_layers(c, pp, chips, uneven=True, error=Infeasible)
    exact = None not in (tp, pp, dp, cp)
    checks.product(c, chips, exact=exact, uneven=True, error=Infeasible, tp=tp, pp=pp, dp=dp, cp=cp)


def plan_training(
    chip: ChipSpec | str,
    model: ModelConfig | str,
    chips: int,
    *,
    tokens: float | None = None,
    seq: int | None = None,
    global_batch: int | None = None,
    dtype: str = "bf16",
    tp: int | None = None,
    pp: int | None = None,
    dp: int | None = None,
    cp: int | None = None,
    ep: int | None = None,
    zero: int | None = None,
    recompute: str | None = None,
    micro_batch: int | None = None,
    interleave: int | None = None,
    topology: Topology | str | None = None,
    attention: str = "flash",
    parallel_block: bool = False,
    sequence_parallel: bool = True,
    tp_overlap: bool = False,
    fp8_recipe: str = "delayed",
    alternatives: int = 0,
    schedule: str = "1f1b",
) -> TrainingPlan:
    """The fastest feasible training plan (or the given one) for `model` on `chips` chips;
    `alternatives`: also keep the next fastest feasible plans, ranked (`.alternatives`)."""
    chip = load_chip(chip) if isinstance(chip, str) else chip
    c = resolve_model(model)
    if not isinstance(chips, int) or chips <= 0:
        raise WorkloadError(f"`chips` must be a positive integer, not {chips}")
    checks.attention_kernel(attention)
    if fp8_recipe not in FP8_RECIPES:
        raise WorkloadError(
            f"--fp8-recipe must be one of {', '.join(FP8_RECIPES)}, not {fp8_recipe!r}"
        )
    if schedule not in SCHEDULES:
        raise WorkloadError(f"--schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")
    if not chip.peak_flops(dtype):
        raise WorkloadError(f"`dtype` {dtype} is not supported by the matrix unit of {chip.name}")
    topo = topology if isinstance(topology, Topology) else topology_for(chip, chips, topology)
    seq = seq or c.seq
    gb = global_batch or default_global_batch(chips, seq)
    _check_flags(c, chips, tp, pp, dp, cp)
    explicit = None not in (tp, pp, dp, cp, ep, zero, recompute, micro_batch)
    tps = _choices(tp, [t for t in POW2 if t <= max(1, topo.domain) and c.heads % t == 0])
    cps = _choices(cp, [x for x in (1, 2, 4, 8, 16) if seq // x >= 8192 or x == 1])
    eps = _choices(ep, [e for e in POW2 if c.is_moe and c.experts % e == 0] or [1])
    zeros = _choices(zero, (1, 2, 3))
    recs = _choices(recompute, RECOMPUTE)
    mbs = _choices(micro_batch, (1, 2, 4, 8))
    ils = _choices(interleave, (1, 2, 4, 8) if pp is None or pp > 1 else (1,))
    if schedule in ("zb", "dualpipe") and interleave is None:
        ils = [1]  # one model chunk per stage (training.check_schedule)
    best: TrainingPlan | None = None
    ranked: list[tuple[float, float, dict]] = []  # every feasible plan, when alternatives > 0
    first_error: Infeasible | None = None
    shapes = 0
    blocks = checks.pipeline_blocks(c)
    for t, x, e in product(tps, cps, eps):
        if chips % (t * x):
            continue
        rest = chips // (t * x)
        pps = _choices(pp, [d for d in divisors(rest) if d <= 64 and stage_layers(blocks, d)])
        for p_ in pps:
            if chips % (t * x * p_):
                continue
            d = chips // (t * x * p_)
            if dp is not None and d != dp:
                continue
            shapes += 1
            for z, r, mb, v in product(zeros, recs, mbs, ils):
                if (p_ == 1 and v > 1) or (micro_batch is None and gb % (d * mb)):
                    continue
                plan = Plan(tp=t, pp=p_, dp=d, cp=x, ep=e, zero=z, recompute=r,
                            micro_batch=mb, interleave=v, schedule=schedule)  # fmt: skip
                try:
                    res = evaluate_plan(
                        chip, c, chips, plan, topo,
                        seq=seq, global_batch=gb, dtype=dtype, tokens=tokens,
                        attention=attention, parallel_block=parallel_block,
                        sequence_parallel=sequence_parallel, tp_overlap=tp_overlap,
                        fp8_recipe=fp8_recipe,
                    )  # fmt: skip
                except Infeasible as err:
                    first_error = first_error or err
                    continue
                if alternatives:
                    ranked.append((res.step_time_s, res.memory_per_chip_bytes, _summary(res)))
                if best is None or (res.step_time_s, res.memory_per_chip_bytes) < (
                    best.step_time_s,
                    best.memory_per_chip_bytes,
                ):
                    best = res
    if best is not None:
        ranked.sort(key=lambda r: r[:2])
        return replace(best, alternatives=tuple(r[2] for r in ranked[1 : 1 + alternatives]))
    if explicit or first_error is not None and shapes == 1:
        raise first_error or Infeasible("no plan")
    if shapes == 0:
        raise Infeasible(
            f"no tp*pp*dp*cp split of {chips} chips fits {c.name} ({c.layers} layers, "
            f"{c.heads} heads): give --chips a multiple of a power of two"
            if dp is None
            else f"--dp {dp} does not divide {chips} chips with the other flags"
        )
    state = c.params() * (WEIGHT_BYTES + GRAD_BYTES + OPTIMIZER_BYTES)  # ZeRO paper Sec. 3.1
    usable = chip.hbm.capacity - RESERVED_BYTES
    least = 2 ** math.ceil(math.log2(max(1.0, state / max(usable, 1.0))))
    raise Infeasible(
        f"{c.name} does not fit on {chips} x {chip.name} in any plan ({first_error}); its "
        f"{state / 2**30:,.0f} GiB of weights and optimizer state need at least {least} chips "
        f"of {chip.hbm.capacity / 2**30:.0f} GiB"
    )


def _summary(res: TrainingPlan) -> dict:
    """One ranked alternative: its plan and the figures a planner compares."""
    return {
        "plan": asdict(res.plan),
        "step_time_s": res.step_time_s,
        "mfu": res.mfu,
        "memory_per_chip_bytes": res.memory_per_chip_bytes,
        "exposed_comm_s": sum(res.exposed_comm.values()),
    }
