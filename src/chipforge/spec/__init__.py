"""Hardware descriptions (chips, matrix and vector units, memory levels, links) and presets."""

from chipforge.spec.loader import chip_from_dict, load_chip, preset_names
from chipforge.spec.models import ChipSpec, Link, MatrixUnit, MemoryLevel, VectorUnit
from chipforge.spec.nodes import ProcessNode

__all__ = [
    "ChipSpec",
    "Link",
    "MatrixUnit",
    "MemoryLevel",
    "ProcessNode",
    "VectorUnit",
    "chip_from_dict",
    "load_chip",
    "preset_names",
]
