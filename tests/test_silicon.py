"""Silicon model: area, yield, cost and power against published figures; properties; errors.

Targets the model does not meet are xfail(strict=True) with the measured miss in the reason, so
a change that meets them shows up as an XPASS failure to update, never as silent tuning.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import chipforge.cli.cost  # noqa: F401  (registers `cost` on the app)
from chipforge.cli import app
from chipforge.data import figure
from chipforge.errors import Infeasible, SpecError
from chipforge.perf import estimate
from chipforge.silicon import (
    area,
    dies_per_wafer,
    evaluate,
    floorplan,
    power_at_peak,
    power_for_result,
    unit_cost,
    yield_nb,
)
from chipforge.silicon.interfaces import hbm_purchase
from chipforge.silicon.power import main_dtype, operand_bytes_per_mac
from chipforge.spec import chip_from_dict, load_chip
from chipforge.workload import parse_workload

MM2 = 1e-6
WAFER_MM2 = figure("semi-wafer-area")


def die_mm2(name: str) -> float:
    return area(load_chip(name)).die_area / MM2


def within(value: float, target: float, tol: float) -> bool:
    return abs(value / target - 1) <= tol


def test_a100_area():  # model 717 mm2 (-13.2%)
    assert within(die_mm2("a100"), figure("hw-a100-die"), 0.15)


def test_h100_area():  # model 758 mm2 (-6.9%)
    assert within(die_mm2("h100"), figure("hw-h100-die"), 0.15)


def test_b200_silicon_held_out():
    # Not an acceptance target and not calibrated on: the analyst's ~2 x 800 mm2 (model 1,448).
    assert within(area(load_chip("b200")).total / MM2, figure("hw-b200-die"), 0.15)


def test_tpu_v1_area():
    # Model 282 mm2 (-14.8%). Not independent: the global whitespace share (21%) is the part of
    # this die its floor plan assigns to no block, so this checks the modelled blocks against the
    # other 79% of <= 331 mm2.
    assert within(die_mm2("tpu-v1"), figure("hw-tpuv1-process"), 0.20)


def test_tpu_v1_blocks_against_its_floor_plan():
    # Jouppi et al. ISCA 2017 Fig. 2: matrix unit 24%, Unified Buffer 29% of the die (<= 331 mm2).
    # The RTL-based matrix unit lands within 15% of its share of the bound (88 vs 79 mm2), the
    # Unified Buffer below its share (73 vs 96 mm2): reported, not fitted.
    blocks = area(load_chip("tpu-v1")).blocks
    die = figure("hw-tpuv1-process") * MM2
    assert within(blocks["matrix"], 0.24 * die, 0.15)
    assert blocks["sram:Unified Buffer"] < 0.29 * die


def test_over_reticle_design_becomes_chiplets():
    chip = load_chip("forge-n3")
    big = chip.model_copy(update={"dies": 1, "cores": 16})
    result = area(big)
    assert result.dies > 1 and result.fits_reticle and "d2d" in result.blocks


def test_h100_unit_cost():  # model $2,810
    assert 2500 <= unit_cost(load_chip("h100")).unit_cost <= 4500


def test_b200_unit_cost():  # model $5,625
    assert 5000 <= unit_cost(load_chip("b200")).unit_cost <= 8000


def test_b200_buys_whole_hbm_stacks():
    # 180 GB usable of 8 x 24 GB HBM3E stacks (hw-b200-hbm-cap): the package pays for 192 GB.
    inputs = unit_cost(load_chip("b200")).inputs
    assert (inputs["hbm_stacks"], inputs["hbm_gb"]) == (8, 192.0)
    assert inputs["hbm_usable_gb"] == pytest.approx(figure("hw-b200-hbm-cap"))


# Peak FP64 TFLOP/s (vector, matrix): A100 9.7 / 19.5 (Ampere whitepaper); H100 33.5 / 66.9
# [hw-h100-fp64-tc and its conditions]; MI300X 81.7 / 163.4 (AMD Instinct MI300X data sheet).
FP64_TFLOPS = {
    "a100": (9.7, 19.5),
    "h100": (33.5, figure("hw-h100-fp64-tc")),
    "mi300x": (81.7, 163.4),
}


@pytest.mark.parametrize("name", FP64_TFLOPS)
def test_fp64_units_match_published_peaks(name):
    """The FP64 lanes the area model builds give the published FP64 vector peak (H100 within
    10%: NVIDIA quotes it at the 1.98 GHz boost, the preset runs at the 1.83 its tensor peak
    implies), and a chip whose published FP64 matrix peak exceeds what those lanes reach pays
    for FP64 in its matrix units."""
    spec = load_chip(name)
    vector, matrix = FP64_TFLOPS[name]
    lanes = spec.cores * spec.vector.flops_per_cycle / 2 * floorplan.GPU_FP64_PER_FP32
    assert within(lanes * 2 * spec.clock / 1e12, vector, 0.10)
    assert floorplan.has_fp64_matrix(spec) == (matrix > vector)


def test_fp64_matrix_keyed_on_family_not_year():
    """2020: NVIDIA's A100 ran FP64 on its tensor cores, AMD's MI100 (CDNA 1) had FP64 vector
    only (11.5 TFLOP/s, MI100 data sheet): the same year, different answers."""
    assert floorplan.has_fp64_matrix(load_chip("a100"))
    assert not floorplan.has_fp64_matrix(load_chip("mi300x").model_copy(update={"year": 2020}))


# Stacks on the package and GB per stack, from the published rows' notes (data/published.csv):
# A100 "5 active stacks" of 80 GB (hw-a100-hbm-cap), H100 "5 active stacks (6 physical)" of 80 GB
# (hw-h100-hbm-cap), MI300X "8 stacks" of 192 GB (hw-mi300x-hbm-cap), H200 141 GB usable on the
# same GH100 die (hw-h200-hbm-cap), all six sites filled with 24 GB HBM3e stacks (144 GB; NVIDIA
# H200 datasheet). The model derives the first three from capacity, bandwidth and stack prices;
# the h200 preset states its six stacks (at the top pin rate four 36 GB stacks would do).
@pytest.mark.parametrize(
    ("name", "stacks", "gb_per_stack"),
    [("a100", 5, 16), ("h100", 5, 16), ("h200", 6, 24), ("mi300x", 8, 24)],
)
def test_hbm_purchase_matches_published_stack_counts(name, stacks, gb_per_stack):
    level = load_chip(name).hbm
    assert hbm_purchase(level) == (stacks, gb_per_stack)
    assert level.capacity / 1e9 <= stacks * gb_per_stack


def test_stated_hbm_stacks_get_the_smallest_height_and_must_meet_bandwidth():
    level = load_chip("h200").hbm  # 141 GB at 4.8 TB/s of HBM3e (1.229 TB/s a stack at most)
    assert hbm_purchase(level.model_copy(update={"stacks": 20})) == (20, 24)
    with pytest.raises(SpecError) as err:
        hbm_purchase(level.model_copy(update={"stacks": 3}))
    assert str(err.value) == (
        "`memory.HBM3e.stacks` must be >= 4, not 3: 3 hbm3e stacks deliver at most 3.69 TB/s "
        "of the 4.8 TB/s"
    )
    raw = load_chip("h200").model_dump(exclude_none=True)
    raw["memory"][1]["stacks"] = 2  # the L2
    with pytest.raises(SpecError, match=r"`memory\.1\.stacks` is for HBM levels only"):
        chip_from_dict(raw, where="h200")


# Held out: analysts' manufacturing costs not used to set any constant except as noted.
# Silicon Analysts cost bridge (siliconanalysts.com/tools/cost-bridge, Feb 2026): H200 ~$4,800;
# MI300X ~$5,300 (its $600 test & assembly is the model's TEST_ASSEMBLY_USD, so only partly held
# out). Reported in docs/silicon.md; checked at the energy tests' 30% band.
@pytest.mark.parametrize(("name", "analyst_usd"), [("h200", 4800.0), ("mi300x", 5300.0)])
def test_held_out_unit_costs(name, analyst_usd):  # model h200 $3,898 (-19%), mi300x $5,185
    assert within(unit_cost(load_chip(name)).unit_cost, analyst_usd, 0.30)


def test_cost_breakdown_shows_every_input():
    costs = unit_cost(load_chip("h100"))
    inputs = costs.inputs
    die = inputs["wafer_price_usd"] / (inputs["dies_per_wafer"] * inputs["yield"])
    assert costs.items["good_dies"] == pytest.approx(die * inputs["dies"])
    assert costs.items["hbm"] == pytest.approx(inputs["hbm_gb"] * inputs["hbm_price_per_gb_usd"])
    assert costs.unit_cost == pytest.approx(sum(costs.items.values()))
    assert set(costs.one_time) == {"mask_set_usd", "design_nre_usd"}


def pj_per_flop(name: str) -> float:
    chip = load_chip(name)
    dtype = main_dtype(chip)
    return power_at_peak(chip, dtype).total / chip.peak_flops(dtype) * 1e12


def test_b200_energy_per_flop():
    assert within(pj_per_flop("b200"), figure("semi-e-b200-chip"), 0.30)


def test_h100_energy_per_flop():  # model 0.549 (-23%)
    assert within(pj_per_flop("h100"), figure("semi-e-h100-chip"), 0.30)


def test_tpu_v4_energy_per_flop():  # model 0.694 (+12%)
    assert within(pj_per_flop("tpu-v4"), figure("semi-e-tpuv4-chip"), 0.30)


def test_held_out_energy_per_flop():
    # Not acceptance targets, from published rows: MI300X 750 W / 1,307 TFLOP/s (model 0.656,
    # +14%), A100 400 W / 312 TFLOP/s (model 0.917, -28%), TPU v1 busy 40 W / 92 TOPS (0.362, -16%).
    mi300x = figure("hw-mi300x-tbp") / figure("hw-mi300x-bf16-dense")
    a100 = figure("hw-a100-tdp") / figure("hw-a100-bf16-dense")
    assert within(pj_per_flop("mi300x"), mi300x, 0.30)
    assert within(pj_per_flop("a100"), a100, 0.30)
    assert within(pj_per_flop("tpu-v1"), figure("semi-e-tpuv1-chip"), 0.30)


def test_systolic_operand_stream_follows_array_reuse():
    # TPU v1's published buffer bandwidths are exactly its array's stream: one 256-byte input
    # row (Unified Buffer, 179.2 GB/s) and one 256 x 32-bit accumulator row per clock.
    chip = load_chip("tpu-v1")
    macs = chip.peak_flops("int8") / 2
    levels = {m.name: m.bandwidth for m in chip.memory}
    inputs = macs / chip.matrix.cols
    assert inputs == pytest.approx(levels["Unified Buffer"], rel=1e-3)
    assert macs * operand_bytes_per_mac(chip, "int8") >= levels["Accumulators"]


def test_power_for_a_result_is_between_leakage_and_peak():
    chip = load_chip("forge-n3")
    result = estimate(parse_workload("gemm:m=8192,n=8192,k=8192,dtype=bf16"), chip)
    running = power_for_result(chip, result)
    peak = power_at_peak(chip, "bf16")
    assert peak.parts["leakage"] < running.total < peak.total


@given(st.floats(1.0, 2000.0))
def test_dies_per_wafer_never_exceeds_wafer_over_die(die_area_mm2):
    assert dies_per_wafer(die_area_mm2 * MM2) <= WAFER_MM2 / die_area_mm2


@given(st.floats(1.0, 1000.0), st.floats(1.0, 1000.0), st.floats(0.001, 1.0))
def test_yield_falls_as_area_grows(a, b, d0):
    small, large = sorted((a, b))
    assert yield_nb(large * MM2, d0) <= yield_nb(small * MM2, d0)


@given(st.floats(0.0, 0.5), st.floats(0.0, 0.5), st.sampled_from(["h100", "forge-n3", "tpu-v1"]))
def test_lower_defect_density_never_raises_cost(d_a, d_b, name):
    low, high = sorted((d_a, d_b))
    chip = load_chip(name)
    cheap = unit_cost(chip, defect_density_per_cm2=low).unit_cost
    dear = unit_cost(chip, defect_density_per_cm2=high).unit_cost
    assert cheap <= dear


def test_unknown_node_names_the_flag_and_choices():
    """`cost --node` names its flag (errors.flag), as serve and train name theirs; the chip
    TOML's own `node` field keeps its field name (spec/models.py)."""
    with pytest.raises(SpecError, match=r"^--node must be one of n28, .*not 'n9'"):
        evaluate(load_chip("h100"), "n9")


