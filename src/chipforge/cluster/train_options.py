"""The training-plan options of `chipforge train` as keys of a TOML table (a decide scenario's
[[workload.train]]): one parser, so a key means what the flag of the same name means
(`--dp-shard` -> dp_shard, `--sp/--no-sp` -> sp = true / false, `--nccl-ctas dp=8,pp=2` ->
nccl_ctas = "dp=8,pp=2"), and the pairs `plan_training` refuses are refused when the table is
read, before anything is planned. `parse` returns `plan_training`'s keyword arguments."""

from __future__ import annotations

import math
from typing import Any

from chipforge.errors import ChipforgeError

# `chipforge train` flags that are not options of the plan: the job itself (chip, model, chips,
# tokens: the table's own keys or its caller's), what the command prints, and --calculon-plan
# (a file holding a whole plan)
NOT_PLAN_OPTIONS = ("chip", "model", "chips", "tokens", "alternatives", "calculon_plan",
                    "as_json", "out", "html", "png")  # fmt: skip
WHOLE = ("tp", "pp", "dp", "cp", "ep", "micro_batch", "seq", "interleave", "pod",
         "first_stage_layers", "last_stage_layers")  # >= 1  # fmt: skip
AT_LEAST_ZERO = ("zero", "dp_shard", "offload_layers", "train_metrics")
SWITCHES = ("tp_overlap", "tp_async_backward", "fp8_dispatch", "overlap_param_gather",
            "fp8_param_gather", "sustained_clock", "activation_offload", "optimizer_offload",
            "shared_expert_overlap", "moe_host_sync", "parallel_block", "pp_scatter_gather",
            "eager_ops")  # fmt: skip
# switches training prices only on routed experts (no_effect)
MOE_ONLY = ("moe_host_sync", "shared_expert_overlap", "fp8_dispatch")
TEXT = ("dtype", "recompute", "topology", "attention", "schedule", "fp8_recipe",
        "moe_dispatcher", "loss", "cp_ring", "recompute_modules", "nccl_ctas")  # fmt: skip
COUNTS = ("tokens_per_batch", "bucket_size")  # a number or "4M"
# each key and the `plan_training` keyword it sets (the flag's own name but --sp/--no-sp)
KEYS = {**{k: k for k in WHOLE + AT_LEAST_ZERO + SWITCHES + TEXT + COUNTS},
        "sp": "sequence_parallel", "global_batch": "global_batch"}  # fmt: skip


class TrainOptionError(ChipforgeError):
    """A bad training option in a table (one line naming the key and the fix)."""


def parse(raw: dict, where: str, *, skip: tuple[str, ...] = (), moe: bool = True) -> dict[str, Any]:
    """`plan_training` keyword arguments from the keys of `raw` (every key but those in `skip`,
    the table's own, must be an option; `moe`: the model has routed experts)."""
    from chipforge.errors import did_you_mean

    out: dict[str, Any] = {}
    for key, v in raw.items():
        if key in skip:
            continue
        if key not in KEYS:
            shown = key if key.isprintable() else repr(key)  # one line, whatever the key holds
            raise TrainOptionError(f"{where}: unknown key `{shown}`{did_you_mean(key, list(KEYS))}")
        out[KEYS[key]] = _value(key, v, where)
    check(out, where, moe)
    return out


def job_chips(v: Any, where: str, limit: int | None = None) -> int:
    """A job's chips as a table states them (`train --chips`: a sweep's [training] `chips`, a
    decide scenario's [[workload.train]] `chips`): a whole number from 1 to `limit` (None:
    checks.MAX_CHIPS, what `plan_training` takes); `where` names the key."""
    from chipforge.cluster.checks import MAX_CHIPS, whole

    return whole(v, f"`{where}`", 1, MAX_CHIPS if limit is None else limit, error=TrainOptionError)


def _value(key: str, v: Any, where: str) -> Any:
    from chipforge.cluster.checks import MAX_CHIPS, MAX_GLOBAL_BATCH, MAX_TOKENS, whole
    from chipforge.units import parse_count

    if key in WHOLE or key in AT_LEAST_ZERO:
        low = 0 if key in AT_LEAST_ZERO else 1
        # plan_training's own bounds (checks.at_most), so no point runs out of range
        high = {"zero": 3, "seq": MAX_TOKENS, "micro_batch": MAX_GLOBAL_BATCH}.get(key, MAX_CHIPS)
        return whole(v, f"{where}: `{key}`", low, high, error=TrainOptionError)
    if key in SWITCHES or key == "sp":
        if not isinstance(v, bool):
            raise TrainOptionError(f"{where}: `{key}` must be true or false, not {v!r}")
        return v
    if key in COUNTS:
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise TrainOptionError(f'{where}: `{key}` must be a number or e.g. "4M", not {v!r}')
        n = parse_count(str(v), f"{where}.{key}") if isinstance(v, str) else float(v)
        if not (math.isfinite(n) and n >= 1):
            raise TrainOptionError(f"{where}: `{key}` must be a positive count, not {v!r}")
        return round(n) if key == "bucket_size" else n
    if key == "global_batch":
        return global_batch(v, where)
    if not isinstance(v, str):
        raise TrainOptionError(f"{where}: `{key}` must be a string, not {v!r}")
    if key == "recompute_modules":
        return recompute_modules(v)
    if key == "nccl_ctas":
        return nccl_ctas(v, f"{where}.nccl_ctas", "nccl_ctas")
    return v


