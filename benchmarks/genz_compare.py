"""chipforge vs GenZ (PyPI genz-llm, import `GenZ`) on inference cases with the SAME chip figures
(peak FLOP/s in the dtype, HBM capacity and bandwidth, scale-up link bandwidth taken from the
chipforge chip spec), next to the published figure where one exists. Writes docs/genz.md.

Run: .venv/bin/python benchmarks/genz_compare.py [--out docs/genz.md]
"""

from __future__ import annotations

import argparse
import time
import warnings

from chipforge.atomic import atomic_write_text
from chipforge.cluster import plan_serving, topology_for
from chipforge.spec.loader import load_chip

GENZ_MODELS = {"llama2-70b": "meta-llama/Llama-2-70B", "llama3-70b": "meta-llama/Llama-3.1-70B"}
GENZ_BITS = {"fp16": "bf16", "bf16": "bf16", "fp8": "int8", "fp4": "int4"}  # GenZ's byte widths
# TensorRT-LLM v0.5/v0.6.1 tables were measured with gptSessionBenchmark: static batching; the
# v0.6.1 Llama-2-70B engines had no paged KV cache, hence no XQA GQA kernel (gpt_attention.md)
STATIC_SOURCES = ("perf-trtllm-h100-l70-", "perf-trtllm-a100-l70-")
# Every GenZ setting the comparison uses, each passed explicitly (GenZ 0.x defaults in the
# comments). decode_moddeling's Bb is the beam width: its default 4 prices beam search with 4
# beams; chipforge decodes greedily, so GenZ runs greedy decode too.
GENZ_BEAMS = 1  # decode_moddeling(Bb=...): default 4
GENZ_SETTINGS = {
    "system_eff": 1,  # default 1: no efficiency derating
    "pipeline_parallel": 1,  # default 1
    "expert_parallel": 1,  # default 1
    "collective_strategy": "GenZ",  # default: GenZ's own alpha-beta collectives, no ASTRA-sim
    "network_config": None,  # default None: ICN from the system dict
    "model_offload": False,  # default False
    "debug": False,
    "model_profilling": False,
}

# (name, chip, model, tp, dtype, isl, osl, batch, metric, published, source id in published.csv)
CASES = [
    (
        "A100 TP4 Llama-2-70B TTFT, 128 in",
        "a100",
        "llama2-70b",
        4,
        "fp16",
        128,
        1,
        1,
        "ttft_ms",
        47.0,
        "perf-trtllm-a100-l70-ttft128",
    ),
    (
        "A100 TP4 Llama-2-70B TTFT, 2048 in",
        "a100",
        "llama2-70b",
        4,
        "fp16",
        2048,
        1,
        1,
        "ttft_ms",
        377.0,
        "perf-trtllm-a100-l70-ttft2048",
    ),
    (
        "H100 TP2 Llama-3-70B ITL, 5000 in, c=1",
        "h100",
        "llama3-70b",
        2,
        "fp8",
        5000,
        500,
        1,
        "tpot_ms",
        18.58,
        "perf-nim-h100x2-itl-c1",
    ),
    (
        "H100 TP2 Llama-3-70B TTFT, 5000 in, c=1",
        "h100",
        "llama3-70b",
        2,
        "fp8",
        5000,
        500,
        1,
        "ttft_ms",
        406.77,
        "perf-nim-h100x2-itl-c1",
    ),
    (
        "H100 TP2 Llama-2-70B 128/128 b=1024 tok/s/GPU",
        "h100",
        "llama2-70b",
        2,
        "fp8",
        128,
        128,
        1024,
        "tokens_per_s_per_chip",
        2657.0,
        "perf-trtllm-h100-l70-128-128",
    ),
    (
        "H100 TP2 Llama-2-70B 2048/128 b=96 tok/s/GPU",
        "h100",
        "llama2-70b",
        2,
        "fp8",
        2048,
        128,
        96,
        "tokens_per_s_per_chip",
        306.0,
        "perf-trtllm-h100-l70-2048-128",
    ),
    (
        "forge-n3 TP8 Llama-3-70B 2048/256 b=64 tok/s/chip",
        "forge-n3",
        "llama3-70b",
        8,
        "bf16",
        2048,
        256,
        64,
        "tokens_per_s_per_chip",
        None,
        "",
    ),
]


