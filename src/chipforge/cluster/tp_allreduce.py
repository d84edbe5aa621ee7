"""The serving engine's tensor-parallel all-reduce: a small message runs the engine's own one-
or two-shot kernel over peer-mapped buffers, a large one the vendor collective library (NCCL,
RCCL), which on a chip with a measured all-reduce curve moves data at the measured rate.

vLLM (vllm/distributed/device_communicators/cuda_communicator.py, `CudaCommunicator.all_reduce`)
tries ROCm's QuickReduce (opt-in: VLLM_ROCM_QUICK_REDUCE_QUANTIZATION, off by default), then its
custom all-reduce, then pynccl; `CustomAllreduce(max_size=8192 * 1024)` takes a message only when
`inp_size < max_size` (custom_all_reduce.py, `should_custom_ar`; on ROCm for fully connected xGMI
GPUs too). So a TP all-reduce of `CUSTOM_AR_MAX_BYTES` or more is a RCCL/NCCL call.

Where the platform's library curve is measured (`MEASURED_BUSBW`), such a call takes the
measured bus bandwidth at its size (rccl-tests/nccl-tests `busbw`: time = size x 2 (p - 1) / p /
busbw), interpolated log-linearly between the measured sizes; elsewhere, and below the
threshold, `collectives.collective_time` prices it as before. The measurement belongs to the
chip's content, not its name (`measured_platform`): a TOML copy of the preset under another
name is the measured chip, a chip of another content named after the preset is not."""

from __future__ import annotations

import math

from chipforge.cluster.chipkey import preset_like
from chipforge.cluster.collectives import collective_time
from chipforge.cluster.topology import Topology
from chipforge.spec.models import ChipSpec

CUSTOM_AR_MAX_BYTES = 8192 * 1024  # vLLM CustomAllreduce max_size (custom_all_reduce.py)

# RCCL all_reduce bus bandwidth (B/s) by message size on 8 GPUs of one platform, from a
# measurement that states its setup. mi300x: Azure ND MI300X v5 (8 x MI300X, xGMI), RCCL
# 2.22.3-develop, ROCm 6.8.5, rccl-tests all_reduce in place, 1 KB to 8 GB in powers of two:
# Azure AI-benchmarking-guide, Azure_Results/ND_MI300X_v5_results.md ("RCCL Bandwidth"), as held
# in github.com/yosoyjay/AI-benchmarking-guide (the copy data/sustained_gemm.csv cites). Its
# large-message plateau, 317 GB/s, is 71 % of the 448 GB/s the platform's links carry each way;
# at 8-32 MB it is 132-230 GB/s, below what the alpha-beta model gives there.
MEASURED_BUSBW: dict[str, tuple[tuple[int, float], ...]] = {
    "mi300x": tuple(
        (2**k, gbs * 1e9)
        for k, gbs in zip(
            range(10, 34),
            (
                0.04,
                0.07,
                0.15,
                0.29,
                0.59,
                1.13,
                2.22,
                4.18,
                7.50,
                13.01,
                22.41,
                43.41,
                82.53,
                131.57,
                171.46,
                230.35,
                266.34,
                290.81,
                302.80,
                308.89,
                313.92,
                315.06,
                314.85,
                316.82,
            ),
            strict=True,
        )
    ),  # fmt: skip
}
MEASURED_RANKS = 8  # the measurements above are 8-GPU all-reduces


def measured_busbw(curve: tuple[tuple[int, float], ...], size: float) -> float:
    """Bus bandwidth at `size` bytes: log-linear between the measured sizes, the end values
    beyond them."""
    if size <= curve[0][0]:
        return curve[0][1]
    for (s0, b0), (s1, b1) in zip(curve, curve[1:], strict=False):
        if size <= s1:
            w = math.log(size / s0) / math.log(s1 / s0)
            return math.exp((1 - w) * math.log(b0) + w * math.log(b1))
    return curve[-1][1]


def measured_platform(chip: ChipSpec) -> str | None:
    """The MEASURED_BUSBW entry measured on this chip: the preset of that name whose content,
    all but the name, is the chip's (`chipkey.preset_like`)."""
    return preset_like(chip, tuple(MEASURED_BUSBW))


def tp_all_reduce(chip: ChipSpec, size: float, p: int, topo: Topology) -> float:
    """Seconds for the serving engine's TP all-reduce of `size` bytes per rank over `p` ranks."""
    platform = measured_platform(chip)
    curve = MEASURED_BUSBW.get(platform) if platform else None
    if curve and size >= CUSTOM_AR_MAX_BYTES and p == MEASURED_RANKS and p <= topo.domain:
        return size * 2 * (p - 1) / p / measured_busbw(curve, size)
    return collective_time("all_reduce", size, p, topo)
