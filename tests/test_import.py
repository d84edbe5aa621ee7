"""PyTorch (torch.export) and ONNX import: FLOPs against the LLM builder and published figures,
op names, fusion patterns, dynamic shapes, bad input, the CLI, and imported matrix ops run on
the functional simulator with the model's own numbers.

Expected numbers are derived here from named quantities; the builder (`llm.build`) is the
reference for transformer layers, published figures for ResNet-50.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from chipforge.errors import WorkloadError
from chipforge.workload import (
    Attention,
    Conv2d,
    MatMul,
    build,
    from_onnx,
    from_torch,
    load_model,
    load_pt2,
    parse_workload,
)

torch = pytest.importorskip("torch", reason="the torch import needs torch (pip install .[models])")
onnx = pytest.importorskip("onnx", reason="the ONNX import needs onnx (pip install .[models])")
from torch import nn  # noqa: E402

from chipforge.workload.zoo import gpt2, llama, resnet  # noqa: E402

MATRIX = (MatMul, Conv2d, Attention)


def matrix_flops(ops) -> float:
    return sum(op.total_flops for op in ops if isinstance(op, MATRIX))


def per_layer(graph, prefix: str, layers: int) -> float:
    """FLOPs of one layer: the ops folded under `prefix` (e.g. h.*.) over the layer count."""
    return sum(op.total_flops for op in graph.ops if op.name.startswith(prefix)) / layers


def export_onnx(module, inputs, path, **kw) -> None:
    with warnings.catch_warnings():  # the TorchScript exporter warns that it is legacy
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, str(path), dynamo=False, opset_version=17, **kw)


# --- transformer layers against the LLM builder -------------------------------------------


def test_gpt2_small_layer_flops_match_the_builder():
    c, batch, seq = load_model("gpt2"), 1, 128
    graph = from_torch(*gpt2.build(c, batch=batch, seq=seq))
    reference = build(c, batch=batch, seq=seq, scope="layer")
    layer_ops = [op for op in graph.ops if op.name.startswith("h.*.")]
    # matrix work is the same op for op; vector conventions differ slightly (GPT-2 has no rope)
    assert matrix_flops(layer_ops) / c.layers == pytest.approx(matrix_flops(reference.ops), 1e-12)
    assert per_layer(graph, "h.*.", c.layers) == pytest.approx(reference.flops, rel=0.01)


def test_op_names_follow_the_modules_and_layers_fold():
    c = load_model("gpt2", layers=3)
    graph = from_torch(*gpt2.build(c, batch=1, seq=16))
    ops = {op.name: op for op in graph.ops}
    assert {"wte", "h.*.ln_1", "h.*.attn.c_attn", "h.*.mlp.c_proj", "ln_f", "lm_head"} <= set(ops)
    qkv = ops["h.*.attn.c_attn"]
    assert (qkv.count, qkv.m, qkv.n, qkv.k, qkv.weight) == (3, 16, 3 * c.hidden, c.hidden, True)
    attention = next(op for op in graph.ops if isinstance(op, Attention))
    assert attention.causal and attention.heads == c.heads and attention.q_len == 16
    unfolded = from_torch(*gpt2.build(c, batch=1, seq=16), fold=False)
    assert "h.2.attn.c_attn" in {op.name for op in unfolded.ops}
    assert unfolded.flops == pytest.approx(graph.flops)


def llama_config(**moe):
    return load_model(
        "custom", layers=2, hidden=256, heads=8, kv_heads=2, ffn=512, vocab=1000, seq=64, **moe
    )


def test_llama_block_with_gqa_matches_the_builder():
    c, batch, seq = llama_config(), 2, 64
    graph = from_torch(*llama.build(c, batch=batch, seq=seq))
    reference = build(c, batch=batch, seq=seq, scope="layer")
    attention = next(op for op in graph.ops if isinstance(op, Attention))
    assert (attention.heads, attention.kv_heads) == (c.heads, c.n_kv_heads)
    assert per_layer(graph, "layers.*.", c.layers) == pytest.approx(reference.flops, rel=0.01)
    # the hand-written RMSNorm (x * rsqrt(mean(x^2) + eps) * w) is recognised as one op
    norm = next(op for op in graph.ops if op.name == "layers.*.attention_norm")
    assert norm.flops_per_element == 5 and norm.elements == batch * seq * c.hidden


def test_moe_block_matches_the_builder():
    c, batch, seq = llama_config(experts=8, top_k=2), 2, 64
    graph = from_torch(*llama.build(c, batch=batch, seq=seq))
    reference = build(c, batch=batch, seq=seq, scope="layer")
    assert per_layer(graph, "layers.*.", c.layers) == pytest.approx(reference.flops, rel=0.01)
    capacity = batch * seq * c.top_k // c.experts  # tokens per expert, balanced routing
    experts = [op for op in graph.ops if isinstance(op, MatMul) and op.batch == c.experts]
    assert len(experts) == 3 and all(op.m == capacity and op.weight for op in experts)


# --- ONNX ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet50_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "resnet50.onnx"
    module, inputs = resnet.build(batch=1, device="cpu")
    export_onnx(module, inputs, path, input_names=["image"], dynamic_axes={"image": {0: "batch"}})
    return path


def test_resnet50_through_onnx_is_4_1_gmacs(resnet50_onnx):
    graph = from_onnx(resnet50_onnx, dims={"batch": 1})
    macs = 4.09e9  # torchvision ResNet50_Weights.IMAGENET1K_V1: 4.09 GFLOPS (MACs), 224x224
    assert matrix_flops(graph.ops) / 2 == pytest.approx(macs, rel=0.02)
    assert graph.flops / 2 == pytest.approx(macs, rel=0.02)  # with BN, ReLU, pooling
    params = 25.6e6  # torchvision: 25.6M parameters (fp32 initializers; BN folded into convs)
    assert graph.resident["weights"] / 4 == pytest.approx(params, rel=0.01)
    convs = [op for op in graph.ops if isinstance(op, Conv2d)]
    assert sum(op.count for op in convs) == 53  # 49 in the bottlenecks' paths, 4 downsamples
    eight = from_onnx(resnet50_onnx, dims={"batch": 8}, dtype="bf16")
    assert eight.flops == pytest.approx(8 * graph.flops)
    assert eight.resident["weights"] == pytest.approx(graph.resident["weights"] / 2)


@pytest.fixture(scope="module")
def gpt2_onnx(tmp_path_factory):
    c = load_model("gpt2", layers=2, hidden=128, heads=4, ffn=512, vocab=500, seq=64)
    module, _ = gpt2.build(c, batch=1, seq=32, device="cpu")
    path = tmp_path_factory.mktemp("onnx") / "gpt2.onnx"
    ids = torch.zeros(2, 32, dtype=torch.long)
    axes = {"ids": {0: "batch", 1: "seq"}}
    export_onnx(module, (ids,), path, input_names=["ids"], dynamic_axes=axes)
    return c, module, path


def test_onnx_attention_pattern_is_one_causal_op(gpt2_onnx):
    c, module, path = gpt2_onnx
    graph = from_onnx(path, dims={"batch": 2, "seq": 32})
    torch_graph = from_torch(module, (torch.zeros(2, 32, dtype=torch.long),))
    attention = [op for op in graph.ops if isinstance(op, Attention)]
    assert len(attention) == 1 and attention[0].count == c.layers and attention[0].causal
    assert (attention[0].batch, attention[0].heads, attention[0].q_len) == (2, c.heads, 32)
    # the same model through both importers: the same matrix work
    assert matrix_flops(graph.ops) == pytest.approx(matrix_flops(torch_graph.ops), rel=1e-12)
    # biases join their matmuls and the written-out GELU is one op: the same graph as torch's
    assert [op.name for op in graph.ops] == [op.name for op in torch_graph.ops]
    assert graph.flops == pytest.approx(torch_graph.flops, rel=1e-12)


def test_small_vit_through_onnx_equals_torch(tmp_path):
    from chipforge.workload.zoo import vit

    config = vit.ViTConfig(layers=2, hidden=64, heads=4, mlp=128, classes=10)
    module, inputs = vit.build(batch=2, image=32, device="cpu", config=config)
    export_onnx(module, inputs, tmp_path / "vit.onnx")
    graph, torch_graph = from_onnx(tmp_path / "vit.onnx"), from_torch(module, inputs)
    attention = next(op for op in graph.ops if isinstance(op, Attention))
    assert not attention.causal and attention.q_len == (32 // 16) ** 2 + 1  # patches + class
    assert graph.flops == pytest.approx(torch_graph.flops, rel=1e-12)  # erf GELU fused too


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        (
            None,
            "`workload` gpt2.onnx has dynamic dimensions left unbound: batch, seq; give each a "
            "size: gpt2.onnx,batch=N,seq=N (Python: from_onnx(..., dims={'batch': N, 'seq': N}))",
        ),
        (
            {"batch": 1, "seq": 8, "tokens": 3},
            "`workload.tokens` is not a dynamic dimension of gpt2.onnx; its dynamic dimensions: "
            "batch, seq",
        ),
    ],
)
def test_onnx_dynamic_dimensions_must_be_bound(gpt2_onnx, dims, message):
    with pytest.raises(WorkloadError) as err:
        from_onnx(gpt2_onnx[2], dims=dims)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"\x08\x07not an onnx model\xff\xff", "DecodeError: Error parsing message"), (b"", "")],
)
def test_corrupt_onnx_is_named(tmp_path, content, problem):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(WorkloadError) as err:
        from_onnx(path)
    assert str(err.value).startswith("`workload` broken.onnx is not a readable ONNX model (")
    assert str(err.value).endswith(
        "); re-export it (torch.onnx.export) or check that the file is complete"
    )
    assert problem in str(err.value)


def unsupported_onnx(path) -> None:
    """x @ W, then two Shrinks and a Hardmax: ops with no cost rule."""
    h = onnx.helper
    f32 = onnx.TensorProto.FLOAT
    w = onnx.numpy_helper.from_array(np.ones((8, 16), np.float32), "w")
    nodes = [
        h.make_node("MatMul", ["x", "w"], ["a"], name="/proj/MatMul"),
        h.make_node("Shrink", ["a"], ["b"], name="/swap/Shrink"),
        h.make_node("Shrink", ["b"], ["c"], name="/back/Shrink"),
        h.make_node("Hardmax", ["c"], ["y"], name="/pick/Hardmax"),
    ]
    graph = h.make_graph(
        nodes,
        "odd",
        [h.make_tensor_value_info("x", f32, [4, 8])],
        [h.make_tensor_value_info("y", f32, [4, 16])],
        [w],
    )
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), str(path))


def test_unsupported_ops_are_listed_once_or_costed_as_vector_work(tmp_path):
    path = tmp_path / "odd.onnx"
    unsupported_onnx(path)
    with pytest.raises(WorkloadError) as err:
        from_onnx(path)
    assert str(err.value) == (
        "`workload` odd.onnx has ops chipforge cannot cost: Hardmax (1 node, first "
        "/pick/Hardmax); Shrink (2 nodes, first /swap/Shrink); pass --allow-unsupported "
        "(Python: allow_unsupported=True) to cost them as vector work"
    )
    graph = from_onnx(path, allow_unsupported=True)
    assert graph.meta["unsupported"] == {"Hardmax": 1, "Shrink": 2}
    assert graph.name == "odd.onnx (3 unsupported ops costed as vector work)"
    assert "costed as vector work" in graph.meta["warnings"][0]
    vector = [op for op in graph.ops if op.kind == "vector"]
    assert [op.elements for op in vector] == [4 * 16] * 3  # each op's output
    assert all(op.bytes == 2 * 4 * 16 * 4 for op in vector)  # read and written once, fp32


def test_unsupported_torch_ops_are_listed():
    class Bessel(nn.Module):
        def forward(self, x):
            return torch.special.bessel_j0(x) + torch.special.bessel_j0(2 * x)

    with pytest.raises(WorkloadError) as err:
        from_torch(Bessel(), torch.ones(4, 8))
    assert str(err.value).startswith(
        "`workload` Bessel has ops chipforge cannot cost: aten.special_bessel_j0 (2 nodes, "
        "first special_bessel_j0); pass --allow-unsupported"
    )
    graph = from_torch(Bessel(), torch.ones(4, 8), allow_unsupported=True)
    assert graph.meta["unsupported"] == {"aten.special_bessel_j0": 2}


# --- saved torch.export programs --------------------------------------------------------


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.up, self.down = nn.Linear(16, 64), nn.Linear(64, 16)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def test_pt2_round_trip_and_dynamic_dimensions(tmp_path):
    batch = torch.export.Dim("batch", max=64)
    program = torch.export.export(TwoLayer(), (torch.ones(4, 16),), dynamic_shapes=({0: batch},))
    path = tmp_path / "mlp.pt2"
    torch.export.save(program, str(path))
    with pytest.raises(WorkloadError) as err:
        load_pt2(path)
    assert str(err.value) == (
        "`workload` mlp.pt2 has dynamic dimensions left unbound: x.0; give each a size: "
        "mlp.pt2,x.0=N (Python: load_pt2(..., dims={'x.0': N}))"
    )
    with pytest.raises(WorkloadError, match=r"`workload.x.0` must be in 0..64 .* not 65"):
        load_pt2(path, dims={"x.0": 65})
    graph = parse_workload(f"{path},x.0=8,dtype=bf16")
    up, down = (op for op in graph.ops if isinstance(op, MatMul))
    assert (up.m, up.n, up.k, up.dtype) == (8, 64, 16, "bf16")
    assert graph.flops == from_torch(TwoLayer(), torch.ones(8, 16)).flops


def test_missing_and_corrupt_pt2(tmp_path):
    with pytest.raises(WorkloadError, match=r"does not exist; give the path of a \.pt2 file"):
        load_pt2(tmp_path / "none.pt2")
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(WorkloadError, match=r"bad\.pt2 is not a readable torch\.export program"):
        load_pt2(bad)


# --- the command line ---------------------------------------------------------------------


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chipforge", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_evaluates_onnx_and_exits_2_on_bad_files(tmp_path, gpt2_onnx):
    out = run("evaluate", "--chip", "forge-n3", "--workload", f"{gpt2_onnx[2]},batch=1,seq=32")
    assert out.returncode == 0, out.stderr
    data = json.loads(
        run(
            "compare",
            "--chips",
            "h100,forge-n3",
            "--workload",
            f"{gpt2_onnx[2]},batch=1,seq=32",
            "--json",
        ).stdout
    )
    assert [r["chip"] for r in data["results"]] == ["h100", "forge-n3"]
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage\xff")
    for workload in (str(broken), str(gpt2_onnx[2])):
        bad = run("evaluate", "--chip", "h100", "--workload", workload)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
        assert bad.stderr.startswith("error: `workload`") and "Traceback" not in bad.stderr


def test_cli_allow_unsupported(tmp_path):
    path = tmp_path / "odd.onnx"
    unsupported_onnx(path)
    assert run("evaluate", "--chip", "h100", "--workload", str(path)).returncode == 2
    out = run(
        "evaluate", "--chip", "h100", "--workload", str(path), "--allow-unsupported", "--json"
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["workload"].endswith("(3 unsupported ops costed as vector work)")
    assert "warning: 3 ops without a cost rule (Hardmax, Shrink)" in out.stderr


# --- numerics: imported matrix ops on the functional simulator ------------------------------


def bf16_close(got: np.ndarray, want: np.ndarray) -> float:
    """Normwise error: the largest difference over the largest reference value."""
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


BF16_BOUND = 2**-6  # bf16 inputs (8-bit significand) with fp32 accumulation, as check_op


def run_op(op, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from chipforge.compiler import compile_op
    from chipforge.sim import run_functional
    from chipforge.sim.functional import convert, dtype_of
    from chipforge.spec import load_chip

    program = compile_op(op, load_chip("forge-n3"))
    cast = {k: convert(v.astype(np.float32), dtype_of(op.dtype)) for k, v in inputs.items()}
    return run_functional(program, cast)


def test_imported_linear_and_conv_run_on_the_simulator_with_real_weights():
    torch.manual_seed(0)
    linear, x = nn.Linear(96, 80), torch.randn(24, 96)
    op = next(o for o in from_torch(linear, x, dtype="bf16").ops if isinstance(o, MatMul))
    want = (x @ linear.weight.T).detach().numpy()  # the bias is an epilogue, not simulated
    got = run_op(op, {f"{op.name}.A": x.numpy(), f"{op.name}.B": linear.weight.T.detach().numpy()})
    assert bf16_close(got[f"{op.name}.C"], want) <= BF16_BOUND

    conv, image = nn.Conv2d(8, 16, 3, padding=1, bias=False), torch.randn(2, 8, 10, 10)
    op = next(o for o in from_torch(conv, image, dtype="bf16").ops if isinstance(o, Conv2d))
    gemm = op.as_matmul()  # implicit GEMM: im2col rows (b, ho, wo) x (cin, kh, kw)
    patches = nn.functional.unfold(image, 3, padding=1).transpose(1, 2).reshape(gemm.m, gemm.k)
    inputs = {f"{op.name}.A": patches, f"{op.name}.B": conv.weight.reshape(16, -1).T}
    got = run_op(gemm, {k: v.detach().numpy() for k, v in inputs.items()})
    want = conv(image).permute(0, 2, 3, 1).reshape(gemm.m, gemm.n).detach().numpy()
    assert bf16_close(got[f"{op.name}.C"], want) <= BF16_BOUND


def test_imported_gqa_attention_runs_on_the_simulator_with_real_activations():
    torch.manual_seed(0)
    b, heads, kv_heads, seq, d = 2, 4, 2, 16, 32
    q, k, v = (
        torch.randn(b, heads, seq, d),
        torch.randn(b, kv_heads, seq, d),
        torch.randn(b, kv_heads, seq, d),
    )

    class SDPA(nn.Module):
        def forward(self, q, k, v):
            return nn.functional.scaled_dot_product_attention(
                q, k, v, is_causal=True, enable_gqa=True
            )

    op = next(
        o for o in from_torch(SDPA(), (q, k, v), dtype="bf16").ops if isinstance(o, Attention)
    )
    assert (op.heads, op.kv_heads, op.causal) == (heads, kv_heads, True)
    group = heads // kv_heads  # the compiler packs a GQA group's query heads position-major
    packed = q.view(b, kv_heads, group, seq, d).permute(0, 1, 3, 2, 4).reshape(-1, d)
    inputs = {
        f"{op.name}.Q": packed,
        f"{op.name}.K": k.reshape(-1, d),
        f"{op.name}.V": v.reshape(-1, d),
    }
    got = run_op(op, {key: t.numpy() for key, t in inputs.items()})[f"{op.name}.O"]
    want = SDPA()(q, k, v).view(b, kv_heads, group, seq, d).permute(0, 1, 3, 2, 4).reshape(-1, d)
    assert bf16_close(got, want.numpy()) <= BF16_BOUND
    assert math.isfinite(float(got.astype(np.float32).sum()))


def test_int8_quantized_linear_is_bit_exact():
    """Symmetric per-tensor int8 quantization (scale = max|x| / 127) of a linear layer's input
    and weight; the simulator's int32 accumulation, saturated to int8, equals numpy's."""
    torch.manual_seed(0)
    linear, x = nn.Linear(64, 48, bias=False), torch.randn(32, 64)

    def quantize(t: torch.Tensor) -> np.ndarray:
        scale = float(t.abs().max()) / 127
        return torch.clamp(torch.round(t / scale), -127, 127).to(torch.int8).numpy()

    a, w = quantize(x), quantize(linear.weight.detach())
    op = next(o for o in from_torch(linear, x, dtype="int8").ops if isinstance(o, MatMul))
    got = run_op(op, {f"{op.name}.A": a, f"{op.name}.B": w.T.copy()})[f"{op.name}.C"]
    want = np.clip(a.astype(np.int32) @ w.T.astype(np.int32), -128, 127)
    assert op.dtype == "int8" and np.array_equal(got.astype(np.int32), want)


def test_onnx_weights_are_never_read(tmp_path, gpt2_onnx):
    """Sizes come from the initializers' headers: a model whose external weight file is gone
    imports the same."""
    model = onnx.load(str(gpt2_onnx[2]))
    path = tmp_path / "external.onnx"
    onnx.save(
        model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0
    )
    (tmp_path / "weights.bin").unlink()
    dims = {"batch": 1, "seq": 32}
    assert from_onnx(path, dims=dims).ops == from_onnx(gpt2_onnx[2], dims=dims).ops


# --- .pt2 archives read without torch.export.load -----------------------------------------


def _zoo_programs():
    from chipforge.workload.zoo import bert

    small = {"vocab": 500, "hidden": 64, "heads": 8, "kv_heads": 2, "ffn": 128, "layers": 2}
    return {
        "gpt2": gpt2.build(
            load_model("gpt2", layers=2, vocab=500, hidden=64, heads=4, ffn=256), batch=1, seq=16
        ),
        "llama-gqa": llama.build(load_model("llama3-8b", **small), batch=1, seq=16),
        "mixtral-moe": llama.build(load_model("mixtral-8x7b", **small), batch=1, seq=16),
        "resnet50": resnet.build(batch=1, image=32),
        "bert-base": bert.build("bert-base", batch=1, seq=16),
    }


def test_pt2_archive_reader_gives_the_ir_of_torch_export_load(tmp_path):
    """The serialized graph read straight from the archive (no weights, no torch) is the same
    IR graph, folded and unfolded, as `torch.export.load` + `from_exported` on the zoo models
    (meta-device modules: the archives hold no real weights)."""
    from chipforge.workload import from_exported

    for name, (module, inputs) in _zoo_programs().items():
        path = tmp_path / f"{name}.pt2"
        torch.export.save(torch.export.export(module, inputs), str(path))
        loaded = torch.export.load(str(path))
        for fold in (True, False):
            options = {"dtype": "bf16", "allow_unsupported": False, "fold": fold}
            fast = load_pt2(path, **options)
            assert fast == from_exported(loaded, name=path.name, **options), (name, fold)


def test_tied_weights_are_resident_once_after_torch_export_load(tmp_path):
    """GPT-2's wte and lm_head are one tensor: resident once from the archive's weight config,
    and from a `torch.export.load`ed program too (it rebuilds each name's tensor over the one
    storage)."""
    from chipforge.workload import from_exported

    config = load_model("gpt2", layers=1, vocab=500, hidden=64, heads=4, ffn=256)
    module, inputs = gpt2.build(config, batch=1, seq=16, device="cpu")
    path = tmp_path / "tied.pt2"
    torch.export.save(torch.export.export(module, inputs), str(path))
    fast = load_pt2(path)
    assert fast == from_exported(torch.export.load(str(path)), name=path.name)
    assert fast.meta["params"] == sum(p.numel() for p in module.parameters())  # wte once


def test_pt2_archive_reader_binds_dynamic_dims_and_needs_trust_for_torch(tmp_path):
    """Dynamic dimensions are bound from the JSON; what the reader does not know (an op without
    a rule, another schema) is a one-line error naming it, and only `trust_pickle` lets
    torch.export.load (which unpickles) read the file and lower the op."""
    batch = torch.export.Dim("batch", max=64)
    program = torch.export.export(TwoLayer(), (torch.ones(4, 16),), dynamic_shapes=({0: batch},))
    path = tmp_path / "mlp.pt2"
    torch.export.save(program, str(path))
    fast = load_pt2(path, dims={"x.0": 8})
    assert fast == from_torch(TwoLayer(), torch.ones(8, 16), name="mlp.pt2")

    class Mish(nn.Module):  # mish has no rule: costed after run_decompositions(), needs torch
        def forward(self, x):
            return nn.functional.mish(x) * 2

    path = tmp_path / "mish.pt2"
    torch.export.save(torch.export.export(Mish(), (torch.ones(4, 8),)), str(path))
    with pytest.raises(WorkloadError, match=r"cannot cost: aten\.mish"):
        load_pt2(path)
    want = from_torch(Mish(), torch.ones(4, 8)).ops
    assert load_pt2(path, trust_pickle=True).ops == want
    changed = tmp_path / "future.pt2"  # a schema this reader does not know: torch decides
    import zipfile

    with zipfile.ZipFile(path) as src, zipfile.ZipFile(changed, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item.endswith("models/model.json"):
                doc = json.loads(data)
                doc["schema_version"]["major"] = 99
                data = json.dumps(doc).encode()
            dst.writestr(item, data)
    with pytest.raises(WorkloadError, match="schema version .* --trust-pickle"):
        load_pt2(changed)


def test_load_pt2_does_not_import_torch(tmp_path):
    module, inputs = gpt2.build(
        load_model("gpt2", layers=2, vocab=500, hidden=64, heads=4, ffn=256), batch=1, seq=16
    )
    path = tmp_path / "gpt2.pt2"
    torch.export.save(torch.export.export(module, inputs), str(path))
    code = (
        "import sys; from chipforge.workload import load_pt2; "
        f"g = load_pt2({str(path)!r}); print(len(g.ops), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == [str(len(load_pt2(path).ops)), "False"], out.stderr


def test_add_of_a_python_scalar_imports():
    class HardSigmoid(nn.Module):  # decomposes to x + 3 (one tensor input), clamp, / 6
        def forward(self, x):
            return nn.functional.hardsigmoid(x) * 2

    graph = from_torch(HardSigmoid(), torch.ones(4, 8))
    assert graph.ops and all(op.kind == "vector" for op in graph.ops)


# --- deep models from a few of their layers ---------------------------------------------


@pytest.fixture
def sample_short_stacks(monkeypatch):
    """Sample stacks from 4 layers (12 by default) so the tests' models stay small."""
    from chipforge.workload import torch_sample

    monkeypatch.setattr(torch_sample, "MIN_LAYERS", 4)


