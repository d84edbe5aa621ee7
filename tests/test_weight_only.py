"""Weight-only quantization (W8A16): weights stored and read at the narrow format, widened to the
16-bit dtype on chip, so the products run at the 16-bit rate on 16-bit activations
(jetstream-pytorch layers.WeightOnlyPerChannelQuantizedLinear: F.linear(bf16 inputs, int8
weight); `perf.engine.cost_matmul`, `serving.WEIGHT_ONLY`)."""

from __future__ import annotations

import pytest

from chipforge.cluster import serving as s
from chipforge.errors import WorkloadError
from chipforge.perf import estimate
from chipforge.spec.loader import load_chip
from chipforge.workload.graph import Graph
from chipforge.workload.ops import MatMul


def _op(m, dtype, weight_dtype=None):
    return MatMul(name="w", m=m, n=4096, k=4096, dtype=dtype, weight_dtype=weight_dtype)


def test_matmul_reads_the_weight_narrow_and_the_activations_wide():
    op = _op(8, "bf16", "int8")
    assert op.weight_bytes == 4096 * 4096 * 1
    assert op.bytes == 8 * 4096 * 2 + 4096 * 4096 * 1 + 8 * 4096 * 2
    assert op.flops == _op(8, "bf16").flops
    # an activation operand (not a weight) is never narrowed
    act = MatMul(name="a", m=8, n=64, k=64, dtype="bf16", weight=False, weight_dtype="int8")
    assert act.bytes == MatMul(name="a", m=8, n=64, k=64, dtype="bf16", weight=False).bytes


def _parts(op):
    chip = load_chip("tpu-v5e")
    (r,) = estimate(Graph("g", (op,)), chip, deployed=True).ops
    return r


def test_weight_only_costs_the_16_bit_rate_and_the_8_bit_weight_bytes():
    """Compute-bound (a long prefill): the time of the bf16 product, not the int8 one (v5e's
    int8 MXU rate is twice bf16's). Memory-bound (a small decode batch): the int8 weights'
    bytes, half of bf16's."""
    big = 8192
    wo, bf, i8 = (
        _parts(_op(big, "bf16", "int8")),
        _parts(_op(big, "bf16")),
        _parts(_op(big, "int8")),
    )
    assert wo.time_s == pytest.approx(bf.time_s, rel=1e-9)
    assert i8.time_s < 0.75 * wo.time_s  # the W8A8 reading ran twice as fast
    small = 8
    wo, bf = _parts(_op(small, "bf16", "int8")), _parts(_op(small, "bf16"))
    acts = small * 4096 * 2 * 2  # A in and C out, bf16
    assert wo.bytes_by_level["HBM2"] == 4096 * 4096 * 1 + acts
    assert bf.bytes_by_level["HBM2"] == 4096 * 4096 * 2 + acts
    assert wo.bound == bf.bound == "memory"
    assert wo.parts_s["compute"] == bf.parts_s["compute"]
    # the widening: one vector op per weight element, overlapping the product
    assert wo.parts_s["vector"] == pytest.approx(4096 * 4096 / load_chip("tpu-v5e").vector_flops)


def test_serving_weight_only_between_bf16_and_w8a8():
    """Llama 3 8B on v5e-8 at jetstream-pytorch's int8 setting (batch 256, int8 KV, dense 2048
    cache): every weight matmul of the block reads int8 and runs at bf16; the weights take
    1 byte per parameter in HBM, the activations 2; the step costs more than W8A8's (int8 x
    int8 at twice the rate) and less than bf16 weights'."""
    kw = dict(isl=121, osl=233, kv_dtype="int8", tp=8, pp=1, max_batch=256,
              batching="interleaved", dense_cache=2048)  # fmt: skip
    wo = s.plan_serving("tpu-v5e", "llama3-8b", 8, dtype="bf16", weight_dtype="int8", **kw)
    w8a8 = s.plan_serving("tpu-v5e", "llama3-8b", 8, dtype="int8", **kw)
    bf = s.plan_serving("tpu-v5e", "llama3-8b", 8, dtype="bf16", **kw | {"max_batch": 128})
    c = s.resolve_model("llama3-8b")
    assert wo.memory_per_chip["weights_bytes"] == pytest.approx(c.params() / 8)
    assert wo.memory_per_chip["activations_bytes"] == 2 * w8a8.memory_per_chip["activations_bytes"]
    assert wo.batch == w8a8.batch == 256
    assert w8a8.breakdown["decode"] < wo.breakdown["decode"]
    assert wo.breakdown["prefill"] < bf.breakdown["prefill"]  # batch 1: weight-read bound
    assert wo.to_dict()["weight_dtype"] == "int8" and bf.to_dict()["weight_dtype"] == "bf16"
    g = s._graph(c, "decode", 256, 2048, 8, "bf16", "int8", wdt="int8")
    weights = [op for op in g.ops if isinstance(op, MatMul) and op.weight]
    assert weights and all(op.dtype == "bf16" and op.weight_dtype == "int8" for op in weights)


