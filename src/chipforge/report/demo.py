"""The demo's HTML page: the house design against the GPUs, section by section.

Sections: each demo scenario compared across chips, the silicon cost of every demo chip, and
training / serving / datacenter sections when those packages are installed and answer.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from chipforge.report.html import render_sections

DATACENTER_POWER_W = 1e9  # a 1 GW site, the datacenter command's default


def _datacenter_section() -> list[tuple[str, str, dict]]:
    """forge-n3 against GB200 in a 1 GW site, with the forge-n3 site's tornado."""
    try:
        from chipforge.datacenter import Assumptions, compare, sensitivity

        a = Assumptions()
        data = compare(["gb200", "forge-n3"], DATACENTER_POWER_W, a)
        data["sensitivity"] = {"forge-n3": sensitivity("forge-n3", DATACENTER_POWER_W, a)}
    except Exception:  # noqa: BLE001 - a datacenter model that cannot answer only loses its section
        return []
    return [("datacenter", "Datacenter: a 1 GW site of GB200 vs forge-n3", data)]


def _plan_sections() -> list[tuple[str, str, dict]]:
    """Training / serving sections: `chipforge.cluster.demo.demo_train()` / `demo_serve()`."""
    out = []
    for kind, heading in (("train", "Training plan"), ("serve", "Serving plan")):
        try:
            fn = getattr(importlib.import_module("chipforge.cluster.demo"), f"demo_{kind}")
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
    return sections + _plan_sections() + _datacenter_section()


def write_demo_report(path, data: dict) -> None:
    """Write the demo's page to `path` (parent folders created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    title = "chipforge demo: forge-n3 against " + ", ".join(data.get("chips", [])[1:])
    p.write_text(render_sections(demo_sections(data), title), encoding="utf-8")