def test_sampled_layers_give_the_graph_of_the_whole_export(sample_short_stacks, monkeypatch):
    """`sample_layers` (the default) exports 1, 2 and 3 layers and extrapolates: the same
    folded graph (counts, weights) as exporting every layer, for GPT-2, Llama with GQA and a
    MoE."""
    from chipforge.workload import torch_import

    exported = []
    real = torch_import._export
    monkeypatch.setattr(
        torch_import, "_export", lambda t, m, a, label: exported.append(m) or real(t, m, a, label)
    )
    small = {"vocab": 500, "hidden": 64, "heads": 8, "kv_heads": 2, "ffn": 128}
    for module, inputs in (
        gpt2.build(
            load_model("gpt2", layers=6, vocab=500, hidden=64, heads=4, ffn=256), batch=1, seq=16
        ),
        llama.build(load_model("llama3-8b", layers=5, **small), batch=1, seq=16),
        llama.build(load_model("mixtral-8x7b", layers=4, **small), batch=1, seq=16),
    ):
        stack = module.h if hasattr(module, "h") else module.layers
        layers = len(stack)
        exported.clear()
        fast = from_torch(module, inputs, dtype="bf16")
        assert len(exported) == 3  # the 1-, 2- and 3-layer cuts only: sampling really ran
        assert fast == from_torch(module, inputs, dtype="bf16", sample_layers=False)
        assert len(module.h if hasattr(module, "h") else module.layers) == layers  # restored


