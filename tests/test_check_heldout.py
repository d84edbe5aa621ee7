"""The check-only set (data/check_heldout.csv): a written rule, sources no other data file uses,
every row reported (a prediction or the reason it cannot be stated), predictions from the model
and never from the published values."""

from __future__ import annotations

import csv
import math
from importlib import resources

import pytest

from chipforge.cluster import check_validate as cv
from chipforge.cluster import validate as v
from chipforge.cluster.layer import LayerShape, layer_costs
from chipforge.cluster.search import plan_training
from chipforge.cluster.serving import plan_serving
from chipforge.spec.loader import load_chip
from chipforge.workload.config import load_model

# the source families of the set: none may appear in the data the model was built or checked on
# (MaxText's own repository: the second set's MLPerf v4.0 TPU runs name their MaxText folder)
FAMILIES = ("torchtitan", "github.com/ai-hypercomputer/maxtext", "training_results_v4.1",
            "rocm-hub/dev-ai/performance-results", "blogs.oracle.com")  # fmt: skip
OTHER_DATA = ("published.csv", "measured.csv", "validation.csv", "cluster_cases.csv",
              "cluster_heldout.csv", "serving_cases.csv", "serving_heldout.csv",
              "frontier_heldout.csv", "check2_heldout.csv")  # fmt: skip


@pytest.fixture(scope="module")
def results():
    return {r["id"]: r for r in v.run(cv.KINDS)}


def assert_reported(row: dict, r: dict) -> None:
    """A check-set row's result (`row` from the CSV, `r` from `validate.run`): not expressible
    for the reason the CSV states, refused by the model with its reason, or a finite positive
    prediction."""
    if row["not_expressible"]:  # decided from the configuration, before evaluation
        assert r["error"] is None and r["not_expressible"] == row["not_expressible"]
    elif r["error"] is None:  # refused by the model: its reason is reported
        assert r["not_expressible"].startswith("the model refuses a run that ran: ")
    else:
        assert math.isfinite(r["predicted"]) and r["predicted"] > 0, row["id"]


def test_rule_is_written_and_rows_cite_a_revision():
    text = (resources.files("chipforge.data") / cv.FILENAME).read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert "NEVER use them" in " ".join(header) and "Rule" in " ".join(header)
    # the torchtitan rows were read to diagnose the model: the header says so, the rest unseen
    assert "(rule C1 below) are now DIAGNOSTIC rows (seen)" in " ".join(header)
    # and then the serving rows (S1, S2), to diagnose a serving check this far off
    assert "(rules S1, S2: vLLM on 8x MI300X) are now DIAGNOSTIC rows (seen)" in " ".join(header)
    ids = [row["id"] for row in cv.rows()]
    assert len(ids) == len(set(ids)) and len(ids) >= 90
    for row in cv.rows():
        assert row["source"].startswith("https://"), row["id"]
        assert any(f in row["source"].lower() for f in FAMILIES), row["id"]
        if "github.com" in row["source"]:  # a pinned revision, not a moving branch
            assert "/blob/main/" not in row["source"] and len(row["source"].split("/")[6]) == 40
        assert row["kind"] in ("training", "serving") and float(row["value"]) > 0


def test_no_source_family_is_used_by_the_other_data():
    for name in OTHER_DATA:
        text = (resources.files("chipforge.data") / name).read_text().lower()
        for family in FAMILIES:
            assert family not in text, (name, family)


def test_every_row_is_evaluated_or_says_why_not(results):
    assert sorted(results) == sorted(r["id"] for r in cv.rows())
    for row in cv.rows():
        r = results[row["id"]]
        # rules C1 (torchtitan), S1 (AMD) and S2 (OCI) are diagnostic (seen); C2, C3 unseen
        seen = any(f in row["source"] for f in ("torchtitan", "rocm-hub", "blogs.oracle.com"))
        assert r["kind"] == f"{row['kind']}-check" + ("-seen" if seen else "")
        assert r["kind"] != "serving-check"  # no unseen serving row is left in this file
        assert_reported(row, r)
    for kind in cv.KINDS:
        s = v.summary([r for r in results.values() if r["kind"] == kind])
        assert s["cases"] >= 10  # most rows are evaluated
        assert s["cases"] + s["not_expressible"] == sum(
            1 for r in results.values() if r["kind"] == kind
        )


