"""Deterministic JSON: same inputs, same bytes."""

from __future__ import annotations

import json
import math


def _clean(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def to_json(obj) -> str:
    """`obj` (a dict, or anything with `to_dict`) as indented JSON with a trailing newline."""
    data = obj.to_dict() if hasattr(obj, "to_dict") else obj
    return json.dumps(_clean(data), indent=2, allow_nan=False) + "\n"
