"""Driving the array in Amaranth's Python simulator (the default co-simulation back end)."""

from __future__ import annotations

from amaranth.sim import Simulator

from chipforge.rtl.array import SystolicArray
from chipforge.rtl.params import ArrayParams, Seen

_CLOCK_S = 1e-8  # a nominal 100 MHz period: cycles are what is counted, not seconds


def run_amaranth(
    params: ArrayParams,
    weights: list[int],
    acts: list[tuple[int, int]],
    *,
    stall_every: int = 0,
    vcd: str | None = None,
) -> Seen:
    """Feed the weight and act beats as fast as the array takes them and record every result
    row with its cycle (cycle 0: the first cycle). `stall_every` > 0 drops `results.ready`
    every that many cycles, to exercise the stall (cycles then differ from the timing model)."""
    dut = SystolicArray(params)
    seen = Seen()
    sim = Simulator(dut)
    sim.add_clock(_CLOCK_S)

    async def bench(ctx) -> None:
        wi = ai = 0
        w_port, a_port, r_port = dut.weights, dut.acts, dut.results
        a_bits = a_port.payload.as_value()
        r_data = r_port.payload.data
        cycle = 0
        while len(seen.rows) < len(acts):
            ready = not (stall_every and cycle % stall_every == stall_every - 1)
            ctx.set(r_port.ready, ready)
            ctx.set(w_port.valid, wi < len(weights))
            if wi < len(weights):
                ctx.set(w_port.payload, weights[wi])
            ctx.set(a_port.valid, ai < len(acts))
            if ai < len(acts):
                value, last = acts[ai]
                ctx.set(a_bits, value | (last << len(a_port.payload.data)))
            w_fire = wi < len(weights) and ctx.get(w_port.ready)
            a_fire = ai < len(acts) and ctx.get(a_port.ready)
            if ready and ctx.get(r_port.valid):
                word, bits = ctx.get(r_data), len(r_data) // params.cols
                seen.rows.append([(word >> (c * bits)) & ((1 << bits) - 1)
                                  for c in range(params.cols)])  # fmt: skip
                seen.row_cycles.append(cycle)
            if a_fire:
                seen.act_cycles.append(cycle)
            wi, ai = wi + w_fire, ai + a_fire
            await ctx.tick()
            cycle += 1
        seen.cycles = cycle

    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return seen
