"""Hostile and careless input through the command line: one line naming the field, exit 2;
never a traceback, never a negative or NaN number. An unexpected exception is one line, exit 3,
and its traceback with --debug.

Most cases run in this process through `chipforge.cli.main` (the real entry point and its
guard); the entry point itself is also run as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from chipforge.cli import main
from chipforge.spec.loader import PRESET_DIR

H100 = (PRESET_DIR / "h100.toml").read_text()
H100_MACS = "macs_per_cycle = { bf16 = 2048, fp16 = 2048, fp8 = 4096, int8 = 4096, tf32 = 1024 }"
LLAMA = {  # a tiny Llama-shaped HuggingFace config
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "num_hidden_layers": 2,
    "hidden_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 512,
    "vocab_size": 1000,
    "max_position_embeddings": 512,
}
DEEPSEEK = {  # a tiny DeepSeek-V3-shaped config (MLA, MoE with leading dense layers)
    **LLAMA,
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "num_hidden_layers": 4,
    "qk_nope_head_dim": 32,
    "n_routed_experts": 8,
    "num_experts_per_tok": 2,
    "n_shared_experts": 1,
    "moe_intermediate_size": 128,
    "first_k_dense_replace": 1,
    "q_lora_rank": 64,
    "kv_lora_rank": 64,
    "qk_rope_head_dim": 16,
    "v_head_dim": 32,
}


def cli(*args: str) -> tuple[int, str, str]:
    """`chipforge ARGS` in this process, through the entry point's guard: (exit, out, err)."""
    with CliRunner().isolation() as (out, err, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
        sys.stdout.flush()
        sys.stderr.flush()
        return code, out.getvalue().decode(), err.getvalue().decode()


def write_tiny_onnx(path: Path) -> Path:
    """A one-MatMul ONNX model (input x: float32 [1, 8], weight all ones) at `path`."""
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    w = numpy_helper.from_array(np.ones((8, 8), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def assert_user_error(code: int, err: str, *words: str) -> None:
    """Exit 2, at most 3 lines on stderr, no traceback, and the message names `words`."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert 1 <= len(lines) <= 3 and "Traceback" not in err, err
    assert "internal error" not in err, err
    for w in words:
        assert w in err, (w, err)


def _chip(tmp: Path, name: str, content: str | bytes) -> str:
    path = tmp / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _config(tmp: Path, name: str, data: dict) -> str:
    folder = tmp / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(data))
    return str(folder / "config.json")


EVAL = ("evaluate", "--chip", "h100", "--json", "--workload")
TRAIN = ("train", "--chip", "h100", "--model", "llama3-8b", "--chips", "64", "--json")
SERVE = ("serve", "--chip", "h100", "--model", "llama3-8b", "--chips", "8", "--json")


@pytest.mark.parametrize(
    ("workload", "words"),
    [
        ("gemm:m=1e400,n=8,k=8", ["workload.m", "integer"]),
        ("llm:llama3-8b,layers=²", ["workload.layers"]),
        ("llm:llama3-8b,batch=2.7e0", ["workload.batch", "integer"]),  # was truncated to 2
        ("llm:llama3-8b,head_dim=-128", ["head_dim"]),
        ("llm:llama3-8b,act=relu", ["act", "swiglu"]),
        ("llm:llama3-8b,kv_heads=0", ["kv_heads"]),
        ("llm:llama3-8b,tp=3", ["tp", "heads"]),
        ("llm:llama3-8b,tied_embeddings=maybe", ["tied_embeddings"]),
        ("llm:llama3-8b,dense_layers=2", ["dense_layers", "MoE"]),
        ("llm:mixtral-8x7b,dense_layers=1000", ["dense_layers", "layers"]),  # was negative time
        ("llm:llama3-8b,scope=half", ["scope"]),
        ("gemm:m=9007199254740993,n=8,k=8", ["workload.m", "2**53"]),
    ],
)
def test_bad_workload_strings(workload, words):
    assert_user_error(*cli(*EVAL, workload)[::2], *words)


def test_every_integer_model_field_is_range_checked():
    """A new ModelConfig field gets a range (INT_FIELDS) or this fails."""
    from dataclasses import fields

    from chipforge.workload.config import INT_FIELDS, ModelConfig

    assert {f.name for f in fields(ModelConfig) if "int" in str(f.type)} == set(INT_FIELDS)


def test_name_and_mla_overrides_now_cost():
    """`name=` (a TypeError before) and MLA without a low-rank query (`kv_lora` alone: 0/0 in a
    zero-width q_down before) cost normally, with positive figures."""
    for workload in ("llm:llama3-8b,name=mine", "llm:llama3-8b,kv_lora=8,phase=decode"):
        code, out, err = cli(*EVAL, workload)
        assert code == 0, err
        data = json.loads(out)
        assert data["time_s"] > 0 and data["flops"] > 0 and data["energy_j"] > 0
    assert json.loads(cli(*EVAL, "llm:llama3-8b,name=mine")[1])["workload"].startswith("mine")


@pytest.mark.parametrize(
    ("chip", "words"),
    [
        (H100.replace("rows = 128", "rows = 1"), ["matrix.rows", ">= 4"]),
        (H100.replace(H100_MACS, "macs_per_cycle = {}"), ["matrix.macs_per_cycle", "empty"]),
        (H100.replace('clock = "1.83 GHz"', "clock = inf"), ["clock", "finite"]),
        (H100.replace('bandwidth = "3.35 TB/s"', "bandwidth = nan"), ["bandwidth", "finite"]),
        (H100.replace('clock = "1.83 GHz"', 'clock = "1e400 GHz"'), ["clock", "finite"]),
        (H100.encode("utf-16"), ["UTF-8"]),
        (bytes(range(256)), ["UTF-8"]),
    ],
    ids=["rows1", "macs-empty", "clock-inf", "bw-nan", "clock-1e400", "utf16", "binary"],
)
def test_bad_chip_files(tmp_path, chip, words):
    path = _chip(tmp_path, "chip.toml", chip)
    assert_user_error(*cli("show", path, "--json")[::2], *words)
    assert_user_error(*cli(*EVAL[:-3], "--workload", "gemm:m=64,n=64,k=64", "--chip", path)[::2])


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"num_hidden_layers": "32"}, ["num_hidden_layers", "integer"]),
        ({"hidden_size": [256]}, ["hidden_size", "integer"]),
        ({"hidden_size": 256.5}, ["hidden_size", "integer"]),
        ({"num_hidden_layers": True}, ["num_hidden_layers", "integer"]),
        ({"vocab_size": None}, ["vocab_size", "integer"]),
        ({"hidden_size": None}, ["hidden_size", "integer"]),  # was 4 * None (GPT-2: n_embd)
        ({"vocab_size": {"a": 1}}, ["vocab_size"]),
        ({"tie_word_embeddings": "yes"}, ["tie_word_embeddings"]),
        ({"model_type": ["llama"], "architectures": "x"}, ["architecture"]),
        ({"num_key_value_heads": 3}, ["heads", "kv_heads"]),
        ({"num_hidden_layers": -2}, ["layers", "num_hidden_layers"]),
    ],
)
def test_bad_config_json(tmp_path, change, words):
    path = _config(tmp_path, "model", {**LLAMA, **change})
    assert_user_error(*cli(*EVAL, path)[::2], *words)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"first_k_dense_replace": 1000}, ["dense_layers", "first_k_dense_replace"]),
        ({"qk_nope_head_dim": -128}, ["head_dim", "qk_nope_head_dim"]),
    ],
)
def test_bad_deepseek_config(tmp_path, change, words):
    """Both gave negative time and FLOPs before."""
    path = _config(tmp_path, "ds", {**DEEPSEEK, **change})
    assert_user_error(*cli(*EVAL, path)[::2], *words)


def test_tiny_dimensions_split_by_tp_cost(tmp_path):
    """A vocabulary or FFN smaller than tp: each rank holds ceil(size / tp) rows, never 0 (a
    zero-width lm_head divided by zero before; found by tests/test_fuzz.py)."""
    path = _config(tmp_path, "tiny", {**LLAMA, "vocab_size": 1, "intermediate_size": 1})
    code, out, err = cli(*EVAL, f"{path},tp=2")
    assert code == 0, err
    assert json.loads(out)["time_s"] > 0


def test_gpt2_config_without_a_width(tmp_path):
    """A GPT-2 config with `n_embd: null` (found by the randomized fuzz: `4 * None`)."""
    gpt2 = {"model_type": "gpt2", "n_layer": 2, "n_embd": None, "n_head": 4, "vocab_size": 10,
            "n_positions": 64}  # fmt: skip
    assert_user_error(*cli(*EVAL, _config(tmp_path, "g", gpt2))[::2], "n_embd", "integer")


def test_deepseek_without_q_lora_costs(tmp_path):
    path = _config(tmp_path, "lite", {**DEEPSEEK, "q_lora_rank": None})
    code, out, err = cli(*EVAL, path)
    assert code == 0, err
    assert json.loads(out)["flops"] > 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["datacenter", "--pue", "nan"], ["pue", "finite"]),
        (["datacenter", "--electricity-price", "nan"], ["--electricity-price"]),
        (["datacenter", "--electricity-price", "inf"], ["--electricity-price"]),
        (["datacenter", "--power", "1e400W"], ["--power", "finite"]),
        (["datacenter", "--tokens", "1e400T", "--model", "llama3-8b"], ["--tokens"]),
        (["datacenter", "--model", "llama3-8b", "--dtype", "int3"], ["--dtype"]),
        (["datacenter", "--compare", ","], ["--chip"]),
        (["datacenter", "--chip", ","], ["--chip"]),
        (["compare", "--chips", ",", "--workload", "gemm:m=8,n=8,k=8"], ["--chip"]),
        (["compare", "--chip", ",", "--workload", "gemm:m=8,n=8,k=8"], ["--chip"]),
        (["show", "x" * 5000], ["chip", "too long"]),
        (["show", "x" * 5000 + ".toml"], ["chip", "too long"]),
        ([*EVAL, "x" * 5000 + ".json"], ["workload", "too long"]),
        (["sweep", "x" * 5000 + ".toml"], ["space file", "too long"]),
        (["cost", "--chip", "forge-n3", "--node", ""], ["node"]),
        ([*SERVE, "--concurrency", "-5"], ["concurrency"]),
        ([*SERVE, "--concurrency", "0"], ["concurrency"]),
        ([*TRAIN, "--topology", "tpu-v5p-pod"], ["topology", "dgx-h100"]),
        ([*TRAIN, "--recompute", "most"], ["--recompute", "selective"]),  # was "does not fit"
        (["evaluate", "--chip", "h100"], ["--workload"]),  # a usage error: also exit 2
        (["evaluate", "--chip", "h100", "--workload", "gemm:m=8,n=8,k=8", "--nope"], ["--nope"]),
        (["serve", "--chip", "h100", "--model", "llama3-8b", "--chips", "many"], ["--chips"]),
    ],
    ids=lambda v: " ".join(v)[:60] if isinstance(v, list) else None,
)
def test_bad_flags(args, words):
    assert_user_error(*cli(*args)[::2], *words)


SPACE = """
[base]
chip = "forge-n3"
[params]
{param}
[[workloads]]
spec = "gemm:m=256,n=256,k=256"
[objectives]
time_s = "min"
"""


@pytest.mark.parametrize(
    ("param", "words"),
    [
        ('clock = ["1 GHz", "2 GB"]', ["clock", "2 GB", "frequency"]),
        ('clock = { min = "1 GB", max = "2 GB" }', ["clock", "frequency"]),
        ('cores = [4, "many"]', ["cores", "many"]),
        ('"memory.HBM3E.capacity" = ["192 GB", "9 TB/s"]', ["capacity", "9 TB/s"]),
        ("cores = [4, 0]", ["cores", "> 0"]),
        ('cores = { min = 2, max = 8, steps = "four" }', ["steps"]),
        ('clock = ["1.4 GHz", 1]', ["clock", "mixes strings and numbers"]),  # found by fuzzing
    ],
)
def test_space_value_errors_before_any_point(tmp_path, param, words):
    """docs/explore.md: a unit of the wrong kind in a choices list or range is refused before
    any point runs (the store is never created)."""
    space = tmp_path / "space.toml"
    space.write_text(SPACE.format(param=param))
    store = tmp_path / "store"
    assert_user_error(*cli("sweep", str(space), "--store", str(store), "--json")[::2], *words)
    assert not store.exists()


def test_sweep_address_without_dask_is_refused(tmp_path):
    """`--address` with the local backend was silently ignored; now one line."""
    space = tmp_path / "space.toml"
    space.write_text(SPACE.format(param="cores = [2, 4]"))
    args = ("sweep", str(space), "--store", str(tmp_path / "s"), "--address", "tcp://1.2.3.4:1")
    assert_user_error(*cli(*args)[::2], "--address", "--backend dask")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "text",
    [
        "base = 3",
        '[base]\nchip = "forge-n3"\n[params]\ncores = [2]\n[sampler]\nn = "ten"',
        '[base]\nchip = "forge-n3"\nparams = [1]',
        '[base]\nchip = "forge-n3"\n[params]\ncores = [2]\nworkloads = ["x"]\n',
    ],
)
def test_space_wrong_shapes(tmp_path, text):
    space = tmp_path / "space.toml"
    space.write_text(text)
    assert_user_error(*cli("sweep", str(space), "--store", str(tmp_path / "s"))[::2])


def test_an_internal_error_is_one_line_exit_3(monkeypatch):
    """A bug (here: a loader that raises something unexpected) is one line naming --debug,
    exit 3; with --debug (anywhere on the line) the traceback comes too."""
    import chipforge.cli.commands as commands

    def broken(name):
        raise RuntimeError("spec cache is corrupt")

    monkeypatch.setattr(commands, "load_chip", broken)
    code, _, err = cli("show", "h100")
    assert code == 3 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("internal error: RuntimeError: spec cache is corrupt")
    assert "--debug" in err and "Traceback" not in err
    code, _, err = cli("show", "h100", "--debug")
    assert code == 3 and "Traceback" in err and "spec cache is corrupt" in err


def test_a_nonsense_result_is_never_printed(monkeypatch):
    """The check every result passes before it is printed: a negative time or a NaN energy
    (from a model bug) stops with exit 3 and prints no number."""
    import chipforge.cli.commands as commands

    real = commands.estimate

    class Negative:  # a result whose model went wrong
        def __init__(self, graph, spec):
            self.result = real(graph, spec)
            self.warnings = self.result.warnings

        def __getattr__(self, name):  # the tables read the real result
            return getattr(self.result, name)

        def to_dict(self):
            return {**self.result.to_dict(), "time_s": -14.0}

    monkeypatch.setattr(commands, "estimate", Negative)
    code, out, err = cli(*EVAL, "gemm:m=64,n=64,k=64")
    assert code == 3 and out == "" and "time_s" in err and "-14.0" in err


def test_a_nonsense_sweep_point_is_failed_not_stored(monkeypatch):
    """A sweep point whose model returns a negative time is recorded as failed with the
    reason, never as an ok row with that number."""
    from chipforge.explore import evaluate as ev

    monkeypatch.setattr(ev, "objectives", lambda space, params: {"time_s": -1.0})
    row = ev.evaluate_point(None, {"cores": 2}, pid="p")
    assert row["status"] == "failed" and "time_s" in row["reason"] and "time_s" not in row


def test_check_numbers_rules():
    from chipforge.report.jsonout import check_numbers

    check_numbers({"error": -0.3, "time_s": 0.0, "ops": [{"flops": 1.0}], "delta": -1})
    for bad in (
        {"time_s": -1e-9},
        {"ops": [{"energy_j": -1}]},
        {"time_by_bound_s": {"memory": -2.0}},
        {"throughput_tokens_per_s": float("nan")},
        {"anything": float("nan")},
        {"capex_usd": {"total": -5}},
    ):
        with pytest.raises(AssertionError):
            check_numbers(bad)


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chipforge", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_entry_point_exit_codes_in_a_subprocess():
    """The entry point: a user error and a usage error exit 2 in one line."""
    bad = run("evaluate", "--chip", "h100", "--workload", "llm:llama3-8b,batch=2.7e0")
    assert_user_error(bad.returncode, bad.stderr, "workload.batch")
    usage = run("evaluate", "--chip", "h100", "--json")
    assert_user_error(usage.returncode, usage.stderr, "--workload", "chipforge evaluate --help")


def test_internal_error_in_a_subprocess():
    code = (
        "import sys, chipforge.cli as c, chipforge.cli.commands as m\n"
        "m.load_chip = lambda name: 1 / 0\n"
        "c.main()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "show", "h100"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 3, out.stderr
    assert out.stderr.strip().splitlines() == [
        "internal error: ZeroDivisionError: division by zero; rerun with --debug for the "
        "traceback and report it"
    ]
