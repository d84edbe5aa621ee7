"""Fuzzing the command line with what other people send: workload strings, chip TOMLs mutated
from a preset, config.json files mutated from real shapes, and sweep space files. Whatever the
input, the exit is 0 or 2 (never a bug's 3 or a traceback), and no JSON output holds a negative
or NaN number. Derandomized, so CI runs the same examples every time."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_hostile import DEEPSEEK, LLAMA, cli, write_tiny_onnx

from chipforge.spec.loader import PRESET_DIR

# A longer, randomized hunt: CHIPFORGE_FUZZ_SCALE=20 runs 20x the examples with fresh seeds.
SCALE = float(os.environ.get("CHIPFORGE_FUZZ_SCALE", "0") or 0)


def fuzz(examples: int, shrink: bool = True) -> settings:
    """Deterministic settings for `examples` examples (2,630 over the thirteen fuzzers);
    `shrink=False` for costly runs (a failure is reported as found)."""
    return settings(
        phases=tuple(Phase) if shrink else (Phase.explicit, Phase.reuse, Phase.generate),
        max_examples=int(examples * SCALE) if SCALE else examples,
        derandomize=not SCALE,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


SIGNED_KEYS = ("error",)  # figures that are signed by nature (validation errors)
SIGNED_SUBTREES = ("saving", "cash", "assumptions", "drivers")  # decide: savings (a loss when
# negative), cash flows, and its inputs as given (a price drift per year is -0.1)


def check_run(args: list[str]) -> int:
    """Run `args`; assert exit 0 or 2, no traceback, and no nonsense in the JSON. The exit."""
    code, out, err = cli(*args)
    assert code in (0, 2), (args, code, err)
    assert "Traceback" not in err and "internal error" not in err, (args, err)
    if code == 2:
        assert 1 <= len(err.strip().splitlines()) <= 3, (args, err)
    elif "--json" in args:
        _no_nonsense(json.loads(out), args)
    return code


def _no_nonsense(value, args, key: str = "", signed: bool = False) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _no_nonsense(v, args, str(k), signed or str(k).split("_")[0] in SIGNED_SUBTREES)
    elif isinstance(value, list):
        for v in value:
            _no_nonsense(v, args, key, signed)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        assert not math.isnan(value), (args, key)
        assert value >= 0 or signed or key in SIGNED_KEYS, (args, key, value)


# --- workload strings -----------------------------------------------------------------------

BAD_NUMBERS = st.one_of(
    st.sampled_from(
        [
            "0",
            "-1",
            "2.7e0",
            "8e3",
            "1e400",
            "nan",
            "inf",
            "-inf",
            "²",
            "１２",
            "0x10",
            "1_000",
            "+4",
            "4.0",
            "",
            "true",
            "9007199254740993",
            "x",
            "int3",
            "relu",
            "fp8",
        ]
    ),  # fmt: skip
    st.integers(-3, 70000).map(str),
    st.integers(2**40, 2**62).map(str),
)
GOOD = {  # values each key takes in real use
    "phase": st.sampled_from(["prefill", "decode", "train"]),
    "batch": st.integers(1, 64),
    "seq": st.integers(1, 8192),
    "context": st.integers(1, 32768),
    "dtype": st.sampled_from(["bf16", "fp8", "fp4", "int8", "fp32"]),
    "kv_dtype": st.sampled_from(["bf16", "fp8", "int4"]),
    "tp": st.sampled_from([1, 2, 4, 8]),
    "scope": st.sampled_from(["model", "layer"]),
    "layers": st.integers(1, 128),
    "hidden": st.sampled_from([64, 128, 1024, 4096, 5120]),
    "heads": st.sampled_from([1, 2, 4, 8, 32, 40]),
    "kv_heads": st.sampled_from([1, 2, 4, 8]),
    "head_dim": st.integers(1, 256),
    "ffn": st.integers(1, 30000),
    "vocab": st.integers(1, 200000),
    "act": st.sampled_from(["swiglu", "gelu"]),
    "tied_embeddings": st.sampled_from(["true", "false"]),
    "experts": st.integers(0, 64),
    "top_k": st.integers(0, 8),
    "shared_experts": st.integers(0, 2),
    "moe_ffn": st.integers(1, 4096),
    "dense_layers": st.integers(0, 4),
    "q_lora": st.integers(0, 1536),
    "kv_lora": st.integers(0, 512),
    "rope_dim": st.integers(0, 64),
    "v_head_dim": st.integers(1, 256),
    "mtp_layers": st.integers(0, 2),
    "name": st.sampled_from(["mine", "x y"]),
    "m": st.integers(1, 4096),
    "n": st.integers(1, 4096),
    "k": st.integers(1, 4096),
    "bogus": st.just(1),
}
GEMM_KEYS = ["m", "n", "k", "batch", "dtype"]
LLM_KEYS = sorted(set(GOOD) - {"m", "n", "k"})
GOOD_HEADS = {
    "gemm": ["gemm:m=64,n=64,k=64", "gemm:m=1,n=4096,k=4096,batch=4"],
    "llm": ["llm:llama3-8b", "llm:gpt2", "llm:mixtral-8x7b", "llm:deepseek-v3", "llm:qwen2-7b",
            "llm:custom,layers=2,hidden=64,heads=4,ffn=128,vocab=100", "llama3-8b", "gpt2"],
}  # fmt: skip
BAD_HEADS = ["gemm:", "llm:", "llm:custom", "llm:nope", "nope", "model.onnx", ":", "zoo:", ""]


def rarely(data) -> bool:
    """True about one time in seven: the fuzzers mostly send input that is almost right, so the
    runs get past the parsers into the models (Hypothesis favours the low dice, so False)."""
    return data.draw(st.integers(0, 99), label="dice") >= 85


def workload_string(data) -> str:
    if rarely(data):
        return data.draw(st.one_of(st.sampled_from(BAD_HEADS), st.text(max_size=24)))
    kind = data.draw(st.sampled_from(["llm", "llm", "gemm"]))
    head = data.draw(st.sampled_from(GOOD_HEADS[kind]))
    keys = GEMM_KEYS if kind == "gemm" else LLM_KEYS
    pairs = []
    for _ in range(data.draw(st.integers(0, 3))):
        key = data.draw(st.sampled_from(keys + ["bogus"] if rarely(data) else keys))
        value = data.draw(BAD_NUMBERS if rarely(data) else GOOD[key])
        pairs.append(f"{key}={value}")
    return ",".join([head, *pairs])


@fuzz(800)
@given(data=st.data(), chip=st.sampled_from(["h100", "tpu-v5e", "forge-n3"]))
def test_fuzz_workload_strings(data, chip):
    check_run(["evaluate", "--chip", chip, "--workload", workload_string(data), "--json"])


# --- chip TOMLs mutated from a preset -------------------------------------------------------


def toml_value(v) -> str:
    """A TOML value written inline (tables and arrays of tables too)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    return "[" + ", ".join(toml_value(x) for x in v) + "]"