def global_batch(v: Any, where: str) -> int | str:
    """`global_batch`: N or "MIN:MAX" sequences per step, bounded as plan_training bounds
    `--global-batch` (1 <= MIN <= MAX <= checks.MAX_GLOBAL_BATCH), so no point runs out of
    range."""
    from chipforge.cluster.checks import MAX_GLOBAL_BATCH
    from chipforge.cluster.search import parse_global_batch

    fix = f'N or "MIN:MAX" sequences from 1 to {MAX_GLOBAL_BATCH:,} (e.g. 1024 or "512:2048")'
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise TrainOptionError(f"{where}: `global_batch` must be {fix}, not {v!r}")
    try:
        n = parse_global_batch(v)
    except ChipforgeError:
        raise TrainOptionError(f"{where}: `global_batch` must be {fix}, not {v!r}") from None
    lo, hi = n if isinstance(n, tuple) else (n, n)
    if not 1 <= lo <= hi <= MAX_GLOBAL_BATCH:
        raise TrainOptionError(f"{where}: `global_batch` must be {fix}, not {v!r}")
    return v


def recompute_modules(text: str) -> tuple[str, ...]:
    """`--recompute-modules` / a table's `recompute_modules`: comma-separated module names."""
    return tuple(m.strip() for m in text.split(",") if m.strip())


def nccl_ctas(text: str, where: str, name: str) -> dict[str, int]:
    """`--nccl-ctas` / a table's `nccl_ctas`: GROUP=N pairs (dp=8,pp=2) as plan_training's
    dict; errors name `where` (the pair's place) and `name` (the flag or key)."""
    from chipforge.workload.resolve import integer, pairs

    items = [part for part in text.split(",") if part.strip()]
    given = pairs(items, where, f"`{name}` GROUP=N pairs (e.g. dp=8,pp=2)")
    return {group: integer(n, f"{where} {group}") for group, n in given.items()}


def check(o: dict[str, Any], where: str, moe: bool = True) -> None:
    """The values and pairs `plan_training` refuses whatever the chip and job size, refused
    here (the same rules, named by key; `moe`: the model has routed experts)."""
    from chipforge.cluster.layer import ATTENTION, FP8_RECIPES, MOE_DISPATCHERS, RECOMPUTE_MODULES
    from chipforge.cluster.memory import LOSS_BUFFERS, RECOMPUTE
    from chipforge.cluster.training import CP_RINGS, SCHEDULES
    from chipforge.dtypes import BYTES

    choices = {"dtype": BYTES, "recompute": RECOMPUTE, "attention": ATTENTION,
               "schedule": SCHEDULES, "fp8_recipe": FP8_RECIPES,
               "moe_dispatcher": MOE_DISPATCHERS, "loss": LOSS_BUFFERS,
               "cp_ring": CP_RINGS}  # fmt: skip
    for key, allowed in choices.items():
        if key in o and o[key] not in allowed:
            raise TrainOptionError(f"{where}: `{key}` must be one of {', '.join(allowed)}, "
                                   f"not {o[key]!r}")  # fmt: skip
    mods = o.get("recompute_modules")
    if mods is not None and (not mods or any(m not in RECOMPUTE_MODULES for m in mods)):
        raise TrainOptionError(f"{where}: `recompute_modules` must be comma-separated names of "
                               f"{', '.join(RECOMPUTE_MODULES)}, not {mods!r}")  # fmt: skip
    if "topology" in o:
        from chipforge.cluster.topology import check_preset_key

        check_preset_key(o["topology"], lambda text: TrainOptionError(f"{where}: {text}"))
    if "global_batch" in o and "tokens_per_batch" in o:
        raise TrainOptionError(f"{where}: give `global_batch` or `tokens_per_batch`, not both")
    dtype = o.get("dtype", "bf16")
    if o.get("fp8_param_gather") and dtype != "fp8":
        raise TrainOptionError(f'{where}: `fp8_param_gather` needs dtype = "fp8", not {dtype}')
    if o.get("fp8_recipe", "delayed") != "delayed" and dtype != "fp8":
        raise TrainOptionError(f"{where}: `fp8_recipe` {o['fp8_recipe']} needs dtype = \"fp8\", "
                               f"not {dtype}")  # fmt: skip
    shard, dp = o.get("dp_shard"), o.get("dp")
    if shard and dp and dp % shard:  # training.check_shard_group
        raise TrainOptionError(f"{where}: `dp_shard` {shard} must divide `dp` {dp}")
    if shard and dp and shard < dp and o.get("zero") == 0:
        raise TrainOptionError(f"{where}: `dp_shard` below `dp` shards the optimizer: use "
                               "`zero` 1-3")  # fmt: skip
    ep, cp = o.get("ep") or 1, o.get("cp")
    if shard and dp and shard < dp and moe and ep > 1 and cp and (shard * cp) % ep:
        raise TrainOptionError(f"{where}: `ep` {ep} must divide `dp_shard` x `cp` ({shard} x "
                               f"{cp}): the experts' ranks lie inside one shard group")  # fmt: skip
    if not moe:  # a table has no warning line: what `train` warns of on a dense model is refused
        dead = no_effect(o, moe)
        given = [k for k in MOE_ONLY if k in dead] + ["ep"] * (ep > 1)
        given += ["moe_dispatcher"] * ("moe_dispatcher" in dead)
        if given:
            raise TrainOptionError(f"{where}: `{given[0]}` acts on routed experts and the model "
                                   "has none (dense): drop it")  # fmt: skip


