"""The analytical engine: the cost of every op of a graph on one chip.

Per op, each resource gets a time: the matrix units (tiling, padding, fill and drain, the
dtype's rate), off-chip memory (tile-reuse traffic given the on-chip buffer), the vector unit,
and the chip-to-chip links; the op takes the longest (they overlap) plus a fixed dispatch
overhead, and reports which one bound it. No bare roofline: padding, fill, reuse and dispatch
are what make rooflines 1.5-2x optimistic on decode (PEERS.md, LLM-Viewer issue #4).
`estimate(..., deployed=True)` costs the graph as part of a deployed model run (serving,
training): matrix work narrower than 16 bits then runs at the family's `narrow_frac` per halving
(perf/calibration.py); isolated kernels (the default, and the GEMM benchmarks) do not.
A tensor-core GEMM that splits K pays for its fp32 partials and the reduction kernel (`_split_k`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chipforge.display import si
from chipforge.dtypes import nbytes
from chipforge.errors import SpecError
from chipforge.perf.calibration import Calibration, calibration
from chipforge.perf.energy import byte_energy, mac_energy, vector_flop_energy
from chipforge.perf.matmul import (
    matmul_cycles,
    matmul_limit,
    split_k_partial_bytes,
    tensor_core_split_cycles,
    tile_rereads,
    tiled_traffic,
)
from chipforge.perf.result import OpResult, Result
from chipforge.spec import ChipSpec
from chipforge.workload import Graph
from chipforge.workload.ops import Attention, Collective, Conv2d, Embedding, MatMul, Op, Vector

# Vector work per attention score besides the exponential: scale, running max, subtract,
# running sum, rescale (online softmax, FlashAttention; Dao et al. 2022).
SOFTMAX_FLOPS_PER_SCORE = 5


@dataclass
class Cost:
    """One instance of an op: seconds per resource, bytes out of each memory level, work."""

    parts: dict[str, float]
    bytes_by_level: dict[str, float]
    macs: float = 0.0
    mac_dtype: str = "bf16"
    vector_flops: float = 0.0
    peak: float = 0.0
    compute_limit: str = "compute"  # what limits the matrix part: compute, fill or weight-load


@dataclass(frozen=True)
class Machine:
    """A chip with its family's calibration, and the figures every cost rule needs."""

    chip: ChipSpec
    cal: Calibration
    deployed: bool = False  # part of a deployed model run: narrow dtypes at `cal.narrow_frac`

    @property
    def offchip_bandwidth(self) -> float:
        return self.chip.hbm.bandwidth * self.cal.memory_frac

    def gemm_bandwidth(self, op: MatMul) -> float:
        """Off-chip bandwidth `op` streams its operands at: the chip's measured GEMM-library rate
        (`ChipSpec.gemm_stream_bandwidth`, set only where a measurement on that chip exists) only
        for what that measurement ran, one 2-D FP8 x FP8 product in the library (mi300x:
        hipBLASLt through torch._scaled_mm, which takes 2-D operands only; FP8 times only); a
        streaming kernel's (`memory_frac`) for the rest: a chip with no measurement (mi325x: the
        same library and CDNA3 compute, but no skinny-GEMM timing of its own), a 16-bit or
        weight-only product (vLLM on ROCm runs 16-bit skinny products in its own wvSplitK /
        LLMM1 kernels, csrc/rocm/skinny_gemms.cu, not hipBLASLt), a batched product (MLA's
        absorbed per-head products: torch.bmm), or a grouped MoE GEMM (the engines' fused MoE
        kernels, `MatMul.grouped`)."""
        measured = self.chip.gemm_stream_bandwidth
        library = op.dtype == "fp8" and op.b_dtype == "fp8" and op.batch == 1 and not op.grouped
        if measured is None or not library:
            return self.offchip_bandwidth
        return measured

    def buffer_capacity(self, level: int) -> float:
        mem = self.chip.memory[level]
        return mem.capacity  # per core when per_core: each core tiles its own share

    def resident(self, activation_bytes: float) -> bool:
        """Whether activations of this size stay on chip between ops: half the activation
        SRAM holds them, the other half stages weight tiles."""
        return activation_bytes <= self.chip.activation_bytes / 2

    def matrix_dtype(self, dtype: str) -> tuple[str, float]:
        """The dtype the matrix unit runs `dtype` in, and the rate penalty (1 when native).

        Without a native path a narrower op runs on a wider format of its kind (fp8 as bf16, not
        as int8); an op wider than any format the unit has takes (width ratio)^2 passes
        (TPU v1: 16-bit operands at 1/4 speed, Jouppi 2017)."""
        macs = self.chip.matrix.macs_per_cycle
        if dtype in macs:
            return dtype, 1.0
        is_int = dtype.startswith("int")
        wider = [d for d in macs if nbytes(d) >= nbytes(dtype) and d.startswith("int") == is_int]
        if wider:
            return max(wider, key=lambda d: macs[d]), 1.0
        widest = max(macs, key=nbytes)
        return widest, (nbytes(dtype) / nbytes(widest)) ** 2

    def narrow_rate(self, run_dtype: str) -> float:
        """Sustained-rate factor (<= 1) of matrix work the unit runs in `run_dtype`: in a deployed
        model, `narrow_frac` per halving of the width below 16 bits (fp8 once, fp4 twice), where
        the chip has a 16-bit path the peak tables double from; 1 for isolated kernels."""
        width = nbytes(run_dtype)
        if not self.deployed or width >= 2:
            return 1.0
        if not any(nbytes(d) == 2 for d in self.chip.matrix.macs_per_cycle):
            return 1.0  # no 16-bit path (TPU v1): its narrow peak is the measured base
        return self.cal.narrow_frac ** math.log2(2 / width)


