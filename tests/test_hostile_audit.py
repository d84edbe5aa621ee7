"""Hostile input past test_hostile*.py: model config.json values that reach transformers,
model-folder files, `--inputs` arrays, decide scenarios, studio requests. Each case is one line
on stderr naming the field, exit 2, never a traceback, and nothing downloaded or run.

In process through `chipforge.cli.main` (the real entry point and its guard)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from test_hostile import LLAMA, assert_user_error, cli, write_tiny_onnx

BERT = {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 128, "vocab_size": 1000}  # fmt: skip


@pytest.fixture
def no_network(monkeypatch):
    """Any name lookup or connection fails the test (transformers fetched Hub kernels)."""
    tried = []

    def refuse(*args, **kwargs):
        tried.append(args[:1])
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield tried
    assert not tried, f"chipforge tried the network: {tried}"


def _evaluate(tmp_path, config: dict, extra: str = ",seq=16"):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return cli("evaluate", "--chip", "h100", "--workload", f"{path}{extra}", "--json")


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        # a Hub kernel name: transformers looked it up on huggingface.co to download and import it
        ({"attn_implementation": "kernels-community/flash-attn"}, ["attn_implementation"]),
        ({"_attn_implementation": "kernels-community/flash-attn"}, ["_attn_implementation"]),
        ({"_attn_implementation": "flash_attention_2"}, ["eager"]),
        ({"experts_implementation": "evil/kernel"}, ["experts_implementation"]),
        # CLIP's legacy *_config_dict tables were not size-checked: 100,000 layers traced for
        # minutes at 4 GB
        (
            {"model_type": "clip", "text_config_dict": {"num_hidden_layers": 100_000}},
            ["text_config_dict.num_hidden_layers", "256"],
        ),
        ({"text_config": {"attn_implementation": "kernels-community/x"}}, ["text_config."]),
    ],
)
def test_traced_config_code_keys_and_nested_sizes(tmp_path, no_network, edit, words):
    assert_user_error(*_evaluate(tmp_path, BERT | edit)[::2], *words)


def test_traced_config_total_layers(tmp_path, no_network):
    """256 layers per key, but T5's decoder defaults to its encoder's depth: 512 layers in all
    traced for two minutes. The cap holds for what transformers builds, defaults included."""
    t5 = {"model_type": "t5", "d_model": 64, "d_ff": 128, "d_kv": 32, "num_heads": 2,
          "num_layers": 256, "vocab_size": 1000}  # fmt: skip
    assert_user_error(*_evaluate(tmp_path, t5)[::2], "512 layers", "256")


def test_traced_config_validator_error_is_a_user_error(tmp_path, no_network):
    """transformers' dataclass validators raise their own exception types (exit 3 before)."""
    assert_user_error(*_evaluate(tmp_path, BERT | {"layer_types": ["x"] * 3})[::2], "layer_types")


def test_traced_config_loader_metadata_is_ignored(tmp_path, no_network):
    """auto_map / trust_remote_code / quantization_config name code and weights to load: none
    is loaded, the model is the plain BERT of the config (same FLOPs as without them)."""
    plain = _evaluate(tmp_path, BERT)
    hostile = BERT | {
        "auto_map": {"AutoModel": "evil--m.Evil"},
        "trust_remote_code": True,
        "architectures": ["Evil"],
        "quantization_config": {"quant_method": "x"},
    }
    code, out, err = _evaluate(tmp_path, hostile)
    assert code == 0 and plain[0] == 0, err
    assert json.loads(out)["flops"] == json.loads(plain[1])["flops"] > 0


# `simulate --functional --inputs file.npz`: arrays checked from their .npy headers first


def _npz(tmp_path, header: dict, data: bytes = b"", name: str = "input_ids.npy"):
    """An .npz whose member declares `header` (an .npy v1.0 header) followed by `data`."""
    import zipfile

    import numpy as np

    buf = __import__("io").BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    path = tmp_path / "in.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, buf.getvalue() + data)
    return path


def test_inputs_npz_declared_shape_is_checked_before_reading(tmp_path):
    """A 300-byte .npz declaring 10^12 float64 (7.3 TiB): numpy allocated it before the shape
    check (MemoryError, exit 3, or an overcommitted array filled by an inflating member)."""
    import resource

    from chipforge.errors import WorkloadError
    from chipforge.sim.graph_run import load_inputs

    big = {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(WorkloadError, match=r"has shape \[1000000, 1000000\].*takes \[1, 32\]"):
        load_inputs(_npz(tmp_path, big), {"input_ids": (1, 32)})
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB


@pytest.mark.parametrize(
    "header",
    [
        {"descr": "|V8", "fortran_order": False, "shape": (1, 32)},  # raw bytes
        {"descr": "<U4", "fortran_order": False, "shape": (1, 32)},  # strings
    ],
)
def test_inputs_npz_plain_numbers_only(tmp_path, header):
    from chipforge.errors import WorkloadError
    from chipforge.sim.graph_run import load_inputs

    path = _npz(tmp_path, header, b"\0" * 32 * 16)
    with pytest.raises(WorkloadError, match="not a readable .npz of plain arrays"):
        load_inputs(path, {"input_ids": (1, 32)})


# train --calculon-plan FILE: every field's type checked (exit 3 or silently reinterpreted before)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ({"activation_recompute": ["full"]}, ["activation_recompute"]),  # TypeError, exit 3
        ({"pipeline_interleaving": "x"}, ["pipeline_interleaving"]),  # TypeError, exit 3
        ({"pipeline_interleaving": 1.5}, ["pipeline_interleaving"]),  # "no plan"
        ({"optimizer_sharding": "no"}, ["optimizer_sharding", "true or false"]),  # was ZeRO-1
        ({"tensor_par": True}, ["tensor_par"]),  # was tp=True: "True*1*8 = 8"
        ({"tensor_par_comm_type": "x"}, ["tensor_par_comm_type"]),
        ({"batch_size": 7}, ["global batch 7", "dp=8"]),  # was "no plan"
    ],
)
def test_calculon_plan_fields(tmp_path, edit, words):
    exe = {"tensor_par": 8, "pipeline_par": 1, "data_par": 8, "batch_size": 64,
           "microbatch_size": 1, "activation_recompute": "full", "pipeline_interleaving": 1,
           "optimizer_sharding": True}  # fmt: skip
    path = tmp_path / "exe.json"
    path.write_text(json.dumps(exe | edit))
    args = ("train", "--chip", "h100", "--model", "llama3-8b", "--chips", "64", "--tokens", "1T")
    assert_user_error(*cli(*args, "--calculon-plan", str(path), "--json")[::2], *words)


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        # the given plan splits no batch: was "--dp 8 does not divide 64 chips" (it does)
        (["--global-batch", "7", "--micro-batch", "1"], ["global batch 7", "dp=8"]),
        # was "llama3-8b does not fit on 64 x h100 in any plan ... need at least 2 chips"
        (["--global-batch", "64", "--micro-batch", "3"], ["micro-batch 3", "8 sequences"]),
    ],
)
def test_train_given_plan_that_splits_no_batch_says_why(flags, words):
    args = ("train", "--chip", "h100", "--model", "llama3-8b", "--chips", "64", "--tokens", "1T")
    plan = ("--tp", "8", "--pp", "1", "--dp", "8")
    assert_user_error(*cli(*args, *plan, *flags, "--json")[::2], *words)


