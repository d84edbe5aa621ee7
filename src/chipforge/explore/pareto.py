"""The Pareto front of feasible points: no other point is at least as good in every objective
and better in one."""

from __future__ import annotations

import numpy as np

from chipforge.atomic import atomic_path


def front_mask(values: np.ndarray) -> np.ndarray:
    """values (n, k), all to minimise -> bool (n,) true on the non-dominated points."""
    n = len(values)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        if not mask[i]:
            continue
        le = np.all(values <= values[i], axis=1)
        lt = np.any(values < values[i], axis=1)
        if np.any(le & lt):
            mask[i] = False
    return mask


def pareto(df, objectives: dict[str, str]):
    """Feasible rows of `df` with a `pareto` column; the front first, sorted by objective 1.
    A row missing an objective (NaN: e.g. no tokens to price) is listed but never on the front."""
    ok = df[df["status"] == "ok"].copy()
    names = list(objectives)
    if ok.empty or not names:  # no objectives known (a damaged space.json): no front
        ok["pareto"] = False
        return ok
    signed = np.stack(
        [ok[k].to_numpy(float) * (1 if objectives[k] == "min" else -1) for k in names], axis=1
    )  # (n, k) all minimised
    finite = np.isfinite(signed).all(axis=1)
    mask = np.zeros(len(ok), dtype=bool)
    mask[finite] = front_mask(signed[finite])
    ok["pareto"] = mask
    return ok.sort_values(["pareto", names[0]], ascending=[False, objectives[names[0]] == "min"])


def plot_png(front_df, objectives: dict[str, str], path) -> None:
    """The first two objectives as a matplotlib scatter, the front joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(objectives)
    xk, yk = names[0], names[1] if len(names) > 1 else names[0]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    rest = front_df[~front_df["pareto"]]
    front = front_df[front_df["pareto"]].sort_values(xk)
    ax.scatter(rest[xk], rest[yk], s=10, alpha=0.5, label="dominated")
    ax.plot(front[xk], front[yk], "o-", color="C3", label="Pareto front")
    ax.set_xlabel(f"{xk} ({objectives[xk]})")
    ax.set_ylabel(f"{yk} ({objectives[yk]})")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, flag="--png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
