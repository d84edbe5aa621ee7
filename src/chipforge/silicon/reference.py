"""The one chip calibration of the area model: the SIMT overhead of a GPU streaming multiprocessor.

A ChipSpec describes a GPU core's tensor cores, FP32 lanes and shared memory, but not the register
file (256 KB per SM since Volta), warp schedulers, load/store and texture units, FP64 lanes or
instruction caches, which are most of an SM. The register file (256 KiB) and FP64 lanes are
modelled (floorplan.gpu_sm_blocks); the rest is a ratio to the SM's datapath area, set once from
NVIDIA V100 (GV100), a GPU that is neither a preset nor an acceptance case: the GV100 die area
minus every block the model derives from its spec, over its SM datapath. A ratio, not a fixed
budget per SM, so the machinery grows with the SM's tensor cores and lanes (A100 and H100 SMs
doubled both; V100 SMs are 21.1B transistors / 84, A100 54.2B / 128). It also absorbs the GPU
uncore the model does not list (crossbar, copy and media engines).
"""

from __future__ import annotations

from chipforge.spec import ChipSpec, chip_from_dict

MM2 = 1e-6
# NVIDIA Tesla V100 whitepaper (2017): GV100 815 mm2 on TSMC 12 nm FFN (a 16 nm-class process),
# 84 SMs on the die (80 enabled), 8 tensor cores x 64 fp16 FMA per SM, 64 FP32 lanes per SM, 4 SFU
# per sub-partition, 128 KB L1/shared per SM (96 KB shared), 6 MB L2, 4 HBM2 stacks at 900 GB/s,
# 6 NVLink2 links at 300 GB/s, 1530 MHz boost, 300 W.
V100_DIE_MM2 = 815.0
V100 = {
    "name": "v100-reference",
    "family": "nvidia-gpu",
    "vendor": "NVIDIA",
    "year": 2017,
    "node": "n16",
    "clock": "1.53 GHz",
    "cores": 80,
    "physical_cores": 84,
    "tdp": "300 W",
    "matrix": {
        "rows": 128,
        "cols": 128,
        "dataflow": "tensor-core",
        "macs_per_cycle": {"fp16": 512},
    },
    "vector": {"flops_per_cycle": 128, "transcendentals_per_cycle": 16},
    "memory": [
        {"name": "HBM2", "kind": "hbm", "capacity": "16 GB", "bandwidth": "900 GB/s"},
        {"name": "L2", "kind": "cache", "capacity": "6 MiB", "bandwidth": "2.5 TB/s"},
        {
            "name": "SMEM",
            "kind": "sram",
            "capacity": "96 KiB",
            "bandwidth": "15.7 TB/s",
            "per_core": True,
        },
    ],
    "links": [{"name": "NVLink2", "bandwidth": "300 GB/s", "ports": 6}],
}


def v100() -> ChipSpec:
    return chip_from_dict(V100, where="silicon.reference.V100")
