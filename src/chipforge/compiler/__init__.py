"""Lowering graph ops to the chip's instruction set (isa.py): matmul tiling and mapping,
flash attention, vector and embedding ops; one program per op."""

from chipforge.compiler.isa import Program, ProgramError, parse
from chipforge.compiler.lower import CompileError, compile_graph, compile_op

__all__ = ["CompileError", "Program", "ProgramError", "compile_graph", "compile_op", "parse"]
