"""The weight-stationary systolic array as an Amaranth component.

    weights (one row of W per beat, K = 0..R-1) ──► column skew ──► PE(k, c) weight banks
    acts    (one row of A per beat: R values)   ──► row skew ──► PE(k, 0) ──► PE(k, 1) ──► ...
    psums enter row 0 at zero and flow down; row R-1's sums are deskewed into `results`.

PE(k, c) holds W[k, c] (two banks when double-buffered), multiplies the activation passing
through it by the weight of the bank tagged on that activation, adds the partial sum from
above and registers it downwards; the activation and its bank tag move one PE right per
cycle. Row k of each input is delayed k cycles (skew) and column c's sum C - 1 - c cycles
(deskew), so a result row leaves in one beat.

Timing (cycles, one beat per cycle while nothing stalls):
- a weight load takes R beats; a stream may start once its tile's last row is in;
- a stream of M rows takes M beats; the results of the row accepted at cycle t are valid at
  t + R + C - 1, so the last result of a stream started at cycle s is valid at
  s + M + R + C - 2: the timing model's `done` (sim/timing.py) counts exactly this cycle;
- double-buffered, the next tile loads into the idle bank as soon as the stream that last
  read it has taken its last row; single-buffered, the load waits until that stream's last
  result is valid (SCALE-Sim's per-fold drain, as the timing model assumes).
Weight row k reaches PE(k, c) c cycles after it is accepted, on the same diagonal as the
activations, so a bank is rewritten only behind the last activation that reads it.

`results.ready` low stalls the whole pipeline (a global clock enable), so no result is lost.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, EnableInserter, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from chipforge.rtl.arith import ACC_BITS, IN_BITS, MACS
from chipforge.rtl.params import ArrayParams


class PE(wiring.Component):
    """One processing element: `psum_out <= psum_in + a_in x w[sel_in]` each cycle."""

    def __init__(self, params: ArrayParams):
        self.params = params
        in_bits, acc_bits = IN_BITS[params.dtype], ACC_BITS[params.dtype]
        super().__init__(
            {
                "a_in": In(in_bits),
                "sel_in": In(1),  # weight bank of this activation
                "psum_in": In(acc_bits),
                "a_out": Out(in_bits),
                "sel_out": Out(1),
                "psum_out": Out(acc_bits),
                "w_data": In(in_bits),
                "w_en": In(1),  # write w_data into bank w_bank this cycle
                "w_bank": In(1),
            }
        )

    def elaborate(self, platform) -> Module:
        m = Module()
        banks = 2 if self.params.double_buffered else 1
        weights = Array(Signal(len(self.w_data), name=f"w{b}") for b in range(banks))
        with m.If(self.w_en):
            m.d.sync += weights[self.w_bank if banks == 2 else 0].eq(self.w_data)
        weight = weights[self.sel_in] if banks == 2 else weights[0]
        mac = MACS[self.params.dtype](m, self.psum_in, self.a_in, weight, "mac")
        m.d.sync += [
            self.psum_out.eq(mac),
            self.a_out.eq(self.a_in),
            self.sel_out.eq(self.sel_in),
        ]
        return m


def _delay(m: Module, value, cycles: int, name: str):
    """`value` delayed by `cycles` registers (the value itself when cycles == 0)."""
    for i in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{i}")
        m.d.sync += reg.eq(value)
        value = reg
    return value


def act_layout(params: ArrayParams) -> data.StructLayout:
    """One input row: R values (element k in bits [k*w, (k+1)*w)) and the tile's last flag."""
    return data.StructLayout({"data": params.rows * IN_BITS[params.dtype], "last": 1})


def result_layout(params: ArrayParams) -> data.StructLayout:
    """One result row: C partial sums (int32 or fp32 bits) and the stream's last flag."""
    return data.StructLayout({"data": params.cols * ACC_BITS[params.dtype], "last": 1})


