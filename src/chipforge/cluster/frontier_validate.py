"""The frontier held-out set (data/frontier_heldout.csv): MLPerf Training/Inference v5.x closed
results, vendor FP8 recipes, DeepSeek-V3's published training and inference figures, selected by
the fixed rule in the file's header before anything was tuned to them. Registered in
`cluster.validate.CASES` as kinds "training-frontier" and "serving-frontier"; a row the model
cannot express yet is reported as such (with the reason), never dropped."""

from __future__ import annotations

from collections.abc import Callable

from chipforge.cluster.serving import at_rate, plan_serving
from chipforge.cluster.validate import (
    CASES,
    TRAINING_DEFAULTS,
    ClusterCase,
    _int,
    _training_predictor,
    case_of,
    csv_rows,
    serving_runtime,
)
from chipforge.errors import WorkloadError

FILENAME = "frontier_heldout.csv"
SERVING_METRICS = {
    "output_tokens_per_s": lambda p: p.throughput_tokens_per_s,
    "output_tokens_per_s_per_chip": lambda p: p.throughput_tokens_per_s / p.chips,
    "input_tokens_per_s_per_chip": lambda p: p.input_tokens_per_s / p.chips,
}
# metrics of published rows that no mechanism predicts yet, and why
MISSING: dict[str, str] = {}
# latency rows: the Server configuration (the search under the row's p99 bounds) at the logged
# target rate, or the LOAD RULE's (`rate_of`), by `serving.at_rate` (TTFT and TPOT percentiles
# from cluster.queueing)
AT_RATE = {
    "p99_ttft_s": lambda p: p.ttft_at("p99"),
    "p99_tpot_s": lambda p: p.tpot_at("p99"),
}


def rate_of(row: dict, plan_of: Callable) -> float:
    """Requests/s a latency row is taken at: the logged target rate, or, where the row states
    its engine's logged Offline rate (`offline_rate`, the CSV header's LOAD RULE: the same
    engine runs both scenarios), the same fraction of the modelled Offline rate, i.e. the plan
    without the row's latency bounds."""
    rate = float(row["request_rate"])
    if not row.get("offline_rate"):
        return rate
    offline = plan_of(ttft_slo=None, tpot_slo=None, slo_percentile=None)
    return rate / float(row["offline_rate"]) * offline.throughput_tokens_per_s / offline.osl


def rows() -> list[dict]:
    """The CSV's rows (its '#' header lines state the selection rule). The last columns
    (osl_cv, attn_dtype, ep_overlap, pool, prefix_hit,
    adp_balance, isl_cv, max_num_tokens, adp_batching_wait, cuda_graph_batches: space-separated,
    offline_rate: `rate_of`)
    are serving inputs: training rows
    may leave them out."""
    return csv_rows(FILENAME)


def _float(v: str) -> float | None:
    return float(v) if v else None


def _serving_predictor(row: dict) -> Callable[[], float]:
    def plan_of(**bounds):  # the row's configuration; `bounds` replace its SLOs
        return plan_serving(
            row["chip"], row["model"], int(row["chips"]),
            isl=int(row["isl"]), osl=int(row["osl"]), dtype=row["dtype"],
            kv_dtype=row["kv_dtype"] or None, max_batch=_int(row["max_batch"]),
            tp=_int(row["tp"]), pp=_int(row["pp"]), ep=_int(row["ep"]),
            concurrency=_int(row["concurrency"]),
            **{"ttft_slo": _float(row["ttft_slo"]), "tpot_slo": _float(row["tpot_slo"]),
               "slo_percentile": row["slo_percentile"] or None, **bounds},
            osl_cv=_float(row.get("osl_cv") or "") or 0.0,
            isl_cv=_float(row.get("isl_cv") or "") or 0.0,
            attn_dtype=row.get("attn_dtype") or None, ep_overlap=row.get("ep_overlap") == "yes",
            disaggregated=row.get("pool") or False,
            prefix_hit=_float(row.get("prefix_hit") or "") or 0.0,
            adp_balance=_int(row.get("adp_balance") or ""),
            max_num_tokens=_int(row.get("max_num_tokens") or ""),
            adp_batching_wait=_int(row.get("adp_batching_wait") or "") or 0,
            cuda_graph_batches=tuple(int(b) for b in (row.get("cuda_graph_batches") or "").split()),
            runtime=serving_runtime(row["source"], row.get("conditions") or ""),
        )  # fmt: skip

    def predict() -> float:
        if row["metric"] in MISSING:
            raise WorkloadError(f"`{row['metric']}` is not modelled: {MISSING[row['metric']]}")
        plan = plan_of()
        if row["metric"] in AT_RATE:
            return AT_RATE[row["metric"]](at_rate(plan, rate_of(row, plan_of)))
        return SERVING_METRICS[row["metric"]](plan)

    return predict


