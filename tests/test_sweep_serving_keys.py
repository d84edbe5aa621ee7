"""A sweep's [serving] table takes the MoE serving flags of `chipforge serve` under the same
names (ep, slo_percentile, ep_overlap, spec_tokens + spec_acceptance) and refuses what `serve`
refuses, in one line before any point runs."""

import pytest

from chipforge.explore import SpaceError, space_from_dict
from chipforge.explore import evaluate as ev

MOE = "llm:qwen3-30b-a3b,layers=4"
SERVE = {"model": MOE, "chips": 8, "isl": 1024, "osl": 256, "tpot_slo": "50 ms"}


def _space(serving: dict) -> dict:
    return {
        "base": {"chip": "h100"},
        "params": {"clock": ["1.83 GHz"]},
        "workloads": [],
        "serving": serving,
        "objectives": {"serving_tokens_per_s": "max"},
    }


def test_the_keys_reach_the_plan():
    from chipforge.cluster import plan_serving
    from chipforge.spec import load_chip

    keys = dict(ep=8, slo_percentile="p99", ep_overlap=True, spec_tokens=1, spec_acceptance=0.8)
    row = ev.evaluate_point(space_from_dict(_space({**SERVE, **keys})), {"clock": 1.83e9})
    ref = plan_serving(load_chip("h100"), MOE, 8, isl=1024, osl=256, tpot_slo=0.05, **keys)
    assert row["serving_tokens_per_s"] == ref.throughput_tokens_per_s
    assert " ep=8 " in row["serving_plan"]
    plain = ev.evaluate_point(space_from_dict(_space(SERVE)), {"clock": 1.83e9})
    assert plain["serving_tokens_per_s"] != row["serving_tokens_per_s"]


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"model": "llm:llama3-8b,layers=4", "ep": 8}, "is dense: use `ep` 1"),
        ({"ep": 3}, "`ep` 3 must divide"),
        # priced as if not given (serve warns of it)
        ({"model": "llm:llama3-8b,layers=4", "ep_overlap": True}, "`ep_overlap` hides a MoE"),
        ({"model": "llm:llama3-8b,layers=4", "adp_balance": 5}, "`adp_balance` balances a MoE"),
        ({"slo_percentile": "99"}, "`slo_percentile` must be one of p50, p90, p99"),
        ({"slo_percentile": "p99", "disaggregated": True}, "not modelled with `disaggregated`"),
        ({"spec_tokens": 1}, "`spec_tokens` 1 needs `spec_acceptance`"),
        ({"spec_acceptance": 0.8}, "`spec_acceptance` needs `spec_tokens`"),
        ({"spec_tokens": 9, "spec_acceptance": 0.8}, "from 0 to 8"),
        ({"ep_overlap": "yes"}, "`ep_overlap` must be true or false"),
        ({"runtime": "trt"}, "`runtime` must be one of vllm, tensorrt-llm"),
        ({"sustained_clock": 1}, "`sustained_clock` must be true or false"),
        ({"moe_tp": True, "ep": 8}, "`moe_tp` slices the FFN"),
        ({"moe_tp": True, "tp": 2, "ep": 8, "ep_overlap": True}, "no all-to-all"),
        ({"cuda_graph_batches": [0, 64]}, "`cuda_graph_batches` must list batch sizes"),
        # the flag's own form ("64,128", as serve --cuda-graph-batches) is taken too
        ({"cuda_graph_batches": "64,x"}, "`cuda_graph_batches` must list whole batch sizes"),
        # a list or table where a name goes (was TypeError: unhashable type, exit 3)
        ({"slo_percentile": ["p99"]}, "`slo_percentile` must be one of p50, p90, p99"),
        ({"dtype": ["fp8"]}, "`dtype` must be one of"),
        ({"kv_dtype": {}}, "`kv_dtype` must be one of"),
        ({"runtime": ["vllm"]}, "`runtime` must be one of vllm, tensorrt-llm"),
    ],
)
def test_what_serve_refuses_is_refused_before_any_point(over, words):
    with pytest.raises(SpaceError) as e:
        space_from_dict(_space({**SERVE, **over}))
    assert words in str(e.value) and "\n" not in str(e.value)


def test_the_new_serve_flags_reach_the_plan_too():
    """moe_tp and cuda_graph_batches, as `serve --moe-tp` / `--cuda-graph-batches` (a sweep
    could not ask for them)."""
    from chipforge.cluster import plan_serving
    from chipforge.spec import load_chip

    keys = dict(tp=2, ep=8, moe_tp=True, cuda_graph_batches=[64, 128])
    row = ev.evaluate_point(space_from_dict(_space({**SERVE, **keys})), {"clock": 1.83e9})
    ref = plan_serving(load_chip("h100"), MOE, 8, isl=1024, osl=256, tpot_slo=0.05, **keys)
    assert row["serving_tokens_per_s"] == ref.throughput_tokens_per_s
    plain = plan_serving(load_chip("h100"), MOE, 8, isl=1024, osl=256, tpot_slo=0.05, tp=2, ep=8)
    assert row["serving_tokens_per_s"] != plain.throughput_tokens_per_s


def test_api_and_studio_refuse_ep_overlap_on_a_dense_model():
    """They priced it as if not given (serve warns; neither has a warning line)."""
    import chipforge as cf
    from chipforge.errors import ChipforgeError
    from chipforge.spec import load_chip
    from chipforge.studio import compute

    dense = "llm:llama3-8b,layers=4"
    with pytest.raises(ChipforgeError, match="`ep_overlap` hides a MoE model's EP all-to-all"):
        cf.plan_serving("h100", dense, 1, isl=512, osl=64, ep_overlap=True)
    with pytest.raises(ChipforgeError, match="`ep_overlap` hides a MoE model's EP all-to-all"):
        compute.serve(load_chip("h100"), dense, "1", "512", "64", options="ep_overlap")
