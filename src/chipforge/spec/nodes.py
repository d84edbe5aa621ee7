"""Process nodes (TSMC N28 ... N2): the per-node figures the models scale by."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class ProcessNode:
    name: str
    energy_scale: float  # dynamic energy per operation relative to 45 nm (see nodes.toml)


@cache
def nodes() -> dict[str, ProcessNode]:
    data = tomllib.loads((resources.files("chipforge.spec") / "nodes.toml").read_text())
    return {name: ProcessNode(name=name, **fields) for name, fields in data.items()}
