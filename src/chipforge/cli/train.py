"""`chipforge train`: the fastest feasible training plan (or the given one) on many chips."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from chipforge.cli import (
    ChipOpt,
    EpOpt,
    JsonOpt,
    ModelOpt,
    OutOpt,
    PpOpt,
    SustainedClockOpt,
    TopologyOpt,
    TpOpt,
    app,
    dtype_flag,
    emit,
    no_effect,
    unthrottled,
)
from chipforge.cli.reportopts import HtmlOpt, PngOpt, write_reports
from chipforge.display import label, plain, show
from chipforge.errors import ChipforgeError, flag
from chipforge.units import parse_count
from chipforge.workload.resolve import config_file, resolve_model

Int = Annotated[int | None, typer.Option(min=1)]


def _gib(x: float) -> str:
    return f"{x / 2**30:,.1f}"


def _plan(p: dict) -> str:
    """A plan as flags a person reads: `tp=2 pp=4 ... sequence_parallel=on`."""

    def flag(v) -> str:
        return ("on" if v else "off") if isinstance(v, bool) else str(v)

    return " ".join(f"{k}={flag(v)}" for k, v in p.items())


def _gb(x: float) -> str:
    return show("memory_bytes", x)


def train_tables(d: dict) -> list[Table]:
    p = d["plan"]
    head = Table(title=f"train {d['model']} on {d['chips']:,} x {d['chip']} ({d['topology']})")
    head.add_column("figure")
    head.add_column("value", justify="right")
    plan = _plan(p)
    rows = [
        ("plan", plan),
        ("seq x global batch", f"{d['seq']:,} x {d['global_batch']:,}"),
        ("step time", show("step_time_s", d["step_time_s"])),
        ("MFU / HFU", f"{d['mfu']:.1%} / {d['hfu']:.1%}"),
        ("throughput", show("tokens_per_s", d["tokens_per_s"])),
        (
            "memory per chip",
            f"{_gb(d['memory_per_chip_bytes'])} of {_gb(d['memory_capacity_bytes'])}",
        ),
    ]
    if d.get("search"):
        n = d["search"]
        pruned = n["pruned_memory"] + n["pruned_bound"]
        rows.append(
            (
                "plans searched",
                f"{n['evaluated']:,} evaluated, {pruned:,} pruned ({n['pruned_memory']:,} by "
                f"memory, {n['pruned_bound']:,} by step-time bound), {n['infeasible']:,} "
                "break a shape rule",
            )
        )
    if d["time_to_train_s"]:
        # chip-hours, as published runs state their cost (DeepSeek-V3: 2.664 M H800 GPU-hours)
        hours = d["time_to_train_s"] * d["chips"] / 3600
        rows.append(("time to train", show("time_to_train_s", d["time_to_train_s"])
                     + f" ({plain(hours)} chip-hours)"))  # fmt: skip
    for k, v in rows:
        head.add_row(k, v)
    mem = Table(title="memory per chip by category")
    mem.add_column("category")
    mem.add_column("memory", justify="right")
    for k, v in d["memory_by_category_bytes"].items():
        mem.add_row(label(k), _gb(v))
    times = Table(title="step time: compute and exposed communication per network tier")
    times.add_column("part")
    times.add_column("time", justify="right")
    for k, v in {**d["time_breakdown_s"], **d["exposed_comm_s"]}.items():
        times.add_row(label(k), show("time_s", v))
    tables = [head, mem, times]
    if d.get("alternatives"):
        alt = Table(title="next fastest feasible plans")
        for col in ("plan", "step time", "MFU", "memory per chip", "exposed communication"):
            alt.add_column(col, justify="left" if col == "plan" else "right")
        for a in d["alternatives"]:
            alt.add_row(
                _plan(a["plan"]),
                show("step_time_s", a["step_time_s"]),
                f"{a['mfu']:.1%}",
                _gb(a["memory_per_chip_bytes"]),
                show("exposed_comm_s", a["exposed_comm_s"]),
            )
        tables.append(alt)
    return tables


@app.command()
def train(
    chip: ChipOpt,
    model: ModelOpt,
    chips: Annotated[int, typer.Option("--chips", min=1, help="number of chips")],
    tokens: Annotated[
        str | None, typer.Option("--tokens", help="training tokens, e.g. 15.6T")
    ] = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    dp: Int = None,
    cp: Int = None,
    ep: EpOpt = None,
    zero: Annotated[int | None, typer.Option("--zero", min=0, max=3)] = None,
    dp_shard: Annotated[
        int | None,
        typer.Option(
            "--dp-shard",
            min=0,
            help="hybrid sharding: data-parallel ranks one ZeRO/FSDP shard group spans (divides "
            "--dp; its dp/N replicas all-reduce the gradients); 0: all of --dp; default: "
            "searched (all, or one scale-up domain or pod)",
        ),
    ] = None,
    first_stage_layers: Annotated[
        int | None,
        typer.Option(
            "--first-stage-layers",
            min=1,
            help="decoder layers on the first pipeline stage, the middle stages splitting the "
            "rest evenly (Megatron's --decoder-first-pipeline-num-layers); default: an even "
            "split, or the end stages a layer short",
        ),
    ] = None,
    last_stage_layers: Annotated[
        int | None,
        typer.Option(
            "--last-stage-layers",
            min=1,
            help="decoder layers on the last pipeline stage, which also holds the MTP modules "
            "(Megatron's --decoder-last-pipeline-num-layers)",
        ),
    ] = None,
    recompute: Annotated[
        str | None, typer.Option("--recompute", help="none, selective or full")
    ] = None,
    micro_batch: Annotated[int | None, typer.Option("--micro-batch", min=1)] = None,
    seq: Annotated[int | None, typer.Option("--seq", min=1)] = None,
    global_batch: Annotated[
        str | None,
        typer.Option(
            "--global-batch",
            help="sequences per step: N, or MIN:MAX to let the search choose (most tokens/s)",
        ),
    ] = None,
    tokens_per_batch: Annotated[
        str | None,
        typer.Option(
            "--tokens-per-batch",
            help="target tokens per step, e.g. 4M: the global batch is the multiple of dp "
            "nearest it / --seq",
        ),
    ] = None,
    sequence_parallel: Annotated[
        bool | None,
        typer.Option("--sp/--no-sp", help="sequence parallelism (default: searched)"),
    ] = None,
    dtype: Annotated[
        str,
        typer.Option(
            "--dtype", help="weights/activations dtype (bf16, fp8, fp4)", callback=dtype_flag
        ),
    ] = "bf16",
    topology: TopologyOpt = None,
    pod: Annotated[
        int | None,
        typer.Option(
            "--pod",
            min=1,
            help="chips of one torus slice (TPU multi-slice: slices joined by the data-centre "
            "network); default: all the chips, up to the preset's pod",
        ),
    ] = None,
    interleave: Annotated[
        int | None, typer.Option("--interleave", min=1, help="virtual pipeline stages per chip")
    ] = None,
    attention: Annotated[
        str,
        typer.Option(
            "--attention",
            help="attention kernel: flash (perf's fused rate), flash2 / flash1 (FlashAttention-2 / "
            "-1 generation, capped at the papers' utilization), materialized (unfused scores)",
        ),
    ] = "flash",
    alternatives: Annotated[
        int, typer.Option("--alternatives", min=0, help="also list the next N fastest plans")
    ] = 0,
    schedule: Annotated[
        str,
        typer.Option(
            "--schedule",
            help="pipeline schedule: 1f1b (interleaved when --interleave > 1), interleaved, zb "
            "(zero-bubble ZB-H1), dualpipe (DeepSeek-V3: EP all-to-all hidden under compute)",
        ),
    ] = "1f1b",
    tp_overlap: Annotated[
        bool,
        typer.Option(
            "--tp-overlap",
            help="TP all-gathers/reduce-scatters pipelined under the GEMMs (Megatron-Core "
            "--tp-comm-overlap, Transformer Engine userbuffers)",
        ),
    ] = False,
    tp_async_backward: Annotated[
        bool,
        typer.Option(
            "--tp-async-backward",
            help="backward TP communication as Megatron runs it: the input's re-gather under "
            "the dgrad GEMM, the reduce-scatter under the wgrad GEMM",
        ),
    ] = False,
    fp8_dispatch: Annotated[
        bool,
        typer.Option(
            "--fp8-dispatch",
            help="MoE dispatch in the FP8/FP4 GEMM input's precision (DeepSeek-V3); the "
            "combine stays BF16 (default: every all-to-all in BF16, as Megatron-Core runs it)",
        ),
    ] = False,
    fp8_recipe: Annotated[
        str,
        typer.Option(
            "--fp8-recipe",
            help="FP8 scaling: delayed (TE default), current (per-tensor current scaling), "
            "mxfp8 (32-element blocks, Blackwell), block (DeepSeek-V3 1x128 / 128x128)",
        ),
    ] = "delayed",
    overlap_param_gather: Annotated[
        bool,
        typer.Option(
            "--overlap-param-gather",
            help="ZeRO 1-3: the updated weights' all-gather runs under the next forward pass "
            "(Megatron-Core overlap_param_gather); the gradients are reduce-scattered",
        ),
    ] = False,
    fp8_param_gather: Annotated[
        bool,
        typer.Option(
            "--fp8-param-gather",
            help="FP8 primary weights (--dtype fp8): 1 byte per weight in memory and in the "
            "all-gather (Megatron-Core fp8_param_gather)",
        ),
    ] = False,
    sustained_clock: SustainedClockOpt = False,
    activation_offload: Annotated[
        bool,
        typer.Option(
            "--activation-offload",
            help="a plan that does not fit may keep the fewest layers' activations in host "
            "memory (Megatron-Core cpu_offloading; the topology's host link, e.g. Grace C2C)",
        ),
    ] = False,
    optimizer_offload: Annotated[
        bool,
        typer.Option(
            "--optimizer-offload",
            help="a plan that does not fit may keep the optimizer states in host memory, "
            "stepped by the CPU (Megatron-Core --optimizer-cpu-offload)",
        ),
    ] = False,
    shared_expert_overlap: Annotated[
        bool,
        typer.Option(
            "--shared-expert-overlap",
            help="MoE shared experts run beside the EP all-to-all (Megatron-Core "
            "moe_shared_expert_overlap)",
        ),
    ] = False,
    moe_host_sync: Annotated[
        bool,
        typer.Option(
            "--moe-host-sync",
            help="dropless MoE launched from the host: a synchronisation in every MoE layer, "
            "the experts outside CUDA graphs (Megatron-Core + Transformer Engine grouped GEMM)",
        ),
    ] = False,
    moe_dispatcher: Annotated[
        str,
        typer.Option(
            "--moe-dispatcher",
            help="MoE token dispatcher: alltoall (Megatron-Core, NCCL all-to-all; sorts tokens "
            "by local expert) or flex (DeepEP / HybridEP kernels lay tokens out per expert)",
        ),
    ] = "alltoall",
    bucket_size: Annotated[
        str | None,
        typer.Option(
            "--bucket-size",
            help="parameters per gradient bucket, e.g. 768M (Megatron-Core bucket_size; default "
            "max(40M, 1M x DP x CP ranks)): the last bucket's reduction is exposed",
        ),
    ] = None,
    recompute_modules: Annotated[
        str,
        typer.Option(
            "--recompute-modules",
            help="what --recompute selective recomputes, comma-separated: core_attn, layernorm, "
            "mla_up_proj, mlp, moe_act, moe, shared_experts (Megatron-Core recompute_modules); "
            "or op_sac alone (torchtitan's per-op policy: saves every other matmul's output and "
            "the attention's) or layer_sac alone (torchtitan's layer policy: every second block "
            "recomputed whole) or maxtext_minimal alone (MaxText's remat_policy minimal: saves "
            "every projection's output, recomputes the attention core and pointwise ops) or "
            "maxtext_proj alone (MaxText's proj: saves the queries, keys and values, recomputes "
            "the whole layer)",
        ),
    ] = "core_attn",
    loss: Annotated[
        str,
        typer.Option(
            "--loss",
            help="the cross-entropy's memory: fused (Megatron-Core's vocab-parallel loss, one "
            "fp32 logits buffer), eager (PyTorch F.cross_entropy on fp32 logits, three; four "
            "vocab-parallel under TP) or compiled (the same under torch.compile, one)",
        ),
    ] = "fused",
    nccl_ctas: Annotated[
        str | None,
        typer.Option(
            "--nccl-ctas",
            help="CTA caps of NCCL communicators, e.g. dp=8,cp=1,pp=2 (NCCL maxCTAs): a group "
            "capped below the channels NCCL runs in the scale-up domain gets that share of it",
        ),
    ] = None,
    parallel_block: Annotated[
        bool,
        typer.Option(
            "--parallel-block",
            help="attention and MLP side by side on one input (GPT-J, PaLM): one TP all-gather "
            "and one reduction per layer and pass for both",
        ),
    ] = False,
    offload_layers: Annotated[
        int | None,
        typer.Option(
            "--offload-layers",
            min=0,
            help="layers of each stage whose activations live in host memory (Megatron-Core "
            "cpu_offloading_num_layers); default: none, or under --activation-offload the "
            "fewest that fit",
        ),
    ] = None,
    pp_scatter_gather: Annotated[
        bool,
        typer.Option(
            "--pp-scatter-gather",
            help="without sequence parallelism each TP rank sends 1/tp of a stage's output, "
            "all-gathered on arrival (legacy Megatron-LM scatter/gather, Narayanan et al. 2021)",
        ),
    ] = False,
    eager_ops: Annotated[
        bool,
        typer.Option(
            "--eager-ops",
            help="the block's norms, RoPE and activation as PyTorch eager kernels (torchtitan "
            "without torch.compile), not fused",
        ),
    ] = False,
    cp_ring: Annotated[
        str,
        typer.Option(
            "--cp-ring",
            help="how context parallelism's ring attention moves K and V: p2p (Transformer "
            "Engine's send/recv ring) or torch (PyTorch's ring attention as torchtitan runs it)",
        ),
    ] = "p2p",
    train_metrics: Annotated[
        int,
        typer.Option(
            "--train-metrics",
            min=0,
            help="eager cross-entropies over each micro-batch's logits beside the loss "
            "(Composer's train metrics: 2 for llm-foundry MPT's cross-entropy and perplexity)",
        ),
    ] = 0,
    calculon_plan: Annotated[
        str | None,
        typer.Option(
            "--calculon-plan",
            help="price a Calculon execution JSON as chipforge's plan (its offloads, which "
            "chipforge cannot express, are named and left out)",
        ),
    ] = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
    html: HtmlOpt = None,
    png: PngOpt = None,
) -> None:
    """Fastest feasible training plan (flags left out are searched), or evaluate the given one."""
    from chipforge.cluster import plan_training, train_options

    unexpressed: list[str] = []
    if calculon_plan:
        from chipforge.cluster.peers import read_calculon_execution

        given = {"tp": tp, "pp": pp, "dp": dp, "cp": cp, "ep": ep, "zero": zero,
                 "recompute": recompute, "micro-batch": micro_batch, "interleave": interleave,
                 "global-batch": global_batch, "sp": sequence_parallel,
                 "dp-shard": dp_shard, "first-stage-layers": first_stage_layers,
                 "last-stage-layers": last_stage_layers}  # fmt: skip
        clash = [k for k, v in given.items() if v is not None]
        if clash:
            raise ChipforgeError(
                f"--{clash[0]} and --calculon-plan both set the plan; give one of them"
            )
        flags, unexpressed = read_calculon_execution(calculon_plan)
        tp, pp, dp, cp, ep = flags["tp"], flags["pp"], flags["dp"], flags["cp"], flags["ep"]
        zero, recompute, micro_batch = flags["zero"], flags["recompute"], flags["micro_batch"]
        interleave, global_batch = flags["interleave"], flags["global_batch"]
        sequence_parallel = flags["sequence_parallel"]
        dp_shard = 0  # Calculon shards the optimizer over every data-parallel rank
        if unexpressed:
            Console(stderr=True, soft_wrap=True).print(
                f"warning: the Calculon plan holds what chipforge cannot express: "
                f"{', '.join(unexpressed)}; priced without it",
                style="yellow",
                markup=False,
            )

    n_tokens = parse_count(tokens, "--tokens") if tokens else None
    per_batch = parse_count(tokens_per_batch, "--tokens-per-batch") if tokens_per_batch else None
    bucket = round(parse_count(bucket_size, "--bucket-size")) if bucket_size else None
    caps = train_options.nccl_ctas(nccl_ctas or "", "--nccl-ctas", "--nccl-ctas")
    _say_config_seq(model, seq)
    res = plan_training(
        chip, model, chips, tokens=n_tokens, seq=seq, global_batch=global_batch,
        dtype=dtype, tp=tp, pp=pp, dp=dp, cp=cp, ep=ep, zero=zero, dp_shard=dp_shard,
        recompute=recompute, micro_batch=micro_batch, interleave=interleave, topology=topology,
        pod=pod,
        attention=attention,
        alternatives=alternatives, schedule=schedule, tp_overlap=tp_overlap,
        tokens_per_batch=per_batch, sequence_parallel=sequence_parallel, fp8_recipe=fp8_recipe,
        overlap_param_gather=overlap_param_gather, fp8_param_gather=fp8_param_gather,
        sustained_clock=sustained_clock, activation_offload=activation_offload,
        moe_dispatcher=moe_dispatcher, optimizer_offload=optimizer_offload,
        shared_expert_overlap=shared_expert_overlap, bucket_size=bucket,
        recompute_modules=train_options.recompute_modules(recompute_modules),
        nccl_ctas=caps, moe_host_sync=moe_host_sync, loss=loss,
        tp_async_backward=tp_async_backward, fp8_dispatch=fp8_dispatch,
        parallel_block=parallel_block, offload_layers=offload_layers,
        pp_scatter_gather=pp_scatter_gather, eager_ops=eager_ops, cp_ring=cp_ring,
        train_metrics=train_metrics, first_stage_layers=first_stage_layers,
        last_stage_layers=last_stage_layers,
    )  # fmt: skip
    c = resolve_model(model)
    run = {"tp_async_backward": tp_async_backward, "tp_overlap": tp_overlap,
           "fp8_dispatch": fp8_dispatch, "pp_scatter_gather": pp_scatter_gather,
           "cp_ring": cp_ring, "moe_host_sync": moe_host_sync, "moe_dispatcher": moe_dispatcher,
           "shared_expert_overlap": shared_expert_overlap,
           "overlap_param_gather": overlap_param_gather, "bucket_size": bucket,
           "nccl_ctas": caps}  # fmt: skip
    why = {"--sustained-clock": unthrottled(chip)} if sustained_clock else {}
    why.update(
        (flag(k), v) for k, v in train_options.no_effect(run, c, res.plan, res.dtype).items()
    )
    no_effect({k: v for k, v in why.items() if v})
    _say_no_host(chip, chips, topology, activation=activation_offload,
                 optimizer=optimizer_offload)  # fmt: skip
    data = res.to_dict()
    if calculon_plan:
        data["not_expressible"] = unexpressed
    write_reports("train", data, html, png)
    emit(data, train_tables(data), as_json=as_json, out=out)


def _say_no_host(chip: str, chips: int, topology: str | None, *, activation: bool,
                 optimizer: bool) -> None:  # fmt: skip
    """--activation-offload / --optimizer-offload on a topology that states no host path: the
    search never offloads there (cluster.search._offload), so one warning line says so."""
    if not (activation or optimizer):
        return
    from chipforge.cluster.topology import topology_for
    from chipforge.spec.loader import load_chip

    topo = topology_for(load_chip(chip), chips, topology)
    host = topo.host_bandwidth > 0
    need = {
        "--activation-offload": activation and not host,
        "--optimizer-offload": optimizer and not (host and topo.host_memory_bandwidth > 0),
    }
    reason = (f"topology {topo.name} states no host link or host memory bandwidth "
              "(host_bandwidth, host_memory_bandwidth in topologies.toml), so no plan "
              "offloads there")  # fmt: skip
    no_effect({flag: reason for flag, missing in need.items() if missing})


def _say_config_seq(model: str, seq: int | None) -> None:
    """--seq left out with a config.json: the plan trains at the config's `seq`, its
    max_position_embeddings, the longest context it serves (Qwen3-235B 40,960, Llama 4 Scout
    10,485,760), not a pre-training context; one warning line says so."""
    if seq is not None or config_file(model) is None:
        return
    Console(stderr=True, soft_wrap=True).print(
        f"warning: --seq not given: sequences of {resolve_model(model).seq:,} tokens, the "
        "config.json's max_position_embeddings; give --seq for the context you train at",
        style="yellow",
        markup=False,
    )
