"""Models that are not decoder LLMs, as users save them: convolutional networks (ResNet-50,
EfficientNet-B0, ConvNeXt-T), diffusion (a diffusers UNet and DiT), encoders (BERT, RoBERTa,
ViT), encoder-decoders (T5, Whisper) and CLIP. Each is built from its config class with random
weights (nothing downloaded; norm statistics and biases moved off their init values, as trained
weights are, so an exporter cannot fold them away) and saved raw, as
`torch.export.save(torch.export.export(model, args))`, and as ONNX by the default (dynamo)
exporter; both are imported with no wrapper and no flag.

References are independent of chipforge's formulas: FLOPs from torch's own
`torch.utils.flop_counter.FlopCounterMode` on the same module and inputs, parameters from
`sum(p.numel())`, outputs from the model's own PyTorch fp32 forward.

torchvision and timm are not used: PyPI's torchvision (a CUDA build) fails to import beside the
CPU torch 2.13.0 wheel the project pins ("operator torchvision::nms does not exist"), and timm
imports torchvision. The same three architectures come from transformers (ResNetConfig's
defaults are ResNet-50, ConvNextConfig's ConvNeXt-T; EfficientNet-B0 is width and depth 1.0);
benchmarks/torchvision_timm_check.py checks torchvision's and timm's own files by hand, written
in an environment that has them.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.models

MATRIX = ("matmul", "attention", "conv")  # the op kinds FlopCounterMode counts
BOUND = 2.0**-6  # normwise bf16 bound the functional runs are held to
from test_hf_models import TEXT, TOKENS, VISION, VOCAB, WHISPER  # noqa: E402  (one set of sizes)


def trained_looking(model, seed: int = 0):
    """Norm scales, shifts and running statistics, layer scales (ConvNeXt's start at 1e-6,
    which would silence every block) and biases drawn away from their init values: the ONNX
    exporter folds identity norms, and a test of a silent branch could not fail."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            named = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
            for name, t in named:
                if not t.is_floating_point():
                    continue
                if name in ("running_mean", "bias"):
                    t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
                elif name == "running_var" or t.dim() == 1:  # variances, scales
                    t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
    return model.eval()


def attended_pairs(q, k, attn_mask=None, is_causal=False) -> int:
    """Query-key pairs attended per (batch, head) row set: an additive mask blocks a pair with
    -inf or with a value at most half the dtype's lowest (transformers' masks use finfo.min,
    and T5 adds its position bias to it)."""
    b, h, s, t = q.shape[0], q.shape[1], q.shape[-2], k.shape[-2]
    pairs = torch.ones(s, t, dtype=torch.bool)
    if is_causal:
        pairs = pairs.tril()
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            allowed = attn_mask
        else:
            allowed = attn_mask > torch.finfo(attn_mask.dtype).min / 2
        return int((pairs & allowed.expand(b, h, s, t)).sum())
    return int(pairs.sum()) * b * h


def torch_flops(model, args=(), kwargs=None) -> float:
    """torch's FlopCounterMode. torch 2.13 has no formula for the CPU flash-attention kernel:
    it is counted on the mask the model builds, 2 (d_qk + d_v) per attended pair (torch's
    own sdpa formula with every pair attended)."""
    from torch.utils.flop_counter import FlopCounterMode

    def cpu_flash(q, k, v, dropout_p=0.0, is_causal=False, *, attn_mask=None, **kw):
        return 2 * (q.shape[-1] + v.shape[-1]) * attended_pairs(q, k, attn_mask, is_causal)

    cpu_flash._get_raw = True  # FlopCounterMode passes the tensors themselves, not shapes
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_flash}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter, torch.no_grad():
        model(*args, **(kwargs or {}))
    return counter.get_total_flops()


def params_of(model) -> int:
    return sum(p.numel() for p in model.parameters())


def folded_params(model) -> int:
    """The parameters an ONNX file of `model` holds when the exporter folds each BatchNorm
    into the convolution before it: the norm's scale and shift (2 C) become the convolution's
    bias (C)."""
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    return params_of(model) - sum(m.num_features for m in model.modules() if isinstance(m, norms))