def _matmul_parts(
    mc: Machine, m: int, n: int, k: int, batch: int, dtype: str, out_dtype: str,
    b_dtype: str | None = None,
) -> tuple[float, dict[str, float]]:  # fmt: skip
    """(compute s, bytes per memory level); `b_dtype`: B read in a narrower stored format and
    widened to `dtype` on chip (weight-only quantization), so only B's bytes change."""
    chip = mc.chip
    run_dtype, penalty = mc.matrix_dtype(dtype)
    cycles = matmul_cycles(m, n, k, batch, chip.matrix, chip.matrix_units, run_dtype) * penalty
    compute = cycles / chip.clock / mc.cal.matrix_frac / mc.narrow_rate(run_dtype)
    e_in, e_out = nbytes(dtype), nbytes(out_dtype)
    e_b = nbytes(b_dtype or dtype)
    traffic: dict[str, float] = {}
    for level in range(len(chip.memory)):
        if level + 1 < len(chip.memory):
            cap = mc.buffer_capacity(level + 1)
            moved = tiled_traffic(m, n, k, e_in, e_out, cap, e_b)
        else:  # innermost level feeds the array: every operand element once per use
            moved = e_in * m * k + e_b * k * n + e_out * m * n
        traffic[chip.memory[level].name] = batch * moved
    return compute, traffic


