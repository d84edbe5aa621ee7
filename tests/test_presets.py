"""Chip presets against the published figures they describe (chipforge/data/*.csv).

Every expected value is read from the data and converted with the row's own `unit` column;
no published number is typed into this file.
"""

from __future__ import annotations

import pytest

from chipforge.data import figure, published
from chipforge.spec import load_chip, preset_names

# fmt: off
# SI factor of the first word of a figure's `unit` (decimal prefixes 10^n, binary 2^n);
# "MXUs" and "x256" are counts and array sizes ("8 MXUs of 128x128", "256 x256")
UNIT_FACTOR = {"TFLOPS": 1e12, "PFLOPS": 1e15, "TOPS": 1e12, "GB": 1e9, "TB": 1e12,
               "MiB": 2.0**20, "GiB": 2.0**30, "GB/s": 1e9, "TB/s": 1e12, "W": 1.0,
               "MHz": 1e6, "GHz": 1e9, "MXUs": 1.0, "x256": 1.0, "MB": 1e6}
# fmt: on


def expected(figure_id: str) -> float:
    """The figure in SI base units (its `unit` column may carry words after the unit)."""
    unit = published()[figure_id]["unit"].split()[0]
    return figure(figure_id) * UNIT_FACTOR[unit]


def peak(dtype: str):
    return lambda chip: chip.peak_flops(dtype)


def nvl72(per_gpu):
    """A GB200 NVL72 rack figure from a per-GPU one, times the rack's published GPU count."""
    return lambda chip: per_gpu(chip) * figure("hw-nvl72-gpus")


# figures every chip must have, all positive
GENERAL = {
    "clock": lambda c: c.clock,
    "matrix units": lambda c: c.matrix_units,
    "vector flop/s": lambda c: c.vector_flops,
    "transcendentals/s": lambda c: c.transcendentals_per_s,
    "hbm capacity": lambda c: c.hbm.capacity,
    "hbm bandwidth": lambda c: c.hbm.bandwidth,
    "on-chip bytes": lambda c: c.onchip_bytes,
    "link bandwidth": lambda c: c.link_bandwidth,
    "tdp": lambda c: c.tdp,
    "idle power": lambda c: c.static_power,
}
ACCESSOR = {
    **GENERAL,
    **{f"peak {dtype}": peak(dtype) for dtype in ("bf16", "fp8", "fp4", "int8", "tf32")},
    "link one-way per port": lambda c: c.links[0].bandwidth / (2 * c.links[0].ports),
    "array rows": lambda c: c.matrix.rows,
    "rack peak bf16": nvl72(peak("bf16")),
    "rack hbm capacity": nvl72(GENERAL["hbm capacity"]),
    "rack hbm bandwidth": nvl72(GENERAL["hbm bandwidth"]),
    "rack link bandwidth": nvl72(GENERAL["link bandwidth"]),
}

