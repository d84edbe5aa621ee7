"""A decide scenario's [[workload.train]] takes every plan option of `chipforge train`, by the
flag's name (cluster.train_options), and refuses the pairs `train` refuses before any sample."""

import inspect
import tomllib
from pathlib import Path

import pytest

from chipforge.cluster import plan_training, train_options
from chipforge.decide.inputs import scenario_from_dict
from chipforge.errors import ChipforgeError

EXAMPLE = Path(__file__).parent.parent / "examples" / "decide" / "forge_vs_rent.toml"


def test_every_train_plan_flag_is_a_key():
    """Each `chipforge train` parameter but the job's own and the output's is a key, setting
    the `plan_training` keyword of the same name (how to add one: train_options.KEYS)."""
    from chipforge.cli.train import train

    flags = set(inspect.signature(train).parameters) - set(train_options.NOT_PLAN_OPTIONS)
    assert flags == set(train_options.KEYS.values())
    assert set(train_options.KEYS.values()) <= set(inspect.signature(plan_training).parameters)


def _scenario(**plan) -> dict:
    d = tomllib.loads(EXAMPLE.read_text())
    d["workload"]["train"] = [{"model": "llama3-8b", "tokens": "1T", **plan}]
    return d


def test_workload_train_plan_prices_as_train():
    """The scenario's options reach `plan_training` as `train`'s flags do: the same plan."""
    from types import SimpleNamespace

    from chipforge.datacenter.site import Assumptions
    from chipforge.datacenter.workload import training
    from chipforge.spec import load_chip

    plan = {"tp": 1, "pp": 1, "dp": 16, "cp": 1, "zero": 3, "dp_shard": 8, "recompute": "full",
            "micro_batch": 1, "global_batch": 16, "seq": 2048, "sp": False,
            "nccl_ctas": "dp=8", "recompute_modules": "core_attn"}  # fmt: skip
    sc = scenario_from_dict(_scenario(**plan))
    kw = sc.train[0].options()
    assert kw["dp_shard"] == 8 and kw["sequence_parallel"] is False
    assert kw["nccl_ctas"] == {"dp": 8} and kw["recompute_modules"] == ("core_attn",)
    chip = load_chip("h100")
    site = {"chips": 16, "assumptions": Assumptions().__dict__, "tco_usd_per_chip_hour": 0.0}
    got = training(site, SimpleNamespace(spec=chip, name="h100"), "llama3-8b", 1e12, options=kw)
    want = plan_training(chip, "llama3-8b", 16, tokens=1e12, **kw)
    assert want.plan.dp_shard == 8
    assert got["method"] == "cluster.plan_training / goodput"
    goodput = site["assumptions"]["goodput"]
    assert got["time_to_train_s"] == pytest.approx(want.time_to_train_s / goodput)
    # the same job planned fully sharded is another plan (the option was not dropped)
    other = plan_training(chip, "llama3-8b", 16, tokens=1e12, **{**kw, "dp_shard": 0})
    assert other.plan.dp_shard != want.plan.dp_shard


@pytest.mark.parametrize(
    ("plan", "words"),
    [
        ({"dp_shard": 3, "dp": 8}, "`dp_shard` 3 must divide `dp` 8"),
        ({"dp_shard": 4, "dp": 8, "zero": 0}, "`zero` 1-3"),
        ({"fp8_recipe": "current"}, 'needs dtype = "fp8"'),
        ({"fp8_param_gather": True}, 'needs dtype = "fp8"'),
        ({"global_batch": 64, "tokens_per_batch": "4M"}, "not both"),
        ({"recompute": "most"}, "`recompute` must be one of none, selective, full"),
        ({"pod": 0}, "`pod` must be a whole number"),
        ({"sp": "yes"}, "`sp` must be true or false"),
        ({"dp_sharding": 8}, "unknown key `dp_sharding`"),
        ({"topology": "nope"}, "`topology` must be a preset"),
        ({"seq": 10**9}, "`seq` must be a whole number from 1 to"),
        ({"tokens_per_batch": -4e6}, "`tokens_per_batch` must be a positive count"),
        ({"bucket_size": "inf"}, "bucket_size"),
    ],
)
def test_workload_train_refuses_before_any_sample(plan, words):
    with pytest.raises(ChipforgeError, match="workload.train llama3-8b") as e:
        scenario_from_dict(_scenario(**plan))
    assert words in str(e.value)


@pytest.mark.parametrize(
    ("plan", "words"),
    [
        # a key TOML cannot write bare: "must be a number ... or a string: dp shard=8"
        ({"dp shard": 8}, "unknown key `dp shard` (did you mean dp_shard?)"),
        ({"a\nb": 1}, "unknown key `'a\\nb'`"),  # was two lines
        # the option at fault, not every line of the table
        ({"tp": 2, "recompute": {"a": 1}}, "or a string, not recompute={'a': 1}"),
    ],
)
def test_workload_train_names_a_bad_key_on_one_line(plan, words):
    with pytest.raises(ChipforgeError) as e:
        scenario_from_dict(_scenario(**plan))
    assert words in str(e.value) and "\n" not in str(e.value)


