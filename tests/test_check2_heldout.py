"""The second check-only set (data/check2_heldout.csv): a written rule, sources no other data file
cites, every row reported (a prediction or the reason it cannot be stated), predictions from the
model and never from the published values."""

from __future__ import annotations

import csv
from importlib import resources

import pytest
from test_check_heldout import assert_reported  # one rule for what a reported row holds

from chipforge.cluster import check_validate as cv
from chipforge.cluster import validate as v
from chipforge.cluster.search import plan_training
from chipforge.cluster.serving import plan_serving
from chipforge.cluster.validate import _model

# the set's source families: no other data file may cite them
FAMILIES = ("inference_results_v4.0", "jetstream-pytorch", "sgl-project/sglang",
            "dstackai/benchmarks", "training_results_v4.0", "2201.11990")  # fmt: skip
RULES = ("(U1) MLPerf Inference v4.0", "(U2) jetstream-pytorch", "(U3) SGLang",
         "(U4) dstack's DeepSeek-R1", "(T1) MLPerf Training v4.0",
         "(T2) Megatron-Turing NLG 530B")  # fmt: skip


def _text(name: str) -> str:
    return (resources.files("chipforge.data") / name).read_text()


@pytest.fixture(scope="module")
def results():
    return {r["id"]: r for r in v.run(cv.KINDS2)}


def test_the_rule_is_in_the_header_and_every_row_has_a_source():
    lines = _text(cv.FILENAME2).splitlines()
    header = " ".join(line.lstrip("# ") for line in lines if line.startswith("#"))
    assert "NEVER use them" in header and "none dropped for its fit" in header
    assert all(rule in header for rule in RULES)
    rows = cv.rows2()
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)) == 148
    for row in rows:
        assert row["source"].startswith("https://") and row["conditions"], row["id"]
        assert sum(f in row["source"] for f in FAMILIES) == 1, row["id"]
        if "github.com" in row["source"]:  # a pinned revision, not a moving branch
            assert len(row["source"].split("/")[6]) == 40, row["id"]
        assert row["kind"] in ("training", "serving") and float(row["value"]) > 0


def test_no_other_data_file_cites_its_sources():
    others = [
        p.name
        for p in resources.files("chipforge.data").iterdir()
        if p.name.endswith(".csv") and p.name != cv.FILENAME2
    ]
    assert cv.FILENAME in others and "frontier_heldout.csv" in others
    for name in others:
        text = _text(name).lower()
        for family in FAMILIES:
            assert family not in text, (name, family)


def test_the_csv_parses_with_the_same_columns_everywhere():
    lines = [line for line in _text(cv.FILENAME2).splitlines() if not line.startswith("#")]
    width = len(next(csv.reader(lines[:1])))
    assert all(len(r) == width for r in csv.reader(lines))


def test_every_row_is_evaluated_or_says_why_not(results):
    assert sorted(results) == sorted(r["id"] for r in cv.rows2())
    for row in cv.rows2():
        r = results[row["id"]]
        assert r["kind"] in (f"{row['kind']}-check2", cv.SERVING_SEEN2_KIND)
        assert_reported(row, r)
    for kind in cv.KINDS2:
        mine = [r for r in results.values() if r["kind"] == kind]
        s = v.summary(mine)
        assert s["cases"] >= len(mine) / 2  # most rows are evaluated
        assert s["cases"] + s["not_expressible"] == len(mine)


def test_predictions_come_from_the_model_not_the_published_values(results, monkeypatch):
    """Scaling every published value leaves the predictions unchanged; a serving and a
    training row recomputed through the public API with the row's configuration agree."""
    scaled = [{**row, "value": str(float(row["value"]) * 3)} for row in cv.rows2()]
    monkeypatch.setattr(cv, "rows2", lambda: scaled)
    again = {r["id"]: r for r in v.run(cv.KINDS2)}
    for key, r in results.items():
        assert again[key]["predicted"] == r["predicted"], key

    serve = plan_serving(
        "tpu-v5e", "llama2-7b", 8, isl=110, osl=305, dtype="bf16", kv_dtype="bf16", tp=8, pp=1,
        max_batch=96, batching="interleaved", dense_cache=2048,
    )  # fmt: skip
    pred = results["jetstreampt-v5e8-llama2-7b-bf16-b96"]["predicted"]
    assert pred == pytest.approx(serve.throughput_tokens_per_s)

    row = next(r for r in cv.rows2() if r["id"] == "mtnlg-a100x2240-530b")
    plan = plan_training(
        "a100", _model(row["model"], row["id"]), 2240, seq=2048, global_batch=1920,
        dtype="bf16", tp=8, pp=35, dp=8, cp=1, ep=1,
    )  # fmt: skip
    assert results[row["id"]]["predicted"] == pytest.approx(plan.step_time_s)


