"""The cache key of a chip for the cluster's per-layer caches (training and serving), and the
preset a chip is, whatever it is called (`preset_like`)."""

from __future__ import annotations

from chipforge.spec.loader import load_chip
from chipforge.spec.models import ChipSpec

_KEYS: dict[int, tuple[ChipSpec, str]] = {}
_PRESETS: dict[tuple[str, tuple[str, ...], tuple[str, ...]], str | None] = {}


def chip_key(chip: ChipSpec) -> str:
    """The chip's content (its JSON), memoized per object. The memo holds the chip itself, so
    CPython cannot hand a freed chip's id to a new design while its entry exists (an id-only
    key gave a sweep's new design an old design's timings)."""
    hit = _KEYS.get(id(chip))
    if hit is None or hit[0] is not chip:
        if len(_KEYS) >= 256:
            _KEYS.clear()
        hit = _KEYS[id(chip)] = (chip, chip.model_dump_json())
    return hit[1]


def preset_like(chip: ChipSpec, names, *, ignore: tuple[str, ...] = ("name",)) -> str | None:
    """The first preset of `names` whose content, all but the `ignore` fields, is the chip's
    (None: none is): a figure measured on a preset belongs to the chip of its content, not of
    its name, so a user's TOML copy of the preset under another name is the measured chip and a
    chip of other content named after it is not. Memoised on the chip's content."""
    key = (chip_key(chip), tuple(names), tuple(ignore))
    if key not in _PRESETS:
        if len(_PRESETS) >= 256:
            _PRESETS.clear()
        skip = set(ignore)
        mine = chip.model_dump(exclude=skip)
        _PRESETS[key] = next(
            (n for n in key[1] if load_chip(n).model_dump(exclude=skip) == mine), None
        )
    return _PRESETS[key]
