"""A matmul whose systolic array mostly fills and drains, or mostly loads weights, is labelled
by that limit (`fill`, `weight-load`), not `compute`, and both engines name the same bound;
the cycle engine's own timeline shows the named part outweighing the streaming."""

from __future__ import annotations

import pytest

from chipforge.perf import estimate
from chipforge.perf.calibration import calibration
from chipforge.perf.engine import Machine
from chipforge.sim import run_timing
from chipforge.sim.engine import simulate_op
from chipforge.sim.scalesim import array_chip
from chipforge.workload import parse_workload


def _chip(double_buffered: bool):
    c = array_chip(256, 256, "ws")  # SCALE-Sim's machine: nothing stalls on memory
    return c.model_copy(
        update={"matrix": c.matrix.model_copy(update={"double_buffered": double_buffered})}
    )


@pytest.mark.parametrize(
    ("shape", "buffered", "bound"),
    [
        ("m=128,n=128,k=128", False, "fill"),  # 128-row stream, 510 cycles of skew per fold
        ("m=64,n=4096,k=4096", True, "weight-load"),  # 64-row stream, 256-row weight loads
        ("m=4096,n=4096,k=4096", True, "compute"),
    ],
)
def test_engines_name_the_same_limit(shape, buffered, bound):
    chip, graph = _chip(buffered), parse_workload(f"gemm:{shape},dtype=int8")
    analytical, cycle = estimate(graph, chip), run_timing(graph, chip)
    assert analytical.ops[0].bound == cycle.ops[0].bound == bound
    # the cycle engine's timeline: the array's streaming cycles against the named part
    _, _, tl = simulate_op(Machine(chip, calibration(chip.family)), graph.ops[0])
    stream = graph.ops[0].flops / 2 / (256 * 256)  # MAC cycles at full array
    if bound == "weight-load":
        assert tl.busiest("wload") > stream
    elif bound == "fill":
        assert tl.cycles - tl.busiest("wload") - stream > stream
    else:
        assert stream > 0.9 * tl.cycles
