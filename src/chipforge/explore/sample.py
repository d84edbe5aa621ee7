"""Design points from a space: full grid, seeded random, or Latin hypercube (McKay, Beckman
and Conover, Technometrics 1979: one sample per stratum of every dimension).

A grid is never listed whole: point i is read off its mixed-radix digits (the last parameter
varies fastest, as itertools.product), so taking `--n` points of a 10^9-point grid costs n. A
sweep holds at most MAX_POINTS points.
"""

from __future__ import annotations

import math

import numpy as np

from chipforge.errors import ChipforgeError
from chipforge.explore.space import Param, Space

MAX_POINTS = 1_000_000  # points one sweep holds (ids and parameters in memory, ~1 kB each)


def size(p: Param) -> int:
    """Values of `p` on the grid."""
    return len(p.choices) if p.choices else max(1, p.steps)


def value(p: Param, i: int):
    """The i-th grid value of `p` (the same numbers as `Param.grid()[i]`)."""
    if p.choices:
        return p.choices[i]
    if p.steps == 1:
        return p.low
    v = p.low + (p.high - p.low) * i / (p.steps - 1)
    return round(v) if p.integer else v


def grid_size(space: Space) -> int:
    return math.prod(size(p) for p in space.params)


def grid_point(space: Space, index: int) -> dict:
    """Point `index` of the grid, in itertools.product order."""
    point = {}
    for p in reversed(space.params):
        index, digit = divmod(index, size(p))
        point[p.path] = value(p, digit)
    return {p.path: point[p.path] for p in space.params}


def grid(space: Space, n: int | None = None) -> list[dict]:
    """The first `n` grid points (all when None)."""
    count = grid_size(space) if n is None else min(n, grid_size(space))
    return [grid_point(space, i) for i in range(count)]


def random(space: Space, n: int, seed: int) -> list[dict]:
    u = np.random.default_rng(seed).random((n, len(space.params)))  # (n, d) in [0, 1)
    return [{p.path: p.at(float(x)) for p, x in zip(space.params, row, strict=True)} for row in u]


def lhs(space: Space, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    d = len(space.params)
    strata = np.stack([rng.permutation(n) for _ in range(d)], axis=1)  # (n, d)
    u = (strata + rng.random((n, d))) / n
    return [{p.path: p.at(float(x)) for p, x in zip(space.params, row, strict=True)} for row in u]


def check_n(n: int | None, field: str = "--n") -> None:
    """`n` must be a count of points: not zero, not negative, not past MAX_POINTS."""
    if n is not None and not 1 <= n <= MAX_POINTS:
        raise ChipforgeError(f"`{field}` must be between 1 and {MAX_POINTS:,} points, not {n}")


def check(space: Space, n: int | None = None) -> None:
    """Refuse a sample that cannot be held before anything runs: `n` out of range, a grid past
    MAX_POINTS with no `n` to cut it."""
    check_n(n)
    check_n(space.n, "sampler.n")
    if space.method == "grid" and n is None and grid_size(space) > MAX_POINTS:
        dims = " x ".join(str(size(p)) for p in space.params)
        raise ChipforgeError(
            f"the grid has {grid_size(space):.3g} points ({dims}), more than the "
            f"{MAX_POINTS:,} one sweep holds; pass --n N for its first N points, or sample it "
            '([sampler] method = "lhs", n = ...)'
        )


def points(space: Space, n: int | None = None) -> list[dict]:
    """The sampled points, in a fixed order (so a resumed run regenerates the same list)."""
    check(space, n)
    if space.method == "grid":
        return grid(space, n)
    n = n or space.n
    if space.method == "random":
        return random(space, n, space.seed)
    return lhs(space, n, space.seed)
