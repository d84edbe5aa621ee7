"""Hybrid sharding (`Plan.dp_shard`: FSDP/ZeRO inside a shard group, data parallelism across
its replicas): memory sharded over the group only, the weights' all-gathers inside it, the
gradients' all-reduce across replica groups over the tier that joins them (checked against the
ring formulas of REFERENCES.md), the flag, the search."""

from __future__ import annotations

from dataclasses import replace

import pytest
from typer.testing import CliRunner

from chipforge.cli import app
from chipforge.cluster import plan_training
from chipforge.cluster.collectives import BANDWIDTH_EFFICIENCY, collective_time
from chipforge.cluster.search import shard_choices
from chipforge.cluster.topology import Topology, topology_for
from chipforge.cluster.training import Plan, hybrid_collective, plan_memory, stage_cost
from chipforge.errors import Infeasible, SpecError
from chipforge.spec import load_chip
from chipforge.workload.config import ModelConfig

TINY = ModelConfig(name="tiny", layers=4, hidden=1024, heads=8, ffn=4096, vocab=32000, seq=2048)


def _slices(link: float = 1e15) -> Topology:
    """Four 16-chip TPU-style slices (tori) joined by a 6.25 GB/s-per-chip DCN, no latency:
    ICI `link` B/s (huge: only the DCN's bytes take time)."""
    return Topology(name="4 slices", chips=64, kind="torus", domain=16, dims=(4, 4),
                    link_bandwidth=link, up_latency=0.0, nic_bandwidth=6.25e9,
                    out_latency=0.0)  # fmt: skip


def test_memory_shards_over_the_shard_group_only():
    hsdp = plan_memory(TINY, Plan(dp=32, zero=3, dp_shard=8), seq=2048, dtype="bf16")
    fsdp8 = plan_memory(TINY, Plan(dp=8, zero=3), seq=2048, dtype="bf16")
    fsdp32 = plan_memory(TINY, Plan(dp=32, zero=3), seq=2048, dtype="bf16")
    for k in ("weights_bytes", "gradients_bytes", "optimizer_bytes"):
        assert hsdp[k] == pytest.approx(fsdp8[k])
        assert hsdp[k] == pytest.approx(4 * fsdp32[k])
    assert plan_memory(TINY, Plan(dp=32, zero=3, dp_shard=32), seq=2048, dtype="bf16") == fsdp32


def test_gradient_all_reduce_crosses_the_dcn_on_one_shard():
    """REFERENCES.md: ring all-reduce of S bytes over n chips moves 2(n-1)/n S per chip. With
    the ICI free, the hybrid reduction of G gradient bytes over shard groups of 16 (one slice)
    and 4 replicas costs 2 * 3/4 * G/16 over each chip's DCN link; the weights' all-gather
    stays inside the slice (no DCN time); plain ZeRO over all 64 ranks sends the gathered
    weights across the DCN every time."""
    topo, g = _slices(), 1e9
    nic = topo.nic_bandwidth * BANDWIDTH_EFFICIENCY
    rs = hybrid_collective("reduce_scatter", g, 16, 4, topo)
    assert rs == pytest.approx(2 * 3 / 4 * g / 16 / nic, rel=1e-4)
    assert hybrid_collective("all_reduce", g, 16, 4, topo) == pytest.approx(rs, rel=1e-4)
    assert hybrid_collective("all_gather", g, 16, 4, topo) < 1e-4 * rs
    flat = collective_time("all_gather", g, 64, topo)
    assert flat == pytest.approx(3 / 4 * g / 16 / nic, rel=1e-4)  # each of the 2m per step
    # one replica: the plain collective, unchanged
    assert hybrid_collective("all_reduce", g, 64, 1, topo) == collective_time("all_reduce", g,
                                                                              64, topo)  # fmt: skip


def test_plan_prices_zero3_gathers_inside_the_slice():
    chip = load_chip("tpu-v5p")
    topo = replace(_slices(), link_bandwidth=100e9, up_latency=1e-6, out_latency=10e-6)
    full = stage_cost(chip, TINY, Plan(dp=64, zero=3, recompute="full"), topo, seq=2048,
                      dtype="bf16")  # fmt: skip
    hsdp = stage_cost(chip, TINY, Plan(dp=64, zero=3, recompute="full", dp_shard=16), topo,
                      seq=2048, dtype="bf16")  # fmt: skip
    weights = hsdp.memory["weights_bytes"] * 16  # the whole stage's bf16 weights
    assert hsdp.dp_gather == pytest.approx(collective_time("all_gather", weights, 16, topo))
    assert hsdp.dp_gather < full.dp_gather  # the DCN left out of every gather
    assert hsdp.t_opt == pytest.approx(4 * full.t_opt)  # each replica steps its shard of 1/16