def _split_k(mc: Machine, op: MatMul, traffic: dict[str, float]) -> tuple[float, dict]:
    """(compute s, traffic) of a tensor-core GEMM at the split-K factor the library would pick:
    the fastest once the split's fp32 partials (`split_k_partial_bytes`; resident ones spare HBM)
    and its reduction kernel (one more `op_overhead_s`) are charged. Splitting stays optional."""
    chip, mu, hbm = mc.chip, mc.chip.matrix, mc.chip.hbm.name
    run_dtype, penalty = mc.matrix_dtype(op.dtype)
    scale = penalty / chip.clock / mc.cal.matrix_frac / mc.narrow_rate(run_dtype)
    shape = dict(rows=mu.rows, cols=mu.cols, units=chip.matrix_units)
    best = (math.inf, 0.0, traffic)
    for split, cycles in tensor_core_split_cycles(
        op.m, op.n, op.k, op.batch, **shape, macs_per_cycle=mu.macs_per_cycle[run_dtype]
    ):
        partials = split_k_partial_bytes(op.m, op.n, op.batch, split)
        moved = {
            level: v + (partials if level != hbm or not mc.resident(partials / 2) else 0.0)
            for level, v in traffic.items()
        }
        compute = cycles * scale + (_overhead(mc, op) if split > 1 else 0.0)
        t = max(compute, moved[hbm] / mc.gemm_bandwidth(op))
        if t < best[0]:
            best = (t, compute, moved)
    return best[1], best[2]


def cost_matmul(mc: Machine, op: MatMul) -> Cost:
    out_dtype = op.out_dtype or op.dtype
    compute, traffic = _matmul_parts(
        mc, op.m, op.n, op.k, op.batch, op.dtype, out_dtype, op.b_dtype
    )
    hbm = mc.chip.hbm.name
    activations = op.batch * op.m * (op.k * nbytes(op.dtype) + op.n * nbytes(out_dtype))
    if op.weight and mc.resident(activations):  # only the weights stream from off-chip
        traffic[hbm] = min(traffic[hbm], op.weight_bytes)
    if mc.chip.matrix.dataflow == "tensor-core":  # split-K partials come on top of that traffic
        compute, traffic = _split_k(mc, op, traffic)
    # a few rows (batch-1 decode) would pad a whole matrix tile (64 of 64 rows wasted at M=1):
    # libraries run such products as GEMV kernels on the vector unit (cuBLAS gemv; TensorRT-LLM's
    # batch <= 4 GEMV kernels), so the compute part is the faster of the two engines
    gemv = op.flops / mc.chip.vector_flops
    limit = "compute" if gemv < compute else matmul_limit_of(mc, op)
    compute = min(compute, gemv)
    memory = traffic[hbm] / mc.gemm_bandwidth(op)
    parts = {"compute": compute, "memory": memory}
    widen = 0.0
    if op.b_dtype != op.dtype:
        # weight-only: each weight element is widened (and scaled) once per pass on the vector
        # unit, in the same fused kernel, overlapping the product (jetstream-pytorch
        # layers.WeightOnlyPerChannelQuantizedLinear: F.linear(bf16 inputs, int8 weight), the
        # per-channel scale applied to the output; TensorRT-LLM's weight-only GEMM dequantizes
        # in its main loop)
        widen = op.batch * op.k * op.n
        parts["vector"] = widen / mc.chip.vector_flops
    return Cost(
        parts,
        traffic,
        macs=op.flops / 2,
        vector_flops=widen,
        mac_dtype=mc.matrix_dtype(op.dtype)[0],
        peak=mc.chip.peak_flops(mc.matrix_dtype(op.dtype)[0]),
        compute_limit=limit,
    )


def matmul_limit_of(mc: Machine, op: MatMul) -> str:
    """What limits `op` on the matrix units (`perf.matmul.matmul_limit`): one rule for both
    engines, so the analytical and cycle engines name the same bound for the same op."""
    run_dtype = mc.matrix_dtype(op.dtype)[0]
    chip = mc.chip
    return matmul_limit(op.m, op.n, op.k, op.batch, chip.matrix, chip.matrix_units, run_dtype)