def toml_doc(d: dict) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in d.items())


def leaves(d, path=()):
    """Every path into `d` (tables, arrays and their leaves)."""
    items = d.items() if isinstance(d, dict) else enumerate(d)
    for k, v in items:
        yield (*path, k)
        if isinstance(v, (dict, list)):
            yield from leaves(v, (*path, k))


BASE_CHIPS = {n: tomllib.loads((PRESET_DIR / f"{n}.toml").read_text()) for n in ("h100", "tpu-v5e")}
CHIP_PATHS = {n: list(leaves(d)) for n, d in BASE_CHIPS.items()}
SCALARS = st.one_of(
    st.integers(-5, 5),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "1 GHz",
            "3.35 TB/s",
            "80 GB",
            "700 W",
            "2 us",
            "3.9 pJ/bit",
            "1e400 GHz",
            "-5 W",
            "0 B",
            "nan GHz",
            "1 GB",
            "x",
            "",
            "tensor-core",
            "weight-stationary",
            "output-stationary",
            "hbm",
            "dram",
            "sram",
            "cache",
            "n3e",
            "n99",
            "bf16",
        ]
    ),  # fmt: skip
    st.booleans(),
)
FACTORS = st.sampled_from([0, -1, 0.5, 1.5, 2, 7, 1e-3, 1e3, 1e6, 1e12, 1e30])
QUANTITY = re.compile(r"^([0-9.]+(?:[eE][-+]?[0-9]+)?)(\s*.*)$")


