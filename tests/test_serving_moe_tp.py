"""DP attention with a tensor-parallel FFN (serving's MOE_TP, `moe_tp`): SGLang's
--enable-dp-attention without --enable-ep-moe. The attention runs per group on its own
sequences; every FFN weight is sliced over the `ep` chips, fed by an all-gather of every group's
tokens and ended by an all-reduce over them -- no all-to-all."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from chipforge.cli import app, main
from chipforge.cluster import check_validate as cv
from chipforge.cluster import serving as s
from chipforge.cluster.kvcache import memory
from chipforge.cluster.serving import plan_serving
from chipforge.cluster.serving_plan import _load_chip, resolve_model
from chipforge.cluster.topology import topology_for
from chipforge.errors import WorkloadError

R1 = dict(isl=3200, osl=800, dtype="fp8", kv_dtype="bf16", tp=1, pp=1, ep=8, concurrency=32)


def test_the_ffn_weights_are_sliced_over_the_ep_chips():
    c = resolve_model("deepseek-v3")
    kw = dict(tp=1, pp=1, dtype="fp8", kv_dtype="bf16", ep=8)
    wide = memory(c, 141e9, **kw).weights
    sliced = memory(c, 141e9, moe_tp=True, **kw).weights
    # wide EP holds whole routed experts (256 / 8 per chip: the same bytes as 1/8 of each) but
    # the shared expert and the 3 dense layers' MLPs whole on each attention group's chip;
    # sliced, each chip holds 1/8 of them: 58 x 3 x 7168 x 2048 + 3 x 3 x 7168 x 18432 FP8 bytes
    shared_and_dense = 58 * 3 * 7168 * 2048 + 3 * 3 * 7168 * 18432
    assert wide - sliced == pytest.approx(shared_and_dense * (1 - 1 / 8))


@pytest.mark.parametrize("phase, b, n", [("decode", 4, 3600), ("prefill", 1, 512)])
def test_the_block_gathers_every_groups_tokens_and_all_reduces_them(monkeypatch, phase, b, n):
    chip, c = _load_chip("h200"), resolve_model("deepseek-v3")
    topo = topology_for(chip, 8, None)
    calls = []
    real_ar, real_coll = s.tp_all_reduce, s.collective_time
    monkeypatch.setattr(s, "tp_all_reduce", lambda ch, size, g, t: calls.append(("ar", size, g))
                        or real_ar(ch, size, g, t))  # fmt: skip
    monkeypatch.setattr(s, "collective_time", lambda kind, size, g, t, **k: calls.append(
        (kind, size, g)) or real_coll(kind, size, g, t, **k))  # fmt: skip
    monkeypatch.setattr(s, "_moe_all_to_all", lambda *a: pytest.fail("no all-to-all"))
    s._CACHE.clear()
    t = s._block(chip, c, topo, phase, b, n, 1, 8, "fp8", "bf16", moe_tp=True)
    tokens = 8 * b * (n if phase == "prefill" else 1)  # the 8 groups' tokens
    # one all-gather of their BF16 hidden states, one all-reduce of the FFN output (the graph's
    # ffn_allreduce, FP8 here as every collective of an FP8 graph), both over the 8 chips; the
    # one-chip attention groups have no all-reduce of their own
    assert calls == [("ar", tokens * 7168, 8), ("all_gather", tokens * 7168 * 2, 8)]
    # the attention of this group's b sequences at tp 1 + the FFN of all 8 b at tp 8
    attn, _ = s._layer(chip, c, phase, b, n, 1, "fp8", "bf16", part="attention")
    ffn, _ = s._layer(chip, c, phase, 8 * b, n, 8, "fp8", "bf16", 1, None, 0, True, part="ffn")
    whole, _ = s._layer(chip, c, phase, 8 * b, n, 8, "fp8", "bf16", 1, None, 0, True)
    assert 0 < ffn < whole and attn > 0
    assert t > attn + ffn + s.LAYER_OVERHEAD_S


def test_a_dp_attention_plan_with_a_tensor_parallel_ffn():
    wide = plan_serving("h200", "deepseek-v3", 8, **R1)
    tp_ffn = plan_serving("h200", "deepseek-v3", 8, moe_tp=True, **R1)
    assert tp_ffn.moe_tp and tp_ffn.to_dict()["plan"]["moe_tp"] is True
    assert (tp_ffn.tp, tp_ffn.ep, tp_ffn.dp, tp_ffn.batch) == (1, 8, 1, 32)
    assert tp_ffn.kv_cache_capacity_tokens > wide.kv_cache_capacity_tokens  # fewer weights
    assert tp_ffn.breakdown["decode"] != wide.breakdown["decode"]
    assert 0 < tp_ffn.throughput_tokens_per_s < float("inf")


@pytest.mark.parametrize(
    "kw", [dict(tp=8, ep=None), dict(tp=8, ep=8), dict(tp=None, ep=8), dict(ep_overlap=True)]
)
def test_moe_tp_needs_dp_attention_groups(kw):
    with pytest.raises(WorkloadError, match="--moe-tp"):
        plan_serving("h200", "deepseek-v3", 8, moe_tp=True, **(R1 | kw))


def test_a_row_that_ran_sglang_dp_attention_states_it():
    row = {"tp": "8", "ep": "", "conditions": "SGLang 0.4.3.post2 --tp 8 --enable-dp-attention"}
    assert cv.serving_shape(row) == {"tp": 1, "ep": 8, "moe_tp": True}
    ep_moe = row | {"conditions": row["conditions"] + " --enable-ep-moe"}
    assert cv.serving_shape(ep_moe) == {"tp": 1, "ep": 8, "moe_tp": False}
    assert cv.serving_shape(row | {"conditions": "vLLM, TP 8"}) == {"tp": 8, "ep": None,
                                                                    "moe_tp": False}  # fmt: skip
    ran = [r for r in cv.rows2() if cv.DP_ATTENTION_FLAG in r["conditions"]]
    assert len(ran) == 9 and not any(r["not_expressible"] for r in ran)


def test_serve_moe_tp_flag():
    args = ["serve", "--chip", "h200", "--model", "deepseek-v3", "--chips", "8", "--isl",
            "3200", "--osl", "800", "--dtype", "fp8", "--tp", "1", "--ep", "8", "--concurrency",
            "8"]  # fmt: skip
    out = CliRunner().invoke(app, [*args, "--moe-tp", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["plan"]["moe_tp"] is True


def test_serve_names_moe_tp_on_one_line_and_exits_2(capsys):
    args = ["serve", "--chip", "h200", "--model", "deepseek-v3", "--chips", "8", "--isl", "3200",
            "--osl", "800", "--dtype", "fp8", "--tp", "8", "--moe-tp"]  # fmt: skip
    with pytest.raises(SystemExit) as done:
        main(args)
    err = capsys.readouterr().err
    assert done.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "--moe-tp" in err and "--ep a multiple of --tp" in err
