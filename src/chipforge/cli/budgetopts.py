"""The simulators' budget options (`sim/budget.py`), shared by evaluate, compile and simulate."""

from __future__ import annotations

from typing import Annotated

import typer

MaxMemoryOpt = Annotated[
    str | None,
    typer.Option(
        "--max-memory",
        help="refuse a simulation estimated to need more memory (default: half the RAM)",
    ),
]
MaxWorkOpt = Annotated[
    str | None,
    typer.Option(
        "--max-work",
        help="refuse a simulation estimated at more work units: instructions, plus host "
        "MACs / 16384 with --functional (default 3e6, about a minute)",
    ),
]
