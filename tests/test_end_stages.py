"""Stated end stages (`--first-stage-layers` / `--last-stage-layers`): Megatron-Core's
--decoder-first/last-pipeline-num-layers split, the middle stages sharing the rest evenly
(transformer_block.get_num_layers_to_build), priced at the busiest stage."""

from dataclasses import replace
from itertools import product

import pytest

from chipforge.cli import main
from chipforge.cluster import plan_training, topology_for, train_options
from chipforge.cluster.checks import end_stage_split
from chipforge.cluster.layer import layer_costs
from chipforge.cluster.memory import WEIGHT_BYTES, block_params, loss_bytes
from chipforge.cluster.training import (
    Plan,
    RunOptions,
    embedding_time,
    head_blocks,
    host_bytes,
    layer_shape,
    plan_memory,
    stage_cost,
    stage_layer_count,
)
from chipforge.errors import ChipforgeError, Infeasible
from chipforge.spec import load_chip
from chipforge.workload.resolve import resolve_model

FIXED = dict(tp=1, dp=1, cp=1, ep=1, zero=1, recompute="full", micro_batch=1, interleave=1,
             global_batch=8, seq=1024)  # fmt: skip


def test_split_as_megatron_computes_it():
    """get_num_layers_to_build: the end ranks take what is stated, each middle rank
    (layers - stated) / (pp - stated stages), which must divide; each rank's count a multiple
    of the virtual stages."""
    assert end_stage_split(126, 16, 7, 7) == (7,) + (8,) * 14 + (7,)  # Llama 3 405B's split
    assert end_stage_split(61, 16, 3, 2) == (3,) + (4,) * 14 + (2,)  # DeepSeek-V3's 61 layers
    assert end_stage_split(16, 4, 5, 3) == (5, 4, 4, 3)
    assert end_stage_split(30, 4, 6, None) == (6, 8, 8, 8)  # only the first stated
    assert end_stage_split(30, 4, None, 3) == (9, 9, 9, 3)
    assert end_stage_split(16, 2, 9, 7) == (9, 7)  # no middle stage: they must add up
    assert end_stage_split(16, 2, 9, 8) is None
    assert end_stage_split(16, 4, 4, 3) is None  # 9 layers over 2 middle stages
    assert end_stage_split(16, 4, 6, 2, interleave=2) == (6, 4, 4, 2)
    assert end_stage_split(16, 4, 5, 3, interleave=2) is None  # 5 is not a multiple of 2
    assert end_stage_split(16, 1, 16, None) is None  # one stage has no end stages
    assert end_stage_split(16, 4, None, None) is None  # none stated: the automatic split


def _model(layers: int, mtp: int = 0):
    return replace(resolve_model("llm:llama3-8b,layers=2"), layers=layers, mtp_layers=mtp)


def test_sixteen_layers_and_an_mtp_module_fit_four_stages():
    c = _model(16, mtp=1)
    with pytest.raises(Infeasible, match="--pp 4"):
        plan_training("h100", c, 4, pp=4, **FIXED)
    got = plan_training("h100", c, 4, pp=4, first_stage_layers=5, last_stage_layers=3, **FIXED)
    assert got.plan.first_stage_layers == 5 and got.plan.last_stage_layers == 3
    assert stage_layer_count(c, got.plan) == 5  # the first; the last holds 3 + the MTP block
    four = plan_training("h100", c, 4, pp=4, first_stage_layers=4, last_stage_layers=4, **FIXED)
    assert stage_layer_count(c, four.plan) == 5  # now the last: 4 + the MTP block
    # a split that does not share evenly is refused naming the flags
    with pytest.raises(Infeasible, match="--first-stage-layers 4 --last-stage-layers 3"):
        plan_training("h100", c, 4, pp=4, first_stage_layers=4, last_stage_layers=3, **FIXED)


def test_stated_split_equal_to_the_automatic_one_prices_the_same():
    """An even split, and the Llama-3 one (the end stages a layer short), stated or not: the
    same step time and memory."""
    for layers, ends in ((16, (4, 4)), (30, (7, 7))):
        c = _model(layers)
        auto = plan_training("h100", c, 4, pp=4, **FIXED)
        said = plan_training("h100", c, 4, pp=4, first_stage_layers=ends[0],
                             last_stage_layers=ends[1], **FIXED)  # fmt: skip
        assert said.step_time_s == auto.step_time_s
        assert said.memory == auto.memory