def test_predictions_come_from_the_model_not_the_published_values(results, monkeypatch):
    """Changing every published value leaves the predictions unchanged; two rows recomputed
    from the public API with the row's configuration give the same numbers."""
    scaled = [{**row, "value": str(float(row["value"]) * 3)} for row in cv.rows()]
    monkeypatch.setattr(cv, "rows", lambda: scaled)
    again = {r["id"]: r for r in v.run(cv.KINDS)}
    for key, r in results.items():
        assert again[key]["predicted"] == r["predicted"], key

    row = next(r for r in scaled if r["id"] == "tt2412-t4-2d-asynctp")
    chip = load_chip("h100")
    hbm = chip.hbm.model_copy(update={"capacity": 96e9, "bandwidth": 2.4e12})
    chip = chip.model_copy(update={"memory": (hbm, *chip.memory[1:])})
    plan = plan_training(
        chip, "llama3-70b", 256, seq=8192, global_batch=512, dtype="fp8", tp=8, pp=1, dp=32,
        cp=1, ep=1, zero=3, recompute="full", micro_batch=16, interleave=1, tp_overlap=True,
        fp8_recipe="current", attention="flash2",  # PyTorch SDPA's FA2 (cv.SDPA_SOURCES)
        loss="eager", cp_ring="torch",  # torchtitan's (cv.LOSS_SOURCES, cv.CP_RING_SOURCES)
    )  # fmt: skip
    assert results[row["id"]]["predicted"] == pytest.approx(512 * 8192 / 256 / plan.step_time_s)

    serve = plan_serving(
        "mi300x", "llama3-405b", 8, isl=128, osl=128, dtype="fp8", kv_dtype="bf16", tp=8, pp=1,
        ep=1, concurrency=16, max_batch=16, batching="static", max_num_tokens=512,
    )  # fmt: skip
    pred = results["oci-mi300x8-405b-latency-b16"]["predicted"]
    assert pred == pytest.approx(serve.throughput_tokens_per_s)


def test_the_overridden_memory_reaches_the_model():
    row = next(r for r in cv.rows() if r["id"] == "tt2412-t4-2d")
    chip = cv.chip_for(row)
    assert chip.hbm.capacity == 96e9 and chip.hbm.bandwidth == 2.4e12
    assert chip.name == "h100"  # the same die: its kernel rates (layer.KERNEL_UTILIZATION) apply
    assert chip.peak_flops("bf16") == load_chip("h100").peak_flops("bf16")
    faster = {**row, "chip_overrides": "hbm_capacity=96e9;hbm_bandwidth=9.6e12"}
    assert cv._training(faster)() > cv._training(row)()


def test_the_maxtext_count_is_its_train_py_formula():
    """32B on v5p (global_parameter_scale 32): 32 layers, hidden 10240, 32 heads x 256, ffn
    32768, vocab 32768 -> 32.5 B parameters; per chip 8 sequences of 2048 tokens."""
    row = next(r for r in cv.rows() if r["id"] == "maxtext-v5p-32b-1xv5p-128")
    params = 32 * (4 * 10240 * 8192 + 2 * 10240 * 32768 + 2 * 10240) + 32768 * 10240 + 10240
    assert 32.0e9 < params < 33e9
    flops = 6 * params * 2048 * 8 + 6 * 32 * 32 * 256 * 2048**2 * 8
    assert cv.maxtext_tflops(row, 2.0) == pytest.approx(flops / 2.0 / 1e12)


def test_the_csv_parses_with_the_same_columns_everywhere():
    text = (resources.files("chipforge.data") / cv.FILENAME).read_text()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    width = len(next(csv.reader(lines[:1])))
    assert all(len(r) == width for r in csv.reader(lines))


def test_torchtitan_rows_run_pytorch_sdpa_flash_backend():
    """torchtitan's SDPA runs PyTorch's FlashAttention-2 port (cv.SDPA_SOURCES): "flash2", whose
    H100 rate (35 % of peak) also holds on the H200, which has the same SMs and clock."""
    by_id = {r["id"]: r for r in cv.rows()}
    assert cv._attention(by_id["tt2412-t2-fsdp1-cp8-seq262144"]) == "flash2"
    assert cv._attention(by_id["mlpt41-h100x256-gpt3"]) == "flash"
    c = load_model("llama3-8b")
    h100, h200 = load_chip("h100"), load_chip("h200")
    args = (c, 1, 1, 32768, 1, "bf16")
    fa2 = layer_costs(LayerShape(h200, *args, attention="flash2"))[2]
    assert fa2 > 1.5 * layer_costs(LayerShape(h200, *args, attention="flash"))[2]
    assert fa2 == pytest.approx(
        layer_costs(LayerShape(h100, *args, attention="flash2"))[2], rel=0.05
    )