def perturb(value, factor):
    """`value` scaled by `factor`, kept in its form (an integer stays one, a quantity string
    keeps its unit): the plausible-but-wrong edits a person makes."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return int(value * factor)
    if isinstance(value, float):
        return value * factor
    m = QUANTITY.match(value) if isinstance(value, str) else None
    if m:
        return f"{float(m.group(1)) * factor:g}{m.group(2)}"
    return value


VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["bf16", "fp8", "int3", "x"]), SCALARS, max_size=3),
    st.none(),  # None: delete the key
)


def get(d, path):
    for k in path:
        d = d[k]
    return d


def mutate(d, path, value):
    d = json.loads(json.dumps(d))  # a deep copy
    node = d
    for k in path[:-1]:
        node = node[k]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return d


CHIP_COMMANDS = [
    ["show", "{}", "--json"],
    ["evaluate", "--chip", "{}", "--workload", "gemm:m=256,n=512,k=128", "--json"],
    ["evaluate", "--chip", "{}", "--workload", "llm:llama3-8b,phase=decode,scope=layer", "--json"],
    ["cost", "--chip", "{}", "--json"],
]


@fuzz(600)
@given(data=st.data())
def test_fuzz_chip_tomls(tmp_path, data):
    base = data.draw(st.sampled_from(sorted(BASE_CHIPS)))
    chip = BASE_CHIPS[base]
    for _ in range(data.draw(st.integers(1, 2))):
        path = data.draw(st.sampled_from(CHIP_PATHS[base]))
        with contextlib.suppress(KeyError, IndexError, TypeError):  # gone with an earlier one
            old = get(chip, path)
            value = data.draw(
                VALUES if rarely(data) else FACTORS.map(lambda f, v=old: perturb(v, f))
            )
            chip = mutate(chip, path, value)
    path = tmp_path / "chip.toml"
    raw = data.draw(st.binary(min_size=1, max_size=64)) if rarely(data) else None
    path.write_bytes(raw if raw is not None else toml_doc(chip).encode())
    command = data.draw(st.sampled_from(CHIP_COMMANDS))
    check_run([a.replace("{}", str(path)) for a in command])


# --- config.json mutated from real shapes ---------------------------------------------------

GPT2 = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_layer": 2, "n_embd": 128,
        "n_head": 4, "vocab_size": 1000, "n_positions": 512}  # fmt: skip
MIXTRAL = {**LLAMA, "architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
           "num_local_experts": 4, "num_experts_per_tok": 2}  # fmt: skip
CONFIGS = [LLAMA, DEEPSEEK, GPT2, MIXTRAL]
JSON_VALUES = st.one_of(
    st.integers(-3, 4096),
    st.integers(2**50, 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 9), max_size=2),
    st.just({"a": 1}),
)
COUNTER = itertools.count()


CONFIG_KEYS = sorted({k for c in CONFIGS for k in c} | {"head_dim"})


@fuzz(500)
@given(data=st.data())
def test_fuzz_config_json(tmp_path, data):
    config = dict(data.draw(st.sampled_from(CONFIGS)))
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(CONFIG_KEYS))
        if rarely(data):
            config.pop(key, None)
        elif rarely(data) or not isinstance(config.get(key), int):
            config[key] = data.draw(JSON_VALUES)
        else:
            config[key] = data.draw(FACTORS.map(lambda f, v=config[key]: perturb(v, f)))
    folder = tmp_path / f"m{next(COUNTER)}"  # a fresh folder: the model is named after it
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    extra = data.draw(
        st.sampled_from(["", ",phase=decode", ",phase=train,scope=layer", ",tp=2", ",batch=3"])
    )
    check_run(
        ["evaluate", "--chip", "h100", "--workload", f"{folder}/config.json{extra}", "--json"]
    )


# --- sweep space files ----------------------------------------------------------------------

FORGE = tomllib.loads((PRESET_DIR / "forge-n3.toml").read_text())
SPACE_PARAMS = {  # dotted space path -> where the base value sits in the preset
    "clock": ("clock",),
    "cores": ("cores",),
    "tdp": ("tdp",),
    "matrix.rows": ("matrix", "rows"),
    "matrix.macs_per_cycle.fp8": ("matrix", "macs_per_cycle", "fp8"),
    "memory.HBM3E.capacity": ("memory", 0, "capacity"),
    "memory.HBM3E.bandwidth": ("memory", 0, "bandwidth"),
    "links.0.bandwidth": ("links", 0, "bandwidth"),
    "vector.flops_per_cycle": ("vector", "flops_per_cycle"),
}


def space_value(data, path: str):
    """A choices list or a range for `path`: mostly the base value scaled (the sweeps people
    write), rarely anything."""
    base = get(FORGE, SPACE_PARAMS[path]) if path in SPACE_PARAMS else 1

    def value():
        if rarely(data):
            return data.draw(st.one_of(FACTORS.map(lambda f: perturb(base, f)), SCALARS))
        return perturb(base, data.draw(st.sampled_from([1, 0.5, 1.5, 2])))

    if rarely(data):
        return data.draw(SCALARS)
    if data.draw(st.booleans()):
        out = {"min": value(), "max": value()}
        if data.draw(st.booleans()):
            out["steps"] = data.draw(SCALARS) if rarely(data) else data.draw(st.integers(1, 3))
        return out
    return [value() for _ in range(data.draw(st.integers(1, 3)))]


@fuzz(250)
@given(data=st.data())
def test_fuzz_space_files(tmp_path, data):
    params = {}
    for _ in range(data.draw(st.integers(1, 2))):
        path = "nope" if rarely(data) else data.draw(st.sampled_from(sorted(SPACE_PARAMS)))
        params[path] = space_value(data, path)
    objective = "speed" if rarely(data) else data.draw(st.sampled_from(["time_s", "tdp_w"]))
    sampler = {
        "method": "best" if rarely(data) else data.draw(st.sampled_from(["grid", "random"])),
        "n": data.draw(st.sampled_from([-1, 0, "2"])) if rarely(data) else 2,
    }
    space = {
        "base": {"chip": "forge-n3"},
        "params": params,
        "workloads": [{"spec": "gemm:m=0" if rarely(data) else "gemm:m=128,n=128,k=128"}],
        "objectives": {objective: "most" if rarely(data) else "min"},
        "sampler": sampler,
    }
    path = tmp_path / "space.toml"
    path.write_text(toml_doc(space))
    store = tmp_path / f"store{next(COUNTER)}"
    if check_run(["sweep", str(path), "--store", str(store), "--workers", "1", "--json"]) == 0:
        check_run(["sweep", "show", str(store), "--json"])  # the store's rows, read back


# --- datacenter flags -----------------------------------------------------------------------

FLOAT_TEXT = st.one_of(
    st.sampled_from(
        ["1.2", "1", "0.06", "0.4", "0", "-1", "nan", "inf", "-inf", "1e400", "1e-300"]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
POWER_TEXT = st.one_of(
    st.sampled_from(["1GW", "50MW", "1.2 GW", "5kW", "0W", "-1GW", "1e400W", "nan W", "1 GB", "x"]),
    st.floats(min_value=1e3, max_value=1e12).map(lambda w: f"{w:g}W"),
)


@fuzz(100)
@given(data=st.data())
def test_fuzz_datacenter_flags(data):
    """Site sizing and pricing (no model: the cheap path) under hostile numbers."""
    args = ["datacenter", "--chip", data.draw(st.sampled_from(["forge-n3", "gb200"])), "--json"]
    args += ["--power", data.draw(POWER_TEXT) if rarely(data) else "100MW"]
    for flag in ("--pue", "--electricity-price", "--utilization"):
        if data.draw(st.booleans()):
            args += [flag, data.draw(FLOAT_TEXT)]
    check_run(args)


# --- serve flags ----------------------------------------------------------------------------

SERVE_FLAGS = {  # flag -> values a person passes (rarely: anything)
    "--isl": st.sampled_from(["128", "2048", "8192"]),
    "--osl": st.sampled_from(["16", "256", "1024"]),
    "--concurrency": st.sampled_from(["1", "8", "64", "4096"]),
    "--tp": st.sampled_from(["1", "2", "8"]),
    "--pp": st.sampled_from(["1", "2"]),
    "--dtype": st.sampled_from(["bf16", "fp8", "fp4"]),
    "--kv-dtype": st.sampled_from(["bf16", "fp8"]),
    "--weight-dtype": st.sampled_from(["int8", "int4", "fp8"]),
    "--batch-shards": st.sampled_from(["1", "2", "8"]),
    "--ttft-slo": st.sampled_from(["2 s", "200 ms"]),
    "--tpot-slo": st.sampled_from(["100 ms", "10 ms"]),
    "--batching": st.sampled_from(["continuous", "static", "interleaved"]),
}
ANY_FLAG_VALUE = st.sampled_from(["0", "-5", "nan", "1e400", "3", "x", "", "1 GB", "int3", "7"])


@fuzz(100)
@given(data=st.data())
def test_fuzz_serve_flags(data):
    """A serving plan under odd flags: always a plan or one line, never a negative rate."""
    args = ["serve", "--chip", "h100", "--model", "llama3-8b", "--chips", "8", "--json"]
    for flag in data.draw(st.lists(st.sampled_from(sorted(SERVE_FLAGS)), max_size=3, unique=True)):
        args += [flag, data.draw(ANY_FLAG_VALUE if rarely(data) else SERVE_FLAGS[flag])]
    check_run(args)


def test_fuzz_helpers_write_valid_toml():
    """The fuzzers' TOML writer round-trips a preset, so a mutation is what the tests send."""
    for chip in BASE_CHIPS.values():
        assert tomllib.loads(toml_doc(chip)) == chip
    assert Path(PRESET_DIR / "h100.toml").is_file()
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads("x = ")