def test_train_dp_that_divides_the_chips_is_not_said_not_to():
    """--dp 4 --tp 1 of 64 chips: pp would be 16 for a 4-layer model, so no plan; the message
    was "--dp 4 does not divide 64 chips with the other flags"."""
    tiny = "llm:custom,layers=4,hidden=512,heads=8,kv_heads=2,ffn=2048,vocab=32000"
    args = ("train", "--chip", "h100", "--model", tiny, "--chips", "64", "--dp", "4")
    code, _, err = cli(*args, "--tp", "1", "--json")
    assert_user_error(code, err, "16 chips of a data-parallel replica", "--dp 4")
    assert "does not divide" not in err


def test_rtl_generate_keeps_the_folder_s_readme(tmp_path):
    """`rtl generate --out ./array.v` replaced the folder's own README.md with its notes."""
    pytest.importorskip("amaranth")
    (tmp_path / "README.md").write_text("my project\n")
    code, _, err = cli("rtl", "generate", "--rows", "2", "--cols", "2", "--out",
                       str(tmp_path / "array.v"))  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "README.md").read_text() == "my project\n"
    assert "2 x 2" in (tmp_path / "array.md").read_text()


def test_train_on_an_absurd_chip_count_answers_at_once():
    """--chips 2**62: the domain split searched divisors up to sqrt(n) (2**31 steps, 90 s);
    then it answered with a plan whose dp was past 2**53. Now refused; the cap answers."""
    import signal

    def too_slow(*_):
        raise TimeoutError("train --chips 2**62 took over 30 s")

    old = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(30)
    try:
        code, _, err = cli("train", "--chip", "h100", "--model", "llama3-8b", "--chips",
                           str(2**62))  # fmt: skip
        assert_user_error(code, err, "--chips", "16,777,216")
        code, out, err = cli("train", "--chip", "h100", "--model", "llama3-8b", "--chips",
                             str(2**24), "--json")  # fmt: skip
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert code == 0, err
    assert json.loads(out)["chips"] == 2**24


