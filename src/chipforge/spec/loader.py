"""Load chips from shipped presets (TOML in `presets/`) or a user's TOML file."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from chipforge.errors import SpecError, did_you_mean
from chipforge.spec.models import ChipSpec
from chipforge.userfile import bare_name, load_toml, missing

PRESET_DIR = resources.files("chipforge.spec") / "presets"


def preset_names() -> list[str]:
    """Names of the shipped chip presets, sorted."""
    return sorted(
        p.name.removesuffix(".toml") for p in PRESET_DIR.iterdir() if p.name.endswith(".toml")
    )


def validation_message(err: ValidationError, where: str) -> str:
    """One line naming the dotted path of the first bad field and how to fix it."""
    more = len(err.errors()) - 1
    return _first_problem(err.errors()[0], where) + (f" (and {more} more)" if more else "")


def problems(err: ValidationError, where: str) -> list[str]:
    """One line per bad field, each as `validation_message` words the first."""
    return [_first_problem(e, where) for e in err.errors()]


class _Shown:
    """A value as an error message shows it: its repr, cut to 60 characters (a hostile file's
    100,000-character name is not echoed whole)."""

    def __init__(self, value: Any) -> None:
        self.text = repr(value)
        if len(self.text) > 60:
            self.text = self.text[:50] + f"... ({len(self.text):,} characters)"

    def __repr__(self) -> str:
        return self.text


def _first_problem(first: dict, where: str) -> str:
    path = ".".join(str(p) for p in first["loc"]) or "(root)"
    kind, value = first["type"], _Shown(first.get("input"))
    if kind == "string_pattern_mismatch":
        text = "must be one line of printable text (no control or text-direction characters)"
        return f"{where}: `{path}` {text}, not {value!r}"
    if kind == "extra_forbidden":
        return f"{where}: `{path}` is not a known field; remove it or check its spelling"
    if kind == "missing":
        return f"{where}: `{path}` is required; add it"
    if kind == "too_short":
        return f"{where}: `{path}` must not be empty, not {value!r}; give at least one entry"
    if kind == "finite_number":
        return f"{where}: `{path}` must be a finite number, not {value!r}"
    if kind == "field_error":  # a model validator's error about one of its fields
        return f"{where}: `{path}.{first['ctx']['field']}` {first['msg']}"
    if kind in ("greater_than", "greater_than_equal", "less_than_equal", "less_than"):
        bound = {
            "greater_than": ">",
            "greater_than_equal": ">=",
            "less_than": "<",
            "less_than_equal": "<=",
        }[kind]
        limit = next(iter(first.get("ctx", {}).values()), "")
        limit = f"{limit:g}" if isinstance(limit, float) else limit
        return f"{where}: `{path}` must be {bound} {limit}, not {value!r}"
    message = first["msg"].removeprefix("Value error, ")
    return (
        f"{where}: `{path}` {message}"
        if kind == "value_error"
        else f"{where}: `{path}` {message.lower()}, not {value!r}"
    )


def chip_list(text: str | None, flag: str = "--chip") -> list[str]:
    """The chips of a comma-separated `--chip a,b` list, each named once (every command and the
    Python API read a chip list here): an empty entry or a chip named twice is an error, not
    silently dropped or costed twice."""
    names = [c.strip() for c in (text or "").split(",")]
    if not any(names):
        raise SpecError(f"`{flag}` must name a chip (or a,b to compare), not {text!r}")
    if not all(names):
        raise SpecError(f"`{flag}` {text!r} has an empty entry; separate chip names by one comma")
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        raise SpecError(f"`{flag}` names {twice} twice; give each chip once")
    return names


def load_chips(names: list, flag: str = "--chip") -> list[ChipSpec]:
    """The chips of a list (`chip_list`'s), loaded; two entries that are the same chip by name
    (one TOML by two paths, or a user TOML named like a preset) are an error: their rows would
    carry one name."""
    specs = [n if isinstance(n, ChipSpec) else load_chip(n) for n in names]
    seen: dict[str, Any] = {}
    for n, spec in zip(names, specs, strict=True):
        if spec.name in seen:
            raise SpecError(
                f"`{flag}` {str(seen[spec.name])[:80]} and {str(n)[:80]} are both chip "
                f"{spec.name!r}; give each chip once (or rename one: its TOML's `name`)"
            )
        seen[spec.name] = n
    return specs


def chip_from_dict(data: dict[str, Any], where: str = "chip") -> ChipSpec:
    """Validate a chip description (already parsed from TOML or JSON)."""
    try:
        return ChipSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(validation_message(err, where)) from None


def _read_toml(path: Path | Any, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{where}: not valid TOML ({err})") from None


@cache
def _load_preset(name: str) -> ChipSpec:
    return chip_from_dict(
        _read_toml(PRESET_DIR / f"{name}.toml", f"preset {name}"), f"preset {name}"
    )


def load_chip(name_or_path: str | Path | ChipSpec) -> ChipSpec:
    """A preset by name (`h100`, `forge-n3`) or a chip TOML file by path (a `ChipSpec` is
    itself). Spaces around it are dropped (as in a `--chip a, b` list and a workload string)
    unless a file is named so."""
    if isinstance(name_or_path, ChipSpec):
        return name_or_path
    text = bare_name(str(name_or_path))
    if not text:
        raise SpecError("`chip` is empty; give a preset name or a chip TOML path")
    try:
        path = Path(text)  # a folder is no chip: one named as a preset (a sweep store) is not it
        if (
            text.endswith(".toml")
            or path.is_file()
            or (path.exists() and text not in preset_names())
        ):
            if not path.is_file():
                raise SpecError(
                    f"chip file {text!r} {missing(path)}; give a preset name or a TOML path"
                )
            return chip_from_dict(load_toml(path, what="chip file", error=SpecError), text)
    except OSError as err:  # a name too long, a folder without permission
        raise SpecError(f"`chip` {text[:80]!r} cannot be read: {err.strerror}") from None
    names = preset_names()
    if text not in names:
        raise SpecError(
            f"`chip` must be a preset or a .toml file, not {text!r}"
            f"{did_you_mean(text, names)}; `chipforge presets` lists them"
        )
    return _load_preset(text)