# --- train flags and Calculon plans ----------------------------------------------------------

TINY = "llm:custom,layers=4,hidden=512,heads=8,kv_heads=2,ffn=2048,vocab=32000"
TRAIN_FLAGS = {  # flag -> values a person passes (rarely: anything)
    "--chips": st.sampled_from(["8", "64", "96"]),
    "--tokens": st.sampled_from(["1T", "100B"]),
    "--tp": st.sampled_from(["1", "2", "8"]),
    "--pp": st.sampled_from(["1", "2", "4"]),
    "--dp": st.sampled_from(["1", "4", "8"]),
    "--zero": st.sampled_from(["0", "1", "3"]),
    "--recompute": st.sampled_from(["none", "selective", "full"]),
    "--micro-batch": st.sampled_from(["1", "2", "3"]),
    "--global-batch": st.sampled_from(["64", "7", "32:128"]),
    "--seq": st.sampled_from(["2048", "4096"]),
    "--interleave": st.sampled_from(["1", "2"]),
    "--dtype": st.sampled_from(["bf16", "fp8"]),
    "--schedule": st.sampled_from(["1f1b", "interleaved", "zb", "dualpipe"]),
}


@fuzz(40)
@given(data=st.data())
def test_fuzz_train_flags(data):
    """A training plan (searched, or given in part) under odd flags: a plan or one line."""
    chip = data.draw(st.sampled_from(["h100", "forge-n3"]))
    args = ["train", "--chip", chip, "--model", TINY, "--json"]
    flags = data.draw(st.lists(st.sampled_from(sorted(TRAIN_FLAGS)), max_size=3, unique=True))
    if "--chips" not in flags:
        args += ["--chips", "64"]
    for flag in flags:
        args += [flag, data.draw(ANY_FLAG_VALUE if rarely(data) else TRAIN_FLAGS[flag])]
    check_run(args)


