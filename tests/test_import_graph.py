"""The modules import in pipeline order: the circles the project once had (rtl.cosim with its
simulators, silicon.floorplan with silicon.reference, workload.costs / imported / patterns,
workload.pt2_archive with torch_import, explore.evaluate with explore.space) stay broken,
function-level imports included."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ONCE_CIRCLES = (
    ("chipforge.rtl.cosim", "chipforge.rtl.pysim", "chipforge.rtl.verilator"),
    ("chipforge.silicon.floorplan", "chipforge.silicon.reference"),
    ("chipforge.workload.costs", "chipforge.workload.imported", "chipforge.workload.patterns"),
    ("chipforge.workload.pt2_archive", "chipforge.workload.torch_import"),
    ("chipforge.explore.evaluate", "chipforge.explore.space"),
)


def _graph() -> dict[str, set[str]]:
    """Module -> the chipforge modules it imports anywhere in its body (a package's own
    `__init__` only where it is named)."""
    files = {}
    for path in (SRC / "chipforge").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    edges: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                # `from package import module` names the module, not the package's __init__
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                         for a in node.names]  # fmt: skip
            else:
                continue
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    edges[module].add(name)
    return edges


def _reach(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_circles_the_project_once_had_stay_broken():
    edges = _graph()
    for group in ONCE_CIRCLES:
        assert all(m in edges for m in group), group  # (a rename must update this list)
        for module in group:
            assert module not in _reach(edges, module), f"{module} imports itself back"
