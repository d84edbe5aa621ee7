"""The bytes each tensor-parallel collective moves under FP8/FP4 GEMMs, as Transformer Engine
and torchao run them: the sequence-parallel all-gathers move the quantized GEMM input (and, in
the backward pass, the quantized output gradient), the reduce-scatters the 16-bit GEMM outputs."""

from __future__ import annotations

import pytest

from chipforge.cluster import plan_training
from chipforge.cluster.checks import pipeline_blocks
from chipforge.cluster.collectives import collective_time
from chipforge.cluster.layer import LayerShape, tp_gemms
from chipforge.cluster.topology import topology_for
from chipforge.cluster.training import Plan, RunOptions, tp_bytes, tp_collectives, tp_overlapped
from chipforge.spec.loader import load_chip
from chipforge.workload.config import load_model


def test_tp_bytes_per_recipe():
    """Per element: FP8 data (+ an E8M0 scale per 32 for MXFP8, an FP32 scale per 128 for 1x128
    blocks); NVFP4 4-bit data + an E4M3 scale per 16; block-scaled recipes gather the row- and
    column-wise gradient copies; every reduce-scatter 2 bytes (4 under FP32)."""
    assert tp_bytes("bf16") == (2, 2, 2)
    assert tp_bytes("fp32") == (4, 4, 4)
    assert tp_bytes("fp8", "delayed") == (1, 1, 2)
    assert tp_bytes("fp8", "current") == (1, 1, 2)
    assert tp_bytes("fp8", "mxfp8") == pytest.approx((1 + 1 / 32, 2 + 2 / 32, 2))
    assert tp_bytes("fp8", "block") == pytest.approx((1 + 1 / 32, 2 + 2 / 32, 2))
    assert tp_bytes("fp4") == pytest.approx((0.5625, 1.125, 2))


def test_fp8_tp_collectives_by_hand():
    """Llama 3 8B TP8 on 8 H100, 4K tokens, current scaling: per layer two forward pairs (FP8
    all-gather of 4096 x 4096 elements, BF16 reduce-scatter), two backward pairs, two more under
    full recompute; BF16 stays four all-reduces; no sequence parallelism: BF16 all-reduces even
    under FP8."""
    chip, c = load_chip("h100"), load_model("llama3-8b")
    topo = topology_for(chip, 8)
    elems = 4096 * c.hidden
    pair = collective_time("all_gather", elems, 8, topo) + collective_time(
        "reduce_scatter", 2 * elems, 8, topo
    )
    run = RunOptions(fp8_recipe="current")
    plan = Plan(tp=8, recompute="none")
    assert tp_collectives(chip, c, plan, topo, seq=4096, dtype="fp8", run=run) == pytest.approx(
        4 * pair * c.layers
    )
    full = Plan(tp=8, recompute="full")
    assert tp_collectives(chip, c, full, topo, seq=4096, dtype="fp8", run=run) == pytest.approx(
        6 * pair * c.layers
    )
    ar = collective_time("all_reduce", 2 * elems, 8, topo)
    assert tp_collectives(chip, c, plan, topo, seq=4096, dtype="bf16", run=run) == pytest.approx(
        4 * ar * c.layers
    )
    no_sp = Plan(tp=8, recompute="none", sequence_parallel=False)
    assert tp_collectives(chip, c, no_sp, topo, seq=4096, dtype="fp8", run=run) == pytest.approx(
        4 * ar * c.layers
    )


