"""MoE training mechanisms of the frontier work: expert GEMMs under expert parallelism, MTP
modules as pipeline blocks, and the zero-bubble / DualPipe schedules."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from itertools import product

import pytest

from chipforge.cluster import checks, plan_training
from chipforge.cluster.checks import pipeline_blocks
from chipforge.errors import Infeasible
from chipforge.workload.config import load_model
from chipforge.workload.llm import build

DSV3 = dict(tp=1, pp=16, dp=128, cp=1, ep=64, zero=1, recompute="selective", micro_batch=1,
            seq=4096, global_batch=15360, dtype="fp8", interleave=1)  # fmt: skip


@pytest.fixture(scope="module")
def dsv3():
    return {s: plan_training("h800", "deepseek-v3", 2048, schedule=s, **DSV3)
            for s in ("1f1b", "zb", "dualpipe")}  # fmt: skip


def _experts(ep: int):
    g = build(load_model("mixtral-8x7b"), phase="train", batch=1, seq=4096, scope="layer", ep=ep)
    return [o for o in g.ops if "experts" in o.name and o.kind == "matmul" and "grad" not in o.name]


def test_expert_parallelism_keeps_flops_and_divides_expert_weights():
    one, four = _experts(1), _experts(4)
    flops = lambda ops: sum(o.flops * o.count for o in ops)  # noqa: E731
    weights = lambda ops: sum(o.batch * o.k * o.n * o.count for o in ops if o.weight)  # noqa: E731
    assert flops(four) == pytest.approx(flops(one), rel=0.01)
    assert weights(four) == pytest.approx(weights(one) / 4, rel=0.01)


def test_mtp_module_is_a_pipeline_block():
    c = load_model("deepseek-v3")  # 61 layers + 1 MTP + embedding + loss = 64 slots
    assert pipeline_blocks(c) == 62
    for pp in (2, 4, 8, 16):
        checks.pp_layers(c, pp, 2048, uneven=True, error=Infeasible)
    with pytest.raises(Infeasible, match="61 layers \\+ 1 MTP"):
        checks.pp_layers(c, 128, 2048, uneven=True, error=Infeasible)
    without = replace(c, mtp_layers=0)  # 61 layers alone do not split over 16 stages
    with pytest.raises(Infeasible):
        checks.pp_layers(without, 16, 2048, uneven=True, error=Infeasible)


def test_dualpipe_hides_the_expert_all_to_all(dsv3):
    f1b, zb, dual = dsv3["1f1b"], dsv3["zb"], dsv3["dualpipe"]
    assert f1b.exposed_comm["ep_s"] > 0.1 * f1b.step_time_s  # fully exposed under 1F1B
    assert dual.step_time_s < f1b.step_time_s
    assert dual.exposed_comm["ep_s"] < 0.5 * f1b.exposed_comm["ep_s"]
    # DeepEP's all-to-all, as DeepSeek-V3 runs it (report Sec. 3.2.2), hides whole beside a
    # pair of chunks even on the middle ranks, which run no output layer
    flex = plan_training("h800", "deepseek-v3", 2048, schedule="dualpipe", moe_dispatcher="flex",
                         fp8_dispatch=True, **DSV3)  # fmt: skip
    assert flex.exposed_comm["ep_s"] == 0.0
    # bubbles: 1F1B (p-1) stages > ZB-H1 (p-1) forwards > DualPipe (p/2-1) forwards
    assert f1b.times["bubble_s"] > zb.times["bubble_s"] > dual.times["bubble_s"] > 0
    # DualPipe keeps two copies of the parameters (DeepSeek-V3 Table 2)
    assert dual.memory["weights_bytes"] == pytest.approx(2 * f1b.memory["weights_bytes"])


def test_deepseek_v3_gpu_hours_within_25_percent(dsv3):
    """2.664 M H800 GPU-hours for 14.8 T tokens (DeepSeek-V3 report Table 1), held out."""
    hours = 14.8e12 / dsv3["dualpipe"].tokens_per_s * 2048 / 3600
    assert math.isclose(hours, 2.664e6, rel_tol=0.25)


def test_schedule_shape_rules_and_cli():
    # the rule that fails is named, not both (pp 2 is even; 15 micro-batches are not)
    with pytest.raises(Infeasible, match=r"dualpipe needs an even number of micro-batches, at "
                       r"least --pp 2, not 15 \(global batch"):  # fmt: skip
        plan_training(
            "h800", "deepseek-v3", 2048, schedule="dualpipe", **{**DSV3, "pp": 2, "dp": 1024}
        )  # fmt: skip (15 micro-batches)
    with pytest.raises(Infeasible, match="dualpipe needs an even --pp, not 3"):
        plan_training("h100", "llama3-8b", 24, schedule="dualpipe", pp=3, tp=8, dp=1)
    res = subprocess.run(
        [sys.executable, "-m", "chipforge", "train", "--chip", "h100", "--model", "llama3-8b",
         "--chips", "8", "--schedule", "bogus"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2 and "--schedule must be one of" in res.stderr


def test_nvfp4_training_runs_only_the_linear_gemms_in_fp4():
    """NVFP4 (arXiv 2509.25149): attention stays 16-bit, so an FP4 step sits between the FP8
    step and half of it, and its attention core costs what the BF16 one does."""
    from chipforge.cluster.layer import LayerShape, layer_costs
    from chipforge.spec.loader import load_chip

    chip, c = load_chip("gb200"), load_model("llama3-8b")
    f4, f8, b16 = (
        layer_costs(LayerShape(chip, c, 1, 1, 8192, 1, d)) for d in ("fp4", "fp8", "bf16")
    )
    assert f4[2] == pytest.approx(b16[2])  # attention core: BF16 in every recipe
    assert f8[0] / 2 < f4[0] < f8[0]


def test_fp8_activations_let_mlperf_405b_run_without_recompute():
    """NVIDIA's MLPerf v5.0 405B configs on 512 H100 (TP8 PP8 VP8 CP2, FP8) enable no
    activation recompute: with the FP8-saved GEMM inputs the plan fits without it."""
    res = plan_training("h100", "llama3-405b", 512, tp=8, pp=8, dp=4, cp=2, ep=1, zero=1,
                        micro_batch=1, interleave=8, seq=8192, global_batch=1152,
                        dtype="fp8")  # fmt: skip
    assert res.plan.recompute == "none"


def test_tp_comm_overlap_hides_tp_collectives_under_gemms():
    kw = dict(tp=8, pp=8, dp=4, cp=2, ep=1, zero=1, micro_batch=1, interleave=8, seq=8192,
              global_batch=1152, dtype="fp8", recompute="none")  # fmt: skip
    plain = plan_training("h100", "llama3-405b", 512, **kw)
    over = plan_training("h100", "llama3-405b", 512, tp_overlap=True, **kw)
    tp = "tp_scale_up_s"
    assert plain.exposed_comm[tp] > over.exposed_comm[tp] >= 0
    # the step loses at least the hidden TP time (with the framework overhead on top of it);
    # the pipeline bubble, a multiple of the stage time, shrinks with it
    saved = (plain.exposed_comm[tp] - over.exposed_comm[tp]) / (1 - 0.15)
    assert over.step_time_s <= plain.step_time_s - saved * (1 - 1e-9)


def test_fp8_recipes_price_their_cast_passes():
    """Current scaling reads the tensor once more for its amax; MXFP8 and DeepSeek's block
    scaling quantize the row- and column-wise copies separately, with 1/32 and 1/128 B of scale."""
    from chipforge.cluster.layer import LayerShape, layer_costs
    from chipforge.spec.loader import load_chip

    chip, c = load_chip("h100"), load_model("llama3-8b")
    fwd = {r: layer_costs(LayerShape(chip, c, 1, 1, 4096, 1, "fp8", fp8_recipe=r))[0]
           for r in ("delayed", "current", "mxfp8", "block")}  # fmt: skip
    assert fwd["current"] > fwd["mxfp8"] > fwd["block"] > fwd["delayed"]
    assert fwd["current"] < 1.1 * fwd["delayed"]  # casts are a small part of a layer
    with pytest.raises(Exception, match="--fp8-recipe must be one of"):
        plan_training("h100", "llama3-8b", 8, dtype="fp8", fp8_recipe="e5m2")


# MLPerf v5.1 NVIDIA llama31_8b on 512 GB200 (config_GB200_128x4x1xtp2pp1cp4_8b.sh)
MLPERF_8B = dict(tp=2, pp=1, dp=64, cp=4, ep=1, zero=1, micro_batch=1, seq=8192, global_batch=64,
                 dtype="fp8", recompute="none")  # fmt: skip


def test_distributed_optimizer_shards_over_dp_and_cp_ranks():
    """Megatron-Core's distributed optimizer shards over the data- and context-parallel ranks
    together: CP 2 at the same DP halves the optimizer state (ZeRO 1) and its step time."""
    kw = dict(tp=8, pp=8, dp=4, ep=1, zero=1, micro_batch=1, interleave=8, seq=8192,
              global_batch=1152, dtype="fp8", recompute="full")  # fmt: skip
    one = plan_training("h100", "llama3-405b", 256, cp=1, **kw)
    two = plan_training("h100", "llama3-405b", 512, cp=2, **kw)
    assert two.memory["optimizer_bytes"] == pytest.approx(one.memory["optimizer_bytes"] / 2)
    assert two.memory["weights_bytes"] == pytest.approx(one.memory["weights_bytes"])


def test_param_gather_overlap_and_fp8_primary_weights():
    from chipforge.cluster.collectives import collective_time
    from chipforge.cluster.topology import topology_for
    from chipforge.spec.loader import load_chip

    plain = plan_training("gb200", "llama3-8b", 512, **MLPERF_8B)
    over = plan_training("gb200", "llama3-8b", 512, overlap_param_gather=True, **MLPERF_8B)
    fp8 = plan_training("gb200", "llama3-8b", 512, overlap_param_gather=True,
                        fp8_param_gather=True, **MLPERF_8B)  # fmt: skip
    assert plain.exposed_comm["dp_s"] > over.exposed_comm["dp_s"] >= fp8.exposed_comm["dp_s"]
    assert fp8.memory["weights_bytes"] == pytest.approx(plain.memory["weights_bytes"] / 2)
    # the reduce-scatter hides under the backward pass, the all-gather under the forward pass:
    # what is exposed is at most what each exceeds its pass by
    topo = topology_for(load_chip("gb200"), 512)
    grads = plain.memory["weights_bytes"]  # bf16: as many bytes as the gradients
    rs = collective_time("reduce_scatter", grads, 256, topo, stride=2)
    ag = collective_time("all_gather", grads / 2, 256, topo, stride=2)
    assert fp8.exposed_comm["dp_s"] <= rs + ag
    assert fp8.exposed_comm["dp_s"] < plain.exposed_comm["dp_s"] - min(rs, ag)
    with pytest.raises(Exception, match="--fp8-param-gather needs --dtype fp8"):
        plan_training("gb200", "llama3-8b", 8, dtype="bf16", fp8_param_gather=True)


def test_groups_fill_a_domain_with_a_divisor_of_the_group():
    """A job is placed in whole blocks of a domain that does not divide it (MLPerf NVIDIA GB200
    configs: SEGMENT=16 trays, 64 of an NVL72 rack's 72 GPUs): a 256-rank group on 36-slot
    domains runs as 8 domains of 32 ranks, as on a 64-GPU domain."""
    from chipforge.cluster.collectives import _split, collective_time
    from chipforge.cluster.topology import topology_for
    from chipforge.spec.loader import load_chip

    assert _split(256, 36) == (32, 8) and _split(8, 72) == (8, 1) and _split(96, 64) == (48, 2)
    for n, cap in product(range(2, 200), (1, 3, 7, 36, 72)):
        inner, outer = _split(n, cap)
        assert inner * outer == n and inner == max(
            d for d in range(1, min(n, cap) + 1) if n % d == 0
        )
    assert topology_for(load_chip("b200"), 128).domain == 8  # DGX B200, not an NVL72 rack
    topo = topology_for(load_chip("gb200"), 512)
    t72 = collective_time("all_reduce", 1e9, 256, topo, stride=2)
    t64 = collective_time("all_reduce", 1e9, 256, replace(topo, domain=64), stride=2)
    assert t72 == pytest.approx(t64)


def test_sustained_clock_slows_compute_only_where_a_preset_states_one():
    from chipforge.spec.loader import load_chip

    kw = dict(tp=8, pp=1, dp=1, cp=1, ep=1, zero=1, recompute="selective", micro_batch=1,
              seq=2048, global_batch=8)  # fmt: skip
    boost = plan_training("a100", "llama3-8b", 8, **kw)
    held = plan_training("a100", "llama3-8b", 8, sustained_clock=True, **kw)
    ratio = 1.41 / 1.305  # A100 boost / HPL sustained clock
    assert boost.step_time_s < held.step_time_s < boost.step_time_s * ratio
    assert held.mfu < boost.mfu  # against the same (boost) peak
    h100 = [plan_training("h100", "llama3-8b", 8, sustained_clock=s, **kw).step_time_s
            for s in (False, True)]  # fmt: skip
    assert h100[0] == h100[1]  # no sustained clock stated: the boost clock
    with pytest.raises(Exception, match="must not exceed clock"):
        load_chip("a100").model_validate({**load_chip("a100").model_dump(), "sustained_clock": 2e9})


def test_activation_offload_to_grace_replaces_full_recompute():
    """Megatron-Bridge's GB200 Llama-3-70B FSDP recipe offloads 40 layers' activations to the
    Grace CPU (cpu_offloading_num_layers=40) instead of recomputing: the search finds the
    fewest layers that fit, and the copies hide under the passes beside them."""
    from chipforge.cluster.topology import topology_for
    from chipforge.spec.loader import load_chip

    kw = dict(tp=1, pp=1, dp=64, cp=1, ep=1, zero=3, micro_batch=2, seq=8192,
              global_batch=256, dtype="fp8")  # fmt: skip
    plain = plan_training("gb200", "llama3-70b", 64, **kw)
    off = plan_training("gb200", "llama3-70b", 64, activation_offload=True, **kw)
    assert plain.plan.recompute == "full" and plain.plan.offload_layers == 0
    assert off.plan.recompute == "none" and 30 <= off.plan.offload_layers <= 45
    assert off.memory_per_chip_bytes <= off.memory_capacity_bytes
    assert off.step_time_s < plain.step_time_s
    # over a slow host link the copies are exposed; with no host link nothing is offloaded
    topo = topology_for(load_chip("gb200"), 64)
    slow = plan_training("gb200", "llama3-70b", 64, activation_offload=True, recompute="none",
                         topology=replace(topo, host_bandwidth=10e9), **kw)  # fmt: skip
    assert slow.step_time_s > off.step_time_s
    none = plan_training("gb200", "llama3-70b", 64, activation_offload=True,
                         topology=replace(topo, host_bandwidth=0.0), **kw)  # fmt: skip
    assert none.plan == plain.plan


def test_moe_token_dispatcher_passes():
    """Megatron's all-to-all dispatcher permutes, sorts by local expert, unsorts and
    unpermutes each token's top-k rows; the DeepEP / HybridEP (flex) one skips the sorts; a
    dense model has none of them."""
    from chipforge.cluster.layer import LayerShape, layer_costs
    from chipforge.spec.loader import load_chip

    chip, moe, dense = load_chip("h800"), load_model("deepseek-v3"), load_model("llama3-8b")
    a2a = layer_costs(LayerShape(chip, moe, 1, 1, 4096, 1, "bf16", ep=8, dispatcher="alltoall"))
    flex = layer_costs(LayerShape(chip, moe, 1, 1, 4096, 1, "bf16", ep=8, dispatcher="flex"))
    assert a2a[0] > flex[0] and a2a[1] > flex[1] and a2a[2] == flex[2]
    dense_ = [layer_costs(LayerShape(chip, dense, 1, 1, 4096, 1, "bf16", dispatcher=d))
              for d in ("alltoall", "flex")]  # fmt: skip
    assert dense_[0] == dense_[1]
    with pytest.raises(Exception, match="--moe-dispatcher must be one of"):
        plan_training("h800", "deepseek-v3", 64, moe_dispatcher="deepep")


def test_optimizer_offload_to_the_cpu():
    """Megatron-Core --optimizer-cpu-offload: the Adam states leave the HBM; each step copies
    the gradients out and the weights back and steps Adam on the host's memory bandwidth."""
    from chipforge.cluster.training import CPU_ADAM_BYTES

    kw = dict(tp=8, pp=1, dp=1, cp=1, ep=1, zero=0, micro_batch=4, seq=8192, global_batch=16,
              dtype="fp8", recompute="none")  # fmt: skip
    with pytest.raises(Infeasible, match="needs"):
        plan_training("gb200", "llama3-70b", 8, **kw)
    res = plan_training("gb200", "llama3-70b", 8, optimizer_offload=True, **kw)
    assert res.plan.optimizer_offload and res.memory["optimizer_bytes"] == 0
    assert res.memory_per_chip_bytes <= res.memory_capacity_bytes
    shard = load_model("llama3-70b").params() / 8  # parameters one TP rank steps (about)
    cpu = shard * CPU_ADAM_BYTES / 256e9  # Grace LPDDR5X, 256 GB/s per GPU
    assert 0.8 * cpu < res.times["optimizer_s"] < 1.25 * cpu
    with pytest.raises(Infeasible, match="needs 204 GiB"):  # no host link on dgx-h100
        plan_training("gb200", "llama3-70b", 8, optimizer_offload=True, topology="dgx-h100", **kw)


def test_deepep_dispatch_crosses_the_network_once_per_remote_node():
    """EP64 over 8 H800 nodes, top-8 routes: NCCL's all-to-all sends 7 of a token's 8 routes
    over InfiniBand; DeepEP sends the token once per remote node it reaches (7 x (1 - (7/8)^8)
    = 4.59 expected) and forwards it over NVLink. Inside one node the two are the same."""
    from chipforge.cluster.collectives import collective_time, expert_all_to_all
    from chipforge.cluster.topology import topology_for
    from chipforge.spec.loader import load_chip

    topo = topology_for(load_chip("h800"), 2048)
    route = 64e6
    nccl = collective_time("all_to_all", 8 * route, 64, topo)
    deepep = expert_all_to_all(route, 8, 64, topo)
    assert deepep / nccl == pytest.approx(7 * (1 - (7 / 8) ** 8) / 7, rel=0.05)
    assert expert_all_to_all(route, 8, 8, topo) == collective_time("all_to_all", 8 * route, 8, topo)
    kw = dict(DSV3, schedule="1f1b")
    f1b = plan_training("h800", "deepseek-v3", 2048, **kw)
    flex = plan_training("h800", "deepseek-v3", 2048, moe_dispatcher="flex", **kw)
    assert flex.exposed_comm["ep_s"] < 0.75 * f1b.exposed_comm["ep_s"]


def test_shared_expert_overlap_hides_part_of_the_all_to_all():
    kw = dict(DSV3, schedule="1f1b")
    plain = plan_training("h800", "deepseek-v3", 2048, **kw)
    over = plan_training("h800", "deepseek-v3", 2048, shared_expert_overlap=True, **kw)
    hidden = plain.exposed_comm["ep_s"] - over.exposed_comm["ep_s"]
    # DeepSeek-V3's one shared expert is 1/9 of a token's expert GEMMs: a few % of the step
    assert 0 < hidden < 0.1 * plain.exposed_comm["ep_s"]
    dense = dict(tp=1, pp=1, dp=8, cp=1, ep=1, zero=1, recompute="full", micro_batch=1, seq=2048)
    a, b = (plan_training("h100", "llama3-8b", 8, shared_expert_overlap=s, **dense)
            for s in (False, True))  # fmt: skip
    assert a.step_time_s == b.step_time_s


def test_last_gradient_bucket_and_first_weight_bucket_are_exposed():
    """Megatron-Core reduces a bucket once the backward pass has produced all its gradients:
    the last one's reduce-scatter, and the next forward pass's wait for the first bucket's
    all-gather, stay exposed however fast the rest hides (MLPerf llama31_8b: 768M parameters
    per bucket). Without param-gather overlap the FP8 weights' all-gather follows the step."""
    from chipforge.cluster.collectives import collective_time
    from chipforge.cluster.topology import topology_for
    from chipforge.cluster.training import BUCKET_PARAMS
    from chipforge.spec.loader import load_chip

    kw = dict(MLPERF_8B, overlap_param_gather=True, fp8_param_gather=True)
    runs = {b: plan_training("gb200", "llama3-8b", 512, bucket_size=b, **kw)
            for b in (None, 768_000_000, 10**12)}  # fmt: skip
    topo = topology_for(load_chip("gb200"), 512)
    weights = runs[None].memory["weights_bytes"]  # FP8: one byte per parameter on this chip
    grads = 2 * weights
    # the default bucket: max(40M, 1M x 256 ranks) = 256M parameters
    assert max(BUCKET_PARAMS, 10**6 * 256) == 256_000_000
    rs = collective_time("reduce_scatter", grads, 256, topo, stride=2)
    ag = collective_time("all_gather", weights, 256, topo, stride=2)
    for b, run in runs.items():
        f = min(1.0, (b or 256_000_000) / weights)
        tail_rs = collective_time("reduce_scatter", grads * f, 256, topo, stride=2)
        tail_ag = collective_time("all_gather", weights * f, 256, topo, stride=2)
        # the rest hides, slowing the computation beside it by the 16 of 148 SMs NCCL holds
        beside = (rs - tail_rs + ag - tail_ag) * 16 / 148
        assert run.exposed_comm["dp_s"] == pytest.approx(tail_rs + tail_ag + beside, rel=1e-6)
    one = runs[10**12]  # a single bucket: nothing overlaps
    assert runs[None].step_time_s < runs[768_000_000].step_time_s < one.step_time_s
    after = plan_training("gb200", "llama3-8b", 512, fp8_param_gather=True, bucket_size=10**12,
                          **MLPERF_8B)  # fmt: skip
    ag = collective_time("all_gather", weights, 256, topo, stride=2)
    assert after.exposed_comm["dp_s"] == pytest.approx(one.exposed_comm["dp_s"], rel=1e-6)
    assert after.exposed_comm["dp_s"] >= ag
    with pytest.raises(Exception, match="--bucket-size"):
        plan_training("gb200", "llama3-8b", 8, bucket_size=0)


def test_group_limited_routing_bounds_the_nodes_a_token_reaches():
    """DeepSeek-V3's node-limited routing: a token's experts lie in 4 of 8 groups, one group per
    node: it reaches 7 x 4/8 = 3.5 remote nodes of 7 (at most 4 nodes in all), not 4.59."""
    from itertools import combinations

    from chipforge.cluster.collectives import expert_all_to_all
    from chipforge.cluster.topology import topology_for
    from chipforge.errors import WorkloadError
    from chipforge.spec.loader import load_chip

    picks = list(combinations(range(8), 4))  # the chosen groups = nodes; this rank on node 0
    remote = sum(len(set(p) - {0}) for p in picks) / len(picks)
    assert remote == 3.5 and max(len(p) for p in picks) == 4
    topo = topology_for(load_chip("h800"), 2048)
    route = 64e6  # large: the network stage dominates
    free = expert_all_to_all(route, 8, 64, topo)
    limited = expert_all_to_all(route, 8, 64, topo, limit=(8, 4))
    assert limited / free == pytest.approx(remote / (7 * (1 - (7 / 8) ** 8)), rel=0.02)
    # groups that do not map onto whole nodes: the routes spread evenly
    assert expert_all_to_all(route, 8, 64, topo, limit=(4, 2)) == free
    c = load_model("deepseek-v3")
    assert (c.expert_groups, c.group_top_k) == (8, 4)
    for bad in (dict(expert_groups=7), dict(group_top_k=9), dict(group_top_k=0)):
        with pytest.raises(WorkloadError):
            replace(c, **bad)


def test_recompute_modules_price_the_forward_of_what_they_name():
    """Megatron-Core selective recompute of named modules (DeepSeek-V3 Sec. 3.2.3: RMSNorm and
    the MLA up-projections): the backward pass grows by those ops' forward time, taken from
    perf.estimate on the layer graph; "core_attn" alone is the attention-core recompute."""
    from chipforge.perf import estimate
    from chipforge.spec.loader import load_chip

    c = load_model("deepseek-v3", layers=4, dense_layers=1, mtp_layers=0)
    # DP 16 over EP 8: the experts' optimizer states split over 2 ranks (one whole on each of 8
    # ranks needs more than an H800 has)
    kw = dict(tp=1, pp=1, dp=16, cp=1, ep=8, zero=1, micro_batch=1, seq=4096, global_batch=32,
              dtype="bf16")  # fmt: skip
    none = plan_training("h800", c, 16, recompute="none", **kw)
    attn = plan_training("h800", c, 16, recompute="selective", **kw)
    named = plan_training("h800", c, 16, recompute="selective",
                          recompute_modules=("layernorm", "mla_up_proj"), **kw)  # fmt: skip
    g = build(c, phase="train", batch=1, seq=4096, scope="layer", ep=8)
    ops = estimate(g, load_chip("h800")).ops
    fwd = lambda names: sum(o.time_s for o in ops if o.name.rsplit(".", 1)[-1] in names)  # noqa: E731
    m = 32 // 16
    extra = named.times["compute_s"] - none.times["compute_s"]
    assert extra == pytest.approx(m * 4 * fwd({"attn_norm", "ffn_norm", "q_up", "kv_up"}), rel=1e-6)
    core = attn.times["compute_s"] - none.times["compute_s"]
    attention = [o for o in ops if o.kind == "attention" and ".bwd" not in o.name]
    assert core == pytest.approx(m * 4 * sum(o.time_s for o in attention), rel=1e-6)
    assert 0 < extra < core  # MLA's attention core costs more to redo than its up-projections
    with pytest.raises(Exception, match="--recompute-modules"):
        plan_training("h800", c, 16, recompute_modules=("attention",), **kw)


def test_nccl_cta_caps_share_the_scale_up_bandwidth():
    """NCCL runs min(its channels, maxCTAs) channels, each an equal share of the bandwidth
    (src/graph/connect.cc, tuning.cc busBw = nChannels x bw): on NVLink5 (16 channels) a DP x CP
    communicator capped to 8 CTAs moves its in-domain bytes at half the rate, the CP ring capped
    to 1 CTA at 1/16. Topologies without a channel count (0) ignore the caps."""
    from chipforge.cluster.collectives import collective_time
    from chipforge.cluster.topology import topology_for
    from chipforge.spec.loader import load_chip

    topo = topology_for(load_chip("gb200"), 72)
    assert topo.nccl_channels == 16
    size = 20e9  # bandwidth-bound: the time is bytes / bandwidth (latencies < 0.2%)
    full = collective_time("reduce_scatter", size, 32, topo)
    half = collective_time("reduce_scatter", size, 32, topo, up_share=0.5)
    assert half == pytest.approx(2 * full, rel=0.01)
    kw = dict(MLPERF_8B, overlap_param_gather=True, fp8_param_gather=True, bucket_size=768_000_000)
    free = plan_training("gb200", "llama3-8b", 512, **kw)
    capped = plan_training("gb200", "llama3-8b", 512, nccl_ctas={"dp": 8, "cp": 1}, **kw)
    assert capped.exposed_comm["cp_s"] > 10 * free.exposed_comm["cp_s"]  # free: SM share only
    assert capped.exposed_comm["dp_s"] > free.exposed_comm["dp_s"]
    assert capped.times["compute_s"] == free.times["compute_s"]
    h100 = dict(tp=8, pp=1, dp=2, cp=1, zero=1, micro_batch=1, seq=4096, global_batch=16,
                dtype="bf16", recompute="selective")  # fmt: skip
    a, b = (plan_training("h100", "llama3-8b", 16, nccl_ctas=c, **h100) for c in (None, {"dp": 1}))
    assert a.step_time_s == b.step_time_s  # dgx-h100 states no channel count
    with pytest.raises(Exception, match="--nccl-ctas"):
        plan_training("gb200", "llama3-8b", 8, nccl_ctas={"tp": 4})
    # each channel is one CTA on one SM: the computation beside the DP collectives runs on the
    # others (gb200: 148 SMs; 8 CTAs capped, else the domain's 16 channels; dgx-h100: none)
    from chipforge.cluster.training import Plan, RunOptions, stage_cost
    from chipforge.workload.config import load_model as lm

    plan = Plan(tp=2, pp=1, dp=64, cp=4, zero=1, recompute="none", micro_batch=1)
    shares = [
        stage_cost(load_chip(c), lm("llama3-8b"), plan, topology_for(load_chip(c), 512),
                   seq=8192, dtype="fp8", run=RunOptions(nccl_ctas=caps)).dp_sm_share
        for c, caps in (("gb200", (("dp", 8),)), ("gb200", ()), ("h100", (("dp", 8),)))
    ]  # fmt: skip
    assert shares == [8 / 148, 16 / 148, 0.0]


def test_non_interleaved_1f1b_waits_for_every_send_recv():
    """Megatron-LM turns overlap_p2p_comm off without interleaving ("non-interleaved schedule
    does not support overlapping p2p communication"): each micro-batch's two send/recv exchanges
    sit in its 1F1B cycle, on top of fill and drain; interleaved and DualPipe runs overlap them."""
    from chipforge.cluster.collectives import collective_time
    from chipforge.cluster.topology import topology_for
    from chipforge.spec.loader import load_chip

    kw = dict(tp=8, pp=4, dp=1, cp=1, zero=1, micro_batch=1, seq=4096, global_batch=32,
              dtype="bf16", recompute="selective")  # fmt: skip
    plain = plan_training("h100", "llama3-70b", 32, interleave=1, **kw)
    topo = topology_for(load_chip("h100"), 32)
    hop = collective_time("send_recv", 4096 * 8192 * 2 / 8, 2, topo, stride=8)
    m = 32
    assert plain.exposed_comm["pp_s"] == pytest.approx(2 * 3 * hop + 2 * m * hop, rel=1e-6)
    inter = plan_training("h100", "llama3-70b", 32, interleave=2, **kw)
    assert inter.exposed_comm["pp_s"] == pytest.approx(2 * 3 * 2 * hop + m * hop, rel=1e-6)


def test_mixed_sliding_window_layers_are_priced_by_their_share():
    from chipforge.cluster.layer import LayerShape, layer_costs
    from chipforge.workload.ops import Attention

    for q, kv, w in product((1, 64, 300), (300, 1000), (7, 128)):  # the band, counted by hand
        op = Attention(name="a", batch=1, heads=1, kv_heads=1, q_len=q, kv_len=kv, head_dim=8,
                       window=w)  # fmt: skip
        assert op.attended == sum(min(p + 1, w) for p in range(kv - q, kv)), (q, kv, w)
    c = load_model("gpt-oss-120b")  # 128-token window on 18 of its 36 layers (config.json)
    assert (c.window, c.windowed_layers, c.layers) == (128, 18, 36)
    from chipforge.spec.loader import load_chip

    args = (load_chip("b200"), 1, 1, 4096, 1, "bf16")  # tp, micro-batch, seq, cp, dtype
    mixed, band, full = (
        layer_costs(LayerShape(args[0], m, *args[1:], ep=8))
        for m in (c, replace(c, window_layers=None), replace(c, window=0, window_layers=None))
    )
    # the attention core at 4K tokens: the band has ~1/16 of its FLOPs, at cuDNN's banded rate
    # on B200 (layer.WINDOW_ATTENTION, ~1/7 of full attention's): under half of it
    assert full[2] / 4 < band[2] < full[2] / 2
    for m, b, f in zip(mixed, band, full, strict=True):
        assert m == pytest.approx((b + f) / 2)


def test_expert_gradients_reduce_over_the_expert_data_parallel_group():
    """Megatron-Core reduces the routed experts' gradients over dp*cp/ep ranks spaced tp*ep
    apart (expert_data_parallel_group), the rest over dp*cp: GPT-OSS-120B EP8 on 8 DGX B200
    nodes reduces its experts over 8 ranks, one per node, all of it over InfiniBand."""
    from chipforge.cluster.collectives import collective_time
    from chipforge.cluster.memory import GRAD_BYTES, WEIGHT_BYTES, expert_share
    from chipforge.cluster.topology import topology_for
    from chipforge.spec.loader import load_chip

    kw = dict(tp=1, pp=1, dp=64, cp=1, ep=8, zero=1, recompute="none", micro_batch=4, seq=4096,
              global_batch=512, dtype="bf16", bucket_size=10**13)  # fmt: skip
    run = plan_training("b200", "gpt-oss-120b", 64, **kw)  # one bucket: all of it exposed
    grads = run.memory["weights_bytes"] / WEIGHT_BYTES * GRAD_BYTES
    x = expert_share(load_model("gpt-oss-120b"), run.plan)
    c = load_model("gpt-oss-120b")  # 16 of 128 experts, 3 matrices of 2880 x 2880, 36 layers
    assert x == pytest.approx(36 * 16 * 3 * 2880 * 2880 / (run.memory["weights_bytes"] / 2))
    assert 0.85 < x < 0.9 and c.layers == 36
    topo = topology_for(load_chip("b200"), 64)
    dense = collective_time("all_reduce", grads * (1 - x), 64, topo)
    expert = collective_time("all_reduce", grads * x, 8, topo, stride=8)
    assert run.exposed_comm["dp_s"] == pytest.approx(dense + expert, rel=1e-6)
    assert expert > 3 * collective_time("all_reduce", grads * x, 64, topo)  # not over NVLink
    # EP 8 over DP 8: no expert-data-parallel peer (gpt-oss-20b: gpt-oss-120b's experts whole
    # on each rank need 16 B per parameter, more than a B200 holds)
    one_node = plan_training("b200", "gpt-oss-20b", 8, **{**kw, "dp": 8, "global_batch": 64})
    x8 = expert_share(load_model("gpt-oss-20b"), one_node.plan)
    grads8 = one_node.memory["weights_bytes"] / WEIGHT_BYTES * GRAD_BYTES
    dense8 = collective_time("all_reduce", grads8 * (1 - x8), 8, topo)
    assert one_node.exposed_comm["dp_s"] == pytest.approx(dense8, rel=1e-6)  # edp = 1


def test_dropless_moe_host_time_per_local_expert():
    """`moe_host_sync`: each MoE layer of a stage adds, per local expert, 6 GEMM launches and 4
    quantizations of the recipe's kernels (MXFP8 1, current scaling 3, 16-bit none) at
    MOE_HOST_S_PER_LAUNCH to every micro-batch (by hand: Qwen3-30B-A3B, 48 MoE layers, 128
    experts); nothing on a dense model."""
    from chipforge.cluster.training import FRAMEWORK_OVERHEAD, MOE_HOST_S_PER_LAUNCH

    kw = dict(tp=1, cp=1, zero=1, recompute="none", micro_batch=1, seq=4096, global_batch=512,
              interleave=1)  # fmt: skip
    cases = ((1, 8, 8, "fp8", "mxfp8", 10), (2, 16, 32, "fp8", "current", 18),
             (1, 8, 8, "bf16", "delayed", 6))  # fmt: skip
    for pp, ep, chips, dtype, recipe, launches in cases:
        dp = chips // pp
        one = dict(pp=pp, dp=dp, ep=ep, dtype=dtype, fp8_recipe=recipe, **kw)
        base = plan_training("b200", "qwen3-30b-a3b", chips, **one)
        host = plan_training("b200", "qwen3-30b-a3b", chips, moe_host_sync=True, **one)
        m = 512 // dp
        per_mb = 48 / pp * (128 // ep) * launches * MOE_HOST_S_PER_LAUNCH
        assert host.times["moe_host_s"] == pytest.approx(m * per_mb, rel=1e-9)
        bubble = (pp - 1) * per_mb  # 1F1B: the stage's time fills the bubble too
        step = base.step_time_s + (m * per_mb + bubble) / (1 - FRAMEWORK_OVERHEAD)
        assert host.step_time_s == pytest.approx(step, rel=1e-9)
        assert host.times["compute_s"] == pytest.approx(base.times["compute_s"], rel=1e-12)
    dense = dict(tp=1, pp=1, dp=8, cp=1, zero=1, recompute="none", micro_batch=1, seq=4096,
                 global_batch=64, dtype="bf16")  # fmt: skip
    a = plan_training("b200", "llama3-8b", 8, **dense)
    b = plan_training("b200", "llama3-8b", 8, moe_host_sync=True, **dense)
    assert a.step_time_s == b.step_time_s and "moe_host_s" not in b.times


def test_moe_host_constant_is_set_on_its_designated_case():
    """MOE_HOST_S_PER_LAUNCH is the value that reproduces its one designated case,
    Megatron-Bridge 26.04, DGX-B200 x 8, Qwen3-30B-A3B MXFP8 (10 launches per expert), GBS 512,
    MBS 4, EP 8 (hybridep): 26,859 tokens/s per GPU (docs/performance-summary-archive.md), to
    two digits."""
    from chipforge.cluster.training import (
        FRAMEWORK_OVERHEAD,
        MOE_HOST_S_PER_LAUNCH,
        host_launches_per_expert,
    )

    kw = dict(seq=4096, global_batch=512, dtype="fp8", fp8_recipe="mxfp8", fp8_param_gather=True,
              tp=1, pp=1, dp=8, cp=1, ep=8, micro_batch=4, recompute="none", zero=1,
              interleave=1, moe_dispatcher="flex")  # fmt: skip
    base = plan_training("b200", "qwen3-30b-a3b", 8, **kw)
    measured = 512 * 4096 / 8 / 26859  # s per step
    m, moe_layers, local = 512 // (8 * 4), 48, 128 // 8
    launches = host_launches_per_expert("fp8", "mxfp8")
    assert launches == 10
    fitted = (measured - base.step_time_s) * (1 - FRAMEWORK_OVERHEAD)
    fitted /= m * moe_layers * local * launches
    assert round(fitted, 6) == MOE_HOST_S_PER_LAUNCH
    tuned = plan_training("b200", "qwen3-30b-a3b", 8, moe_host_sync=True, **kw)
    assert tuned.tokens_per_s / 8 == pytest.approx(26859, rel=0.01)


def test_expert_bias_and_glu_clamp_passes_of_the_grouped_mlp():
    """Megatron-Core's TEGroupedMLP (core_r0.15.0 experts.py `_apply_bias`, fused_bias_geglu.py
    `weighted_bias_quick_geglu_impl(clamp_value=)`): GPT-OSS's fc2 bias is added expert by
    expert in eager PyTorch (12 B per fc2-output element forward, 12 backward) and its clamped
    GLU clamps and re-concatenates the fc1 output (8 forward, 10 backward); by hand, as HBM
    passes at perf's sustained bandwidth plus one launch each, on a layer of GPT-OSS-120B."""
    from chipforge.cluster.layer import LayerShape, layer_costs, module_forward
    from chipforge.perf.calibration import calibration
    from chipforge.spec.loader import load_chip

    chip, c = load_chip("b200"), load_model("gpt-oss-120b")
    assert (c.linear_bias, c.glu_limit) == (True, 7.0)  # attention_bias, swiglu_limit
    plain = replace(c, linear_bias=False, glu_limit=0.0)
    mb, seq, ep = 2, 4096, 8
    args = (chip, 1, mb, seq, 1, "bf16")
    on, off = (layer_costs(LayerShape(args[0], m, *args[1:], ep=ep)) for m in (c, plain))
    got = [a - b for a, b in zip(on, off, strict=True)]
    cal = calibration(chip.family)
    bw, launch = chip.hbm.bandwidth * cal.memory_frac, cal.op_overhead_s
    rows = mb * seq * 4  # top-4 routes of every token on this chip (balanced EP)
    fc1, fc2 = rows * 2 * 2880, rows * 2880  # elements of the fc1 and fc2 outputs
    assert got[0] == pytest.approx((8 * fc1 + 12 * fc2) / bw + 2 * launch, rel=1e-6)
    assert got[1] == pytest.approx((10 * fc1 + 12 * fc2) / bw + 2 * launch, rel=1e-6)
    assert got[2] == 0 and got[3] == 0  # the attention core and the optimizer: unchanged
    mods = [module_forward(LayerShape(args[0], m, *args[1:], ep=ep)) for m in (c, plain)]
    assert mods[0]["moe_act"] - mods[1]["moe_act"] == pytest.approx(8 * fc1 / bw + launch)
    assert mods[0]["moe"] - mods[1]["moe"] == pytest.approx(got[0])
    with pytest.raises(Exception, match="glu_limit"):
        load_model("gpt-oss-120b", glu_limit=float("nan"))


def test_recompute_modules_free_the_activations_they_keep():
    """Selective recompute of named modules (Megatron-Core --recompute-modules) frees what those
    modules keep, in Korthikanti et al. 2022 Table 2's bytes per s*b*h: "layernorm" a separate
    norm's output (2: MoE's pre-MLP norm, MLA's input norm; Transformer Engine's spec fuses the
    others into the next linear layer), "moe_act" the experts' activation output (8, scaled by
    top_k x expert_ffn / 4h), "mla_up_proj" Q, K and V (6), "mlp" a dense MLP (19); a plan the
    default (core_attn) refuses fits with the recipe's modules."""
    from chipforge.cluster.memory import activation_bytes_per_layer as act

    s, mb = 4096, 1
    oss, llama, dsv3 = (load_model(m) for m in ("gpt-oss-120b", "llama3-8b", "deepseek-v3"))
    kw = dict(mb=mb, seq=s, recompute="selective")
    base = {m.name: act(m, tp=1, **kw) for m in (oss, llama, dsv3)}
    sbh = lambda c: s * mb * c.hidden  # noqa: E731
    assert oss.top_k * oss.expert_ffn == 4 * oss.hidden  # GPT-OSS: the scale is 1
    got = base["gpt-oss-120b"] - act(oss, tp=1, recompute_modules=("layernorm", "moe_act"), **kw)
    assert got == pytest.approx((2 + 8) * sbh(oss))
    fp8 = act(oss, tp=1, gemm_input_bytes=1, **kw) - act(
        oss, tp=1, gemm_input_bytes=1, recompute_modules=("moe_act",), **kw)  # fmt: skip
    assert fp8 == pytest.approx(8 * sbh(oss) / 2)  # fc2's input kept in FP8
    assert act(llama, tp=1, recompute_modules=("layernorm",), **kw) == base["llama3-8b"]
    mlp = act(llama, tp=2, **kw) - act(llama, tp=2, recompute_modules=("mlp",), **kw)
    assert mlp == pytest.approx(19 * sbh(llama) / 2)
    got = base["deepseek-v3"] - act(dsv3, tp=1, recompute_modules=("layernorm", "mla_up_proj"),
                                    **kw)  # fmt: skip
    assert got == pytest.approx((2 * 58 / 61 + 2 + 6) * sbh(dsv3))
    assert act(oss, tp=1, mb=mb, seq=s, recompute="none",
               recompute_modules=("layernorm", "moe_act")) == base["gpt-oss-120b"]  # fmt: skip
    tiny = load_model("llama3-8b", layers=2)  # unfused attention keeps its scores unless
    scores = 5 * tiny.heads * s * s * mb  # core_attn is among the recomputed modules
    mat = dict(tp=1, attention="materialized", **kw)
    assert act(tiny, recompute_modules=("mlp",), **mat) - act(tiny, **mat) == pytest.approx(
        scores - 19 * sbh(tiny)
    )
    # Megatron-Bridge's GPT-OSS H100 recipe (25.11 config: PP4, EP8, MBS 1, layernorm + moe_act)
    # fits; at the performance table's MBS 4 the experts' optimizer states, split over only
    # 16 / 8 = 2 ranks, leave no room (data/frontier_heldout.csv, T2 amendment)
    plan = dict(seq=4096, global_batch=512, dtype="bf16", tp=1, pp=4, dp=16, cp=1, ep=8,
                zero=1, micro_batch=1, recompute="selective")  # fmt: skip
    mods = ("layernorm", "moe_act")
    fits = plan_training("h100", oss, 64, recompute_modules=mods, **plan)
    assert fits.memory_per_chip_bytes < plan_training("h100", oss, 64, **plan).memory_per_chip_bytes
    assert fits.memory_per_chip_bytes < 75 * 2**30
    with pytest.raises(Infeasible, match="needs 78 GiB"):
        plan_training("h100", oss, 64, recompute_modules=mods, **{**plan, "micro_batch": 4})


def test_sliding_window_attention_runs_at_cudnns_measured_rate_on_blackwell():
    """layer.WINDOW_ATTENTION: NVIDIA's cuDNN SDPA training benchmark (cudnn-frontend
    benchmark/sdpa_benchmark_training, configs/gpt_oss.py: BF16, batch 2, 128 heads, s 8192,
    head_dim 64, a 128-token window; results/gpt_oss/gb300|gb200 csv) times the band at
    0.397 / 0.862 ms (GB300 forward / backward) and 0.414 / 0.911 ms (GB200): the shares of the
    BF16 peak are recomputed from those times with Attention.flops (the benchmark's count); a
    GPT-OSS banded layer's attention core is priced at that rate on GB300 (and B200, GB200's
    GPU), by hand; full attention and chips without a measurement keep perf's rate."""
    from chipforge.cluster.layer import WINDOW_ATTENTION, LayerShape, layer_costs
    from chipforge.spec.loader import load_chip
    from chipforge.workload.ops import Attention

    bench = dict(batch=2, heads=128, kv_heads=128, q_len=8192, kv_len=8192, head_dim=64,
                 window=128)  # fmt: skip
    times = {"gb300": (0.397e-3, 0.862e-3), "gb200": (0.414e-3, 0.911e-3)}
    for name, ts in times.items():
        peak = load_chip(name).peak_flops("bf16")
        for bwd, t in enumerate(ts):
            share = Attention(name="a", backward=bool(bwd), **bench).flops / t / peak
            assert WINDOW_ATTENTION[128, 64][name][bwd] == pytest.approx(share, rel=2e-3)
    assert WINDOW_ATTENTION[128, 64]["b200"] == WINDOW_ATTENTION[128, 64]["gb200"]
    c = load_model("gpt-oss-120b")
    banded, full = replace(c, window_layers=None), replace(c, window=0, window_layers=None)
    mb, s = 2, 8192
    op = Attention(name="a", batch=mb, heads=64, kv_heads=8, q_len=s, kv_len=s, head_dim=64,
                   window=128)  # fmt: skip
    for name in ("gb300", "b200"):
        chip = load_chip(name)
        by_hand = op.flops / (WINDOW_ATTENTION[128, 64][name][0] * chip.peak_flops("bf16"))
        attn = layer_costs(LayerShape(chip, banded, 1, mb, s, 1, "bf16", ep=64))[2]
        assert attn == pytest.approx(by_hand, rel=1e-9)
    for name, model in (("gb300", full), ("h100", banded)):  # perf's own rate, much faster
        chip = load_chip(name)
        slow = op.flops / (0.08 * chip.peak_flops("bf16"))
        assert layer_costs(LayerShape(chip, model, 1, mb, s, 1, "bf16", ep=64))[2] < (
            slow if model is banded else 10 * slow
        )
