"""End-to-end numerics: a 2-layer transformer and a small CNN (random weights), exported to ONNX
and to .pt2, run on the functional simulator with their real weights. bf16 matches PyTorch fp32
within the stated bound (graph_run.BF16_BOUND, derivation there and in docs/import.md); int8
symmetric-quantized matches a numpy int8 reference bit-exact."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest

from chipforge.errors import WorkloadError
from chipforge.sim.graph_run import BF16_BOUND, run_model
from chipforge.sim.matrix_backend import Backend, quantize
from chipforge.spec import load_chip
from chipforge.workload import load_pt2

torch = pytest.importorskip("torch", reason="end-to-end runs need torch (pip install .[models])")
onnx = pytest.importorskip("onnx", reason="end-to-end runs need onnx (pip install .[models])")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from chipforge.sim.onnx_run import load_model, run_onnx  # noqa: E402
from chipforge.sim.torch_run import run_program  # noqa: E402

CHIP = load_chip("forge-n3")


class Block(nn.Module):
    """Pre-LN transformer block: causal SDPA (4 heads of 8) and a GELU MLP."""

    def __init__(self, d: int = 32, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(Block(), Block())
        self.head = nn.Linear(32, 16)

    def forward(self, x):
        return self.head(self.blocks(x))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        return self.fc(F.relu(self.c2(x)).mean((2, 3)))


class GroupedCNN(nn.Module):
    """Grouped (2 groups), depthwise (groups = channels, stride 2) and pointwise convolutions."""

    def __init__(self):
        super().__init__()
        self.grouped = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.depthwise = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.pointwise = nn.Conv2d(8, 6, 1)

    def forward(self, x):
        return self.pointwise(F.relu(self.depthwise(F.relu(self.grouped(x)))))


MODELS = {
    "transformer": (Transformer, (2, 8, 32)),
    "cnn": (CNN, (2, 3, 16, 16)),
    "grouped": (GroupedCNN, (2, 4, 10, 10)),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each model with its example input, saved as .onnx and .pt2."""
    root, out = tmp_path_factory.mktemp("models"), {}
    torch.manual_seed(0)
    for name, (cls, shape) in MODELS.items():
        module, x = cls().eval(), torch.randn(*shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, (x,), str(root / f"{name}.onnx"), dynamo=False, opset_version=17
            )
            torch.export.save(torch.export.export(module, (x,)), str(root / f"{name}.pt2"))
        out[name] = (module, x, root)
    return out


def normwise(got, want) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("name", MODELS)
def test_onnx_bf16_on_chip_matches_pytorch_fp32(exported, name):
    module, x, root = exported[name]
    model = load_model(root / f"{name}.onnx")
    be = Backend("chip-bf16", CHIP)
    got = run_onnx(model, {model.graph.input[0].name: x.numpy()}, be)[model.graph.output[0].name]
    err = normwise(got, module(x).detach().numpy())
    assert be.programs >= 3  # every matrix node ran as a compiled program
    assert 2**-12 < err <= BF16_BOUND  # really rounded to bf16, and within the bound


@pytest.mark.parametrize("name", MODELS)
def test_pt2_bf16_on_chip_matches_pytorch_fp32(exported, name):
    module, x, root = exported[name]
    program = torch.export.load(str(root / f"{name}.pt2"))
    be = Backend("chip-bf16", CHIP)
    got = run_program(program, (x,), be)
    got = got[0] if isinstance(got, (tuple, list)) else got
    err = normwise(got.numpy(), module(x).detach().numpy())
    assert be.programs >= 3 and 2**-12 < err <= BF16_BOUND


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("ext", ["onnx", "pt2"])
@pytest.mark.parametrize("dtype", ["int8", "int8-channel"])
def test_int8_on_chip_is_bit_exact_against_numpy_int8(exported, name, ext, dtype):
    _, _, root = exported[name]
    data = run_model(root / f"{name}.{ext}", CHIP, dtype=dtype)
    assert data["bit_exact"] and data["result"] == "match" and data["chip_programs"] >= 3