def build(arch: str):
    """(module, positional args, keyword args) at small sizes, weights random."""
    T = transformers
    torch.manual_seed(0)
    pixels = torch.randn(1, 3, 64, 64)
    ids = torch.randint(3, VOCAB, (1, TOKENS))
    if arch == "resnet50":  # ResNetConfig's defaults are ResNet-50 (bottleneck, 3-4-6-3)
        return T.ResNetForImageClassification(T.ResNetConfig()), (pixels,), {}
    if arch == "efficientnet_b0":
        b0 = dict(width_coefficient=1.0, depth_coefficient=1.0, hidden_dim=1280, image_size=64)
        return T.EfficientNetForImageClassification(T.EfficientNetConfig(**b0)), (pixels,), {}
    if arch == "convnext_tiny":  # ConvNextConfig's defaults are ConvNeXt-T
        return T.ConvNextForImageClassification(T.ConvNextConfig()), (pixels,), {}
    # the same three architectures, one block a stage and narrow: the same ops, in seconds
    if arch == "resnet":
        small = dict(depths=[1, 1, 1, 1], hidden_sizes=[32, 64, 128, 256], embedding_size=16)
        return T.ResNetForImageClassification(T.ResNetConfig(**small)), (pixels,), {}
    if arch == "efficientnet":
        small = dict(width_coefficient=0.25, depth_coefficient=0.3, hidden_dim=320, image_size=64)
        return T.EfficientNetForImageClassification(T.EfficientNetConfig(**small)), (pixels,), {}
    if arch == "convnext":
        small = dict(depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], drop_path_rate=0.1)
        return T.ConvNextForImageClassification(T.ConvNextConfig(**small)), (pixels,), {}
    if arch == "unet":
        diffusers = pytest.importorskip("diffusers")
        unet = diffusers.UNet2DConditionModel(
            sample_size=8,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=8,
        )
        latents, context = torch.randn(1, 4, 8, 8), torch.randn(1, 6, 32)
        return unet, (latents, torch.tensor([10]), context), {}
    if arch == "dit":
        diffusers = pytest.importorskip("diffusers")
        dit = diffusers.DiTTransformer2DModel(
            num_attention_heads=2,
            attention_head_dim=16,
            in_channels=4,
            out_channels=8,
            num_layers=2,
            sample_size=8,
            patch_size=2,
            num_embeds_ada_norm=10,
        )
        return dit, (torch.randn(1, 4, 8, 8), torch.tensor([10]), torch.tensor([3])), {}
    if arch == "bert":
        config = T.BertConfig(**TEXT, vocab_size=VOCAB, max_position_embeddings=64)
        return T.BertModel(config), (ids,), {}
    if arch == "roberta":
        config = T.RobertaConfig(**TEXT, vocab_size=VOCAB, max_position_embeddings=64)
        return T.RobertaModel(config), (ids,), {}
    if arch == "t5":
        shape = dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4)
        config = T.T5Config(**shape, vocab_size=VOCAB, use_cache=False)
        return T.T5ForConditionalGeneration(config), (ids,), {"decoder_input_ids": ids}
    if arch == "vit":
        return T.ViTModel(T.ViTConfig(**VISION)), (pixels[..., :32, :32],), {}
    if arch == "clip":
        text = TEXT | dict(vocab_size=VOCAB, max_position_embeddings=64, eos_token_id=2)
        config = T.CLIPConfig(text_config=text, vision_config=VISION, projection_dim=32)
        return T.CLIPModel(config), (ids, pixels[..., :32, :32]), {}
    if arch == "whisper":
        config = T.WhisperConfig(**WHISPER, use_cache=False)
        mel = torch.randn(1, 16, 32)  # (batch, mel bins, frames = 2 x max_source_positions)
        return T.WhisperForConditionalGeneration(config), (mel,), {"decoder_input_ids": ids}
    raise AssertionError(arch)


