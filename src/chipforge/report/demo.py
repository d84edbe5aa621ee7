"""The demo's HTML page: the house design against the GPUs, section by section.

Sections: each demo scenario compared across chips, the silicon cost of every demo chip, and
training / serving / datacenter sections when those packages are installed and answer.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from chipforge.report.html import render_sections


def _optional_sections() -> list[tuple[str, str, dict]]:
    """Plan sections from the cluster/datacenter packages, where present (best effort)."""
    out = []
    hooks = (
        ("chipforge.cluster.demo", "train", "Training plan: forge-n3 cluster"),
        ("chipforge.cluster.demo", "serve", "Serving plan: forge-n3 cluster"),
        ("chipforge.datacenter.demo", "datacenter", "Datacenter: build vs buy"),
    )
    for module, kind, heading in hooks:
        try:
            fn = getattr(importlib.import_module(module), f"demo_{kind}")
            data = fn()
        except Exception:  # noqa: BLE001 - a package not there yet only loses its section
            continue
        out.append((kind, heading, data.to_dict() if hasattr(data, "to_dict") else data))
    return out


def demo_sections(data: dict) -> list[tuple[str, str, dict]]:
    """(kind, heading, data) sections of `chipforge demo`'s JSON dict plus cost and plans."""
    sections = [
        ("compare", sc["title"], {"workload": sc["workload"], "results": sc["results"]})
        for sc in data.get("scenarios", [])
    ]
    try:
        from chipforge.silicon import evaluate
        from chipforge.spec import load_chip

        for chip in data.get("chips", []):
            sections.append(("cost", f"Silicon cost: {chip}", evaluate(load_chip(chip)).to_dict()))
    except Exception:  # noqa: BLE001 - a chip the silicon model cannot cost only loses its section
        pass
    return sections + _optional_sections()


def write_demo_report(path, data: dict) -> None:
    """Write the demo's page to `path` (parent folders created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    title = "chipforge demo: forge-n3 against " + ", ".join(data.get("chips", [])[1:])
    p.write_text(render_sections(demo_sections(data), title), encoding="utf-8")