def test_largest_divisor_counts_down_to_the_same_answer():
    import math

    from chipforge.cluster.collectives import _largest_divisor

    for n in range(1, 400):
        for cap in (1, 2, 7, 8, 64, 72, 500):
            pairs = (x for d in range(1, math.isqrt(n) + 1) if n % d == 0 for x in (d, n // d))
            assert _largest_divisor(n, cap) == max(x for x in pairs if x <= cap), (n, cap)


# model folders: safetensors headers


def _retile(path, edit) -> None:
    """Rewrite a safetensors file's header through `edit(header) -> header` (data kept)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.dumps(edit(json.loads(raw[8 : 8 + n]))).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + raw[8 + n :])


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        # 1,000 tensors on one 512-byte span: 256,000 parameters claimed from 512 bytes
        (
            lambda h: h | {f"t{i}": h["a"] for i in range(1000)},
            ["overlap"],
        ),
        (
            lambda h: {"a": h["a"] | {"data_offsets": [512, 1024]}, "b": h["b"]},
            ["leave bytes 0-512 out"],
        ),
        (lambda h: {"a": h["a"]}, ["cover 512 of its 1024"]),  # b's bytes left unindexed
    ],
)
def test_safetensors_spans_tile_the_data(tmp_path, edit, words):
    """The format's own rule, which the safetensors library enforces when it loads (its
    `safe_open` refuses the same files): tensors tile the data, no overlap, no hole."""
    import numpy as np
    from safetensors import SafetensorError, safe_open
    from safetensors.numpy import save_file

    from chipforge.errors import WorkloadError
    from chipforge.workload.checkpoint import read_folder

    path = tmp_path / "model.safetensors"
    save_file({"a": np.zeros((16, 16), np.float16), "b": np.ones((16, 16), np.float16)}, path)
    assert read_folder(tmp_path).params == 512  # a real file passes
    _retile(path, edit)
    with pytest.raises(WorkloadError, match="|".join(words)):
        read_folder(tmp_path)
    with pytest.raises(SafetensorError), safe_open(path, "np") as f:
        [f.get_tensor(k) for k in f.keys()]  # noqa: B018, SIM118


# one vocabulary: files named in a file are found beside it (as decide's scenarios do)


def test_sweep_space_finds_its_config_json_beside_it(tmp_path, monkeypatch):
    """A space beside the user's chip TOML and config.json, run from another folder: the chip
    was found, the workload's config.json was not ("does not exist")."""
    import shutil

    repo = Path(__file__).resolve().parents[1]
    shutil.copy(repo / "examples" / "my-chip.toml", tmp_path / "my-chip.toml")
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    (tmp_path / "space.toml").write_text(
        '[base]\nchip = "my-chip.toml"\n[params]\nclock = ["1.5 GHz", "2 GHz"]\n'
        '[[workloads]]\nspec = "config.json,phase=decode,batch=8"\n'
        '[[workloads]]\nspec = "llama3-8b,phase=decode"\n'  # a preset stays a preset
        '[objectives]\ntime_s = "min"\n[sampler]\nmethod = "grid"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = cli("sweep", str(tmp_path / "space.toml"), "--store", "st", "--workers",
                         "1", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["ok"] == 2 and json.loads(out)["base_chip"] == "my-chip"


def test_traced_config_overflowing_batch_is_one_line(tmp_path, capfd, monkeypatch):
    """batch=99999999999999 on a BERT: torch's fake tensors logged a 30-line traceback on
    stderr (the storage size overflows int64) before a one-line error from torch.export. The
    run's sizes are now checked before torch is even imported."""
    import chipforge.workload.hf_traced as traced

    def no_torch(*args):
        raise AssertionError("torch imported before the sizes were checked")

    monkeypatch.setattr(traced, "require", no_torch)
    for extra, words in (
        (",batch=99999999999999", ["workload.batch", "1,048,576"]),
        (",seq=99999999999999", ["workload.seq", "16,777,216"]),
        (",seq=1024", ["workload.seq", "at most 512"]),  # the config's own position table
    ):
        code, _, err = _evaluate(tmp_path, BERT | {"max_position_embeddings": 512}, extra)
        assert_user_error(code, err, *words)
    logged = capfd.readouterr().err
    assert "Traceback" not in logged, logged[:400]


T5 = {"model_type": "t5", "d_model": 64, "d_ff": 128, "d_kv": 32, "num_heads": 2,
      "num_layers": 2, "vocab_size": 1000}  # fmt: skip


@pytest.mark.parametrize(
    ("config", "extra", "words"),
    [
        # no position table: 10**6 tokens of attention scores (2e12 elements), caught once
        # the config's defaults are known, before the model is built and traced
        (T5, ",seq=1000000", ["attention scores"]),
        (BERT, ",seq=1024", ["workload.seq", "512"]),  # BERT's default table
        (
            {**BERT, "model_type": "vit", "image_size": 16384, "patch_size": 1},
            "",
            ["patches", "patch_size"],
        ),
    ],
)
def test_traced_config_run_sizes_checked_before_the_trace(tmp_path, config, extra, words):
    assert_user_error(*_evaluate(tmp_path, config, extra)[::2], *words)


def test_traced_config_warnings_are_held_back(tmp_path):
    """transformers logged four lines about token ids past a toy vocabulary before the one
    line saying it cannot build the model."""
    whisper = {"model_type": "whisper", "d_model": 64, "encoder_layers": 1, "decoder_layers": 1,
               "encoder_attention_heads": 2, "decoder_attention_heads": 2,
               "encoder_ffn_dim": 128, "decoder_ffn_dim": 128, "vocab_size": 1000}  # fmt: skip
    code, _, err = _evaluate(tmp_path, whisper, "")
    assert_user_error(code, err, "whisper")
    assert "[transformers]" not in err and len(err.strip().splitlines()) == 1, err


def test_image_tower_config_warnings_are_held_back(tmp_path):
    """An image-text config's vision tower (`images=`) was built without the traced configs'
    quiet logger: transformers' line about a pad token past the vocabulary came first."""
    text = {"vocab_size": 256, "hidden_size": 32, "intermediate_size": 64, "head_dim": 16,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "max_position_embeddings": 128, "pad_token_id": 5000}  # fmt: skip
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
              "num_attention_heads": 2, "image_size": 32, "patch_size": 8}  # fmt: skip
    gemma3 = {"model_type": "gemma3", "text_config": text, "vision_config": vision,
              "mm_tokens_per_image": 4}  # fmt: skip
    import logging

    records: list[logging.LogRecord] = []
    catch = logging.Handler()
    catch.emit = records.append
    logging.getLogger("transformers").addHandler(catch)
    try:
        code, _, err = _evaluate(tmp_path, gemma3, ",seq=64,images=1")
    finally:
        logging.getLogger("transformers").removeHandler(catch)
    assert_user_error(code, err, "gemma3", "Padding_idx")
    assert not records, [r.getMessage() for r in records]


def test_decide_terminal_numbers_are_people_s_numbers(tmp_path):
    """The decide summary printed "1.91e+17 tokens", "24.1 GUSD" and `.3g` prices (1.23e+03
    past $1,000): display's count and money formats, as every other table."""
    import re

    repo = Path(__file__).resolve().parents[1]
    text = (repo / "examples" / "decide" / "forge_vs_rent.toml").read_text()
    path = tmp_path / "s.toml"
    path.write_text(text.replace("samples = 16384", "samples = 64"))
    code, out, err = cli("decide", str(path))
    assert code == 0, err
    assert not re.search(r"\d[eE][+-]?\d", out), [ln for ln in out.splitlines() if "e+" in ln]
    assert "GUSD" not in out and "MUSD" not in out
    assert re.search(r"useful tokens delivered \(P50\)\s*│\s*[\d.,]+ [kMGTPE]? ?tokens", out)


def test_simulate_functional_table_says_yes_or_no(tmp_path):
    """The end-to-end verdict table printed Python's `False` under "bit exact"."""
    path = write_tiny_onnx(tmp_path / "tiny.onnx")
    code, out, err = cli("simulate", "--chip", "forge-n3", "--workload", str(path), "--functional")
    assert code == 0, err
    assert "bit exact" in out and "False" not in out and "True" not in out


def test_decide_json_chip_keys_carry_units(tmp_path):
    """decide --json listed each chip's `w_it`, `peak_bf16`, `useful` and `parts` with no unit
    in the key (watts, FLOP/s, FLOP/s per chip, USD)."""
    repo = Path(__file__).resolve().parents[1]
    text = (repo / "examples" / "decide" / "forge_vs_rent.toml").read_text()
    path = tmp_path / "s.toml"
    path.write_text(text.replace("samples = 16384", "samples = 64"))
    code, out, err = cli("decide", str(path), "--json")
    assert code == 0, err
    build = json.loads(out)["chips"]["build"]
    assert {"it_power_w", "peak_bf16_flops_per_s", "useful_flops_per_s_per_chip",
            "parts_usd"} <= set(build)  # fmt: skip
    assert not {"w_it", "peak_bf16", "useful", "parts"} & set(build)


RACK = """chip = "my-chip.toml"
chips = 64
power = 90e3
power_basis = "max"
cooling = "liquid"
other_hw_usd_per_rack = 320000
"""


def _own_chip_and_rack(folder: Path) -> None:
    import shutil

    repo = Path(__file__).resolve().parents[1]
    shutil.copy(repo / "examples" / "my-chip.toml", folder / "my-chip.toml")
    (folder / "my-rack.toml").write_text(RACK)


def test_datacenter_rack_toml_naming_its_chip_toml(tmp_path):
    """A rack TOML whose `chip` is the user's chip TOML beside it: refused as "holds
    my-chip.toml, not my-chip" (the path compared with the chip's name)."""
    _own_chip_and_rack(tmp_path)
    chip, rack = str(tmp_path / "my-chip.toml"), str(tmp_path / "my-rack.toml")
    code, out, err = cli("datacenter", "--chip", chip, "--rack", rack, "--power", "10MW", "--json")
    assert code == 0, err
    assert json.loads(out)["rack"]["name"] == "my-rack"
    code, _, err = cli("datacenter", "--chip", "h100", "--rack", rack, "--power", "10MW")
    assert_user_error(code, err, "my-rack", "h100")  # another chip is still refused


def test_decide_scenario_finds_its_rack_toml_beside_it(tmp_path, monkeypatch):
    """The scenario's chip TOML was found beside it, its rack TOML was not."""
    _own_chip_and_rack(tmp_path)
    repo = Path(__file__).resolve().parents[1]
    text = (repo / "examples" / "decide" / "forge_vs_rent.toml").read_text()
    text = text.replace('chip = "forge-n3"\nrack = "forge-n3-rack"',
                        'chip = "my-chip.toml"\nrack = "my-rack.toml"')  # fmt: skip
    assert 'rack = "my-rack.toml"' in text
    (tmp_path / "s.toml").write_text(text.replace("samples = 16384", "samples = 64"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = cli("decide", str(tmp_path / "s.toml"), "--json")
    assert code == 0, err
    assert json.loads(out)["chips"]["build"]["rack"]["name"] == "my-rack"


def test_working_set_warning_has_an_si_prefix(tmp_path):
    """The warning printed "working set 108383628632.6 GB" for a 2**40-layer config (the loader
    now caps the layers at 2**22, a working set of terabytes)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(LLAMA | {"num_hidden_layers": 2**22}))
    code, _, err = cli("evaluate", "--chip", "h100", "--workload", str(path), "--json")
    assert code == 0, err
    assert __import__("re").search(
        r"working set \d{1,3}(\.\d+)? [kMGTPE]B exceeds h100's 80.0 GB", err
    ), err


def test_compare_refuses_one_chip_twice_by_another_spelling(tmp_path):
    """compare took one TOML by two paths (two identical rows), and a user TOML named "h100"
    next to the h100 preset (two rows both called h100, different numbers)."""
    _own_chip_and_rack(tmp_path)
    mine = tmp_path / "my-chip.toml"
    fake = tmp_path / "fake.toml"
    fake.write_text(mine.read_text().replace('name = "my-chip"', 'name = "h100"', 1))
    for chips in (f"{mine},{tmp_path}/../{tmp_path.name}/my-chip.toml", f"{fake},h100"):
        code, _, err = cli("compare", "--chip", chips, "--workload", "gpt2", "--json")
        assert_user_error(code, err, "are both chip", "give each chip once")
    code, _, err = cli("compare", "--chip", f"{mine},h100", "--workload", "gpt2", "--json")
    assert code == 0, err


def test_studio_keeps_a_bounded_number_of_uploads(monkeypatch):
    """Every upload (and every file opened from a shared URL) was kept on disk for the session
    without a count cap: requests could fill the disk 8 MiB at a time. Then the store refused
    every new file past the cap; now the least recently used one goes (its file removed)."""
    pytest.importorskip("dash")
    import base64

    from chipforge.studio import compute

    monkeypatch.setattr(compute, "_UPLOADS", {})
    monkeypatch.setattr(compute, "MAX_UPLOADS", 3)
    monkeypatch.setattr(compute, "IN_USE_S", 0.0)  # none in use (that rule: test_studio)
    keys = [compute.keep(f"x = {i}\\n".encode(), "chip") for i in range(3)]
    paths = [compute.upload_path(k) for k in keys]
    assert compute.keep(b"x = 0\\n", "chip") == keys[0]  # the same bytes: the same file
    compute.upload_path(keys[1])  # used: keys[2] is now the least recently used
    upload = "data:text/plain;base64," + base64.b64encode(b"x = 9\\n").decode()
    new = compute.save_upload(upload, "chip")
    assert list(compute._UPLOADS) == [keys[0], keys[1], new]
    assert not paths[2].exists() and paths[0].exists()
    with pytest.raises(compute.ChipforgeError, match="no longer on the server"):
        compute.upload_path(keys[2])


@pytest.mark.parametrize("dtype", [{"a": 1}, ["F16"], None, 16])
def test_safetensors_dtype_of_another_type(tmp_path, dtype):
    """A header whose dtype is a table was a TypeError (unhashable dict), exit 3 (found by the
    model-folder fuzzer with random seeds)."""
    import numpy as np
    from safetensors.numpy import save_file

    from chipforge.errors import WorkloadError
    from chipforge.workload.checkpoint import read_folder

    path = tmp_path / "model.safetensors"
    save_file({"a": np.zeros((4, 4), np.float16)}, path)
    _retile(path, lambda h: {"a": h["a"] | {"dtype": dtype}})
    with pytest.raises(WorkloadError, match="malformed"):
        read_folder(tmp_path)


HUGE = str(2**62)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        # each answered (a plan for 2**62 chips) or ran for minutes before
        (["train", "--chips", HUGE], ["--chips", "16,777,216"]),
        (["train", "--chips", "64", "--global-batch", f"1:{HUGE}"], ["--global-batch", "2,097"]),
        (["train", "--chips", "64", "--global-batch", "1:65537"], ["--global-batch", "65,536"]),
        (["train", "--chips", "64", "--global-batch", HUGE], ["--global-batch", "2,097,152"]),
        (["train", "--chips", "64", "--tokens-per-batch", "1e30"], ["--tokens-per-batch"]),
        (["train", "--chips", "64", "--seq", HUGE], ["--seq", "16,777,216"]),
        (["train", "--chips", "64", "--tp", HUGE], ["--tp", "16,777,216"]),
        (["serve", "--chips", HUGE], ["--chips", "16,777,216"]),
        (["serve", "--chips", "8", "--max-batch", HUGE], ["--max-batch", "1,048,576"]),
        (["serve", "--chips", "8", "--concurrency", HUGE], ["--concurrency", "1,048,576"]),
        (["serve", "--chips", "8", "--osl", HUGE], ["--osl", "16,777,216"]),
        # the balance wait's law was tabulated step by step up to it: ran for ever
        (["serve", "--chips", "8", "--adp-balance", HUGE], ["--adp-balance", "10,000"]),
        # under the cap but past the model's maximum context
        (["serve", "--chips", "1", "--isl", str(2**24), "--concurrency", "1"], ["131,072"]),
    ],
)
def test_counts_are_capped(args, words):
    """Huge counts are one line naming the flag and its limit, before any search."""
    code, _, err = cli(args[0], "--chip", "h100", "--model", "llama3-8b", *args[1:])
    assert_user_error(code, err, *words)


def test_context_past_the_kv_cache_names_the_fix():
    """Under the cap, past the KV cache (a preset stating no maximum context): the message
    said no fix."""
    code, _, err = cli("serve", "--chip", "h100", "--model", "qwen2-7b", "--chips", "1",
                       "--isl", str(2**24), "--concurrency", "1")  # fmt: skip
    assert_user_error(code, err, "lower --isl")


def test_counts_are_capped_in_the_api():
    import chipforge as cf
    from chipforge.errors import ChipforgeError

    with pytest.raises(ChipforgeError, match="--chips must be at most"):
        cf.plan_training("h100", "llama3-8b", chips=2**40)
    with pytest.raises(ChipforgeError, match="--isl must be at most"):
        cf.plan_serving("h100", "llama3-8b", chips=8, isl=2**40)


def test_rtl_verify_tiles_and_seed_are_capped():
    for flag, value in (("--tiles", HUGE), ("--seed", "-1"), ("--seed", str(2**70))):
        code, _, err = cli("rtl", "verify", "--rows", "4", "--cols", "4", flag, value)
        assert_user_error(code, err, flag)


CHIP_TOML = Path(__file__).parents[1] / "examples" / "my-chip.toml"


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["evaluate", "--chip", "{chip}", "--workload", "gpt2", "--out", "{chip}"], "--out"),
        (["evaluate", "--chip", "{chip}", "--workload", "gpt2", "--html={chip}"], "--html"),
        (
            ["compare", "--chip", "h100,{chip}", "--workload", "gpt2", "--trace", "{chip}"],
            "--trace",
        ),
        (
            ["evaluate", "--chip", "h100", "--workload", "llm:{cfg},batch=2", "--out", "{cfg}"],
            "--out",
        ),
        (["evaluate", "--chip", "h100", "--workload", "{folder}", "--out", "{cfg}"], "--out"),
        (["show", "{link}", "--json", "--out", "{chip}"], "--out"),  # a symlink to the chip
    ],
)
def test_output_that_is_an_input_is_refused(tmp_path, args, flag):
    """`--out my-chip.toml` replaced the chip TOML the command read."""
    chip = tmp_path / "my-chip.toml"
    chip.write_bytes(CHIP_TOML.read_bytes())
    (tmp_path / "link.toml").symlink_to(chip)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps(LLAMA))
    names = {"chip": chip, "link": tmp_path / "link.toml", "cfg": tmp_path / "m" / "config.json",
             "folder": tmp_path / "m"}  # fmt: skip
    before = {p: p.read_bytes() for p in (chip, tmp_path / "m" / "config.json")}
    code, _, err = cli(*(a.format(**names) for a in args))
    assert_user_error(code, err, flag, "also an input")
    assert all(p.read_bytes() == b for p, b in before.items())


def test_output_that_a_scenario_reads_is_refused(tmp_path):
    """A file read through another (a sweep space's chip TOML) is refused when written."""
    chip = tmp_path / "my-chip.toml"
    chip.write_bytes(CHIP_TOML.read_bytes())
    space = tmp_path / "space.toml"
    space.write_text(
        '[base]\nchip = "my-chip.toml"\n[params]\n"clock" = ["1 GHz"]\n'
        '[[workloads]]\nspec = "gpt2"\n[objectives]\ntokens_per_s = "max"\n'
    )
    code, _, err = cli("sweep", str(space), "--store", str(tmp_path / "r"), "--html", str(chip))
    assert_user_error(code, err, "--html", "also an input", "chip file")
    assert chip.read_bytes() == CHIP_TOML.read_bytes()


def test_named_pipe_output_is_refused(tmp_path):
    """Opening a FIFO with no reader blocked the command forever."""
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "link").symlink_to(fifo)
    for flag in ("--out", "--html", "--trace"):
        code, _, err = cli("evaluate", "--chip", "h100", "--workload", "gpt2", flag, str(fifo))
        assert_user_error(code, err, flag, "named pipe")
    code, _, err = cli("show", "h100", "--out", str(tmp_path / "link"))
    assert_user_error(code, err, "--out", "named pipe")
    code, out, _ = cli("show", "h100", "--out", "/dev/null")
    assert code == 0
    (tmp_path / "loop").symlink_to(tmp_path / "loop")  # exit 3 (RuntimeError from resolve)
    for flag in ("--out", "--html"):
        code, _, err = cli("evaluate", "--chip", "h100", "--workload", "gpt2", flag,
                           str(tmp_path / "loop"))  # fmt: skip
        assert_user_error(code, err, flag, "loop of symbolic links")


def test_chart_labels_are_escaped_for_plotly(tmp_path):
    """Plotly renders links and markup in labels: a chip named `<a href=...>` became a
    clickable link in the report's charts (the tables were escaped already). The templates'
    own <br>/<extra> tags stay; the PNG charts take the names as written."""
    from chipforge.report.charts import html_safe

    evil = '<a href="https://evil.example">click</a>'
    chip = tmp_path / "evil.toml"
    chip.write_text(CHIP_TOML.read_text().replace('name = "my-chip"', f"name = {json.dumps(evil)}"))
    code, _, err = cli("compare", "--chip", f"{chip},h100", "--workload", "gpt2",
                       "--html", str(tmp_path / "r.html"))  # fmt: skip
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    specs = page[page.index("var specs=") :]
    assert "evil.example" in specs and "<a href" not in specs and "&lt;a href" in specs
    assert "<extra>" in specs  # hover templates keep their markup
    spec = {"data": [{"y": ["<b>x</b>"], "hovertemplate": "%{y}<br>%{x}<extra>a<i></extra>"}]}
    safe = html_safe(spec)["data"][0]
    assert safe["y"] == ["&lt;b&gt;x&lt;/b&gt;"]
    assert safe["hovertemplate"] == "%{y}<br>%{x}<extra>a&lt;i&gt;</extra>"


@pytest.mark.parametrize("bad", ["a\x1b[2Jb", "a\u202eb", "a\x85b", "", "x" * 201])
def test_names_refuse_control_characters(tmp_path, bad):
    """Scenario, site and rack names reached terminals and reports unchecked (ESC sequences,
    bidi overrides); chip and model names refused only C0 controls."""
    import tomllib

    from chipforge.decide.inputs import load_scenario
    from chipforge.errors import ChipforgeError

    repo = Path(__file__).resolve().parents[1]
    base = (repo / "examples" / "decide" / "forge_vs_rent.toml").read_text()
    assert tomllib.loads(base)["scenario"]["name"]
    quoted = json.dumps(bad)  # a TOML basic string: \u escapes
    first = base.split("\nname = ", 1)[1].split("\n", 1)[0]
    for old in (f"name = {first}", 'name = "campus phase 1"'):
        path = tmp_path / "s.toml"
        path.write_text(base.replace(old, f"name = {quoted}", 1))
        with pytest.raises(ChipforgeError, match="name` must be one line"):
            load_scenario(path)
    rack = tmp_path / "rack.toml"
    rack.write_text(f'name = {quoted}\nchips = 8\npower = "10 kW"\nother_hw_usd_per_rack = 1\n')
    code, _, err = cli("datacenter", "--chip", "h100", "--rack", str(rack))
    assert_user_error(code, err, "`name`")
    code, _, err = cli("train", "--chip", "h100", "--chips", "8", "--model",
                       f"llm:llama3-8b,name={bad}")  # fmt: skip
    assert code == 2 and "Traceback" not in err
    chip = tmp_path / "c.toml"
    chip.write_text(CHIP_TOML.read_text().replace('name = "my-chip"', f"name = {quoted}", 1))
    code, _, err = cli("show", str(chip))
    assert_user_error(code, err, "`name`")


def test_api_takes_paths_and_refuses_wrong_types(tmp_path):
    """`cf.evaluate(chip, Path("config.json"))` raised AttributeError (load_model and
    plan_training took a Path); `plan_serving(chips=True)` planned one chip, chips=8.0 and
    isl="2048" raised TypeError; tokens=nan or -1 gave a NaN or negative time to train."""
    import math

    import chipforge as cf
    from chipforge.errors import ChipforgeError

    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    by_path = cf.evaluate("h100", tmp_path / "config.json")
    assert by_path.flops == cf.evaluate("h100", str(tmp_path / "config.json")).flops
    assert cf.compare(["h100"], tmp_path)[0].flops == by_path.flops  # the model folder
    # a ModelConfig, as plan_training/plan_serving take one: its prefill, as its name gives
    assert cf.evaluate("h100", cf.load_model("gpt2")).flops == cf.evaluate("h100", "gpt2").flops
    for call in (
        lambda: cf.plan_serving("h100", "llama3-8b", True),
        lambda: cf.plan_serving("h100", "llama3-8b", 8.0),
        lambda: cf.plan_serving("h100", "llama3-8b", 8, isl="2048"),
        lambda: cf.plan_serving("h100", "llama3-8b", 8, concurrency=2.5),
        lambda: cf.plan_training("h100", "llama3-8b", True),
        lambda: cf.plan_training("h100", "llama3-8b", 8, tokens=math.nan),
        lambda: cf.plan_training("h100", "llama3-8b", 8, tokens=-1),
        lambda: cf.site("h100", "10MW", model="llama3-8b", tokens=math.nan),
        lambda: cf.evaluate("h100", 3),
        lambda: cf.plan_training("h100", "llama3-8b", 8, micro_batch=0),  # ZeroDivisionError
        lambda: cf.plan_training("h100", "llama3-8b", 8, alternatives="3"),  # TypeError
        lambda: cf.plan_serving("h100", "llama3-8b", 8, ttft_slo=math.nan),  # ignored
        lambda: cf.plan_serving("h100", "llama3-8b", 8, tpot_slo=-1),  # "no plan meets"
    ):
        with pytest.raises(ChipforgeError):
            call()


def test_errors_name_the_flag_of_the_command(tmp_path):
    """`train --model bad.json` said "`workload` ..." (evaluate's flag); a decide scenario whose
    rack holds another chip said "--rack" (a datacenter flag, not one of decide's)."""
    from chipforge.decide.inputs import load_scenario
    from chipforge.decide.rates import _rack

    (tmp_path / "bad.json").write_text("[1]")
    bad = str(tmp_path / "bad.json")
    code, _, err = cli("train", "--chip", "h100", "--chips", "8", "--model", bad)
    assert_user_error(code, err, "`model`")
    assert "workload" not in err
    repo = Path(__file__).resolve().parents[1]
    text = (repo / "examples" / "decide" / "forge_vs_rent.toml").read_text()
    (tmp_path / "my-chip.toml").write_bytes(CHIP_TOML.read_bytes())
    scenario = tmp_path / "s.toml"
    scenario.write_text(text.replace('chip = "forge-n3"', 'chip = "my-chip.toml"', 1))
    build = load_scenario(scenario).build
    with pytest.raises(Exception, match="`rack` forge-n3-rack holds forge-n3") as err:
        _rack(build)
    assert "--rack" not in str(err.value)


def test_named_pipe_inputs_are_refused_without_blocking(tmp_path):
    """A named pipe given as a model file was "does not exist"; one among a model folder's
    safetensors is skipped (opening it would block)."""
    import os

    for name in ("m.onnx", "m.pt2", "config.json"):
        os.mkfifo(tmp_path / name)
        code, _, err = cli("evaluate", "--chip", "h100", "--workload", str(tmp_path / name))
        assert_user_error(code, err, "not a regular file")
    os.mkfifo(tmp_path / "c.toml")  # a chip, rack or space TOML that is a pipe or a folder
    (tmp_path / "d.toml").mkdir()
    for args in (["show", "{}"], ["datacenter", "--chip", "h100", "--rack", "{}"],
                 ["sweep", "{}", "--store", str(tmp_path / "s")]):  # fmt: skip
        for bad in ("c.toml", "d.toml"):
            code, _, err = cli(*(a.format(tmp_path / bad) for a in args))
            assert_user_error(code, err, "not a regular file")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA))
    os.mkfifo(folder / "model.safetensors")
    code, _, err = cli("evaluate", "--chip", "h100", "--workload", str(folder))
    assert code == 0, err


def test_two_outputs_on_one_file_and_workload_hint(tmp_path):
    """`--out r.html --html ./r.html`: the page replaced the table; a misspelt workload had no
    suggestion (chips and models had one)."""
    out = tmp_path / "r.html"
    code, _, err = cli("evaluate", "--chip", "h100", "--workload", "gpt2", "--out", str(out),
                       f"--html={tmp_path}/./r.html")  # fmt: skip
    assert_user_error(code, err, "--out", "--html", "its own file")
    code, _, err = cli("evaluate", "--chip", "h100", "--workload", "GPT2")
    assert_user_error(code, err, "did you mean gpt2")


def test_decide_entries_are_capped(tmp_path):
    """20,000 [[sites]] (820 kB, under the file cap) ran 90 s at 64 samples, longer at the
    default; each entry is priced on every sample and quarter."""
    from chipforge.decide.inputs import MAX_ENTRIES, load_scenario
    from chipforge.errors import ChipforgeError

    repo = Path(__file__).resolve().parents[1]
    text = (repo / "examples" / "decide" / "forge_vs_rent.toml").read_text()
    site = '[[sites]]\ngrid = "1MW"\nonline = "2027Q1"\n'
    path = tmp_path / "s.toml"
    path.write_text(text + "\n" + site * MAX_ENTRIES)
    with pytest.raises(ChipforgeError, match="`sites` has 1,00"):
        load_scenario(path)


def test_sweep_workloads_are_capped(tmp_path):
    """Every [[workloads]] entry is parsed before the sweep (a traced config: seconds each) and
    costed on every point: 100 at most."""
    space = tmp_path / "space.toml"
    space.write_text('[base]\nchip = "forge-n3"\n[params]\nclock = ["1 GHz"]\n[objectives]\n'
                     'tokens_per_s = "max"\n' + '[[workloads]]\nspec = "gpt2"\n' * 101)  # fmt: skip
    code, _, err = cli("sweep", str(space), "--store", str(tmp_path / "s"))
    assert_user_error(code, err, "workloads", "100")


def test_studio_charts_are_escaped_for_plotly():
    pytest.importorskip("dash")
    from chipforge.studio.app import _graphs

    chart = {"id": "c", "data": [{"y": ['<a href="https://evil.example">x</a>']}],
             "layout": {"title": {"text": "<b>chip</b>"}}}  # fmt: skip
    figure = _graphs("p", [chart])[0].figure
    assert figure["data"][0]["y"] == ['&lt;a href="https://evil.example"&gt;x&lt;/a&gt;']
    assert figure["layout"]["title"]["text"] == "&lt;b&gt;chip&lt;/b&gt;"


def test_datacenter_set_key_given_twice():
    """`--set pue=1 --set pue=2`: the last won silently (a model string refuses a key twice)."""
    code, _, err = cli("datacenter", "--chip", "h100", "--set", "pue=1.1", "--set", "pue=1.2")
    assert_user_error(code, err, "pue twice")


def test_model_folder_with_a_comma_in_its_path(tmp_path):
    """`my,model/config.json` was cut at the comma ("parameters must be key=value, not
    'model/config.json'"): a whole existing path is a path."""
    folder = tmp_path / "my,model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA))
    code, out, err = cli("evaluate", "--chip", "h100", "--workload", str(folder), "--json")
    assert code == 0, err
    code, _, err = cli("train", "--chip", "h100", "--chips", "8", "--model",
                       str(folder / "config.json"))  # fmt: skip
    assert code == 0, err


def test_sweep_api_checks_workers_and_flush_as_the_cli(tmp_path):
    """`cf.sweep(..., workers=-1)` ran (the CLI refused it); `--flush-s nan` was taken."""
    import chipforge as cf
    from chipforge.errors import ChipforgeError

    space = tmp_path / "space.toml"
    space.write_text('[base]\nchip = "forge-n3"\n[params]\nclock = ["1 GHz"]\n[objectives]\n'
                     'tokens_per_s = "max"\n[[workloads]]\nspec = "gpt2"\n')  # fmt: skip
    for kw in ({"workers": -1}, {"workers": 1.5}, {"flush_s": float("nan")}, {"flush_s": -1}):
        with pytest.raises(ChipforgeError):
            cf.sweep(space, tmp_path / "s", **kw)
    code, _, err = cli("sweep", str(space), "--store", str(tmp_path / "s2"), "--flush-s", "nan")
    assert_user_error(code, err, "--flush-s")


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["datacenter", "--chip", "h100", "--electricity-price", "nan"], "--electricity-price"),
        (["datacenter", "--chip", "h100", "--pue", "-1"], "--pue"),
        (
            ["serve", "--chip", "h100", "--model", "llama3-8b", "--chips", "8", "--ttft-slo", "0s"],
            "--ttft-slo",
        ),  # fmt: skip
    ],
)
def test_flag_errors_name_the_flag_as_typed(args, flag):
    """`--electricity-price nan` said "`electricity_usd_per_kwh` must be ...", `--ttft-slo`
    said `ttft_slo`: the field's name, not the flag the user typed."""
    assert_user_error(*cli(*args)[::2], f"`{flag}`")


