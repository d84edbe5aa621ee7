"""The memory model's framework mechanisms, each by hand from its source: torchtitan's per-op
selective activation checkpointing (memory.OP_SAC) and PyTorch's eager cross entropy
(memory.LOSS_BUFFERS)."""

from __future__ import annotations

import pytest

from chipforge.cluster.memory import activation_bytes_per_layer, memory_per_chip
from chipforge.cluster.search import plan_training
from chipforge.errors import WorkloadError
from chipforge.perf import estimate
from chipforge.spec.loader import load_chip
from chipforge.workload.config import ModelConfig, load_model
from chipforge.workload.llm import build

C = load_model("llama3-8b", layers=2)  # h 4096, 32 heads of 128, 8 KV heads, SwiGLU 14336
SHAPE = dict(mb=2, seq=8192)


def test_op_sac_keeps_the_block_input_every_other_matmul_and_the_attention_output():
    """torchtitan's policy (parallelize_llama.py `_save_list`, `_custom_policy`): the block's
    matmuls in call order are wq, wk, wv, wo, w1, w3, w2; it saves the 1st, 3rd, 5th and 7th
    (wq 4096, wv 1024, w1 14336, w2 4096 wide), the SDPA output (4096) with its fp32 log-sum-exp
    per head (32), and keeps the block input (4096): 16-bit, so 2 bytes each."""
    tokens = 2 * 8192
    per_token = 2 * (4096 + 4096 + 1024 + 14336 + 4096 + 4096) + 4 * 32
    got = activation_bytes_per_layer(C, tp=1, recompute="selective",
                                     recompute_modules=("op_sac",), **SHAPE)  # fmt: skip
    assert got == pytest.approx(per_token * tokens)
    # Megatron's selective set keeps 34 s*b*h (Korthikanti Table 2): twice as much here
    megatron = activation_bytes_per_layer(C, tp=1, recompute="selective", **SHAPE)
    assert megatron == pytest.approx(34 * tokens * 4096) and got < 0.5 * megatron
    # TP 8 with sequence parallelism: the input and the column-parallel outputs split; w2's
    # row-parallel output is whole (partial sums) until its reduce-scatter, whose outputs (wo's
    # and w2's) the policy saves too
    tp = (4096 + 4096 + 1024 + 14336 + 4096 + 2 * 4096) / 8 + 4096
    got8 = activation_bytes_per_layer(C, tp=8, recompute="selective",
                                      recompute_modules=("op_sac",), **SHAPE)  # fmt: skip
    assert got8 == pytest.approx((2 * tp + 4 * 32 / 8) * tokens)


def test_op_sac_recomputes_the_unsaved_matmuls_and_every_pointwise_op():
    """The backward pass redoes the block's forward but the saved ops: wk (1024 of the fused
    QKV's 6144 columns), wo, w3 (half the fused up projection) and the norms, RoPE, the SwiGLU
    and the residual adds; not the attention core (its output is saved), nor wq, wv, w1, w2."""
    kw = dict(tp=1, pp=1, dp=8, cp=1, ep=1, zero=3, micro_batch=2, seq=8192, global_batch=16,
              dtype="bf16")  # fmt: skip
    none = plan_training("h100", C, 8, recompute="none", **kw)
    sac = plan_training("h100", C, 8, recompute="selective", recompute_modules=("op_sac",), **kw)
    ops = estimate(build(C, phase="train", batch=2, seq=8192, scope="layer"), load_chip("h100")).ops
    fwd = {o.name.rsplit(".", 1)[-1]: o.time_s for o in ops
           if not any(p in o.name for p in (".bwd", ".dgrad", ".wgrad", "optimizer"))}  # fmt: skip
    share = {"qkv_proj": 1024 / 6144, "o_proj": 1.0, "ffn_up": 0.5, "ffn_down": 0.0,
             "attention": 0.0}  # fmt: skip
    redo = sum(t * share.get(name, 1.0) for name, t in fwd.items())
    extra = sac.times["compute_s"] - none.times["compute_s"]
    assert extra == pytest.approx(C.layers * redo, rel=1e-6)  # one micro-batch of 2, 2 layers
    assert 0 < redo < sum(fwd.values()) - fwd["attention"]


