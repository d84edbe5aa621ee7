"""Each TPU preset's runtime reserve (`runtime_reserved` of its HBM level), recomputed from the
published report its TOML cites, and the field's validation and use."""

from __future__ import annotations

import re

import pytest

from chipforge.cli import main
from chipforge.cluster.memory import (
    RESERVED_BYTES,
    XLA_TPU_RESERVED_BYTES,
    GiB,
    reserved_bytes,
)
from chipforge.cluster.search import plan_training
from chipforge.errors import SpecError
from chipforge.spec.loader import PRESET_DIR, chip_from_dict, load_chip
from chipforge.workload.config import load_model

MiB = 2**20
# XLA:TPU's out-of-memory reports print binary prefixes (G = GiB, M = MiB), 2 decimals.
V3 = (  # https://github.com/LargeWorldModel/LWM/issues/60 (a v3-8: one device per TensorCore)
    "RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space hbm. "
    "Used 21.95G of 15.48G hbm. Exceeded hbm capacity by 6.47G. Total hbm usage >= 22.47G: "
    "reserved 530.00M program 21.95G arguments 0B"
)
V4 = (  # https://github.com/erfanzar/EasyDeL/issues/166 (a v4-32: one device per chip)
    "RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space hbm. "
    "Used 63.80G of 30.75G hbm. Exceeded hbm capacity by 33.05G. Total hbm usage >= 65.05G: "
    "reserved 1.25G program 63.80G arguments 0B"
)
V5E = (  # https://github.com/GoogleCloudPlatform/kubernetes-engine-samples/pull/1467
    "RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space hbm. "
    "Used 20.44G of 15.75G hbm. Exceeded hbm capacity by 4.70G."
)
# https://github.com/AI-Hypercomputer/maxtext/blob/main/docs/guides/monitoring_and_debugging/
# understand_logs_and_metrics.md (max_utils.print_mem_stats, GiB: bytes / 2**30, on v5p)
V5P = "Using (GB) 44.63 / 95.74 (46.615835%) on TPU_0(process=0,(0,0,0,0))"
# https://github.com/vllm-project/vllm/pull/16211 (vLLM's usage stats on one v6e)
V6E = '"gpu_count": 1, "gpu_type": "v6e", "gpu_memory_per_device": 33550237696,'
V6E_LOG = (  # https://github.com/vllm-project/tpu-inference/pull/145 (bytes_limit per device)
    "Init model | hbm=[(3.74, 31.25), (3.74, 31.25), (3.74, 31.25), (3.74, 31.25)]Gb "
    "[tpu_jax_runner.py:236] TFRT TPU v6 lite"
)
# https://github.com/vllm-project/tpu-inference/pull/3489: vLLM's sum of bytes_limit over the
# devices of a tpu7x-8 (8 TensorCores, each its own device of 96 GiB, 4 chips)
V7 = "On `tpu7x-8` (757.91 GiB HBM) with 375.67 GiB model weights"
ROUNDING = 0.005 * GiB  # the reports' 2 decimals


def _limit(report: str) -> float:
    return float(re.search(r"of ([\d.]+)G hbm", report).group(1)) * GiB


def _printed_reserve(report: str) -> float:
    value, unit = re.search(r"reserved\s+([\d.]+)([MG])", report).groups()
    return float(value) * (GiB if unit == "G" else MiB)