def test_negative_defect_density():
    with pytest.raises(SpecError, match=r"^`defect_density` must be >= 0, not -0.1; give defects"):
        unit_cost(load_chip("h100"), defect_density_per_cm2=-0.1)


def test_array_that_cannot_fit_even_as_chiplets():
    chip = load_chip("forge-n3").model_copy(update={"cores": 256})
    with pytest.raises(Infeasible, match=r"^`chip` needs \d+ reticle-sized dies .* shrink"):
        area(chip)


def test_retargeting_to_a_denser_node_shrinks_the_die():
    chip = load_chip("forge-n3")
    assert evaluate(chip, "n2").area.die_area < evaluate(chip).area.die_area


def test_cli_cost_json_keys():
    out = CliRunner().invoke(app, ["cost", "--chip", "forge-n3", "--node", "n2", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    for key in ("die_area_mm2", "dies", "dies_per_wafer", "yield", "unit_cost_usd", "tdp_w"):
        assert key in data
    assert data["node"] == "n2"
    assert {"area_mm2", "cost_usd", "cost_inputs", "power_w"} <= set(data["breakdown"])


def test_cli_cost_tables():
    out = CliRunner().invoke(app, ["cost", "--chip", "h100"])
    assert out.exit_code == 0, out.output
    assert "area by block" in out.output and "unit cost" in out.output


def test_sensitivity_moves_each_input_alone_and_sorts_by_swing():
    """`sensitivity`: the unit cost at each sourced input's ends, each a re-run of the cost model
    with only that input moved; every input raises the cost; rows sorted by swing."""
    from chipforge.silicon import node_named, sensitivity

    chip = load_chip("forge-n3")
    rows = sensitivity(chip, "n2")
    n2, on_n2 = node_named("n2"), chip.model_copy(update={"node": "n2"})
    base = evaluate(chip, "n2").unit_cost_usd
    by = {r["knob"]: r for r in rows}
    inputs = evaluate(chip, "n2").to_dict()["breakdown"]["cost_inputs"]
    assert set(by) == {"wafer_price_usd", "defect_density_per_cm2", "hbm_price_per_gb_usd",
                       "cores"} and set(by) - {"cores"} <= set(inputs)  # fmt: skip
    assert all(r["base_usd"] == pytest.approx(base) for r in rows)
    assert all(r["at_low_usd"] < r["base_usd"] < r["at_high_usd"] for r in rows)
    swings = [abs(r["at_high_usd"] - r["at_low_usd"]) for r in rows]
    assert swings == sorted(swings, reverse=True)
    wafer = unit_cost(on_n2, node=n2, wafer_price_usd=n2.wafer_price_high_usd).unit_cost
    assert by["wafer_price_usd"]["at_high_usd"] == pytest.approx(wafer)
    d0 = unit_cost(on_n2, node=n2, defect_density_per_cm2=0.75 * n2.defect_density_per_cm2)
    assert by["defect_density_per_cm2"]["at_low_usd"] == pytest.approx(d0.unit_cost)
    fewer = chip.model_copy(update={"cores": round(chip.cores * 0.75)})
    assert by["cores"]["low"] == fewer.cores
    assert by["cores"]["at_low_usd"] == pytest.approx(evaluate(fewer, "n2").unit_cost_usd)