def test_flag_rules():
    with pytest.raises(Infeasible, match="--dp-shard must divide"):
        plan_training("tpu-v5p", TINY, 64, tp=1, pp=1, dp=64, cp=1, zero=3, dp_shard=24,
                      global_batch=64, topology=_slices())  # fmt: skip
    with pytest.raises(Infeasible, match="--zero 1-3"):
        plan_training("tpu-v5p", TINY, 64, tp=1, pp=1, dp=64, cp=1, zero=0, dp_shard=16,
                      global_batch=64, topology=_slices())  # fmt: skip


def test_a_shard_group_dividing_no_data_parallel_degree_says_so():
    """Said by the rule, not as "does not fit on 64 x h100 in any plan ... need at least 2
    chips" (the search's memory error, which it was)."""
    for kw in ({}, {"dp": 16}):
        with pytest.raises(Infeasible) as err:
            plan_training("h100", TINY, 64, dp_shard=3, global_batch=64, **kw)
        assert str(err.value).startswith("--dp-shard must divide")
        assert "fit" not in str(err.value)


def test_search_tries_one_slice_per_shard_group():
    topo = replace(_slices(), link_bandwidth=100e9, up_latency=1e-6, out_latency=10e-6)
    assert shard_choices(None, 64, 1, topo, 1, [1, 2, 3]) == [0, 16]
    assert shard_choices(None, 16, 1, topo, 1, [1, 2, 3]) == [0]  # one slice: no choice
    assert shard_choices(None, 64, 4, topo, 1, [1, 2, 3]) == [0, 4]  # tp 4 x 4 per slice
    assert shard_choices(None, 64, 1, topo, 8, [1, 2, 3]) == [0, 16]  # EP 8 inside a slice
    assert shard_choices(None, 64, 1, topo, 32, [1, 2, 3]) == [0]  # EP 32 spans slices
    assert shard_choices(64, 64, 1, topo, 1, [3]) == [0]
    res = plan_training("tpu-v5p", TINY, 64, tp=1, pp=1, dp=64, cp=1, zero=3,
                        recompute="full", micro_batch=1, global_batch=64, topology=topo,
                        sequence_parallel=True, alternatives=1)  # fmt: skip
    shards = {res.plan.shard_ranks} | {a["plan"]["dp_shard"] for a in res.alternatives}
    assert shards == {16, 64}