def test_traced_cnn_size_bound_is_the_feature_maps_not_the_widest_stage_at_full_size():
    """The first bound took a CNN's widest stage (2048 channels) at the full image: a ResNet-50
    at batch 16,384 was refused (1.68e12 'image' elements); its largest map is ~0.8 M a
    picture (256 channels at 56x56)."""
    transformers = pytest.importorskip("transformers")
    from chipforge.workload.hf_traced import MAX_ELEMENTS, _largest

    resnet = transformers.ResNetConfig()  # ResNet-50
    elements, what, _ = _largest(resnet, 16384, 128, None)
    assert elements <= MAX_ELEMENTS and what in ("feature maps", "image (224 pixels a side)")
    assert _largest(resnet, 1, 128, None)[0] == 64 * 112 * 112  # the stem's output
    assert _largest(resnet, 2**20, 128, 4096)[0] > MAX_ELEMENTS


def test_png_charts_take_dollar_signs_in_names_as_text(tmp_path):
    """A chip named `bad $\\foo{$ chip` made matplotlib parse it as TeX: exit 3 (ValueError)
    with --png, after the work."""
    pytest.importorskip("matplotlib")
    chip = tmp_path / "c.toml"
    name = json.dumps("bad $\\foo{$ chip")
    chip.write_text(CHIP_TOML.read_text().replace('name = "my-chip"', f"name = {name}"))
    code, _, err = cli("compare", "--chip", f"{chip},h100", "--workload", "gpt2",
                       "--png", str(tmp_path / "png"))  # fmt: skip
    assert code == 0, err
    assert len(list((tmp_path / "png").glob("*.png"))) >= 2


