"""LLM serving on many chips: prefill and decode time with TP/PP/EP, continuous batching, paged
KV cache, optional disaggregated prefill/decode; latency and throughput at a concurrency or the
best plan under TTFT/TPOT SLOs.

Per-chip compute: one transformer block from `chipforge.workload.llm.build(scope="layer")` costed
by `chipforge.perf.estimate`, times layers / PP, plus the LM head; cached per shape. The
graph's collectives are replaced by `cluster.collectives.collective_time` on the topology.
Continuous batching (Orca, Yu et al. OSDI 2022; Sarathi-Serve chunked prefill, Agrawal et al.
2024): in steady state each of `batch` running sequences gets one token per step, and each step
also carries batch/osl new prompts' prefill, so TPOT = decode step + prefill share and
TTFT = one prompt's prefill + one decode step of queueing. PP runs `pp` micro-batches in flight.
"""

from __future__ import annotations

import math
from functools import lru_cache

from chipforge.cluster.collectives import collective_time
from chipforge.cluster.kvcache import memory
from chipforge.cluster.serving_plan import ServingPlan
from chipforge.cluster.topology import Topology, topology_for
from chipforge.dtypes import BYTES, nbytes
from chipforge.errors import Infeasible, WorkloadError
from chipforge.perf import estimate
from chipforge.spec.loader import load_chip
from chipforge.spec.models import ChipSpec
from chipforge.workload.config import ModelConfig, load_model
from chipforge.workload.llm import build

# The one calibration constant: a fixed per-layer, per-step overhead of the serving runtime
# (kernel launches and synchronisation: ~6 kernels per block at ~5 us each, the CUDA launch
# latency NVIDIA quotes; Nsight traces of vLLM/TRT-LLM decode show the same order). Global.
LAYER_OVERHEAD_S = 30e-6
BATCHES = tuple(2**i for i in range(0, 11))  # 1..1024 sequences per replica (search grid)


_CACHE: dict[tuple, tuple[float, tuple[float, ...]]] = {}
_CACHE_MAX = 20000


def _layer(chip: ChipSpec, c: ModelConfig, phase: str, b: int, n: int, tp: int, dt: str, kvd: str):
    """(compute s, collective sizes) of one block: prefill n = prompt length, decode n = context.
    Cached on the chip's and model's identity (specs are immutable) and the shape."""
    key = (id(chip), chip.name, c, phase, b, n, tp, dt, kvd)
    hit = _CACHE.get(key)
    if hit is None:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        hit = _CACHE[key] = _layer_uncached(chip, c, phase, b, n, tp, dt, kvd)
    return hit


def _layer_uncached(chip, c, phase, b, n, tp, dt, kvd):
    kw = {"seq": n} if phase == "prefill" else {"context": n}
    g = build(c, phase=phase, batch=b, tp=tp, dtype=dt, kv_dtype=kvd, scope="layer", **kw)
    r = estimate(g, chip)
    compute = sum(o.time_s for o in r.ops if o.kind != "collective")
    sizes = tuple(op.size for op in g.ops if type(op).__name__ == "Collective")
    return compute, sizes


def _head(chip: ChipSpec, c: ModelConfig, b: int, tp: int, dt: str) -> float:
    """LM head for `b` last positions: roofline of its weight read and FLOPs."""
    w = c.vocab * c.hidden / tp
    return max(
        2 * b * w / chip.peak_flops(_mm_dtype(chip, dt)), w * nbytes(dt) / chip.hbm.bandwidth
    )


def _mm_dtype(chip: ChipSpec, dt: str) -> str:
    """`dt` if the matrix unit runs it, else bf16 (the engine's fallback)."""
    return dt if chip.peak_flops(dt) > 0 else "bf16"


def _step(chip, c, topo, phase, b, n, tp, pp, ep, dt, kvd) -> float:
    """Seconds for one full forward step (all stages, one micro-batch) of the replica."""
    compute, sizes = _layer(chip, c, phase, b, n, tp, dt, kvd)
    comm = 0.0
    for i, size in enumerate(sizes):
        if ep > 1 and c.is_moe and i == len(sizes) - 1:  # MoE: dispatch + combine all-to-all
            comm += 2 * collective_time("all_to_all", size * c.top_k, ep, topo)
        else:
            comm += collective_time("all_reduce", size, tp, topo)
    layers = c.layers
    t = layers * (compute + comm + LAYER_OVERHEAD_S) + _head(chip, c, b, tp, dt)
    if pp > 1:  # activations sent between stages
        act = b * (n if phase == "prefill" else 1) * c.hidden * nbytes(dt)
        t += (pp - 1) * collective_time("send_recv", act, 2, topo, stride=tp)
    return t