def test_op_sac_stands_alone_on_dense_models():
    kw = dict(tp=1, pp=1, dp=8, cp=1, ep=1, zero=3, micro_batch=1, seq=4096, recompute="selective")
    with pytest.raises(WorkloadError, match="op_sac"):
        plan_training("h100", C, 8, recompute_modules=("op_sac", "core_attn"), **kw)
    moe = load_model("mixtral-8x7b", layers=2)
    with pytest.raises(WorkloadError, match="op_sac"):
        plan_training("h100", moe, 8, recompute_modules=("op_sac",), **kw)


def test_eager_cross_entropy_holds_three_fp32_logits():
    """PyTorch's F.cross_entropy on fp32 logits (torchtitan): log_softmax's saved output, the
    nll_loss gradient and log_softmax's input gradient, each 4 x tokens x vocab bytes, at the
    start of the backward pass; Megatron-Core's fused vocab-parallel loss keeps one."""
    kw = dict(tp=1, pp=1, dp=8, cp=1, ep=1, zero=3, recompute="full", mb=2, seq=8192)
    one = 4 * 2 * 8192 * C.vocab
    assert memory_per_chip(C, **kw)["loss_bytes"] == pytest.approx(one)
    assert memory_per_chip(C, loss="eager", **kw)["loss_bytes"] == pytest.approx(3 * one)
    # two stages of one layer: the last, one micro-batch and the logits, is the busiest; under
    # torch.distributed.pipelining it also keeps each micro-batch's fp32 logits (pp by default)
    two = memory_per_chip(C, loss="eager", **{**kw, "pp": 2})
    assert two["loss_bytes"] == pytest.approx((3 + 2) * one)
    # under TP torchtitan's loss runs vocabulary-parallel: four buffers per rank (LOSS_BUFFERS_TP),
    # Megatron's fused loss still one
    tp2 = {**kw, "tp": 2, "dp": 4}
    assert memory_per_chip(C, loss="eager", **tp2)["loss_bytes"] == pytest.approx(4 * one / 2)
    assert memory_per_chip(C, **tp2)["loss_bytes"] == pytest.approx(one / 2)
    with pytest.raises(WorkloadError, match="--loss"):
        plan_training("h100", C, 8, loss="chunked", tp=1, pp=1, dp=8, micro_batch=1, seq=4096)


def _saved_per_logit(fn) -> float:
    """Bytes per logit that `fn`'s autograd keeps for the backward pass (saved_tensors_hooks)."""
    torch = pytest.importorskip("torch")
    pred = torch.randn(2, 64, 4096, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, 4096, (2, 64))
    saved: dict[int, int] = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fn(pred, labels)
    loss.backward()
    assert pred.grad.dtype == torch.bfloat16  # the gradient leaves in the logits' dtype
    return sum(saved.values()) / pred.numel()


def _torchtitan_cross_entropy(pred, labels):  # components/loss.py (820504e, e7c0cae)
    import torch

    return torch.nn.functional.cross_entropy(pred.flatten(0, 1).float(), labels.flatten(0, 1))