# arch -> (what it is, whether the dynamo ONNX exporter takes it)
ARCHS = {
    "resnet": ("ResNet: bottleneck blocks, BatchNorm, max pooling", True),
    "efficientnet": ("EfficientNet: depthwise conv, squeeze-excite, SiLU, BatchNorm", True),
    "convnext": ("ConvNeXt: depthwise 7x7, LayerNorm over channels, GELU, stochastic depth", True),
    "unet": ("diffusion UNet: GroupNorm, cross-attention, nearest upsampling", True),
    "dit": ("diffusion transformer: adaLN-Zero, einsum unpatchify", True),
    "bert": ("encoder", True),
    "roberta": ("encoder", True),
    "t5": ("encoder-decoder (torch's dynamo ONNX exporter fails on T5)", False),
    "vit": ("vision transformer", True),
    "clip": ("text (causal) and vision towers", True),
    "whisper": ("audio encoder-decoder: Conv1d front end", True),
}
FULL = {  # full-size ImageNet networks at 64 x 64 (slow: ~20 s each to export and import)
    "resnet50": ("ResNet-50", True),
    "efficientnet_b0": ("EfficientNet-B0", True),
    "convnext_tiny": ("ConvNeXt-T", True),
}
CNNS = ("resnet", "efficientnet", "convnext", *FULL)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """arch -> (module, args, kwargs, {"pt2": path, "onnx": path}), built once per run."""
    folder, out = tmp_path_factory.mktemp("vision"), {}

    def get(arch: str):
        if arch not in out:
            model, args, kwargs = build(arch)
            model = trained_looking(model)
            paths = {"pt2": folder / f"{arch}.pt2"}
            torch.export.save(torch.export.export(model, args, kwargs), paths["pt2"])
            if (ARCHS | FULL)[arch][1] and pytest.importorskip("onnxscript"):
                paths["onnx"] = folder / f"{arch}.onnx"
                torch.onnx.export(
                    model, args, str(paths["onnx"]), kwargs=kwargs, dynamo=True, verbose=False
                )
            out[arch] = (model, args, kwargs, paths)
        return out[arch]

    return get


# learned position tables a static-shape dynamo export gathers at the positions it ran and
# folds into a constant: the file holds TOKENS of their rows (a dynamic-length export keeps them
# whole: test_dynamic_length_onnx_keeps_every_parameter). RoBERTa's positions are computed from
# the ids, so its table stays whole.
CUT_TABLES = {
    "bert": ["embeddings.position_embeddings"],
    "clip": ["text_model.embeddings.position_embedding"],
    "whisper": ["model.decoder.embed_positions"],
}


def onnx_params(model, arch: str) -> int:
    """The trained weights a static-shape dynamo ONNX file of `model` holds, from the module
    alone: its parameters (BatchNorm folded for the CNNs), plus its floating-point buffers (an
    ONNX file has no parameter/buffer distinction: DiT's sinusoidal position table), less the
    rows of the position tables the exporter cut to the positions used."""
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    want = folded_params(model) if arch in CNNS else params_of(model)
    want += sum(
        b.numel()
        for m in model.modules()
        if not isinstance(m, norms)
        for b in m.buffers(recurse=False)
        if b.is_floating_point()
    )
    for name in CUT_TABLES.get(arch, []):
        table = model.get_submodule(name)
        want -= (table.num_embeddings - TOKENS) * table.embedding_dim
    return want


