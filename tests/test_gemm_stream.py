"""MI300X's measured skinny-GEMM streaming rate (`ChipSpec.gemm_stream_bandwidth`, mi300x.toml).

Source: Hugging Face / AMD, "Creating custom kernels for the AMD MI300" (2025-07-09), skinny GEMM
table: torch._scaled_mm (hipBLASLt) FP8 times of Llama-3.1-405B's TP 8 projections on one MI300X,
CUDA graph, 500 warm-up + 2,000 timed iterations over several weight copies (none cached). The
M = 1 rows are the designated case (`GEMM_STREAM_CALIBRATION_CASE`); the other rows are held out.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from chipforge.perf import calibration as cal
from chipforge.perf import estimate
from chipforge.perf.engine import Machine
from chipforge.spec.loader import load_chip
from chipforge.workload import parse_workload
from chipforge.workload.ops import MatMul

# (M, N, K): torch time in seconds; the rows the constant was NOT set on
HELD_OUT = {
    (8, 2304, 16384): 16.300e-6,
    (16, 2304, 16384): 16.693e-6,
    (32, 2304, 16384): 16.817e-6,
    (8, 13312, 16384): 80.031e-6,
    (16, 13312, 16384): 75.236e-6,
    (32, 13312, 16384): 82.198e-6,
    (8, 16384, 6656): 31.559e-6,
    (16, 16384, 6656): 31.671e-6,
    (32, 16384, 6656): 35.561e-6,
}


def _time(chip, m: int, n: int, k: int) -> float:
    return estimate(parse_workload(f"gemm:m={m},n={n},k={k},dtype=fp8"), chip).time_s


def test_constant_recomputed_from_its_designated_case():
    """The fraction of HBM at which the model's three M = 1 projections sum to the measured
    123.64 us, found by bisection, rounds to the constant (two decimals), and mi300x.toml states
    that fraction of its HBM."""
    chip = load_chip("mi300x")
    measured = sum(t for *_, t in cal.GEMM_STREAM_CALIBRATION_CASE)

    def total(frac: float) -> float:
        at = chip.model_copy(update={"gemm_stream_bandwidth": frac * chip.hbm.bandwidth})
        return sum(_time(at, m, n, k) for m, n, k, _ in cal.GEMM_STREAM_CALIBRATION_CASE)

    lo, hi = 0.3, 0.95
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if total(mid) > measured else (lo, mid)
    assert round(mid, 2) == cal.GEMM_MEMORY_FRAC_MI300X
    assert chip.gemm_stream_bandwidth == pytest.approx(
        cal.GEMM_MEMORY_FRAC_MI300X * chip.hbm.bandwidth, rel=1e-3
    )


@pytest.mark.parametrize("shape", sorted(HELD_OUT))
def test_held_out_skinny_gemms(shape):
    """Every held-out row within 25 % (they land at -12..+22 %; the streaming kernel's 0.85 put
    the gate/up rows at -26..-33 %, too fast)."""
    predicted = _time(load_chip("mi300x"), *shape)
    assert predicted == pytest.approx(HELD_OUT[shape], rel=0.25)


FP8 = MatMul(name="gemm", m=1, n=2304, k=16384, dtype="fp8")


def test_only_a_chip_with_a_measurement_takes_the_library_rate():
    """Only a chip with a measurement of its own states the rate: NVIDIA and TPU GEMMs keep
    `memory_frac`, and so does MI325X (the same family and library as MI300X, no skinny-GEMM
    timing of its own), so its M = 1 FP8 product streams at 0.85 of its HBM, not 0.62."""
    for chip_name in ("h100", "tpu-v5e", "mi325x"):
        mc = Machine(chip := load_chip(chip_name), cal.calibration(chip.family))
        assert chip.gemm_stream_bandwidth is None
        assert mc.gemm_bandwidth(FP8) == mc.offchip_bandwidth
    mc = Machine(chip := load_chip("mi300x"), cal.calibration(chip.family))
    assert mc.gemm_bandwidth(FP8) == pytest.approx(chip.hbm.bandwidth * cal.GEMM_MEMORY_FRAC_MI300X)
    assert mc.gemm_bandwidth(FP8) < mc.offchip_bandwidth
    mi325x = load_chip("mi325x")
    weight_bytes = 13312 * 16384  # the FP8 gate/up weight an M = 1 product streams
    at_library_rate = weight_bytes / (mi325x.hbm.bandwidth * cal.GEMM_MEMORY_FRAC_MI300X)
    assert _time(mi325x, 1, 13312, 16384) < at_library_rate


@pytest.mark.parametrize(
    "op",
    [
        replace(FP8, dtype="bf16"),  # vLLM's own wvSplitK / LLMM1 kernels, not hipBLASLt
        replace(FP8, dtype="fp16"),
        replace(FP8, dtype="bf16", weight_dtype="fp8"),  # weight-only: not torch._scaled_mm
        replace(FP8, batch=8, grouped=True),  # a fused MoE kernel
        replace(FP8, batch=128),  # batched (MLA's absorbed per-head products): not _scaled_mm
    ],
    ids=["bf16", "fp16", "w8a16", "moe-grouped", "batched"],
)
def test_only_what_the_source_timed_takes_the_library_rate(op):
    """The source times hipBLASLt FP8 x FP8 products (torch._scaled_mm) only: a 16-bit skinny
    product runs in vLLM's own ROCm kernels (rocm_unquantized_gemm: wvSplitK, LLMM1), a grouped
    MoE GEMM in the engine's fused MoE kernel; both stream as any kernel (`memory_frac`)."""
    mc = Machine(chip := load_chip("mi300x"), cal.calibration(chip.family))
    assert mc.gemm_bandwidth(op) == mc.offchip_bandwidth
    # the memory-bound 16-bit product is priced at that rate end to end
    if op.dtype == "bf16" and op.b_dtype == "bf16":
        t = estimate(parse_workload("gemm:m=1,n=2304,k=16384,dtype=bf16"), chip).time_s
        assert t >= op.bytes / mc.offchip_bandwidth
        assert t < op.bytes / (chip.hbm.bandwidth * cal.GEMM_MEMORY_FRAC_MI300X)


def test_moe_expert_gemms_are_grouped_dense_layers_are_not():
    """The LLM graph marks its routed experts' GEMMs (and only those) as grouped, so a MoE
    model's FP8 decode step prices its dense projections at the library rate and its experts
    as a streaming kernel."""
    ops = parse_workload("llm:mixtral-8x7b,phase=decode,batch=4,context=256,dtype=fp8").ops
    grouped = {op.name.split(".")[-1] for op in ops if isinstance(op, MatMul) and op.grouped}
    assert grouped and all(name.startswith("experts") for name in grouped)
    dense = {op.name.split(".")[-1] for op in ops if isinstance(op, MatMul) and not op.grouped}
    assert {"qkv_proj", "o_proj", "router", "lm_head"} <= dense