def test_overlapped_tp_moves_the_recipes_bytes():
    """TP overlap (userbuffers / async TP) on Llama 3 8B TP8 MXFP8: the forward all-gather moves
    1 + 1/32 bytes, the backward one both gradient copies, the reduce-scatters 2 bytes; the
    plan's exposed TP time is m x layers x tp_overlapped with those three (on B200: MXFP8
    needs Blackwell's block-scaled MMA, `[matrix] block_scaled`)."""
    chip, c = load_chip("b200"), load_model("llama3-8b")
    seq, mb, tp = 4096, 2, 8
    res = plan_training(chip, c, 8, tp=tp, pp=1, dp=1, cp=1, ep=1, zero=1, micro_batch=mb,
                        recompute="selective", seq=seq, global_batch=4, tp_overlap=True,
                        dtype="fp8", fp8_recipe="mxfp8")  # fmt: skip
    topo = topology_for(chip, 8)
    elems = mb * seq * c.hidden
    gemms = tp_gemms(LayerShape(chip, c, tp, mb, seq, 1, "fp8", fp8_recipe="mxfp8"))
    per_layer = tp_overlapped(
        gemms, collective_time("all_gather", elems * (1 + 1 / 32), tp, topo),
        collective_time("reduce_scatter", elems * 2, tp, topo), tp, recompute=False,
        parallel_block=False,
        gather_bwd=collective_time("all_gather", elems * 2 * (1 + 1 / 32), tp, topo),
    )  # fmt: skip
    assert per_layer > 0
    assert res.exposed_comm["tp_scale_up_s"] == pytest.approx(2 * c.layers * per_layer)


def test_async_backward_by_hand():
    """Megatron's backward: per block the output gradient's all-gather is exposed, the input's
    re-gather hides under the column-parallel dgrad and the reduce-scatter under its wgrad (the
    forward's time); without the GEMMs (the search's bound) only the exposed part; without
    sequence parallelism the all-reduce hides under the wgrad."""
    chip, c = load_chip("h100"), load_model("llama3-8b")
    topo = topology_for(chip, 8)
    elems = 4096 * c.hidden
    ag1 = collective_time("all_gather", elems, 8, topo)
    rs = collective_time("reduce_scatter", 2 * elems, 8, topo)
    gemms = {"attn_in": (rs / 2, ag1 / 4), "ffn_in": (10 * rs, 10 * ag1),
             "attn_out": (1.0, 1.0), "ffn_out": (1.0, 1.0)}  # fmt: skip
    run = RunOptions(fp8_recipe="current", tp_async_backward=True)
    plan = Plan(tp=8, recompute="none")
    fwd = 2 * (ag1 + rs)
    back = 2 * ag1 + (ag1 - ag1 / 4) + (rs - rs / 2)  # the MLP's hide entirely
    got = tp_collectives(chip, c, plan, topo, seq=4096, dtype="fp8", run=run, gemms=gemms)
    assert got == pytest.approx((fwd + back) * c.layers)
    bound = tp_collectives(chip, c, plan, topo, seq=4096, dtype="fp8", run=run)
    assert bound == pytest.approx((fwd + 2 * ag1) * c.layers) and bound < got
    no_sp = Plan(tp=8, recompute="none", sequence_parallel=False)
    ar = collective_time("all_reduce", 2 * elems, 8, topo)
    got = tp_collectives(chip, c, no_sp, topo, seq=4096, dtype="bf16", run=run, gemms=gemms)
    assert got == pytest.approx((2 * ar + ar - rs / 2) * c.layers)


