"""Every plan option of `chipforge serve` is one key of one parser (cluster.serve_options), read
the same way by the command, a sweep's [serving] table and a decide scenario's
[[workload.serve]]: the same `plan_serving` plan, and what `serve` refuses refused when the table
is read, before any point or sample."""

import inspect
import tomllib
from pathlib import Path

import pytest

from chipforge.cluster import plan_serving, serve_options
from chipforge.decide.inputs import scenario_from_dict
from chipforge.errors import ChipforgeError
from chipforge.explore import SpaceError, space_from_dict
from chipforge.explore import evaluate as ev
from chipforge.spec import load_chip

MODEL = "llm:llama3-8b,layers=4"
EXAMPLE = Path(__file__).parent.parent / "examples" / "decide" / "forge_vs_rent.toml"
# options every path must carry to the plan (each moves this plan: see the last asserts)
OPTIONS = {"max_batch": 16, "max_num_tokens": 4096, "runtime": "tensorrt-llm",
           "kv_dtype": "fp8", "gqa_kernel": False, "cuda_graph_batches": [8, 24],
           "ttft_slo": "5 s", "osl_cv": 0.5}  # fmt: skip


def test_every_serve_plan_flag_is_a_key():
    """Each `chipforge serve` parameter but the job's own and the output's is a key; each key
    is a `plan_serving` keyword but the pools (decode_pool / prefill_pool: `disaggregated`)."""
    from chipforge.cli.serve import serve

    flags = set(inspect.signature(serve).parameters) - set(serve_options.NOT_PLAN_OPTIONS)
    assert flags == set(serve_options.KEYS)
    plan = set(inspect.signature(plan_serving).parameters)
    assert set(serve_options.KEYS) - plan == {"decode_pool", "prefill_pool"}


def test_flags_and_table_keys_parse_alike():
    """The command's flag values and a table's TOML values give the same keyword arguments."""
    cli = serve_options.parse(
        {"ttft_slo": "2s", "cuda_graph_batches": "128,256", "decode_pool": True,
         "disaggregated": False, "spec_acceptance": None, "tp": 2}, "serve", cli=True,
    )  # fmt: skip
    table = serve_options.parse(
        {"ttft_slo": "2 s", "cuda_graph_batches": [128, 256], "decode_pool": True, "tp": 2},
        "serving",
    )
    assert cli == table == {"ttft_slo": 2.0, "cuda_graph_batches": (128, 256), "tp": 2,
                            "disaggregated": "decode"}  # fmt: skip


def _space(serving: dict) -> dict:
    return {"base": {"chip": "h100"}, "params": {"clock": ["1.83 GHz"]}, "workloads": [],
            "serving": serving, "objectives": {"serving_tokens_per_s": "max"}}  # fmt: skip


def test_sweep_serving_options_give_plan_servings_plan():
    base = {"model": MODEL, "chips": 2, "isl": 1024, "osl": 256}
    row = ev.evaluate_point(space_from_dict(_space(base | OPTIONS)), {"clock": 1.83e9})
    kw = serve_options.parse(OPTIONS, "x")
    want = plan_serving(load_chip("h100"), MODEL, 2, isl=1024, osl=256, **kw)
    assert row["serving_tokens_per_s"] == want.throughput_tokens_per_s
    plain = ev.evaluate_point(space_from_dict(_space(base)), {"clock": 1.83e9})
    assert plain["serving_tokens_per_s"] != row["serving_tokens_per_s"]


def _scenario(**serve) -> dict:
    d = tomllib.loads(EXAMPLE.read_text())
    d["workload"] = {"serve": [{"model": "llama3-8b", "tokens_per_day": "1T", **serve}]}
    return d


def test_workload_serve_options_price_as_serve():
    from chipforge import silicon
    from chipforge.datacenter.site import Assumptions
    from chipforge.datacenter.tco import facts_from
    from chipforge.datacenter.workload import serving

    sc = scenario_from_dict(_scenario(isl=1024, osl=256, **OPTIONS))
    kw = sc.serve[0].options()
    assert kw == serve_options.parse(OPTIONS, "x")
    assert sc.serve[0].key().startswith("serve:llama3-8b:1024:256:bf16:max_batch=16:")
    chip = load_chip("h100")
    site = {"chips": 8, "assumptions": Assumptions().__dict__, "tco_usd_per_year": 1.0}
    facts = facts_from("h100", chip, silicon.evaluate(chip))
    got = serving(site, facts, "llama3-8b", isl=1024, osl=256, options=kw)
    want = plan_serving(chip, "llama3-8b", got["chips_per_replica"], isl=1024, osl=256, **kw)
    assert got["method"] == "cluster.plan_serving"
    per_replica = got["throughput_tokens_per_s"] / got["replicas"] / site["assumptions"]["goodput"]
    assert per_replica == pytest.approx(want.throughput_tokens_per_s)
    plain = plan_serving(chip, "llama3-8b", got["chips_per_replica"], isl=1024, osl=256)
    assert plain.throughput_tokens_per_s != want.throughput_tokens_per_s
    # without options the workload's name in the JSON is as it was
    assert scenario_from_dict(_scenario()).serve[0].key() == "serve:llama3-8b:1024:1024:bf16"