# The distributed-optimizer options every T1/T2 recipe enables (training.FP8_PARAM_BYTES):
# MLPerf Training v5.x NVIDIA llama31_8b / llama31_405b config_common.sh (USE_DIST_OPTIMIZER,
# OVERLAP_GRAD_REDUCE, OVERLAP_PARAM_GATHER, FP8_PARAM_GATHER=True) and the Megatron-Bridge
# 25.11 recipes (ddp overlap_param_gather=True; fp8_param_gather=True in the FP8-CS and MXFP8
# precision configs, False in NVFP4's). FP8 primary weights apply to the FP8 rows only. The
# Megatron-Bridge Llama recipes also set CommOverlapConfig(tp_comm_overlap=True)
# (recipes/llama/llama3.py: llama3_70b_pretrain_config, llama31_405b_pretrain_config), which the
# rows' `tp_overlap` column leaves empty. Their MXFP8 configs turn overlap_param_gather off
# ("keeping this enabled causes NaN grad norm": llama31_llm_pretrain.py,
# deepseek_llm_pretrain.py). Every Megatron-Bridge FSDP recipe on a Grace system (GB200, GB300:
# use_megatron_fsdp=True with cpu_offloading_num_layers=10..92, llama3/llama31
# workload_base_configs.py) offloads activations to the Grace CPU. Their DeepSeek-V3 GB200 /
# GB300 configs dispatch tokens with moe_flex_dispatcher_backend="hybridep" (the B200 one with
# the default all-to-all; deepseek workload_base_configs.py); DeepSeek-V3's own run used its
# DeepEP kernels (report Sec. 3.2.2; DeepEP README). So do their Qwen3-30B-A3B and
# Qwen3-235B-A22B GB200 / GB300 configs, in every revision read (r0.2.1, r0.2.2
# qwen3/workload_base_configs.py; v0.3.0, v0.3.1, v0.4.0 qwen3_workload_base_configs.py: each
# *_GB300_* / *_GB200_* config sets moe_flex_dispatcher_backend="hybridep", passed to
# recipes/qwen/qwen3_moe.py, whose apply_flex_dispatcher_backend sets
# moe_token_dispatcher_type="flex" on GB200/GB300); their B200 and H100 configs keep the
# all-to-all, as GPT-OSS does everywhere (gpt_oss_provider.py moe_token_dispatcher_type
# "alltoall", no 25.11 GPT-OSS config sets a flex backend). Gradient buckets
# (training.BUCKET_PARAMS): the MLPerf v5.1 llama31_8b configs set BUCKET_SIZE=768000000
# (config_common_8b.sh), the llama31_405b ones leave NeMo's conf/custom.yaml default,
# bucket_size 134217728; the v5.0 and Megatron-Bridge rows keep Megatron-Core's default. A
# row's own non-empty column wins.
# Selective recompute (layer.RECOMPUTE_MODULES): DeepSeek-V3 recomputes "all RMSNorm operations
# and MLA up-projections" (report Sec. 3.2.3). Every revision of the Megatron-Bridge DeepSeek-V3
# workload_base_configs.py read sets recompute_modules=["mla_up_proj"] for the B200 config and
# for the GB200 BF16 and MXFP8 ones (some add "mlp"); its GB300 configs differ between
# revisions ("mlp", "moe_act", "mla_up_proj" or none), so those rows keep the searched recompute.
# Megatron-Bridge's 25.11 MoE rows ran token-dropless (performance summary: "all benchmarks are
# token-dropless") with the experts outside CUDA graphs: no 25.11 recipe sets a capacity factor
# or padding, and their CUDA-graph scopes stop at "attn", "moe_router", "moe_preprocess"
# (r0.2.x deepseek, qwen3, gpt_oss workload_base_configs.py): training.MOE_HOST_S_PER_LAUNCH
# (moe_host_sync; no effect on a dense model).
# Every revision of the Megatron-Bridge GPT-OSS recipes read (r0.2.1, r0.2.2
# gpt_oss/workload_base_configs.py; v0.3.0, v0.3.1, v0.4.0 gpt_oss_workload_base_configs.py) sets
# recompute_modules=["layernorm", "moe_act"] for the GB200, B200 and H100 BF16 configs and none
# for GB300 (memory.RECOMPUTED_SBH prices what they free).
HYBRIDEP_MODELS = ("deepseek", "qwen3")  # Megatron-Bridge GB200/GB300 configs: hybridep
DEEPSEEK_RECOMPUTE = "layernorm+mla_up_proj"
GPT_OSS_RECOMPUTE = "layernorm+moe_act"
MLPERF_V51 = "github.com/mlcommons/training_results_v5.1"
MLPERF_V51_BUCKETS = {"llama3-8b": "768000000", "llama3-405b": "134217728"}
# their NCCL communicators' CTA caps (training.NCCL_GROUPS; config_common.sh NCCL_CFG_PATH ->
# conf/nccl/custom_communicator_cta.yaml, llama31_8b and llama31_405b alike: dp_cp 8, cp 1, pp 2)
MLPERF_V51_CTAS = "dp=8+cp=1+pp=2"
RECIPE_SOURCES = ("github.com/mlcommons/training_results_v5", "NVIDIA-NeMo/Megatron-Bridge")
DEEPSEEK_V3_REPORT = "arxiv.org/abs/2412.19437"