@pytest.mark.parametrize(
    ("workload", "words"),
    [
        ("zoo:resnet50,batch=9007199254740992", ["workload.batch", "1,048,576"]),
        ("zoo:resnet50,image=9007199254740992", ["workload.image", "16,384"]),
        ("zoo:bert-base,seq=1000000", ["2**40"]),
    ],
)
def test_zoo_sizes_are_checked_before_torch(workload, words):
    """zoo:resnet50,batch=2**53: exit 3 (torch's "Storage size calculation overflowed")."""
    assert_user_error(*cli("evaluate", "--chip", "h100", "--workload", workload)[::2], *words)


@pytest.mark.parametrize(
    ("rack", "words"),
    [
        ('{ chips = "x", power_w = 1e5, other_hw_usd = 1 }', ["`chips`"]),  # ValueError, exit 3
        ("{ chips = 0, power_w = 1e5, other_hw_usd = 1 }", ["`chips`"]),  # ZeroDivisionError
        ("{ chips = 8, power_w = nan, other_hw_usd = 1 }", ["`power_w`"]),  # exit 3
        ("{ chips = 8, power_w = -1e5, other_hw_usd = 1 }", ["`power_w`"]),  # "nonsense"
        ("{ chips = 8, power_w = 1e5, other_hw_usd = 1, market_chip_usd = -5 }", ["market"]),
        ('{ chips = 8, power_w = 1e5, other_hw_usd = 1, cooling = "lava" }', ["cooling"]),
        ('{ chips = 8, power_w = 1e5, other_hw_usd = 1, name = "a\\u001bb" }', ["`name`"]),
        ("{ chips = 8, power_w = 1e5, other_hw_usd = 1, colour = 1 }", ["colour"]),
        (f"{{ chips = {2**20 + 1}, power_w = 1e5, other_hw_usd = 1 }}", ["`chips`", "1,048,576"]),
        ("{ chips = 8, powr_w = 1e5, other_hw_usd = 1 }", ["powr_w", "did you mean power_w"]),
        ("{ chips = 8, power_w = 1e5, power = 1e5, other_hw_usd = 1 }", ["`power_w`", "`power`"]),
        ('{ chips = 8, power_w = 1e5, other_hw_usd = 1, chip = "h100" }', ["`chip`"]),
        ("{ chips = 8, other_hw_usd = 1 }", ["`power`", "`power_w`", "required"]),
    ],
)
def test_decide_inline_rack_is_validated(tmp_path, rack, words):
    """A scenario's inline rack table was taken with int()/float(): a string, NaN, zero or
    negative value was exit 3 (or a negative price in the output check)."""
    from chipforge.decide.inputs import load_scenario
    from chipforge.decide.rates import _rack
    from chipforge.errors import ChipforgeError

    repo = Path(__file__).resolve().parents[1]
    text = (repo / "examples" / "decide" / "forge_vs_rent.toml").read_text()
    path = tmp_path / "s.toml"
    path.write_text(text.replace('rack = "forge-n3-rack"', f"rack = {rack}", 1))
    with pytest.raises(ChipforgeError) as err:
        _rack(load_scenario(path).build)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_decide_inline_rack_is_a_rack_file(tmp_path):
    """The inline rack is read by `rack_from_dict` as a rack file is: the same fields (in
    either spelling), cooling from power when not given, and the same chips cap."""
    from chipforge.datacenter.racks import load_rack
    from chipforge.decide.inputs import load_scenario
    from chipforge.decide.rates import _rack
    from chipforge.errors import ChipforgeError

    repo = Path(__file__).resolve().parents[1]
    text = (repo / "examples" / "decide" / "forge_vs_rent.toml").read_text()
    path = tmp_path / "s.toml"
    inline = '{ chips = 4, power_w = "10 kW", other_hw_usd = 2000 }'
    path.write_text(text.replace('rack = "forge-n3-rack"', f"rack = {inline}", 1))
    rack = _rack(load_scenario(path).build)
    own = tmp_path / "own.toml"
    own.write_text("chips = 4\npower = 10000\nother_hw_usd_per_rack = 2000\n")
    assert (rack.chips, rack.power_w, rack.other_hw_usd, rack.cooling, rack.source) == (
        4, 1e4, 2000.0, "air", "scenario")  # fmt: skip
    assert rack.power_w == load_rack(str(own)).power_w
    assert rack.cooling == load_rack(str(own)).cooling
    own.write_text(f"chips = {2**21}\npower_w = 1e5\nother_hw_usd = 1\n")
    with pytest.raises(ChipforgeError, match="1,048,576"):
        load_rack(str(own))


