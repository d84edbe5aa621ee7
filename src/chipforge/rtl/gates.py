"""From Yosys generic cells to area: NAND2 equivalents per cell, NAND2 area per node.

NAND2 equivalents: each generic cell's area in a real library divided by that library's NAND2
area, using the NanGate FreePDK45 Open Cell Library (2010) liberty, whose X1 cells are NAND2
0.798 um2, INV 0.532, AND2/OR2/AOI21/OAI21 1.064, NOR2 0.798, AOI22/OAI22 1.330, XOR2/XNOR2
1.596, MUX2 1.862, DFF 4.522, DFFR 5.320 (an open library, so the ratios can be checked; ratios
between cells change little from node to node, absolute areas do).

NAND2 area per node: cell height x 3 contacted poly pitches, the footprint of a 4-transistor
NAND2 with single diffusion breaks (the geometry behind Bohr's density metric, Intel 2017,
"Let's clear up the node naming mess"). The result is placed standard-cell area only: no
placement utilization, wiring or clock tree, so a real block is larger.
"""

from __future__ import annotations

from chipforge.rtl.params import RtlError

_NAND2 = 0.798  # NanGate 45 nm NAND2_X1 area, um2
_DFF = 4.522 / _NAND2  # DFF_X1
_MUX = 1.862 / _NAND2  # MUX2_X1
_AND = 1.064 / _NAND2  # AND2_X1 (also OR2, AOI21, OAI21)

# generic cell -> NAND2 equivalents (NanGate 45 nm X1 cell area / NAND2_X1 area)
NAND2_EQUIVALENTS: dict[str, float] = {
    "$_NOT_": 0.532 / _NAND2,
    "$_BUF_": 0.532 / _NAND2,  # BUF_X1 0.798 in NanGate; Yosys leaves few, count as INV
    "$_AND_": _AND,
    "$_OR_": _AND,
    "$_NAND_": 1.0,
    "$_NOR_": 1.0,
    "$_XOR_": 1.596 / _NAND2,
    "$_XNOR_": 1.596 / _NAND2,
    "$_ANDNOT_": (0.532 + 0.798) / _NAND2,  # INV + NOR2
    "$_ORNOT_": (0.532 + 0.798) / _NAND2,  # INV + NAND2
    "$_MUX_": _MUX,
    "$_AOI3_": _AND,
    "$_OAI3_": _AND,
    "$_AOI4_": 1.330 / _NAND2,
    "$_OAI4_": 1.330 / _NAND2,
}

# node -> (standard-cell height nm, contacted poly pitch nm, source)
_GEOMETRY: dict[str, tuple[float, float, str]] = {
    # N3E 2-2 fin (FinFlex) library: 169 nm cell height, 48 nm CPP (the 2-1 fin one is 143 nm;
    # Synopsys figures as
    # reported on r/hardware, Mar 2025, "18A and N2P specifications leaked"; WikiChip N3E)
    "n3e": (169.0, 48.0, "N3E 2-2 fin library: 169 nm x 48 nm CPP (Synopsys, via r/hardware)"),
    # N3P: an optical shrink of N3E; TSMC quotes 1.04x chip density (TSMC 2023 Technology
    # Symposium): the N3E cell scaled by 1/1.04 in area (height scaled, CPP kept)
    "n3p": (169.0 / 1.04, 48.0, "N3E cell / 1.04 (TSMC 2023 Technology Symposium)"),
    # N2/N2P high-density: 130 nm cell height, 48 nm CPP (same Synopsys figures)
    "n2": (130.0, 48.0, "Synopsys N2P HD: 130 nm x 48 nm CPP"),
}

# nodes known only by published logic density (Bohr metric, MTr/mm2): NAND2 area = 4 / density
_DENSITY: dict[str, tuple[float, str]] = {
    "n7": (91.2, "WikiChip N7 estimate, 91.2 MTr/mm2"),
    "n5": (171.3, "WikiChip N5 estimate, 171.3 MTr/mm2 (Angstronomics finds real N5 lower)"),
}


def _flop(cell: str) -> float:
    """A Yosys flip-flop cell ($_DFF_P_, $_DFFE_PP_, $_SDFFE_PP0N_, ...) as a NanGate DFF
    plus the gates its extras need: an enable is a MUX2, a synchronous reset an AND2, an
    asynchronous reset makes it a DFFR_X1 (5.320 um2)."""
    kind, _, pins = cell.strip("$_").partition("_")
    base = 5.320 / _NAND2 if kind in ("DFF", "DFFE") and len(pins) >= 3 else _DFF
    return base + _MUX * ("E" in kind) + _AND * kind.startswith("SDFF")


def nand2_equivalents(cell: str) -> float:
    """NAND2 equivalents of one Yosys generic cell."""
    if is_flop(cell):
        return _flop(cell)
    if cell not in NAND2_EQUIVALENTS:
        raise RtlError(
            f"generic cell must be one of the {len(NAND2_EQUIVALENTS)} in rtl/gates.py, "
            f"not {cell!r}: add its NanGate area there"
        )
    return NAND2_EQUIVALENTS[cell]


def is_flop(cell: str) -> bool:
    return cell.startswith(("$_DFF", "$_SDFF"))


def nodes() -> tuple[str, ...]:
    return (*_DENSITY, *_GEOMETRY)


def nand2_area_um2(node: str) -> float:
    """The area of one NAND2 on `node`, um2."""
    if node in _GEOMETRY:
        height_nm, cpp_nm, _ = _GEOMETRY[node]
        return height_nm * 3 * cpp_nm * 1e-6
    if node in _DENSITY:
        return 4 / _DENSITY[node][0]  # 4 transistors / (MTr/mm2) = um2
    raise RtlError(f"`node` must be one of {', '.join(nodes())}, not {node!r}")


def source(node: str) -> str:
    """Where `node`'s NAND2 area comes from."""
    nand2_area_um2(node)
    return _GEOMETRY[node][2] if node in _GEOMETRY else _DENSITY[node][1]
