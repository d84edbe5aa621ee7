"""The check-only set (data/check_heldout.csv): published training and serving runs from source
families the rest of the project's data does not use (torchtitan, MaxText, MLPerf Training v4.1,
AMD's ROCm results, OCI), selected by the fixed rule in the file's header and committed before
any prediction for them was looked at. It estimates how the model generalises and is never used
to tune anything. Registered in `cluster.validate.CASES` as kinds "training-check" and
"serving-check"; a row the API cannot state (its `not_expressible` column) or the model refuses
is reported with the reason, never dropped. The rows of SEEN_SOURCES (torchtitan, rule C1; AMD's
and OCI's vLLM MI300X runs, rules S1 and S2) are read to diagnose the model (the file's STATUS
header): they are reported apart, as kinds "training-check-seen" and "serving-check-seen", so the
unseen kind (training-check: MaxText, MLPerf Training v4.1) keeps estimating generalisation.
A second check-only set (data/check2_heldout.csv: its own rule and source families, committed
before any of its predictions was looked at) runs through the same predictors and is reported as
kinds "training-check2" and "serving-check2". Half of its rules U2 and U4 is diagnostic (its
STATUS header, a split fixed before any of their errors was read: `half2`): kind
"serving-check2-seen"."""

from __future__ import annotations

import re
from collections.abc import Callable

from chipforge.cluster.serving import plan_serving
from chipforge.cluster.validate import (
    CASES,
    TRAINING_DEFAULTS,
    ClusterCase,
    _int,
    _model,
    _training_predictor,
    case_of,
    csv_rows,
    serving_runtime,
)
from chipforge.errors import Infeasible, WorkloadError
from chipforge.spec.loader import load_chip
from chipforge.spec.models import ChipSpec

FILENAME = "check_heldout.csv"
FILENAME2 = "check2_heldout.csv"  # the second set: kinds "<kind>-check2"
SERVING_SEEN2_KIND = "serving-check2-seen"
KINDS2 = ("training-check2", "serving-check2", SERVING_SEEN2_KIND)
# the second set's STATUS split: within rules U2 (jetstream-pytorch) and U4 (dstack's
# DeepSeek-R1), the rows of each (rule, scenario, chip, framework) group alternate in file order
# between the diagnostic half (1st, 3rd, ...: "serving-check2-seen") and the unseen half (2nd,
# 4th, ...: "serving-check2"); every other rule stays unseen. The group is read from the id.
SPLIT2 = (
    re.compile(r"(jetstreampt)-"),  # U2: TPU v5e, JetStream-PyTorch, one scenario
    re.compile(r"(dstack-r1)-(offline|online)-(mi300x|h200)-(vllm|sglang|trt-llm)-"),  # U4
)
# rows whose errors are read while diagnosing the model (STATUS in the CSV header): rule C1
# (torchtitan), rules S1 (AMD's ROCm performance results) and S2 (OCI's MI300X blog)
SEEN_SOURCES = ("github.com/pytorch/torchtitan/", "rocm-hub/dev-ai/performance-results",
                "blogs.oracle.com")  # fmt: skip
SEEN_KIND = "training-check-seen"
SERVING_SEEN_KIND = "serving-check-seen"
KINDS = ("training-check", SEEN_KIND, SERVING_SEEN_KIND)
# torchtitan's attention is PyTorch's F.scaled_dot_product_attention (models/llama/model.py),
# whose FLASH backend is PyTorch's FlashAttention-2 port: cuDNN attention became opt-in (lowest
# priority) in PyTorch 2.5.1 (pytorch/pytorch#138522, Oct 2024; on 2.6.0.dev20241204 SDPA ran
# at FA2's rate on H100, pytorch/pytorch#142132), torchtitan's context parallelism took only
# the flash and efficient backends until torchtitan#1000 (Mar 2025), and torchtitan still put
# FLASH_ATTENTION first on every GPU but B200 in May 2025 (torchtitan#1196): "flash2".
SDPA_SOURCES = {"github.com/pytorch/torchtitan/": "flash2"}
# torchtitan's loss is PyTorch's F.cross_entropy on fp32 logits (memory.LOSS_BUFFERS "eager"),
# compiled with the blocks ("compiled") at the torchtitan revisions of the June 2025 benchmark
# files (820504e, e7c0cae: components/loss.py `build_cross_entropy_loss`), whose runs compiled;
# the first key a row's source contains names its loss
LOSS_SOURCES = {
    "benchmarks/asyncTP_llama3_h100_2025-06_torchtitan.md": "compiled",
    "benchmarks/llama3-8b_h200_202506_trainy-whitefiber.md": "compiled",
    "github.com/pytorch/torchtitan/": "eager",
}
# torchtitan's context parallelism is PyTorch's ring attention (train.py `context_parallel` of
# torch.distributed.tensor.experimental; training.torch_ring)
CP_RING_SOURCES = {"github.com/pytorch/torchtitan/": "torch"}
# `chip_overrides`: a preset with the memory its source states (torchtitan's Grand Teton H100s:
# 96 GB HBM2e at 2.4 TB/s), as "hbm_capacity=<bytes>;hbm_bandwidth=<bytes/s>"
OVERRIDES = {"hbm_capacity": "capacity", "hbm_bandwidth": "bandwidth"}
# A serving row whose stated command runs SGLang's DP attention: --enable-dp-attention sets the
# data-parallel size to the tensor-parallel size (SGLang's server_args, as sgl-project/sglang
# PR 4058's log prints it: "Data parallel size is adjusted to be the same as tensor parallel
# size"), so each attention group is one chip and the FFN spans the `tp` chips: without
# --enable-ep-moe tensor-parallel (serving's MOE_TP), with it expert-parallel (wide EP).
DP_ATTENTION_FLAG, EP_MOE_FLAG = "--enable-dp-attention", "--enable-ep-moe"


