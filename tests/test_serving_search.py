"""The serving search's batch: the largest that meets the SLOs (or that runs at all), found by
bisection between the grid's powers of two, not the grid point below it."""

from __future__ import annotations

import math

import pytest

from chipforge.cluster import plan_serving, serving
from chipforge.cluster.serving_plan import _load_chip
from chipforge.cluster.topology import topology_for
from chipforge.errors import Infeasible, WorkloadError
from chipforge.workload.config import load_model

LLAMA8 = dict(isl=1024, osl=256)


def _at(batch: int, **kw):
    chip, c = _load_chip("h100"), load_model("llama3-8b")
    return serving.evaluate(
        chip, c, 1, topology_for(chip, 1), tp=1, pp=1, ep=1, batch=batch, dt="bf16", kvd="bf16",
        **LLAMA8, **kw,
    )  # fmt: skip


def test_largest_meeting_bisects_to_the_step():
    """Every boundary between lo and hi is found exactly, on lo + k x step, in at most
    ceil(log2(steps)) evaluations; a batch that cannot run counts as a miss."""

    class Plan:
        def __init__(self, b):
            self.batch = b

    lo, hi, step = 128, 256, 8
    for edge in range(lo, hi, step):  # the largest batch meeting the bound
        calls = []

        def run(b, edge=edge, calls=calls):
            calls.append(b)
            if b > edge + 2 * step:
                raise Infeasible("does not run")
            return Plan(b)

        plans = serving._largest_meeting(run, lo, hi, step, lambda p, e=edge: p.batch <= e)
        assert max((p.batch for p in plans), default=lo) == edge
        assert all((b - lo) % step == 0 and lo < b < hi for b in calls)
        assert len(calls) <= math.ceil(math.log2((hi - lo) / step))


def test_search_finds_the_largest_batch_under_the_tpot_bound():
    """llama3-8b on one H100 under a 20 ms TPOT bound: 64 meets it, 128 does not; the answer is
    the largest batch between them that meets it (the grid alone stopped at 64)."""
    p = plan_serving("h100", "llama3-8b", 1, tpot_slo=0.02, **LLAMA8)
    assert (p.tp, p.pp) == (1, 1)
    assert 64 < p.batch < 128 and p.tpot_s <= 0.02
    assert _at(p.batch + 1).tpot_s > 0.02  # one more sequence misses the bound
    grid = plan_serving("h100", "llama3-8b", 1, tp=1, pp=1, concurrency=64, **LLAMA8)
    assert p.throughput_tokens_per_s > 1.15 * grid.throughput_tokens_per_s  # 4.66k vs 3.99k
    assert any(q["batch"] == p.batch and q["feasible"] for q in p.curve)


def test_search_finds_the_largest_batch_a_token_budget_admits():
    """With a per-step token budget a large batch cannot admit its prompts fast enough
    (Infeasible): the search runs the largest that can, not the power of two below it."""
    p = plan_serving("h100", "llama3-8b", 1, tp=1, pp=1, max_num_tokens=512, **LLAMA8)
    assert 64 < p.batch < 128
    _at(p.batch, max_num_tokens=512)
    with pytest.raises(Infeasible, match="max_num_tokens"):
        _at(p.batch + 1, max_num_tokens=512)


def test_r1_server_runs_the_largest_load_meeting_the_p99_bounds():
    """MLPerf v5.1 DeepSeek-R1 Server on 8 x B200 (data/frontier_heldout.csv
    mlpi51-b200x8-deepseek-r1-server): under the 2 s / 80 ms p99 bounds the search runs the
    largest load, to one sequence per GPU (an attention group of the wide-EP replica), where the
    power-of-two grid stopped at 128 per GPU (256 misses the TPOT bound)."""
    kw = dict(isl=804, osl=3736, dtype="fp4", kv_dtype="fp8", attn_dtype="bf16", tp=1, pp=1,
              ep=8, osl_cv=1.25, isl_cv=0.5, adp_balance=9, adp_batching_wait=3,
              ttft_slo=2.0, tpot_slo=0.08, slo_percentile="p99")  # fmt: skip
    p = plan_serving("b200", "deepseek-v3", 8, max_batch=4096, **kw)
    assert p.batch % 8 == 0 and 128 * 8 < p.batch < 256 * 8
    assert p.tpot_at("p99") <= 0.08 and p.ttft_at("p99") <= 2.0
    # one more sequence per GPU misses a bound: capped there, the search keeps this batch
    assert plan_serving("b200", "deepseek-v3", 8, max_batch=p.batch + 8, **kw).batch == p.batch


def test_a_search_whose_weights_fit_but_no_kv_cache_does_says_so():
    """llama3-70b on 2 x H100 with 8K-token sequences: TP1 cannot hold the weights, TP2 and PP2
    hold them but not one sequence's KV cache. The refusal names the KV cache, not "weights
    alone need 131 GiB, 2 chips have 149 GiB; use >= 3 chips" (the first plan's reason)."""
    with pytest.raises(Infeasible) as err:
        plan_serving("h100", "llama3-70b", 2, isl=4096, osl=4096)
    assert "KV cache" in str(err.value) and "weights alone" not in str(err.value)
    with pytest.raises(Infeasible, match="weights alone need"):  # no plan holds the weights
        plan_serving("h100", "llama3-405b", 2, isl=128, osl=128)


