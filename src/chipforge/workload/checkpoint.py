"""What a HuggingFace model folder's weights hold, read from the safetensors headers only.

A `model.safetensors` file starts with an 8-byte little-endian header length N and N bytes of
JSON: tensor name -> {dtype, shape, data_offsets}, plus an optional `__metadata__` of strings
(huggingface/safetensors, "Format"). Sharded checkpoints add `model.safetensors.index.json`
whose `weight_map` names the shard of each tensor. Only those headers are read: no weights, no
pickle (a `pytorch_model.bin` is a pickle and is never opened), and every size is checked
before it is read: the header at most MAX_HEADER bytes and within the file, every tensor's
bytes (dtype size x elements) exactly its `data_offsets` span, the spans tiling the data
(no overlap, no hole: the format's rule).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from chipforge.errors import WorkloadError
from chipforge.userfile import load_json, note_input

MAX_HEADER = 100 * 2**20  # safetensors' own limit (100 MB)
MAX_SHARDS = 10_000
# safetensors dtype -> bytes per element
DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
SHARD_NAME = re.compile(r"^[\w.\-]+\.safetensors$")  # a file in the folder, no path


@dataclass
class Checkpoint:
    """Parameter elements by dtype over every tensor of the checkpoint, and its files."""

    params: int = 0
    dtypes: dict[str, int] = field(default_factory=dict)  # safetensors dtype -> elements
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"params": self.params, "dtypes": dict(self.dtypes), "files": list(self.files)}


def _bad(path: Path, why: str) -> WorkloadError:
    return WorkloadError(
        f"`workload` {path.name} is not a readable safetensors file ({why}); chipforge reads "
        "its header only"
    )


def header(path: Path) -> dict:
    """The JSON header of one safetensors file, its sizes checked before reading."""
    note_input(path, "model weights")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise _bad(path, "shorter than its 8-byte header length")
            n = int.from_bytes(raw, "little")
            if n > MAX_HEADER or n + 8 > size:
                raise _bad(path, f"a {n}-byte header, past {min(MAX_HEADER, size - 8)} bytes")
            text = f.read(n)
    except OSError as e:
        raise WorkloadError(f"`workload` {path.name} cannot be read: {e.strerror}") from None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise _bad(path, "its header is not JSON") from None
    if not isinstance(doc, dict):
        raise _bad(path, "its header is not a JSON object")
    data = size - 8 - n
    for name, meta in doc.items():
        if name == "__metadata__":
            continue
        ok = isinstance(meta, dict) and isinstance(meta.get("dtype"), str)
        ok = ok and meta["dtype"] in DTYPE_BYTES  # a list or table as dtype: no TypeError
        shape, span = (meta.get("shape"), meta.get("data_offsets")) if ok else (None, None)
        ok = ok and isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)
        ok = ok and isinstance(span, list) and len(span) == 2
        ok = ok and all(type(x) is int for x in span) and 0 <= span[0] <= span[1] <= data
        if not ok or (span[1] - span[0]) != DTYPE_BYTES[meta["dtype"]] * math.prod(shape):
            raise _bad(path, f"tensor {name[:80]!r} has a malformed or inconsistent entry")
    # the format's rule: the tensors tile the data exactly, no overlap and no hole (a header
    # whose tensors all share one span could claim any parameter count from a small file)
    end = 0
    for start, stop in sorted(m["data_offsets"] for k, m in doc.items() if k != "__metadata__"):
        if start != end:
            why = f"overlap at byte {start}" if start < end else f"leave bytes {end}-{start} out"
            raise _bad(path, f"its tensors {why}")
        end = stop
    if end != data:
        raise _bad(path, f"its tensors cover {end} of its {data} data bytes")
    return doc


def read_folder(folder: Path) -> Checkpoint | None:
    """The checkpoint of a model folder (`model.safetensors`, or the shards its
    `model.safetensors.index.json` names); None when it has neither."""
    index, single = folder / "model.safetensors.index.json", folder / "model.safetensors"
    if index.is_file():
        doc = load_json(index, what="`workload`", error=WorkloadError)
        weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
        if not isinstance(weight_map, dict):
            raise WorkloadError(f"`workload` {index.name} has no weight_map object")
        shards = sorted({str(v) for v in weight_map.values()})
        bad = next((s for s in shards if not SHARD_NAME.match(s)), None)
        if bad is not None or len(shards) > MAX_SHARDS:
            raise WorkloadError(
                f"`workload` {index.name}: shard {str(bad)[:80]!r} is not a .safetensors file "
                "name in the folder"
                if bad is not None
                else f"`workload` {index.name} names {len(shards)} shards (at most {MAX_SHARDS})"
            )
        files = [folder / s for s in shards]
    elif single.is_file():
        files = [single]
    else:
        return None
    out = Checkpoint()
    for path in files:
        if not path.is_file():
            raise WorkloadError(f"`workload` {path.name}, named in the index, does not exist")
        for name, meta in header(path).items():
            if name == "__metadata__":
                continue
            count = math.prod(meta["shape"])
            out.params += count
            out.dtypes[meta["dtype"]] = out.dtypes.get(meta["dtype"], 0) + count
        out.files.append(path.name)
    return out
