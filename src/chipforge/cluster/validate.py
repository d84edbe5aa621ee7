"""Multi-chip validation: measured training runs (data/cluster_cases.csv, each with the
configuration its source states) against `plan_training`.

Other modules add cases by appending a provider to `CASES`: a function returning a list of
`ClusterCase` (e.g. the serving cases). `run()` evaluates every provider's cases; `summary()`
gives the median and largest absolute error. Flags left empty in the CSV are searched.
"""

from __future__ import annotations

import csv
import importlib
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from chipforge.cluster.search import plan_training
from chipforge.cluster.topology import topology_for
from chipforge.cluster.training import model_flops_per_token
from chipforge.errors import ChipforgeError
from chipforge.spec.loader import load_chip
from chipforge.spec.models import ChipSpec
from chipforge.workload.config import ModelConfig, load_model


@dataclass(frozen=True)
class ClusterCase:
    id: str
    kind: str  # "training", "serving", ...
    metric: str
    published: float
    source: str
    predict: Callable[[], float]
    # held-out rows the model may not express yet: a ChipforgeError is reported as the row's
    # `not_expressible` reason instead of failing the run
    may_fail: bool = False


CASES: list[Callable[[], list[ClusterCase]]] = []
# The training framework each source family ran, read from the source's own text (a data
# file's rule header, the run's code), never from its rows' errors; the first listed substring
# of a row's `source` names it. Megatron-LM with sequence parallelism (since Megatron-LM
# 02bb1f5, March 2022: Korthikanti et al. 2022's code), NeMo and Megatron-Bridge (Megatron-Core
# with Transformer Engine) run its asynchronous backward TP communication
# (training.TP_ASYNC_BACKWARD): every row of theirs whose plan keeps sequence parallelism
# states it (`framework_options`), none other does.
FRAMEWORKS = (
    ("arXiv 2205.05198", "megatron-lm"),  # Korthikanti et al. 2022 (Megatron-LM, SP)
    ("arXiv 2104.04473", "megatron-lm-2021"),  # Narayanan et al. 2021: before SP and it
    ("arxiv.org/abs/2201.11990", "megatron-deepspeed"),  # MT-NLG 530B (Jan 2022): before it
    ("NVIDIA NeMo Framework", "nemo"),  # NeMo performance tables
    ("NVIDIA-NeMo/Megatron-Bridge", "megatron-bridge"),
    # MLPerf Training NVIDIA results (<system>_..._nemo: NeMo + Megatron-Core + TE); Oracle's
    # v4.1 GPT-3 submission runs NVIDIA's NeMo implementation (Oracle/benchmarks/gpt3/*:
    # megatron_gpt_pretraining_custom.py imports nemo, NVIDIA's container)
    ("/NVIDIA/results/", "nemo"),
    ("training_results_v4.1/blob/b87b9e396f771345d4ef122ba33456304f15228d/Oracle/", "nemo"),
    ("/Google/results/", "maxtext"),  # MLPerf Training v4.0 TPU v5p (MaxText)
    ("AI-Hypercomputer/maxtext", "maxtext"),
    ("pytorch/torchtitan", "torchtitan"),  # DTensor TP
    ("mosaicml/llm-foundry", "llm-foundry"),  # Composer, FSDP
    ("arXiv 2204.02311", "pax"),  # PaLM
    ("arXiv 2407.21783", "llama3"),  # Meta's own framework
    ("arxiv.org/abs/2412.19437", "hai-llm"),  # DeepSeek-V3
)
TP_ASYNC_BACKWARD_FRAMEWORKS = ("megatron-lm", "nemo", "megatron-bridge")
# Legacy Megatron-LM (before Megatron-Core's p2p_communication.py) splits each stage send over
# the TP ranks and all-gathers it on arrival when sequence parallelism is off
# (training.pp_hop; `scatter_gather_tensors_in_pipeline` on by default)
PP_SCATTER_GATHER_FRAMEWORKS = ("megatron-lm-2021", "megatron-lm")
# Composer evaluates llm-foundry MPT's two train metrics (LanguageCrossEntropy, LanguagePerplexity)
# on every micro-batch's logits (training.TRAIN_METRIC_BYTES)
TRAIN_METRICS_FRAMEWORKS = {"llm-foundry": 2}


