"""A kernel rate measured on a preset (layer.KERNEL_UTILIZATION, layer.WINDOW_ATTENTION) belongs
to the chip of that content, not only to the chip of that name: a user's TOML copy of the preset
under another name prices a layer as the preset does (chipkey.preset_like)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chipforge.cluster.chipkey import preset_like
from chipforge.cluster.layer import MEASURED_CHIPS, WINDOW_ATTENTION, LayerShape, layer_costs
from chipforge.spec.loader import load_chip
from chipforge.workload.config import load_model
from chipforge.workload.ops import Attention


def _renamed(name: str):
    return load_chip(name).model_copy(update={"name": f"my-{name}"})


def test_a_renamed_copy_of_a_measured_preset_prices_its_layer_as_the_preset():
    oss = replace(load_model("gpt-oss-120b"), window_layers=None)  # every layer banded
    for name, model, attention in (("gb300", oss, "flash"), ("h100", load_model("llama3-8b"),
                                                               "flash2")):  # fmt: skip
        shape = LayerShape(load_chip(name), model, 1, 2, 8192, 1, "bf16", attention, ep=1)
        mine = replace(shape, chip=_renamed(name))
        assert layer_costs(mine) == layer_costs(shape)
    # the preset at another clock (a renamed B200 at its sustained clock): the measured share
    # of the peak at the clock it runs
    b200 = _renamed("b200").at_sustained_clock()
    assert preset_like(b200, MEASURED_CHIPS, ignore=("name", "clock")) == "b200"
    op = Attention(name="a", batch=2, heads=64, kv_heads=8, q_len=8192, kv_len=8192,
                   head_dim=64, window=128)  # fmt: skip
    by_hand = op.flops / (WINDOW_ATTENTION[128, 64]["b200"][0] * b200.peak_flops("bf16"))
    attn = layer_costs(LayerShape(b200, oss, 1, 2, 8192, 1, "bf16", ep=1))[2]
    assert attn == pytest.approx(by_hand, rel=1e-9)


def test_a_chip_of_other_content_is_not_the_measured_preset():
    gb300 = load_chip("gb300")
    other = gb300.model_copy(update={"name": "mine", "cores": 2 * gb300.cores})
    assert preset_like(other, MEASURED_CHIPS, ignore=("name", "clock")) is None
    assert preset_like(_renamed("gb300"), MEASURED_CHIPS, ignore=("name", "clock")) == "gb300"