def test_compiled_cross_entropy_holds_one_fp32_logits_worth():
    """torchtitan compiles its loss with the blocks from April 2025 (memory.LOSS_BUFFERS
    "compiled"): one fp32 logits-sized buffer, as Megatron's fused loss, with torchtitan's other
    entries (the June 2025 benchmark rows say so: check_validate.LOSS_SOURCES)."""
    from chipforge.cluster import check_validate as cv
    from chipforge.cluster.memory import (
        GATHERED_GEMM_INPUTS,
        PIPELINE_FSDP_GRAD_BYTES,
        PIPELINE_FSDP_UNSHARDED_WEIGHTS,
        PIPELINE_KEEPS_OUTPUTS,
    )

    kw = dict(tp=1, pp=1, dp=8, cp=1, ep=1, zero=3, recompute="full", mb=2, seq=8192)
    one = 4 * 2 * 8192 * C.vocab
    assert memory_per_chip(C, loss="compiled", **kw)["loss_bytes"] == pytest.approx(one)
    assert PIPELINE_KEEPS_OUTPUTS["compiled"] and PIPELINE_FSDP_GRAD_BYTES["compiled"] == 4
    assert {"compiled"} <= PIPELINE_FSDP_UNSHARDED_WEIGHTS & GATHERED_GEMM_INPUTS
    loss = {r["id"]: cv.training_row(r)["loss"] for r in cv.rows() if r["id"].startswith("tt")}
    assert loss["tttrainy-h200x32-8b-fp8"] == loss["ttasync-8b-bf16-async-tp"] == "compiled"
    assert loss["tt2412-t1-fsdp-compile"] == loss["ttdoc-l3-8b-a100x64-sel-op"] == "eager"
    # eager keeps fp32 copies (log_softmax's output): at least one fp32 logits-sized buffer
    assert _saved_per_logit(_torchtitan_cross_entropy) >= 4


@pytest.mark.slow
def test_inductor_keeps_only_the_bf16_logits_for_the_cross_entropy_backward():
    """What torch.compile's cross entropy keeps (Inductor on CPU, ~15 s): the bf16 logits and
    per-row statistics, no fp32 copy; its backward writes the bf16 gradient."""
    torch = pytest.importorskip("torch")
    compiled = torch.compile(_torchtitan_cross_entropy)
    assert 2 <= _saved_per_logit(compiled) < 2.1


def _backward_peak_above_saved(parallel: bool) -> float:
    """fp32 logits-sized buffers the cross entropy's backward adds above what the forward left
    (process RSS polled while it runs, on CPU: tensors above glibc's largest mmap threshold,
    32 MiB, are mapped and unmapped with their storage)."""
    import contextlib
    import os
    import threading

    torch = pytest.importorskip("torch")
    dist = pytest.importorskip("torch.distributed")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor
    from torch.distributed.tensor.parallel import loss_parallel

    if not os.path.exists("/proc/self/statm"):
        pytest.skip("needs /proc (Linux) to read the resident set")
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    if not dist.is_initialized():
        # an in-process store: no TCP port to collide with another test run on the machine
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    mesh = init_device_mesh("cpu", (1,))
    n, vocab = 2048, 8192  # one fp32 buffer: 64 MiB
    logits = torch.randn(2, n // 2, vocab, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, vocab, (2, n // 2))
    pred = distribute_tensor(logits, mesh, [Shard(-1)]) if parallel else logits
    with loss_parallel() if parallel else contextlib.nullcontext():
        loss = torch.nn.functional.cross_entropy(pred.flatten(0, 1).float(), labels.flatten(0, 1))
        del pred  # as torchtitan's train step
        start = rss()
        peak, done = [start], threading.Event()

        def poll() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss())

        thread = threading.Thread(target=poll)
        thread.start()
        loss.backward()
        done.set()
        thread.join()
    return (peak[0] - start) / (n * vocab * 4)


def test_the_vocabulary_parallel_loss_holds_one_buffer_more_in_its_backward():
    """memory.LOSS_BUFFERS "eager" (3) and LOSS_BUFFERS_TP (4), measured: above the saved
    log-softmax output the plain backward adds 2 buffers (nll's gradient, log_softmax's input
    gradient), DTensor's loss_parallel backward 3 (zeros, their sum with exp, the product)."""
    from chipforge.cluster.memory import LOSS_BUFFERS, LOSS_BUFFERS_TP

    def measured(parallel: bool, want: float) -> float:
        """The polled peak can only miss a buffer's lifetime (the poller not scheduled on a
        loaded machine), never add one: the largest of up to three runs."""
        got = 0.0
        for _ in range(3):
            got = max(got, _backward_peak_above_saved(parallel))
            if abs(got - want) <= 0.3:
                break
        return got

    want, want_tp = LOSS_BUFFERS["eager"] - 1, LOSS_BUFFERS_TP["eager"] - 1
    assert measured(False, want) == pytest.approx(want, abs=0.3)
    assert measured(True, want_tp) == pytest.approx(want_tp, abs=0.3)