def test_busiest_stage_sets_time_and_memory():
    c = _model(16)
    even = plan_training("h100", c, 4, pp=4, **FIXED)
    heavy = plan_training("h100", c, 4, pp=4, first_stage_layers=10, last_stage_layers=2,
                          **FIXED)  # fmt: skip
    assert stage_layer_count(c, heavy.plan) == 10
    # 10 layers a stage against 4 (+ the head, on the last rank): the step runs at the busiest
    # rank, its bubble the other ranks' 6 layers and the head
    assert heavy.step_time_s > 1.5 * even.step_time_s
    p = Plan(pp=4, recompute="none", first_stage_layers=10, last_stage_layers=2)
    held = plan_memory(c, p, seq=1024, dtype="bf16")
    flat = plan_memory(c, replace(p, first_stage_layers=None, last_stage_layers=None),
                       seq=1024, dtype="bf16")  # fmt: skip
    # the first rank: 10 layers' weights and 4 micro-batches of 10 layers' activations
    assert held["weights_bytes"] > flat["weights_bytes"]
    assert held["activations_bytes"] == pytest.approx(flat["activations_bytes"] * 10 / 4)


def test_the_output_layer_and_loss_run_on_the_last_stage_only():
    """Megatron-Core builds the output layer and the loss on the last stage (gpt_model.py
    post_process), the embedding on the first (pre_process): the last rank's time carries the
    head, the others' do not. So the 1F1B bubble, the other ranks' times, is the same for any
    vocabulary whose head outweighs the embedding's lookup (the slowest rank the last), and a
    layer moved off the last stage onto the first (5/4/4/3) shortens the step where the head
    outweighs a layer (Llama 3 8B's 128K-token head: ~2.4 layers)."""
    c = _model(16)
    big = plan_training("h100", c, 4, pp=4, **FIXED)
    small = plan_training("h100", replace(c, vocab=16384), 4, pp=4, **FIXED)
    assert big.step_time_s > small.step_time_s
    assert big.times["bubble_s"] == pytest.approx(small.times["bubble_s"], rel=1e-12)
    moved = plan_training("h100", c, 4, pp=4, first_stage_layers=5, last_stage_layers=3, **FIXED)
    assert moved.step_time_s < big.step_time_s


def test_the_embedding_lookup_runs_on_the_first_rank():
    """Megatron-Core's VocabParallelEmbedding gathers the micro-batch's tok x hidden rows
    (forward) and scatter-adds their gradient into the table's gradient (backward) on the first
    stage, memory-bound: with a head of next to nothing (a vocabulary of 2), the first of two
    equal ranks is the slower by that lookup, its bytes (rows read and written; the gradient
    read, the gradient's rows read and written: 5 x tok x hidden x 2 bytes) at the memory rate
    (was: not priced, the two ranks equal)."""
    chip = load_chip("h100")
    c = replace(_model(16), vocab=2)
    p = Plan(pp=2, recompute="none", micro_batch=4)
    sc = stage_cost(chip, c, p, topology_for(chip, 2), seq=1024, dtype="bf16")
    moved = 5 * 4 * 1024 * c.hidden * 2 / chip.hbm.bandwidth
    assert moved <= sc.stage - sc.bubble <= 1.5 * moved  # 1F1B, pp 2: the bubble, the other rank


def test_the_last_rank_holds_the_mtp_module_in_memory_too():
    """4/4/4/4 layers + 1 MTP module: the last rank holds 5 blocks (as its step time counts),
    so its weights are those of the 5/4/4/3 split's first rank, not of 4 layers."""
    c = _model(16, mtp=1)
    p = Plan(pp=4, recompute="none", first_stage_layers=4, last_stage_layers=4)
    four = plan_memory(c, p, seq=1024, dtype="bf16")
    five = plan_memory(c, replace(p, first_stage_layers=5, last_stage_layers=3), seq=1024,
                       dtype="bf16")  # fmt: skip
    no_mtp = plan_memory(_model(16), p, seq=1024, dtype="bf16")
    assert stage_layer_count(c, p) == 5
    assert four["weights_bytes"] == five["weights_bytes"] > no_mtp["weights_bytes"]
    assert four["optimizer_bytes"] == five["optimizer_bytes"]