def _recipe_options(row: dict) -> dict:
    if DEEPSEEK_V3_REPORT in row["source"]:
        # DeepEP, FP8 dispatch and BF16 combine (report Sec. 3.3.3; training.ep_bytes)
        return {"moe_dispatcher": "flex", "recompute_modules": DEEPSEEK_RECOMPUTE,
                "fp8_dispatch": "yes"}  # fmt: skip
    if not any(src in row["source"] for src in RECIPE_SOURCES):
        return {}
    fp8 = "yes" if row["dtype"] == "fp8" else ""
    opts = {"overlap_param_gather": "yes", "fp8_param_gather": fp8}
    if MLPERF_V51 in row["source"]:
        opts["bucket_size"] = MLPERF_V51_BUCKETS.get(row["model"], "")
        opts["nccl_ctas"] = MLPERF_V51_CTAS
    if "Megatron-Bridge" in row["source"]:
        opts["moe_host_sync"] = "yes"
        if row["model"].startswith("llama"):
            opts["tp_overlap"] = "yes"
        if row["fp8_recipe"] == "mxfp8":
            opts["overlap_param_gather"] = ""
        if row["zero"] == "3" and row["chip"] in ("gb200", "gb300"):
            opts["activation_offload"] = "yes"
        if row["model"].startswith(HYBRIDEP_MODELS) and row["chip"] in ("gb200", "gb300"):
            opts["moe_dispatcher"] = "flex"
        if row["model"].startswith("deepseek") and row["chip"] in ("gb200", "b200"):
            opts.update(recompute="selective", recompute_modules="mla_up_proj")
        if row["model"].startswith("gpt-oss") and row["chip"] in ("gb200", "b200", "h100"):
            opts.update(recompute="selective", recompute_modules=GPT_OSS_RECOMPUTE)
    return opts


def _training(row: dict) -> Callable[[], float]:
    full = {**TRAINING_DEFAULTS, **row}
    full.update({k: v for k, v in _recipe_options(row).items() if not row.get(k)})
    if row["metric"] != "tokens_per_s_per_chip":
        return _training_predictor(full)
    step = _training_predictor({**full, "metric": "step_time_s"})
    tokens = int(row["global_batch"]) * int(row["seq"]) / int(row["chips"])
    return lambda: tokens / step()


def _cases(kind: str) -> list[ClusterCase]:
    predictor = _training if kind == "training" else _serving_predictor
    return [
        case_of(row, f"{kind}-frontier", predictor(row), may_fail=True)
        for row in rows()
        if row["kind"] == kind
    ]


def training_cases() -> list[ClusterCase]:
    return _cases("training")


def serving_cases() -> list[ClusterCase]:
    return _cases("serving")


for _provider in (training_cases, serving_cases):
    if _provider not in CASES:
        CASES.append(_provider)
