"""docs/chip-spec.md, generated from the pydantic models: every field of a chip TOML with its
type, unit, default, range, meaning and the value the house preset (forge-n3) gives it.
`python -m chipforge.spec.reference` rewrites the page; a test fails when it is stale.
`chipforge schema chip` prints the same models as JSON Schema."""

from __future__ import annotations

import sys
import typing
from pathlib import Path

from chipforge.display import show
from chipforge.spec.loader import load_chip
from chipforge.spec.models import ChipSpec, Link, MatrixUnit, MemoryLevel, VectorUnit

EXAMPLE = "forge-n3"
UNITS = {  # quantity dimension -> the unit a TOML string takes, with an example
    "bytes": "bytes ('80 GB', '128 MiB')",
    "bandwidth": "B/s ('3.35 TB/s')",
    "power": "W ('700 W')",
    "frequency": "Hz ('1.98 GHz')",
    "time": "s ('1 us')",
    "area": "m² ('814 mm2')",
    "energy_per_byte": "J/B ('3.9 pJ/bit')",
}
SHOW = {  # dimension -> (JSON key suffix for display.show)
    "bytes": "_bytes",
    "bandwidth": "_bytes_per_s",
    "power": "_w",
    "frequency": "_hz",
    "time": "_s",
    "area": "_m2",
    "energy_per_byte": "_j_per_byte",
}
TABLES = (
    ("chip (top level)", ChipSpec, ""),
    ("[matrix]", MatrixUnit, "matrix"),
    ("[vector]", VectorUnit, "vector"),
    ("[[memory]] (outermost first: HBM or DRAM, then on-chip levels)", MemoryLevel, "memory.0"),
    ("[[links]] (the first is the scale-up link)", Link, "links.0"),
)


def _dimension(model, name: str) -> str:
    """The quantity dimension of a field ('' for plain numbers and text): read off the unit
    parser `spec.models._quantity` attaches, however deep in Optional/Annotated it sits."""
    hint = typing.get_type_hints(model, include_extras=True)[name]
    todo = [hint]
    while todo:
        t = todo.pop()
        for meta in getattr(t, "__metadata__", ()):
            cells = getattr(getattr(meta, "func", None), "__closure__", None)
            if cells and isinstance(cells[0].cell_contents, str):
                return cells[0].cell_contents
        todo += list(typing.get_args(t))
    return ""


def _type(model, name: str, field) -> str:
    ann = field.annotation
    if typing.get_origin(ann) is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(ann))
    text = str(typing.get_type_hints(model)[name])
    for junk in ("typing.", "chipforge.spec.models.", "chipforge.dtypes.", "<class '", "'>"):
        text = text.replace(junk, "")
    text = text.replace("Optional[float]", "float | None").replace("NoneType", "None")
    text = text.replace("tuple[MemoryLevel, ...]", "list of [[memory]]")
    text = text.replace("tuple[Link, ...]", "list of [[links]]")
    return text.replace("|", "\\|")


def _range(field) -> str:
    out = []
    for meta in field.metadata:
        for attr, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            v = getattr(meta, attr, None)
            if v is not None:
                out.append(f"{sym} {v:g}" if isinstance(v, float) else f"{sym} {v}")
        if getattr(meta, "min_length", None):
            out.append(f"at least {meta.min_length}")
    return ", ".join(out)


def _example(dump: dict, path: str, name: str, dimension: str) -> str:
    node = dump
    for part in [p for p in path.split(".") if p]:
        node = node[int(part)] if isinstance(node, list | tuple) else node.get(part, {})
    value = node.get(name) if isinstance(node, dict) else None
    if value is None or isinstance(value, dict | list) and name in ("matrix", "vector"):
        return ""
    if isinstance(value, list):
        return f"{len(value)} entries"
    if dimension and isinstance(value, int | float):
        return show(SHOW[dimension], value)
    text = str(value)
    return f"`{text[:60]}`"


def markdown() -> str:
    dump = load_chip(EXAMPLE).model_dump(mode="json")
    lines = [
        "# Chip TOML reference",
        "",
        "Generated from the pydantic models in `chipforge/spec/models.py` by "
        "`python -m chipforge.spec.reference` (a test fails when this page is stale). A chip is "
        "a preset name or a TOML file with these fields, in every command; `chipforge schema "
        "chip` prints them as JSON Schema and `examples/my-chip.toml` is a commented complete "
        "chip. Quantities take units as strings ('1.4 GHz', '288 GB', '9.8 TB/s', '1100 W'); "
        "a bare number is in SI base units. An unknown field is an error naming it, and every "
        "command validates a chip the same way (errors name the file and the field). The "
        f"example column is the house preset `{EXAMPLE}`.",
        "",
        "Memory energy: a level without `energy_per_byte` takes its technology's default from "
        "its name (HBM2/HBM2E/HBM3/HBM3E/HBM4, LPDDR5/LPDDR5X, GDDR6/GDDR6X/GDDR7, DDR4/DDR5; "
        "an HBM level of another name counts as HBM; table and sources in "
        "`chipforge/perf/energy.py`), on-chip levels SRAM energy scaled to the node.",
        "",
    ]
    for title, model, path in TABLES:
        lines += [f"## {title}", ""]
        doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        lines += [doc, ""] if doc else []
        lines += [
            "| field | type | unit | default | range | meaning | example |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, field in model.model_fields.items():
            default = "required" if field.is_required() else f"`{field.default}`"
            desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
            dim = _dimension(model, name)
            lines.append(
                f"| `{name}` | {_type(model, name, field)} | {UNITS.get(dim, '')} | {default} "
                f"| {_range(field)} | {desc} | {_example(dump, path, name, dim)} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def schema(kind: str = "chip") -> dict:
    """The JSON Schema of a chip TOML (`kind` = chip)."""
    return ChipSpec.model_json_schema()


DOC = Path(__file__).resolve().parents[3] / "docs" / "chip-spec.md"

if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOC
    from chipforge.atomic import atomic_write_text

    atomic_write_text(target, markdown())
    print(f"wrote {target}")
