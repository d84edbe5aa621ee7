"""decide's deterministic answer against a spreadsheet: tests/data/decide/spreadsheet.toml (every
input fixed) recomputed here quarter by quarter from first principles, without decide's code:

- each chip's useful FLOP/s per workload from the project's planners (`plan_training` on the
  site's chips / goodput; `plan_serving` on the smallest power-of-two replica holding the weights
  twice, x goodput), as `chipforge datacenter` prices them;
- demand: the training run's 6 N D FLOPs spread evenly over its window; serving's output tokens
  a day growing 10 % a quarter, 2 N FLOPs each;
- each quarter, the chips each workload needs (its FLOP/s over the chip's rate on it), bought
  in the option's order (bridge GPUs, house chips, GPUs after the planned volume date) within
  their limits; what no chip covers is rented per GPU-hour;
- cash: chips at delivery ((price x (1 + spares) + rack share, NIC, switch ports) x (1 + storage
  share)), the facility at energisation, electricity, maintenance, the program's NRE and rent;
- NPV with the mid-period convention, less the straight-line book value at the horizon;
  levelized cost = PV(cost) / PV(output) (NREL's LCOE definition: discounted lifetime cost over
  discounted lifetime output, https://www.nrel.gov/analysis/tech-lcoe-documentation.html), per
  useful PFLOP-hour and per useful token.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from chipforge.cluster import plan_serving, plan_training
from chipforge.datacenter.site import Assumptions
from chipforge.silicon import evaluate
from chipforge.spec import load_chip
from chipforge.workload.resolve import resolve_model

SHEET = Path(__file__).parent / "data" / "decide" / "spreadsheet.toml"
Q = 12  # 2026Q1 .. 2028Q4
HOURS_Q = 8760 / 4
SEC_Q = HOURS_Q * 3600
R = 0.08  # cost of capital
LIFE_Q = 20  # 5-year chip life
IT_W = 2.13e6  # the hall's provisioned IT
A = Assumptions()  # datacenter's documented shares (spares, storage, NIC, ports, O&M, draw)


def _rates(chip: str, rack_w: float, rack_chips: int) -> dict[str, float]:
    """Useful FLOP/s per chip: training (the hall's chips, goodput) and serving."""
    spec, m = load_chip(chip), resolve_model("llama3-8b")
    racks = math.floor(IT_W / (A.it_headroom * (1 + A.network_power_share
                                                + A.storage_power_share) * rack_w))  # fmt: skip
    chips = min(racks * rack_chips, 65536)
    t = plan_training(spec, m, chips, tokens=20e12, dtype="bf16").to_dict()
    train = 6 * m.params() * 20e12 / (t["time_to_train_s"] / A.goodput * chips)
    group = 2 ** math.ceil(math.log2(max(1.0, 2 * m.params() * 2 / spec.hbm.capacity)))
    s = plan_serving(spec, m, group, isl=1024, osl=1024, dtype="bf16").to_dict()
    serve = 2 * m.params() * s["throughput_tokens_per_s"] * A.goodput / group
    return {"train": train, "serve": serve}


def _house_unit_usd(q: int) -> float:
    """forge-n3's module cost in quarter q: good dies at the wafer price over dies per wafer x
    the yield then (learning from half the mature yield at first silicon, month 9, time constant
    2 quarters), HBM and packaging as the silicon model prices them, x 1.5 markup."""
    sil = evaluate(load_chip("forge-n3")).to_dict()["breakdown"]
    ci, parts = sil["cost_inputs"], sil["cost_usd"]
    age = max(3 * q + 1.5 - 9, 0.0)
    y = ci["yield"] * (1 - 0.5 * math.exp(-age / 6))
    dies = ci["dies"] * ci["wafer_price_usd"] / (ci["dies_per_wafer"] * y)
    rest = sum(v for k, v in parts.items() if k != "good_dies")
    return (dies + rest) * 1.5


def _tiers(chips: int) -> int:
    """Fat-tree tiers of radix-64 switches: k tiers reach 64 x 32^(k-1) endpoints."""
    return next(k for k in range(1, 9) if 64 * 32 ** (k - 1) >= chips)


def _sheet() -> dict:
    p = resolve_model("llama3-8b").params()
    gpu_r, own_r = _rates("gb200", 14000, 8), _rates("forge-n3", 14000, 8)
    shares = 1 + A.network_power_share + A.storage_power_share

    def chip(rates, rack_w, rack_usd, unit, mfu=1.0):
        fleet = int(IT_W / (A.it_headroom * rack_w * shares)) * 8  # the campus, for the ports
        other = rack_usd / 8 + A.nic_usd_per_chip + (2 * _tiers(fleet) - 1) * A.usd_per_switch_port
        r = {w: v * mfu for w, v in rates.items()}  # the scenario's MFU factor on the plan
        return {"r": r, "w": rack_w * shares / 8, "other": other, "unit": unit}

    gpu = chip(gpu_r, 14000, 100000, lambda q: 40000 * 0.9 ** (q / 4))
    own = chip(own_r, 14000, 80000, _house_unit_usd, mfu=0.9)  # build.mfu_x

    def demand(q: int) -> dict[str, float]:
        train = 6 * p * 20e12 / (9 * SEC_Q / 3) if 5 <= q <= 7 else 0.0  # 2027Q2-Q4
        return {"train": train, "serve": 2 * p * 100e9 / 86400 * 1.1**q}

    def need(c, q):  # chips of this kind that would carry quarter q's demand alone
        return sum(f / c["r"][w] for w, f in demand(q).items())

    out = {}
    # bought: lead time 3 months (nothing lands in 2026Q1); build: GPUs before the planned
    # volume date (month 12; the respin moves volume to month 15, 2027Q2), house chips from
    # volume on, GPUs after the planned date for what the house chips leave
    options = {
        "buy": [(gpu, lambda q: q >= 1)],
        "build": [(gpu, lambda q: 1 <= q < 4), (own, lambda q: q >= 5), (gpu, lambda q: q >= 4)],
    }
    for name, kinds in options.items():
        installed = [0.0] * len(kinds)
        capex_cum = 0.0
        pv = book = pv_pflop_h = pv_tokens = 0.0
        years: dict[str, float] = {}  # cash out per calendar year (undiscounted)
        for q in range(Q):
            short = 1 - sum(n / need(c, q) for n, (c, _) in zip(installed, kinds, strict=True))
            capex = 0.0
            for k, (c, ok) in enumerate(kinds):
                if ok(q) and short > 1e-12:
                    got = math.ceil(short * need(c, q) - 1e-9)
                    installed[k] += got
                    short -= got / need(c, q)
                    capex += (
                        got
                        * (c["unit"](q) * (1 + A.spares_share) + c["other"])
                        * (1 + A.storage_capex_share)
                    )
            capex_cum += capex
            facility = IT_W * 12 if q == 0 else 0.0
            # electricity: installed chips' IT watts x average draw x PUE 1.25, $0.08/kWh
            elec = sum(n * c["w"] for n, (c, _) in zip(installed, kinds, strict=True))
            elec *= A.power_draw_fraction * 1.25 * HOURS_Q / 1e3 * 0.08
            maint = (A.maintenance_it_share * capex_cum
                     + A.maintenance_facility_share * IT_W * 12) / 4  # fmt: skip
            rent = max(short, 0.0) * need(gpu, q) * HOURS_Q * 6.0  # GPU-hours at $6
            nre = 0.0
            if name == "build":  # team to volume (month 15), IP + half the partner fee at
                # the start, masks + the other half at tape-out (month 6), half a mask set
                # again at first silicon (month 9) for the respin
                nre = 200e6 / 12 * min(max(15 - 3 * q, 0), 3)
                nre += {0: 60e6 + 50e6, 2: 40e6 + 50e6, 3: 20e6}.get(q, 0.0)
            df = (1 + R) ** (-(q + 0.5) / 4)
            cash = capex + facility + elec + maint + rent + nre
            pv += cash * df
            years[str(2026 + q // 4)] = years.get(str(2026 + q // 4), 0.0) + cash
            age = Q - q
            book += capex * max(1 - age / LIFE_Q, 0) + facility * max(1 - age / 80, 0)
            d = demand(q)
            pv_pflop_h += sum(d.values()) * SEC_Q / 1e15 / 3600 * df
            tokens = (d["train"] / (6 * p) + d["serve"] / (2 * p)) * SEC_Q
            pv_tokens += tokens * df
            years["tokens"] = years.get("tokens", 0.0) + tokens
        cost = pv - book * (1 + R) ** (-Q / 4)
        out[name] = {
            "npv_cost_usd": cost,
            "usd_per_pflop_hour": cost / pv_pflop_h,
            "usd_per_million_tokens": cost / pv_tokens * 1e6,
            "tokens": years.pop("tokens"),
            "yearly_cash_usd": years,
            "rates": {"gpu": gpu_r, "own": own_r},
        }
    return out


@pytest.fixture(scope="module")
def decided():
    from chipforge.decide import analyse, load_scenario

    return analyse(load_scenario(SHEET), samples=64, sobol=False)


def test_decide_equals_the_spreadsheet(decided):
    sheet = _sheet()
    for o in ("buy", "build"):
        npv = decided["npv_cost_usd"][o]["p50"]
        assert npv == pytest.approx(sheet[o]["npv_cost_usd"], rel=1e-6)
        assert decided["usd_per_useful_pflop_hour"][o]["p50"] == pytest.approx(
            sheet[o]["usd_per_pflop_hour"], rel=1e-6
        )
        assert decided["usd_per_million_tokens"][o]["p50"] == pytest.approx(
            sheet[o]["usd_per_million_tokens"], rel=1e-6
        )
        assert decided["yearly_cash_usd"][o] == pytest.approx(sheet[o]["yearly_cash_usd"], rel=1e-6)
        tokens = decided["useful_tokens_delivered_p50"][o]  # trained + served, undiscounted
        assert tokens == pytest.approx(sheet[o]["tokens"], rel=1e-9)
    # the planners' rates are the ones decide used, per chip and workload
    chips = {"gpu": decided["chips"]["buy"][0], "own": decided["chips"]["build"]}
    for c, d in chips.items():
        got = sorted(d["useful_flops_per_s_per_chip"].items())  # serve:..., train:...
        want = sheet["buy"]["rates"][c]
        assert got[0][1] == pytest.approx(want["serve"], rel=1e-9)
        assert got[1][1] == pytest.approx(want["train"], rel=1e-9)


def test_the_answer_states_what_it_assumed():
    """Each workload's dates and each chip's rate with the plan that gave it, a fallback
    flagged with its reason (here the 20 MW hall's 9,616 chips split no training batch), the
    prices, the sites and the program's dates: in the text and in the JSON."""
    from test_hostile import cli

    from chipforge.display import si

    args = ("decide", str(SHEET), "--it-power", "20MW", "--samples", "64")
    code, out, err = cli(*args)
    assert code == 0, err
    text = " ".join(out.replace("│", " ").split())
    serve = si(_rates("gb200", 14000, 8)["serve"], "FLOP/s")  # the planner's, as it stands
    stated = ("what it assumed", "20.0 T tokens, 2027Q2 to 2027Q4", "FALLBACK: 6ND",
              f"gb200 {serve} per chip (plan)", "100 G output tokens/day from 2026Q1",
              "gb200 at $40,000 (-10 %/year), lead 3 months", "20.0 MW IT, online 2026Q1",
              "design start 2026Q1, planned volume 2027Q1", "$0.0800/kWh, PUE 1.25")  # fmt: skip
    for words in stated:
        assert words in text, words
    d = json.loads(cli(*args, "--json")[1])
    assert d["sites"] == [{"name": "hall", "online": "2026Q1", "grid_w": None,
                           "it_power_w": 20e6}]  # fmt: skip
    train, serve = d["workloads"]
    assert (train["start"], train["end"], serve["start"]) == ("2027Q2", "2027Q4", "2026Q1")
    assert d["chips"]["buy"][0]["methods"][train["key"]].startswith("fallback")
    assert d["chips"]["buy"][0]["methods"][serve["key"]] == "cluster.plan_serving"


def test_a_training_job_states_its_chips(tmp_path):
    """`chips` in [[workload.train]] sizes the job as `train --chips`: on a 20 MW hall (9,616
    chips, no plan: the 6ND fallback) a 1,024-chip job gets the plan's rate, the sheet's."""
    from chipforge.decide import analyse, load_scenario
    from chipforge.errors import ChipforgeError

    text = SHEET.read_text().replace('it_power = "2.13MW"', 'it_power = "20MW"')
    path = tmp_path / "s.toml"
    path.write_text(text.replace('tokens = "20T"', 'tokens = "20T"\nchips = 1024'))
    d = analyse(load_scenario(path), samples=64, sobol=False)
    key = "train:llama3-8b:20000000000000.0:chips=1024"
    gpu = d["chips"]["buy"][0]
    assert gpu["methods"][key] == "cluster.plan_training / goodput"
    want = _rates("gb200", 14000, 8)["train"]  # the 1,024-chip job of the 2.13 MW hall
    assert gpu["useful_flops_per_s_per_chip"][key] == pytest.approx(want, rel=1e-9)
    assert d["workloads"][0]["chips"] == 1024
    path.write_text(text.replace('tokens = "20T"', 'tokens = "20T"\nchips = 70000'))
    with pytest.raises(ChipforgeError, match="workload.train.chips"):
        load_scenario(path)
