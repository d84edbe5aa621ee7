"""Published frontier checkpoints' config.json files, as their owners ship them on the HuggingFace
hub (copied by hand into tests/data/hf_configs; nothing downloaded), through the one model
resolver: each loads with its checkpoint's parameter count (within 1 %); the attention
variants (Llama 4's chunks, DeepSeek-V3.2's sparse attention, Qwen3-Next's Gated DeltaNet) are
checked against transformers' own tiny models under torch's FlopCounterMode.

The reference counts are the checkpoints' own (the safetensors files' tensor elements, as the hub
reports them and as keras-hub's conversion asserts equal to the transformers model's), or the
model card's where no exact count is published. `ModelConfig.params()` counts the main model: a
multi-token-prediction module and an image-text model's vision tower are not in it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chipforge.errors import WorkloadError
from chipforge.workload.resolve import resolve_model

CONFIGS = Path(__file__).parent / "data" / "hf_configs"

# file -> the published parameter count, each with its source
PUBLISHED = {
    # https://huggingface.co/Qwen/Qwen3-235B-A22B/blob/main/config.json; 235,093,634,560: the
    # checkpoint's count (keras-hub qwen3_moe_presets.py "qwen3_moe_235b_a22b_en", whose
    # conversion asserts it equal to the transformers model's)
    "qwen3-235b-a22b.json": 235_093_634_560,
    # https://huggingface.co/moonshotai/Kimi-K2-Instruct/blob/main/config.json (model_type
    # "kimi_k2", architectures ["DeepseekV3ForCausalLM"], 384 experts); model card: "1T total
    # parameters"; the checkpoint's logical count 1,026,408,232,448 (safetensors headers)
    "kimi-k2.json": 1_026_408_232_448,
    # https://huggingface.co/openai/gpt-oss-20b/blob/main/config.json; keras-hub
    # gpt_oss_presets.py "gpt_oss_20b_en": 20,914,757,184
    "gpt-oss-20b.json": 20_914_757_184,
    # https://huggingface.co/mistral-community/Mixtral-8x22B-v0.1/blob/main/config.json; the
    # BF16 checkpoint's 281,241,268,224 tensor bytes / 2 (Mistral AI's post: "141B")
    "mixtral-8x22b.json": 140_620_634_112,
    # https://huggingface.co/microsoft/phi-4/blob/main/config.json; model.safetensors.index.json
    # total_size 29,319,014,400 bytes of BF16 / 2
    "phi-4.json": 14_659_507_200,
    # https://huggingface.co/mistralai/Mistral-Small-24B-Base-2501/blob/main/config.json (Mistral
    # Small 3); keras-hub mistral_presets.py "magistral_small_2506_en" (the same decoder):
    # 23,572,403,200
    "mistral-small-24b-base-2501.json": 23_572_403_200,
    # https://huggingface.co/google/gemma-3-27b-it/blob/main/config.json (its text_config leaves
    # vocab_size and max_position_embeddings to Gemma3TextConfig's defaults); the decoder's
    # count, keras-hub gemma3_presets.py "gemma3_instruct_27b_text": 27,009,002,240 (the
    # image-text checkpoint, vision tower included: 27,432,062,576)
    "gemma-3-27b-it.json": 27_009_002_240,
    # https://huggingface.co/zai-org/GLM-4.5/blob/main/config.json (Glm4MoeForCausalLM); model
    # card: "355 billion total parameters"; the checkpoint's 358,337,791,296 hold its MTP layer
    # too (5.5 B with its own embedding and head copies), which `params()` leaves out
    "glm-4.5.json": 355_000_000_000,
    # https://huggingface.co/meta-llama/Llama-4-Scout-17B-16E-Instruct/blob/main/config.json
    # (Llama4ForConditionalGeneration; its chunked attention priced as 8192-token chunks); the
    # checkpoint's 108,641,793,536 (model card "109B") hold the
    # vision tower and projector too (0.87 B), which the decoder's count leaves out
    "llama-4-scout-17b-16e.json": 108_641_793_536,
    # https://huggingface.co/deepseek-ai/DeepSeek-V3.2-Exp/blob/main/config.json; model card:
    # 671B (DeepSeek-V3's 671B main model; the indexer adds 0.85 B), MTP module apart
    "deepseek-v3.2-exp.json": 671_000_000_000,
    # https://huggingface.co/Qwen/Qwen3-Next-80B-A3B-Instruct/blob/main/config.json; model card:
    # "80B" (transformers' Qwen3NextForCausalLM on the meta device: 79,674,391,296)
    "qwen3-next-80b-a3b.json": 80_000_000_000,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_config_has_the_checkpoints_parameter_count(name):
    model = resolve_model(f"{CONFIGS}/{name}")
    assert model.params() == pytest.approx(PUBLISHED[name], rel=0.01)


def test_llama4_chunked_attention_priced_as_chunks_or_as_the_user_states(tmp_path):
    scout = f"{CONFIGS}/llama-4-scout-17b-16e.json"
    chunked = resolve_model(scout)  # the 36 RoPE layers in 8192-token chunks, the 12 NoPE: full
    assert (chunked.window, chunked.windowed_layers, chunked.chunked) == (8192, 36, True)
    windowed = resolve_model(f"{scout},window=8192")  # the user's sliding window instead
    assert (windowed.window, windowed.windowed_layers, windowed.chunked) == (8192, 36, False)
    full = resolve_model(f"{scout},window=0")
    assert (full.window, full.windowed_layers) == (0, 0)
    assert full.params() == windowed.params() == chunked.params()
    data = json.loads((CONFIGS / "llama-4-scout-17b-16e.json").read_text())
    data["text_config"]["attention_chunk_size"] = None  # the file states full attention
    (tmp_path / "config.json").write_text(json.dumps(data))
    stated = resolve_model(tmp_path)
    assert (stated.window, stated.params()) == (0, full.params())
    assert windowed.params(active=True) == pytest.approx(17e9, rel=0.02)  # "17B active"


def test_chunked_attention_attends_and_reads_its_own_chunk_only():
    """transformers' chunked mask (`kv_idx // C == q_idx // C`, causal) counted pair by pair
    against `Attention.attended` and `keys` (the keys the queries reach), prefill and decode."""
    from chipforge.workload.ops import Attention

    chunk = 16
    for kv, q in ((40, 40), (40, 1), (48, 1), (33, 5), (16, 16)):
        queries = range(kv - q, kv)
        pairs = [(p, k) for p in queries for k in range(p + 1) if k // chunk == p // chunk]
        op = Attention(batch=1, heads=1, kv_heads=1, q_len=q, kv_len=kv, head_dim=8,
                       window=chunk, chunked=True, name="a")  # fmt: skip
        assert op.attended == len(pairs), (kv, q)
        assert op.keys == kv - min(k for _, k in pairs), (kv, q)


def test_llama4_chunked_attention_flops_equal_torchs_on_transformers_model(tmp_path):
    """A tiny Llama 4 from transformers' own config class (16-token chunks, every 4th layer
    full), 40 tokens: the prefill graph's matrix FLOPs (GEMMs and attention) equal torch's
    FlopCounterMode on the model's forward, attention counted on the chunked mask the model
    builds (`test_hf_models.torch_flops`). Dense layers only (`moe_layers` []): transformers'
    eager Llama 4 experts run every token through every expert, which no serving engine does."""
    torch = pytest.importorskip("torch")
    T = pytest.importorskip("transformers")
    from test_hf_models import torch_flops

    from chipforge.workload.llm import build

    config = T.Llama4TextConfig(
        hidden_size=64, intermediate_size=32, intermediate_size_mlp=96, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=128,
        num_local_experts=4, num_experts_per_tok=1, moe_layers=[], attention_chunk_size=16,
        use_cache=False,
    )  # fmt: skip
    torch.manual_seed(0)
    model = T.Llama4ForCausalLM(config).eval()
    ids = torch.randint(0, 128, (1, 40))
    config.save_pretrained(tmp_path)
    c = resolve_model(tmp_path)
    graph = build(c, phase="prefill", seq=40)
    matrix = sum(op.total_flops for op in graph.ops if op.kind in ("matmul", "attention"))
    assert matrix == torch_flops(model, ids)
    assert c.params() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("step", [1, 2])
def test_llama4_counts_as_transformers_builds_it(step, tmp_path):
    """A tiny Llama 4 (every layer MoE as Scout, or every 2nd as Maverick) from transformers'
    own config class: the resolver's count is its model's `sum(p.numel())`."""
    torch = pytest.importorskip("torch")
    T = pytest.importorskip("transformers")
    config = T.Llama4TextConfig(
        hidden_size=64, intermediate_size=32, intermediate_size_mlp=96, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=128,
        num_local_experts=4, num_experts_per_tok=1, interleave_moe_layer_step=step,
        attention_chunk_size=16,
    )  # fmt: skip
    with torch.device("meta"):
        expected = sum(p.numel() for p in T.Llama4ForCausalLM(config).parameters())
    config.save_pretrained(tmp_path)
    assert resolve_model(f"{tmp_path},window=16").params() == expected


def test_a_config_file_beside_others_is_named_by_its_file(tmp_path):
    """A hand-written `<model>.json` names the model (in tables, plans and JSON); a
    `config.json` is named by its folder, as a checkpoint's is."""
    assert resolve_model(CONFIGS / "phi-4.json").name == "phi-4"
    (tmp_path / "Phi-4").mkdir()
    (tmp_path / "Phi-4" / "config.json").write_bytes((CONFIGS / "phi-4.json").read_bytes())
    assert resolve_model(tmp_path / "Phi-4").name == "Phi-4"