CALCULON = {"tensor_par": 8, "pipeline_par": 1, "data_par": 8, "batch_size": 64,
            "microbatch_size": 1, "activation_recompute": "full", "pipeline_interleaving": 1,
            "optimizer_sharding": True, "tensor_par_comm_type": "rs_ag",
            "weight_offload": False, "training": True}  # fmt: skip


@fuzz(40)
@given(data=st.data())
def test_fuzz_calculon_plans(tmp_path, data):
    """A Calculon execution JSON with one or two fields changed (data_par kept so that the
    plan fills the 64 chips, unless rarely), priced as given."""
    exe = dict(CALCULON)
    for _ in range(data.draw(st.integers(1, 2))):
        key = data.draw(st.sampled_from(sorted(CALCULON)))
        if rarely(data) or key not in exe:
            exe.pop(key, None)
        elif isinstance(exe[key], int) and not isinstance(exe[key], bool) and not rarely(data):
            exe[key] = data.draw(st.sampled_from([1, 2, 4, 8, 16]))
        else:
            exe[key] = data.draw(JSON_VALUES)
    with contextlib.suppress(TypeError, ZeroDivisionError, KeyError):
        if not rarely(data):
            exe["data_par"] = 64 // (exe["tensor_par"] * exe["pipeline_par"]) or 1
    path = tmp_path / "exe.json"
    path.write_text(json.dumps({"execution": exe} if rarely(data) else exe))
    args = ["train", "--chip", "h100", "--model", "llama3-8b", "--chips", "64", "--json"]
    check_run([*args, "--calculon-plan", str(path)])