REFUSED = [
    ({"max_num_tokens": 2048, "decode_pool": True}, "`max_num_tokens` budgets"),
    ({"decode_pool": True, "prefill_pool": True}, "give one of them"),
    ({"prefill_pool": True, "tpot_slo": "1 s"}, "a prefill pool runs no decode step"),
    ({"adp_batching_wait": 4}, "give `adp_balance`"),
    ({"cuda_graph_batches": "8,a"}, "`cuda_graph_batches` must list whole batch sizes"),
    ({"dense_cache": 100}, "`dense_cache` 100 is shorter than `isl` + `osl`"),
    ({"batching": "ragged"}, "`batching` must be one of"),
    ({"moe_tp": True}, "`moe_tp` slices the FFN"),
    ({"weight_dtype": "fp8", "attn_dtype": "fp8"}, "not modelled together"),
    ({"batch_shards": 2}, "`batching` interleaved"),
    ({"spec_tokens": 1}, "`spec_tokens` 1 needs `spec_acceptance`"),
    ({"tp": 3}, "`tp` 3 must divide"),
    ({"topology": "nope"}, "`topology` must be a preset"),
    ({"gqa_kernel": "no"}, "`gqa_kernel` must be true or false"),
    ({"max_batchsize": 8}, "unknown key `max_batchsize`"),
]


@pytest.mark.parametrize(("over", "words"), REFUSED)
def test_sweep_refuses_before_any_point(over, words):
    base = {"model": MODEL, "chips": 2, "isl": 1024, "osl": 256}
    with pytest.raises(SpaceError) as e:
        space_from_dict(_space(base | over))
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(("over", "words"), REFUSED)
def test_decide_refuses_before_any_sample(over, words):
    with pytest.raises(ChipforgeError, match="workload.serve llama3-8b") as e:
        scenario_from_dict(_scenario(isl=1024, osl=256, **over))
    assert words.replace(" and `chips` 2", "") in str(e.value)


def test_the_api_takes_serves_flags():
    """`chipforge.plan_serving` reads its keywords with the same parser: a flag's own form
    (ttft_slo="5 s", cuda_graph_batches=[8, 24], decode_pool=True) gives the plan of
    cluster.plan_serving's keywords, and the command's refusals are its refusals."""
    import chipforge as cf

    got = cf.plan_serving("h100", MODEL, 2, isl=1024, osl=256, **OPTIONS)
    kw = serve_options.parse(OPTIONS, "x")
    want = plan_serving(load_chip("h100"), MODEL, 2, isl=1024, osl=256, **kw)
    assert kw["ttft_slo"] == 5.0 and kw["cuda_graph_batches"] == (8, 24)
    assert got.throughput_tokens_per_s == want.throughput_tokens_per_s
    pool = cf.plan_serving("h100", MODEL, 2, isl=1024, osl=256, decode_pool=True)
    assert pool.disaggregated == "decode"
    with pytest.raises(ChipforgeError, match="`spec_tokens` 1 needs `spec_acceptance`"):
        cf.plan_serving("h100", MODEL, 2, spec_tokens=1)


@pytest.mark.parametrize(
    ("model", "raw", "chips"),
    [
        ("llm:llama3-8b,layers=4", {"ep": 1}, 2),  # `serve --ep 1` on a dense model: taken
        ("deepseek-v3", {"tp": 8, "ep": 72}, 72),  # wide EP: experts spread unevenly
    ],
)
def test_a_table_takes_the_ep_the_plan_takes(model, raw, chips):
    """A table's `ep` is checked by the plan's own rule (serving_plan.check_ep): it refused
    `ep = 1` on a dense model and a wide EP group not dividing the routed experts, both of
    which `serve` and plan_serving take."""
    kw = serve_options.parse(raw, "x", model=model, chips=chips)
    assert kw == raw


def test_a_table_refuses_the_shape_the_plan_refuses():
    """With the chips known a table's tp / pp / ep are checked by the plan's own shape check
    (serving_plan._check): tp 4 x pp 4 on 8 chips was taken (each divides the chips) and
    refused only when planned."""
    with pytest.raises(ChipforgeError, match=r"tp\*pp = 4\*4 = 16 must divide `chips` 8"):
        serve_options.parse({"tp": 4, "pp": 4}, "x", model=MODEL, chips=8)
    with pytest.raises(ChipforgeError):
        plan_serving(load_chip("h100"), MODEL, 8, isl=1024, osl=256, tp=4, pp=4)