def test_amd_rows_run_mads_token_budget_and_read_output_tokens(results):
    """S1 (STATUS 3 in the header): AMD's table is vLLM benchmark_throughput's output tokens/s,
    run with MAD's scripts/vllm/config.csv (max_num_batched_tokens 131072): the prediction is
    the plan's output throughput under that token budget, not the total (input + output)."""
    row = next(r for r in cv.rows() if r["id"] == "amdperf-mi300x8-70b-2048-2048")
    assert row["metric"] == "output_tokens_per_s" and row["max_num_tokens"] == "131072"
    kw = dict(isl=2048, osl=2048, dtype="fp8", kv_dtype="fp8", tp=8, pp=1, ep=1,
              concurrency=1500, max_batch=1500)  # fmt: skip
    budget = plan_serving("mi300x", "llama3-70b", 8, max_num_tokens=131072, **kw)
    free = plan_serving("mi300x", "llama3-70b", 8, **kw)
    pred = results[row["id"]]["predicted"]
    assert pred == pytest.approx(budget.throughput_tokens_per_s)
    assert pred != pytest.approx(free.throughput_tokens_per_s, rel=1e-3)  # the budget reaches it
    assert pred < 0.6 * budget.throughput_tokens_per_s * (2048 + 2048) / 2048  # not the total


def test_maxtext_rows_state_the_remat_their_script_passes():
    """Rule C2's remat (header "MAXTEXT REMAT"): remat_policy=minimal in a row's <size>b.sh ->
    selective with MaxText's own policy (memory.MAXTEXT_MINIMAL), full -> full; every row alike
    (configuration columns only)."""
    rows = [r for r in cv.rows() if "AI-Hypercomputer/maxtext" in r["source"]]
    assert len(rows) == 40
    for r in rows:
        policy = r["conditions"].split("remat_policy=")[1].split(" ")[0]
        want = {"minimal": ("selective", "maxtext_minimal"), "full": ("full", "")}[policy]
        assert (r["recompute"], r["recompute_modules"]) == want, r["id"]
    assert sum(r["recompute_modules"] == "maxtext_minimal" for r in rows) == 10


def test_flash2_on_hopper_runs_at_the_fa3_paper_s_forward_and_backward_rates():
    """FlashAttention-2 on the H100 (head dim 128, 16K tokens; FA3 paper Fig. 5 causal forward,
    Fig. 6 backward): 335 and 322 TFLOP/s, shares of the preset's dense BF16 peak, each capping
    its own pass (layer.KERNEL_UTILIZATION, layer.FA2_H100_TFLOPS)."""
    from chipforge.cluster.layer import FA2_H100_TFLOPS, KERNEL_UTILIZATION
    from chipforge.perf import estimate
    from chipforge.workload.llm import build

    h100, c = load_chip("h100"), load_model("llama3-8b")
    assert FA2_H100_TFLOPS == (335.0, 322.0)
    shares = tuple(t * 1e12 / h100.peak_flops("bf16") for t in FA2_H100_TFLOPS)
    assert KERNEL_UTILIZATION["flash2"]["h100"] == pytest.approx(shares, rel=1e-3)
    assert KERNEL_UTILIZATION["flash2"]["h200"] == KERNEL_UTILIZATION["flash2"]["h100"]
    g = build(c, dtype="bf16", phase="train", batch=1, seq=16384, tp=1, scope="layer")
    flops = {o.name: o.flops for o in estimate(g, h100).ops if o.kind == "attention"}
    fwd = flops["layers.attention"] / (FA2_H100_TFLOPS[0] * 1e12)
    bwd = flops["layers.attention.bwd"] / (FA2_H100_TFLOPS[1] * 1e12)
    f, b, attn, _ = layer_costs(LayerShape(h100, c, 1, 1, 16384, 1, "bf16", attention="flash2"))
    assert attn == pytest.approx(fwd, rel=1e-3)
    flash = layer_costs(LayerShape(h100, c, 1, 1, 16384, 1, "bf16"))
    assert b - flash[1] == pytest.approx(bwd - flash[2] * 2.5, rel=0.05)  # perf's 2.5x forward