def test_async_backward_reaches_the_plan_and_the_megatron_rows():
    """The plan prices its stage with the layer's own column-parallel GEMMs, and the rows whose
    runs used Megatron's layers (Korthikanti et al. 2022; NeMo; MLPerf NVIDIA and Megatron-Bridge)
    state it, others (Megatron-LM 2021, torchtitan) do not."""
    from chipforge.cluster import validate
    from chipforge.cluster.check_validate import rows as check_rows
    from chipforge.cluster.check_validate import training_row
    from chipforge.cluster.frontier_validate import _recipe_options
    from chipforge.cluster.frontier_validate import rows as frontier_rows

    chip, c = load_chip("h100"), load_model("llama3-8b")
    kw = dict(tp=8, pp=1, dp=1, cp=1, ep=1, zero=1, recompute="none", micro_batch=1, seq=4096,
              global_batch=2, dtype="fp8", fp8_recipe="current")  # fmt: skip
    sync = plan_training(chip, c, 8, **kw)
    async_ = plan_training(chip, c, 8, tp_async_backward=True, **kw)
    topo = topology_for(chip, 8)
    gemms = tp_gemms(LayerShape(chip, c, 8, 1, 4096, 1, "fp8", fp8_recipe="current"))
    run = RunOptions(fp8_recipe="current", tp_async_backward=True)
    per_step = 2 * tp_collectives(chip, c, Plan(tp=8, recompute="none"), topo, seq=4096,
                                  dtype="fp8", run=run, gemms=gemms)  # fmt: skip
    assert async_.exposed_comm["tp_scale_up_s"] == pytest.approx(per_step)
    assert async_.exposed_comm["tp_scale_up_s"] < sync.exposed_comm["tp_scale_up_s"]
    cases = {r["id"]: r for r in validate.csv_rows("cluster_cases.csv")}

    def states(row: dict) -> bool:
        full = {**validate.TRAINING_DEFAULTS, **row}
        return validate.framework_options(full).get("tp_async_backward") == "yes"

    assert states(cases["korthikanti-22b-full"])
    assert not states(cases["megatron-39p1b"])  # Megatron-LM 2021, no sequence parallelism
    heldout = {r["id"]: r for r in validate.csv_rows("cluster_heldout.csv")}
    assert states(heldout["nemo-gpt3-175b-fp8"])
    mlperf = next(r for r in frontier_rows() if r["id"] == "mlpt51-gb200x512-llama31-405b-fp4")
    assert states(mlperf) and not _recipe_options(mlperf).get("tp_async_backward")
    titan = [training_row(r) for r in check_rows() if "torchtitan" in r["source"]]
    assert titan and not any(states(r) for r in titan)


def test_every_training_row_has_a_listed_framework():
    """Each training row's framework is named by its source family (validate.FRAMEWORKS), so
    the options a framework implies reach every row of it alike: MLPerf Training NVIDIA (and
    Oracle's, NVIDIA's NeMo code) rows of the check sets as NeMo, their TPU rows as MaxText,
    MT-NLG's Megatron-DeepSpeed (before sequence parallelism) not as Megatron-LM."""
    from chipforge.cluster import validate

    files = ("cluster_cases.csv", "cluster_heldout.csv", "check_heldout.csv",
             "check2_heldout.csv", "frontier_heldout.csv")  # fmt: skip
    rows = [
        r for f in files for r in validate.csv_rows(f) if r.get("kind", "training") == "training"
    ]
    assert rows and all(validate.framework(r["source"]) for r in rows)
    by_id = {r["id"]: validate.framework(r["source"]) for r in rows}
    assert by_id["mlpt41-oracle-h100x1536-gpt3"] == by_id["mlpt40-h100x512-gpt3"] == "nemo"
    assert by_id["mlpt40-v5p512-gpt3"] == "maxtext"
    assert by_id["mtnlg-a100x2240-530b"] == "megatron-deepspeed"


def test_train_cli_takes_tp_async_backward():
    """`chipforge train --tp-async-backward` prices the plan the Python API prices with it."""
    import json

    from typer.testing import CliRunner

    from chipforge.cli import app

    args = ["train", "--chip", "h100", "--model", "llama3-8b", "--chips", "8", "--tp", "8",
            "--pp", "1", "--dp", "1", "--cp", "1", "--zero", "1", "--recompute", "none",
            "--micro-batch", "1", "--seq", "4096", "--global-batch", "2", "--dtype", "fp8",
            "--json"]  # fmt: skip
    plain = json.loads(CliRunner().invoke(app, args).stdout)
    out = CliRunner().invoke(app, [*args, "--tp-async-backward"])
    assert out.exit_code == 0, out.stdout
    got = json.loads(out.stdout)
    api = plan_training(load_chip("h100"), load_model("llama3-8b"), 8, tp=8, pp=1, dp=1, cp=1,
                        zero=1, recompute="none", micro_batch=1, seq=4096, global_batch=2,
                        dtype="fp8", tp_async_backward=True)  # fmt: skip
    assert got["step_time_s"] == pytest.approx(api.step_time_s)
    assert got["step_time_s"] < plain["step_time_s"]


