"""Design points from a space: full grid, seeded random, or Latin hypercube (McKay, Beckman
and Conover, Technometrics 1979: one sample per stratum of every dimension)."""

from __future__ import annotations

import itertools

import numpy as np

from chipforge.explore.space import Space


def grid(space: Space) -> list[dict]:
    names = [p.path for p in space.params]
    return [
        dict(zip(names, vals, strict=True))
        for vals in itertools.product(*(p.grid() for p in space.params))
    ]


def random(space: Space, n: int, seed: int) -> list[dict]:
    u = np.random.default_rng(seed).random((n, len(space.params)))  # (n, d) in [0, 1)
    return [{p.path: p.at(float(x)) for p, x in zip(space.params, row, strict=True)} for row in u]


def lhs(space: Space, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    d = len(space.params)
    strata = np.stack([rng.permutation(n) for _ in range(d)], axis=1)  # (n, d)
    u = (strata + rng.random((n, d))) / n
    return [{p.path: p.at(float(x)) for p, x in zip(space.params, row, strict=True)} for row in u]


def points(space: Space, n: int | None = None) -> list[dict]:
    """The sampled points, in a fixed order (so a resumed run regenerates the same list)."""
    if space.method == "grid":
        return grid(space)[:n] if n else grid(space)
    n = n or space.n
    if space.method == "random":
        return random(space, n, space.seed)
    return lhs(space, n, space.seed)
