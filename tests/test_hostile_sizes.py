"""Absurd sizes in a user's model or flags answer at once, in one line (never a hang)."""

import json
import os
import re
import time
from itertools import product
from pathlib import Path

import pytest

from chipforge.atomic import check_created, check_target
from chipforge.cluster.checks import balanced_ends, end_stage_split
from chipforge.errors import ChipforgeError, WorkloadError
from chipforge.userfile import MAX_TEXT_BYTES, forget_inputs
from chipforge.workload.hf import MAX_LAYERS
from chipforge.workload.resolve import resolve_model


def _pair_by_pair(layers: int, mtp: int, pp: int, v: int, head: float) -> tuple[int, int] | None:
    """balanced_ends by its definition: every (first, last) pair Megatron's split takes, the
    busiest rank (MTP and the head on the last) least loaded, then the fewest blocks on the
    busiest, the fewest on the ends, the ends closest, the first the larger."""
    best = None
    for first, last in product(range(1, layers + 1), repeat=2):
        counts = end_stage_split(layers, pp, first, last, v)
        if counts:
            most = max(*counts[:-1], last + mtp)
            key = (max(most, last + mtp + head), most, first + last, abs(first - last), -first)
            if best is None or key < best[0]:
                best = (key, (first, last))
    return best[1] if best else None


def test_balanced_ends_is_its_definition():
    for layers, mtp, pp, v in product(range(1, 29), (0, 1, 3), range(1, 8), (1, 2, 3)):
        for head in (0.0, 2.3):
            got = balanced_ends(layers, mtp, pp, v, head)
            assert got == _pair_by_pair(layers, mtp, pp, v, head)


def test_balanced_ends_of_a_billion_layers_takes_no_time():
    """A config.json of 10^9 layers: the search enumerated O(layers^2) splits (train hung)."""
    balanced_ends.cache_clear()
    t0 = time.process_time()
    assert balanced_ends(3000, 1, 4) == (749, 749)  # 749/751/751/749+MTP
    assert time.process_time() - t0 < 0.05  # the pairs of 3,000 layers took ~0.7 s
    assert balanced_ends(10**9, 0, 2) == (500_000_000, 500_000_000)
    assert balanced_ends(10**9, 3, 64) == (15_624_969, 15_624_969)
    assert balanced_ends(10**9, 1, 7, 3) is None  # 10^9 is no multiple of 3
    assert time.process_time() - t0 < 0.05


LLAMA = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "vocab_size": 100, "max_position_embeddings": 64}  # fmt: skip
GEMMA2 = {**LLAMA, "architectures": ["Gemma2ForCausalLM"], "sliding_window": 32}
QWEN2_MOE = {**LLAMA, "architectures": ["Qwen2MoeForCausalLM"], "moe_intermediate_size": 32,
             "num_experts": 4, "num_experts_per_tok": 2}  # fmt: skip
LLAMA4 = {**LLAMA, "architectures": ["Llama4ForCausalLM"], "num_local_experts": 4,
          "num_experts_per_tok": 1, "intermediate_size_mlp": 128}  # fmt: skip
GPT2 = {"architectures": ["GPT2LMHeadModel"], "n_embd": 64, "n_layer": 2, "n_head": 4,
        "vocab_size": 100, "n_positions": 64}  # fmt: skip


@pytest.mark.parametrize(
    ("base", "key", "value"),
    [
        # 0 read as "left out": MHA, hidden / heads, 256, 4 x hidden, n_ctx, every layer
        (LLAMA, "num_key_value_heads", 0),
        (LLAMA, "head_dim", 0),
        (GEMMA2, "head_dim", 0),
        (GEMMA2, "sliding_window_pattern", 0),
        (GPT2, "n_inner", 0),
        (GPT2, "n_positions", 0),
        (QWEN2_MOE, "decoder_sparse_step", 0),
        (QWEN2_MOE, "decoder_sparse_step", -2),  # every layer sparse, silently
        (LLAMA4, "interleave_moe_layer_step", 0),
    ],
)
def test_a_zero_size_in_a_config_json_is_refused_not_defaulted(tmp_path, base, key, value):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(base))
    resolve_model(f"{path},window=0" if base is LLAMA4 else str(path))  # the base is a model
    path.write_text(json.dumps({**base, key: value}))
    with pytest.raises(WorkloadError, match=f"`{key}` must be a positive integer, not {value}"):
        resolve_model(str(path))