# --- simulate and compile --------------------------------------------------------------------

BUDGET_TEXT = st.sampled_from(["1e6", "3e6", "10", "0", "-1", "nan", "1e400", "x", "1 GB", "2GiB"])


@fuzz(40)
@given(data=st.data())
def test_fuzz_simulate_and_compile(tmp_path, data):
    """Small workloads (odd ones rarely) through the cycle simulator and the compiler."""
    if rarely(data):
        workload = workload_string(data)
    else:
        m, n, k = (data.draw(st.sampled_from([1, 3, 16, 64, 200])) for _ in range(3))
        workload = data.draw(
            st.sampled_from(
                [
                    f"gemm:m={m},n={n},k={k}",
                    f"gemm:m={m},n={n},k={k},dtype=int8,batch=2",
                    "llm:custom,layers=2,hidden=256,heads=4,ffn=512,vocab=1000,phase=decode,"
                    f"scope=layer,batch={m}",
                ]
            )
        )
    chip = "h100" if rarely(data) else data.draw(st.sampled_from(["forge-n3", "tpu-v5e"]))
    budget = []
    for flag in ("--max-work", "--max-memory"):
        if rarely(data):
            budget += [flag, data.draw(BUDGET_TEXT)]
    if data.draw(st.booleans()):
        check_run(["simulate", "--chip", chip, "--workload", workload, *budget, "--json"])
    else:
        out = tmp_path / "prog.s"
        check_run(["compile", "--chip", chip, "--workload", workload, *budget, "--out", str(out)])


# --- decide scenarios ------------------------------------------------------------------------

SCENARIO = {
    "scenario": {"start": "2026Q1", "end": "2028Q4", "samples": 64},
    "build": {"chip": "forge-n3", "rack": "forge-n3-rack",
              "respin_probability": {"value": 0.3, "low": 0.1, "high": 0.5}},
    "buy": {"chip": "gb200", "rack": "gb200-nvl72"},
    "sites": [{"name": "one", "grid": "100MW", "online": "2027Q1"}],
    "workload": {
        "train": [{"model": "llama3-8b", "tokens": "15T", "start": "2027Q1", "end": "2027Q4"}],
        "serve": [{"model": "llama3-8b", "tokens_per_day": "1T"}],
    },
}  # fmt: skip
SCENARIO_PATHS = [p for p in leaves(SCENARIO) if not isinstance(get(SCENARIO, p), (dict, list))]


@fuzz(10, shrink=False)
@given(data=st.data())
def test_fuzz_decide_scenarios(tmp_path, data):
    """A small build-or-buy scenario with one or two values changed (each run that gets past
    the checks costs ~1 s: few examples, most of them near-valid)."""
    scenario = SCENARIO
    for _ in range(data.draw(st.integers(1, 2))):
        path = data.draw(st.sampled_from(SCENARIO_PATHS))
        old = get(scenario, path)
        value = data.draw(VALUES if rarely(data) else FACTORS.map(lambda f, v=old: perturb(v, f)))
        if path[-1] == "samples" and value is not None and not rarely(data):
            value = 64  # the cost of a run grows with it
        scenario = mutate(scenario, path, value)
    path = tmp_path / "scenario.toml"
    path.write_text(toml_doc(scenario))
    check_run(["decide", str(path), "--json"])


# --- model files: safetensors headers of a model folder, --inputs arrays ---------------------

SAFE_TENSORS = {"embed": ("BF16", [1000, 256]), "layer.0.w": ("BF16", [256, 256])}


