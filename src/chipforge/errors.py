"""User-facing errors. One wording: "`field` must be Y, not value" plus the fix.

A `ChipforgeError` is bad input or an infeasible design; the CLI prints its message on one line
and exits 2. An internal invariant that breaks is an `assert`, never one of these.
"""

from __future__ import annotations

import difflib
import re
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


# What a name (chip, model, rack, site, scenario) never holds: it is printed in terminals, tables
# and HTML. C0 and C1 controls and DEL (ESC drives the reader's terminal), line and paragraph
# separators, and the bidirectional overrides and isolates that reorder what a reader sees
# (Boucher & Anderson, "Trojan Source", CVE-2021-42574). A character class for a regex.
NOT_IN_NAMES = "\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
MAX_NAME = 200
_BAD_NAME = re.compile(f"[{NOT_IN_NAMES}]")


def is_name(value) -> bool:
    """A string of 1 to MAX_NAME characters, none of NOT_IN_NAMES."""
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME and not _BAD_NAME.search(value)


def check_name(
    value, field: str, error: type[ChipforgeError] = ChipforgeError, where: str = ""
) -> str:
    """`value` as a name (`is_name`), else a one-line `error` naming `field` (in `where`)."""
    if not is_name(value):
        shown = repr(value)[:60] if isinstance(value, str) else type(value).__name__
        head = f"{where}: " if where else ""
        raise error(
            f"{head}`{field}` must be one line of printable text (1 to {MAX_NAME} characters, no "
            f"control or text-direction characters), not {shown}"
        )
    return value


def flag(field: str) -> str:
    """The command-line flag of an API field (`adp_batching_wait` -> `--adp-batching-wait`), one
    spelling for every command: an error about a value the user passes as a flag names the flag
    (the Python API takes the same names with underscores)."""
    return "--" + field.replace("_", "-")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean ...?)' suffix naming the closest choices, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""