def test_layer_sac_checkpoints_every_second_block_whole():
    """torchtitan's layer policy (ac_freq 2): half the blocks keep Korthikanti's 34 s*b*h (flash
    attention), half only their input (2), and the backward pass redoes half the blocks' whole
    forward."""
    tokens = 2 * 8192
    got = activation_bytes_per_layer(C, tp=1, recompute="selective",
                                     recompute_modules=("layer_sac",), **SHAPE)  # fmt: skip
    assert got == pytest.approx((34 + 2) / 2 * tokens * 4096)
    kw = dict(tp=1, pp=1, dp=8, cp=1, ep=1, zero=3, micro_batch=2, seq=8192, global_batch=16,
              dtype="bf16")  # fmt: skip
    none = plan_training("h100", C, 8, recompute="none", **kw)
    full = plan_training("h100", C, 8, recompute="full", **kw)
    half = plan_training("h100", C, 8, recompute="selective", recompute_modules=("layer_sac",),
                         **kw)  # fmt: skip
    redo = full.times["compute_s"] - none.times["compute_s"]
    assert half.times["compute_s"] - none.times["compute_s"] == pytest.approx(redo / 2, rel=1e-6)
    with pytest.raises(WorkloadError, match="layer_sac"):
        plan_training("h100", C, 8, recompute_modules=("layer_sac", "op_sac"), **kw)


# MaxText's layer at 76bd53b (C2's global_parameter_scale 32, cut to 2 layers): 32 heads of
# 256 (MHA), hidden 10240, a relu MLP of two matrices 32768 wide (act=gelu here), tied embedding
MAXTEXT = ModelConfig(layers=2, hidden=10240, heads=32, head_dim=256, ffn=32768, vocab=32768,
                      act="gelu", tied_embeddings=True)  # fmt: skip


def test_maxtext_minimal_keeps_the_layer_input_and_every_projection_output():
    """remat_policy minimal (layers/models.py: jax checkpoint_dots_with_no_batch_dims): the
    layer input (10240), query, key, value (3 x 32 x 256), out (10240), wi (32768) and wo
    (10240) outputs, bf16, each split over the tensor axis; SwiGLU's two wi add a second ffn."""
    tokens = 8 * 2048
    per_token = 2 * (10240 + 3 * 8192 + 10240 + 32768 + 10240)  # 176,128 B
    for tp in (1, 4):
        got = activation_bytes_per_layer(MAXTEXT, mb=8, seq=2048, tp=tp, recompute="selective",
                                         recompute_modules=("maxtext_minimal",))  # fmt: skip
        assert got == pytest.approx(per_token / tp * tokens)
    # about half of Megatron's selective set (Korthikanti Table 2: 34 s*b*h)
    megatron = activation_bytes_per_layer(MAXTEXT, mb=8, seq=2048, tp=4, recompute="selective")
    assert megatron == pytest.approx(34 * 10240 / 4 * tokens) and got < 0.55 * megatron
    # Llama 3 8B (GQA 8 x 128, SwiGLU: wi_0 and wi_1)
    llama = 2 * (4096 + 4096 + 2 * 1024 + 4096 + 2 * 14336 + 4096)
    got = activation_bytes_per_layer(C, tp=2, recompute="selective",
                                     recompute_modules=("maxtext_minimal",), **SHAPE)  # fmt: skip
    assert got == pytest.approx(llama / 2 * 2 * 8192)