def test_chip_int8_accumulators_equal_numpy_int32_products():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 40, 72)), rng.standard_normal((72, 24))
    chip, ref = Backend("chip-int8", CHIP), Backend("int8")
    assert np.array_equal(chip.matmul(a, b), ref.matmul(a, b))
    (qa, _), (qb, _) = quantize(a.astype(np.float32)), quantize(b.astype(np.float32))
    want = qa.reshape(-1, 72).astype(np.int64) @ qb.astype(np.int64)  # exact, no overflow
    assert np.array_equal(chip.int32[0], want)


def test_bf16_verdict_reports_per_node_and_the_bound(exported):
    _, _, root = exported["transformer"]
    data = run_model(root / "transformer.pt2", CHIP, dtype="bf16")
    assert data["result"] == "match" and data["bound"] == BF16_BOUND
    assert data["reference"].startswith("PyTorch fp32")
    assert len(data["nodes"]) > 10 and all(n["max_rel_diff"] < 0.1 for n in data["nodes"])


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "chipforge", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_simulate_functional_onnx_json(exported):
    _, _, root = exported["cnn"]
    run = cli(
        "simulate",
        "--chip",
        "forge-n3",
        "--functional",
        "--workload",
        str(root / "cnn.onnx"),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["result"] == "match" and data["max_rel_diff"] <= BF16_BOUND and data["nodes"]


def test_bad_onnx_file_exits_2(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    run = cli("simulate", "--chip", "forge-n3", "--functional", "--workload", str(bad))
    assert run.returncode == 2 and "not a readable ONNX model" in run.stderr


@pytest.mark.parametrize("content", [b"not a zip archive", "zip"])
def test_corrupt_pt2_same_error_from_importer_and_functional_run(tmp_path, content):
    """One loader (torch_import.load_exported): the same one-line error both ways, on a file
    that is not a zip and on a zip that is not a torch.export archive."""
    bad = tmp_path / "bad.pt2"
    if content == "zip":
        with zipfile.ZipFile(bad, "w") as z:
            z.writestr("weights.bin", b"x")
    else:
        bad.write_bytes(content)
    with pytest.raises(WorkloadError) as imported:
        load_pt2(bad)
    with pytest.raises(WorkloadError) as ran:
        run_model(bad, CHIP)
    assert str(imported.value) == str(ran.value)
    assert str(ran.value).startswith("`workload` bad.pt2 is not a readable torch.export program")
    assert str(ran.value).endswith(
        "save one with torch.export.save(torch.export.export(model, inputs), path)"
    )


def test_corrupt_pt2_cli_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a zip archive")
    runs = [
        cli("evaluate", "--chip", "forge-n3", "--workload", str(bad)),
        cli("simulate", "--chip", "forge-n3", "--functional", "--workload", str(bad)),
    ]
    for run in runs:
        assert run.returncode == 2, run.stderr
        lines = run.stderr.strip().splitlines()  # torch's own logged traceback is filtered
        assert len(lines) == 1 and "bad.pt2 is not a readable torch.export program" in lines[0]
    assert runs[0].stderr == runs[1].stderr


def test_dynamic_onnx_dims_need_binding(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "dyn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            CNN().eval(),
            (torch.randn(2, 3, 16, 16),),
            str(path),
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
            opset_version=17,
        )
    with pytest.raises(WorkloadError, match="batch=N"):
        run_model(path, CHIP)
    assert run_model(path, CHIP, dims={"batch": 3})["inputs"] == {"x": [3, 3, 16, 16]}
    with pytest.raises(WorkloadError, match="not a dynamic dimension"):  # as the importer
        run_model(path, CHIP, dims={"batch": 3, "seq": 8})


# --- fused attention, per-channel int8 ------------------------------------------------------


class SDPA(nn.Module):
    def __init__(self, causal: bool, gqa: bool):
        super().__init__()
        self.causal, self.gqa = causal, gqa

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, enable_gqa=self.gqa)


ATTENTION_BOUND = 2.0**-6  # Q, K, V, P and O each rounded to bf16 once: a few u = 2^-9


FUSED_MATRIX = "fused attention (products on matrix units)"
FUSED_VECTOR = "fused attention (products on vector units)"


@pytest.mark.parametrize(
    "fmt, shape, causal, ran",
    [
        ("pt2", (1, 4, 2, 128, 128, 64), True, FUSED_MATRIX),  # GQA, 2 query heads a KV head
        ("pt2", (2, 8, 2, 16, 16, 16), True, FUSED_VECTOR),
        ("pt2", (2, 4, 4, 4, 12, 8), False, FUSED_VECTOR),
        ("pt2", (1, 2, 2, 4, 8, 8), True, "two matmuls"),  # causal, q_len != kv_len
        ("onnx", (2, 4, 4, 128, 128, 64), True, FUSED_MATRIX),  # MatMul-Softmax-MatMul chain
        ("onnx", (1, 4, 4, 16, 16, 16), False, FUSED_VECTOR),
        ("onnx", (1, 2, 2, 4, 8, 8), True, "two matmuls"),
    ],
)
def test_sdpa_runs_as_the_fused_attention_program(tmp_path, fmt, shape, causal, ran):
    """Real Q, K, V (GQA included) packed to the fused program's layout, against torch SDPA
    fp32; the log says which program ran (the two-matmul fallback where it cannot)."""
    b, heads, kv_heads, lq, lk, d = shape
    torch.manual_seed(0)
    q, k, v = (torch.randn(b, h, n, d) for h, n in ((heads, lq), (kv_heads, lk), (kv_heads, lk)))
    module = SDPA(causal, heads != kv_heads)
    be = Backend("chip-bf16", CHIP)
    if fmt == "pt2":
        got = run_program(torch.export.export(module, (q, k, v)), (q, k, v), be).numpy()
    else:  # the TorchScript exporter writes SDPA out as MatMul, Softmax, MatMul
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (q, k, v), str(tmp_path / "a.onnx"), dynamo=False)
        model = load_model(tmp_path / "a.onnx")
        feeds = {i.name: t.numpy() for i, t in zip(model.graph.input, (q, k, v), strict=True)}
        got = run_onnx(model, feeds, be)[model.graph.output[0].name]
    ((log,),) = [be.attention_log]
    units = f" (products on {log['products_on']})" if "products_on" in log else ""
    assert log["program"] + units == ran
    assert 2**-12 < normwise(got, module(q, k, v).numpy()) <= ATTENTION_BOUND


