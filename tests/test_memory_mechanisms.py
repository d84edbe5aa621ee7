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
    kw = dict(tp=2, pp=1, dp=4, cp=1, ep=1, zero=3, recompute="full", mb=2, seq=8192)
    one = 4 * 2 * 8192 * C.vocab / 2
    assert memory_per_chip(C, **kw)["loss_bytes"] == pytest.approx(one)
    assert memory_per_chip(C, loss="eager", **kw)["loss_bytes"] == pytest.approx(3 * one)
    # two stages of one layer: the last, one micro-batch and the logits, is the busiest
    assert memory_per_chip(C, loss="eager", **{**kw, "pp": 2})["loss_bytes"] == 3 * one
    with pytest.raises(WorkloadError, match="--loss"):
        plan_training("h100", C, 8, loss="chunked", tp=1, pp=1, dp=8, micro_batch=1, seq=4096)


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
    assert eager["loss_bytes"] == pytest.approx(logits) and logits > 16 * per_layer
    fused = memory_per_chip(c, loss="fused", **kw)
    assert fused["activations_bytes"] == pytest.approx(32 * per_layer)
    assert fused["loss_bytes"] == 0.0
    # interleaving keeps the first stage's count (its last rank's is not modelled)
    inter = memory_per_chip(c, loss="eager", interleave=2, **kw)
    assert inter["loss_bytes"] == 0.0