def test_maxtext_minimal_recomputes_all_but_the_projections():
    """The backward pass redoes every forward op that is not a dot_general without batch
    dimensions: the attention core (the flash kernel), the norms, the activation and the
    residual adds; none of the GEMMs. Its cost lies between Megatron's selective (the core
    only) and full recompute (the whole forward)."""
    kw = dict(tp=1, pp=1, dp=8, cp=1, ep=1, zero=3, micro_batch=2, seq=2048, global_batch=16,
              dtype="bf16")  # fmt: skip
    none = plan_training("tpu-v5p", MAXTEXT, 8, recompute="none", **kw)
    core = plan_training("tpu-v5p", MAXTEXT, 8, recompute="selective", **kw)
    full = plan_training("tpu-v5p", MAXTEXT, 8, recompute="full", **kw)
    mini = plan_training("tpu-v5p", MAXTEXT, 8, recompute="selective",
                         recompute_modules=("maxtext_minimal",), **kw)  # fmt: skip
    g = build(MAXTEXT, phase="train", batch=2, seq=2048, scope="layer")
    ops = estimate(g, load_chip("tpu-v5p")).ops
    kind = {o.name: o.kind for o in g.ops}
    fwd = [o for o in ops if not any(p in o.name for p in (".bwd", "grad", "optimizer"))]
    redo = sum(o.time_s for o in fwd if kind[o.name] not in ("matmul", "collective"))
    assert redo > sum(o.time_s for o in fwd if kind[o.name] == "attention") > 0
    extra = mini.times["compute_s"] - none.times["compute_s"]
    assert extra == pytest.approx(MAXTEXT.layers * redo, rel=1e-6)
    base = none.times["compute_s"]
    assert core.times["compute_s"] - base < extra < full.times["compute_s"] - base
    with pytest.raises(WorkloadError, match="maxtext_minimal"):
        plan_training("tpu-v5p", MAXTEXT, 8, recompute_modules=("maxtext_minimal", "mlp"),
                      **{**kw, "recompute": "selective"})  # fmt: skip


def test_maxtext_proj_keeps_the_queries_keys_values_and_redoes_the_whole_layer():
    """remat_policy proj (save_only_these_names query_proj, key_proj, value_proj): the layer
    input and the named queries, keys and values (3 x 32 x 256), bf16, split over TP; their
    RMSNorms' backward needs the unsaved projections, so the backward redoes the whole forward
    with its TP collectives, as full recompute does."""
    got = activation_bytes_per_layer(MAXTEXT, mb=8, seq=2048, tp=4, recompute="selective",
                                     recompute_modules=("maxtext_proj",))  # fmt: skip
    assert got == pytest.approx(2 * (10240 + 3 * 8192) / 4 * 8 * 2048)
    kw = dict(tp=4, pp=1, dp=2, cp=1, ep=1, zero=3, micro_batch=2, seq=2048, global_batch=4,
              dtype="bf16")  # fmt: skip
    full = plan_training("tpu-v5p", MAXTEXT, 8, recompute="full", **kw)
    proj = plan_training("tpu-v5p", MAXTEXT, 8, recompute="selective",
                         recompute_modules=("maxtext_proj",), **kw)  # fmt: skip
    assert proj.step_time_s == pytest.approx(full.step_time_s, rel=1e-9)
    assert proj.memory["activations_bytes"] > full.memory["activations_bytes"]