def test_moe_hybrid_sharding_needs_ep_inside_a_shard_group():
    d = _scenario()
    d["workload"]["train"][0].update(model="mixtral-8x7b", ep=8, cp=1, dp=16, dp_shard=4)
    with pytest.raises(ChipforgeError, match="`ep` 8 must divide `dp_shard` x `cp` "):
        scenario_from_dict(d)
    d["workload"]["train"][0].update(dp_shard=8)
    assert scenario_from_dict(d).train[0].options()["dp_shard"] == 8


# a sweep space's [training] table: the same keys, the same plan, refused before any point
TRAIN = {"model": "llm:llama3-8b,layers=4", "chips": 16}


def _space(training: dict) -> dict:
    return {
        "base": {"chip": "h100"},
        "params": {"clock": ["1.83 GHz"]},
        "training": training,
        "objectives": {"training_tokens_per_s": "max", "training_mfu": "max"},
    }


def test_sweep_training_keys_reach_the_plan():
    from chipforge.explore import evaluate as ev
    from chipforge.explore import space_from_dict
    from chipforge.spec import load_chip

    keys = {"dp": 16, "tp": 1, "pp": 1, "cp": 1, "zero": 3, "dp_shard": 8, "global_batch": 16,
            "seq": 2048, "recompute": "full", "micro_batch": 1}  # fmt: skip
    row = ev.evaluate_point(space_from_dict(_space({**TRAIN, **keys})), {"clock": 1.83e9})
    ref = plan_training(load_chip("h100"), TRAIN["model"], 16, **keys)
    assert row["status"] == "ok", row["reason"]
    assert row["training_tokens_per_s"] == ref.tokens_per_s and row["training_mfu"] == ref.mfu
    assert "dp_shard=8" in row["training_plan"]
    full = ev.evaluate_point(space_from_dict(_space({**TRAIN, **keys, "dp_shard": 0})),
                             {"clock": 1.83e9})  # fmt: skip
    assert "dp_shard=16" in full["training_plan"]


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"dp_shard": 3, "dp": 8}, "`dp_shard` 3 must divide `dp` 8"),
        ({"fp8_recipe": "mxfp8"}, 'needs dtype = "fp8"'),
        ({"zero": 4}, "`zero` must be a whole number from 0 to 3"),
        ({"chips": 0}, "`chips` must be a whole number"),
        ({"tokens": "1T"}, "unknown key `tokens`"),
        # plan_training's bounds of --global-batch (each point said "infeasible: --global-batch")
        ({"global_batch": 0}, "`global_batch` must be N or"),
        ({"global_batch": -5}, "`global_batch` must be N or"),
        ({"global_batch": 10**17}, "sequences from 1 to 2,097,152"),
        ({"global_batch": "2048:512"}, "`global_batch` must be N or"),
        ({"global_batch": True}, "`global_batch` must be N or"),
        # MoE-only options on a dense model: `train` warns, a table (no warning line) refuses;
        # they were priced as if not given
        ({"moe_host_sync": True}, "`moe_host_sync` acts on routed experts"),
        ({"shared_expert_overlap": True}, "`shared_expert_overlap` acts on routed experts"),
        ({"moe_dispatcher": "flex"}, "`moe_dispatcher` acts on routed experts"),
        ({"ep": 2}, "`ep` acts on routed experts"),
    ],
)
def test_sweep_training_refuses_before_any_point(over, words):
    from chipforge.explore import SpaceError, space_from_dict

    with pytest.raises(SpaceError) as e:
        space_from_dict(_space({**TRAIN, **over}))
    assert words in str(e.value) and "\n" not in str(e.value)


def test_sweep_training_objective_needs_the_table():
    from chipforge.explore import SpaceError, space_from_dict

    space = _space(TRAIN)
    del space["training"]
    space["workloads"] = [{"spec": "llm:llama3-8b,layers=2,phase=decode,batch=1"}]
    with pytest.raises(SpaceError, match="needs a \\[training\\] table"):
        space_from_dict(space)


def test_workload_train_options_no_plan_takes_are_refused_not_dropped():
    """[[workload.train]] options that no plan on the site's chips takes (dp = 3 of 65,536)
    were priced by the 6ND fallback as if not given, said only in the JSON's `methods`."""
    from chipforge.decide.rates import chip_type

    sc = scenario_from_dict(_scenario(dp=3, tp=1, pp=1))
    with pytest.raises(ChipforgeError) as e:
        chip_type(sc, sc.buy, built=False)
    assert "would be priced as if not given" in str(e.value)
    assert "must divide --chips" in str(e.value) and "\n" not in str(e.value)


def test_a_jobs_chips_are_read_by_one_rule():
    """A decide [[workload.train]] and a sweep's [training] read `chips` as train --chips
    (train_options.job_chips), each up to its own limit."""
    from chipforge.decide.inputs import _job_chips
    from chipforge.explore.system import SystemTableError, parse_training

    assert _job_chips(None) is None and _job_chips(1024) == 1024
    for bad in (0, 2.5, True, 70_000):
        with pytest.raises(ChipforgeError, match="`workload.train.chips` must be a whole number "
                           f"from 1 to 65,536, not {bad!r}"):  # fmt: skip
            _job_chips(bad)
    with pytest.raises(SystemTableError, match="training: `chips` must be a whole number from 1"):
        parse_training({"model": "llama3-8b", "chips": 0})