def test_moe_block_moves_16_bits_unless_the_dispatch_is_fp8():
    """Mixtral 8x7B TP8 on 8 H100, 4K tokens, FP8 current scaling: the attention block's pairs
    gather the FP8 GEMM input, the MoE block's the BF16 hidden states (Megatron-Core's token
    dispatcher: two all-reduce-sized pairs per layer); DeepSeek-V3's FP8 dispatch quantizes the
    MoE block's input too. DeepSeek-V3's first 3 dense layers keep the FP8 gather."""
    chip, c = load_chip("h100"), load_model("mixtral-8x7b")
    topo = topology_for(chip, 8)
    elems = 4096 * c.hidden
    fp8 = collective_time("all_gather", elems, 8, topo) + collective_time(
        "reduce_scatter", 2 * elems, 8, topo
    )
    bf16 = collective_time("all_reduce", 2 * elems, 8, topo)
    plan = Plan(tp=8, recompute="none")
    run = RunOptions(fp8_recipe="current")
    got = tp_collectives(chip, c, plan, topo, seq=4096, dtype="fp8", run=run)
    assert got == pytest.approx((2 * fp8 + 2 * bf16) * c.layers)
    dispatch = RunOptions(fp8_recipe="current", fp8_dispatch=True)
    got = tp_collectives(chip, c, plan, topo, seq=4096, dtype="fp8", run=dispatch)
    assert got == pytest.approx(4 * fp8 * c.layers)
    ds = load_model("deepseek-v3")
    elems = 4096 * ds.hidden
    fp8 = collective_time("all_gather", elems, 8, topo) + collective_time(
        "reduce_scatter", 2 * elems, 8, topo
    )
    bf16 = collective_time("all_reduce", 2 * elems, 8, topo)
    moe = (ds.layers - ds.dense_layers) / ds.layers
    plan = Plan(tp=8, pp=1, recompute="none")
    got = tp_collectives(chip, ds, plan, topo, seq=4096, dtype="fp8", run=run)
    per_layer = 2 * fp8 + 2 * ((1 - moe) * fp8 + moe * bf16)
    assert got == pytest.approx(per_layer * pipeline_blocks(ds))  # + its MTP block


