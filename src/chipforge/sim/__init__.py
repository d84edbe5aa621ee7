"""Executing compiled programs: cycle-level timing (and functional, on real numbers).

The exports load on first use: the functional simulator needs ml_dtypes (about 0.5 s to
import), which the analytical commands never touch."""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "run_timing": "chipforge.sim.engine",
    "dtype_of": "chipforge.sim.functional",
    "random_inputs": "chipforge.sim.functional",
    "run_functional": "chipforge.sim.functional",
    "write_trace": "chipforge.sim.trace",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'chipforge.sim' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
