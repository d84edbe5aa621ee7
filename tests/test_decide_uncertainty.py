"""decide's uncertainty: the quasi-random sampler (scipy.stats.qmc), reproducibility by seed,
convergence of the percentiles, and SALib's Sobol indices as a planner reads them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import qmc
from test_decide import small

from chipforge.decide import analyse, scenario_from_dict, sobol_indices
from chipforge.decide.analysis import market_prices, unit_samples
from chipforge.decide.inputs import LEVERS
from chipforge.decide.rates import chip_type


@pytest.fixture(scope="module")
def sc():
    return scenario_from_dict(small())


def test_samples_are_scrambled_sobol_points_and_the_seed_reproduces_a_run(sc):
    u = unit_samples(len(sc.names()), 1000, seed=7)
    assert u.shape == (1024, len(sc.names()))  # a power of two, as Sobol points balance
    # a scrambled Sobol net: each input's 1,024 values fall one in each 1/1,024 of its range
    # (independent uniform draws leave ~37 % of the cells empty)
    for col in u.T:
        assert np.array_equal(np.sort(np.floor(col * 1024)), np.arange(1024))
    assert np.array_equal(u, qmc.Sobol(u.shape[1], scramble=True, seed=7).random_base2(10))
    a, b = (json.dumps(analyse(sc, samples=256, seed=3, sobol=False)) for _ in range(2))
    assert a == b  # the same seed: the same answer, byte for byte
    c = analyse(sc, samples=256, seed=4, sobol=False)
    assert c["saving_fraction"] != json.loads(a)["saving_fraction"]  # another scrambling


def test_percentiles_converge_from_n_to_4n(sc):
    """P10 / P50 / P90 of each option's cost per useful PFLOP-hour and NPV move less than 1 %
    from 1,024 to 4,096 scenarios (at 256 they still move 3 %)."""
    lo, hi = (analyse(sc, samples=n, seed=0, sobol=False) for n in (1024, 4096))
    for key in ("usd_per_useful_pflop_hour", "npv_cost_usd", "usd_per_million_tokens"):
        for o in ("buy", "build"):
            for p in ("p10", "p50", "p90"):
                assert lo[key][o][p] == pytest.approx(hi[key][o][p], rel=0.01), (key, o, p)


def test_sobol_indices_are_shares_and_shared_costs_drive_nothing(sc):
    """First order <= total order (within SALib's confidence), each in [0, 1] within it, the
    first orders summing to <= 1; an input both options pay alike (the sites' $/W) moves neither
    the dollars saved nor the verdict, so its index is ~0, while the program's team cost, a
    lever, leads."""
    gpu, own = chip_type(sc, sc.buy, built=False), chip_type(sc, sc.build, built=True)
    rows = sobol_indices(market_prices(sc, [gpu]), gpu, own, seed=0, base=256)
    for r in rows:
        tol = 2 * max(r["s1_conf"], r["st_conf"]) + 0.01
        assert -tol <= r["s1"] <= r["st"] + tol <= 1 + 2 * tol, r
    # every lever is an input the scenario samples (a misspelt or renamed key is never flagged)
    assert {r["input"] for r in rows if r["lever"]} == LEVERS
    assert sum(max(r["s1"], 0) for r in rows) <= 1.05
    by = {r["input"]: r for r in rows}
    assert by["site.facility_usd_per_w"]["st"] < 0.01
    assert rows[0]["input"] == "build.team_usd_per_year" and rows[0]["lever"]