def test_train_cli_warns_when_a_run_option_has_no_effect():
    """`--tp-async-backward` at TP 1 or under --tp-overlap, `--fp8-dispatch` on a BF16 or a
    dense run: one warning line on stderr naming the flag and why, the plan priced as without
    it; where the option acts (TP8 without SP: the all-reduces hide under the wgrad GEMMs),
    no warning."""
    import json

    from typer.testing import CliRunner

    from chipforge.cli import app

    def train(*extra: str, tp: str = "8", dtype: str = "fp8"):
        args = ["train", "--chip", "h100", "--model", "llama3-8b", "--chips", "8", "--tp", tp,
                "--pp", "1", "--dp", str(8 // int(tp)), "--cp", "1", "--zero", "1",
                "--recompute", "none", "--micro-batch", "1", "--seq", "4096",
                "--global-batch", str(16 // int(tp)), "--dtype", dtype, "--json",
                *extra]  # fmt: skip
        out = CliRunner().invoke(app, args)
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)["step_time_s"], out.stderr

    def warned(flag: str, stderr: str) -> bool:
        lines = stderr.strip().splitlines()
        return len(lines) == 1 and lines[0].startswith(f"warning: {flag} has no effect: ")

    plain = train("--tp-overlap")
    got = train("--tp-overlap", "--tp-async-backward")
    assert got[0] == plain[0] and warned("--tp-async-backward", got[1]) and "--tp-overlap" in got[1]
    got = train("--tp-async-backward", tp="1")
    assert got[0] == train(tp="1")[0] and warned("--tp-async-backward", got[1]) and "TP 1" in got[1]
    acts = train("--tp-async-backward", "--no-sp")
    assert acts[0] < train("--no-sp")[0] and acts[1] == ""
    got = train("--fp8-dispatch", dtype="bf16")
    assert (
        got[0] == train(dtype="bf16")[0] and warned("--fp8-dispatch", got[1]) and "bf16" in got[1]
    )
    got = train("--fp8-dispatch")
    assert warned("--fp8-dispatch", got[1]) and "no MoE layers" in got[1]
    moe = "llm:custom,layers=2,hidden=256,heads=4,ffn=512,vocab=1000,experts=8,top_k=2"
    args = ["train", "--chip", "h100", "--model", moe, "--chips", "8", "--tp", "1", "--pp", "1",
            "--dp", "8", "--cp", "1", "--ep", "1", "--zero", "1", "--recompute", "none",
            "--micro-batch", "1", "--seq", "4096", "--global-batch", "8", "--dtype", "fp8",
            "--json"]  # fmt: skip
    plain, got = (CliRunner().invoke(app, args + extra) for extra in ([], ["--fp8-dispatch"]))
    assert json.loads(got.stdout)["step_time_s"] == json.loads(plain.stdout)["step_time_s"]
    assert warned("--fp8-dispatch", got.stderr) and "TP 1 and EP 1" in got.stderr


def test_torchtitan_op_sac_gathers_each_block_input_again_in_the_backward():
    """torchtitan's per-op policy saves mm, SDPA and reduce-scatter outputs, not all-gathers
    (`_save_list`): under sequence-parallel TP the recomputation gathers each block's input
    once more (the forward's bytes), beside the recomputed wk / w3 under async TP; Megatron's
    selective recompute and full recompute are unchanged; no SP, nothing gathered."""
    chip, c = load_chip("h100"), load_model("llama3-8b")
    topo = topology_for(chip, 8)
    elems = 4096 * c.hidden
    sac = RunOptions(fp8_recipe="current", recompute_modules=("op_sac",))
    plan = Plan(tp=8, recompute="selective")
    base = tp_collectives(
        chip, c, plan, topo, seq=4096, dtype="fp8", run=RunOptions(fp8_recipe="current")
    )
    again = collective_time("all_gather", elems, 8, topo)  # FP8: 1 B per element
    got = tp_collectives(chip, c, plan, topo, seq=4096, dtype="fp8", run=sac)
    assert got == pytest.approx(base + 2 * again * c.layers)
    no_sp = Plan(tp=8, recompute="selective", sequence_parallel=False)
    assert tp_collectives(chip, c, no_sp, topo, seq=4096, dtype="fp8", run=sac) == pytest.approx(
        tp_collectives(chip, c, no_sp, topo, seq=4096, dtype="fp8", run=RunOptions())
    )
    # async TP: the regather pipelines with the recomputed share of the *_in GEMMs
    gemms = tp_gemms(LayerShape(chip, c, 8, 1, 4096, 1, "bf16"))
    ag = collective_time("all_gather", 2 * elems, 8, topo)
    rs = collective_time("reduce_scatter", 2 * elems, 8, topo)
    plain = tp_overlapped(gemms, ag, rs, 8, recompute=False, parallel_block=False)
    shares = {"attn_in": 1024 / 6144, "ffn_in": 0.5}  # wk of wq/wk/wv; w3 of w1/w3
    more = tp_overlapped(gemms, ag, rs, 8, recompute=False, parallel_block=False,
                         regathered=shares)  # fmt: skip
    extra = sum(max(0.0, g * s / 8 + ag - g * s) for g, s in
                ((gemms["attn_in"][0], shares["attn_in"]), (gemms["ffn_in"][0], 0.5)))  # fmt: skip
    assert extra > 0 and more == pytest.approx(plain + extra)
