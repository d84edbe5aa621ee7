"""One design point -> every objective, its feasibility and the reason.

Per point: the base chip's dict with the parameters applied, validated once (pydantic);
`silicon.evaluate` for area, unit cost and TDP; `perf.estimate` on each workload (graphs are
parsed once per process and cached). Objectives:
  time_s              weighted sum of workload times
  tokens_per_s        weighted tokens / weighted time
  energy_j, energy_per_token_j, die_area_mm2, total_area_mm2, unit_cost_usd, tdp_w
  tokens_per_s_per_w  tokens_per_s / tdp_w;  tokens_per_s_per_usd: / unit_cost_usd
  serving_*, ttft_s, tpot_s, training_*, site_*, tco_*, usd_per_million_tokens: see
  explore/system.py
  (cluster.plan_serving and chipforge.datacenter); computed only when an objective or
  constraint asks for them, with `serving_method` / `site_method` naming the model used.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache

from chipforge.errors import ChipforgeError
from chipforge.explore.space import Space, apply
from chipforge.explore.system import (
    SERVING_OBJECTIVES,
    SITE_OBJECTIVES,
    TRAINING_OBJECTIVES,
    serving_objectives,
    site_objectives,
    training_objectives,
)
from chipforge.report.jsonout import check_numbers

STATUS_OK, STATUS_INFEASIBLE, STATUS_FAILED = "ok", "infeasible", "failed"


def point_id(space: Space, params: dict) -> str:
    """A point's identity: a hash of the chip spec it describes plus the workloads (and the
    serving and site setup when the space has them)."""
    spec = apply(space.base_dump("json"), params)
    text = json.dumps([spec, space.workloads, *space.system_ident()], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@cache
def _graph(spec: str, trust_pickle: bool = False):
    from chipforge.workload import parse_workload

    return parse_workload(spec, trust_pickle=trust_pickle)


def _perf(space: Space, chip) -> dict:
    from chipforge.perf import estimate

    time_s = energy_j = tokens = 0.0
    fits = True
    if not space.workloads:
        return {"fits_memory": True}
    for spec, weight in space.workloads:
        r = estimate(_graph(spec, space.trust_pickle), chip)
        time_s += weight * r.time_s
        energy_j += weight * r.energy_j
        tokens += weight * r.tokens
        fits = fits and r.fits_in_memory
    tps = tokens / time_s if time_s > 0 and tokens else 0.0
    return {
        "time_s": time_s,
        "energy_j": energy_j,
        "tokens_per_s": tps,
        "energy_per_token_j": energy_j / tokens if tokens else 0.0,
        "fits_memory": fits,
    }


def _infeasible(space: Space, o: dict) -> str:
    c = space.constraints
    reasons = []
    if c.get("reticle", True) and not o["fits_reticle"]:
        reasons.append(f"die {o['die_area_mm2']:.0f} mm2 over the reticle")
    if not o["fits_memory"]:
        reasons.append("workload does not fit in memory")
    if o.get("serving_infeasible"):
        reasons.append(f"serving: {o['serving_infeasible']}")
    if o.get("training_infeasible"):
        reasons.append(f"training: {o['training_infeasible']}")
    for key, obj in (
        ("max_tdp_w", "tdp_w"),
        ("max_unit_cost_usd", "unit_cost_usd"),
        ("max_die_area_mm2", "die_area_mm2"),
    ):
        if key in c and o[obj] > c[key]:
            reasons.append(f"{obj} {o[obj]:.4g} > {key} {c[key]:.4g}")
    if "min_tokens_per_s" in c and o["tokens_per_s"] < c["min_tokens_per_s"]:
        reasons.append(f"tokens_per_s {o['tokens_per_s']:.4g} < min {c['min_tokens_per_s']:.4g}")
    return "; ".join(reasons)


def objectives(space: Space, params: dict) -> dict:
    """Every objective of one point; raises ChipforgeError for an invalid spec."""
    from chipforge import silicon
    from chipforge.spec.loader import chip_from_dict

    chip = chip_from_dict(apply(space.base_dump("python"), params), "design point")
    s = silicon.evaluate(chip)
    a = s.area.to_dict()
    o = {
        "die_area_mm2": a["die_area_mm2"],
        "total_area_mm2": a["total_area_mm2"],
        "fits_reticle": bool(s.area.fits_reticle),
        "unit_cost_usd": s.unit_cost_usd,
        "tdp_w": s.tdp.total,
    }
    o.update(_perf(space, chip))
    if space.workloads:
        o["tokens_per_s_per_w"] = o["tokens_per_s"] / o["tdp_w"]
        o["tokens_per_s_per_usd"] = o["tokens_per_s"] / o["unit_cost_usd"]
    if space.serving is not None:
        o.update(serving_objectives(space.serving, chip))
    if space.training is not None:
        o.update(training_objectives(space.training, chip))
    if any(k in SITE_OBJECTIVES for k in space.objectives):
        o.update(site_objectives(space.site, space.serving, chip, s, o))
    return o


def evaluate_point(space: Space, params: dict, pid: str | None = None) -> dict:
    """One store row: params, objectives, status and reason. Never raises; a crash is
    retried once and then recorded as failed with the error."""
    row = {"id": pid or point_id(space, params), **{f"p.{k}": _cell(v) for k, v in params.items()}}
    for attempt in (1, 2):
        try:
            o = objectives(space, params)
            _sane(o)
        except ChipforgeError as e:
            return {**row, "status": STATUS_INFEASIBLE, "reason": str(e)}
        except Exception as e:  # noqa: BLE001 - a worker bug must not end the sweep
            if attempt == 2:
                return {**row, "status": STATUS_FAILED, "reason": f"{type(e).__name__}: {e}"}
            continue
        reason = _infeasible(space, o)
        return {**row, **o, "status": STATUS_INFEASIBLE if reason else STATUS_OK, "reason": reason}
    raise AssertionError("unreachable")


def _sane(o: dict) -> None:
    """A negative or NaN objective is a model bug: the point is recorded as failed, never as a
    result (NaN is how a serving or site objective says "no plan", next to its reason)."""
    maybe = set(SERVING_OBJECTIVES) | set(TRAINING_OBJECTIVES) | set(SITE_OBJECTIVES)
    check_numbers({k: v for k, v in o.items() if not (k in maybe and v != v)})


def _cell(v):
    return v if isinstance(v, (int, float, bool)) else str(v)


def evaluate_chunk(space: Space, items: list[tuple[str, dict]]) -> list[dict]:
    return [evaluate_point(space, params, pid) for pid, params in items]