def genz_system(chip_name: str, dtype: str, chips: int) -> dict:
    chip = load_chip(chip_name)
    dt = dtype if chip.peak_flops(dtype) else "bf16"
    topo = topology_for(chip, chips)
    return {
        "Flops": chip.peak_flops(dt) / 1e12,  # TFLOP/s
        "Memory_size": chip.hbm.capacity / 1e9,  # GB
        "Memory_BW": chip.hbm.bandwidth / 1e9,  # GB/s
        "ICN": topo.up_bandwidth / 1e9,  # GB/s per direction
        "real_values": True,
    }


def _static(src: str) -> bool:
    return src.startswith(STATIC_SOURCES)


def genz_predict(chip, model, tp, dtype, isl, osl, batch, metric, src) -> float:
    from GenZ import decode_moddeling, prefill_moddeling

    kw = dict(
        model=GENZ_MODELS[model],
        system_name=genz_system(chip, dtype, tp),
        bits=GENZ_BITS[dtype],
        tensor_parallel=tp,
        **GENZ_SETTINGS,
    )
    static = _static(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prefill_ms = prefill_moddeling(batch_size=1, input_tokens=isl, **kw)["Latency"]
        if metric == "ttft_ms":
            return prefill_ms
        ctx = isl + osl // 2
        decode_ms = decode_moddeling(
            batch_size=batch, input_tokens=ctx, output_tokens=0, Bb=GENZ_BEAMS, **kw
        )["Latency"]
        if static and metric != "tpot_ms":  # one batched prefill, then osl - 1 decode steps
            batch_prefill_ms = prefill_moddeling(batch_size=batch, input_tokens=isl, **kw)
            total_s = (batch_prefill_ms["Latency"] + (osl - 1) * decode_ms) / 1e3
            return batch * osl / total_s / tp
    if metric == "tpot_ms":
        return decode_ms
    total_s = (batch * prefill_ms + osl * decode_ms) / 1e3  # same steady-state accounting
    return batch * osl / total_s / tp


def chipforge_predict(chip, model, tp, dtype, isl, osl, batch, metric, src) -> float:
    static = _static(src)
    p = plan_serving(
        chip, model, tp, isl=isl, osl=osl, dtype=dtype, tp=tp, pp=1, concurrency=batch,
        batching="static" if static else "continuous", gqa_kernel=not (static and batch > 1),
    )  # fmt: skip
    if metric == "ttft_ms":
        return p.ttft_s * 1e3
    if metric == "tpot_ms":  # None for a one-token output (no decode step): asked of none
        return p.tpot_s * 1e3
    return p.throughput_tokens_per_s / p.chips


def timed(fn, *args) -> tuple[float, float]:
    fn(*args)  # warm caches / imports
    t = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - t


def rows(cases=CASES) -> list[dict]:
    out = []
    for name, chip, model, tp, dtype, isl, osl, batch, metric, published, src in cases:
        args = (chip, model, tp, dtype, isl, osl, batch, metric, src or "")
        cf, cf_s = timed(chipforge_predict, *args)
        gz, gz_s = timed(genz_predict, *args)
        out.append(
            dict(
                name=name,
                metric=metric,
                published=published,
                source=src,
                chipforge=cf,
                genz=gz,
                chipforge_s=cf_s,
                genz_s=gz_s,
            )
        )
    return out


def _err(v, ref):
    return f"{v / ref - 1:+.0%}" if ref else "-"


def markdown(rs: list[dict]) -> str:
    lines = [
        "# chipforge vs GenZ (serving)",
        "",
        "Produced by `.venv/bin/python benchmarks/genz_compare.py` (GenZ = PyPI `genz-llm`,",
        "offline). Both get the same chip figures from chipforge's chip spec: peak FLOP/s in the",
        "dtype, HBM capacity and bandwidth, scale-up link bandwidth per direction",
        "(`system_name={Flops, Memory_size, Memory_BW, ICN, real_values=True}`). Every GenZ",
        "setting is passed explicitly: `model` = the HuggingFace name (meta-llama/Llama-2-70B,",
        "meta-llama/Llama-3.1-70B), `bits` = bf16 for fp16/bf16 and GenZ's int8/int4 byte",
        "widths for fp8/fp4, `tensor_parallel` = the case's TP, and",
        *(f"`{k}={v!r}`," for k, v in GENZ_SETTINGS.items()),
        f"`Bb={GENZ_BEAMS}` for decode: greedy decode, as chipforge's (GenZ's default `Bb=4`",
        "prices beam search with 4 beams). `parallelism_heirarchy` is left at its default",
        "(only ASTRA-sim collectives read it). Decode is priced at the mean context",
        "(input + output/2), prefill on the whole prompt. The",
        "TensorRT-LLM v0.5/v0.6.1 rows were measured with static batching (gptSessionBenchmark):",
        "both tools then get batch x OSL / (prefill of the whole batch + (OSL-1) decode steps);",
        "chipforge also reads the KV cache once per query head there (no XQA without a paged KV",
        "cache; GenZ has no such switch). The forge-n3 row uses continuous batching: batch x OSL",
        "/ (batch x prefill + OSL x decode step at the mean context) for GenZ, chipforge's own",
        "model (chunked prefill sharing the weight reads) for chipforge.",
        "Time = one warm evaluation (chipforge caches per-layer costs).",
        "",
        "| case | metric | published | chipforge (err) | GenZ (err) | chipforge time | GenZ time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rs:
        pub = f"{r['published']:.4g} ({r['source']})" if r["published"] else "-"
        lines.append(
            f"| {r['name']} | {r['metric']} | {pub} | {r['chipforge']:.4g} "
            f"({_err(r['chipforge'], r['published'])}) | {r['genz']:.4g} "
            f"({_err(r['genz'], r['published'])}) | {r['chipforge_s'] * 1e3:.2f} ms | "
            f"{r['genz_s'] * 1e3:.0f} ms |"
        )
    lines += [
        "",
        "## Reading the table",
        "",
        "- Both tools are roofline-style analytical models. GenZ assumes 100% compute and memory",
        "  efficiency by default, so it is faster than every published latency (-30% to -72%).",
        "  chipforge uses the per-op efficiencies of its calibrated single-chip engine, a lower",
        "  sustained matrix rate for 8/4-bit operands (`narrow_frac`, perf/calibration.py) and one",
        "  runtime constant (30 us per layer per step, `LAYER_OVERHEAD_S`).",
        "- TensorRT-LLM v0.6.1 throughput rows: static batching and, for Llama-2-70B, decode",
        "  attention without the XQA kernel (the engines had no paged KV cache) re-reading the KV",
        "  cache for each of the 8 query heads per KV head. chipforge models both and lands",
        "  within 5%; GenZ, without the re-read and at 100% efficiency, is +310% / +229%",
        "  (greedy decode; with its default 4 beams it read +78% / +223%, the beams' extra",
        "  decode work hiding part of the optimism).",
        "- The A100 first-token latency of a 128-token prompt stays -20% in chipforge: a short",
        "  prefill runs below the roofline (near the ridge point loads and math overlap",
        "  imperfectly; the engine takes the max of the two). The NIM TTFT is measured at the",
        "  client (HTTP, tokenization, streaming included; the page gives only the total).",
        "- Speed: chipforge caches per-layer costs, so a warm evaluation is well under a",
        "  millisecond; GenZ rebuilds its operator table each call (0.06-0.2 s on an idle",
        "  machine, 0.7-3 s in this run on the loaded shared one).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/genz.md")
    text = markdown(rows())
    atomic_write_text(ap.parse_args().out, text, flag="--out")
    print(text)


if __name__ == "__main__":
    main()