def test_each_tpu_preset_s_reserve_is_what_its_cited_report_leaves():
    stated = {n: load_chip(n).hbm for n in ("tpu-v3", "tpu-v4", "tpu-v5e", "tpu-v5p", "tpu-v6e")}
    # v3: two devices of 16 GiB per chip, each holding back the printed 530 MiB, which is what
    # the limit leaves of 16 GiB (within the limit's rounding)
    assert stated["tpu-v3"].capacity == 2 * 16 * GiB
    assert stated["tpu-v3"].runtime_reserved == pytest.approx(2 * _printed_reserve(V3))
    assert 16 * GiB - _limit(V3) == pytest.approx(_printed_reserve(V3), abs=ROUNDING)
    # v4: one 32 GiB device per chip; limit and printed reserve agree
    assert stated["tpu-v4"].runtime_reserved == pytest.approx(32 * GiB - _limit(V4))
    assert stated["tpu-v4"].runtime_reserved == pytest.approx(_printed_reserve(V4))
    # v5e: the designated case of the family's rule
    assert stated["tpu-v5e"].runtime_reserved == pytest.approx(16 * GiB - _limit(V5E))
    assert stated["tpu-v5e"].runtime_reserved == pytest.approx(XLA_TPU_RESERVED_BYTES)
    # v5p: the runtime grants 95.74 GiB; the preset states 95 GiB, so none of it is held back
    v5p_limit = float(re.search(r"/ ([\d.]+) ", V5P).group(1)) * GiB
    assert stated["tpu-v5p"].capacity < v5p_limit
    assert stated["tpu-v5p"].runtime_reserved == max(0.0, stated["tpu-v5p"].capacity - v5p_limit)
    # v6e: the exact byte limit of a 32 GiB device
    v6e_limit = int(re.search(r'"gpu_memory_per_device": (\d+)', V6E).group(1))
    assert stated["tpu-v6e"].runtime_reserved == 32 * GiB - v6e_limit == 772 * MiB
    for limit in re.findall(r", ([\d.]+)\)", V6E_LOG):
        assert 32 * GiB - float(limit) * GiB == pytest.approx(772 * MiB, abs=ROUNDING)
    # v7: 2 devices per chip; the summed limit of 8 devices
    v7 = load_chip("tpu-v7")
    assert v7.hbm.capacity == 2 * 96 * GiB
    per_device = float(re.search(r"\(([\d.]+) GiB HBM\)", V7).group(1)) * GiB / 8
    assert v7.hbm.runtime_reserved == pytest.approx(2 * (96 * GiB - per_device), abs=ROUNDING)
    # what a plan holds back is the stated reserve; a chip stating none takes its family's rule
    for name, level in stated.items():
        assert reserved_bytes(load_chip(name)) == level.runtime_reserved
    v1 = load_chip("tpu-v1")
    assert v1.hbm.runtime_reserved is None and reserved_bytes(v1) == XLA_TPU_RESERVED_BYTES
    assert reserved_bytes(load_chip("h100")) == RESERVED_BYTES


def _with_reserve(reserve, level: int = 0) -> dict:
    data = load_chip("h100").model_dump()
    data["memory"][level]["runtime_reserved"] = reserve
    return data


@pytest.mark.parametrize(
    ("reserve", "level", "words"),
    [
        ("-1 GiB", 0, ">= 0"),
        ("80 GiB", 0, "below the level's capacity"),
        ("1 TB", 0, "below the level's capacity"),
        ("1 MiB", 1, "off-chip level"),
    ],
)
def test_a_bad_runtime_reserve_is_refused_naming_the_field(reserve, level, words):
    with pytest.raises(SpecError, match=re.escape(words)) as err:
        chip_from_dict(_with_reserve(reserve, level), "mine.toml")
    assert f"memory.{level}.runtime_reserved" in str(err.value)


def test_a_chip_toml_with_a_bad_reserve_exits_2(tmp_path, capsys):
    text = (PRESET_DIR / "tpu-v5e.toml").read_text()
    path = tmp_path / "mine.toml"
    path.write_text(text.replace('runtime_reserved = "0.25 GiB"', 'runtime_reserved = "16 GiB"'))
    with pytest.raises(SystemExit) as code:
        main(["show", str(path)])
    assert code.value.code == 2
    assert "memory.0.runtime_reserved" in capsys.readouterr().err


def test_a_stated_reserve_is_what_a_plan_holds_back():
    """A user's chip that states its runtime's reserve is planned with it, not its family's rule;
    a TPU preset with its reported reserve (v4's 1.25 GiB) is planned with that."""
    c = load_model("llama3-8b", layers=2)
    kw = dict(seq=1024, global_batch=8, micro_batch=1, tp=1, pp=1, dp=8, cp=1, ep=1, zero=3)
    plan = plan_training("tpu-v4", c, 8, **kw)
    assert plan.memory["reserved_bytes"] == pytest.approx(1.25 * GiB)
    mine = chip_from_dict(_with_reserve("1 GiB"), "mine")
    plan = plan_training(mine, c, 8, **kw)
    assert plan.memory["reserved_bytes"] == pytest.approx(GiB)
