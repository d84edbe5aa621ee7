"""Where the model's vLLM-on-8xMI300X decode step falls short (data/check_heldout.csv rules S1,
S2: diagnostic rows). For each row: the model's decode step split into its parts (matmuls,
attention, other vector ops, TP all-reduces as priced, the same all-reduces at 16 bits, per-layer
runtime overhead, LM head), and the step the published figure implies:
- S1 (AMD, benchmark_throughput, every prompt submitted at once): running sequences / output
  tokens/s, the prefill spread over the steps as the model spreads it (its TPOT);
- S2 (OCI, benchmark_latency, a static batch): (latency - the model's prefill) / (osl - 1);
and what is left per running sequence, (implied - model) / batch, in us: a cost per request and
step (host scheduling, input preparation, output processing) would keep it flat across rows; it
is not (34-49 us on 70B, 84-143 us on 405B), so no one per-request host time explains the rows.

    PYTHONPATH=src python benchmarks/vllm_mi300x_diagnosis.py      # ~2 s
"""

from __future__ import annotations

from chipforge.cluster import check_validate as cv
from chipforge.cluster.serving import LAYER_OVERHEAD_S, _graph, _head, plan_serving
from chipforge.cluster.serving_plan import resolve_model
from chipforge.cluster.topology import topology_for
from chipforge.cluster.tp_allreduce import tp_all_reduce
from chipforge.perf import estimate
from chipforge.spec.loader import load_chip


def main() -> None:
    chip = load_chip("mi300x")
    topo = topology_for(chip, 8)
    head = " ".join(f"{k:>6s}" for k in ("mm", "attn", "vec", "AR", "AR16", "ovh", "total"))
    tail = "implied ratio us/seq"
    print(f"{'row':31s} {'batch':>5s} {'ctx':>5s} | model decode step, ms: {head} | {tail}")
    for row in cv.rows():
        if cv.kind_of(row) != cv.SERVING_SEEN_KIND:
            continue
        c = resolve_model(row["model"])
        isl, osl, kvd = int(row["isl"]), int(row["osl"]), row["kv_dtype"]
        plan = plan_serving(
            chip, c, 8, isl=isl, osl=osl, dtype=row["dtype"], kv_dtype=kvd, tp=8, pp=1, ep=1,
            concurrency=int(row["concurrency"]), max_batch=int(row["max_batch"]),
            batching=row["batching"], max_num_tokens=cv._int(row["max_num_tokens"]),
        )  # fmt: skip
        b, ctx = plan.batch, isl + osl // 2
        g = _graph(c, "decode", b, ctx, 8, row["dtype"], kvd)
        parts = dict.fromkeys(("mm", "attn", "vec", "AR", "AR16"), 0.0)
        for op, o in zip(g.ops, estimate(g, chip, deployed=True).ops, strict=True):
            if o.kind == "collective":
                parts["AR"] += tp_all_reduce(chip, op.size, 8, topo)
                parts["AR16"] += tp_all_reduce(chip, 2 * op.size, 8, topo)
            elif o.kind == "matmul":
                parts["mm"] += o.time_s
            elif o.kind == "attention":
                parts["attn"] += o.time_s
            else:
                parts["vec"] += o.time_s
        ms = {k: v * c.layers * 1e3 for k, v in parts.items()}
        ovh = LAYER_OVERHEAD_S * c.layers * 1e3
        head_ms = _head(chip, c, b, 8, row["dtype"]) * 1e3
        step = ms["mm"] + ms["attn"] + ms["vec"] + ms["AR"] + ovh + head_ms
        if row["batching"] == "static":  # benchmark_latency: prefill, then osl - 1 steps
            latency = b * osl / float(row["value"])
            implied, model = (latency - plan.ttft_s) / (osl - 1) * 1e3, plan.tpot_s * 1e3
        else:  # all prompts at once: the running batch over the output rate
            implied, model = b / float(row["value"]) * 1e3, plan.tpot_s * 1e3
        cols = " ".join(f"{v:6.1f}" for v in (*ms.values(), ovh, step))
        ratio = implied / model
        per_seq = (implied - model) / b * 1e3
        print(
            f"{row['id']:31s} {b:5d} {ctx:5d} | {'':22s} {cols} | {implied:7.1f} {ratio:5.2f}"
            f" {per_seq:6.0f}"
        )


if __name__ == "__main__":
    main()
