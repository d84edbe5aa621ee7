"""The demo's HTML page: the house design against the GPUs, section by section.

Sections: each demo scenario compared across chips, the silicon cost of every demo chip, and
training / serving / datacenter sections when those packages are installed and answer.
"""

from __future__ import annotations

from chipforge.atomic import atomic_write_text
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
    """Llama-3-70B trained on 1024 forge-n3 chips and served on 8 (the cluster package)."""
    out = []
    try:
        from chipforge.cluster import plan_serving, plan_training
    except ImportError:
        return out
    runs = (
        ("train", "Training plan: Llama-3-70B on 1024 forge-n3", plan_training, 1024, {}),
        (
            "serve",
            "Serving plan: Llama-3-70B on 8 forge-n3",
            plan_serving,
            8,
            {"isl": 1024, "osl": 256},
        ),
    )
    for kind, heading, fn, chips, kw in runs:
        try:
            plan = fn("forge-n3", "llama3-70b", chips, **kw)
        except Exception:  # noqa: BLE001 - a plan the cluster model cannot make loses its section
            continue
        out.append((kind, heading, plan.to_dict() if hasattr(plan, "to_dict") else plan))
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
    title = "chipforge demo: forge-n3 against " + ", ".join(data.get("chips", [])[1:])
    atomic_write_text(path, render_sections(demo_sections(data), title), flag="--html", mkdir=True)
