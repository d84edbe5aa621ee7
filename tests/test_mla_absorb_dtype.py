"""MLA's absorbed products (W_UK into the query, W_UV after attention) at the runtime's own
precision: vLLM (and SGLang on CUDA) keep 16-bit copies of W_UK_T / W_UV beside the quantized
kv_b_proj and run both bmm's in 16 bits; TensorRT-LLM runs them in block-FP8 on Hopper
(cluster.kvcache.ABSORB_16BIT_RUNTIMES). An FP8 run priced them at FP8 whatever the runtime."""

from __future__ import annotations

from chipforge.cluster import serving as s
from chipforge.cluster.kvcache import absorb_dtype, memory
from chipforge.spec.loader import load_chip
from chipforge.workload.ops import MatMul
from chipforge.workload.resolve import resolve_model

V3 = resolve_model("deepseek-v3")  # 61 layers, 128 heads, kv_lora 512, nope 128, v 128
SHAPE = {"tp": 8, "pp": 1, "kv_dtype": "bf16"}


def test_the_rule_per_runtime_and_run_dtype():
    assert absorb_dtype(V3, "vllm", "fp8") == "bf16"  # the activation dtype of an FP8 run
    assert absorb_dtype(V3, "vllm", "fp4") == "bf16"
    assert absorb_dtype(V3, "vllm", "fp16") == "fp16"
    assert absorb_dtype(V3, "tensorrt-llm", "fp8") is None  # as its projections
    assert absorb_dtype(resolve_model("llama3-8b"), "vllm", "fp8") is None  # no MLA


def test_vllm_holds_16_bit_copies_of_the_absorbed_matrices():
    cap = load_chip("h200").hbm.capacity
    vllm = memory(V3, cap, dtype="fp8", runtime="vllm", **SHAPE).weights
    trt = memory(V3, cap, dtype="fp8", runtime="tensorrt-llm", **SHAPE).weights
    # W_UK_T and W_UV of the chip's 16 heads in every layer, 2 bytes each
    assert vllm - trt == 61 * (128 // 8) * (128 + 128) * 512 * 2
    # a 16-bit run's kv_b_proj is already the copy (views of it, no bytes more)
    bf16 = {
        r: memory(V3, cap, dtype="bf16", runtime=r, **SHAPE).weights
        for r in ("vllm", "tensorrt-llm")
    }
    assert bf16["vllm"] == bf16["tensorrt-llm"]


def test_the_decode_graph_prices_them_at_16_bits_under_vllm():
    def absorbed(runtime: str) -> dict[str, MatMul]:
        g = s._graph(s._absorbing(V3, runtime, "fp8"), "decode", 8, 1000, 8, "fp8", "bf16")
        return {op.name.rsplit(".", 1)[-1]: op for op in g.ops
                if op.name.rsplit(".", 1)[-1] in s.ABSORBED_MATMULS}  # fmt: skip

    vllm, trt = absorbed("vllm"), absorbed("tensorrt-llm")
    assert set(vllm) == {"q_absorb", "v_absorb"}
    for name in vllm:
        assert (vllm[name].dtype, trt[name].dtype) == ("bf16", "fp8")
        assert vllm[name].weight_bytes == 2 * trt[name].weight_bytes == 16 * 128 * 512 * 2


def test_a_vllm_decode_step_is_slower_than_tensorrt_llm_s_by_those_products():
    kw = {"isl": 1000, "osl": 100, "tp": 8, "pp": 1, "ep": 1, "batch": 8, "dt": "fp8",
          "kvd": "bf16"}  # fmt: skip
    chip, topo = load_chip("h200"), s.topology_for(load_chip("h200"), 8)
    vllm = s.evaluate(chip, V3, 8, topo, runtime="vllm", **kw)
    trt = s.evaluate(chip, V3, 8, topo, runtime="tensorrt-llm", **kw)
    assert vllm.tpot_s > trt.tpot_s
    assert vllm.tpot_s < 1.05 * trt.tpot_s  # two small products of each layer
