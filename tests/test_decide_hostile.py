"""decide on hostile and new users' scenarios: one-line user errors (exit 2) where there is
nothing to decide, and where there is, never a NaN or negative cost, in text or in JSON."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
from test_decide import small
from test_hostile import assert_user_error, cli

from chipforge.decide import analyse, scenario_from_dict

SHEET = Path(__file__).parent / "data" / "decide" / "spreadsheet.toml"


def _toml(d: dict) -> str:
    """The few TOML shapes a scenario uses: sections, arrays of tables, inline tables."""

    def v(x):
        if isinstance(x, dict):
            return "{" + ", ".join(f"{k} = {v(y)}" for k, y in x.items()) + "}"
        return json.dumps(x)

    out = []
    for sec, body in d.items():
        if isinstance(body, list):  # [[sites]]
            tables, body = {"": body}, {}
        else:
            tables = {k: y for k, y in body.items() if isinstance(y, list)}
            out.append(f"[{sec}]")
        out += [f"{k} = {v(y)}" for k, y in body.items() if k not in tables]
        for k, rows in tables.items():
            for row in rows:
                out.append(f"[[{sec}{'.' + k if k else ''}]]")
                out += [f"{kk} = {v(y)}" for kk, y in row.items()]
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(
    "mutate, words",
    [
        # only a serving workload, starting after the end: was a ZeroDivisionError (exit 3)
        (
            lambda d: d["workload"].update(
                train=[], serve=[{"model": "llama3-8b", "tokens_per_day": "1G", "start": "2035Q1"}]
            ),
            ["no workload runs", "2029Q4"],
        ),
        # a program starting after the end: was "buying is cheaper ... with probability 1.00"
        # on a saving of exactly 0 in every scenario
        (lambda d: d["build"].update(design_start="2031Q1"), ["build.design_start", "2029Q4"]),
    ],
)
def test_nothing_to_decide_is_a_user_error(tmp_path, mutate, words):
    d = small()
    mutate(d)
    path = tmp_path / "s.toml"
    path.write_text(_toml(d))
    assert_user_error(*cli("decide", str(path), "--samples", "64")[::2], *words)


def test_text_prefixes_the_compute_table_and_salib_stays_quiet():
    """A 2 MW hall's compute in PFLOP/s (a fixed EFLOP/s printed it as 0.0 and 0.1); a scenario
    with every input fixed prints no SALib warning (a constant saving) on stderr."""
    code, out, err = cli("decide", str(SHEET), "--samples", "64")
    assert code == 0, err
    assert "per quarter, PFLOP/s" in out and "│ 2026Q2  │ 20.4 [20.4-20.4]" in out
    assert "Warning" not in err and "warn(" not in err, err


@pytest.mark.parametrize(
    "over",
    [
        {"buy": {"price_usd": 0}, "site": {"electricity_usd_per_kwh": 0}},
        {"buy": {"cloud_usd_per_gpu_hour": 0, "allocation_per_quarter": 0}},
        {"build": {"design_months": 400, "wafer_price_x": 0}},  # slips past the horizon
        {"build": {"wafer_starts_per_month": 0, "cowos_wafers_per_month": 0}},  # no supply
        {"buy": {"lead_months": 600}, "finance": {"chip_life_y": 0.5, "cost_of_capital": 0}},
        {"sites": [{"grid": "20MW", "online": "2035Q1"}]},  # online after the end
        {"workload": {"serve_growth_per_quarter": -0.5}, "finance": {"tax_rate": 0.5}},
    ],
)
def test_extreme_scenarios_answer_without_nan_or_negative_cost(over):
    d = small()
    for k, v in over.items():
        d[k] = v if k == "sites" else {**d.get(k, {}), **v}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SALib's warnings on a constant saving included
        r = analyse(scenario_from_dict(d), samples=64, sobol_base=16)

    def walk(x, path):
        if isinstance(x, dict):
            for k, y in x.items():
                walk(y, f"{path}.{k}")
        elif isinstance(x, list):
            for y in x:
                walk(y, path)
        elif isinstance(x, float):
            assert math.isfinite(x), path
            if "saving" not in path and any(w in path for w in ("usd", "flops", "tokens")):
                assert x >= 0, (path, x)

    walk(r, "")


def test_a_tie_is_called_a_tie():
    """A program that costs nothing and delivers nothing by the end costs what buying does:
    the verdict says so (it said "buying is cheaper ... with probability 1.00")."""
    zero = {k: 0 for k in ("team_usd_per_year", "nre_ip_usd", "nre_masks_usd", "partner_fee_usd")}
    d = small(build={"design_months": 400, **zero})
    r = analyse(scenario_from_dict(d), samples=64, sobol=False)
    assert r["verdict"].startswith("building and buying cost the same"), r["verdict"]
    assert r["breakeven"]["probability_within_horizon"] == 0  # it was 1.0, "after 0 chips"