@pytest.mark.parametrize("ext", ["onnx", "pt2"])
def test_model_run_reports_fused_attention(exported, ext):
    _, _, root = exported["transformer"]
    data = run_model(root / f"transformer.{ext}", CHIP, dtype="bf16")
    assert [a["program"] for a in data["attention"]] == ["fused attention"] * 2
    assert data["result"] == "match"


def test_per_channel_int8_against_a_numpy_formula():
    """Weights quantized one scale per output channel (column), activations per tensor:
    the chip's result equals numpy's int8 formula bit for bit, and with columns of very
    different ranges it is closer to fp32 than per-tensor quantization."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((24, 40)).astype(np.float32)
    w = (rng.standard_normal((40, 16)) * np.logspace(-2, 1, 16)).astype(np.float32)
    sa = np.float32(np.abs(a).max() / np.float32(127))
    sw = (np.abs(w).max(axis=0, keepdims=True) / np.float32(127)).astype(np.float32)
    qa = np.clip(np.rint(a / sa), -127, 127).astype(np.int32)
    qw = np.clip(np.rint(w / sw), -127, 127).astype(np.int32)
    want = (qa @ qw).astype(np.float32) * (sa * sw)
    got = Backend("chip-int8", CHIP, per_channel=True).matmul(a, w)
    assert np.array_equal(got, want)
    exact = a @ w
    tensor = Backend("chip-int8", CHIP).matmul(a, w)
    per_column = lambda x: np.abs(x - exact).max(axis=0) / np.abs(exact).max(axis=0)  # noqa: E731
    assert per_column(got).max() < 0.05 < per_column(tensor).max()
