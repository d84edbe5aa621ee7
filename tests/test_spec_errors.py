"""Bad hardware descriptions fail with one line naming the field and the fix (messages pinned)."""

import pytest

from chipforge.errors import SpecError
from chipforge.spec import load_chip
from chipforge.spec.loader import PRESET_DIR


def edited_h100(tmp_path, old: str, new: str):
    """The h100 preset as a user's file, with one line edited."""
    text = (PRESET_DIR / "h100.toml").read_text()
    assert old in text
    path = tmp_path / "chip.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def load_error(path) -> str:
    with pytest.raises(SpecError) as err:
        load_chip(path)
    return str(err.value)


def test_a_user_file_loads_like_the_preset(tmp_path):
    assert load_chip(edited_h100(tmp_path, "cores = 132", "cores = 132")) == load_chip("h100")


def test_unknown_field(tmp_path):
    path = edited_h100(tmp_path, "rows = 128", "rows = 128\nrowz = 4")
    assert load_error(path) == (
        f"{path}: `matrix.rowz` is not a known field; remove it or check its spelling"
    )


def test_negative_field(tmp_path):
    path = edited_h100(tmp_path, "cores = 132", "cores = -4")
    assert load_error(path) == f"{path}: `cores` must be > 0, not -4"


def test_bad_unit(tmp_path):
    path = edited_h100(tmp_path, 'clock = "1.83 GHz"', 'clock = "1.83 GHzz"')
    assert load_error(path).startswith(f"{path}: `clock` has unknown unit 'GHzz' in '1.83 GHzz'")


def test_wrong_dimension_in_a_list(tmp_path):
    path = edited_h100(tmp_path, 'bandwidth = "3.35 TB/s"', 'bandwidth = "80 GB"')
    assert load_error(path) == (
        f"{path}: `memory.0.bandwidth` must be a bandwidth quantity, not '80 GB' (a bytes)"
    )


def test_missing_field(tmp_path):
    path = edited_h100(tmp_path, "cores = 132", "")
    assert load_error(path) == f"{path}: `cores` is required; add it"


def test_unknown_node(tmp_path):
    path = edited_h100(tmp_path, 'node = "n4"', 'node = "n1"')
    assert load_error(path).startswith(f"{path}: `node` must be one of n28, n16")


def test_missing_file():
    assert load_error("nowhere/chip.toml") == (
        "chip file 'nowhere/chip.toml' does not exist; give a preset name or a TOML path"
    )


def test_unknown_preset_suggests_close_names():
    assert load_error("h10") == (
        "`chip` must be a preset or a .toml file, not 'h10' (did you "
        "mean h100, h20, h800?); `chipforge presets` lists them"
    )


def test_specs_are_frozen_and_copy_for_sweeps():
    chip = load_chip("h100")
    with pytest.raises(ValueError):
        chip.cores = 1
    faster = chip.model_copy(update={"clock": chip.clock * 2})
    assert faster.peak_flops("bf16") == pytest.approx(2 * chip.peak_flops("bf16"))