def test_the_last_stage_is_the_busiest_where_the_loss_outweighs_the_first_stages_batches():
    """1F1B: the first stage holds pp micro-batches of its layers' activations, the last one
    micro-batch and the loss's logits. Llama 3 8B (32 layers, vocabulary 128,256) on 2 stages at
    8K tokens, torchtitan's op policy: with the eager loss (3 fp32 logits, 12 GiB) the last stage
    holds more (16 layers x 1 + logits > 16 x 2); with the fused one the first stage does."""
    c = load_model("llama3-8b")
    kw = dict(tp=1, pp=2, dp=8, cp=1, ep=1, zero=1, recompute="selective", mb=1, seq=8192,
              recompute_modules=("op_sac",))  # fmt: skip
    per_layer = activation_bytes_per_layer(c, tp=1, recompute="selective", mb=1, seq=8192,
                                           recompute_modules=("op_sac",))  # fmt: skip
    logits = 3 * 4 * 8192 * c.vocab
    eager = memory_per_chip(c, loss="eager", **kw)
    assert eager["activations_bytes"] == pytest.approx(16 * per_layer)
    # (torch.distributed.pipelining keeps the 2 micro-batches' fp32 logits too)
    assert eager["loss_bytes"] == pytest.approx(logits * 5 / 3) and logits > 16 * per_layer
    fused = memory_per_chip(c, loss="fused", **kw)
    none = activation_bytes_per_layer(c, tp=1, recompute="none", mb=1, seq=8192)
    # (and one layer's recomputed activations during its backward)
    assert fused["activations_bytes"] == pytest.approx(32 * per_layer + none - per_layer)
    assert fused["loss_bytes"] == 0.0


def test_the_pipeline_holds_no_more_micro_batches_than_the_step_has():
    """In flight on a rank (memory.in_flight_chunks): 1F1B warms up with min(m, pp - rank)
    forwards (torch's Schedule1F1B `warmup_chunks`); interleaved 1F1B with (v-1)p + 2(p-1-rank)
    chunk forwards capped at m*v (torch's `_get_warmup_ops`), then one more in each steady
    step. Llama 3 8B (32 layers) on 4 stages, no recompute (34 s*b*h per layer and
    micro-batch): 8 layers per rank, chunks of 4 under v = 2."""
    c = load_model("llama3-8b")
    kw = dict(tp=1, pp=4, dp=2, cp=1, ep=1, zero=1, recompute="none", mb=1, seq=4096)
    layer = 34 * 4096 * c.hidden
    acts = lambda **k: memory_per_chip(c, **kw, **k)["activations_bytes"]  # noqa: E731
    assert acts() == pytest.approx(8 * 4 * layer)  # pp micro-batches
    assert acts(microbatches=2) == pytest.approx(8 * 2 * layer)
    # interleaved: 4 + 6 + 1 = 11 chunks of 4 layers, as Korthikanti's 4 x 8 x (1 + 3/8)
    assert acts(interleave=2) == pytest.approx(11 * 4 * layer)
    assert acts(interleave=2, microbatches=4) == pytest.approx(8 * 4 * layer)  # every forward
    assert acts(interleave=2, microbatches=8) == pytest.approx(11 * 4 * layer)
    # the plan prices the step's own count: global batch 8 over dp 2 -> 4 micro-batches of 1
    plan = dict(tp=1, pp=4, dp=2, micro_batch=1, recompute="none", interleave=2, seq=4096)
    few = plan_training("h100", c, 8, global_batch=8, **plan).memory_per_chip_bytes
    many = plan_training("h100", c, 8, global_batch=64, **plan).memory_per_chip_bytes
    assert many - few == pytest.approx(3 * 4 * layer)


def test_the_interleaved_last_rank_holds_fewer_chunks_and_the_logits():
    """Interleaved 1F1B's last rank warms up with (v-1)p chunk forwards (no hop to the last
    stage), one more in flight: 3 chunks of 8 layers at pp 2, v 2, against the first rank's 5;
    with full recompute Megatron's fused loss (one fp32 logits buffer, vocabulary 128,256)
    outweighs the 2 chunks' difference, so the last rank is the busiest."""
    c = load_model("llama3-8b")
    kw = dict(tp=1, pp=2, dp=4, cp=1, ep=1, zero=1, recompute="full", mb=1, seq=8192)
    layer, logits = 2 * 8192 * c.hidden, 4 * 8192 * c.vocab
    got = memory_per_chip(c, interleave=2, **kw)
    assert logits > 2 * 8 * layer
    assert got["activations_bytes"] == pytest.approx(3 * 8 * layer)
    assert got["loss_bytes"] == pytest.approx(logits)