def test_train_says_when_its_sequence_is_the_configs_longest_context():
    """`train` with a config.json and no --seq plans at the config's max_position_embeddings
    (its serving context, not a training one): a warning line says so; --seq silences it."""
    import subprocess
    import sys

    tiny = f"{CONFIGS}/mistral-small-24b-base-2501.json,layers=2,hidden=256,heads=2,kv_heads=1"
    args = [sys.executable, "-m", "chipforge", "train", "--chip", "h100", "--chips", "8"]
    args += ["--model", f"{tiny},ffn=512,vocab=1000,head_dim=128", "--tp", "1", "--pp", "1"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "warning: --seq not given: sequences of 32,768 tokens" in out.stderr
    out = subprocess.run([*args, "--seq", "4096"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--seq not given" not in out.stderr


def test_llama4_images_are_refused_in_one_line():
    """Llama 4's vision tower is not costed: `images=N` on its config is a user error naming
    the key (it was an internal error), and the decoder-only warning does not offer it."""
    from chipforge.workload import parse_workload

    scout = f"{CONFIGS}/llama-4-scout-17b-16e.json,window=8192,phase=prefill,batch=1,seq=64"
    with pytest.raises(WorkloadError, match=r"^`workload.images` costs the vision tower of"):
        parse_workload(f"{scout},images=1")
    warnings = parse_workload(scout).meta["warnings"]
    assert any("llama4_vision_model" in w and "images=N" not in w for w in warnings)


def test_serve_says_when_the_checkpoint_stores_narrower_weights(tmp_path):
    """gpt-oss-20b's config.json states MXFP4 weights (quantization_config): `serve` at the
    default bf16 says they are priced wider than stored and names --weight-dtype fp4; given
    it, or a config without quantization, nothing is said."""
    import subprocess
    import sys

    data = json.loads((CONFIGS / "gpt-oss-20b.json").read_text())
    data |= {"num_hidden_layers": 2, "layer_types": data["layer_types"][:2]}
    (tmp_path / "config.json").write_text(json.dumps(data))
    args = [sys.executable, "-m", "chipforge", "serve", "--chip", "h100", "--chips", "1"]
    args += ["--model", str(tmp_path), "--tp", "1", "--pp", "1", "--ep", "1"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "quantization_config stores weights as mxfp4" in out.stderr
    assert "--weight-dtype fp4" in out.stderr
    run = [*args, "--weight-dtype", "fp4"]
    out = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert "quantization_config" not in out.stderr
    del data["quantization_config"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "quantization_config" not in out.stderr


def test_deepseek_sparse_attention_flops_and_params_equal_transformers_model(tmp_path):
    """A tiny DeepSeek-V3.2 from transformers' own config class (an 8-key top-k, 24 tokens):
    its parameters and the prefill's GEMM FLOPs (aten.mm, indexer projections included) equal
    torch's FlopCounterMode on the model's forward, to the FLOP. The products over query-key
    pairs (aten.bmm) transformers computes over the whole square and masks after (the
    indexer's ReLU scores, and the MLA attention under its top-k mask); torch counts that
    square, which the test checks, while chipforge prices the pairs each kernel computes:
    the indexer's causal ones (DeepGEMM fp8_mqa_logits scores each query's key range) and the
    min(p + 1, top-k) keys each query attends (FlashMLA's sparse kernel), counted here pair by
    pair on the masks transformers builds."""
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    T = pytest.importorskip("transformers")
    from torch.utils.flop_counter import FlopCounterMode

    from chipforge.workload.llm import build

    s, topk, hi, di, heads, d_qk, d_v = 24, 8, 2, 16, 4, 24, 16
    config = T.DeepseekV32Config(
        hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=heads, num_key_value_heads=heads, q_lora_rank=32, kv_lora_rank=16,
        qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=d_v, index_n_heads=hi,
        index_head_dim=di, index_topk=topk, vocab_size=128, first_k_dense_replace=2,
        n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1, use_cache=False,
    )  # fmt: skip
    torch.manual_seed(0)
    model = T.DeepseekV32ForCausalLM(config).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randint(0, 128, (1, s)))
    ops = counter.get_flop_counts()["Global"]
    mm, bmm = ops[torch.ops.aten.mm], ops[torch.ops.aten.bmm]
    config.save_pretrained(tmp_path)
    c = resolve_model(tmp_path)
    assert c.params() == sum(p.numel() for p in model.parameters())
    graph = build(c, phase="prefill", seq=s)
    assert sum(o.total_flops for o in graph.ops if o.kind == "matmul") == mm
    layers = config.num_hidden_layers
    square = layers * 2 * s * s * (hi * (di + 1) + heads * (d_qk + d_v))
    assert bmm == square  # what transformers computes: every pair, masked after
    q, k = np.arange(s)[:, None], np.arange(s)[None, :]
    causal = int((k <= q).sum())  # the indexer's pairs
    selected = int(np.minimum(np.arange(s) + 1, topk).sum())  # each query's top-k
    attended = layers * 2 * (hi * causal * (di + 1) + heads * selected * (d_qk + d_v))
    assert sum(o.total_flops for o in graph.ops if o.kind == "attention") == attended


def test_deepseek_sparse_attention_decode_reads_the_selected_keys_and_the_index_keys():
    """DeepSeek-V3.2's decode step at a 32k context: MLA reads its 2048 selected latents, the
    indexer every cached FP8 index key; the cache holds the latent and the index key (FP8 and
    an FP32 scale per 128, TensorRT-LLM's DSA cache: 132 bytes) per token and layer."""
    from chipforge.workload.llm import build

    c = resolve_model(CONFIGS / "deepseek-v3.2-exp.json")
    ops = {o.name: o for o in build(c, phase="decode", context=32768).ops}
    mla, indexer = ops["moe_layers.attention"], ops["moe_layers.indexer"]
    assert (mla.attended, mla.keys) == (2048, 2048)
    assert (indexer.keys, indexer.exps) == (32769, 0.0)
    # the index keys are read as the cache holds them: 128 FP8 values and their FP32 scale
    queries = c.index_heads * (c.index_head_dim + 1)  # one query's FP8 head vectors and scores
    assert indexer.bytes == queries + 32769 * (128 + 4)
    assert c.kv_bytes_per_token(2) == 61 * ((512 + 64) * 2 + 128 + 4)


@pytest.mark.parametrize("family", ["Qwen3Next", "Qwen3_5Moe", "Qwen3_5"])
def test_qwen3_next_flops_and_params_equal_transformers_model(family, tmp_path):
    """A tiny Qwen3-Next (or Qwen3.5 MoE decoder: the same layers, its DeltaNet's input
    projections split in four; or the dense Qwen3.5 decoder: the same layers with a dense gated
    MLP) from transformers' own config class (3 Gated DeltaNet layers, 1 gated
    attention layer, MoE or dense; 100 tokens: two 64-token chunks, the second padded as
    torch_chunk_gated_delta_rule pads it): its parameters, and the prefill's GEMMs and products
    (aten.mm and aten.bmm: projections, experts, the chunkwise delta rule's K K^T, Q K^T, state
    reads, intra-chunk product and state update) equal torch's FlopCounterMode to the FLOP,
    attention counted on the causal mask (`test_hf_models.torch_flops`). What FlopCounterMode
    counts beside them is the depthwise causal conv (aten.convolution, over s + taps - 1
    positions, the padded ones sliced off after), priced as vector work over s positions; what
    it does not count: the chunk's triangular solves (torch's solve_triangular; priced as
    flash-linear-attention runs them, products of the inverted chunk matrix with K_beta and
    V_beta: 2 C^2 (d_k + d_v) a chunk and value head), the decays, norms and gates."""
    torch = pytest.importorskip("torch")
    T = pytest.importorskip("transformers")
    from test_hf_models import torch_flops

    from chipforge.workload.llm import build

    s, taps = 100, 4
    text = "" if family == "Qwen3Next" else "Text"
    mlp = dict(
        moe_intermediate_size=32, shared_expert_intermediate_size=32, num_experts=4,
        num_experts_per_tok=2,
    ) if family != "Qwen3_5" else dict(intermediate_size=48)  # fmt: skip
    config = getattr(T, f"{family}{text}Config")(
        hidden_size=64, head_dim=16, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, linear_num_key_heads=2, linear_num_value_heads=4,
        linear_key_head_dim=16, linear_value_head_dim=16, linear_conv_kernel_dim=taps,
        vocab_size=128, use_cache=False, **mlp,
    )  # fmt: skip
    torch.manual_seed(0)
    model = getattr(T, f"{family}ForCausalLM")(config).eval().requires_grad_(False)
    ids = torch.randint(0, 128, (1, s))
    config.save_pretrained(tmp_path)
    c = resolve_model(tmp_path)
    assert (c.delta_layers, c.layers, c.is_moe) == (3, 4, family != "Qwen3_5")
    assert c.params() == sum(p.numel() for p in model.parameters())
    if family == "Qwen3_5":  # the image-text config (Qwen3_5ForConditionalGeneration): its decoder
        T.Qwen3_5Config(text_config=config.to_dict()).save_pretrained(tmp_path / "vl")
        assert resolve_model(tmp_path / "vl").params() == c.params()
    graph = build(c, phase="prefill", seq=s)
    matrix = sum(o.total_flops for o in graph.ops if o.kind in ("matmul", "attention"))
    conv_dim = 2 * 2 * 16 + 4 * 16  # q, k (2 heads of 16) and v (4 heads of 16)
    conv = 3 * 2 * conv_dim * taps * (s + taps - 1)  # torch's count of the padded conv
    solves = 3 * 2 * 64 * 64 * (16 + 16) * 4 * 2  # layers, C^2 (d_k + d_v), heads, chunks
    assert matrix + conv == torch_flops(model, ids) + solves


@pytest.mark.parametrize("interval", [0, -4])
def test_qwen3_next_attention_interval_must_be_positive(interval, tmp_path):
    """Qwen3NextConfig builds `layer_types` by `(i + 1) % full_attention_interval`: 0 divides
    by zero there, so it is refused as the other sizes are (`_Keys.size`), not read as the
    default 4; a negative interval was taken and priced."""
    data = json.loads((CONFIGS / "qwen3-next-80b-a3b.json").read_text())
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data | {"full_attention_interval": interval}))
    with pytest.raises(WorkloadError, match=r"`full_attention_interval` must be a positive"):
        resolve_model(path)


def test_gated_deltanet_keeps_a_fixed_state_and_no_keys():
    """Qwen3-Next's cache: its 12 attention layers' keys and values grow with the context, its
    36 DeltaNet layers each hold one FP32 state of 32 heads x 128 x 128 and the conv's 4 taps
    of 8192 channels (transformers' LinearAttentionLayer), read and written once a decode step."""
    from chipforge.cluster.kvcache import PAGE_TOKENS, memory
    from chipforge.workload.llm import build

    c = resolve_model(CONFIGS / "qwen3-next-80b-a3b.json")
    assert c.kv_bytes_per_token(2) == 12 * 2 * 2 * 256 * 2
    state = 4 * 32 * 128 * 128 + 8192 * 4 * 2
    assert c.delta_state_bytes(2) == state
    ops = {o.name: o for o in build(c, phase="decode", batch=3, context=9000).ops}
    assert ops["moe_layers.delta.delta_recurrence"].bytes == 3 * 32 * 128 * 128 * 8
    assert ops["moe_layers.delta.delta_recurrence"].count == 36
    mem = memory(c, 80e9, tp=1, pp=1, dtype="bf16", kv_dtype="bf16")
    assert mem.state == 36 * state
    assert mem.pages(PAGE_TOKENS) == 1 + 36 * state / (mem.kv_per_token * PAGE_TOKENS)


def test_deltanet_decode_step_counts_and_keeps_its_state_as_transformers_does():
    """One decode step of transformers' torch_recurrent_gated_delta_rule on bf16 inputs: its
    arithmetic over the state (the ops whose output, or whose reduced input, has the state's
    b x v heads x d_k x d_v elements: decay, k^T S, the rank-1 update, q^T S) is
    DELTA_STEP_FLOPS an element, as the graph's `delta_recurrence` prices it, and the state it
    returns is held at DELTA_STATE_DTYPE, the serving pool's."""
    torch = pytest.importorskip("torch")
    qwen3_next = pytest.importorskip("transformers.models.qwen3_next.modeling_qwen3_next")
    from torch.utils._python_dispatch import TorchDispatchMode

    from chipforge.dtypes import nbytes
    from chipforge.workload.config import DELTA_STATE_DTYPE, ModelConfig
    from chipforge.workload.llm import delta_block

    b, hk, hv, dk, dv = 2, 2, 4, 3, 5  # sizes no other tensor of the step shares
    state = b * hv * dk * dv
    flops = []

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__
            if name in ("mul", "add", "sub", "div") and out.numel() == state:
                flops.append(state)
            if name == "sum" and args[0].numel() == state:
                flops.append(state)
            return out

    bf16 = dict(dtype=torch.bfloat16)
    q, k = torch.randn(b, 1, hk, dk, **bf16), torch.randn(b, 1, hk, dk, **bf16)
    v, g = torch.randn(b, 1, hv, dv, **bf16), -torch.rand(b, 1, hv, **bf16)
    beta = torch.rand(b, 1, hv, **bf16)
    with Count(), torch.no_grad():
        _, final = qwen3_next.torch_recurrent_gated_delta_rule(
            q, k, v, g, beta, initial_state=torch.randn(b, hv, dk, dv), output_final_state=True
        )
    c = ModelConfig(name="tiny", layers=1, hidden=16, heads=2, ffn=32, vocab=64, delta_layers=1,
                    delta_k_heads=hk, delta_v_heads=hv, delta_k_dim=dk, delta_v_dim=dv,
                    delta_conv=4)  # fmt: skip
    step = {o.name: o for o in delta_block(c, b=b, q=1, tp=1, dtype="bf16")}["delta_recurrence"]
    assert step.total_flops == sum(flops)
    assert final.element_size() == nbytes(DELTA_STATE_DTYPE)
    assert step.bytes == 2 * state * final.element_size()  # read and written once


def test_masked_mha_rereads_attention_kv_not_the_deltanet_state():
    """Without a GQA kernel the decode attention reads each KV head once per query head
    (serving._kv_reread). The DeltaNet layers' state is read by their recurrence (priced in the
    decode graph, above), not by that kernel, so the re-read counts the attention layers' keys
    and values alone (it counted the 36 layers' state too, 7 times per sequence)."""
    from chipforge.cluster.kvcache import memory
    from chipforge.cluster.serving import _kv_reread
    from chipforge.spec.loader import load_chip

    c = resolve_model(CONFIGS / "qwen3-next-80b-a3b.json")
    mem = memory(c, 80e9, tp=1, pp=1, dtype="bf16", kv_dtype="bf16")
    assert mem.state > 0
    assert mem.kv_bytes(9000) == c.kv_bytes_per_token(2) * 9000
    chip = load_chip("h100")
    group = c.heads // c.n_kv_heads
    reread = (group - 1) * 3 * c.kv_bytes_per_token(2) * 9000 / chip.hbm.bandwidth
    assert _kv_reread(c, chip, mem, 3, 9000, 1) == pytest.approx(reread)