def rows() -> list[dict]:
    """The CSV's rows (its '#' header lines state the selection rule)."""
    return csv_rows(FILENAME)


def rows2() -> list[dict]:
    """The second set's rows (FILENAME2; its header states its own rule)."""
    return csv_rows(FILENAME2)


def chip_for(row: dict) -> ChipSpec | str:
    """The row's chip: its preset, with the `chip_overrides` applied to the first memory level."""
    if not row["chip_overrides"]:
        return row["chip"]
    chip = load_chip(row["chip"])
    update: dict[str, float] = {}
    for part in row["chip_overrides"].split(";"):
        key, _, value = part.partition("=")
        if key not in OVERRIDES:
            raise WorkloadError(f"`chip_overrides` {key!r}: one of {', '.join(OVERRIDES)}")
        update[OVERRIDES[key]] = float(value)
    hbm = chip.hbm.model_copy(update=update)
    # the same chip (its name keeps what the model knows of the die: kernel rates, topology)
    return chip.model_copy(update={"memory": (hbm, *chip.memory[1:])})


def maxtext_tflops(row: dict, step_s: float) -> float:
    """TFLOP/s per chip as MaxText's train.py counts it at the rule's revision (76bd53b):
    6 x parameters x tokens + causal attention 6 x heads x layers x head_dim x seq^2, per
    sequence. Parameters: its param tree for a relu (2-matrix) MLP with a tied embedding: per
    layer q, k, v, out (hidden x heads x head_dim each), wi and wo (hidden x ffn), two RMSNorm
    scales; the embedding; the final norm."""
    c = _model(row["model"], row["id"])
    if c.act != "gelu" or not c.tied_embeddings:
        raise WorkloadError("MaxText's count here: a relu MLP (act=gelu), a tied embedding")
    hd = c.head_dim or c.hidden // c.heads
    params = c.layers * (4 * c.hidden * c.heads * hd + 2 * c.hidden * c.ffn + 2 * c.hidden)
    params += c.vocab * c.hidden + c.hidden
    seq = int(row["seq"])
    per_chip = int(row["global_batch"]) / int(row["chips"])  # per_device_batch_size
    flops = 6 * params * seq * per_chip + 6 * c.heads * c.layers * hd * seq**2 * per_chip
    return flops / step_s / 1e12


def kind_of(row: dict) -> str:
    """The row's kind: "<training|serving>-check", or "<training|serving>-check-seen" for a
    diagnostic (seen) row."""
    if any(s in row["source"] for s in SEEN_SOURCES):
        return f"{row['kind']}-check-seen"
    return f"{row['kind']}-check"


def _refuse(row: dict) -> None:
    if row["not_expressible"]:
        raise WorkloadError(row["not_expressible"])


def _attention(row: dict) -> str:
    """The attention kernel the row's framework runs (SDPA_SOURCES), else perf's "flash"."""
    hit = [kernel for src, kernel in SDPA_SOURCES.items() if src in row["source"]]
    return hit[0] if hit else TRAINING_DEFAULTS["attention"]


def training_row(row: dict) -> dict:
    """The row as `validate.training_plan` reads it: the defaults, the framework's attention
    kernel (SDPA_SOURCES), loss (LOSS_SOURCES) and ring attention (CP_RING_SOURCES)."""
    loss = next((kind for src, kind in LOSS_SOURCES.items() if src in row["source"]), "")
    ring = next((kind for src, kind in CP_RING_SOURCES.items() if src in row["source"]), "")
    return {**TRAINING_DEFAULTS, **row, "attention": _attention(row), "loss": loss,
            "cp_ring": ring}  # fmt: skip


