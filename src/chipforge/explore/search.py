"""Multi-objective search with Optuna: NSGA-II (Deb et al., IEEE TEC 2002) or TPE, in batches
of `batch` points evaluated on the chosen backend (ask/tell). On resume the search is replayed
with the first run's batch: stored rows answer the points already evaluated (none is evaluated
twice) and the seeded sampler then asks exactly what an uninterrupted run would."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from chipforge.explore.evaluate import STATUS_OK, point_id
from chipforge.explore.space import Param, Space


def _distribution(p: Param):
    import optuna

    if p.choices or p.steps:  # stated choices, or a range on its stated steps
        return optuna.distributions.CategoricalDistribution(p.grid())
    if p.integer:
        return optuna.distributions.IntDistribution(int(p.low), int(p.high))
    return optuna.distributions.FloatDistribution(p.low, p.high)


def _values(space: Space, row: dict) -> list[float] | None:
    """The objectives of a feasible row; None (a failed trial) when any is missing."""
    if row.get("status") != STATUS_OK:
        return None
    values = [float(row.get(k, math.nan)) for k in space.objectives]
    return values if all(math.isfinite(v) for v in values) else None


def search(
    space: Space,
    previous: list[dict],
    evaluate: Callable[[list], Iterator[list[dict]]],
    *,
    batch: int,
) -> Iterator[list[dict]]:
    """Ask `space.n` points in all, batch by batch; evaluate those not in `previous`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {p.path: _distribution(p) for p in space.params}
    sampler = (
        optuna.samplers.NSGAIISampler(seed=space.seed, population_size=max(4, batch))
        if space.method == "nsga2"
        else optuna.samplers.TPESampler(seed=space.seed)
    )
    directions = ["minimize" if s == "min" else "maximize" for s in space.objectives.values()]
    study = optuna.create_study(directions=directions, sampler=sampler)
    # Resume replays the search: the seeded sampler asks the same points in the same batches,
    # stored rows answer the ones already evaluated, so the study (and every later ask) is the
    # one an uninterrupted run has.
    known = {r["id"]: r for r in previous}
    left = space.n
    while left > 0:
        trials = [study.ask(dists) for _ in range(min(batch, left))]
        items = [(point_id(space, t.params), t.params) for t in trials]
        todo = list({pid: p for pid, p in items if pid not in known}.items())
        fresh = {r["id"]: r for chunk in evaluate(todo) for r in chunk}
        known.update(fresh)
        for t, (pid, _) in zip(trials, items, strict=True):
            values = _values(space, known[pid])
            if values:
                study.tell(t, values)
            else:
                study.tell(t, state=optuna.trial.TrialState.FAIL)
        left -= len(trials)
        yield list(fresh.values())