def check_costs(saved, arch: str) -> None:
    from chipforge.workload.parse import parse_workload

    model, args, kwargs, paths = saved(arch)
    want = torch_flops(model, args, kwargs)
    for form, path in paths.items():
        graph = parse_workload(str(path))
        assert not graph.meta.get("unsupported"), (arch, form)
        matrix = sum(op.total_flops for op in graph.ops if op.kind in MATRIX)
        assert matrix == pytest.approx(want, rel=0.02), (arch, form, matrix, want)
        if arch in CNNS:  # the result's FLOP convention says there is no attention to mask
            assert graph.meta["attention"] == "none (no softmax in the graph)"
        params = graph.meta["params"]
        if form == "pt2":
            assert params == pytest.approx(params_of(model), rel=0.005), arch
        else:
            assert params == pytest.approx(onnx_params(model, arch), rel=0.005), arch


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_save_path_costs_as_flop_counter_and_counts_params(saved, arch):
    """Raw .pt2 and dynamo ONNX: no unsupported op, matrix FLOPs within 2 % of FlopCounterMode.
    The .pt2's parameters within 0.5 % of sum(p.numel()) (parameters only: BatchNorm's running
    statistics are resident buffers, not parameters). An ONNX file's count (its floating-point
    weights; index and shape constants, scalars and folded attention masks left out) is within
    0.5 % of the parameters the file holds (`onnx_params`: BatchNorm folded into the convolution
    before it, position tables cut to the positions used)."""
    check_costs(saved, arch)


def test_dynamic_length_onnx_keeps_every_parameter(tmp_path):
    """Exported with a dynamic sequence length, BERT's ONNX cannot cut its position table:
    it holds every parameter, and the count is within 0.5 % of sum(p.numel()) with no
    accounting at all (its int64 position ids, scalars and mask left out)."""
    pytest.importorskip("onnxscript")
    from chipforge.workload.parse import parse_workload

    model, args, _ = build("bert")
    model = trained_looking(model)
    path = tmp_path / "bert.onnx"
    seq = torch.export.Dim("seq", min=2, max=64)
    torch.onnx.export(model, args, str(path), dynamo=True, dynamic_shapes=({1: seq},))
    graph = parse_workload(f"{path},seq={TOKENS}")
    assert graph.meta["params"] == pytest.approx(params_of(model), rel=0.005)


@pytest.mark.slow  # ResNet-50, EfficientNet-B0, ConvNeXt-T: ~20 s each to export twice and cost
@pytest.mark.parametrize("arch", list(FULL))
def test_full_size_imagenet_networks(saved, arch):
    """The full-size networks the issue names, at 64 x 64: as the small ones above."""
    check_costs(saved, arch)


FUNCTIONAL = [
    *[(arch, "pt2") for arch in ARCHS],
    *[(arch, "onnx") for arch in ("resnet", "efficientnet", "convnext", "unet", "dit", "bert")],
    *[(arch, "onnx") for arch in ("roberta", "vit", "clip", "whisper")],
]


@pytest.mark.parametrize(("arch", "form"), FUNCTIONAL)
def test_functional_bf16_within_bound_of_pytorch_fp32(saved, arch, form):
    """`simulate --functional` with no flag: valid inputs by default (ids in [0, vocab),
    images and spectrograms N(0, 1)), matrix work on the chip in bf16, the output within the
    normwise 2^-6 bound of the model's PyTorch fp32 forward (onnx: its fp32 evaluation), and
    above 2^-12: an output that does not depend on the input would match exactly."""
    from chipforge.sim.graph_run import run_model
    from chipforge.spec import load_chip

    run = run_model(saved(arch)[3][form], load_chip("forge-n3"))
    assert run["result"] == "match" and run["max_rel_diff"] <= BOUND, (arch, form, run)
    assert run["max_rel_diff"] > 2.0**-12  # really bf16 on a live output, not a constant one
    assert run["chip_programs"] > 0


@pytest.mark.parametrize("arch", ["bert", "t5", "vit", "clip", "whisper"])
def test_config_json_and_pt2_agree(saved, arch, tmp_path):
    """The model's config.json (built by transformers on the meta device and exported) and
    its raw .pt2 at the same sizes: the same FLOPs within 1 % (both as exported: every
    position, attention as masked), the same parameters, the same attention kinds."""
    from chipforge.workload.parse import parse_workload

    model, _, _, paths = saved(arch)
    model.config.save_pretrained(tmp_path)
    config = parse_workload(f"{tmp_path},seq={TOKENS},dtype=fp32")
    pt2 = parse_workload(str(paths["pt2"]))
    assert config.flops == pytest.approx(pt2.flops, rel=0.01)
    assert config.meta["params"] == pytest.approx(pt2.meta["params"], rel=0.005)
    assert config.meta["attention"] == pt2.meta["attention"]
    causal = "causal" in pt2.meta["attention"]
    assert causal == (arch in ("t5", "clip", "whisper"))  # text decoders and CLIP's text tower


