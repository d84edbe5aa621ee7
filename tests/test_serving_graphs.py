"""CUDA-graph padding of decode steps (TensorRT-LLM's CUDAGraphRunner: a generation-only batch
runs at the smallest captured size >= its own, the extra rows copies of one dummy generation
request that holds one cached token)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from chipforge.cli import app
from chipforge.cluster import plan_serving, serving
from chipforge.cluster.serving_plan import _load_chip
from chipforge.cluster.topology import topology_for
from chipforge.errors import WorkloadError
from chipforge.perf import estimate
from chipforge.workload.config import load_model
from chipforge.workload.ops import Attention

ISL, OSL = 1024, 256


def _plan(batch: int, graphs=(), chip="h100", model="llama3-8b"):
    ch, c = _load_chip(chip), load_model(model)
    return serving.evaluate(
        ch, c, 1, topology_for(ch, 1), tp=1, pp=1, ep=1, batch=batch, dt="bf16", kvd="bf16",
        isl=ISL, osl=OSL, cuda_graph_batches=graphs,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("b", "sizes", "padded"),
    [
        (1, (128, 256, 384, 512), 128),
        (128, (128, 256, 384, 512), 128),
        (129, (128, 256, 384, 512), 256),
        (154, (128, 256, 384, 512), 256),
        (385, (512, 128, 384, 256), 512),
        (513, (128, 256, 384, 512), 513),  # above the largest: eager, not padded
        (40, (), 40),  # no graphs
    ],
)
def test_graph_batch_rounds_up_as_the_runner_does(b, sizes, padded):
    """`_round_up_batch_size`: bisect_left over the sorted sizes; past the last, no padding."""
    assert serving._graph_batch(b, sizes) == padded


def test_padded_rows_run_every_op_but_attend_to_one_token():
    """The padded decode step, rebuilt op by op from the layer graphs: every non-attention op and
    the LM head at the padded batch, the real sequences' attention at their context, plus the
    dummy rows' attention at one cached token -- at most what a kernel of their own would take
    (they share the real rows' kernel, so its fixed cost is not paid twice)."""
    b, pad = 40, 64
    chip, c = _load_chip("h100"), load_model("llama3-8b")
    ctx = ISL + OSL // 2

    def ops(batch, n):
        g = serving._graph(c, "decode", batch, n, 1, "bf16", "bf16")
        return list(zip(g.ops, estimate(g, chip, deployed=True).ops, strict=True))

    other = sum(o.time_s for op, o in ops(pad, ctx) if not isinstance(op, Attention))
    attn = sum(o.time_s for op, o in ops(b, ctx) if isinstance(op, Attention))
    dummy = sum(o.time_s for op, o in ops(pad - b, 1) if isinstance(op, Attention))
    floor = c.layers * (other + attn + serving.LAYER_OVERHEAD_S) + serving._head(
        chip, c, pad, 1, "bf16"
    )
    got = _plan(b, (pad,)).breakdown["decode"]
    assert floor < got <= floor + c.layers * dummy
    plain, full = _plan(b).breakdown["decode"], _plan(pad).breakdown["decode"]
    assert plain < got < full  # dearer than the real rows alone, cheaper than 64 attending


def test_a_captured_batch_is_not_padded():
    assert _plan(64, (32, 64, 128)).breakdown["decode"] == _plan(64).breakdown["decode"]
    assert _plan(200, (32, 64, 128)).breakdown["decode"] == _plan(200).breakdown["decode"]


def test_padding_lengthens_tpot_and_the_plan_reports_its_sizes():
    kw = dict(isl=ISL, osl=OSL, tp=1, concurrency=40)
    plain = plan_serving("h100", "llama3-8b", 1, **kw)
    padded = plan_serving("h100", "llama3-8b", 1, cuda_graph_batches=[128, 64], **kw)
    assert padded.tpot_s > plain.tpot_s
    assert padded.throughput_tokens_per_s < plain.throughput_tokens_per_s
    assert padded.to_dict()["plan"]["cuda_graph_batches"] == [64, 128]


def test_dp_attention_groups_pad_their_own_batch():
    """Wide EP: each attention group's decode batch is padded (DeepSeek-R1 on 8 B200, 136 per
    GPU, graphs at 128/256/384/512: each group runs 256 rows, 120 of them dummies)."""
    chip, c = _load_chip("b200"), load_model("deepseek-v3")
    kw = dict(tp=1, pp=1, ep=8, dt="fp4", kvd="fp8", isl=804, osl=3736, osl_cv=1.25,
              attn_dtype="bf16")  # fmt: skip
    topo = topology_for(chip, 8)

    def decode(batch, graphs=()):
        return serving.evaluate(
            chip, c, 8, topo, batch=batch, cuda_graph_batches=graphs, **kw
        ).breakdown["decode"]

    plain, padded = decode(8 * 136), decode(8 * 136, (128, 256, 384, 512))
    assert plain < padded < decode(8 * 256)
    assert decode(8 * 256, (128, 256, 384, 512)) == decode(8 * 256)


@pytest.mark.parametrize("bad", [(0,), (64, -1), ("128",), (True,), "128,256", 128, (1.5,)])
def test_bad_sizes_are_refused_naming_the_flag(bad):
    with pytest.raises(WorkloadError, match="--cuda-graph-batches"):
        plan_serving("h100", "llama3-8b", 1, isl=ISL, osl=OSL, tp=1, concurrency=8,
                     cuda_graph_batches=bad)  # fmt: skip


def test_cli_flag():
    args = ["serve", "--chip", "h100", "--model", "llama3-8b", "--chips", "1", "--tp", "1",
            "--isl", "1024", "--osl", "256", "--concurrency", "40", "--json"]  # fmt: skip
    r = CliRunner().invoke(app, [*args, "--cuda-graph-batches", "64,128"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["plan"]["cuda_graph_batches"] == [64, 128]
    r = CliRunner().invoke(app, [*args, "--cuda-graph-batches", "64,x"])
    assert isinstance(r.exception, WorkloadError)  # the entry point: one line, exit 2
    assert "--cuda-graph-batches" in str(r.exception)