# preset -> {accessor: figure id}. Left out on purpose: die areas, transistor counts, pod, server
# and vendor-claim rows (no preset field); hw-h100-fp64-tc (h100 models no fp64); the sparse NVL72
# rows; hw-tpuv4-power (the mean: tdp and idle use the max and min); hw-tpuv1-ridge (peak / DRAM,
# both checked); hw-tpuv5e-hbm / hw-tpuv6e-hbm, whose "16 GB" / "32 GB" are GiB: the presets
# follow the runtime's byte counts instead (hw-tpuv5e-hbm-bytes, hw-tpuv6e-hbm-bytes).
# fmt: off
FIGURES = {
    "a100": {"peak bf16": "hw-a100-bf16-dense", "peak tf32": "hw-a100-tf32",
        "peak int8": "hw-a100-int8", "hbm capacity": "hw-a100-hbm-cap",
        "hbm bandwidth": "hw-a100-hbm-bw", "link bandwidth": "hw-a100-nvlink",
        "tdp": "hw-a100-tdp"},
    "h100": {"peak bf16": "hw-h100-bf16-dense", "peak fp8": "hw-h100-fp8-dense",
        "hbm capacity": "hw-h100-hbm-cap", "hbm bandwidth": "hw-h100-hbm-bw",
        "link bandwidth": "hw-h100-nvlink", "tdp": "hw-h100-tdp"},
    "h200": {"peak bf16": "hw-h200-bf16-dense", "peak fp8": "hw-h200-fp8-dense",
        "hbm capacity": "hw-h200-hbm-cap", "hbm bandwidth": "hw-h200-hbm-bw",
        "link bandwidth": "hw-h200-nvlink", "tdp": "hw-h200-tdp"},
    "b200": {"peak bf16": "hw-b200-bf16-dense", "peak fp8": "hw-b200-fp8-dense",
        "peak fp4": "hw-b200-fp4-dense", "hbm capacity": "hw-b200-hbm-cap",
        "hbm bandwidth": "hw-b200-hbm-bw", "link bandwidth": "hw-b200-nvlink",
        "tdp": "hw-b200-tdp"},
    "gb200": {"peak bf16": "hw-gb200gpu-bf16-dense", "peak fp8": "hw-gb200gpu-fp8-dense",
        "peak fp4": "hw-gb200gpu-fp4-dense", "hbm capacity": "hw-gb200gpu-hbm",
        "tdp": "hw-gb200gpu-tdp", "rack peak bf16": "hw-nvl72-bf16-dense",
        "rack hbm capacity": "hw-nvl72-hbm", "rack hbm bandwidth": "hw-nvl72-hbm-bw",
        "rack link bandwidth": "hw-nvl72-nvlink"},
    "mi300x": {"peak bf16": "hw-mi300x-bf16-dense", "peak fp8": "hw-mi300x-fp8-dense",
        "peak int8": "hw-mi300x-int8-dense", "peak tf32": "hw-mi300x-tf32",
        "hbm capacity": "hw-mi300x-hbm-cap", "hbm bandwidth": "hw-mi300x-hbm-bw",
        "link bandwidth": "hw-mi300x-ifabric", "tdp": "hw-mi300x-tbp"},
    "tpu-v1": {"peak int8": "hw-tpuv1-peak", "clock": "hw-tpuv1-clock",
        "array rows": "hw-tpuv1-array", "on-chip bytes": "hw-tpuv1-onchip",
        "hbm capacity": "hw-tpuv1-dram-cap", "hbm bandwidth": "hw-tpuv1-dram",
        "tdp": "hw-tpuv1-tdp", "idle power": "hw-tpuv1-idle"},
    "tpu-v4": {"peak bf16": "hw-tpuv4-peak", "peak int8": "hw-tpuv4-peak",
        "clock": "hw-tpuv4-clock", "matrix units": "hw-tpuv4-mxu", "hbm capacity": "hw-tpuv4-hbm",
        "hbm bandwidth": "hw-tpuv4-hbm-bw", "tdp": "hw-tpuv4-power-max",
        "idle power": "hw-tpuv4-power-min", "link one-way per port": "hw-tpuv4-ici"},
    "tpu-v5e": {"peak bf16": "hw-tpuv5e-peak", "peak int8": "hw-tpuv5e-int8",
        "matrix units": "hw-tpuv5e-mxu", "hbm capacity": "hw-tpuv5e-hbm-bytes",
        "hbm bandwidth": "hw-tpuv5e-hbm-bw", "link bandwidth": "hw-tpuv5e-ici"},
    "tpu-v5p": {"peak bf16": "hw-tpuv5p-peak", "peak fp8": "hw-tpuv5p-peak",
        "peak int8": "hw-tpuv5p-int8", "matrix units": "hw-tpuv5p-mxu",
        "hbm capacity": "hw-tpuv5p-hbm", "hbm bandwidth": "hw-tpuv5p-hbm-bw",
        "link bandwidth": "hw-tpuv5p-ici"},
    "tpu-v6e": {"peak bf16": "hw-tpuv6e-peak", "peak int8": "hw-tpuv6e-int8",
        "array rows": "hw-tpuv6e-mxu", "hbm capacity": "hw-tpuv6e-hbm-bytes",
        "hbm bandwidth": "hw-tpuv6e-hbm-bw", "link bandwidth": "hw-tpuv6e-ici"},
    "tpu-v7": {"peak bf16": "hw-tpu7x-bf16", "peak fp8": "hw-tpu7x-fp8",
        "hbm capacity": "hw-tpu7x-hbm", "hbm bandwidth": "hw-tpu7x-hbm-bw",
        "link bandwidth": "hw-tpu7x-ici"},
    "h800": {"peak bf16": "hw-h800-bf16-dense", "peak fp8": "hw-h800-fp8-dense",
        "link bandwidth": "hw-h800-nvlink", "tdp": "hw-h800-tdp"},
    "h20": {"peak bf16": "hw-h20-bf16-dense", "peak fp8": "hw-h20-fp8-dense",
        "hbm capacity": "hw-h20-hbm-cap", "hbm bandwidth": "hw-h20-hbm-bw",
        "link bandwidth": "hw-h20-nvlink", "tdp": "hw-h20-tdp"},
    "gh200": {"peak bf16": "hw-gh200-bf16-dense", "hbm capacity": "hw-gh200-hbm-cap",
        "hbm bandwidth": "hw-gh200-hbm-bw", "link bandwidth": "hw-gh200-nvlink",
        "tdp": "hw-gh200-tdp"},
    "gb300": {"peak bf16": "hw-gb300-bf16-dense", "peak fp8": "hw-gb300-fp8-dense",
        "peak fp4": "hw-gb300-fp4-dense", "peak int8": "hw-gb300-int8-dense",
        "hbm capacity": "hw-gb300-hbm-cap",
        "hbm bandwidth": "hw-gb300-hbm-bw", "link bandwidth": "hw-gb300-nvlink",
        "tdp": "hw-gb300-tdp"},
    "b300": {"peak bf16": "hw-b300-bf16-dense", "peak fp8": "hw-b300-fp8-dense",
        "peak fp4": "hw-b300-fp4-dense", "peak int8": "hw-b300-int8-dense",
        "hbm capacity": "hw-b300-hbm-cap",
        "hbm bandwidth": "hw-b300-hbm-bw", "link bandwidth": "hw-b300-nvlink",
        "tdp": "hw-b300-tdp"},
    "mi325x": {"peak bf16": "hw-mi325x-bf16-dense", "peak fp8": "hw-mi325x-fp8-dense",
        "hbm capacity": "hw-mi325x-hbm-cap", "hbm bandwidth": "hw-mi325x-hbm-bw",
        "link bandwidth": "hw-mi325x-ifabric", "tdp": "hw-mi325x-tbp"},
    "mi355x": {"peak bf16": "hw-mi355x-bf16-dense", "peak fp8": "hw-mi355x-fp8-dense",
        "peak fp4": "hw-mi355x-fp4-dense", "hbm capacity": "hw-mi355x-hbm-cap",
        "hbm bandwidth": "hw-mi355x-hbm-bw", "link bandwidth": "hw-mi355x-ifabric",
        "tdp": "hw-mi355x-tbp"},
    "tpu-v3": {"peak bf16": "hw-tpuv3-peak", "hbm capacity": "hw-tpuv3-hbm",
        "hbm bandwidth": "hw-tpuv3-hbm-bw", "tdp": "hw-tpuv3-power-max",
        "idle power": "hw-tpuv3-power-min", "link one-way per port": "hw-tpuv3-bisection"},
    "trainium2": {"peak bf16": "hw-trn2-bf16", "peak fp8": "hw-trn2-fp8",
        "hbm capacity": "hw-trn2-hbm", "hbm bandwidth": "hw-trn2-hbm-bw",
        "link bandwidth": "hw-trn2-neuronlink"},
    "maia-100": {"peak bf16": "hw-maia100-bf16-dense", "hbm capacity": "hw-maia100-hbm",
        "hbm bandwidth": "hw-maia100-hbm-bw", "tdp": "hw-maia100-tdp"},
    "mtia-v2": {"peak bf16": "hw-mtiav2-bf16-dense", "peak int8": "hw-mtiav2-int8-dense",
        "clock": "hw-mtiav2-clock", "hbm capacity": "hw-mtiav2-dram",
        "hbm bandwidth": "hw-mtiav2-dram-bw", "tdp": "hw-mtiav2-tdp"},
}
TABLE = [(chip, accessor, fid) for chip, row in FIGURES.items() for accessor, fid in row.items()]
# fmt: on