def cost_conv(mc: Machine, op: Conv2d) -> Cost:
    """An implicit GEMM whose A re-reads fetch the input image, not its kh x kw-fold im2col
    copy: the patches are formed on chip."""
    gemm = op.as_matmul()
    cost = cost_matmul(mc, gemm)
    if len(mc.chip.memory) > 1:
        e, hbm = nbytes(op.dtype), mc.chip.hbm.name
        a_reads, b_reads = tile_rereads(gemm.m, gemm.n, gemm.k, e, e, mc.buffer_capacity(1))
        ho, wo = op.out_hw
        image = op.batch * op.height * op.width * op.cin * e
        moved = image * a_reads + op.weight_bytes * b_reads + op.batch * ho * wo * op.cout * e
        cost.bytes_by_level[hbm] = min(cost.bytes_by_level[hbm], moved)
        cost.parts["memory"] = cost.bytes_by_level[hbm] / mc.offchip_bandwidth
    return cost


def cost_attention(mc: Machine, op: Attention) -> Cost:
    """Flash attention: Q K^T and P V on the matrix unit per KV head (GQA folds the query heads
    of a group into M when decoding), online softmax on the vector unit, Q/K/V/O read once."""
    group = op.heads // op.kv_heads
    m, batch = (
        (op.q_len * group, op.batch * op.kv_heads)
        if op.q_len == 1
        else (op.q_len, op.batch * op.heads)
    )
    causal_frac = op.attended / (op.q_len * op.kv_len)
    # the math runs no narrower than FP8 (FlashAttention-3's FP8 path is the narrowest attention
    # kernel; an FP4 KV cache, TensorRT-LLM's NVFP4 KV, is dequantized to FP8 for QK^T and PV);
    # the bytes stay the cache's
    math = "fp8" if op.dtype == "fp4" else op.dtype
    qk, _ = _matmul_parts(mc, m, op.kv_len, op.head_dim, batch, math, math)
    pv, _ = _matmul_parts(mc, m, op.d_v, op.kv_len, batch, math, math)
    scale = 2.5 if op.backward else 1.0
    scores = op.batch * op.heads * op.attended * scale
    vector_flops = SOFTMAX_FLOPS_PER_SCORE * scores
    matrix = (qk + pv) * causal_frac * scale
    if op.flops / mc.chip.vector_flops < matrix:
        # a few query rows against a long context starve a systolic array (each weight tile
        # serves only the group's rows): the mapper runs the products on the vector unit
        vector_flops += op.flops
        matrix = 0.0
    vector = max(vector_flops / mc.chip.vector_flops, op.exps / mc.chip.transcendentals_per_s)
    e = nbytes(op.dtype) * (2 if op.backward else 1)
    q_o = e * op.batch * op.heads * op.q_len * (op.head_dim + op.d_v)
    offchip = op.bytes - q_o if mc.resident(q_o) else op.bytes  # the KV cache always streams
    parts = {"compute": matrix, "vector": vector, "memory": offchip / mc.offchip_bandwidth}
    run_dtype = mc.matrix_dtype(math)[0]
    return Cost(
        parts,
        {mc.chip.hbm.name: offchip},
        macs=op.flops / 2 if matrix else 0.0,
        mac_dtype=run_dtype,
        vector_flops=vector_flops,
        peak=mc.chip.peak_flops(run_dtype),
    )


def cost_vector(mc: Machine, op: Vector) -> Cost:
    vector = max(
        op.flops / mc.chip.vector_flops, op.transcendentals / mc.chip.transcendentals_per_s
    )
    offchip = 0.0 if not op.param_state and mc.resident(op.bytes) else op.bytes
    return Cost(
        {"vector": vector, "memory": offchip / mc.offchip_bandwidth},
        {mc.chip.hbm.name: offchip},
        vector_flops=op.flops,
    )


def cost_embedding(mc: Machine, op: Embedding) -> Cost:
    return Cost({"memory": op.bytes / mc.offchip_bandwidth}, {mc.chip.hbm.name: op.bytes})


