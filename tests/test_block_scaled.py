"""MXFP8 and 4-bit training need a matrix unit that applies block scales in the MMA
(`[matrix] block_scaled`, Transformer Engine's support matrix: MXFP8 and NVFP4 on compute
capability 10.x only): a Hopper-class chip is refused in one line, exit 2, by every entry."""

from importlib.resources import files
from types import SimpleNamespace

import pytest

from chipforge.cli import main
from chipforge.cluster import plan_training
from chipforge.errors import WorkloadError
from chipforge.spec import load_chip

HOPPER = ("h100", "h200", "h800", "h20", "gh200")
BLACKWELL = ("b200", "b300", "gb200", "gb300")
PRESETS = files("chipforge.spec") / "presets"


def test_presets_state_the_blackwell_formats_and_not_hopper():
    for name in BLACKWELL:
        assert {"mxfp8", "nvfp4"} <= set(load_chip(name).matrix.block_scaled)
    for name in HOPPER:
        assert load_chip(name).matrix.block_scaled == ()


def test_train_refuses_mxfp8_on_hopper(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--chip", "h100", "--model", "llama3-8b", "--chips", "8",
              "--dtype", "fp8", "--fp8-recipe", "mxfp8"])  # fmt: skip
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--fp8-recipe mxfp8" in err and "h100" in err and "--fp8-recipe block" in err


def test_api_and_decide_refuse_what_train_refuses():
    with pytest.raises(WorkloadError, match="--fp8-recipe mxfp8 needs block-scaled MMA"):
        plan_training("h200", "llama3-8b", 8, dtype="fp8", fp8_recipe="mxfp8", tp=1, pp=1)
    from chipforge.datacenter.site import Assumptions
    from chipforge.datacenter.workload import training

    site = {"chips": 8, "assumptions": Assumptions().__dict__, "tco_usd_per_chip_hour": 0.0}
    chip = SimpleNamespace(spec=load_chip("h100"), name="h100")
    with pytest.raises(WorkloadError, match="block-scaled"):
        training(site, chip, "llama3-8b", 1e12, options={"dtype": "fp8", "fp8_recipe": "mxfp8"})
    # a Blackwell chip prices the same recipe
    assert plan_training("b200", "llama3-8b", 8, dtype="fp8", fp8_recipe="mxfp8", tp=1, pp=1)


def test_user_toml_stating_nothing_has_no_block_scaling(tmp_path):
    """A user TOML without `block_scaled` gets none (the documented default): its fp4 MACs
    do not make 4-bit training possible; stating the formats does."""
    text = "\n".join(
        line for line in PRESETS.joinpath("b200.toml").read_text().splitlines()
        if not line.startswith("block_scaled")
    )  # fmt: skip
    bare = tmp_path / "bare.toml"
    bare.write_text(text)
    assert load_chip(bare).matrix.block_scaled == ()
    with pytest.raises(WorkloadError, match="--dtype fp4 trains in NVFP4/MXFP4"):
        plan_training(load_chip(bare), "llama3-8b", 8, dtype="fp4", tp=1, pp=1)
    stated = tmp_path / "stated.toml"
    stated.write_text(text.replace("[matrix]", '[matrix]\nblock_scaled = ["nvfp4"]'))
    assert plan_training(load_chip(stated), "llama3-8b", 8, dtype="fp4", tp=1, pp=1)