def test_the_automatic_split_holds_the_mtp_module_as_a_stated_one():
    """The automatic split counts the MTP modules as blocks of the last stage in memory as in
    the step time: DeepSeek-V3's 61 layers + 1 MTP module on 16 stages split 3/4 x 14/2 + MTP
    (the end stages a block short), the memory of that split stated; on one stage the MTP
    module's weights are held beside the 4 layers'."""
    c = _model(61, mtp=1)
    auto = Plan(pp=16, recompute="none")
    said = replace(auto, first_stage_layers=3, last_stage_layers=2)
    assert plan_memory(c, auto, seq=1024, dtype="bf16") == plan_memory(
        c, said, seq=1024, dtype="bf16"
    )
    one = plan_memory(_model(4, mtp=1), Plan(recompute="none"), seq=1024, dtype="bf16")
    none = plan_memory(_model(4), Plan(recompute="none"), seq=1024, dtype="bf16")
    layer = block_params(_model(4), 1, 1) / 4
    assert one["weights_bytes"] - none["weights_bytes"] == pytest.approx(layer * WEIGHT_BYTES)


def test_offloaded_layers_are_a_share_of_the_counted_ranks_layers():
    """3/3/3/7 layers: the activations counted are the first rank's (3 layers, 4 micro-batches
    in flight, more than the last's 7 layers x 1), so offloading one layer moves a third of
    them to host memory, not a seventh (the busiest rank's share); the first then keeps 2 x 4,
    less than the last's 6 x 1 and its logits, which are counted."""
    c = _model(16)
    p = Plan(pp=4, recompute="none", first_stage_layers=3, last_stage_layers=7)
    full = plan_memory(c, p, seq=1024, dtype="bf16")
    one = replace(p, offload_layers=1)
    held = plan_memory(c, one, seq=1024, dtype="bf16")
    assert host_bytes(c, one, full, 1024) == pytest.approx(full["activations_bytes"] / 3)
    unit = full["activations_bytes"] / (3 * 4)
    assert held["activations_bytes"] == pytest.approx(6 * unit) and held["loss_bytes"] > 2 * unit


def test_after_offload_the_rank_with_most_left_is_counted():
    """3/3/3/7 layers, every rank offloading 2 (Megatron's --cpu-offloading-num-layers is per
    rank): the first keeps 1 layer x 4 micro-batches, the last 5 layers x 1 and the loss's
    logits, so the last is now the busiest chip (was: the first's 4 layer-micro-batches
    charged, the last's 5 and its logits not)."""
    c = _model(16)
    p = Plan(pp=4, recompute="none", first_stage_layers=3, last_stage_layers=7)
    full = plan_memory(c, p, seq=1024, dtype="bf16")
    unit = full["activations_bytes"] / (3 * 4)  # one layer, one micro-batch (the first's)
    two = plan_memory(c, replace(p, offload_layers=2), seq=1024, dtype="bf16")
    assert full["loss_bytes"] == 0 and two["loss_bytes"] == loss_bytes(c, mb=1, seq=1024, tp=1)
    assert two["activations_bytes"] == pytest.approx(5 * unit)


def test_the_offload_copy_is_one_micro_batchs_layers_on_the_counted_rank():
    """Each micro-batch's offloaded layers cross the host link once each way, whatever number
    of micro-batches the counted rank holds in flight: with 2 micro-batches per step the first
    rank holds 2, not pp = 4, so the copy per micro-batch (its share of the offloaded bytes)
    is the same as with 8 (was: the bytes of 2 in flight divided by 4, half the copy). A host
    link of 4 GB/s, so the copy outlasts the layers' compute."""
    chip, c = load_chip("h100"), _model(16)
    topo = replace(topology_for(chip, 4), host_bandwidth=4e9, host_memory=2**40)
    p = Plan(pp=4, recompute="none")
    exposed = []
    for m in (2, 8):
        kw = dict(seq=1024, dtype="bf16", microbatches=m)
        none = stage_cost(chip, c, p, topo, **kw).stage
        exposed.append(stage_cost(chip, c, replace(p, offload_layers=1), topo, **kw).stage - none)
    assert exposed[0] > 0 and exposed[0] == pytest.approx(exposed[1], rel=1e-12)


