"""Deterministic JSON: same inputs, same bytes; and the check every printed result passes."""

from __future__ import annotations

import json
import math
import numbers
import re

# A number under a key with one of these words (or under a parent key with one: the values of
# `time_by_bound_s`) is a time, FLOP count, energy, throughput, cost, power or size: never
# negative. Figures that are signed by nature (a saving, a cash flow, a delta, a validation
# error) carry a SIGNED word, which wins over the quantity words for the whole subtree.
QUANTITY_WORDS = re.compile(
    r"(?:^|[_.:/])(?:s|time|flops?|j|energy|usd|cost|w|power|bytes|tokens|throughput|cycles)"
    r"(?=$|[_.:/])",
    re.IGNORECASE,
)
SIGNED_WORDS = re.compile(
    r"(?:^|[_.:/])(?:savings?|cash|npv|net|delta|diff|difference|margin|profit|gain|change|"
    r"slack|error|advantage|balance)(?=$|[_.:/])",
    re.IGNORECASE,
)


def check_numbers(data, path: str = "") -> None:
    """Raise AssertionError (a bug, not a user error) at the first NaN anywhere in `data`, or
    negative number under a quantity key. Run on every result before it is printed."""
    for where, value, quantity in _leaves(data, path, False, False):
        if math.isnan(value) or (quantity and value < 0):
            raise AssertionError(f"result `{where}` is {value}: a model produced nonsense")


def _leaves(value, path: str, quantity: bool, signed: bool):
    if isinstance(value, bool):
        return
    if isinstance(value, numbers.Real):
        yield path or "(root)", value, quantity and not signed
    elif isinstance(value, dict):
        for k, v in value.items():
            key = str(k)
            where = f"{path}.{key}" if path else key
            yield from _leaves(
                v, where, quantity or bool(QUANTITY_WORDS.search(key)),
                signed or bool(SIGNED_WORDS.search(key)),
            )  # fmt: skip
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]", quantity, signed)


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