class Alternating(nn.Module):
    """Identical layers, but the parent runs the layers `pattern` picks twice."""

    def __init__(self, pattern):
        super().__init__()
        self.pattern = pattern
        self.layers = nn.ModuleList(nn.Linear(16, 16) for _ in range(6))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if self.pattern(i):
                x = layer(x)
        return x


@pytest.mark.parametrize(
    "pattern",
    [lambda i: i % 2 == 1, lambda i: i % 4 == 3, lambda i: i == 5, lambda i: i == 0],
    ids=["every-other", "every-4th", "last-only", "first-only"],
)
def test_sampling_sees_layers_that_differ_by_index(pattern, sample_short_stacks):
    """The parent runs some layers twice: the meta-tensor run sees it (or the linearity
    check does) and the model is exported whole: the same graph as without sampling."""
    from chipforge.workload.torch_sample import find_stack, uniform

    module, x = Alternating(pattern), torch.ones(2, 16)
    assert not uniform(module, (x,), find_stack(module))
    assert from_torch(module, x) == from_torch(module, x, sample_layers=False)
    assert from_torch(module, x).flops == 2 * 2 * 16 * 16 * sum(1 + pattern(i) for i in range(6))


def test_sampling_runs_real_weight_modules_on_meta_tensors(sample_short_stacks):
    """A CPU module with real weights: the check runs it with meta copies (nothing computed,
    the weights untouched) and the sampled graph is the whole export's."""
    from chipforge.workload.torch_sample import find_stack, uniform

    torch.manual_seed(0)
    module, x = Alternating(lambda i: False), torch.ones(2, 16)
    assert uniform(module, (x,), find_stack(module))
    before = [p.clone() for p in module.parameters()]
    fast = from_torch(module, x)
    assert fast == from_torch(module, x, sample_layers=False)
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_an_einsum_of_three_operands_is_unsupported_not_a_crash(tmp_path):
    """`ab,bc,cd->ad` has no two-operand grouping: the cost path prices it as an op without a
    rule, as an ellipsis (it unpacked two terms first: ValueError, exit 3), the functional
    runner refuses it in one line."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto
    from onnx import helper as h

    from chipforge.sim.onnx_run import einsum

    f32 = TensorProto.FLOAT
    names = ["a", "b", "c"]
    graph = h.make_graph(
        [h.make_node("Einsum", names, ["y"], name="/chain/Einsum", equation="ab,bc,cd->ad")],
        "chain",
        [h.make_tensor_value_info(n, f32, [4, 4]) for n in names],
        [h.make_tensor_value_info("y", f32, [4, 4])],
    )
    path = tmp_path / "chain.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), str(path))
    (op,) = from_onnx(path).ops  # no rule: costed as `unsupported_op`, its output's elements
    assert op.kind == "vector" and op.elements == 16 and op.flops == 16
    with pytest.raises(WorkloadError, match="only one product of two operands"):
        einsum("ab,bc,cd->ad", [np.ones((4, 4))] * 3, np.matmul)
    two = einsum("bij,bjk->bik", [np.ones((2, 3, 4)), np.ones((2, 4, 5))], np.matmul)
    assert np.array_equal(two, np.full((2, 3, 5), 4.0))


def test_onnx_external_initializers_are_read_once_and_only_on_request(tmp_path, monkeypatch):
    """Every small initializer in the external data file was read up front, weights too; now
    one is read when a node needs its numbers (the Reshape's target shape for inference, the
    mask analysis's `Program.load`), once, and a weight used by a MatMul not at all."""
    from onnx import TensorProto, helper, numpy_helper

    from chipforge.workload import onnx_import

    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    shape = numpy_helper.from_array(np.array([2, 2], np.int64), "shape")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]),
             helper.make_node("Reshape", ["y", "shape"], ["z"])]  # fmt: skip
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [weight, shape],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="m.onnx.data",
                    size_threshold=0)  # fmt: skip
    reads: list[str] = []
    read = onnx_import.small_external
    monkeypatch.setattr(
        onnx_import, "small_external", lambda o, t, *a: reads.append(t.name) or read(o, t, *a)
    )
    importer = onnx_import._Importer(onnx, onnx.load(str(path), load_external_data=False),
                                     path.name, {}, tmp_path)  # fmt: skip
    program = importer.program()
    assert program.values["z"].shape == (2, 2) and reads == ["shape"]
    assert np.array_equal(program.data("w"), np.ones((4, 4), np.float32))
    assert np.array_equal(program.data("w"), np.ones((4, 4), np.float32))
    assert reads == ["shape", "w"]