def test_sweep_serving_counts_are_capped_up_front(tmp_path):
    """`[serving] chips = 2**62` was accepted and every point came back infeasible."""
    space = tmp_path / "space.toml"
    space.write_text('[base]\nchip = "forge-n3"\n[params]\nclock = ["1 GHz"]\n[serving]\n'
                     f'model = "llama3-8b"\nchips = {2**62}\n[objectives]\n'
                     'serving_tokens_per_s = "max"\n')  # fmt: skip
    code, _, err = cli("sweep", str(space), "--store", str(tmp_path / "s"))
    assert_user_error(code, err, "serving: `chips`", "16,777,216")


def test_chip_names_with_spaces_around_and_empty():
    """`--chip " h100 "` was refused ("did you mean h100") while `--chip " h100 ,a100"` and a
    model or workload string took the same spaces; an empty --chip said "'' is not a regular
    file" (the current folder)."""
    code, _, err = cli("evaluate", "--chip", " h100 ", "--workload", "gpt2")
    assert code == 0, err
    assert_user_error(*cli("show", "  ")[::2], "`chip` is empty")


def test_rack_and_topology_names_with_spaces_around(tmp_path):
    """`--rack " dgx-h100"` and `--topology " dgx-h100"` were refused ("did you mean dgx-h100")
    while `--chip " h100 "` took the same spaces; a file named with them still wins."""
    import chipforge as cf
    from chipforge.cluster.topology import topology_for
    from chipforge.datacenter.racks import load_rack
    from chipforge.spec import load_chip

    assert load_rack(" dgx-h100 ") == load_rack("dgx-h100")
    own = tmp_path / "dgx-h100 "
    own.write_text('chips = 2\npower = "3 kW"\nother_hw_usd_per_rack = 1000\n')
    assert load_rack(str(own)).chips == 2
    h100 = load_chip("h100")
    assert topology_for(h100, 16, "\tdgx-h100 ") == topology_for(h100, 16, "dgx-h100")
    code, out, err = cli("datacenter", "--chip", "h100", "--rack", " dgx-h100", "--json")
    assert code == 0, err
    assert json.loads(out)["rack"]["name"] == "dgx-h100"
    assert cf.site(" h100 ", "10MW") == cf.site("h100", "10MW")  # was a derived, built rack
    code, _, err = cli("serve", "--chip", "h100", "--model", "llama3-8b", "--chips", "8",
                       "--topology", " dgx-h100 ")  # fmt: skip
    assert code == 0, err


