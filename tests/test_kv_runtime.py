"""How a serving runtime sizes its KV cache (kvcache.RUNTIMES): vLLM takes a fraction of the
whole memory for weights, activations and cache; TensorRT-LLM a fraction of what the weights and
activations leave free (KvCacheConfig.free_gpu_memory_fraction). The validation rows name their
runtime through their source (validate.serving_runtime)."""

from __future__ import annotations

import json

import pytest

from chipforge.cluster.kvcache import MEMORY_UTILIZATION, Memory
from chipforge.cluster.serving import plan_serving
from chipforge.cluster.validate import csv_rows, serving_runtime
from chipforge.errors import WorkloadError


def test_tensorrt_llm_takes_its_fraction_of_the_free_memory():
    cap, w, a = 80e9, 35e9, 3e9
    vllm = Memory(cap, w, a, 1e5)
    trt = Memory(cap, w, a, 1e5, runtime="tensorrt-llm")
    assert vllm.kv_budget == pytest.approx(MEMORY_UTILIZATION * cap - w - a)
    assert trt.kv_budget == pytest.approx(MEMORY_UTILIZATION * (cap - w - a))
    # the two agree with nothing loaded; TensorRT-LLM's holds 10 % of the weights more
    empty = Memory(cap, 0, 0, 1e5)
    assert Memory(cap, 0, 0, 1e5, runtime="tensorrt-llm").kv_budget == empty.kv_budget
    assert trt.kv_budget - vllm.kv_budget == pytest.approx((1 - MEMORY_UTILIZATION) * (w + a))


def test_rows_name_their_runtime_by_source():
    by_source = {r["id"]: serving_runtime(r["source"]) for f in ("serving_cases.csv",
                 "serving_heldout.csv") for r in csv_rows(f)}  # fmt: skip
    assert by_source["nim-h100x2-llama3-70b-5000-500-c100-ttft"] == "tensorrt-llm"
    assert by_source["trtllm-a100-llama2-70b-128-2048-b240"] == "tensorrt-llm"
    assert by_source["mlperf-h100x8-llama2-70b-offline"] == "tensorrt-llm"  # ..._TRT/ system
    assert serving_runtime("github.com/vllm-project/vllm benchmarks") == "vllm"
    assert serving_runtime("") == "vllm"


def test_a_tensorrt_llm_plan_holds_more_sequences_and_queues_less():
    kw = dict(isl=5000, osl=500, dtype="fp8", tp=2, pp=1, concurrency=100)
    vllm = plan_serving("h100", "llama3-70b", 2, **kw)
    trt = plan_serving("h100", "llama3-70b", 2, runtime="tensorrt-llm", **kw)
    assert trt.kv_cache_capacity_tokens > 1.05 * vllm.kv_cache_capacity_tokens
    assert trt.batch > vllm.batch and trt.ttft_s < vllm.ttft_s
    with pytest.raises(WorkloadError, match="runtime"):
        plan_serving("h100", "llama3-70b", 2, runtime="trt", **kw)


def test_serve_takes_the_runtime_flag(capsys):
    from typer.testing import CliRunner

    from chipforge.cli import app, main

    args = "serve --chip h100 --model llama3-70b --chips 2 --isl 5000 --osl 500 --dtype fp8"
    args = [*args.split(), "--tp", "2", "--concurrency", "100", "--json"]
    held = {}
    for runtime in ("vllm", "tensorrt-llm"):
        result = CliRunner().invoke(app, [*args, "--runtime", runtime])
        assert result.exit_code == 0, result.output
        held[runtime] = json.loads(result.output)["kv_cache_capacity_tokens"]
    assert held["tensorrt-llm"] > held["vllm"]
    with pytest.raises(SystemExit) as done:  # a user error: one line, exit 2
        main([*args, "--runtime", "trt"])
    assert done.value.code == 2 and "--runtime must be one of" in capsys.readouterr().err


def test_a_shared_source_leaves_the_engine_to_the_conditions():
    """dstack's DeepSeek-R1 results table holds TensorRT-LLM, vLLM and SGLang rows under one
    source URL: the rows' conditions name the engine ("TensorRT-LLM 0.17", "trtllm-serve"), so
    its TensorRT-LLM rows size their cache as TensorRT-LLM does (they kept vLLM's rule)."""
    rows = [r for r in csv_rows("check2_heldout.csv") if r["id"].startswith("dstack-r1-")]
    runtime = {r["id"]: serving_runtime(r["source"], r["conditions"]) for r in rows}
    trt = [i for i in runtime if "-trt-llm-" in i]
    assert len(trt) == 21 and {runtime[i] for i in trt} == {"tensorrt-llm"}
    assert {v for i, v in runtime.items() if i not in trt} == {"vllm"}  # vLLM, SGLang rows
    assert serving_runtime("https://example.org/results.csv", "vllm serve, TP 8") == "vllm"


def test_a_serving_plan_s_json_names_the_runtime_it_was_priced_by():
    """The runtime sets the KV cache and (MLA) the absorbed products' precision: the plan's JSON
    says which (it did not, so two plans differing by it read alike)."""
    from chipforge.cluster import plan_serving

    kw = {"isl": 512, "osl": 64, "tp": 1, "pp": 1, "concurrency": 4}
    for runtime in ("vllm", "tensorrt-llm"):
        plan = plan_serving("h100", "llama3-8b", 1, runtime=runtime, **kw)
        assert plan.to_dict()["plan"]["runtime"] == runtime