@pytest.mark.parametrize("base", [LLAMA, GEMMA2, QWEN2_MOE, LLAMA4, GPT2])
def test_a_billion_layers_in_a_config_json_is_refused_before_any_layer_is_walked(tmp_path, base):
    """Gemma 2 and Qwen2-MoE walked 10^9 layers (hung), Llama 4 built a list of them
    (MemoryError, exit 3)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**base, "n_layer" if base is GPT2 else "num_hidden_layers": 10**9}))
    with pytest.raises(WorkloadError, match="must be at most 4,194,304 .* not 1,000,000,000"):
        resolve_model(str(path))
    assert MAX_LAYERS == MAX_TEXT_BYTES // 2  # "0," a layer in a per-layer list


def test_decide_sites_take_the_power_bound_of_datacenter(tmp_path):
    """`datacenter --grid 1e30GW` was refused (10 TW), `decide --grid 1e30GW` and a scenario's
    `grid = "1e30GW"` priced a $10^39 site, exit 0."""
    from chipforge.datacenter.site import MAX_SITE_W
    from chipforge.decide.inputs import load_scenario

    example = Path(__file__).parents[1] / "examples" / "decide" / "forge_vs_gb200.toml"
    s = load_scenario(example)
    assert s.with_power(grid_w=MAX_SITE_W).sites[0].grid_w == MAX_SITE_W == 1e13
    for flag, kw in (("--grid", {"grid_w": 1e39}), ("--it-power", {"it_w": 2e13})):
        with pytest.raises(ChipforgeError, match=f"`{flag}` must be > 0 and at most 1e\\+13 W"):
            s.with_power(**kw)
    huge = tmp_path / "s.toml"
    huge.write_text(example.read_text().replace('grid = "1GW"', 'grid = "1e30GW"', 1))
    with pytest.raises(ChipforgeError, match=r"`sites\[0\].grid` must be > 0 and at most 1e\+13"):
        load_scenario(huge)


@pytest.mark.parametrize(
    ("check", "target"),
    [
        (lambda p: check_target(p, "--out", declare=True), "x.json"),
        (lambda p: check_created(p, "--html"), "new/x.html"),
        (lambda p: check_created(p, "--png", folder=True), "charts"),
    ],
)
def test_an_output_in_a_read_only_folder_is_refused_before_the_run(
    tmp_path, monkeypatch, check, target
):
    """`decide --html /read-only/x.html` ran the whole decision, printed it and then failed on
    the write; now the flag's line comes before any work (os.access, as for a non-root user:
    the test runs as root, for whom every folder is writable)."""
    forget_inputs()
    denied = tmp_path / "ro"
    denied.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != denied and real(p, mode))
    with pytest.raises(ChipforgeError, match=f"folder {denied} is not writable; give another"):
        check(denied / target)
    check(tmp_path / target)  # a writable folder is fine
    forget_inputs()


@pytest.mark.parametrize("chips", [[], (), 5, None])
def test_api_compare_refuses_no_chips_as_the_cli_does(chips):
    """`compare --chip ''` is refused; `api.compare([], ...)` returned [] (nothing compared,
    no word) and `api.compare(5, ...)` raised a TypeError."""
    from chipforge import api

    with pytest.raises(ChipforgeError, match="`chips` must name a chip"):
        api.compare(chips, "gpt2")


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_a_non_finite_serve_number_says_finite(value):
    """`serve --osl-cv inf` read "--osl-cv must be a number, not inf": inf is a number."""
    from test_hostile import cli

    code, _, err = cli("serve", "--chip", "h100", "--model", "llama3-8b", "--chips", "8",
                       "--osl-cv", value)  # fmt: skip
    assert code == 2 and err.strip() == f"error: --osl-cv must be a finite number, not {value}"


@pytest.mark.parametrize("command", ["train", "serve"])
def test_an_unknown_topology_names_the_flag(command):
    """`train --topology x` read "`topology` must be one of ...": the API's keyword, where
    every other plan option names its flag."""
    from test_hostile import cli

    code, _, err = cli(command, "--chip", "h100", "--model", "llama3-8b", "--chips", "8",
                       "--topology", "dgx-h10")  # fmt: skip
    assert code == 2 and err.startswith("error: --topology must be one of "), err
    assert "(did you mean dgx-h100" in err


@pytest.mark.parametrize(
    ("rng", "shown"),
    [
        ({"min": "2 GHz", "max": "1 GHz"}, "(min 2 GHz, max 1 GHz)"),
        ({"min": "1 GHz", "max": "2 GHz", "steps": 0}, "(min 1 GHz, max 2 GHz, steps 0)"),
    ],
)
def test_an_empty_range_shows_steps_only_where_given(rng, shown):
    """An inverted range without `steps` read "(min 2 GHz, max 1 GHz, steps 0)"."""
    from chipforge.explore.space import SpaceError, space_from_dict

    space = {
        "base": {"chip": "forge-n3"},
        "params": {"clock": rng},
        "workloads": [{"spec": "gemm:m=64,n=64,k=64"}],
        "objectives": {"time_s": "min"},
    }
    with pytest.raises(SpaceError, match=f"`clock` is an empty range {re.escape(shown)}; give"):
        space_from_dict(space)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--pue", "0"], "error: `--pue` must be >= 1.0, not 0.0;"),
        (["--utilization", "2"], "error: `--utilization` must be in (0, 1], not 2.0"),
        (["--set", "pue=0.5"], "error: `pue` must be >= 1.0, not 0.5;"),  # the key as set
    ],
)
def test_datacenter_range_errors_name_the_flag_as_typed(args, line):
    """`datacenter --pue 0` read "`pue` must be >= 1.0" (the assumption's field), where
    `--pue nan` named the flag."""
    from test_hostile import cli

    code, _, err = cli("datacenter", *args)
    assert code == 2 and err.startswith(line), err
