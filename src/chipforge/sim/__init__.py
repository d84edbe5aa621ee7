"""Executing compiled programs: cycle-level timing (and functional, on real numbers)."""

from chipforge.sim.engine import run_timing
from chipforge.sim.functional import dtype_of, random_inputs, run_functional

__all__ = ["dtype_of", "random_inputs", "run_functional", "run_timing"]
