"""The chip TOML format: a generated reference, a JSON Schema, a commented example, one
validation for every command, and memory energy defaults by technology."""

from __future__ import annotations

import json
import typing
from importlib import resources

import pytest
from typer.testing import CliRunner

from chipforge.cli import app
from chipforge.perf import estimate
from chipforge.perf.calibration import FAMILIES
from chipforge.perf.energy import MEMORY_PJ_PER_BIT, byte_energy
from chipforge.spec import ChipSpec, load_chip, preset_names
from chipforge.spec.reference import DOC, markdown
from chipforge.workload import parse_workload

EXAMPLE = resources.files("chipforge").joinpath("../../examples/my-chip.toml")
PRESET = (resources.files("chipforge.spec") / "presets" / "forge-n3.toml").read_text()


def test_chip_reference_is_current():
    assert DOC.read_text() == markdown(), (
        "docs/chip-spec.md is stale: python -m chipforge.spec.reference"
    )


def test_schema_command_prints_the_chip_schema():
    r = CliRunner().invoke(app, ["schema", "chip"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert {"name", "family", "matrix", "memory", "tdp"} <= set(s["properties"])
    assert set(s["properties"]) == set(ChipSpec.model_fields)


def test_example_chip_is_complete_and_not_a_preset():
    chip = load_chip(str(EXAMPLE))
    assert chip.name not in preset_names()
    optional = {
        "physical_cores",
        "sustained_clock",
        "mla_decode_rate",
        "moe_decode_bandwidth",
        "gemm_stream_bandwidth",
        "idle_power",
        "notes",
    }
    assert set(ChipSpec.model_fields) - optional <= set(chip.model_fields_set)
    assert estimate(parse_workload("llama3-8b,phase=decode,batch=8"), chip).time_s > 0


def test_families_are_the_calibrated_ones():
    assert set(typing.get_args(ChipSpec.model_fields["family"].annotation)) == set(FAMILIES)


def test_show_and_evaluate_validate_a_chip_the_same_way(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(PRESET.replace('family = "forge"', 'family = "tpu"'))
    errors = []
    for args in (["show", str(path)], ["evaluate", "--chip", str(path), "--workload", "gpt2"]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code != 0 and r.exception is not None
        errors.append(str(r.exception))
    assert errors[0] == errors[1]
    assert str(path) in errors[0] and "`family`" in errors[0] and "google-tpu" in errors[0]


def _chip(tmp_path, name: str, energy: str | None = None, kind: str = "hbm"):
    text = PRESET.replace('name = "HBM3E"', f'name = "{name}"').replace(
        'kind = "hbm"', f'kind = "{kind}"'
    )
    lines = [ln for ln in text.splitlines() if not ln.startswith("energy_per_byte")]
    if energy:
        i = lines.index(f'name = "{name}"')
        lines.insert(i + 1, f'energy_per_byte = "{energy}"')
    path = tmp_path / f"{name or 'x'}.toml"
    path.write_text("\n".join(lines))
    return load_chip(str(path))


@pytest.mark.parametrize(
    ("name", "kind", "pj_per_bit"),
    [
        ("HBM3E", "hbm", MEMORY_PJ_PER_BIT["hbm3e"]),
        ("HBM4", "hbm", MEMORY_PJ_PER_BIT["hbm4"]),
        ("main", "hbm", MEMORY_PJ_PER_BIT["hbm"]),  # any HBM level is HBM, never DDR3
        ("LPDDR5X", "dram", MEMORY_PJ_PER_BIT["lpddr5x"]),
        ("GDDR7", "dram", MEMORY_PJ_PER_BIT["gddr7"]),
        ("DDR5", "dram", MEMORY_PJ_PER_BIT["ddr5"]),
    ],
)
def test_memory_energy_default_by_technology(tmp_path, name, kind, pj_per_bit):
    chip = _chip(tmp_path, name, kind=kind)
    assert byte_energy(chip, chip.hbm) == pytest.approx(pj_per_bit * 8e-12)


def test_hbm_without_energy_is_charged_as_the_presets_state_it(tmp_path):
    """A user's HBM level without energy_per_byte costs what forge-n3 states (3.9 pJ/bit)."""
    graph = parse_workload("llama3-8b,phase=decode,batch=8")
    stated = estimate(graph, load_chip("forge-n3"))
    default = estimate(graph, _chip(tmp_path, "HBM3E"))
    assert default.energy_j == pytest.approx(stated.energy_j)


def test_power_above_tdp_warns_and_names_the_dominant_part(tmp_path):
    graph = parse_workload("llama3-8b,phase=decode,batch=8")
    assert not [w for w in estimate(graph, load_chip("forge-n3")).warnings if "TDP" in w]
    hot = _chip(tmp_path, "HBM3E", energy="200 pJ/bit")
    r = estimate(graph, hot)
    assert r.energy_j / r.time_s > hot.tdp
    (w,) = [w for w in r.warnings if "TDP" in w]
    assert "HBM3E traffic" in w and "energy_per_byte" in w


def test_no_power_warning_for_the_presets_own_figures():
    """Compute-bound runs at the sustained rate land at the TDP by construction: no warning."""
    graph = parse_workload("gemm:m=8192,n=8192,k=8192")
    for name in ("h100", "b200", "forge-n3", "tpu-v5p", "mi300x"):
        assert not [w for w in estimate(graph, load_chip(name)).warnings if "TDP" in w], name
