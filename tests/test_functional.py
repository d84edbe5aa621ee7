"""The functional simulator against numpy, the compiler's programs on it, and program checks.

References: int8 GEMMs are compared bit for bit with numpy's integer matmul; bf16/fp8 GEMMs with
numpy's fp32 matmul of the upcast inputs, summed fold by fold (R rows of K at a time, in
increasing K, as the program does) and rounded to the output format, allowing one rounding step.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from chipforge.compiler.check import check_program
from chipforge.compiler.isa import (
    VECTOR_OPS,
    Dma,
    LoadWeights,
    Program,
    ProgramError,
    Region,
    Stream,
    Vector,
    parse,
)
from chipforge.compiler.matmul import lower_matmul
from chipforge.errors import Infeasible
from chipforge.sim import dtype_of, random_inputs, run_functional
from chipforge.sim.functional import VECTOR_SEMANTICS, convert
from chipforge.sim.functional import random_order as random_schedule
from chipforge.spec import ChipSpec, load_chip
from chipforge.workload.ops import MatMul

FORGE = load_chip("forge-n3")
KiB = 2**10


def small_chip(
    *,
    size: int = 8,
    cores: int = 2,
    units: int = 2,
    sram_bytes: float = 16 * KiB,
    double_buffered: bool = True,
    name: str = "forge-tiny",
) -> ChipSpec:
    """forge-n3 shrunk so that small GEMMs need several blocks, K slices and chains."""
    matrix = FORGE.matrix.model_copy(
        update={"rows": size, "cols": size, "count": units, "double_buffered": double_buffered}
    )
    sram = FORGE.memory[1].model_copy(update={"capacity": sram_bytes})
    return FORGE.model_copy(
        update={"name": name, "cores": cores, "matrix": matrix, "memory": (FORGE.memory[0], sram)}
    )


TINY = small_chip()


def compile_gemm(op: MatMul, chip: ChipSpec) -> Program:
    program = Program(f"gemm-{op.dtype}")
    lower_matmul(program, op, chip)
    return program


def fold_reference(op: MatMul, a: np.ndarray, b: np.ndarray, fold: int) -> np.ndarray:
    """fp32 sums of exact products, one fold of `fold` rows of K at a time, in increasing K."""
    a32 = a.astype(np.float32).reshape(op.batch, op.m, op.k)  # (B, M, K)
    b32 = b.astype(np.float32).reshape(op.batch, op.k, op.n)  # (B, K, N)
    acc = np.zeros((op.batch, op.m, op.n), np.float32)
    for k0 in range(0, op.k, fold):
        acc += a32[:, :, k0 : k0 + fold] @ b32[:, k0 : k0 + fold, :]
    return acc.reshape(op.batch * op.m, op.n)


def int_reference(op: MatMul, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64 = a.astype(np.int64).reshape(op.batch, op.m, op.k)  # (B, M, K)
    b64 = b.astype(np.int64).reshape(op.batch, op.k, op.n)  # (B, K, N)
    return (a64 @ b64).reshape(op.batch * op.m, op.n)


def ordinal(x: np.ndarray) -> np.ndarray:
    """Floats as integers in value order: neighbouring representable values differ by 1."""
    bits = x.view(f"u{x.dtype.itemsize}").astype(np.int64)
    sign = 1 << (8 * x.dtype.itemsize - 1)
    return np.where(bits & sign, -(bits & (sign - 1)), bits)


def assert_within_one_rounding(got: np.ndarray, exact: np.ndarray) -> None:
    want = convert(exact, got.dtype)
    steps = np.abs(ordinal(got) - ordinal(want))
    assert steps.max() <= 1, f"{int((steps > 1).sum())} elements off by more than one step"


def run_gemm(op: MatMul, chip: ChipSpec, seed: int = 0) -> tuple[dict, dict, Program]:
    program = compile_gemm(op, chip)
    inputs = random_inputs(program, np.random.default_rng(seed))
    return inputs, run_functional(program, inputs), program


# ---------------------------------------------------------------------------------------------
# GEMMs compiled and executed

GEMM_SHAPES = [  # (batch, m, n, k): none divides the tiles
    (1, 20, 19, 37),
    (2, 13, 30, 21),
    (3, 70, 9, 17),
    (1, 1, 1, 1),
    (1, 5, 8, 40),  # few rows: the folds of K are dealt over two chains (K groups), then added
    (2, 12, 6, 70),
]


@pytest.mark.parametrize(
    "chip",
    [TINY, small_chip(size=4, cores=3, units=3, sram_bytes=12 * KiB, double_buffered=False)],
    ids=["8x8", "4x4"],
)
@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=str)
def test_int8_gemm_is_bit_exact(chip, shape):
    batch, m, n, k = shape
    # fp32 output holds every int32 sum here exactly (|sum| <= 128^2 x 70 < 2^24)
    op = MatMul(name="mm", m=m, n=n, k=k, batch=batch, dtype="int8", out_dtype="fp32")
    inputs, out, _ = run_gemm(op, chip)
    expected = int_reference(op, inputs["mm.A"], inputs["mm.B"]).astype(np.float32)
    np.testing.assert_array_equal(out["mm.C"], expected)


def test_int8_gemm_saturates_into_int8_output():
    op = MatMul(name="mm", m=20, n=19, k=37, batch=2, dtype="int8")
    inputs, out, _ = run_gemm(op, TINY)
    expected = np.clip(int_reference(op, inputs["mm.A"], inputs["mm.B"]), -128, 127)
    np.testing.assert_array_equal(out["mm.C"], expected.astype(np.int8))


@pytest.mark.parametrize(("dtype", "out_dtype"), [("bf16", None), ("fp8", "bf16"), ("fp8", None)])
@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=str)
def test_float_gemm_within_one_rounding_of_fold_reference(dtype, out_dtype, shape):
    batch, m, n, k = shape
    op = MatMul(name="mm", m=m, n=n, k=k, batch=batch, dtype=dtype, out_dtype=out_dtype)
    inputs, out, _ = run_gemm(op, TINY, seed=1)
    exact = fold_reference(op, inputs["mm.A"], inputs["mm.B"], TINY.matrix.rows)
    assert out["mm.C"].dtype == dtype_of(out_dtype or dtype)
    assert_within_one_rounding(out["mm.C"], exact)


def systolic_reference(op: MatMul, a: np.ndarray, b: np.ndarray, fold: int) -> np.ndarray:
    """The array's own order: per fold of `fold` rows of K, a partial sum that starts at zero
    and gains one exact product per row of K, then is added to the fp32 accumulator."""
    a32 = a.astype(np.float32).reshape(op.batch, op.m, op.k)  # (B, M, K)
    b32 = b.astype(np.float32).reshape(op.batch, op.k, op.n)  # (B, K, N)
    acc = np.zeros((op.batch, op.m, op.n), np.float32)
    for k0 in range(0, op.k, fold):
        part = np.zeros_like(acc)
        for k in range(k0, min(op.k, k0 + fold)):
            part += a32[:, :, k, None] * b32[:, None, k, :]  # (B, M, 1) * (B, 1, N)
        acc += part
    return acc.reshape(op.batch * op.m, op.n)


@pytest.mark.parametrize(("dtype", "out_dtype"), [("bf16", "fp32"), ("bf16", None), ("fp8", None)])
# one K group per block here (with several, the groups' sums are added at the end instead)
@pytest.mark.parametrize("shape", GEMM_SHAPES[:4], ids=str)
def test_float_gemm_sums_in_the_arrays_order(dtype, out_dtype, shape):
    batch, m, n, k = shape
    op = MatMul(name="mm", m=m, n=n, k=k, batch=batch, dtype=dtype, out_dtype=out_dtype)
    inputs, out, _ = run_gemm(op, TINY, seed=1)
    exact = systolic_reference(op, inputs["mm.A"], inputs["mm.B"], TINY.matrix.rows)
    got = out["mm.C"]
    assert got.tobytes() == convert(exact, got.dtype).tobytes()


@pytest.mark.parametrize("dtype", ["int8", "bf16", "fp8"])
def test_forge_n3_gemm(dtype):
    # 600 = 2 folds of 256 rows and a part; 520 columns go to three cores; batch 2
    op = MatMul(
        name="mm",
        m=300,
        n=520,
        k=600,
        batch=2,
        dtype=dtype,
        out_dtype="fp32" if dtype == "int8" else "bf16",
    )
    inputs, out, program = run_gemm(op, FORGE, seed=2)
    check_program(program, FORGE)
    if dtype == "int8":
        expected = int_reference(op, inputs["mm.A"], inputs["mm.B"]).astype(np.float32)
        np.testing.assert_array_equal(out["mm.C"], expected)
    else:
        exact = fold_reference(op, inputs["mm.A"], inputs["mm.B"], FORGE.matrix.rows)
        assert_within_one_rounding(out["mm.C"], exact)


# ---------------------------------------------------------------------------------------------
# Properties of every compiled program


@st.composite
def gemms(draw) -> tuple[MatMul, ChipSpec]:
    chip = small_chip(
        size=draw(st.sampled_from([4, 8])),
        cores=draw(st.integers(1, 3)),
        units=draw(st.integers(1, 3)),
        sram_bytes=draw(st.sampled_from([12, 16, 24, 48])) * KiB,
        double_buffered=draw(st.booleans()),
    )
    dtype = draw(st.sampled_from(["int8", "bf16", "fp8"]))
    op = MatMul(
        name="mm",
        m=draw(st.integers(1, 80)),
        n=draw(st.integers(1, 40)),
        k=draw(st.integers(1, 80)),
        batch=draw(st.integers(1, 2)),
        dtype=dtype,
        out_dtype="fp32" if dtype == "int8" else None,
    )
    return op, chip


def compile_or_reject(op: MatMul, chip: ChipSpec) -> Program:
    try:
        return compile_gemm(op, chip)
    except Infeasible:
        reject()


PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)


def trace_macs(program: Program, op: MatMul) -> np.ndarray:
    """How often the streams multiply A[b, m, k] by B[b, k, n], as a (B*M, N, K) count.

    Buffers hold tags instead of numbers (the flat index of the A or B element, later of the
    output element), traced through DMAs, weight loads, streams and the final cast; it asserts
    that each stream pairs matching K positions of one batch item and that every output lands
    in its own place of C."""
    K, N = op.k, op.n
    tags = {b.name: np.full((b.rows, b.cols), -1, np.int64) for b in program.buffers.values()}
    tags["mm.A"] = np.arange(op.batch * op.m * K).reshape(op.batch * op.m, K)
    tags["mm.B"] = np.arange(op.batch * K * N).reshape(op.batch * K, N)
    counts = np.zeros((op.batch * op.m, N, K), np.int64)
    weights = {}

    def view(r: Region) -> np.ndarray:
        return tags[r.buffer][r.row : r.row + r.rows, r.col : r.col + r.cols]

    for i in program.instrs:
        if isinstance(i, Dma | Vector):
            view(i.dst)[...] = view(i.srcs[0] if isinstance(i, Vector) else i.src)
        elif isinstance(i, LoadWeights):
            weights[(i.core, i.unit)] = view(i.src).copy()
        elif isinstance(i, Stream):
            a_row, a_k = np.divmod(view(i.src), K)  # (rows, kd): row of A, position in K
            w_row, w_n = np.divmod(weights[(i.core, i.unit)], N)  # (kd, cols): row of B, column
            assert (a_row == a_row[:, :1]).all() and (w_row == w_row[:, :1]).all()
            assert (a_k == a_k[:1]).all() and (w_n == w_n[:1]).all()
            assert (w_row[:, 0] == (a_row[0, 0] // op.m) * K + a_k[0]).all()
            rows, cols, ks = a_row[:, 0], w_n[0], a_k[0]
            np.add.at(counts, (rows[:, None, None], cols[None, :, None], ks[None, None, :]), 1)
            out = rows[:, None] * N + cols[None, :]  # the C element each partial sum is for
            if i.accumulate:
                assert (view(i.dst) == out).all()
            view(i.dst)[...] = out
    assert (tags["mm.C"] == np.arange(op.batch * op.m * N).reshape(-1, N)).all()
    return counts


@PROPERTY
@given(gemms())
def test_streams_cover_the_iteration_space_exactly_once(case):
    op, chip = case
    counts = trace_macs(compile_or_reject(op, chip), op)
    assert (counts == 1).all()


@PROPERTY
@given(gemms())
def test_compiled_programs_pass_the_checks(case):
    op, chip = case
    check_program(compile_or_reject(op, chip), chip)


@PROPERTY
@given(gemms())
def test_assembly_round_trips_and_runs_the_same(case):
    op, chip = case
    program = compile_or_reject(op, chip)
    parsed = parse(program.text())
    assert parsed.text() == program.text()
    inputs = random_inputs(program, np.random.default_rng(3))
    ran, ran_parsed = run_functional(program, inputs), run_functional(parsed, inputs)
    assert all(ran[name].tobytes() == ran_parsed[name].tobytes() for name in ran)


@PROPERTY
@given(gemms(), st.integers(0, 2**32 - 1))
def test_dependencies_cover_every_data_hazard(case, seed):
    # any order the deps allow (engines in program order) computes the same numbers
    op, chip = case
    program = compile_or_reject(op, chip)
    rng = np.random.default_rng(seed)
    inputs = random_inputs(program, rng)
    order = random_schedule(program, rng)
    assert len(order) == len(program.instrs)
    ran, reordered = run_functional(program, inputs), run_functional(program, inputs, order=order)
    assert all(ran[name].tobytes() == reordered[name].tobytes() for name in ran)


# ---------------------------------------------------------------------------------------------
# Vector ops, hand-written programs against float64 numpy


def vector_program(
    op: str,
    shapes: list[tuple[int, int]],
    out: tuple[int, int],
    *,
    dtype: str = "fp32",
    out_dtype: str = "fp32",
    imm: float | None = None,
) -> Program:
    """X0, X1 (hbm) -> x0, x1 (sram) -> op -> y (sram) -> Y (hbm)."""
    p = Program(f"vec-{op}")
    loads, srcs = [], []
    for n, (rows, cols) in enumerate(shapes):
        p.buffer(f"X{n}", "hbm", rows, cols, dtype)
        p.buffer(f"x{n}", "sram", rows, cols, dtype)
        srcs.append(Region(f"x{n}", 0, 0, rows, cols))
        loads.append(p.emit(Dma, src=Region(f"X{n}", 0, 0, rows, cols), dst=srcs[-1]))
    p.buffer("Y", "hbm", *out, out_dtype)
    p.buffer("y", "sram", *out, out_dtype)
    y = Region("y", 0, 0, *out)
    v = p.emit(Vector, op=op, srcs=tuple(srcs), dst=y, imm=imm, deps=tuple(loads))
    p.emit(Dma, src=y, dst=Region("Y", 0, 0, *out), deps=(v,))
    return p


def _gelu(a):
    return 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a**3)))


def _silu(a):
    return a / (1 + np.exp(-a))


def _causal(a, offset=1.0):
    i, j = np.indices(a.shape)
    return np.where(j > i + offset, -np.inf, a)


ROWS, COLS, OUT = 6, 10, 4  # sources are ROWS x COLS; products give ROWS x OUT
ELEMENTWISE, ROW = ((ROWS, COLS), (ROWS, COLS)), ((ROWS, COLS), (ROWS, 1))
# op: (float64 reference, source shapes, destination shape, immediate)
VECTOR_REFERENCE = {
    "copy": (lambda a: a, ELEMENTWISE[:1], (ROWS, COLS), None),
    "cast": (lambda a: a, ELEMENTWISE[:1], (ROWS, COLS), None),
    "add": (lambda a, b: a + b, ELEMENTWISE, (ROWS, COLS), None),
    "mul": (lambda a, b: a * b, ELEMENTWISE, (ROWS, COLS), None),
    "sub": (lambda a, b: a - b, ELEMENTWISE, (ROWS, COLS), None),
    "max": (np.maximum, ELEMENTWISE, (ROWS, COLS), None),
    "scale": (lambda a: a * -0.375, ELEMENTWISE[:1], (ROWS, COLS), -0.375),
    "relu": (lambda a: np.maximum(a, 0), ELEMENTWISE[:1], (ROWS, COLS), None),
    "exp": (np.exp, ELEMENTWISE[:1], (ROWS, COLS), None),
    "silu": (_silu, ELEMENTWISE[:1], (ROWS, COLS), None),
    "gelu": (_gelu, ELEMENTWISE[:1], (ROWS, COLS), None),
    "rsqrt": (lambda a: 1 / np.sqrt(a), ELEMENTWISE[:1], (ROWS, COLS), None),
    "recip": (lambda a: 1 / a, ELEMENTWISE[:1], (ROWS, COLS), None),
    "silu_mul": (lambda a, b: _silu(a) * b, ELEMENTWISE, (ROWS, COLS), None),
    "rowmax": (lambda a: a.max(axis=1, keepdims=True), ELEMENTWISE[:1], (ROWS, 1), None),
    "rowsum": (lambda a: a.sum(axis=1, keepdims=True), ELEMENTWISE[:1], (ROWS, 1), None),
    "rowscale": (lambda a, r: a * r, ROW, (ROWS, COLS), None),
    "rowsub": (lambda a, r: a - r, ROW, (ROWS, COLS), None),
    "rmsnorm": (
        lambda a: a / np.sqrt((a * a).mean(axis=1, keepdims=True) + 1e-6),
        ELEMENTWISE[:1],
        (ROWS, COLS),
        None,
    ),
    "fill": (lambda a: np.full_like(a, 2.5), ELEMENTWISE[:1], (ROWS, COLS), 2.5),
    "mask": (_causal, ELEMENTWISE[:1], (ROWS, COLS), 1.0),
    "dot": (lambda a, b: a @ b, ((ROWS, COLS), (COLS, OUT)), (ROWS, OUT), None),
    "dotT": (lambda a, b: a @ b.T, ((ROWS, COLS), (OUT, COLS)), (ROWS, OUT), None),
}


def test_every_vector_op_has_semantics_and_a_test():
    # cast and copy convert exactly (one rounding from the source), not through fp32
    assert set(VECTOR_SEMANTICS) | {"cast", "copy"} == set(VECTOR_OPS) == set(VECTOR_REFERENCE)


def run_vector(op: str, *, dtype: str, out_dtype: str) -> tuple[np.ndarray, np.ndarray]:
    reference, shapes, out, imm = VECTOR_REFERENCE[op]
    program = vector_program(op, list(shapes), out, dtype=dtype, out_dtype=out_dtype, imm=imm)
    check_program(program, TINY)
    inputs = random_inputs(program, np.random.default_rng(4))
    if op in ("rsqrt", "recip"):  # away from zero
        inputs["X0"] = convert(np.abs(inputs["X0"].astype(np.float64)) + 0.25, dtype_of(dtype))
    got = run_functional(program, inputs)["Y"]
    exact = reference(*(inputs[f"X{n}"].astype(np.float64) for n in range(len(shapes))))
    return got, exact


@pytest.mark.parametrize("op", sorted(VECTOR_REFERENCE))
def test_vector_op_in_fp32(op):
    got, exact = run_vector(op, dtype="fp32", out_dtype="fp32")
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", sorted(VECTOR_REFERENCE))
def test_vector_op_rounds_once_into_bf16(op):
    # inputs bf16, computed in fp32, rounded to bf16: within one step of the exact result
    got, exact = run_vector(op, dtype="bf16", out_dtype="bf16")
    assert got.dtype == ml_dtypes.bfloat16
    assert_within_one_rounding(got, exact)


def test_cast_rounds_fp32_to_nearest_even():
    x = np.array([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 1 + 2**-8 + 2**-20], np.float32)
    np.testing.assert_array_equal(
        convert(x, dtype_of("bf16")).astype(np.float64), [1, 1 + 2**-6, -1, 1 + 2**-7]
    )
    np.testing.assert_array_equal(convert(x, dtype_of("fp8")), x.astype(ml_dtypes.float8_e4m3fn))


def test_cast_from_int32_rounds_once():
    # 2^24 + 2^16 + 1 is just above the bf16 midpoint 2^24 + 2^16: it rounds up. Rounding
    # through fp32 first (to the tie 2^24 + 2^16, then to even 2^24) would round down.
    x = np.array([2**24 + 2**16 + 1, -(2**24 + 2**16 + 1), 2**24 + 2**16], np.int32)
    got = convert(x, dtype_of("bf16")).astype(np.float64)
    np.testing.assert_array_equal(got, [2**24 + 2**17, -(2**24 + 2**17), 2**24])


def test_cast_to_int8_rounds_half_even_and_saturates():
    x = np.array([2.5, -3.5, 300.0, -1e9, 0.49], np.float32)
    np.testing.assert_array_equal(convert(x, dtype_of("int8")), [2, -4, 127, -128, 0])


def test_cast_program_int32_to_int8():
    program = vector_program("cast", [(2, 3)], (2, 3), dtype="int32", out_dtype="int8")
    x = np.array([[1, -1, 127], [128, -129, 100000]], np.int32)
    out = run_functional(program, {"X0": x})["Y"]
    np.testing.assert_array_equal(out, [[1, -1, 127], [127, -128, 127]])


def test_setup_places_data_before_the_program():
    program = vector_program("relu", [(2, 2)], (2, 2))
    program.buffer("S", "hbm", 2, 2, "fp32")
    program.instrs = program.instrs[1:]  # x0 comes from the setup instead of the first DMA
    program.instrs = [dataclasses.replace(i, id=n, deps=()) for n, i in enumerate(program.instrs)]
    program.setup_dma(Region("S", 0, 0, 2, 2), Region("x0", 0, 0, 2, 2), core=0)
    out = run_functional(program, {"S": np.array([[-1.0, 2.0], [3.0, -4.0]], np.float32)})
    np.testing.assert_array_equal(out["Y"], [[0, 2], [3, 0]])
    assert parse(program.text()).text() == program.text()


def test_random_inputs_per_dtype():
    program = Program("p")
    for dtype in ("int8", "bf16", "fp8", "fp32", "int32"):
        program.buffer(dtype, "hbm", 64, 64, dtype)
    program.buffer("scratch", "sram", 2, 2, "fp32")
    inputs = random_inputs(program, np.random.default_rng(5))
    assert set(inputs) == {"int8", "bf16", "fp8", "fp32", "int32"}
    assert inputs["int8"].min() < -100 and inputs["int8"].max() > 100
    assert all(inputs[d].dtype == dtype_of(d) for d in inputs)
    assert 0.8 < float(inputs["bf16"].astype(np.float32).std()) < 1.2


def test_missing_inputs_start_at_zero():
    out = run_functional(vector_program("exp", [(2, 2)], (2, 2)), {})
    np.testing.assert_array_equal(out["Y"], np.ones((2, 2)))


# ---------------------------------------------------------------------------------------------
# Errors, pinned

BASE = """\
; base
buffer A hbm 16x8 bf16
buffer B hbm 8x8 bf16
buffer C hbm 16x8 bf16
buffer a sram.0 16x8 bf16
buffer w sram.0 8x8 bf16
buffer acc sram.0 16x8 fp32
buffer c sram.0 16x8 bf16
%0 dma.0 A[0:16,0:8] -> a[0:16,0:8]
%1 dma.0 B[0:8,0:8] -> w[0:8,0:8]
%2 wload.0.0 w[0:8,0:8] after %1
%3 stream.0.0 a[0:16,0:8] -> acc[0:16,0:8] after %0,%2
%4 vec.0 cast acc[0:16,0:8] -> c[0:16,0:8] after %3
%5 dma.0 c[0:16,0:8] -> C[0:16,0:8] after %4
"""


def test_base_program_is_valid_and_multiplies():
    program = parse(BASE)
    check_program(program, TINY)
    inputs = random_inputs(program, np.random.default_rng(6))
    out = run_functional(program, inputs)["C"]
    exact = inputs["A"].astype(np.float32) @ inputs["B"].astype(np.float32)
    assert_within_one_rounding(out, exact)


def error_case(name: str, edits: dict[str, str], message: str):
    """BASE with each `old: new` line edit applied must fail check_program with `message`."""
    return pytest.param(edits, message, id=name)


CHECK_ERRORS = [
    error_case(
        "unknown buffer",
        {"-> a[0:16,0:8]": "-> aa[0:16,0:8]"},
        "%0 dma.0: `aa` must be a declared buffer (did you mean a?): add a `buffer aa ...` line",
    ),
    error_case(
        "out of bounds",
        {"B[0:8,0:8] -> w[0:8,0:8]": "B[0:9,0:8] -> w[0:9,0:8]"},
        "%1 dma.0: `B[0:9,0:8]` must lie inside B (8x8): shrink the region or enlarge the buffer",
    ),
    error_case(
        "dma shapes differ",
        {"-> a[0:16,0:8]": "-> a[0:8,0:8]"},
        "%0 dma.0: the destination must have the source's shape 16x8, not 8x8: make both "
        "regions the same size",
    ),
    error_case(
        "dma sram to sram",
        {"-> C[0:16,0:8]": "-> a[0:16,0:8]"},
        "%5 dma.0: a DMA must copy between hbm and sram, not sram -> sram: copy through an hbm "
        "buffer",
    ),
    error_case(
        "dma on another core",
        {"%0 dma.0": "%0 dma.1"},
        "%0 dma.1: the DMA must run on dma.0 (`a` is core 0's SRAM), not dma.1: issue it on core 0",
    ),
    error_case(
        "dma dtypes differ",
        {"buffer C hbm 16x8 bf16": "buffer C hbm 16x8 fp32"},
        "%5 dma.0: the destination's dtype must be the source's bf16, not fp32: convert with a "
        "vec cast in SRAM",
    ),
    error_case(
        "stream depth",
        {"stream.0.0 a[0:16,0:8]": "stream.0.0 a[0:16,0:4]"},
        "%3 stream.0.0: the source must have as many columns as the weights (%2) have rows, 8, "
        "not 4: load a matching weight tile",
    ),
    error_case(
        "stream destination",
        {"-> acc[0:16,0:8] after": "-> acc[0:16,0:4] after"},
        "%3 stream.0.0: the destination must be 16x8 (source rows x weight columns), not 16x4: "
        "resize it",
    ),
    error_case(
        "stream without weights",
        {"%3 stream.0.0": "%3 stream.0.1"},
        "%3 stream.0.1: unit 1 must have weights loaded before a stream: emit a wload.0.1 first",
    ),
    error_case(
        "stream into bf16",
        {"buffer acc sram.0 16x8 fp32": "buffer acc sram.0 16x8 bf16"},
        "%3 stream.0.0: the destination must be fp32 (partial sums of bf16), not bf16: stream "
        "into an accumulator buffer and cast it after",
    ),
    error_case(
        "later dependency",
        {"w[0:8,0:8] after %1": "w[0:8,0:8] after %3"},
        "%2 wload.0.0: dependency %3 must be an earlier instruction (ids are a topological "
        "order): drop it or move that instruction first",
    ),
    error_case(
        "weights from hbm",
        {"%2 wload.0.0 w[0:8,0:8]": "%2 wload.0.0 B[0:8,0:8]"},
        "%2 wload.0.0: `B` must be in core 0's SRAM, not hbm: DMA it there first",
    ),
    error_case(
        "unknown vector op",
        {"%4 vec.0 cast": "%4 vec.0 exq"},
        f"%4 vec.0: op must be one of {', '.join(VECTOR_OPS)}, not 'exq' (did you mean exp?)",
    ),
    error_case(
        "row op shape",
        {"%4 vec.0 cast": "%4 vec.0 rowsum"},
        "%4 vec.0: rowsum's destination must be 16x1, not 16x8: fix the region",
    ),
    error_case(
        "vector arity",
        {"%4 vec.0 cast": "%4 vec.0 add"},
        "%4 vec.0: add must have 2 source(s), not 1: list them before ->",
    ),
    error_case(
        "scale without immediate",
        {"%4 vec.0 cast": "%4 vec.0 scale"},
        "%4 vec.0: scale must have an immediate: append #VALUE",
    ),
    error_case(
        "ids out of order",
        {"%5 dma.0": "%7 dma.0"},
        "instruction ids must count 0, 1, 2, ... in program order, not %7 at position 5: "
        "renumber the instructions",
    ),
    error_case(
        "unknown dtype",
        {"buffer A hbm 16x8 bf16": "buffer A hbm 16x8 bf61"},
        "buffer `A`: dtype must be one of fp64, fp32, tf32, bf16, fp16, fp8, int8, fp4, int4, "
        "int32, not 'bf61' (did you mean bf16, fp64, fp16?)",
    ),
    error_case(
        "unit the chip lacks",
        {"%2 wload.0.0": "%2 wload.0.3", "%3 stream.0.0": "%3 stream.0.3"},
        "%2 wload.0.3: unit must be below 2 (forge-tiny's matrix units per core), not 3: deal "
        "the chains over the units it has",
    ),
]


@pytest.mark.parametrize(("edits", "message"), CHECK_ERRORS)
def test_check_error_messages(edits, message):
    text = BASE
    for old, new in edits.items():
        assert old in text
        text = text.replace(old, new)
    with pytest.raises(ProgramError) as error:
        check_program(parse(text), TINY)
    assert str(error.value) == message


def test_weight_tile_larger_than_the_array():
    narrow = small_chip(size=4, name="forge-4")
    with pytest.raises(ProgramError) as error:
        check_program(parse(BASE), narrow)
    assert str(error.value) == (
        "%2 wload.0.0: the weight tile must be at most 4x4 (forge-4's array), not 8x8: split it "
        "into array-sized tiles"
    )


def test_instruction_on_a_core_the_chip_lacks():
    text = BASE.replace("sram.0", "sram.2").replace("dma.0", "dma.2").replace(".0.0", ".2.0")
    text = text.replace("vec.0", "vec.2")
    with pytest.raises(ProgramError) as error:
        check_program(parse(text), TINY)
    assert str(error.value) == (
        "%0 dma.2: core must be below 2 (forge-tiny's cores), not 2: spread the work over the "
        "chip's cores"
    )


def test_unsupported_matrix_dtype():
    with pytest.raises(ProgramError) as error:
        check_program(parse(BASE.replace("bf16", "fp16")), TINY)
    assert str(error.value) == (
        "%3 stream.0.0: the input dtype must be one of bf16, fp8, int8, fp4 on forge-tiny's "
        "matrix unit, not fp16: cast the inputs to one of those"
    )


def test_sram_overrun_per_core():
    # 130 MiB of fp32 in core 0's SRAM; forge-n3 has 128 MiB per core
    text = BASE + f"buffer big sram.0 {130 * 2**20 // 4 // 1024}x1024 fp32\n"
    with pytest.raises(ProgramError) as error:
        check_program(parse(text), FORGE)
    assert str(error.value) == (
        "core 0 needs 130 MiB of SRAM, forge-n3 has 128 MiB per core: use smaller tiles"
    )


def test_shared_sram_is_divided_among_cores():
    # BASE holds 16x8x2 + 8x8x2 + 16x8x4 + 16x8x2 = 1152 bytes in core 0's SRAM;
    # a 4 KiB shared SRAM over 4 cores leaves 1 KiB each
    shared = FORGE.memory[1].model_copy(update={"capacity": 4 * KiB, "per_core": False})
    chip = TINY.model_copy(update={"cores": 4, "memory": (FORGE.memory[0], shared)})
    with pytest.raises(ProgramError) as error:
        check_program(parse(BASE), chip)
    assert str(error.value) == (
        "core 0 needs 1.125 KiB of SRAM, forge-tiny has 1 KiB per core: use smaller tiles"
    )


def test_functional_rejects_a_malformed_program_before_running():
    with pytest.raises(ProgramError, match="must lie inside B"):
        run_functional(parse(BASE.replace("B[0:8,0:8]", "B[0:9,0:8]")), {})


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"a": np.zeros((16, 8))}, "input `a` must name an hbm buffer of base"),
        ({"Q": np.zeros((16, 8))}, "input `Q` must name an hbm buffer of base"),
        ({"A": np.zeros((8, 16))}, "input `A` must be 16x8, not 8x16"),
    ],
)
def test_bad_inputs(inputs, message):
    with pytest.raises(ProgramError) as error:
        run_functional(parse(BASE), inputs)
    assert str(error.value) == message


def test_bad_order():
    program = parse(BASE)
    with pytest.raises(ProgramError) as error:
        run_functional(program, {}, order=[1, 0, 3, 2, 4, 5])
    assert str(error.value) == "order must run %0 before %1, not after it"
    with pytest.raises(ProgramError) as error:
        run_functional(program, {}, order=[0, 1, 2])
    assert str(error.value) == "order must list each of the 6 instruction ids once"


def test_transposed_weights():
    # keys are stored one per row; Q K^T loads the key tile transposed (W = k^T)
    text = BASE.replace("buffer B hbm 8x8 bf16", "buffer B hbm 4x8 bf16")
    text = text.replace("buffer w sram.0 8x8 bf16", "buffer w sram.0 4x8 bf16")
    text = text.replace("B[0:8,0:8] -> w[0:8,0:8]", "B[0:4,0:8] -> w[0:4,0:8]")
    text = text.replace("wload.0.0 w[0:8,0:8]", "wload.0.0 w[0:4,0:8]^T")
    text = text.replace("a[0:16,0:8] -> acc[0:16,0:8]", "a[0:16,0:8] -> acc[0:16,0:4]")
    text = text.replace("acc[0:16,0:8] -> c[0:16,0:8]", "acc[0:16,0:4] -> c[0:16,0:4]")
    text = text.replace("c[0:16,0:8] -> C[0:16,0:8]", "c[0:16,0:4] -> C[0:16,0:4]")
    program = parse(text)
    assert program.text() == text
    check_program(program, TINY)
    inputs = random_inputs(program, np.random.default_rng(7))
    out = run_functional(program, inputs)["C"][:, :4]
    exact = inputs["A"].astype(np.float32) @ inputs["B"].astype(np.float32).T
    assert_within_one_rounding(out, exact)


def test_mask_with_rows_sharing_a_position():
    # imm2 = 2 query rows per position (a GQA group packed position-major), offset imm = 1
    program = vector_program("mask", [(4, 5)], (4, 5), imm=1.0)
    v = program.instrs[1]
    program.instrs[1] = dataclasses.replace(v, imm2=2.0)
    out = run_functional(program, {"X0": np.zeros((4, 5), np.float32)})["Y"]
    i, j = np.indices((4, 5))
    np.testing.assert_array_equal(out, np.where(j > i // 2 + 1, -np.inf, 0.0))


def test_integer_vector_ops_are_exact():
    # int32 partial sums (K groups) add exactly, past fp32's 24 bits, and saturate into int32
    program = vector_program("add", [(1, 3), (1, 3)], (1, 3), dtype="int32", out_dtype="int32")
    a = np.array([[2**24 + 1, -7, 2**31 - 1]], np.int32)
    b = np.array([[1, 3, 1]], np.int32)
    out = run_functional(program, {"X0": a, "X1": b})["Y"]
    np.testing.assert_array_equal(out, [[2**24 + 2, -4, 2**31 - 1]])


def test_the_example_in_the_isa_reference_runs():
    doc = (Path(__file__).parents[1] / "docs" / "isa.md").read_text()
    text = doc.split("```asm\n", 1)[1].split("```", 1)[0]
    program = parse(text)
    assert program.text() == text
    check_program(program, FORGE)
    inputs = random_inputs(program, np.random.default_rng(8))
    out = run_functional(program, inputs)["C"]
    exact = inputs["A"].astype(np.float32) @ inputs["B"].astype(np.float32)
    assert_within_one_rounding(out, exact)
