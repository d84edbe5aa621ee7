"""Bounded resources: hostile inputs that would exhaust the machine are refused up front.

Every CLI case is built in a temporary folder and run in a child process of its own, forked from
one runner that imported chipforge once (so forty cases cost one start-up), under an
address-space cap (a regression fails instead of swapping the machine). Each must exit 2 with at
most 3 lines on stderr, no traceback, a peak RSS (the child's own, from wait4) under 2 GB and a
short wall time. The estimates behind the refusals are checked against the real thing:
instruction counts against compilations, grid points against itertools.product, folded sizes
against numpy.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from chipforge.compiler.estimate import instructions
from chipforge.compiler.lower import compile_op
from chipforge.errors import ChipforgeError, Infeasible
from chipforge.explore import load_space, sample
from chipforge.spec import load_chip
from chipforge.userfile import load_json, load_toml, read_text
from chipforge.workload import parse_workload
from chipforge.workload.onnx_fold import evaluate, output_size
from chipforge.workload.ops import Attention, MatMul

onnx = pytest.importorskip("onnx", reason="the ONNX cases need onnx (pip install .[models])")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

GB = 2**30

# Imports chipforge once, then forks a child per case: its stderr, exit code, peak RSS, wall.
RUNNER = textwrap.dedent("""
    import json, os, resource, sys, time, traceback
    import onnx  # noqa: F401  (what the cases load, imported before the forks)
    import chipforge.cli as cli
    import chipforge.explore, chipforge.sim.graph_run  # noqa: F401
    results = {}
    for name, args in json.loads(sys.stdin.read()).items():
        read, write = os.pipe()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            os.dup2(write, 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            cap = 6 * 2**30
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
            sys.argv = ["chipforge", *args]
            code = 0
            try:
                cli.main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stderr.flush()
            os._exit(code)
        os.close(write)
        with os.fdopen(read) as f:
            err = f.read()
        _, status, usage = os.wait4(pid, 0)
        results[name] = {
            "code": os.waitstatus_to_exitcode(status),
            "stderr": err,
            "rss": usage.ru_maxrss * 1024,
            "wall": time.monotonic() - start,
        }
    print(json.dumps(results))
""")


def _model(path, nodes, inits, inputs=()):
    out = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", list(inputs), [out], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path.name


def _const(name, value, dtype=np.int64):
    return numpy_helper.from_array(np.array(value, dtype), name)


def _onnx_models(d) -> None:
    fill = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    _model(
        d / "cos.onnx",
        [helper.make_node("ConstantOfShape", ["s"], ["Y"], value=fill)],
        [_const("s", [1 << 28])],
    )
    _model(
        d / "range.onnx",
        [helper.make_node("Range", ["a", "b", "c"], ["Y"], name="r")],
        [_const("a", 0, np.float32), _const("b", 1e12, np.float32), _const("c", 1, np.float32)],
    )
    one = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1])
    _model(
        d / "huge.onnx",
        [
            helper.make_node("ConstantOfShape", ["s"], ["c"], value=fill, name="mask"),
            helper.make_node("Add", ["X", "c"], ["Y"], name="add"),
        ],
        [_const("s", [1 << 21, 1 << 21])],
        [one],
    )
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [4, 8])
    _model(
        d / "cycle.onnx",
        [
            helper.make_node("Add", ["X", "Z"], ["Y"], name="add"),
            helper.make_node("Relu", ["Y"], ["Z"], name="relu"),
        ],
        [],
        [x],
    )
    w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[10**6, 10**6])  # no data
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [4, 10**6])
    _model(d / "empty.onnx", [helper.make_node("MatMul", ["X", "W"], ["Y"])], [w], [x])
    value = TensorProto(name="v", data_type=TensorProto.FLOAT, dims=[10**6, 10**6])  # no data
    _model(
        d / "constattr.onnx",
        [
            helper.make_node("Constant", [], ["c"], value=value, name="k"),
            helper.make_node("Add", ["X", "c"], ["Y"], name="add"),
        ],
        [],
        [one],
    )
    _model(
        d / "expand.onnx",
        [helper.make_node("Expand", ["x", "s"], ["Y"], name="e")],
        [_const("x", [1.0], np.float32), _const("s", [1 << 20, 1 << 20])],
    )


EVALUATE = ("evaluate", "--chip", "h100", "--workload")
FUNCTIONAL = ("simulate", "--chip", "forge-n3", "--functional", "--workload")
SIMULATE = ("simulate", "--chip", "forge-n3", "--workload")
HUGE_GEMM = "gemm:m=131072,n=131072,k=131072"
DEEP = 100_000
# case -> (CLI arguments, words its message must hold)
CASES = {
    "chip-1GiB": (("show", "big.toml"), ["big.toml", "1024.0 MiB", "8 MiB"]),
    "chip-deep": (("show", "deep.toml"), ["deep.toml", "nests"]),
    "config-deep-list": ((*EVALUATE, "deep.json"), ["deep.json", "nests"]),
    "config-deep-object": ((*EVALUATE, "deep2.json"), ["deep2.json", "nests"]),
    "space-deep": (("sweep", "deep.toml"), ["nests"]),
    "onnx-cos": (
        (*EVALUATE, "cos.onnx"),
        ["cos.onnx", "no work to cost", "2.68e+08 elements, made by ConstantOfShape node"],
    ),
    "onnx-cos-functional": ((*FUNCTIONAL, "cos.onnx", "--max-memory", "1GB"), ["--max-memory"]),
    "onnx-range": ((*EVALUATE, "range.onnx"), ["1e+12 elements, made by Range node 'r'"]),
    "onnx-range-functional": (
        (*FUNCTIONAL, "range.onnx"),
        ["TB", "memory budget", "1e+12 elements, made by Range node 'r'"],
    ),
    "onnx-huge-node": ((*EVALUATE, "huge.onnx"), ["'mask'", "4.4e+12 elements"]),
    "onnx-cycle": ((*EVALUATE, "cycle.onnx"), ["'add'", "cycle"]),
    "onnx-cycle-functional": ((*FUNCTIONAL, "cycle.onnx"), ["'add'", "cycle"]),
    "onnx-empty-init": ((*EVALUATE, "empty.onnx"), ["'W' declares 1e+12 elements", "stores 0"]),
    "onnx-empty-init-functional": ((*FUNCTIONAL, "empty.onnx"), ["'W' declares 1e+12"]),
    "onnx-constant-attribute": ((*EVALUATE, "constattr.onnx"), ["node 'k' attribute value"]),
    "onnx-constant-attribute-functional": ((*FUNCTIONAL, "constattr.onnx"), ["declares 1e+12"]),
    "onnx-expand-functional": ((*FUNCTIONAL, "expand.onnx"), ["memory budget"]),
    "gemm-65536-functional": (
        (*SIMULATE, "gemm:m=65536,n=65536,k=65536", "--functional"),
        ["2.81e+14 host MACs", "--max-memory"],
    ),
    "gemm-batch-100000": (
        (*SIMULATE, "gemm:m=1024,n=1024,k=1024,batch=100000"),
        ["4.2e+06 instructions", "--max-work"],
    ),
    "gemm-131072": ((*SIMULATE, HUGE_GEMM), ["3.57e+07 instructions"]),
    "gemm-work-flag": (
        (*SIMULATE, "gemm:m=4096,n=4096,k=4096", "--functional", "--max-work", "1e5"),
        ["6.87e+10 host MACs", "over the budget of 1e+05", "--max-work"],
    ),
    "compile-131072": (("compile", "--chip", "forge-n3", "--workload", HUGE_GEMM), ["3.57e+07"]),
    "evaluate-cycle-131072": (
        (
            "evaluate",
            "--engine",
            "cycle",
            "--chip",
            "forge-n3",
            "--workload",
            HUGE_GEMM,
            "--max-memory",
            "1TB",
        ),
        ["--max-work"],
    ),  # fmt: skip
    "max-memory-negative": ((*SIMULATE, "gemm:m=8,n=8,k=8", "--max-memory", "-3GB"), ["-3GB"]),
    "sweep-1e9-grid": (("sweep", "space.toml", "--store", "s"), ["6e+09 points", "--n"]),
    "sweep-n-negative": (("sweep", "space.toml", "--n", "-5"), ["`--n` must be between 1"]),
    "sweep-n-zero": (("sweep", "space.toml", "--n", "0"), ["`--n` must be between 1"]),
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    with (d / "big.toml").open("wb") as f:  # sparse: 1 GiB on paper, nothing on disk
        f.truncate(GB)
    (d / "deep.toml").write_text("x = " + "[" * DEEP + "]" * DEEP + "\n")
    (d / "deep.json").write_text("[" * DEEP + "]" * DEEP)
    (d / "deep2.json").write_text('{"a":' * DEEP + "1" + "}" * DEEP)
    (d / "space.toml").write_text(SPACE.format(steps=10**9))
    _onnx_models(d)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cases = {name: [str(a) for a in args] for name, (args, _) in CASES.items()}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(cases),
        cwd=d,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return d, json.loads(done.stdout)


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_refused_in_one_line(outcomes, case):
    folder, results = outcomes
    r, words = results[case], CASES[case][1]
    lines = r["stderr"].strip().splitlines()
    assert r["code"] == 2, r["stderr"]
    assert "Traceback" not in r["stderr"]
    assert 1 <= len(lines) <= 3, lines
    assert r["rss"] < 2 * GB, f"peak RSS {r['rss'] / GB:.2f} GiB"
    assert r["wall"] < 20, f"{r['wall']:.1f} s"
    message = " ".join(lines)
    for word in words:
        assert word in message, message
    if case == "sweep-1e9-grid":
        assert not (folder / "s").exists()  # refused before the store was made


def test_small_onnx_models_stay_small(outcomes):
    folder, _ = outcomes
    for name in ("cos", "range", "cycle", "empty", "expand"):
        assert (folder / f"{name}.onnx").stat().st_size < 200


# ---------------------------------------------------------------- the checks themselves


def test_userfile_checks(tmp_path):
    f = tmp_path / "a.json"
    f.write_text('{"a": [1, 2]}')
    assert load_json(f, what="config") == {"a": [1, 2]}
    with pytest.raises(ChipforgeError, match="capped at"):
        read_text(f, what="config", limit=4)
    f.write_bytes("name = 'x'".encode("utf-16"))
    with pytest.raises(ChipforgeError, match="not UTF-8"):
        load_toml(f, what="chip file")
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 65 + "]" * 65)
    with pytest.raises(ChipforgeError, match="more than 64 deep"):
        load_toml(deep, what="chip file")
    deep.write_text("x = " + "[" * 64 + "]" * 64)
    assert load_toml(deep, what="chip file")["x"]  # 64 deep is still read
    with pytest.raises(ChipforgeError, match="cannot be read"):
        read_text(tmp_path / "missing.toml", what="chip file")


def test_fold_sizes_outputs_before_computing_them():
    big = [np.array([1 << 20, 1 << 20], np.int64)]
    assert output_size("ConstantOfShape", big, {}) == 2.0**40
    assert evaluate("ConstantOfShape", big, {}, None) is None  # refused, not allocated
    r = [np.array(v, np.float32) for v in (0, 1e12, 1)]
    assert evaluate("Range", r, {}, None) is None
    assert output_size("Range", [np.array(v) for v in (0, 10, 0)], {}) == math.inf
    row, col = np.ones((60000, 1)), np.ones((1, 60000))
    assert (
        output_size("Add", [row, col], {}) == 3.6e9
        and evaluate("Add", [row, col], {}, None) is None
    )
    table, idx = np.ones((1, 300)), np.zeros((200,), np.int64)
    assert output_size("Gather", [table, idx], {}) == 60000
    # sizes that fold agree with numpy's
    cases = [
        ("Range", [np.array(v, np.int64) for v in (3, 40, 4)], {}),
        ("Expand", [np.ones((3, 1)), np.array([2, 3, 5])], {}),
        ("Gather", [np.ones((4, 5, 6)), np.array([[0, 1], [2, 3]])], {"axis": 1}),
        ("Where", [np.ones((3, 1), bool), np.ones((1, 4)), np.ones((2, 1, 1))], {}),
        ("ConstantOfShape", [np.array([2, 3])], {}),
    ]
    for op, x, a in cases:
        assert output_size(op, x, a) == evaluate(op, x, a, None).size, op


def _tiny(dataflow="weight-stationary", double_buffered=True, cores=3):
    forge = load_chip("forge-n3")
    matrix = forge.matrix.model_copy(
        update={
            "rows": 8,
            "cols": 8,
            "count": 2,
            "dataflow": dataflow,
            "double_buffered": double_buffered,
        }
    )
    sram = forge.memory[1].model_copy(update={"capacity": 16 * 2**10})
    return forge.model_copy(
        update={"name": "tiny", "cores": cores, "matrix": matrix, "memory": (forge.memory[0], sram)}
    )


CHIPS = [
    load_chip("forge-n3"),
    load_chip("tpu-v4"),
    _tiny(),
    _tiny(double_buffered=False, cores=2),
    _tiny("output-stationary"),
]


@pytest.mark.parametrize("chip", CHIPS, ids=lambda c: f"{c.name}-{c.matrix.dataflow}")
def test_instruction_estimate_is_the_compiled_count(chip):
    """The budget's count is exact: it follows the lowerings loop for loop."""
    ops = [
        MatMul(name="a", m=m, n=n, k=k, batch=b, dtype="bf16", weight=w)
        for m, n, k, b, w in [
            (100, 70, 90, 1, False),
            (33, 129, 257, 2, True),
            (8, 8, 8, 7, False),
            (200, 24, 40, 1, True),
            (1, 300, 100, 1, True),
            (2, 300, 100, 5, True),  # a leftover item cut over the cores
            (3, 130, 64, 11, True),
        ]
    ]
    ops += [
        Attention(name="at", batch=b, heads=h, kv_heads=kv, q_len=q, kv_len=s, head_dim=d,
                  causal=c, dtype="bf16")
        for b, h, kv, q, s, d, c in [
            (1, 4, 2, 40, 40, 16, True),
            (2, 2, 2, 9, 30, 8, False),
            (1, 8, 2, 1, 50, 16, True),
        ]
    ]  # fmt: skip
    if chip.name == "forge-n3":
        ops = [*ops, *parse_workload("llm:llama3-8b,phase=decode,batch=4,seq=300").ops]
    for op in ops:
        for resident in (False, True):
            try:
                program = compile_op(op, chip, resident=resident)
            except Infeasible:  # resident activations leave no SRAM for a tile
                with pytest.raises(Infeasible):
                    instructions(op, chip, resident=resident)
                continue
            assert instructions(op, chip, resident=resident) == len(program.instrs), op


def test_big_gemm_estimate_takes_no_time():
    forge = load_chip("forge-n3")
    start = time.monotonic()

    def gemm(batch: int) -> MatMul:
        return MatMul(name="g", m=64, n=64, k=64, batch=batch, dtype="bf16", weight=False)

    assert len(compile_op(gemm(1000), forge).instrs) == instructions(gemm(1000), forge) == 6000
    assert instructions(gemm(10**9), forge) == 6 * 10**9  # six a batch item, no list of items
    assert time.monotonic() - start < 2.0


SPACE = """
[base]
chip = "forge-n3"
[params]
"matrix.rows" = [64, 128, 256]
clock = {{ min = "1 GHz", max = "2 GHz", steps = {steps} }}
cores = [2, 4]
[[workloads]]
spec = "gemm:m=256,n=256,k=256"
[objectives]
tokens_per_s = "max"
"""


def test_grid_points_are_read_off_their_index(tmp_path):
    f = tmp_path / "space.toml"
    f.write_text(SPACE.format(steps=7))
    space = load_space(f)
    names = [p.path for p in space.params]
    full = [
        dict(zip(names, v, strict=True))
        for v in itertools.product(*(p.grid() for p in space.params))
    ]
    assert sample.grid(space) == full and sample.points(space, 10) == full[:10]
    f.write_text(SPACE.format(steps=10**9))
    huge = load_space(f)
    start = time.monotonic()
    first = sample.points(huge, 5)
    assert time.monotonic() - start < 1.0
    # the last parameter varies fastest
    assert [(p["clock"], p["cores"]) for p in first] == [
        (1e9, 2), (1e9, 4), (1e9 + 1, 2), (1e9 + 1, 4), (1e9 + 2, 2)
    ]  # fmt: skip
    assert sample.grid_point(huge, sample.grid_size(huge) - 1) == {
        "matrix.rows": 256, "clock": 2e9, "cores": 4
    }  # fmt: skip
    with pytest.raises(ChipforgeError, match="6e\\+09 points"):
        sample.points(huge)


def test_workers_past_the_cores_are_capped_with_a_note(tmp_path):
    from chipforge.explore.backends import default_workers
    from chipforge.explore.run import cap_workers

    cores = default_workers()
    assert cap_workers(cores) == (cores, None)
    assert cap_workers(0) == (0, None)
    workers, note = cap_workers(cores + 50)
    assert workers == cores and f"--workers {cores + 50}" in note
    assert cap_workers(cores + 50, "tcp://scheduler:8786") == (cores + 50, None)
    with pytest.raises(ChipforgeError, match="--workers"):
        cap_workers(-1)


def test_functional_runs_are_sized_before_they_start(tmp_path):
    """Both model formats: the estimate from the importer's shapes, against --max-memory."""
    torch = pytest.importorskip("torch", reason="the .pt2 case needs torch")
    from chipforge.sim.budget import BudgetError
    from chipforge.sim.graph_run import pt2_program, run_model, values_bytes

    forge = load_chip("forge-n3")
    module = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 8))
    path = tmp_path / "mlp.pt2"
    torch.export.save(torch.export.export(module, (torch.randn(4, 64),)), str(path))
    # values: x 4x64, W1 256x64, b1 256, h 4x256 (twice: linear, relu), W2 8x256, b2 8, y 4x8
    elements = 256 + 16384 + 256 + 2 * 1024 + 2048 + 8 + 32
    assert values_bytes(pt2_program(path, {}).values) == 8 * elements + 32 * 16384
    with pytest.raises(BudgetError, match="mlp.pt2 would need about 693 kB"):
        run_model(path, forge, max_memory=100e3)
    assert run_model(path, forge, max_memory=1e6)["result"] == "match"


def test_external_weights_are_sized_by_their_checked_dims(tmp_path):
    from chipforge.errors import WorkloadError
    from chipforge.sim.graph_run import run_model

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [4, 16])
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 8), np.float32), "W")
    name = _model(tmp_path / "ext.onnx", [helper.make_node("MatMul", ["X", "W"], ["Y"])], [w], [x])
    model = onnx.load(tmp_path / name)
    onnx.save(model, tmp_path / name, save_as_external_data=True, location="w.bin",
              size_threshold=0)  # fmt: skip
    forge = load_chip("forge-n3")
    assert run_model(tmp_path / name, forge)["result"] == "match"
    model = onnx.load(tmp_path / name, load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "length":
            entry.value = str(10**12)  # claims a terabyte for a 16 x 8 tensor
    onnx.save(model, tmp_path / name)
    with pytest.raises(WorkloadError, match="are 1e\\+12 bytes, more than the 512"):
        run_model(tmp_path / name, forge)