# The serving rows' runtime, as their source names it, for how it sizes the KV cache
# (kvcache.RUNTIMES): TensorRT-LLM's own performance pages, NIM's benchmarks (NIM's optimized
# profiles run TensorRT-LLM: NIM for LLMs docs, "Optimization") and MLPerf Inference systems
# run with the TensorRT harness (a results directory whose system name ends in "_TRT", NVIDIA's
# TensorRT-LLM harness). A source shared by several engines (one benchmark repository's results
# table) names none, so a row's `conditions` count too where they name the engine that ran
# (TENSORRT_LLM_CONDITIONS: dstack's DeepSeek-R1 rows, "TensorRT-LLM 0.17" offline and
# "trtllm-serve" online, beside vLLM and SGLang rows of the same CSV). Every other row (vLLM,
# SGLang, JetStream, ROCm, unnamed) keeps "vllm".
TENSORRT_LLM_SOURCES = ("TensorRT-LLM", "docs.nvidia.com/nim", "_TRT/")
TENSORRT_LLM_CONDITIONS = ("TensorRT-LLM", "trtllm-serve")


def serving_runtime(source: str, conditions: str = "") -> str:
    """The runtime (kvcache.RUNTIMES) a serving row ran, by its `source`
    (TENSORRT_LLM_SOURCES) or its `conditions` (TENSORRT_LLM_CONDITIONS)."""
    trt = any(k in source for k in TENSORRT_LLM_SOURCES) or any(
        k in conditions for k in TENSORRT_LLM_CONDITIONS
    )
    return "tensorrt-llm" if trt else "vllm"


def framework(source: str) -> str:
    """The training framework a row's `source` ran (FRAMEWORKS), "" when none is listed."""
    return next((name for key, name in FRAMEWORKS if key in source), "")


def framework_options(row: dict) -> dict[str, str]:
    """The run options a training row's framework implies (FRAMEWORKS): Megatron's asynchronous
    backward TP communication where it ran Megatron's sequence-parallel layers, legacy
    Megatron-LM's scatter/gather stage sends where it ran without them, Composer's train
    metrics (TRAIN_METRICS_FRAMEWORKS)."""
    name = framework(row.get("source", ""))
    sp = row.get("sp") != "no"
    if name in TRAIN_METRICS_FRAMEWORKS:
        return {"train_metrics": str(TRAIN_METRICS_FRAMEWORKS[name])}
    if name in TP_ASYNC_BACKWARD_FRAMEWORKS and sp:
        return {"tp_async_backward": "yes"}
    return {"pp_scatter_gather": "yes"} if name in PP_SCATTER_GATHER_FRAMEWORKS and not sp else {}


# the held-out sets' training options that no row states
TRAINING_DEFAULTS = {"pod": "", "attention": "flash", "block": "sequential", "sp": "yes"}


def _model(text: str, name: str) -> ModelConfig:
    if "=" not in text:
        return load_model(text)
    fields: dict = {}
    for part in text.split(";"):
        k, v = part.split("=")
        fields[k] = v if k == "act" else bool(int(v)) if k == "tied_embeddings" else int(v)
    return ModelConfig(name=name, **fields)


def _int(v: str) -> int | None:
    return int(v) if v else None


def megatron_tflops(c: ModelConfig, batch: int, seq: int, step_s: float, gpus: int) -> float:
    """Narayanan et al. 2021 Eq. 3 (counts the recomputed forward): per-GPU TFLOP/s."""
    b, s, layers, h, v = batch, seq, c.layers, c.hidden, c.vocab
    flops = 96 * b * s * layers * h * h * (1 + s / (6 * h) + v / (16 * layers * h))
    return flops / step_s / gpus / 1e12


def _pairs(text: str) -> dict[str, int]:
    """'dp=8+cp=1' -> {"dp": 8, "cp": 1}."""
    return {k: int(v) for k, v in (part.split("=") for part in text.split("+") if part)}