class SystolicArray(wiring.Component):
    """rows x cols weight-stationary array with valid/ready streams (see the module doc).

    `weights`: R beats per tile, beat k = W[k, 0..C-1] (C values of the input format).
    `acts`: one beat per input row, R values; `last` on a stream's final row, which retires
    its weight tile. `results`: one beat per input row, C int32 / fp32 sums."""

    def __init__(self, params: ArrayParams):
        self.params = params
        in_bits = IN_BITS[params.dtype]
        super().__init__(
            {
                "weights": In(stream.Signature(params.cols * in_bits)),
                "acts": In(stream.Signature(act_layout(params))),
                "results": Out(stream.Signature(result_layout(params))),
            }
        )

    def elaborate(self, platform) -> Module:
        m, core = Module(), Module()
        run = Signal()  # the pipeline's clock enable: low while a result waits for `ready`
        m.d.comb += run.eq(~(self.results.valid & ~self.results.ready))
        m.submodules.core = EnableInserter(run)(core)
        w_fire, w_bank, w_row, a_fire, a_bank = self._control(core, run)
        self._datapath(core, run, w_fire, w_bank, w_row, a_fire, a_bank)
        return m

    def _control(self, m: Module, run: Signal):
        """The loader counts R rows into bank `w_bank` once it is free; the streamer takes
        rows while bank `a_bank` is full, and a row marked `last` frees it."""
        p = self.params
        full = Signal(2, name="full")  # bank b holds a tile whose stream has not ended
        drain = Signal(range(p.rows + p.cols), name="drain")  # single-buffered only
        w_bank, w_row, a_bank = Signal(name="w_bank"), Signal(range(p.rows)), Signal()
        m.d.comb += [
            self.weights.ready.eq(run & ~full.bit_select(w_bank, 1) & (drain == 0)),
            self.acts.ready.eq(run & full.bit_select(a_bank, 1)),
        ]
        w_fire = self.weights.valid & self.weights.ready
        a_fire = self.acts.valid & self.acts.ready
        loaded = w_fire & (w_row == p.rows - 1)
        retire = a_fire & self.acts.payload.last
        for b in range(2):
            m.d.sync += full[b].eq((full[b] & ~(retire & (a_bank == b))) | (loaded & (w_bank == b)))
        with m.If(w_fire):
            m.d.sync += w_row.eq(Mux(loaded, 0, w_row + 1))
        if p.double_buffered:
            with m.If(loaded):
                m.d.sync += w_bank.eq(~w_bank)
            with m.If(retire):
                m.d.sync += a_bank.eq(~a_bank)
        else:  # one bank: the next load waits for this stream's last result
            with m.If(retire):
                m.d.sync += drain.eq(p.rows + p.cols - 2)
            with m.Elif(drain != 0):
                m.d.sync += drain.eq(drain - 1)
        return w_fire, w_bank, w_row, a_fire, a_bank

    def _pe(self, m: Module, k: int, c: int, run: Signal):
        """PE(k, c), added to `m` (clocked by `m`'s domain, so gated by `run`). A subclass
        may put a black box with the same ports there (rtl/verilator.py does)."""
        pe = PE(self.params)
        m.submodules[f"pe_{k}_{c}"] = pe
        return pe

    def _datapath(self, m, run, w_fire, w_bank, w_row, a_fire, a_bank) -> None:
        p = self.params
        in_bits, acc_bits = IN_BITS[p.dtype], ACC_BITS[p.dtype]
        w_data = self.weights.payload
        a_data = self.acts.payload.data
        pes = [[self._pe(m, k, c, run) for c in range(p.cols)] for k in range(p.rows)]
        # weight write port, skewed by column: (data, enable, row, bank) reach column c c
        # cycles late, on the activations' diagonal
        for c in range(p.cols):
            bits = Cat(w_data[c * in_bits : (c + 1) * in_bits], w_fire, w_row, w_bank)
            col = _delay(m, bits, c, f"wcol{c}")
            data_c, en_c = col[:in_bits], col[in_bits]
            row_c, bank_c = col[in_bits + 1 : -1], col[-1]
            for k in range(p.rows):
                pe = pes[k][c]
                m.d.comb += [
                    pe.w_data.eq(data_c),
                    pe.w_en.eq(en_c & (row_c == k)),
                    pe.w_bank.eq(bank_c),
                ]
        # activations: row k delayed k cycles, with its bank tag
        for k in range(p.rows):
            bits = _delay(m, Cat(a_data[k * in_bits : (k + 1) * in_bits], a_bank), k, f"arow{k}")
            m.d.comb += [pes[k][0].a_in.eq(bits[:in_bits]), pes[k][0].sel_in.eq(bits[in_bits])]
            for c in range(1, p.cols):
                left = pes[k][c - 1]
                m.d.comb += [pes[k][c].a_in.eq(left.a_out), pes[k][c].sel_in.eq(left.sel_out)]
        for c in range(p.cols):
            for k in range(1, p.rows):
                m.d.comb += pes[k][c].psum_in.eq(pes[k - 1][c].psum_out)
            m.d.comb += pes[0][c].psum_in.eq(0)  # +0: the first product is added to +0.0
        # results: column c delayed C - 1 - c, valid/last delayed R + C - 1
        sums = [_delay(m, pes[-1][c].psum_out, p.cols - 1 - c, f"dsk{c}") for c in range(p.cols)]
        tag = _delay(m, Cat(a_fire, self.acts.payload.last), p.rows + p.cols - 1, "out")
        m.d.comb += [
            self.results.payload.data.eq(Cat(*sums)),
            self.results.valid.eq(tag[0]),
            self.results.payload.last.eq(tag[1]),
        ]
        assert all(len(s) == acc_bits for s in sums)