@pytest.mark.parametrize("arch", ["resnet", "efficientnet", "convnext"])
def test_cnn_config_json_and_pt2_agree(saved, arch, tmp_path):
    """A ResNet, EfficientNet or ConvNeXt config.json (`image=64`: the side of the square
    image; the config's image_size, else 224, by default): built by transformers on the meta
    device, FLOPs and parameters equal to its raw .pt2's at that size."""
    from chipforge.workload.parse import parse_workload

    model, _, _, paths = saved(arch)
    model.config.save_pretrained(tmp_path)
    config = parse_workload(f"{tmp_path},image=64,dtype=fp32")
    pt2 = parse_workload(str(paths["pt2"]))
    assert config.flops == pytest.approx(pt2.flops, rel=0.01)
    assert config.meta["params"] == pt2.meta["params"] and config.meta["image"] == 64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"depths": [1, "2", 1, 1]}, r"`depths\[1\]` must be a whole number"),
        ({"depths": [200, 200, 1, 1]}, "layers in all"),
        ({"hidden_sizes": 64}, "`hidden_sizes` must be a list"),
        ({"depth_coefficient": 1e9}, "`depth_coefficient` must be a number above 0"),
    ],
)
def test_hostile_cnn_configs_are_one_line_errors(tmp_path, change, message):
    """Per-stage lists and EfficientNet's multipliers are checked before anything is built:
    a string, a list where a number goes, 400 blocks, a 1e9 depth multiplier: one line."""
    import json

    from chipforge.errors import WorkloadError
    from chipforge.workload.parse import parse_workload

    data = transformers.ResNetConfig(depths=[1, 1, 1, 1]).to_dict() | change
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(WorkloadError, match=message):
        parse_workload(f"{tmp_path},image=32")


def test_attention_masks_costed_as_the_model_masks(saved):
    """Encoders attend every pair (full); a decoder's self-attention is causal: T5's decoder
    costs s (s + 1) / 2 pairs a head, its encoder and cross-attention s^2."""
    from chipforge.workload.parse import parse_workload

    graph = parse_workload(str(saved("t5")[3]["pt2"]))
    attention = [op for op in graph.ops if op.kind == "attention"]
    causal = [op for op in attention if op.causal]
    assert {op.name.split(".")[0] for op in causal} == {"decoder"}
    assert sum(op.count for op in causal) == 2  # one self-attention per decoder layer
    assert sum(op.count for op in attention) == 6  # + 2 encoder self, 2 cross
    for name in ("bert", "vit"):
        assert parse_workload(str(saved(name)[3]["pt2"])).meta["attention"] == "full"