def test_flags_keys_and_errors(capsys):
    kw = train_options.parse({"first_stage_layers": 5, "last_stage_layers": 3}, "t")
    assert kw == {"first_stage_layers": 5, "last_stage_layers": 3}
    with pytest.raises(ChipforgeError, match="first_stage_layers"):
        train_options.parse({"first_stage_layers": 0}, "t")
    with pytest.raises(SystemExit) as e:
        main(["train", "--chip", "h100", "--model", "llm:llama3-8b,layers=16", "--chips", "4",
              "--pp", "4", "--first-stage-layers", "4", "--last-stage-layers", "3"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1, err
    assert "--first-stage-layers 4 --last-stage-layers 3" in err


def test_search_tries_a_megatron_split_where_the_layers_do_not_divide():
    """With --pp searched, 16 layers + 1 MTP on 4 stages (no even or Llama-3 split) gets the
    end stages whose busiest rank is least, the output layer and loss on the last weighed in
    (its FLOPs in layers, head_blocks: 4.6 here), so 5/5/5/1+MTP+head; a given --pp 4 alone
    is refused, the message naming the flags that state the split."""
    c = _model(16, mtp=1)
    got = plan_training("h100", c, 4, **FIXED)  # tp = dp = cp = 1 on 4 chips: pp 4
    assert (got.plan.pp, got.plan.first_stage_layers, got.plan.last_stage_layers) == (4, 5, 1)
    assert stage_layer_count(c, got.plan) == 5
    with pytest.raises(Infeasible, match="or state --first-stage-layers / --last-stage-layers"):
        plan_training("h100", c, 4, pp=4, **FIXED)
    # where the automatic split holds, the search states none
    even = plan_training("h100", _model(16), 4, **FIXED)
    assert (
        even.plan.first_stage_layers is None and "first_stage_layers" not in even.to_dict()["plan"]
    )


def test_the_head_the_search_weighs_is_the_head_priced():
    """The search weighs the last rank's split with head_blocks (the output layer and loss, the
    MTP module's application of the head included, in layer times); stage_cost prices that head
    on the last rank: the two are one quantity. One rank (pp 1) runs the 17 blocks, the
    embedding's lookup and the head, so the head is its forward less those, x 3 (forward 1/3)."""
    chip, c = load_chip("h100"), _model(16, mtp=1)
    p = Plan(recompute="none", micro_batch=1, zero=3, dp=8)
    sc = stage_cost(chip, c, p, topology_for(chip, 8), seq=1024, dtype="bf16")
    fwd, bwd, _, _ = layer_costs(layer_shape(chip, c, p, 1024, "bf16", RunOptions()))
    lookup = embedding_time(chip, c, 1024, "bf16")[0]
    head = 3 * (sc.t_f - stage_layer_count(c, p) * fwd - lookup)
    assert head > 0
    assert head == pytest.approx(head_blocks(c, 1024) * (fwd + bwd), rel=1e-9)


def test_the_searched_split_weighs_the_head_on_the_last_rank():
    """Megatron-LM's --decoder-last-pipeline-num-layers balances the output layer on the last
    stage (Llama 3 405B: its last stage a layer short): the split the search states is the
    fastest of every split Megatron takes, each priced rank by rank (the layer count alone
    chose 3/5/5/3+MTP, 22 % slower here: its last rank 3 layers, the MTP module and the head)."""
    c = _model(16, mtp=1)
    got = plan_training("h100", c, 4, **FIXED)
    steps = {}
    for first, last in product(range(1, 16), repeat=2):
        if end_stage_split(16, 4, first, last):
            said = plan_training("h100", c, 4, pp=4, first_stage_layers=first,
                                 last_stage_layers=last, **FIXED)  # fmt: skip
            steps[first, last] = said.step_time_s
    assert got.step_time_s == min(steps.values())
    assert steps[3, 3] > 1.2 * got.step_time_s


def test_api_and_decide_take_the_end_stages():
    import tomllib
    from pathlib import Path

    from chipforge import api
    from chipforge.decide.inputs import scenario_from_dict

    got = api.plan_training("h100", "llm:llama3-8b,layers=16", 4, pp=4, first_stage_layers=6,
                            last_stage_layers=2, **FIXED)  # fmt: skip
    assert got.to_dict()["plan"]["first_stage_layers"] == 6
    example = Path(__file__).parent.parent / "examples" / "decide" / "forge_vs_rent.toml"
    d = tomllib.loads(example.read_text())
    d["workload"]["train"] = [{"model": "llama3-8b", "tokens": "1T", "pp": 4,
                               "first_stage_layers": 6, "last_stage_layers": 2}]  # fmt: skip
    kw = scenario_from_dict(d).train[0].options()
    assert kw["first_stage_layers"] == 6 and kw["last_stage_layers"] == 2