def test_one_output_token_has_no_tpot():
    """With osl 1 there is no time between tokens (vLLM's and TensorRT-LLM's benchmarks:
    TPOT = (e2e - TTFT) / (osl - 1)): the plan reports none (JSON null, "-" for a person)
    rather than a step stretched by the other prompts' prefills, and a TPOT bound does not
    refuse a prefill-only load: the plan is the one found without the bound."""
    kw = dict(isl=1024, osl=1)
    free = plan_serving("h100", "llama3-8b", 1, **kw)
    assert free.tpot_s is None and free.tpot_at("p99") is None
    d = free.to_dict()
    assert "tpot_s" in d and d["tpot_s"] is None and d["tpot_percentiles_s"] == {}
    bound = plan_serving("h100", "llama3-8b", 1, tpot_slo=0.001, **kw)
    assert bound.batch == free.batch and bound.tpot_s is None
    assert plan_serving("h100", "llama3-8b", 1, isl=1024, osl=2).tpot_s > 0  # one interval
    with pytest.raises(Infeasible) as e:  # the closest plan's TPOT is not 0 ms: there is none
        plan_serving("h100", "llama3-8b", 1, ttft_slo=1e-6, **kw)
    assert "TTFT" in str(e.value) and "TPOT" not in str(e.value)
    # a decode pool at one output token: the prefill pool makes it, nothing is decoded (it
    # reported 109,322 tokens/s, 290 times the co-located chips')
    with pytest.raises(WorkloadError, match="--decode-pool with --osl 1"):
        plan_serving("h100", "llama3-8b", 8, isl=1024, osl=1, disaggregated="decode")


def test_context_beyond_the_models_maximum_is_refused(tmp_path):
    """isl + osl above the model's stated maximum context is a user error naming the flags and
    the limit (vLLM refuses prompts beyond max_model_len); a config.json states it as
    max_position_embeddings, times a YaRN factor over original_max_position_embeddings (vLLM's
    `_get_and_verify_max_len`); a model stating none is served as before."""
    import json

    with pytest.raises(WorkloadError, match=r"--isl \+ --osl = 1,000,256 .* 131,072"):
        plan_serving("h100", "llama3-70b", 8, isl=1_000_000, osl=256)
    cfg = dict(model_type="llama", hidden_size=256, intermediate_size=512, num_hidden_layers=2)
    cfg |= dict(num_attention_heads=4, num_key_value_heads=2, vocab_size=1000)
    cfg |= dict(max_position_embeddings=2048)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    path = str(tmp_path / "config.json")
    assert plan_serving("h100", path, 1, isl=2000, osl=48).tpot_s > 0  # exactly the maximum
    with pytest.raises(WorkloadError, match="2,049 .* 2,048"):
        plan_serving("h100", path, 1, isl=2000, osl=49)
    rope = dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=1024)
    (tmp_path / "config.json").write_text(json.dumps(cfg | {"rope_scaling": rope}))
    with pytest.raises(WorkloadError, match="4,096"):
        plan_serving("h100", path, 1, isl=4096, osl=1)
    assert plan_serving("h100", "llm:custom,layers=2,hidden=256,heads=4,ffn=512,vocab=1000",
                        1, isl=300_000, osl=2).ttft_s > 0  # fmt: skip


def test_gemma3_maximum_context_is_not_scaled_again(tmp_path):
    """Gemma 3's max_position_embeddings (131,072) already counts its linear RoPE factor 8, so
    vLLM's `_get_and_verify_max_len` skips the factor for it ("gemma3" not in
    hf_config.model_type); the text model and the image-text model's decoder alike. Any other
    linear factor still multiplies it."""
    import json

    from chipforge.workload.hf import load_hf_config

    text = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=6, head_dim=64)
    text |= dict(num_attention_heads=4, num_key_value_heads=2, vocab_size=1000)
    text |= dict(max_position_embeddings=131072, rope_scaling=dict(rope_type="linear", factor=8.0))
    path = tmp_path / "config.json"
    for cfg in (text | {"model_type": "gemma3_text"},
                {"model_type": "gemma3", "text_config": text, "vision_config": {}}):  # fmt: skip
        path.write_text(json.dumps(cfg))
        assert load_hf_config(path).max_context == 131072
    path.write_text(json.dumps(text | {"model_type": "llama"}))
    assert load_hf_config(path).max_context == 8 * 131072


@pytest.mark.parametrize(
    "model, limit",
    [("llama3-8b", 131072), ("qwen3-30b-a3b", 40960), ("qwen3-235b-a22b", 40960),
     ("gpt2", 1024), ("gpt2-xl", 1024), ("gpt3-175b", 2048)],
)  # fmt: skip
def test_presets_state_their_configs_maximum_context(model, limit):
    """Every preset copied from a config.json states its max_position_embeddings (n_positions,
    GPT-3's n_ctx), as the Llama 2/3.1, Mixtral, DeepSeek-V3 and GPT-OSS presets do."""
    from chipforge.workload.resolve import resolve_model

    assert resolve_model(model).max_context == limit
    with pytest.raises(WorkloadError, match=f"{limit + 1:,} .* {limit:,}"):
        plan_serving("h100", model, 8, isl=limit, osl=1)