def test_weight_dtype_must_be_narrower():
    with pytest.raises(WorkloadError, match="--weight-dtype"):
        s.plan_serving("tpu-v5e", "llama3-8b", 8, isl=128, osl=128, dtype="int8",
                       weight_dtype="bf16")  # fmt: skip
    with pytest.raises(WorkloadError, match="--weight-dtype"):
        s.plan_serving("tpu-v5e", "llama3-8b", 8, isl=128, osl=128, weight_dtype="int3")


def test_the_cli_states_it():
    """`chipforge serve --dtype bf16 --weight-dtype int8` is the API's weight-only plan."""
    import json

    from typer.testing import CliRunner

    from chipforge.cli import app

    args = ["serve", "--chip", "tpu-v5e", "--model", "llama2-7b", "--chips", "8", "--isl", "121",
            "--osl", "233", "--tp", "8", "--max-batch", "96", "--weight-dtype", "int8",
            "--kv-dtype", "int8", "--json"]  # fmt: skip
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    plan = s.plan_serving("tpu-v5e", "llama2-7b", 8, isl=121, osl=233, tp=8, max_batch=96,
                          weight_dtype="int8", kv_dtype="int8")  # fmt: skip
    assert (got["dtype"], got["weight_dtype"]) == ("bf16", "int8")
    assert got["throughput_tokens_per_s"] == pytest.approx(plan.throughput_tokens_per_s)


def test_compiler_and_cycle_engine_refuse_a_narrow_weight():
    """The compiler lowers B in the product's dtype (its buffer, DMA and array feed), so a
    weight-only matmul would be run and timed as a bf16 one with the int8 weight ignored: the
    compiler, the instruction estimate, the cycle engine and the functional simulator (which
    run its programs) refuse it in one line; the analytical engine prices it."""
    from chipforge.compiler import CompileError, compile_op
    from chipforge.compiler.estimate import instructions
    from chipforge.sim.engine import run_timing

    chip, op = load_chip("forge-n3"), _op(8, "bf16", "int8")
    for run in (lambda: compile_op(op, chip), lambda: instructions(op, chip),
                lambda: run_timing(Graph("g", (op,)), chip)):  # fmt: skip
        with pytest.raises(CompileError, match="weight-only quantization") as e:
            run()
        assert "\n" not in str(e.value)
    assert compile_op(_op(8, "bf16"), chip) is not None
    assert estimate(Graph("g", (op,)), chip).time_s > 0


def test_the_measured_expert_stream_reads_the_stored_weight_format():
    """The routed experts' decode floor (ChipSpec.moe_decode_bandwidth) streams each expert at
    its stored format: int4 weights widened to bf16 take half a byte per element over the
    field, not bf16's two (the block's time less the same block without the field is that
    floor's excess over the engine's estimate)."""
    from chipforge.cluster.serving import EXPERT_MATMULS

    chip = load_chip("b200")
    bare = chip.model_copy(update={"moe_decode_bandwidth": None})
    c = s.resolve_model("deepseek-v3")
    args = ("decode", 64, 2048, 1, "bf16", "bf16", 8)
    g = s._graph(c, *args, wdt="int4")
    r = estimate(g, chip, deployed=True)
    experts = [(op, o.time_s) for op, o in zip(g.ops, r.ops, strict=True)
               if op.name.rsplit(".", 1)[-1] in EXPERT_MATMULS]  # fmt: skip
    assert experts and all(op.b_dtype == "int4" for op, _ in experts)
    gap = sum(max(0.0, op.batch * op.n * op.k * 0.5 / chip.moe_decode_bandwidth - t)
              for op, t in experts)  # fmt: skip
    got = s._layer(chip, c, *args, wdt="int4")[0] - s._layer(bare, c, *args, wdt="int4")[0]
    assert gap > 0 and got == pytest.approx(gap, rel=1e-9)
