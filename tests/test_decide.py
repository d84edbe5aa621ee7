"""decide: properties of the build-or-buy model, its equality with `datacenter` at nominal
values, the Monte-Carlo's convergence, the Sobol indices, program figures against public ones,
and the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from chipforge.cli import app
from chipforge.data import figure
from chipforge.datacenter import site_report
from chipforge.decide import analyse, load_scenario, scenario_from_dict, sobol_indices
from chipforge.decide.analysis import unit_samples
from chipforge.decide.model import (
    HOURS_PER_QUARTER,
    demand,
    inputs,
    nominal,
    own_unit_cost,
    run,
    useful_per_chip,
    useful_per_quarter,
)
from chipforge.decide.rates import chip_type
from chipforge.errors import ChipforgeError

EXAMPLES = Path(__file__).parent.parent / "examples" / "decide"


def small(**over) -> dict:
    """A cheap scenario: two 20 MW sites, a small model trained and served."""
    d = {
        "scenario": {"name": "small", "start": "2026Q1", "end": "2029Q4", "samples": 256},
        "build": {"chip": "forge-n3", "design_start": "2026Q1",
                  "wafer_starts_per_month": {"value": 60, "low": 30, "high": 100},
                  "cowos_wafers_per_month": {"value": 100, "low": 40, "high": 200}},
        "buy": {"chip": "gb200", "allocation_per_quarter": {"value": 6000, "low": 3000,
                                                             "high": 12000}},
        "sites": [{"grid": "20MW", "online": "2026Q3"}, {"grid": "20MW", "online": "2028Q3"}],
        "workload": {
            "train": [{"model": "llama3-8b", "tokens": "2T", "start": "2026Q3", "end": "2027Q4"}],
            "serve": [{"model": "llama3-8b", "tokens_per_day": "200G"}],
        },
    }  # fmt: skip
    for k, v in over.items():
        d[k] = {**d.get(k, {}), **v}
    return d


@pytest.fixture(scope="module")
def sc():
    return scenario_from_dict(small())


@pytest.fixture(scope="module")
def chips(sc):
    return chip_type(sc, sc.buy, built=False), chip_type(sc, sc.build, built=True)


def _x(sc, n=64, seed=3):
    return inputs(sc, np.random.default_rng(seed).random((n, len(sc.names()))))


def test_more_nre_never_makes_building_cheaper(sc, chips):
    gpu, own = chips
    x = _x(sc)
    r0 = run(sc, gpu, own, x)
    base = r0["build_lc"]["usd_per_pflop_hour"]
    for o in ("buy_lc", "build_lc"):  # the cost to date at the horizon is the levelized one's
        assert np.allclose(r0[o]["cum_pv_cost"][:, -1], r0[o]["pv_cost"], rtol=1e-12)
    for key in ("team_usd_per_year", "nre_masks_usd", "nre_ip_usd", "partner_fee_usd"):
        more = dict(x)
        more[f"build.{key}"] = x[f"build.{key}"] * 1.5 + 1e6
        lc = run(sc, gpu, own, more)["build_lc"]["usd_per_pflop_hour"]
        assert np.all(lc >= base * (1 - 1e-12)), key
        assert np.all(lc > base), key  # and it does cost something
        # the buy option does not see the program at all
        assert np.array_equal(
            run(sc, gpu, own, more)["buy_lc"]["usd_per_pflop_hour"],
            run(sc, gpu, own, x)["buy_lc"]["usd_per_pflop_hour"],
        )


def test_a_respin_never_brings_chips_earlier(sc, chips):
    gpu, own = chips
    x = _x(sc)
    no, yes = dict(x), dict(x)
    no["build.respin_draw"] = np.ones_like(x["build.respin_draw"])  # never below p
    yes["build.respin_draw"] = np.zeros_like(x["build.respin_draw"])
    yes["build.respin_probability"] = np.maximum(x["build.respin_probability"], 0.1)
    r_no, r_yes = run(sc, gpu, own, no), run(sc, gpu, own, yes)
    assert np.all(r_yes["schedule"]["volume"] > r_no["schedule"]["volume"])
    cum_no = np.cumsum(r_no["build"]["own_buys"], axis=1)
    cum_yes = np.cumsum(r_yes["build"]["own_buys"], axis=1)
    assert np.all(cum_yes <= cum_no + 1e-6)
    assert cum_no[:, -1].sum() > 0  # chips do arrive in the horizon


def test_zero_width_range_gives_zero_sobol_index(chips):
    fixed = scenario_from_dict(small(build={"nre_ip_usd": 50e6}))  # a number: fixed
    assert fixed.param("build.nre_ip_usd").low == fixed.param("build.nre_ip_usd").high
    gpu, own = chips
    rows = {r["input"]: r for r in sobol_indices(fixed, gpu, own, base=128)}
    z = rows["build.nre_ip_usd"]
    assert abs(z["s1"]) < 0.01 and abs(z["st"]) < 0.01
    top = max(rows.values(), key=lambda r: r["st"])
    assert top["st"] > 0.1  # the estimator does see the inputs that matter
    # the same seed gives the same confidence intervals (SALib's bootstrap was unseeded at 0)
    again = {r["input"]: r for r in sobol_indices(fixed, gpu, own, base=128)}
    assert again == rows


def test_two_seeds_agree_within_one_percent(sc, chips):
    gpu, own = chips
    means = []
    for seed in (0, 1):
        u = unit_samples(len(sc.names()), 4096, seed)
        r = run(sc, gpu, own, inputs(sc, u))
        means.append(
            [r[f"{o}_lc"][k].mean() for o in ("buy", "build") for k in ("pv_cost", "pv_cash")]
            + [r[f"{o}_lc"]["usd_per_pflop_hour"].mean() for o in ("buy", "build")]
        )
    a, b = np.array(means)
    assert np.all(np.abs(a / b - 1) < 0.01), a / b - 1


def test_nominal_point_equals_datacenter():
    """At nominal values with nothing scarce, the buy option's fleet is `datacenter --grid`'s:
    same chips, IT capex, electricity, facility, and the same useful FLOP/s per chip as
    `datacenter --model` (its time to train, its serving throughput)."""
    d = small(
        buy={"lead_months": 0, "price_change_per_year": 0, "allocation_per_quarter": 1e7},
        site={"build_delay_months": 0},
    )
    d["sites"] = [{"grid": "20MW", "online": "2026Q1"}]
    d["workload"]["serve"][0]["tokens_per_day"] = "100P"  # far above the site: power binds
    sc = scenario_from_dict(d)
    gpu, own = chip_type(sc, sc.buy, built=False), chip_type(sc, sc.build, built=True)
    r = run(sc, gpu, own, nominal(sc))
    dc = site_report("gb200", None, grid_w=20e6, model="llama3-8b", tokens=2e12)
    installed = r["buy"]["installed"][0][0]
    assert installed[0] == dc["chips"]
    assert r["buy"]["capex_it"][0, 0] == pytest.approx(
        sum(dc["capex_usd"][k] for k in ("chips_usd", "racks_servers_usd", "network_usd",
                                         "storage_usd")), rel=1e-9)  # fmt: skip
    assert r["buy"]["electricity"][0, 1] * 4 == pytest.approx(
        dc["opex_usd_per_year"]["electricity_usd"], rel=1e-9
    )
    assert r["buy"]["facility"][0].sum() == pytest.approx(dc["capex_usd"]["facility_usd"], rel=0.01)
    assert r["buy"]["electricity"][0, 1] / HOURS_PER_QUARTER > 0
    t = dc["training"]
    train_rate = 6 * 8.03e9 * 2e12 / (t["time_to_train_s"] * t["training_chips"])
    key = next(k for k in gpu.useful if k.startswith("train"))
    assert gpu.useful[key] == pytest.approx(train_rate, rel=0.01)  # 8.03e9: llama3-8b params
    s = dc["serving"]
    per_chip = s["throughput_tokens_per_s"] / (s["replicas"] * s["chips_per_replica"])
    skey = next(k for k in gpu.useful if k.startswith("serve"))
    assert gpu.useful[skey] / 2 == pytest.approx(per_chip * dc_params("llama3-8b"), rel=1e-9)
    assert useful_per_chip(gpu, {key: 1.0}) == gpu.useful[key]
    # the house chip at mature yield costs what datacenter charges per built chip (its
    # silicon cost x markup; datacenter adds one-time / volume, decide books NRE as cash)
    house = site_report("forge-n3", None, grid_w=20e6)
    mature = np.full((1, 1), own.mature_yield)
    per_chip = own_unit_cost(own, nominal(sc), mature)[0, 0]
    a = house["assumptions"]
    one_time = house["chip_one_time_usd"] / house["build_volume"]
    dc_per_chip = house["capex_usd"]["chips_usd"] / house["chips"] / (1 + a["spares_share"])
    assert per_chip + one_time == pytest.approx(dc_per_chip, rel=1e-9)


def dc_params(model: str) -> float:
    from chipforge.workload.resolve import resolve_model

    return float(resolve_model(model).params())


def test_program_defaults_checked_against_public_figures():
    """Nominal program inputs against the cited rows of data/program.csv."""
    sc = load_scenario(EXAMPLES / "forge_vs_gb200.toml")
    p = sc.param
    assert p("build.nre_masks_usd").value == figure("prog-mask-set-n3")
    # team over design -> volume + IP + masks within 25 % of IBS's 3 nm design cost
    months = sum(p(f"build.{k}").value for k in ("design_months", "fab_months",
                                                  "qualification_months"))  # fmt: skip
    design = p("build.team_usd_per_year").value * months / 12 + p("build.nre_ip_usd").value
    assert 0.75 < design / figure("prog-design-cost-n3") < 1.25
    # TPU v1 took 15 months start to deployment: a 2-die N3 design is slower, not faster
    assert months > figure("prog-tpu1-design-to-deploy")
    assert p("build.respin_delay_months").high >= 3 * figure("prog-blackwell-respin")
    lo, hi = p("build.packages_per_cowos_wafer").low, p("build.packages_per_cowos_wafer").high
    assert lo <= figure("prog-packages-per-cowos-rubin") and hi >= figure(
        "prog-packages-per-cowos-tpu"
    )
    assert p("build.cowos_wafers_per_month").high < 0.2 * figure("prog-cowos-2026")


def test_analyse_answers_first_and_never_negative(sc):
    d = analyse(sc, samples=256, sobol_base=64)
    p = d["probability_build_cheaper"]
    assert d["verdict"].startswith("building" if p >= 0.5 else "buying")
    assert d["verdict"].endswith(f"with probability {max(p, 1 - p):.2f}")
    s = d["saving_fraction"]
    assert s["p10"] <= s["p50"] <= s["p90"]
    assert len(d["drivers"]) == len(sc.names())
    for o in ("buy", "build"):
        assert min(d["delivered_flops_per_s"][o]["p10"]) >= 0
        assert all(v >= 0 for v in d["yearly_cash_usd"][o].values())
        assert d["usd_per_useful_pflop_hour"][o]["p10"] > 0
    assert all(a["source"] and a["label"] != a["input"] for a in d["assumptions"])


def test_custom_chip_toml_and_model(tmp_path):
    src = Path(__file__).parent.parent / "src/chipforge/spec/presets/forge-n3.toml"
    chip = tmp_path / "mychip.toml"
    chip.write_text(src.read_text().replace('name = "forge-n3"', 'name = "mychip"'))
    d = small(
        build={"chip": str(chip), "rack": {"chips": 64, "power_w": 90e3, "other_hw_usd": 320e3}}
    )
    d["workload"] = {"serve": [{"model": "llama3-8b,layers=16", "tokens_per_day": "100G"}]}
    out = analyse(scenario_from_dict(d), samples=128, sobol=False)
    assert out["chips"]["build"]["name"] == str(chip)
    assert out["usd_per_useful_pflop_hour"]["build"]["p50"] > 0


def test_scenario_file_with_its_own_chip_and_config_json(tmp_path):
    """Paths in a scenario file are relative to it: a chip TOML with a derived rack, and a
    HuggingFace config.json as the served model."""
    src = Path(__file__).parent.parent / "src/chipforge/spec/presets/forge-n3.toml"
    (tmp_path / "mine.toml").write_text(src.read_text().replace('"forge-n3"', '"mine"'))
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 1024, "intermediate_size": 4096,
        "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 4,
        "vocab_size": 32000, "max_position_embeddings": 4096,
    }))  # fmt: skip
    (tmp_path / "s.toml").write_text(
        '[scenario]\nstart = "2026Q1"\nend = "2028Q4"\n[build]\nchip = "mine.toml"\n'
        '[[sites]]\ngrid = "20MW"\nonline = "2026Q3"\n'
        '[[workload.serve]]\nmodel = "config.json"\ntokens_per_day = "500G"\n'
    )
    res = CliRunner().invoke(app, ["decide", str(tmp_path / "s.toml"), "--samples", "128",
                                   "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout[res.stdout.index("{") :])
    assert d["chips"]["build"]["rack"]["power_basis"] == "max"  # the rack template's
    assert d["usd_per_useful_pflop_hour"]["build"]["p50"] > 0


def test_bad_scenarios_are_one_line_errors(tmp_path):
    with pytest.raises(ChipforgeError, match="sites"):
        scenario_from_dict({k: v for k, v in small().items() if k != "sites"})
    with pytest.raises(ChipforgeError, match="low <= value <= high"):
        scenario_from_dict(small(build={"design_months": {"value": 40, "low": 10, "high": 30}}))
    with pytest.raises(ChipforgeError, match="did you mean"):
        scenario_from_dict(small(build={"design_month": 20}))
    with pytest.raises(ChipforgeError, match=r"must lie in \[0, 1\]"):
        scenario_from_dict(small(build={"respin_probability": 1.5}))
    with pytest.raises(ChipforgeError, match="must lie in"):
        scenario_from_dict(small(build={"wafer_starts_per_month": -10}))
    with pytest.raises(ChipforgeError, match="samples"):
        scenario_from_dict(small(scenario={"samples": 10_000_000}))
    with pytest.raises(ChipforgeError, match="quarter like"):
        scenario_from_dict(small(scenario={"start": "2026-01"}))
    serve = {"model": "llama3-8b", "tokens_per_day": "1G", "isl": 130_000, "osl": 2_000}
    with pytest.raises(
        ChipforgeError, match=r"workload.serve: `isl` \+ `osl` = 132,000 .* 131,072"
    ):
        scenario_from_dict(small(workload={"serve": [serve]}))
    bad = tmp_path / "bad.toml"
    bad.write_text("[scenario\n")
    res = CliRunner().invoke(app, ["decide", str(bad)])
    assert res.exit_code != 0 and "not valid TOML" in str(res.exception)


def test_cli_json_and_html(tmp_path):
    html = tmp_path / "r.html"
    res = CliRunner().invoke(
        app, ["decide", str(EXAMPLES / "forge_vs_gb200.toml"), "--samples", "256", "--json",
              "--html", str(html)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout[res.stdout.index("{") :])
    assert d["verdict"].startswith(("building", "buying"))
    assert set(d["delivered_flops_per_s"]) == {"buy", "build"} and len(d["drivers"]) >= 5
    page = html.read_text()
    assert 'data-warnings="0"' in page and page.count('class="chart"') == 4


def test_next_generation_takes_over_the_allocation_and_prices_follow_the_rack():
    rack = {"chips": 72, "power_w": 134400, "other_hw_usd": 480000, "market_chip_usd": 45000}
    d = small(buy={"next_chip": "gb300", "next_rack": rack, "next_from": "2027Q3"})
    d["workload"]["serve"][0]["tokens_per_day"] = "100P"
    sc = scenario_from_dict(d)
    gpus = [chip_type(sc, sc.buy, built=False), chip_type(sc, sc.buy_next, built=False)]
    own = chip_type(sc, sc.build, built=True)
    r = run(sc, gpus, own, nominal(sc))
    first, second = r["buy"]["buys"]
    switch = 6  # 2027Q3
    assert first[0, switch:].sum() == 0 and second[0, :switch].sum() == 0
    assert first[0].sum() > 0 and second[0].sum() > 0
    # a bought chip the scenario does not price takes its rack's market price
    h = scenario_from_dict(small(buy={"chip": "h100"}))
    out = analyse(h, samples=64, sobol=False)
    price = next(a for a in out["assumptions"] if a["input"] == "buy.price_usd")
    assert price["value"] == 25000 and "dgx-h100" in price["source"]


def test_python_api_matches_the_cli():
    import chipforge as cf

    d = small()
    out = cf.build_or_buy(d, samples=128, sobol=False)  # cf.decide is the package
    assert out == analyse(scenario_from_dict(d), samples=128, sobol=False)
    assert (
        cf.site("gb200", grid="20MW")["chips"] == site_report("gb200", None, grid_w=20e6)["chips"]
    )


def test_rent_mode_rents_everything_at_the_cloud_price():
    d = small(buy={"mode": "rent"})
    sc = scenario_from_dict(d)
    gpu, own = chip_type(sc, sc.buy, built=False), chip_type(sc, sc.build, built=True)
    x = nominal(sc)
    r = run(sc, gpu, own, x)
    assert r["buy"]["buys"][0].sum() == 0 and r["build"]["buys"][0].sum() == 0  # no GPU bought
    parts = demand(sc, x)[2]  # each quarter's GPU rate on that quarter's own workload mix
    rate = useful_per_quarter(gpu, parts, r["mix"])[0]
    gpu_hours = r["demand_flops"][0] * 2190 * 3600 / (rate * 3600)
    cloud = gpu_hours * x["buy.cloud_usd_per_gpu_hour"][0]
    b = r["buy"]
    assert b["cash"][0] == pytest.approx(cloud, rel=1e-9)  # no fleet, no datacenter: the rent
    assert r["build"]["facility"][0].sum() > 0  # building still needs its sites
    with pytest.raises(ChipforgeError, match="buy.mode"):
        scenario_from_dict(small(buy={"mode": "lease"}))


def test_fallback_gpus_fill_what_the_house_chip_leaves():
    """GPUs bought for the power the house chips leave come only from the planned volume date
    on, and never rent more than leaving that power to the house chips (a GPU bought in a
    short quarter can block a later house chip's power, so it is not strictly less)."""
    base = small()
    base["workload"]["serve"][0]["tokens_per_day"] = "100P"
    rent = scenario_from_dict({**base, "build": {**base["build"], "fallback": "rent"}})
    buy = scenario_from_dict(base)
    gpu, own = chip_type(buy, buy.buy, built=False), chip_type(buy, buy.build, built=True)
    x = _x(buy)
    r = run(buy, gpu, own, x)
    a, b = r["build"], run(rent, gpu, own, x)["build"]
    assert len(a["buys"]) == 3 and len(b["buys"]) == 2
    planned_q = int(np.ceil(r["planned_volume_month"] / 3))
    assert a["buys"][2][:, :planned_q].sum() == 0 and a["buys"][2].sum() > 0
    assert np.all(a["cloud_flops"].sum(axis=1) <= b["cloud_flops"].sum(axis=1) * (1 + 1e-4))