def cost_collective(mc: Machine, op: Collective) -> Cost:
    """Ring collectives, alpha-beta model (Thakur, Rabenseifner & Gropp 2005): all-reduce
    moves 2(n-1)/n of the buffer over each chip's links in 2(n-1) steps; all-gather and
    reduce-scatter half of that; all-to-all (n-1)/n in n-1 steps."""
    n = op.group
    if n <= 1:
        return Cost({"interconnect": 0.0}, {})
    if not mc.chip.links:
        raise SpecError(
            f"chip {mc.chip.name}: `links` is empty but the workload has a "
            f"{op.op} over {n} chips; add a [[links]] entry or use tp=1"
        )
    link = mc.chip.links[0]
    beta = mc.chip.link_bandwidth / 2 * mc.cal.link_frac  # one direction
    steps, share = {
        "all_reduce": (2 * (n - 1), 2 * (n - 1) / n),
        "all_gather": (n - 1, (n - 1) / n),
        "reduce_scatter": (n - 1, (n - 1) / n),
        "all_to_all": (n - 1, (n - 1) / n),
    }[op.op]
    comm = share * op.size / beta + steps * link.latency
    return Cost(
        {"interconnect": comm, "vector": op.flops / mc.chip.vector_flops},
        {mc.chip.hbm.name: op.size * (3 if op.op == "all_reduce" else 2)},
        vector_flops=op.flops,
    )


RULES = {
    MatMul: cost_matmul,
    Conv2d: cost_conv,
    Attention: cost_attention,
    Vector: cost_vector,
    Embedding: cost_embedding,
    Collective: cost_collective,
}


def _overhead(mc: Machine, op: Op) -> float:
    """One dispatch of `op`: none where it runs inside another op's kernel (`Op.shares_kernel`:
    a grouped GEMM's second group)."""
    return 0.0 if op.shares_kernel else mc.cal.op_overhead_s


def finish_op(
    mc: Machine,
    op: Op,
    cost: Cost,
    *,
    busy_s: float | None = None,
    cycles: float | None = None,
    array_cycles: float | None = None,
    compute_idle_cycles: float | None = None,
) -> OpResult:
    """One op's record: its time is the longest part (or `busy_s`, a simulated instance time)
    plus the dispatch overhead (`_overhead`); energy from its MACs, vector FLOPs, bytes and
    idle power. Cycle engine: `cycles` is the simulated instance's timeline (the op's wall
    cycles then add the dispatch overhead), `array_cycles` the matrix array's busy span within
    it (SCALE-Sim's compute cycles), `compute_idle_cycles` the timeline minus the busiest
    compute engine."""
    parts = dict(cost.parts)
    busiest = max(parts, key=parts.get)
    work = parts[busiest] if busy_s is None else busy_s
    overhead = _overhead(mc, op)
    per_instance = work + overhead
    bound = "latency" if overhead > work else busiest
    if bound == "compute":
        bound = cost.compute_limit
    chip, cal = mc.chip, mc.cal
    energy = (
        (cost.macs * mac_energy(chip, cost.mac_dtype, cal.matrix_frac) if cost.macs else 0.0)
        + cost.vector_flops * vector_flop_energy(chip, cal.matrix_frac)
        + sum(
            cost.bytes_by_level.get(lvl.name, 0.0) * byte_energy(chip, lvl) for lvl in chip.memory
        )
        + chip.static_power * per_instance
    )
    n = op.count
    return OpResult(
        name=op.name,
        kind=op.kind,
        count=n,
        time_s=per_instance * n,
        flops=op.flops * n,
        energy_j=energy * n,
        bound=bound,
        bytes_by_level={k: v * n for k, v in cost.bytes_by_level.items()},
        peak_flops_per_s=cost.peak,
        parts_s={k: v * n for k, v in parts.items()} | {"overhead": overhead * n},
        cycles=None if cycles is None else (cycles + overhead * chip.clock) * n,
        array_cycles=None if array_cycles is None else array_cycles * n,
        compute_idle_cycles=None if compute_idle_cycles is None else compute_idle_cycles * n,
    )