def training_plan(row: dict):
    """The `plan_training` result of a training row's configuration (a CSV row's columns;
    `chip` a preset name or a ChipSpec)."""
    chip = row["chip"] if isinstance(row["chip"], ChipSpec) else load_chip(row["chip"])
    chips = int(row["chips"])
    c = _model(row["model"], row["id"])
    # pods of a stated size (PaLM: 2 x 3072; TPU multi-slice runs: one slice)
    topo = topology_for(chip, chips, pod=_int(row["pod"] or ""))
    implied = framework_options(row)
    return plan_training(
        chip, c, chips,
        seq=int(row["seq"]), global_batch=_int(row["global_batch"]), dtype=row["dtype"],
        tp=_int(row["tp"]), pp=_int(row["pp"]), dp=_int(row["dp"]), cp=_int(row["cp"]),
        ep=_int(row["ep"]), zero=_int(row["zero"]), recompute=row["recompute"] or None,
        micro_batch=_int(row["micro_batch"]), interleave=_int(row["interleave"]),
        topology=topo, attention=row["attention"] or "flash",
        parallel_block=row["block"] == "parallel", sequence_parallel=row["sp"] != "no",
        schedule=row.get("schedule") or "1f1b", tp_overlap=row.get("tp_overlap") == "yes",
        fp8_recipe=row.get("fp8_recipe") or "delayed",
        overlap_param_gather=row.get("overlap_param_gather") == "yes",
        fp8_param_gather=row.get("fp8_param_gather") == "yes",
        activation_offload=row.get("activation_offload") == "yes",
        moe_dispatcher=row.get("moe_dispatcher") or "alltoall",
        optimizer_offload=row.get("optimizer_offload") == "yes",
        shared_expert_overlap=row.get("shared_expert_overlap") == "yes",
        bucket_size=_int(row.get("bucket_size") or ""),
        recompute_modules=tuple((row.get("recompute_modules") or "core_attn").split("+")),
        nccl_ctas=_pairs(row.get("nccl_ctas") or ""),
        moe_host_sync=row.get("moe_host_sync") == "yes",
        loss=row.get("loss") or "fused",
        tp_async_backward=(row.get("tp_async_backward")
                           or implied.get("tp_async_backward")) == "yes",
        fp8_dispatch=row.get("fp8_dispatch") == "yes",
        pp_scatter_gather=implied.get("pp_scatter_gather") == "yes",
        eager_ops=row.get("eager_ops") == "yes",
        cp_ring=row.get("cp_ring") or "p2p",
        train_metrics=int(row.get("train_metrics") or implied.get("train_metrics") or 0),
        dp_shard=_int(row.get("dp_shard") or "") or 0,  # blank: every data-parallel rank
    )  # fmt: skip


def _training_predictor(row: dict) -> Callable[[], float]:
    def predict() -> float:
        chip = row["chip"] if isinstance(row["chip"], ChipSpec) else load_chip(row["chip"])
        c = _model(row["model"], row["id"])
        chips = int(row["chips"])
        res = training_plan(row)
        if row["metric"] == "step_time_s":
            return res.step_time_s
        if row["metric"] == "mfu":
            return res.mfu
        if row["metric"] == "llmfoundry_mfu":  # llm-foundry's numerator: 6 x NumParams, which
            # counts the learned position table (seq x d_model; benchmarking README, NumParams
            # grows by exactly (seq - 2048) x d_model), + 12 L s d
            return res.mfu * (1 + 6 * res.seq * c.hidden / model_flops_per_token(c, res.seq))
        if row["metric"] == "model_tflops_per_gpu":  # 6N + attention FLOPs per second per chip
            return res.mfu * chip.peak_flops(row["dtype"]) / 1e12
        assert row["metric"] == "megatron_tflops_per_gpu", row["metric"]
        return megatron_tflops(c, res.global_batch, res.seq, res.step_time_s, chips)

    return predict


def csv_rows(filename: str) -> list[dict]:
    """The rows of `chipforge/data/<filename>`; '#' lines (a held-out file's selection rule and
    status header) are skipped."""
    text = (resources.files("chipforge.data") / filename).read_text()
    return list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))


def case_of(
    row: dict, kind: str, predict: Callable[[], float], may_fail: bool = False
) -> ClusterCase:
    """The `ClusterCase` of a CSV row (its id, metric, published value and source)."""
    return ClusterCase(
        id=row["id"],
        kind=kind,
        metric=row["metric"],
        published=float(row["value"]),
        source=row["source"],
        predict=predict,
        may_fail=may_fail,
    )


