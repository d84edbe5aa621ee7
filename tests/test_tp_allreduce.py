"""The library all-reduce (collectives.library_all_reduce) at the bus bandwidth Azure measured
on 8 x MI300X, in serving (cluster/tp_allreduce.py: vLLM's custom all-reduce below 8 MiB, RCCL
above) and in training's TP all-reduces (training.tp_collectives)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chipforge.cluster import collectives as cc
from chipforge.cluster import tp_allreduce as ta
from chipforge.cluster.collectives import collective_time
from chipforge.cluster.serving import plan_serving
from chipforge.cluster.topology import topology_for
from chipforge.spec.loader import load_chip

MI300X = load_chip("mi300x")


@pytest.fixture(scope="module")
def mi300x():
    return topology_for(load_chip("mi300x"), 8)


def test_a_large_all_reduce_takes_the_measured_rccl_rate(mi300x):
    """Azure ND MI300X v5 rccl-tests: 32 MiB at 230.35 GB/s, 1 GiB at 313.92 GB/s busbw."""
    for size, busbw in ((2**25, 230.35e9), (2**30, 313.92e9), (2**23, 131.57e9)):
        assert ta.tp_all_reduce(MI300X, size, 8, mi300x) == pytest.approx(size * 1.75 / busbw)
    # between two measured sizes: log-linear, so between their bandwidths
    mid = cc.measured_busbw(cc.MEASURED_BUSBW["mi300x"], 3 * 2**23)
    assert 171.46e9 < mid < 230.35e9
    # the alpha-beta model is faster there: the measurement is what moves it
    assert ta.tp_all_reduce(MI300X, 2**25, 8, mi300x) > 1.2 * collective_time(
        "all_reduce", 2**25, 8, mi300x
    )


def test_below_vllms_custom_all_reduce_limit_or_unmeasured_it_is_unchanged(mi300x):
    small = ta.CUSTOM_AR_MAX_BYTES - 16  # vLLM's CustomAllreduce takes inp_size < max_size
    assert ta.tp_all_reduce(MI300X, small, 8, mi300x) == collective_time(
        "all_reduce", small, 8, mi300x
    )
    assert ta.tp_all_reduce(MI300X, ta.CUSTOM_AR_MAX_BYTES, 8, mi300x) != collective_time(
        "all_reduce", ta.CUSTOM_AR_MAX_BYTES, 8, mi300x
    )
    h100_chip = load_chip("h100")
    h100 = topology_for(h100_chip, 8)
    assert ta.tp_all_reduce(h100_chip, 2**25, 8, h100) == collective_time(
        "all_reduce", 2**25, 8, h100
    )
    # the curve is an 8-GPU measurement: 4 ranks keep the model's
    assert ta.tp_all_reduce(MI300X, 2**25, 4, mi300x) == collective_time(
        "all_reduce", 2**25, 4, mi300x
    )


def test_a_large_tp8_batch_on_mi300x_is_slower_with_the_measured_curve(monkeypatch):
    kw = dict(isl=128, osl=2048, dtype="fp8", kv_dtype="fp8", tp=8, pp=1, ep=1, concurrency=1024)
    with_curve = plan_serving("mi300x", "llama3-70b", 8, **kw)
    monkeypatch.setattr(cc, "MEASURED_BUSBW", {})
    without = plan_serving("mi300x", "llama3-70b", 8, **kw)
    assert with_curve.tpot_s > 1.05 * without.tpot_s


def test_the_measured_curve_is_the_chips_not_its_names(tmp_path):
    """A user's TOML copy of mi300x under another name is the measured chip (it priced a large
    TP8 batch's decode 14 % faster, by the alpha-beta model); a chip named "mi300x" with other
    content (here another TDP: the measurement is of the preset as it stands) is not."""
    src = Path(__file__).parents[1] / "src" / "chipforge" / "spec" / "presets" / "mi300x.toml"
    mine = tmp_path / "my-mi300x.toml"
    mine.write_text(src.read_text().replace('name = "mi300x"', 'name = "my-mi300x"'))
    renamed = load_chip(str(mine))
    assert cc.measured_platform(renamed) == cc.measured_platform(MI300X) == "mi300x"
    kw = dict(isl=128, osl=2048, dtype="fp8", kv_dtype="fp8", tp=8, pp=1, ep=1, concurrency=1024)
    ref = plan_serving(MI300X, "llama3-70b", 8, **kw).tpot_s
    assert plan_serving(renamed, "llama3-70b", 8, **kw).tpot_s == ref
    other = MI300X.model_copy(update={"tdp": 2 * MI300X.tdp})
    assert other.name == "mi300x" and cc.measured_platform(other) is None
    assert cc.measured_platform(load_chip("h100")) is None


def test_training_tp_all_reduces_take_the_measured_rccl_rate(mi300x):
    """Megatron's TP all-reduces without sequence parallelism are torch.distributed calls into
    RCCL, the library the curve measures: Llama 3 8B TP8 on 8 x MI300X, 4K tokens, BF16, no
    recompute: 4 all-reduces of 4096 x 4096 x 2 B (32 MiB) per layer, each at the measured
    230.35 GB/s bus bandwidth (the alpha-beta model alone priced them 1.2x faster)."""
    from chipforge.cluster.training import Plan, RunOptions, tp_collectives
    from chipforge.workload.config import load_model

    c = load_model("llama3-8b")
    plan = Plan(tp=8, recompute="none", sequence_parallel=False)
    got = tp_collectives(MI300X, c, plan, mi300x, seq=4096, dtype="bf16", run=RunOptions())
    size = 4096 * c.hidden * 2
    assert size == 2**25
    assert got == pytest.approx(4 * c.layers * size * 1.75 / 230.35e9)
    assert got > 1.2 * 4 * c.layers * collective_time("all_reduce", size, 8, mi300x)