def safetensors_bytes(entries: dict, length: int | None = None, pad: int = 0) -> bytes:
    header = json.dumps(entries).encode()
    size = len(header) if length is None else length
    data = sum(2 * math.prod(s) for _, s in SAFE_TENSORS.values()) + pad
    return size.to_bytes(8, "little", signed=size < 0) + header + b"\0" * data


def header_entries(data) -> dict:
    entries, at = {}, 0
    for name, (dtype, shape) in SAFE_TENSORS.items():
        n = 2 * math.prod(shape)
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + n]}
        at += n
    for _ in range(data.draw(st.integers(0, 2))):
        name = data.draw(st.sampled_from(sorted(SAFE_TENSORS)))
        key = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", None]))
        if key is None or not isinstance(entries[name], dict):
            entries[name] = data.draw(JSON_VALUES)
        elif key == "dtype":
            entries[name]["dtype"] = data.draw(
                st.one_of(st.sampled_from(["F32", "I64", "F8_E4M3", "bf16", "X", ""]), JSON_VALUES)
            )
        elif key == "shape":
            entries[name]["shape"] = data.draw(st.lists(JSON_VALUES, max_size=3))
        else:
            entries[name]["data_offsets"] = data.draw(st.lists(JSON_VALUES, max_size=3))
    if rarely(data):
        entries["__metadata__"] = data.draw(st.one_of(JSON_VALUES, st.just({"format": "pt"})))
    return entries


@fuzz(60)
@given(data=st.data())
def test_fuzz_model_folder_safetensors(tmp_path, data):
    """A model folder (config.json + model.safetensors, or an index and shards) whose headers
    are mutated: the parameters come from the headers, or one line says which file is bad."""
    folder = tmp_path / f"m{next(COUNTER)}"
    folder.mkdir()
    config = {**LLAMA, "num_hidden_layers": 1, "hidden_size": 256, "vocab_size": 1000}
    (folder / "config.json").write_text(json.dumps(config))
    length = data.draw(st.integers(-(2**63), 2**64 - 1)) if rarely(data) else None
    body = safetensors_bytes(header_entries(data), length, data.draw(st.sampled_from([0, 0, 7])))
    if rarely(data):
        shard = data.draw(
            st.sampled_from(["a.safetensors", "../a.safetensors", "/etc/passwd", "", "sub/a"])
        )
        weight_map = {"embed": shard} if not rarely(data) else data.draw(JSON_VALUES)
        index = {"weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
        (folder / "a.safetensors").write_bytes(body)
    else:
        (folder / "model.safetensors").write_bytes(body)
    check_run(["evaluate", "--chip", "h100", "--workload", f"{folder},seq=64", "--json"])


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A one-MatMul ONNX model (input x: float32 [1, 8])."""
    return write_tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


NPY_DTYPES = ["<f4", "<f8", "<i8", "|b1", "|O", "<U3", "|V4", "<c8", "<f2", ">f4"]


@fuzz(40)
@given(data=st.data())
def test_fuzz_inputs_npz(tmp_path, tiny_onnx, data):
    """`simulate --functional --inputs x.npz`: arrays of odd names, shapes and dtypes, bad
    headers, damaged zips: the run, or one line (never an allocation from the header)."""
    import io
    import zipfile

    import numpy as np

    members = {}
    for _ in range(data.draw(st.integers(0, 2))):
        name = "x" if not rarely(data) else data.draw(st.sampled_from(["y", "w", "", "../x"]))
        shape = (1, 8) if not rarely(data) else tuple(data.draw(st.lists(
            st.sampled_from([0, 1, 8, 10**6, 2**40]), max_size=3)))  # fmt: skip
        header = {"descr": data.draw(st.sampled_from(NPY_DTYPES)) if rarely(data) else "<f4",
                  "fortran_order": rarely(data), "shape": shape}  # fmt: skip
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, header)
        raw = buf.getvalue() + np.ones(8, np.float32).tobytes()
        members[f"{name}.npy"] = data.draw(st.binary(max_size=32)) if rarely(data) else raw
    path = tmp_path / f"in{next(COUNTER)}.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, raw in members.items():
            z.writestr(name, raw)
    if rarely(data):
        path.write_bytes(path.read_bytes()[: data.draw(st.integers(0, 200))])
    args = ["simulate", "--chip", "forge-n3", "--workload", str(tiny_onnx), "--functional"]
    check_run([*args, "--inputs", str(path), "--json"])