def test_cli_flag_reaches_the_plan():
    out = CliRunner().invoke(
        app,
        ["train", "--chip", "h100", "--model", "llama3-8b", "--chips", "16", "--tp", "1",
         "--pp", "1", "--dp", "16", "--cp", "1", "--zero", "3", "--dp-shard", "8",
         "--recompute", "full", "--micro-batch", "1", "--global-batch", "16", "--json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert '"dp_shard": 8' in out.output
    assert topology_for(load_chip("h100"), 16).domain == 8


def test_pod_makes_a_multi_slice_job():
    v5p = load_chip("tpu-v5p")
    two = topology_for(v5p, 128, pod=64)
    assert (two.domain, two.dims, two.nic_bandwidth) == (64, (4, 4, 4), 6.25e9)
    assert two.name == "tpu-v5p-pod, 2 slices of 64"
    assert topology_for(v5p, 128).domain == 128  # one slice of every chip, as before
    assert topology_for(load_chip("tpu-v5e"), 512, pod=256).nic_bandwidth == 3.125e9
    for bad, match in ((48, "must divide"), (0, "whole number"), (9000, "whole number")):
        with pytest.raises(SpecError, match=match):
            topology_for(v5p, 128, pod=bad)
    with pytest.raises(SpecError, match="torus"):
        topology_for(load_chip("h100"), 16, pod=8)
    # the search offers one slice per shard group once the job spans two slices
    res = plan_training("tpu-v5p", TINY, 128, tp=1, pp=1, dp=128, cp=1, zero=3,
                        recompute="full", micro_batch=1, global_batch=128, pod=64,
                        sequence_parallel=True, alternatives=1)  # fmt: skip
    shards = {res.plan.shard_ranks} | {a["plan"]["dp_shard"] for a in res.alternatives}
    assert shards == {64, 128}
    out = CliRunner().invoke(
        app,
        ["train", "--chip", "tpu-v5p", "--model", "llama3-8b", "--chips", "128", "--pod", "64",
         "--tp", "1", "--pp", "1", "--dp", "128", "--cp", "1", "--zero", "3", "--dp-shard",
         "64", "--recompute", "full", "--micro-batch", "1", "--global-batch", "128", "--json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert '"dp_shard": 64' in out.output


def test_check_set_multi_slice_rows_follow_their_rule():
    """check_heldout.csv HYBRID SHARDING: a C2 row on N >= 2 slices (its id) states one slice
    as its pod and dp / N as its shard group; a one-slice row states neither."""
    import re

    from chipforge.cluster import check_validate as cv

    multi = 0
    for row in cv.rows():
        if "maxtext" not in row["source"]:
            continue
        n = int(re.search(r"-(\d+)xv5[pe]-\d+$", row["id"]).group(1))
        if n == 1:
            assert not row["pod"] and not row["dp_shard"], row["id"]
            continue
        multi += 1
        assert int(row["pod"]) * n == int(row["chips"]), row["id"]
        assert int(row["dp_shard"]) * n == int(row["dp"]), row["id"]
        assert int(row["dp_shard"]) * int(row["tp"]) == int(row["pod"]), row["id"]
        assert not row["not_expressible"], row["id"]
    assert multi == 28


def test_zero3_reduce_scatters_the_gradients():
    """ZeRO-3 / FSDP reduce-scatter the gradients, never all-reduce them (Rajbhandari et al.
    2020, Sec. 7.2.2: 2 all-gathers + 1 reduce-scatter = 1.5x data parallelism's volume); a
    ring reduce-scatter moves half an all-reduce's bytes (REFERENCES.md)."""
    chip = load_chip("tpu-v5p")
    topo = replace(_slices(), link_bandwidth=100e9, up_latency=0.0, out_latency=0.0)
    z3 = stage_cost(chip, TINY, Plan(dp=16, zero=3, recompute="full"), topo, seq=2048,
                    dtype="bf16")  # fmt: skip
    grads = z3.memory["gradients_bytes"] * 16  # the whole stage's gradients
    rs = collective_time("reduce_scatter", grads, 16, topo)
    assert z3.dp_reduce == pytest.approx(rs)
    assert z3.dp_reduce == pytest.approx(collective_time("all_reduce", grads, 16, topo) / 2)


def test_check2_tpu_rows_follow_their_hybrid_sharding_rule():
    """check2_heldout.csv HYBRID SHARDING: a T1 TPU v5p row whose script sets both
    ici_data_parallelism and ici_fsdp_parallelism above 1 states the fsdp axis as its shard
    group (ZeRO-3, one batch per step, one slice); the plain-FSDP row states no shard group."""
    import re

    from chipforge.cluster import check_validate as cv

    hybrid = []
    for row in cv.rows2():
        if row["kind"] != "training":
            continue
        if "maxtext" not in row["conditions"]:
            assert not row["pod"] and not row["dp_shard"], row["id"]
            continue
        data, fsdp, tp = map(int, re.search(
            r"ici_data_parallelism (\d+), ici_fsdp_parallelism (\d+), ici_tensor_parallelism "
            r"(\d+)", row["conditions"]).groups())  # fmt: skip
        assert (data * fsdp, tp, data * fsdp * tp) == (
            int(row["dp"]), int(row["tp"]), int(row["chips"])), row["id"]  # fmt: skip
        assert not row["pod"] and not row["not_expressible"], row["id"]  # one slice each
        assert int(row["zero"]) == 3, row["id"]
        assert int(row["micro_batch"]) * data * fsdp == int(row["global_batch"]), row["id"]
        if data > 1 and fsdp > 1:
            hybrid.append(row["id"])
            assert int(row["dp_shard"]) == fsdp, row["id"]
        else:
            assert not row["dp_shard"], row["id"]
    assert len(hybrid) == 3


MOE = ModelConfig(name="tiny-moe", layers=4, hidden=1024, heads=8, ffn=4096, vocab=32000,
                  seq=2048, experts=16, top_k=2, moe_ffn=1024)  # fmt: skip


def test_expert_parallelism_inside_each_shard_group():
    """torchtitan's HSDP with EP (ParallelDims._build_mesh_with_ep: the experts' ranks inside
    dp_shard x cp; apply_fsdp shards the experts over ("dp_replicate", "dp_shard_mod_ep")): a
    replica holds what plain FSDP with the same EP over its shard group holds; with the ICI
    free, the gradients' reduction sends over the DCN only the replicas' ring all-reduce
    (REFERENCES.md: 2(n-1)/n S per chip) of each rank's shard, the dense gradients' 1/16 and
    the experts' 1/(16/8); an EP group that does not fit in a shard group is refused."""
    from chipforge.cluster.memory import GRAD_BYTES, expert_share, stage_params

    hsdp = Plan(dp=64, ep=8, zero=3, dp_shard=16, recompute="full")
    assert plan_memory(MOE, hsdp, seq=2048, dtype="bf16") == plan_memory(
        MOE, Plan(dp=16, ep=8, zero=3, recompute="full"), seq=2048, dtype="bf16")  # fmt: skip
    topo = _slices()
    cost = stage_cost(load_chip("tpu-v5p"), MOE, hsdp, topo, seq=2048, dtype="bf16")
    grads = stage_params(MOE, 1, 1, 8) * GRAD_BYTES  # this rank's (its EP share of experts)
    x = expert_share(MOE, hsdp)
    nic = topo.nic_bandwidth * BANDWIDTH_EFFICIENCY
    want = 2 * 3 / 4 * (grads * (1 - x) / 16 + grads * x / 2) / nic
    assert 0 < x < 1 and cost.dp_reduce == pytest.approx(want, rel=1e-3)
    with pytest.raises(Infeasible, match="--ep 16 must divide --dp-shard x --cp"):
        plan_training("tpu-v5p", MOE, 64, tp=1, pp=1, dp=64, cp=1, ep=16, zero=3, dp_shard=8,
                      global_batch=64, topology=topo)  # fmt: skip
