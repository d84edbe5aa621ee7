"""The serving engine's tensor-parallel all-reduce: a small message runs the engine's own one-
or two-shot kernel over peer-mapped buffers, a large one the vendor collective library (NCCL,
RCCL), which on a chip with a measured all-reduce curve moves data at the measured rate.

vLLM (vllm/distributed/device_communicators/cuda_communicator.py, `CudaCommunicator.all_reduce`)
tries ROCm's QuickReduce (opt-in: VLLM_ROCM_QUICK_REDUCE_QUANTIZATION, off by default), then its
custom all-reduce, then pynccl; `CustomAllreduce(max_size=8192 * 1024)` takes a message only when
`inp_size < max_size` (custom_all_reduce.py, `should_custom_ar`; on ROCm for fully connected xGMI
GPUs too). So a TP all-reduce of `CUSTOM_AR_MAX_BYTES` or more is a RCCL/NCCL call.

Such a call is `collectives.library_all_reduce`, as a training framework's TP all-reduce is: the
measured bus bandwidth where the chip's platform has a measured library curve
(`collectives.MEASURED_BUSBW`); below the threshold `collectives.collective_time` prices the
engine's kernel."""

from __future__ import annotations

from chipforge.cluster.collectives import collective_time, library_all_reduce
from chipforge.cluster.topology import Topology
from chipforge.spec.models import ChipSpec

CUSTOM_AR_MAX_BYTES = 8192 * 1024  # vLLM CustomAllreduce max_size (custom_all_reduce.py)


def tp_all_reduce(chip: ChipSpec, size: float, p: int, topo: Topology) -> float:
    """Seconds for the serving engine's TP all-reduce of `size` bytes per rank over `p` ranks:
    its own kernel below `CUSTOM_AR_MAX_BYTES`, the library's (`library_all_reduce`) above."""
    if size >= CUSTOM_AR_MAX_BYTES:
        return library_all_reduce(chip, size, p, topo)
    return collective_time("all_reduce", size, p, topo)
