"""`chipforge serve`: LLM serving plan on many chips (throughput under TTFT/TPOT SLOs)."""

from __future__ import annotations

from typing import Annotated

import typer
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
from chipforge.display import label, show
from chipforge.errors import flag
from chipforge.request_defaults import SERVE_ISL, SERVE_OSL


def serve_tables(d: dict) -> list[Table]:
    table = Table(title=f"serve {d['model']} on {d['chips']:,} x {d['chip']}")
    table.add_column("item")
    table.add_column("value", justify="right")
    p = d["plan"]
    rows = {
        "plan": f"tp={p['tp']} pp={p['pp']} ep={p['ep']} dp={p['dp']} batch={p['batch']}"
        # ep above tp: DP attention, one replica's attention in ep/tp groups of tp chips
        # (cluster.serving: DeepSeek's inference system); its batch is split over them
        + (f" (DP attention: {p['ep'] // p['tp']} groups)" if p["ep"] > p["tp"] else "")
        + (f" over {p['batch_shards']} batch shards" if p.get("batch_shards", 1) > 1 else "")
        + (" moe-tp" if p.get("moe_tp") else "")
        + (
            f" ({p['disaggregated']} pool)"
            if p["disaggregated"] in ("decode", "prefill")
            else f" disaggregated ({p['prefill_chips']} prefill chips)"
            if p["disaggregated"]
            else ""
        ),
        "throughput (output)": show("throughput_tokens_per_s", d["throughput_tokens_per_s"]),
        "per chip": show("x_tokens_per_s_per_chip", d["throughput_tokens_per_s_per_chip"]),
        "TTFT": show("ttft_s", d["ttft_s"]),
        # a prefill pool decodes nothing (its plan's TPOT is 0)
        "TPOT": "-" if p["disaggregated"] == "prefill" else show("tpot_s", d["tpot_s"]),
    }
    # the percentiles under Poisson arrivals (what --slo-percentile holds), where modelled
    for name in ("ttft", "tpot"):
        pct = d.get(f"{name}_percentiles_s") or {}
        if pct:
            rows[f"{name.upper()} {' / '.join(pct)}"] = " / ".join(
                show(f"{name}_s", v) for v in pct.values()
            )
    rows |= {
        "concurrency": f"{d['concurrency']:,} requests",
        "KV cache per replica": show("kv_cache_capacity_tokens", d["kv_cache_capacity_tokens"]),
    }
    for k, v in d["memory_per_chip_bytes"].items():
        if k.endswith("_bytes"):
            rows[f"memory per chip: {label(k)}"] = show(k, v)
    for k, v in rows.items():
        table.add_row(k, v)
    curve = Table(title="latency/throughput curve (this plan's parallelism, batch per replica)")
    for col in ("concurrency", "batch", "tokens/s", "tokens/s per chip", "TTFT", "TPOT", "SLOs"):
        curve.add_column(col, justify="right")
    for q in d.get("curve", []):
        curve.add_row(
            str(q["concurrency"]), str(q["batch"]), f"{q['throughput_tokens_per_s']:,.0f}",
            f"{q['throughput_tokens_per_s_per_chip']:,.1f}", show("ttft_s", q["ttft_s"]),
            show("tpot_s", q["tpot_s"]), "met" if q["feasible"] else "missed",
        )  # fmt: skip
    return [table, curve] if d.get("curve") else [table]