@pytest.mark.parametrize(("preset", "accessor", "figure_id"), TABLE)
def test_preset_matches_published_figure(preset, accessor, figure_id):
    assert ACCESSOR[accessor](load_chip(preset)) == pytest.approx(expected(figure_id), rel=0.01)


def test_every_preset_with_published_figures_is_checked():
    assert set(preset_names()) - {preset for preset, _, _ in TABLE} == {"forge-n3"}


@pytest.mark.parametrize("preset", preset_names())
def test_preset_loads_with_positive_derived_figures(preset):
    chip = load_chip(preset)
    derived = {name: figure_of(chip) for name, figure_of in GENERAL.items()}
    derived |= {f"peak {dtype}": chip.peak_flops(dtype) for dtype in chip.matrix.dtypes}
    derived["balance"] = chip.machine_balance(chip.matrix.dtypes[0])
    assert {name: value for name, value in derived.items() if not value > 0} == {}
    # every on-chip level feeds the cores faster than the off-chip memory behind it
    assert all(level.bandwidth > chip.hbm.bandwidth for level in chip.memory[1:])


SYSTOLIC = [p for p in preset_names() if load_chip(p).matrix.dataflow == "weight-stationary"]


@pytest.mark.parametrize("preset", SYSTOLIC)
def test_systolic_array_does_one_mac_per_cell_per_clock(preset):
    chip = load_chip(preset)
    base_dtype = chip.matrix.dtypes[0]  # bf16, or int8 on TPU v1
    assert chip.matrix.macs_per_cycle[base_dtype] == chip.matrix.rows * chip.matrix.cols


def test_forge_peak_is_its_arithmetic():
    chip = load_chip("forge-n3")
    tensor_cores = chip.cores
    mxus_per_core = chip.matrix.count
    bf16_macs_per_mxu_per_clock = chip.matrix.macs_per_cycle["bf16"]
    flop_per_mac = 2  # a multiply and an add
    clock_hz = chip.clock
    assert chip.peak_flops("bf16") == pytest.approx(
        tensor_cores * mxus_per_core * bf16_macs_per_mxu_per_clock * flop_per_mac * clock_hz
    )


def test_forge_is_at_least_a_tpu_v5p():
    forge, v5p = load_chip("forge-n3"), load_chip("tpu-v5p")
    assert forge.peak_flops("bf16") >= v5p.peak_flops("bf16")
    assert forge.hbm.bandwidth >= v5p.hbm.bandwidth