def _over_tdp(chip: ChipSpec, ops: tuple[OpResult, ...]) -> str:
    """A warning when the run's average power exceeds the chip's TDP (by `TDP_MARGIN`), naming
    the part of the energy model that dominates (a memory level's bytes, or compute and idle)."""
    time_s = sum(o.time_s for o in ops)
    total = sum(o.energy_j for o in ops)
    if not time_s or total / time_s <= TDP_MARGIN * chip.tdp:
        return ""
    parts = {
        f"{lvl.name} traffic": sum(o.bytes_by_level.get(lvl.name, 0.0) for o in ops)
        * byte_energy(chip, lvl)
        for lvl in chip.memory
    }
    parts["compute and idle power"] = total - sum(parts.values())
    part, joules = max(parts.items(), key=lambda kv: kv[1])
    level = next((m for m in chip.memory if f"{m.name} traffic" == part), None)
    fix = (
        f"; check [[memory]] {level.name}'s energy_per_byte "
        f"({byte_energy(chip, level) / PJ_PER_BIT:.2f} pJ/bit)"
        if level is not None
        else "; check the chip's tdp and clock"
    )
    return (
        f"average power {total / time_s:,.0f} W exceeds {chip.name}'s TDP {chip.tdp:,.0f} W: "
        f"{part} is {100 * joules / total:.0f}% of the energy{fix}"
    )


PJ_PER_BIT = 1e-12 / 8  # J per byte of 1 pJ/bit
# The energy model puts a matmul at the sustained rate at the TDP (perf/energy.py), so a
# compute-bound run lands a few percent above it once its memory traffic is added (H100 8K GEMM:
# 725 W of 700 W); only a run beyond this margin says the chip's figures disagree.
TDP_MARGIN = 1.1


def make_result(
    graph: Graph, chip: ChipSpec, mc: Machine, ops: tuple[OpResult, ...], *, engine: str
) -> Result:
    """The graph's result from its op records (peak of the main dtype, memory warning)."""
    heavy = max(ops, key=lambda o: o.flops, default=None)
    peak = (
        heavy.peak_flops_per_s
        if heavy and heavy.peak_flops_per_s
        else chip.peak_flops(mc.matrix_dtype("bf16")[0])
    )
    warnings = list(graph.meta.get("warnings", ()))  # e.g. unsupported ops an importer costed
    power = _over_tdp(chip, ops)
    if power:
        warnings.append(power)
    if graph.resident_bytes > chip.hbm.capacity:
        warnings.append(
            f"working set {si(graph.resident_bytes, 'B')} exceeds {chip.name}'s "
            f"{si(chip.hbm.capacity, 'B')} of {chip.hbm.name}: costed anyway; "
            "use more chips (train/serve plan capacity)"
        )
    return Result(
        chip=chip.name,
        workload=graph.name,
        engine=engine,
        ops=ops,
        peak_flops_per_s=peak,
        memory_capacity_bytes=chip.hbm.capacity,
        resident_bytes=graph.resident_bytes,
        tokens=graph.tokens,
        warnings=tuple(warnings),
        convention=convention(graph),
    )


def convention(graph: Graph) -> str:
    """'logits: ...; attention: ...' from a transformer graph's meta (empty for others)."""
    parts = [f"{k}: {graph.meta[k]}" for k in ("logits", "attention") if graph.meta.get(k)]
    return "; ".join(parts)


def estimate(graph: Graph, chip: ChipSpec, *, deployed: bool = False) -> Result:
    """Cost `graph` on one `chip` with the analytical model. `deployed`: the graph is part of a
    deployed model run (serving, training), so narrow-dtype matrix work runs at the family's
    `narrow_frac` (perf/calibration.py); False for isolated kernels and benchmarks."""
    mc = Machine(chip, calibration(chip.family), deployed)
    ops = tuple(finish_op(mc, op, RULES[type(op)](mc, op)) for op in graph.ops)
    return make_result(graph, chip, mc, ops, engine="analytical")