def _attention_onnx(path, mask: np.ndarray, layers: int = 2):
    """`layers` unfused attention layers (x Wq (x Wk)^T + mask, softmax, @ x Wv) of 8 tokens,
    each adding the same constant mask."""
    from onnx import TensorProto, helper, numpy_helper

    seq, width = len(mask), 4
    inits = [numpy_helper.from_array(mask.astype(np.float32), "mask")]
    nodes, x = [], "x"
    for i in range(layers):
        for w in "qkv":
            inits.append(numpy_helper.from_array(np.eye(width, dtype=np.float32), f"w{w}{i}"))
            nodes.append(helper.make_node("MatMul", [x, f"w{w}{i}"], [f"{w}{i}"]))
        nodes += [
            helper.make_node("Transpose", [f"k{i}"], [f"kt{i}"], perm=[1, 0]),
            helper.make_node("MatMul", [f"q{i}", f"kt{i}"], [f"s{i}"]),
            helper.make_node("Add", [f"s{i}", "mask"], [f"m{i}"]),
            helper.make_node("Softmax", [f"m{i}"], [f"p{i}"], axis=-1),
            helper.make_node("MatMul", [f"p{i}", f"v{i}"], [f"o{i}"]),
        ]
        x = f"o{i}"
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [seq, width])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [seq, width])], inits,
    )  # fmt: skip
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("blocked", [-np.inf, np.finfo(np.float32).min, -1e9, -1e4])
def test_constant_masks_are_causal_at_every_exporter_value_and_analysed_once(
    tmp_path, monkeypatch, blocked
):
    """A constant additive mask blocks with -inf, finfo.min, -1e9 or exactly -1e4 (BERT's
    `(1 - mask) * -10000.0`): the triangle reads causal at each (the band used `< -1e4`, the
    mask test `<= -1e4`, so -1e4 was a mask but not causal). Every layer adds the same
    tensor: it is analysed once, not once per layer."""
    from chipforge.workload import patterns

    calls = []
    facts = patterns._mask_facts
    monkeypatch.setattr(patterns, "_mask_facts", lambda d: calls.append(1) or facts(d))
    mask = np.triu(np.full((8, 8), blocked, np.float32), 1)
    graph = from_onnx(_attention_onnx(tmp_path / "a.onnx", mask, layers=3))
    assert graph.meta["attention"] == "causal" and len(calls) == 1
    full = from_onnx(_attention_onnx(tmp_path / "f.onnx", np.zeros((8, 8), np.float32)))
    assert full.meta["attention"] == "full"