def _training(row: dict) -> Callable[[], float]:
    full = {**training_row(row), "metric": "step_time_s"}

    def predict() -> float:
        _refuse(row)
        step = _training_predictor({**full, "chip": chip_for(row)})()
        if row["metric"] == "step_time_s":
            return step
        if row["metric"] == "maxtext_tflops_per_chip":
            return maxtext_tflops(row, step)
        assert row["metric"] == "tokens_per_s_per_chip", row["metric"]
        return int(row["global_batch"]) * int(row["seq"]) / int(row["chips"]) / step

    return predict


def serving_shape(row: dict) -> dict:
    """The row's tp, ep and moe_tp as its stated command ran them (DP_ATTENTION_FLAG)."""
    tp, ep = _int(row["tp"]), _int(row["ep"])
    if DP_ATTENTION_FLAG not in row.get("conditions", ""):
        return {"tp": tp, "ep": ep, "moe_tp": False}
    return {"tp": 1, "ep": tp, "moe_tp": EP_MOE_FLAG not in row["conditions"]}


def _serving(row: dict) -> Callable[[], float]:
    def predict() -> float:
        _refuse(row)
        plan = plan_serving(
            chip_for(row), row["model"], int(row["chips"]),
            isl=int(row["isl"]), osl=int(row["osl"]), dtype=row["dtype"],
            kv_dtype=row["kv_dtype"] or None, pp=_int(row["pp"]), **serving_shape(row),
            concurrency=_int(row["concurrency"]),
            max_batch=_int(row["max_batch"]), batching=row["batching"] or "continuous",
            max_num_tokens=_int(row.get("max_num_tokens", "")),
            dense_cache=_int(row.get("dense_cache") or ""),
            weight_dtype=row.get("weight_dtype") or None,  # weight-only quantization
            batch_shards=_int(row.get("batch_shards") or "") or 1,  # one engine, batch split
            # the second set's columns (MLPerf Server bounds, the dataset's length spread)
            ttft_slo=_float(row.get("ttft_slo")), tpot_slo=_float(row.get("tpot_slo")),
            slo_percentile=row.get("slo_percentile") or None,
            osl_cv=_float(row.get("osl_cv")) or 0.0, isl_cv=_float(row.get("isl_cv")) or 0.0,
            runtime=serving_runtime(row["source"], row.get("conditions") or ""),
        )  # fmt: skip
        out = plan.throughput_tokens_per_s
        if row["metric"] == "total_tokens_per_s":  # every request: isl in, osl out
            return out * (int(row["isl"]) + int(row["osl"])) / int(row["osl"])
        assert row["metric"] == "output_tokens_per_s", row["metric"]
        return out

    return predict


def _float(v: str | None) -> float | None:
    return float(v) if v else None


def _ran(predict: Callable[[], float]) -> Callable[[], float]:
    """The model refusing a configuration the source ran (its memory check, say) is the
    model's miss, not the row's: say so in the reason."""

    def checked() -> float:
        try:
            return predict()
        except Infeasible as err:
            raise Infeasible(f"the model refuses a run that ran: {err}") from None

    return checked


def _case(row: dict, kind: str) -> ClusterCase:
    predict = _training(row) if row["kind"] == "training" else _serving(row)
    return case_of(row, kind, _ran(predict), may_fail=True)


def cases() -> list[ClusterCase]:
    return [_case(row, kind_of(row)) for row in rows()]


def half2(rows: list[dict]) -> dict[str, bool]:
    """id -> whether the row is in the second set's diagnostic half (SPLIT2, the STATUS header):
    the 1st, 3rd, 5th ... row of its (rule, scenario, chip, framework) group in file order."""
    seen: dict[tuple[str, ...], int] = {}
    out = {}
    for row in rows:
        match = [m for m in (p.match(row["id"]) for p in SPLIT2) if m]
        if not match:
            out[row["id"]] = False
            continue
        group = match[0].groups()
        out[row["id"]] = seen.get(group, 0) % 2 == 0
        seen[group] = seen.get(group, 0) + 1
    return out


def cases2() -> list[ClusterCase]:
    """The second check-only set (FILENAME2), as kinds "<kind>-check2", its diagnostic half
    (half2) as "serving-check2-seen" (KINDS2)."""
    table = rows2()
    diagnostic = half2(table)
    return [
        _case(row, f"{row['kind']}-check2" + ("-seen" if diagnostic[row["id"]] else ""))
        for row in table
    ]


for _provider in (cases, cases2):
    if _provider not in CASES:
        CASES.append(_provider)