def no_effect(o: dict[str, Any], model, plan=None, dtype: str | None = None) -> dict[str, str]:
    """The run options of `o` (`plan_training`'s keywords, as given) that the planned run
    leaves without effect, each with why: {key: reason}, the one list of these rules. `model`:
    its ModelConfig, or whether it has routed experts (a table's check knows no more); `plan`
    (training.Plan) and `dtype`: the planned run's, None before any plan (then only the
    model's part is known). `train` warns of each (cli.no_effect); a table, which has no
    warning line, refuses those the model alone decides (`check`)."""
    moe = model if isinstance(model, bool) else model.is_moe
    name = "the model" if isinstance(model, bool) else model.name
    shared = moe if isinstance(model, bool) else moe and bool(model.shared_experts)
    why: dict[str, str] = {}
    tp, cp = (plan.tp, plan.cp) if plan else (None, None)
    if o.get("tp_async_backward") and tp == 1:
        why["tp_async_backward"] = "TP 1 has no TP collectives"
    elif o.get("tp_async_backward") and o.get("tp_overlap") and plan:
        why["tp_async_backward"] = "--tp-overlap pipelines every TP collective under the GEMMs"
    if o.get("fp8_dispatch") and dtype is not None and dtype not in ("fp8", "fp4"):
        why["fp8_dispatch"] = f"a {dtype} run has no FP8/FP4 GEMM input to dispatch"
    elif o.get("fp8_dispatch") and not moe:
        why["fp8_dispatch"] = f"{name} has no MoE layers"
    elif o.get("fp8_dispatch") and plan and plan.tp == 1 and plan.ep == 1:
        why["fp8_dispatch"] = "at TP 1 and EP 1 no all-to-all or TP gather moves the tokens"
    if o.get("pp_scatter_gather") and plan and (plan.pp == 1 or plan.tp == 1):
        why["pp_scatter_gather"] = "it splits a pipeline stage's send over TP: needs PP and TP"
    elif o.get("pp_scatter_gather") and plan and plan.sequence_parallel:
        why["pp_scatter_gather"] = "sequence parallelism sends 1/tp of a stage's output already"
    if o.get("cp_ring", "p2p") != "p2p" and cp == 1:
        why["cp_ring"] = "CP 1 runs no ring attention"
    # training.stage_cost prices these only on routed experts (the shared-expert overlap only
    # under an EP all-to-all)
    if o.get("moe_host_sync") and not moe:
        why["moe_host_sync"] = f"{name} has no MoE layers"
    if o.get("moe_dispatcher", "alltoall") != "alltoall" and not moe:  # EP 1 still skips the sort
        why["moe_dispatcher"] = f"{name} has no MoE layers"
    if o.get("shared_expert_overlap") and not shared:
        why["shared_expert_overlap"] = f"{name} has no shared experts"
    elif o.get("shared_expert_overlap") and plan and plan.ep == 1:
        why["shared_expert_overlap"] = "EP 1 runs no all-to-all to hide them under"
    if plan is None:
        return why
    # training.stage_cost: the TP overlap acts on TP collectives; the data-parallel options on
    # the gradients' reduction and the weights' gathers over dp x cp ranks (the distributed
    # optimizer's group, which ZeRO 0 does not shard); a CTA cap on its group's collectives
    if o.get("tp_overlap") and plan.tp == 1:
        why["tp_overlap"] = "TP 1 has no TP collectives"
    replicas = plan.dp * plan.cp
    if o.get("overlap_param_gather") and (replicas == 1 or plan.zero == 0):
        why["overlap_param_gather"] = (
            "DP x CP 1 has no weights to gather" if replicas == 1
            else "ZeRO 0 keeps whole weights: nothing is gathered"
        )  # fmt: skip
    if o.get("bucket_size") and replicas == 1:
        why["bucket_size"] = "DP x CP 1 reduces no gradients"
    degree = {"dp": replicas, "cp": plan.cp, "pp": plan.pp}
    idle = [g for g, _ in (o.get("nccl_ctas") or {}).items() if degree.get(g) == 1]
    if idle:
        why["nccl_ctas"] = f"{', '.join(idle)} 1 runs no collectives to cap"
    return why