def test_bare_name_keeps_spaces_only_for_a_file_named_so(tmp_path, monkeypatch):
    """One rule for a chip or rack name: spaces around it go unless a file is named with them."""
    from chipforge.userfile import bare_name

    monkeypatch.chdir(tmp_path)
    assert bare_name(" h100\t") == "h100"
    (tmp_path / " h100 ").write_text("")
    assert bare_name(" h100 ") == " h100 "


def test_no_data_parallel_degree_says_why_and_the_fix():
    """`train --chips 16777216 --global-batch 1048576` said "give --chips a multiple of a power
    of two" (it is one); the search then tried pp 1 only past a million chips per replica, so
    dp >= 2^21 could not split 2^20 sequences: it plans now (pipeline stages searched at any
    size). A batch no tp*pp*cp splits (2^15: dp >= 2^16 with tp <= 8, pp <= 32 layers) says
    why, and each fix the message gives then plans."""
    train = ("train", "--chip", "h100", "--model", "llama3-8b", "--chips", str(2**24))
    code, _, err = cli(*train, "--global-batch", str(2**15))
    assert_user_error(code, err, "dp=65,536", "multiple of 65,536", "fewer --chips")
    assert "power of two" not in err
    for fix in (["--global-batch", str(2**16)], ["--global-batch", str(2**20)]):
        code, out, err = cli(*train, *fix, "--json")
        assert code == 0, (fix, err)
        assert json.loads(out)["chips"] == 2**24
    code, _, err = cli("train", "--chip", "h100", "--model", "llama3-8b", "--chips", "4096",
                       "--global-batch", "24")  # fmt: skip
    assert_user_error(code, err, "dp=16", "multiple of 16")
    assert "--pp" not in err
