"""User-facing errors. One wording: "`field` must be Y, not value" plus the fix.

A `ChipforgeError` is bad input or an infeasible design; the CLI prints its message on one line
and exits 2. An internal invariant that breaks is an `assert`, never one of these.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ChipforgeError(Exception):
    """Bad user input or an infeasible design. The message names the field and the fix."""


class UnitError(ChipforgeError):
    """A quantity string that cannot be parsed, or has the wrong dimension."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"`{field}` {problem}")


class SpecError(ChipforgeError):
    """A hardware description that is malformed or physically impossible."""


class WorkloadError(ChipforgeError):
    """A workload string, model config or graph that is malformed."""


class Infeasible(ChipforgeError):
    """A valid request that cannot be realised (e.g. does not fit in memory); searches skip
    these."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean ...?)' suffix naming the closest choices, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""