def _check(c: ModelConfig, chips: int, tp: int, pp: int, ep: int) -> None:
    if tp < 1 or pp < 1 or ep < 1:
        raise WorkloadError("`tp`, `pp` and `ep` must be positive integers")
    if chips % (tp * pp):
        raise WorkloadError(
            f"`tp` x `pp` = {tp * pp} does not divide --chips {chips}; use divisors of {chips}"
        )
    if c.heads % tp:
        ok = [d for d in range(1, c.heads + 1) if c.heads % d == 0 and chips % d == 0]
        raise WorkloadError(
            f"`tp` {tp} does not divide {c.name}'s {c.heads} heads; use one of {ok}"
        )
    if c.layers % pp:
        raise WorkloadError(f"`pp` {pp} does not divide {c.name}'s {c.layers} layers")
    if ep > 1 and not c.is_moe:
        raise WorkloadError(f"`ep` {ep} needs a MoE model; {c.name} is dense (use --ep 1)")
    if ep > 1 and tp % ep:
        raise WorkloadError(f"`ep` {ep} must divide `tp` {tp} (experts are spread over TP ranks)")


def evaluate(
    chip, c, chips, topo, *, isl, osl, tp, pp, ep, batch, dt, kvd, disaggregated=False
) -> ServingPlan:
    """One plan at `batch` running sequences per replica; raises Infeasible if it does not fit."""
    _check(c, chips, tp, pp, ep)
    mem = memory(c, chip.hbm.capacity, tp=tp, pp=pp, dtype=dt, kv_dtype=kvd)
    if mem.kv_tokens <= 0:
        raise Infeasible(
            f"{c.name} weights need {mem.weights / 2**30:.1f} GiB per chip at tp={tp} pp={pp}, "
            f"{chip.name} has {chip.hbm.capacity / 2**30:.1f} GiB: raise --tp or --pp"
        )
    fits = mem.sequences(isl + osl)
    if batch > fits:
        raise Infeasible(
            f"batch {batch} needs more KV cache than {mem.kv_tokens} tokens per replica; "
            f"at most {fits} sequences of {isl + osl} tokens fit"
        )
    dp = chips // (tp * pp)
    ctx = isl + osl // 2  # mean context over the decode
    prefill = _step(chip, c, topo, "prefill", 1, isl, tp, pp, ep, dt, kvd)
    mb = max(1, batch // pp)  # micro-batch per pipeline stage
    decode = _step(chip, c, topo, "decode", mb, ctx, tp, pp, ep, dt, kvd)
    if disaggregated:
        tpot, ttft = decode, prefill
        out_rate = batch / tpot  # decode pool, per replica
        # prefill replicas needed so prompts arrive as fast as decode finishes them
        need = out_rate / osl * prefill
        share = need / (need + 1)
        p_chips = max(tp * pp, round(chips * share / (tp * pp)) * tp * pp)
        if p_chips >= chips:
            raise Infeasible(f"disaggregated serving needs more than {chips} chips at tp x pp")
        d_rep = (chips - p_chips) // (tp * pp)
        p_rep = p_chips // (tp * pp)
        thr = min(d_rep * out_rate, p_rep / prefill * osl)
        replicas = d_rep  # decode replicas hold the running sequences
    else:
        # each step carries batch/osl prompts' prefill: a stream waits for the others' prefills
        tpot = decode + (batch - 1) / osl * prefill
        ttft = prefill + (decode if batch > 1 else 0.0)  # queue for the running step's end
        thr = dp * batch / (decode + batch / osl * prefill)
        replicas, p_chips = dp, 0
    return ServingPlan(
        chip.name,
        c.name,
        chips,
        tp,
        pp,
        ep,
        replicas,
        batch,
        isl,
        osl,
        dt,
        kvd,
        ttft,
        tpot,
        thr,
        mem.kv_tokens,
        mem.to_dict(),
        bool(disaggregated),
        p_chips,
        {"prefill": prefill, "decode": decode},
    )


def resolve_model(model) -> ModelConfig:
    """A ModelConfig, a preset name, or `llm:<preset>[,field=value...]`."""
    if isinstance(model, ModelConfig):
        return model
    from chipforge.workload.parse import _model_value

    text = model[4:] if model.startswith("llm:") else model
    name, *items = text.split(",")
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise WorkloadError(f"`model` fields must be key=value, not {item!r}")
        overrides[key] = _model_value(key, value)
    return load_model(name, **overrides)


@lru_cache(maxsize=64)
def _load_chip(name: str) -> ChipSpec:
    """Presets by name, loaded once so the per-layer cache (keyed on the spec) hits."""
    return load_chip(name)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def plan_serving(
    chip,
    model,
    chips: int,
    *,
    isl: int,
    osl: int,
    dtype: str = "bf16",
    kv_dtype: str | None = None,
    tp: int | None = None,
    pp: int | None = None,
    ep: int | None = None,
    concurrency: int | None = None,
    ttft_slo: float | None = None,
    tpot_slo: float | None = None,
    disaggregated: bool = False,
    topology: Topology | str | None = None,
) -> ServingPlan:
    """Evaluate a serving plan, searching the parallelism/batch left as None for the highest
    throughput meeting the SLOs. `concurrency`: total running sequences over all replicas."""
    chip = _load_chip(chip) if isinstance(chip, str) else chip
    c = resolve_model(model)
    kvd = kv_dtype or dtype
    for name, value in (("dtype", dtype), ("kv_dtype", kvd)):
        if value not in BYTES:
            raise WorkloadError(f"`{name}` must be one of {', '.join(BYTES)}, not {value!r}")
    for name, value in (("chips", chips), ("isl", isl), ("osl", osl)):
        if value is None or value <= 0:
            raise WorkloadError(f"`{name}` must be a positive integer, not {value}")
    topo = topology if isinstance(topology, Topology) else topology_for(chip, chips, topology)
    tps = [tp] if tp else [d for d in _divisors(chips) if c.heads % d == 0]
    pps = [pp] if pp else [d for d in _divisors(chips) if c.layers % d == 0 and d <= 8]
    best, why, closest = None, None, math.inf
    for t in tps:
        eps = [ep] if ep else ([d for d in _divisors(t)] if c.is_moe else [1])
        for p in pps:
            if chips % (t * p):
                if tp and pp:
                    _check(c, chips, t, p, 1)
                continue
            for e in eps:
                if tp and pp and ep:
                    _check(c, chips, t, p, e)
                dp = chips // (t * p)
                batches = [max(1, -(-concurrency // dp))] if concurrency else BATCHES
                for b in batches:
                    try:
                        plan = evaluate(
                            chip,
                            c,
                            chips,
                            topo,
                            isl=isl,
                            osl=osl,
                            tp=t,
                            pp=p,
                            ep=e,
                            batch=b,
                            dt=dtype,
                            kvd=kvd,
                            disaggregated=disaggregated,
                        )
                    except Infeasible as err:
                        why = why or err
                        break
                    if (ttft_slo and plan.ttft_s > ttft_slo) or (
                        tpot_slo and plan.tpot_s > tpot_slo
                    ):
                        miss = max(
                            plan.ttft_s / (ttft_slo or math.inf),
                            plan.tpot_s / (tpot_slo or math.inf),
                        )
                        if miss < closest:
                            closest, why = (
                                miss,
                                Infeasible(
                                    f"no plan meets the SLOs (closest: tp={t} pp={p} batch={b} "
                                    f"TTFT {plan.ttft_s * 1e3:.0f} ms, "
                                    f"TPOT {plan.tpot_s * 1e3:.1f} ms)"
                                ),
                            )
                        continue
                    if best is None or plan.throughput_tokens_per_s > best.throughput_tokens_per_s:
                        best = plan
    if best is None:
        if why is None or "weights need" in str(why):
            need = c.params() * nbytes(dtype)
            raise Infeasible(
                f"{c.name} does not fit on {chips} x {chip.name}: weights alone need "
                f"{need / 2**30:.0f} GiB in {dtype}, {chips} chips have "
                f"{chips * chip.hbm.capacity / 2**30:.0f} GiB; use >= "
                f"{int(-(-need // (chip.hbm.capacity * 0.8)))} chips or a smaller --dtype"
            )
        raise why
    return best