@app.command()
def serve(
    chip: ChipOpt,
    model: ModelOpt,
    chips: Annotated[int, typer.Option("--chips", min=1, help="chips serving the model")],
    isl: Annotated[
        int, typer.Option("--isl", min=1, help="input (prompt) tokens per request")
    ] = SERVE_ISL,
    osl: Annotated[int, typer.Option("--osl", min=1, help="output tokens per request")] = SERVE_OSL,
    ttft_slo: Annotated[str | None, typer.Option("--ttft-slo", help="e.g. 2s")] = None,
    tpot_slo: Annotated[str | None, typer.Option("--tpot-slo", help="e.g. 100ms")] = None,
    max_batch: Annotated[
        int | None,
        typer.Option(
            "--max-batch",
            min=1,
            help="the engine's largest running batch per replica (TensorRT-LLM max_batch_size)",
        ),
    ] = None,
    max_num_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-num-tokens",
            min=1,
            help="tokens a step takes, decode first, prompts chunked into the rest "
            "(TensorRT-LLM max_num_tokens, vLLM max_num_batched_tokens; default: not limited)",
        ),
    ] = None,
    dense_cache: Annotated[
        int | None,
        typer.Option(
            "--dense-cache",
            min=1,
            help="each sequence holds a preallocated cache of this many tokens and decode "
            "attends to all of them (JetStream-PyTorch without --ragged_mha; default: the "
            "running context)",
        ),
    ] = None,
    batch_shards: Annotated[
        int,
        typer.Option(
            "--batch-shards",
            min=1,
            help="one engine's running batch (--max-batch) split over this many groups of --tp "
            "chips that decode together, its prompts prefilled one at a time by the one engine "
            "(JetStream-PyTorch --shard_on_batch; with --batching interleaved; default 1)",
        ),
    ] = 1,
    slo_percentile: Annotated[
        str | None,
        typer.Option(
            "--slo-percentile",
            help="hold the TTFT and TPOT SLOs at p50, p90 or p99 under Poisson arrivals (MLPerf "
            "Server: p99) instead of on the mean",
        ),
    ] = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    ep: EpOpt = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="running requests (default: search)")
    ] = None,
    dtype: Annotated[
        str,
        typer.Option(
            "--dtype", help="weights/activations dtype (bf16, fp8, fp4, ...)", callback=dtype_flag
        ),
    ] = "bf16",
    kv_dtype: Annotated[str | None, typer.Option("--kv-dtype", help="KV cache dtype")] = None,
    weight_dtype: Annotated[
        str | None,
        typer.Option(
            "--weight-dtype",
            help="weight-only quantization: weights stored at this narrower dtype, widened to "
            "--dtype for the matmuls (W8A16: --dtype bf16 --weight-dtype int8; default: --dtype)",
        ),
    ] = None,
    disaggregated: Annotated[
        bool, typer.Option("--disaggregated", help="separate prefill and decode chips")
    ] = False,
    topology: TopologyOpt = None,
    batching: Annotated[
        str,
        typer.Option(
            "--batching",
            help="continuous (in-flight), static (one batch at a time) or interleaved "
            "(JetStream: each prompt prefilled alone between the decode steps)",
        ),
    ] = "continuous",
    gqa_kernel: Annotated[
        bool,
        typer.Option(
            "--gqa-kernel/--no-gqa-kernel",
            help="decode attention reads each KV head once per group (off: once per query head)",
        ),
    ] = True,
    decode_pool: Annotated[
        bool,
        typer.Option(
            "--decode-pool", help="the chips are a decode pool; prompts are prefilled elsewhere"
        ),
    ] = False,
    prefill_pool: Annotated[
        bool,
        typer.Option(
            "--prefill-pool",
            help="the chips are a prefill pool; the decode runs elsewhere (its throughput: the "
            "output tokens/s of the prompts it prefills; no TPOT)",
        ),
    ] = False,
    ep_overlap: Annotated[
        bool,
        typer.Option(
            "--ep-overlap", help="hide the EP all-to-all behind computation (two micro-batches)"
        ),
    ] = False,
    moe_tp: Annotated[
        bool,
        typer.Option(
            "--moe-tp",
            help="DP attention (--ep above --tp) with every FFN weight sliced over the --ep chips "
            "(SGLang --enable-dp-attention without --enable-ep-moe)",
        ),
    ] = False,
    runtime: Annotated[
        str,
        typer.Option(
            "--runtime",
            help="the serving engine's rules: vllm (the KV cache 0.9 of the memory; MLA's "
            "absorbed products in 16 bits, as vLLM and SGLang) or tensorrt-llm (0.9 of what the "
            "weights and activations leave free; absorbed products at the run's precision)",
        ),
    ] = "vllm",
    attn_dtype: Annotated[
        str | None,
        typer.Option(
            "--attn-dtype", help="attention modules' dtype where it differs (NVFP4: bf16)"
        ),
    ] = None,
    osl_cv: Annotated[
        float,
        typer.Option("--osl-cv", help="coefficient of variation of the output lengths (0: fixed)"),
    ] = 0.0,
    isl_cv: Annotated[
        float,
        typer.Option("--isl-cv", help="coefficient of variation of the prompt lengths (0: fixed)"),
    ] = 0.0,
    adp_balance: Annotated[
        int | None,
        typer.Option(
            "--adp-balance",
            help="DP-attention groups prefill in the same steps, a prompt waiting at most this "
            "many steps (TensorRT-LLM adp_balancing_timeout_iters; 0: off; default: balanced, "
            "the wait not modelled)",
        ),
    ] = None,
    adp_batching_wait: Annotated[
        int,
        typer.Option(
            "--adp-batching-wait",
            help="with --adp-balance: steps the engine still waits once every group holds a "
            "prompt (TensorRT-LLM adp_balancing_batching_wait_iters; its default is 10)",
        ),
    ] = 0,
    cuda_graph_batches: Annotated[
        str | None,
        typer.Option(
            "--cuda-graph-batches",
            help="decode batch sizes with captured CUDA graphs, a step padded up to the next "
            "(TensorRT-LLM cuda_graph_batch_sizes with padding), e.g. 128,256,384,512",
        ),
    ] = None,
    spec_tokens: Annotated[
        int, typer.Option("--spec-tokens", help="draft tokens per decode step (MTP, speculative)")
    ] = 0,
    spec_acceptance: Annotated[
        float | None,
        typer.Option(
            "--spec-acceptance",
            help="probability each draft token is accepted (needed with --spec-tokens; "
            "DeepSeek-V3 reports 0.85-0.9 for its one MTP module)",
        ),
    ] = None,
    sustained_clock: SustainedClockOpt = False,
    html: HtmlOpt = None,
    png: PngOpt = None,
    json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Find the parallelism and batch that maximize throughput under the latency SLOs."""
    from chipforge.cluster import serve_options
    from chipforge.cluster.serving import plan_serving, resolve_model

    given = {k: v for k, v in locals().items() if k in serve_options.KEYS}
    options = serve_options.parse(given, "serve", cli=True)  # one parser: a table's keys too
    if sustained_clock and (reason := unthrottled(chip)):
        no_effect({"--sustained-clock": reason})
    if dtype == "bf16" and weight_dtype is None:
        _say_stored_quantization(model)
    plan = plan_serving(chip, model, chips, **options)
    data = plan.to_dict()
    dead = serve_options.no_effect(options, resolve_model(model), data["plan"])  # its own rules
    no_effect({flag(k): v for k, v in dead.items()})
    write_reports("serve", data, html, png)
    emit(data, serve_tables(data), as_json=json, out=out)


def _say_stored_quantization(model: str) -> None:
    """A config.json whose checkpoint stores quantized weights (gpt-oss: MXFP4 experts; Kimi K2:
    FP8 blocks), served at the default bf16 with no --weight-dtype: one warning line says the
    weights are priced wider than they are stored, and which flag prices them as stored."""
    from rich.console import Console

    from chipforge.workload.hf import stored_quantization
    from chipforge.workload.resolve import config_file

    path = config_file(model)
    stored = None if path is None else stored_quantization(path)
    if stored is None:
        return
    method, dtype = stored
    fix = f"give --weight-dtype {dtype} to price them as stored" if dtype else "give --weight-dtype"
    Console(stderr=True, soft_wrap=True).print(
        f"warning: the config.json's quantization_config stores weights as {method}; priced at "
        f"--dtype bf16: {fix} (it narrows every weight, those the checkpoint keeps wide too)",
        style="yellow",
        markup=False,
    )