def test_the_server_rows_state_mlperfs_p99_bounds():
    """MLPerf Server: TTFT <= 2 s and TPOT <= 200 ms at the 99th percentile (the logs'
    ttft_latency / tpot_latency), the Offline rows none."""
    for row in cv.rows2():
        if row["id"].startswith("mlpi40-"):
            server = row["id"].endswith("-server")
            bounds = (row["ttft_slo"], row["tpot_slo"], row["slo_percentile"])
            assert bounds == (("2", "0.2", "p99") if server else ("", "", "")), row["id"]


def test_the_diagnostic_half_is_the_fixed_split_of_u2_and_u4(results):
    """STATUS: within U2 and U4 the rows of each (rule, scenario, chip, framework) group
    alternate in file order, first diagnostic; both halves hold every group; U1, U3, T1 and T2
    stay unseen; the kind follows the split."""
    lines = _text(cv.FILENAME2).splitlines()
    header = " ".join(line.lstrip("# ") for line in lines if line.startswith("#"))
    assert "STATUS" in header and "alternate" in header and '"serving-check2-seen"' in header
    rows = cv.rows2()
    half = cv.half2(rows)
    groups: dict[tuple, list[bool]] = {}
    for row in rows:
        prefix = row["id"].split("-")[0]
        if prefix not in ("jetstreampt", "dstack"):
            assert not half[row["id"]], row["id"]
            continue
        parts = row["id"].split("-")
        key = (prefix,) if prefix == "jetstreampt" else (parts[2], parts[3], parts[4])
        groups.setdefault(key, []).append(half[row["id"]])
    assert len(groups) == 11  # U2 one group; U4 2 scenarios x 2 chips x (2 or 3) frameworks
    for key, flags in groups.items():
        assert flags == [i % 2 == 0 for i in range(len(flags))], key
    assert sum(half.values()) == 65  # U2 7 of 14, U4 58 of 108
    for row in rows:
        kind = results[row["id"]]["kind"]
        assert (kind == cv.SERVING_SEEN2_KIND) == half[row["id"]], row["id"]


def test_the_sharegpt_lengths_are_the_benchmarks_logged_means():
    """STATUS (a), (b), (e): U2's lengths are JetStream benchmark_serving's logged totals over
    its requests with the row's model's tokenizer (Llama 3: JetStream pull 83; Llama 2:
    jetstream-pytorch pull 64; Gemma: no log found, the Llama 3 one), U3's input length vLLM's
    sampler's (kubeai pull 341), recomputed here; every row of each rule carries them and says
    where they come from."""
    assert round(214914 / 1780) == 121 and round(415416 / 1780) == 233  # Llama 3, 1780 requests
    assert round(220485 / 1999) == 110 and round(608985 / 1999) == 305  # Llama 2, 1999 requests
    assert round(30175 / 100) == 302  # pull 83's 100-request Llama 2 run agrees on the output
    assert round(203559 / 940) == 217
    logs = {"llama2-": (("110", "305"), "jetstream-pytorch/pull/64"),
            "llama3-": (("121", "233"), "JetStream/pull/83"),
            "llm:custom,name=gemma-": (("121", "233"), "JetStream/pull/83")}  # fmt: skip
    seen = {prefix: 0 for prefix in logs}
    for row in cv.rows2():
        if row["id"].startswith("jetstreampt-"):
            prefix = next(p for p in logs if row["model"].startswith(p))
            lengths, source = logs[prefix]
            seen[prefix] += 1
            assert (row["isl"], row["osl"]) == lengths, row["id"]
            assert source in row["conditions"] and "STATUS (e)" in row["conditions"], row["id"]
            if not row["not_expressible"]:  # STATUS (c): the engine as it ran
                assert (row["batching"], row["dense_cache"]) == ("interleaved", "2048"), row["id"]
        if row["id"].startswith("sgl-"):
            assert row["isl"] == "217" and "kubeai/pull/341" in row["conditions"], row["id"]
    assert seen == {"llama2-": 6, "llama3-": 3, "llm:custom,name=gemma-": 5}
    lines = _text(cv.FILENAME2).splitlines()
    header = " ".join(line.lstrip("# ") for line in lines if line.startswith("#"))
    assert "(e) U2's lengths per tokenizer" in header and "jetstream-pytorch pull 64" in header


def test_jetstream_int8_rows_are_weight_only():
    """STATUS (d): jetstream-pytorch's --quantize_weights is weight-only (bf16 products on int8
    weights) and --quantize_kv_cache an int8 cache; every U2 int8 row (seen and unseen) says
    so, every bf16 row keeps bf16 weights, and no other rule uses the column."""
    n = 0
    for row in cv.rows2():
        if row["id"].startswith("jetstreampt-") and "-int8-" in row["id"]:
            n += 1
            assert (row["dtype"], row["weight_dtype"], row["kv_dtype"]) == ("bf16", "int8", "int8")
            assert "STATUS (d)" in row["conditions"], row["id"]
        else:
            assert not row["weight_dtype"], row["id"]
    assert n == 7
