"""Multi-objective search with Optuna: NSGA-II (Deb et al., IEEE TEC 2002) or TPE, in batches
of `batch` points evaluated on the chosen backend (ask/tell). On resume, stored points are
told to the study first, so the search continues from them and none is evaluated twice."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from chipforge.explore.evaluate import STATUS_OK, point_id
from chipforge.explore.space import Param, Space


def _distribution(p: Param):
    import optuna

    if p.choices:
        return optuna.distributions.CategoricalDistribution(list(p.choices))
    if p.integer:
        return optuna.distributions.IntDistribution(int(p.low), int(p.high))
    return optuna.distributions.FloatDistribution(p.low, p.high)


def _values(space: Space, row: dict) -> list[float] | None:
    if row.get("status") != STATUS_OK:
        return None
    return [float(row[k]) for k in space.objectives]


def search(
    space: Space,
    previous: list[dict],
    evaluate: Callable[[list], Iterator[list[dict]]],
    *,
    batch: int,
) -> Iterator[list[dict]]:
    """Ask `space.n` points in all (stored ones count), evaluate them batch by batch."""
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
    seen = set()
    for row in previous:
        params = {p.path: row[f"p.{p.path}"] for p in space.params}
        values = _values(space, row)
        state = optuna.trial.TrialState.COMPLETE if values else optuna.trial.TrialState.FAIL
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=dists, values=values, state=state
            )
        )
        seen.add(row["id"])
    left = space.n - len(previous)
    while left > 0:
        trials = [study.ask(dists) for _ in range(min(batch, left))]
        items = [(point_id(space, t.params), t.params) for t in trials]
        rows = {r["id"]: r for chunk in evaluate(items) for r in chunk}
        for t, (pid, _) in zip(trials, items, strict=True):
            values = _values(space, rows[pid])
            if values:
                study.tell(t, values)
            else:
                study.tell(t, state=optuna.trial.TrialState.FAIL)
        fresh = [r for pid, r in rows.items() if pid not in seen]
        seen.update(rows)
        left -= len(trials)
        yield fresh
