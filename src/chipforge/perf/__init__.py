"""Fast analytical cost of a graph on one chip."""

from chipforge.perf.engine import estimate
from chipforge.perf.result import OpResult, Result

__all__ = ["OpResult", "Result", "estimate"]