def test_torch_pipelining_keeps_every_micro_batch_output_on_the_last_stage():
    """torch.distributed.pipelining (torchtitan's PP) appends each forward's output to the
    stage's `output_chunks` until the step ends: at the last backward the last stage holds m
    fp32 logits (4 x mb x seq x vocab / tp bytes each) beside the eager loss's buffers (four:
    vocabulary-parallel under TP, LOSS_BUFFERS_TP); Megatron (fused) keeps none."""
    c = load_model("llama3-8b")
    kw = dict(tp=2, pp=2, dp=4, cp=1, ep=1, zero=1, recompute="full", mb=1, seq=8192)
    one = 4 * 8192 * c.vocab / 2
    eager = memory_per_chip(c, loss="eager", microbatches=8, **kw)
    assert eager["loss_bytes"] == pytest.approx((4 + 8) * one)
    fused = memory_per_chip(c, loss="fused", microbatches=8, **kw)
    assert fused["loss_bytes"] in (0.0, pytest.approx(one))


def test_torch_pipelining_with_fsdp_holds_the_stage_s_unsharded_fp32_gradients():
    """torch.distributed.pipelining turns FSDP's gradient sync off for every micro-batch's
    backward and reduce-scatters after the last; FSDP2 keeps each unsharded gradient upcast to
    torchtitan's fp32 reduce dtype: 4 bytes per stage parameter, not ZeRO-2's 2/dp; Megatron's
    (fused) and an unpipelined run keep the sharded bf16 gradients."""
    c = load_model("llama3-8b")
    kw = dict(tp=2, pp=4, dp=8, cp=1, ep=1, zero=2, recompute="full", mb=1, seq=4096)
    stage = (c.layers * (c.attention_params() + c.ffn_params(False)) / 2 / 4
             + c.vocab * c.hidden / 2)  # fmt: skip
    got = memory_per_chip(c, loss="eager", **kw)["gradients_bytes"]
    assert got == pytest.approx(4 * stage)
    assert memory_per_chip(c, loss="fused", **kw)["gradients_bytes"] == pytest.approx(2 * stage / 8)
    flat = memory_per_chip(c, loss="eager", **{**kw, "pp": 1})["gradients_bytes"]
    whole = c.layers * (c.attention_params() + c.ffn_params(False)) / 2 + c.vocab * c.hidden
    assert flat == pytest.approx(2 * whole / 8)  # (input and output embeddings, each over TP)


def test_torch_pipelining_with_fsdp_zero3_holds_the_stage_s_whole_bf16_weights():
    """Under pipelining torchtitan's FSDP keeps each layer gathered (reshard_after_forward =
    not pp_enabled; set_reshard_after_backward(False) before each non-last backward): the
    stage's bf16 weights whole, not 2/dp, and no gathered units beside them; one layer's bf16
    gradients still wait beside the fp32 ones. Megatron (fused) and one stage keep ZeRO-3."""
    c = load_model("llama3-8b")
    kw = dict(tp=2, pp=4, dp=8, cp=1, ep=1, zero=3, recompute="full", mb=1, seq=4096)
    stage = (c.layers * (c.attention_params() + c.ffn_params(False)) / 2 / 4
             + c.vocab * c.hidden / 2)  # fmt: skip
    unit = c.vocab * c.hidden / 2  # the embedding's TP shard outweighs a layer's
    got = memory_per_chip(c, loss="eager", **kw)
    assert got["weights_bytes"] == pytest.approx(2 * stage)
    assert got["zero3_gathered_bytes"] == pytest.approx(2 * unit)
    assert got["gradients_bytes"] == pytest.approx(4 * stage)
    fused = memory_per_chip(c, loss="fused", **kw)
    assert fused["weights_bytes"] == pytest.approx(2 * stage / 8)
    assert fused["zero3_gathered_bytes"] == pytest.approx(3 * 2 * unit)
    flat = memory_per_chip(c, loss="eager", **{**kw, "pp": 1})
    whole = c.layers * (c.attention_params() + c.ffn_params(False)) / 2 + c.vocab * c.hidden
    assert flat["weights_bytes"] == pytest.approx(2 * whole / 8)