def cases_from_csv(filename: str, kind: str, predictor: Callable) -> list[ClusterCase]:
    """One `ClusterCase` per row of `chipforge/data/<filename>`; `predictor(row)` predicts it."""
    return [case_of(row, kind, predictor(row)) for row in csv_rows(filename)]


def training_cases() -> list[ClusterCase]:
    return cases_from_csv("cluster_cases.csv", "training", _training_predictor)


def heldout_training_cases() -> list[ClusterCase]:
    """Training measurements added after the model was set (data/cluster_heldout.csv): never
    used to choose a mechanism or a constant, reported separately."""
    return cases_from_csv("cluster_heldout.csv", "training-heldout", _training_predictor)


CASES.append(training_cases)
CASES.append(heldout_training_cases)
# the modules whose sets register on import (each appends its providers to `CASES`), in the
# order the report lists them: the check-only sets, the frontier held-out set, published peak
# memory, the serving sets
SETS = ("check_validate", "frontier_validate", "memory_validate", "serving_validate")


def load_sets() -> None:
    """Register every validation set of `SETS` (importing a module twice registers it once)."""
    for name in SETS:
        importlib.import_module(f"chipforge.cluster.{name}")


def run(kinds: tuple[str, ...] | None = None) -> list[dict]:
    """Every registered case: published, predicted and relative error."""
    load_sets()
    rows = []
    for provider in CASES:
        for case in provider():
            if kinds and case.kind not in kinds:
                continue
            row = {"id": case.id, "kind": case.kind, "metric": case.metric,
                   "published": case.published, "source": case.source}  # fmt: skip
            try:
                pred = case.predict()
            except ChipforgeError as err:
                if not case.may_fail:
                    raise
                rows.append({**row, "predicted": None, "error": None, "not_expressible": str(err)})
                continue
            rows.append({**row, "predicted": pred, "error": pred / case.published - 1})
    return rows


def summary(rows: list[dict]) -> dict:
    """Median and largest |error| over the rows the model expresses; the others are counted
    as `not_expressible`."""
    errs = [abs(r["error"]) for r in rows if r["error"] is not None]
    return {
        "cases": len(errs),
        "median_abs_error": statistics.median(errs) if errs else 0.0,
        "max_abs_error": max(errs, default=0.0),
        "not_expressible": len(rows) - len(errs),
    }


def report() -> tuple[dict, list]:
    """JSON data and tables for `chipforge validate --cluster`."""
    from rich.table import Table

    rows = run()
    overall = summary(rows)  # its `cases` is a count: here the rows, as `validate --json` has
    data = {"cases": rows, "evaluated": overall.pop("cases"), **overall}
    for kind in sorted({r["kind"] for r in rows}):
        data[f"{kind}_summary"] = summary([r for r in rows if r["kind"] == kind])
    t = Table(title="multi-chip predictions vs published measurements")
    for col in ("case", "kind", "metric", "predicted", "published", "error"):
        t.add_column(col, justify="left" if col in ("case", "kind", "metric") else "right")
    for r in rows:
        if r["error"] is None:
            t.add_row(r["id"], r["kind"], r["metric"], "not expressible", f"{r['published']:,.4g}",
                      r["not_expressible"][:60])  # fmt: skip
            continue
        t.add_row(
            r["id"], r["kind"], r["metric"], f"{r['predicted']:,.4g}", f"{r['published']:,.4g}",
            f"{100 * r['error']:+.1f}%",
        )  # fmt: skip
    foot = Table(show_header=False)
    foot.add_column("figure", style="bold")
    foot.add_column("value")
    for name, s in [("all", summary(rows))] + [
        (k.removesuffix("_summary"), v) for k, v in data.items() if k.endswith("_summary")
    ]:
        missing = f", {s['not_expressible']} not expressible" if s["not_expressible"] else ""
        foot.add_row(
            f"{name}: {s['cases']} cases",
            f"median |error| {s['median_abs_error']:.1%}, max {s['max_abs_error']:.1%}{missing}",
        )
    return data, [t, foot]
