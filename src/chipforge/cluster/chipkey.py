"""The cache key of a chip for the cluster's per-layer caches (training and serving)."""

from __future__ import annotations

from chipforge.spec.models import ChipSpec

_KEYS: dict[int, tuple[ChipSpec, str]] = {}


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