def test_a_recomputed_layer_s_activations_exist_again_during_its_backward():
    """Activation checkpointing reruns a layer's forward when its backward starts: besides
    the stored layer inputs, one layer of one micro-batch holds its other activations (34 - 2
    s*b*h under full recompute, Korthikanti Table 2). The loss's buffers are freed by then, so
    a chip holding the loss adds only what the working set exceeds them by."""
    kw = dict(tp=1, dp=8, cp=1, ep=1, zero=1, recompute="full", mb=1, seq=8192)
    sbh = 8192 * 4096
    c = load_model("llama3-8b", layers=4)
    small = load_model("llama3-8b", layers=4, vocab=1024)
    # two stages: the first holds 2 micro-batches of 2 layers' inputs and the working set
    first = memory_per_chip(small, pp=2, **kw)
    assert first["activations_bytes"] == pytest.approx(2 * 2 * 2 * sbh + 32 * sbh)
    assert first["loss_bytes"] == 0.0
    # one stage: a large vocabulary's logits (4 x 8192 x 128,256 bytes) outweigh it
    flat = memory_per_chip(c, pp=1, **kw)
    assert flat["activations_bytes"] == pytest.approx(4 * 2 * sbh)
    flat = memory_per_chip(small, pp=1, **kw)
    logits = 4 * 8192 * 1024
    assert flat["activations_bytes"] == pytest.approx(4 * 2 * sbh + 32 * sbh - logits)
    # no recompute: nothing is recomputed
    none = memory_per_chip(small, pp=2, **{**kw, "recompute": "none"})["activations_bytes"]
    assert none == pytest.approx(2 * 2 * 34 * sbh)


def test_torchtitan_keeps_the_gathered_inputs_of_its_column_parallel_linears():
    """torchtitan's TP gathers each block's attention and MLP inputs (PrepareModuleInput, Shard(1)
    -> Replicate; with Float8 cast first) and its linears save that whole tensor: of Korthikanti's
    34 s*b*h/t, the QKV and fc1 inputs (2 + 2) become 2 + 2 s*b*h at 16 bits, 1 + 1 in FP8.
    Megatron saves the shard. Under full recompute it shows in the recomputed layer's working
    set: Llama 3 8B (4 layers), 2 stages of TP 4, torchtitan's eager loss."""
    c = load_model("llama3-8b", layers=4, vocab=1024)
    sbh, t = 8192 * 4096, 4
    kw = dict(mb=1, seq=8192, tp=t, recompute="none")
    megatron = activation_bytes_per_layer(c, **kw)
    assert megatron == pytest.approx(34 * sbh / t)
    tt = activation_bytes_per_layer(c, gathered_inputs=True, **kw)
    assert tt == pytest.approx(34 * sbh / t + 2 * 2 * sbh * (1 - 1 / t))
    fp8 = activation_bytes_per_layer(c, gathered_inputs=True, gemm_input_bytes=1, **kw)
    assert fp8 == pytest.approx((34 - 7) * sbh / t + 2 * sbh * (1 - 1 / t))
    plan = dict(tp=t, pp=2, dp=1, cp=1, ep=1, zero=1, recompute="full", mb=1, seq=8192)
    eager = memory_per_chip(c, loss="eager", **plan)["activations_bytes"]
    fused = memory_per_chip(c, loss="fused", **plan)["activations_bytes"]
    assert eager - fused == pytest.approx(2 * 2 * sbh * (1 - 1 / t))
