"""Absurd sizes in a user's model or flags answer at once, in one line (never a hang)."""

import time
from itertools import product

from chipforge.cluster.checks import balanced_ends, end_stage_split


def _pair_by_pair(layers: int, mtp: int, pp: int, v: int) -> tuple[int, int] | None:
    """balanced_ends by its definition: every (first, last) pair Megatron's split takes, the
    busiest stage (MTP on the last) fewest, then the fewest on the ends, the ends closest,
    the first the larger."""
    best = None
    for first, last in product(range(1, layers + 1), repeat=2):
        counts = end_stage_split(layers, pp, first, last, v)
        if counts:
            key = (max(*counts[:-1], last + mtp), first + last, abs(first - last), -first)
            if best is None or key < best[0]:
                best = (key, (first, last))
    return best[1] if best else None


def test_balanced_ends_is_its_definition():
    for layers, mtp, pp, v in product(range(1, 29), (0, 1, 3), range(1, 8), (1, 2, 3)):
        assert balanced_ends(layers, mtp, pp, v) == _pair_by_pair(layers, mtp, pp, v)


def test_balanced_ends_of_a_billion_layers_takes_no_time():
    """A config.json of 10^9 layers: the search enumerated O(layers^2) splits (train hung)."""
    balanced_ends.cache_clear()
    t0 = time.process_time()
    assert balanced_ends(3000, 1, 4) == (749, 749)  # 749/751/751/749+MTP
    assert time.process_time() - t0 < 0.05  # the pairs of 3,000 layers took ~0.7 s
    assert balanced_ends(10**9, 0, 2) == (500_000_000, 500_000_000)
    assert balanced_ends(10**9, 3, 64) == (15_624_969, 15_624_969)
    assert balanced_ends(10**9, 1, 7, 3) is None  # 10^9 is no multiple of 3
    assert time.process_time() - t0 < 0.05