def test_compile_and_compare_take_the_files(saved, tmp_path):
    """compile writes the chip's assembly for a raw .pt2 (`,dtype=bf16`: the export is fp32,
    and the chip's matrix unit has no fp32); compare costs an ONNX file on two chips."""
    import subprocess
    import sys

    from chipforge import api

    pt2, onnx_path = saved("resnet")[3]["pt2"], saved("dit")[3]["onnx"]
    out = tmp_path / "resnet.asm"
    done = subprocess.run(
        [sys.executable, "-m", "chipforge", "compile", "--chip", "forge-n3"]
        + ["--workload", f"{pt2},dtype=bf16", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "; resnet.embedder.embedder.convolution" in text and text.count("\n") > 100
    results = api.compare(["forge-n3", "h100"], f"{onnx_path},dtype=bf16")
    assert len(results) == 2 and all(r.time_s > 0 for r in results)


def test_torchscript_onnx_exporter_of_a_cnn(saved, tmp_path):
    """The older TorchScript ONNX exporter (`dynamo=False`; BatchNorm folded, names like
    /resnet/encoder/...): costed with no flag, FLOPs within 2 % of FlopCounterMode, and run in
    bf16 within 2^-6. (transformers 5's text models do not export with it: their forward
    fails under `torch.jit` tracing.)"""
    from chipforge.sim.graph_run import run_model
    from chipforge.spec import load_chip
    from chipforge.workload.parse import parse_workload

    model, args, kwargs, _ = saved("resnet")
    path = tmp_path / "resnet_ts.onnx"
    torch.onnx.export(model, args, str(path), dynamo=False)
    graph = parse_workload(str(path))
    assert not graph.meta.get("unsupported")
    matrix = sum(op.total_flops for op in graph.ops if op.kind in MATRIX)
    assert matrix == pytest.approx(torch_flops(model, args, kwargs), rel=0.02)
    assert graph.meta["params"] == pytest.approx(folded_params(model), rel=0.005)
    run = run_model(path, load_chip("forge-n3"))
    assert run["result"] == "match" and run["max_rel_diff"] <= BOUND


def test_t5_onnx_with_eager_attention(saved, tmp_path):
    """torch's dynamo exporter fails on T5 with sdpa attention (a view of the transposed
    attention output, in its decomposition step); with `attn_implementation="eager"` it
    exports, and the ONNX costs as the sdpa .pt2 (decoder self-attention causal) within 1 %
    and runs in bf16 within 2^-6."""
    pytest.importorskip("onnxscript")
    from chipforge.sim.graph_run import run_model
    from chipforge.spec import load_chip
    from chipforge.workload.parse import parse_workload

    model, args, kwargs, paths = saved("t5")
    config = model.config.to_dict() | {"attn_implementation": "eager"}
    eager = transformers.T5ForConditionalGeneration(transformers.T5Config(**config)).eval()
    eager.load_state_dict(model.state_dict())
    path = tmp_path / "t5.onnx"
    torch.onnx.export(eager, args, str(path), kwargs=kwargs, dynamo=True, verbose=False)
    graph, pt2 = parse_workload(str(path)), parse_workload(str(paths["pt2"]))
    assert graph.meta["attention"] == "causal and full"
    assert graph.flops == pytest.approx(pt2.flops, rel=0.01)
    run = run_model(path, load_chip("forge-n3"))
    assert run["result"] == "match" and 2.0**-12 < run["max_rel_diff"] <= BOUND


def test_int8_channel_cnn_is_bit_exact(saved):
    """Convolutions with int8 weights quantized per output channel: the chip run of the raw
    ResNet .pt2 equals numpy's int8 x int8 -> int32 reference bit for bit."""
    from chipforge.sim.graph_run import run_model
    from chipforge.spec import load_chip

    run = run_model(saved("resnet")[3]["pt2"], load_chip("forge-n3"), dtype="int8-channel")
    assert run["bit_exact"] and run["result"] == "match"


def test_small_external_constants_are_read_only_when_sound(tmp_path):
    """A small initializer in the external data file (a default dynamo export's mask) is read
    so it can fold; a location outside the model's folder, a link, a length other than its
    dims declare, or data past the end of the file leave it unread (never an error, never a
    read outside the folder)."""
    import os

    import numpy as np
    import onnx
    from onnx import numpy_helper

    from chipforge.workload.onnx_import import small_external

    mask = np.triu(np.full((4, 4), -np.inf, np.float32), 1)
    (tmp_path / "m.onnx.data").write_bytes(b"\0" * 8 + mask.tobytes())

    def tensor(**entry):
        t = numpy_helper.from_array(np.zeros((4, 4), np.float32), "mask")
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (
            {"location": "m.onnx.data", "offset": "8", "length": "64"} | entry
        ).items():
            t.external_data.add(key=key, value=value)
        return t

    assert np.array_equal(small_external(onnx, tensor(), tmp_path), mask)
    os.symlink(tmp_path / "m.onnx.data", tmp_path / "link.data")
    for bad in (
        {"location": "../m.onnx.data"},
        {"location": "sub/m.onnx.data"},
        {"location": "link.data"},
        {"length": "32"},
        {"offset": "40"},
        {"offset": "-8"},
    ):
        assert small_external(onnx, tensor(**bad), tmp_path) is None, bad
