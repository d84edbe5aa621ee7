"""What each studio page shows, from its form values, through the public API (`chipforge as cf`).

A form value is text as typed ("1.4 GHz"); the chip's fields are checked by the same spec models
a chip TOML is (`chipforge.spec.loader.chip_from_dict`), so an error names the same field. No
path on the server comes from the browser: a chip is a preset picked from the list or an
uploaded file, which is kept under a digest of its bytes in a folder of our own and read back by
the same bounded loaders as a file on the command line.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import hashlib
import re
import shutil
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import chipforge as cf
from chipforge.atomic import atomic_write_bytes
from chipforge.cluster import serve_options, train_options
from chipforge.cluster.memory import RECOMPUTE
from chipforge.errors import ChipforgeError
from chipforge.spec.loader import chip_from_dict, preset_names, problems
from chipforge.spec.models import ChipSpec
from chipforge.units import fmt
from chipforge.userfile import MAX_TEXT_BYTES
from chipforge.workload.config import model_names

H100 = "h100"
DEFAULT_CHIP = "forge-n3"
DEFAULT_VS = ("h100", "b200", "tpu-v7")


@dataclass(frozen=True)
class Field:
    """One editable chip field: its form id, label, place in the chip dict and how it shows."""

    id: str
    label: str
    path: tuple  # keys into ChipSpec.model_dump() (a memory level or link by its index)
    dimension: str | None = None  # a units.fmt dimension; None: shown as is
    binary: bool = False
    help: str = ""
    optional: bool = False  # blank: left out of the chip (the spec's default)
    section: str = "chip"


# memory levels and links the form shows (the presets have 2-4 levels and 1 link): a section
# with a name is one of the chip's, one whose name is cleared is removed; a chip TOML with more
# keeps the ones past these unchanged
LEVELS, LINKS = 6, 3
LISTS = ("memory", "links")
FLAG = "true or false"


def _level(i: int) -> tuple[Field, ...]:
    pre, sec = ("hbm", "off-chip memory") if i == 0 else (f"mem{i}", f"memory level {i}")
    path = ("memory", i)
    fields = (
        Field(f"{pre}-name", "name", (*path, "name"), section=sec,
              help="HBM3E, LPDDR5X, ... (sets its energy)" if i == 0
              else "type one to add the level, clear it to remove it"),
        Field(f"{pre}-kind", "kind", (*path, "kind"), section=sec,
              help="hbm or dram" if i == 0 else "sram or cache"),
        Field(f"{pre}-capacity", "capacity", (*path, "capacity"), "bytes", i > 0,
              section=sec, help="per core when per core is true"),
        Field(f"{pre}-bandwidth", "bandwidth", (*path, "bandwidth"), "bandwidth", section=sec,
              help="towards the cores, whole chip"),
        Field(f"{pre}-per-core", "per core", (*path, "per_core"), optional=True, section=sec,
              help=f"{FLAG}; blank: false"),
        Field(f"{pre}-holds", "holds activations", (*path, "holds_activations"), optional=True,
              section=sec, help=f"{FLAG}; blank: false"),
        Field(f"{pre}-energy", "energy per byte", (*path, "energy_per_byte"), "energy_per_byte",
              optional=True, section=sec, help="blank: the technology's default"),
    )  # fmt: skip
    if i == 0:
        fields += (Field("hbm-stacks", "HBM stacks", (*path, "stacks"), optional=True,
                         section=sec, help="blank: the cheapest that fit"),
                   Field("hbm-reserved", "runtime reserve", (*path, "runtime_reserved"), "bytes",
                         True, optional=True, section=sec,
                         help="held from programs; blank: TPU 0.25 GiB, else 3 GiB"))  # fmt: skip
    return fields


def _link(i: int) -> tuple[Field, ...]:
    pre, sec = ("link", "chip-to-chip link") if i == 0 else (f"link{i}", f"link {i}")
    path = ("links", i)
    return (
        Field(f"{pre}-name", "name", (*path, "name"), section=sec,
              help="NVLink, ICI, ...; clear it to remove the link"),
        Field(f"{pre}-bandwidth", "bandwidth", (*path, "bandwidth"), "bandwidth", section=sec,
              help="per chip, both directions"),
        Field(f"{pre}-ports", "ports", (*path, "ports"), optional=True, section=sec,
              help="blank: 1"),
        Field(f"{pre}-latency", "latency", (*path, "latency"), "time", optional=True,
              section=sec, help="per message; blank: 1 us"),
    )  # fmt: skip


FIELDS = (
    Field("name", "name", ("name",), help="the chip's name in every output"),
    Field("family", "family", ("family",),
          help="nvidia-gpu, amd-gpu, google-tpu, forge, asic (perf calibration)"),
    Field("vendor", "vendor", ("vendor",)),
    Field("year", "year", ("year",), help="first volume shipment"),
    Field("node", "process node", ("node",), help="n28 ... n2"),
    Field("clock", "clock", ("clock",), "frequency"),
    Field("sustained-clock", "sustained clock", ("sustained_clock",), "frequency",
          optional=True, help="power-limited, long matrix work; blank: clock"),
    Field("cores", "cores", ("cores",), help="SMs, CUs or TensorCores"),
    Field("physical-cores", "cores on the die(s)", ("physical_cores",), optional=True,
          help="enabled or not; blank: cores"),
    Field("dies", "compute dies", ("dies",)),
    Field("tdp", "TDP", ("tdp",), "power"),
    Field("idle-power", "idle power", ("idle_power",), "power", optional=True,
          help="blank: 10% of TDP"),
    Field("mla-decode-rate", "MLA decode rate", ("mla_decode_rate",), "flop_rate",
          optional=True, help="a measured absorbed-MLA decode kernel; blank: the engine's"),
    Field("moe-decode-bandwidth", "MoE decode weight stream", ("moe_decode_bandwidth",),
          "bandwidth", optional=True,
          help="a measured grouped-GEMM decode kernel; blank: the engine's"),
    Field("gemm-stream-bandwidth", "skinny FP8 GEMM stream", ("gemm_stream_bandwidth",),
          "bandwidth", optional=True,
          help="a measured library rate for decode-sized FP8 GEMMs; blank: memory_frac"),
    Field("notes", "notes", ("notes",)),
    Field("matrix-rows", "array rows", ("matrix", "rows"), section="matrix unit"),
    Field("matrix-cols", "array columns", ("matrix", "cols"), section="matrix unit"),
    Field("matrix-count", "units per core", ("matrix", "count"), section="matrix unit"),
    Field("matrix-dataflow", "dataflow", ("matrix", "dataflow"), section="matrix unit",
          help="weight-stationary, output-stationary, tensor-core"),
    Field("matrix-macs", "MACs per cycle per unit", ("matrix", "macs_per_cycle"),
          section="matrix unit", help="by dtype: bf16=65536, fp8=131072"),
    Field("matrix-double-buffered", "double buffered", ("matrix", "double_buffered"),
          section="matrix unit", help=FLAG),
    Field("matrix-block-scaled", "block-scaled formats", ("matrix", "block_scaled"),
          optional=True, section="matrix unit",
          help="multiplied natively: mxfp8, mxfp6, mxfp4, nvfp4; blank: none"),
    Field("vector-count", "units per core", ("vector", "count"), section="vector unit"),
    Field("vector-flops", "FLOP per cycle per unit", ("vector", "flops_per_cycle"),
          section="vector unit", help="fp32, FMA = 2"),
    Field("vector-trans", "transcendentals per cycle per unit",
          ("vector", "transcendentals_per_cycle"), section="vector unit", help="exp, rsqrt"),
    *(f for i in range(LEVELS) for f in _level(i)),
    *(f for i in range(LINKS) for f in _link(i)),
)  # fmt: skip
SECTIONS = tuple(dict.fromkeys(f.section for f in FIELDS))
FIELD_IDS = tuple(f.id for f in FIELDS)

# ---- uploads: bytes kept under their digest, never a path the browser names -----------------

_UPLOAD_DIR: Path | None = None


@dataclass
class _Kept:
    """An upload on disk and, once a link has asked for it, its compressed text."""

    path: Path
    packed: str | None = None
    used: float = 0.0  # time.monotonic() of its last use (`keep`, `_kept`)


# key -> its file, least recently used first (a plain dict keeps insertion order)
_UPLOADS: dict[str, _Kept] = {}
_LOCK = threading.Lock()  # the server answers requests in threads


def _upload_dir() -> Path:
    global _UPLOAD_DIR
    if _UPLOAD_DIR is None:
        _UPLOAD_DIR = Path(tempfile.mkdtemp(prefix="chipforge-studio-"))
        atexit.register(shutil.rmtree, _UPLOAD_DIR, ignore_errors=True)
    return _UPLOAD_DIR


def save_upload(contents: str, kind: str, limit: int = MAX_TEXT_BYTES) -> str:
    """A dcc.Upload `contents` ("data:...;base64,...") kept as a `kind` file ("chip",
    "config" or "state"): its key (the SHA-256 of the bytes). Refused past `limit` bytes (the
    text-file size cap) before decoding."""
    if not isinstance(contents, str) or "," not in contents:
        raise ChipforgeError(f"the uploaded {kind} file is empty or not a file")
    b64 = contents.split(",", 1)[1]
    if len(b64) * 3 // 4 > limit:
        raise ChipforgeError(
            f"the uploaded {kind} file is over {limit / 2**20:g} MiB; such inputs are "
            "capped there (is it the right file?)"
        )
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ChipforgeError(f"the uploaded {kind} file is not valid base64 data") from None
    return keep(data, kind)


MAX_UPLOADS = 1000  # files kept (uploads and files opened from shared URLs); older ones go
# a file used this recently may still be read by the request that asked for its path (the
# requests run in threads and read it after the lock is released): it is never removed
IN_USE_S = 600.0


def keep(data: bytes, kind: str) -> str:
    """`data` kept as a `kind` file in the studio's folder, under its digest: its key. At most
    MAX_UPLOADS files (each under the text cap), so requests cannot fill the disk: past that
    the least recently used one is removed (a link naming it by key then opens the default),
    unless it was used in the last IN_USE_S seconds (then every file was, and the upload is
    refused: a request may still be reading any of them). Written whole (temp file + rename),
    so no request reads a part."""
    key = hashlib.sha256(data).hexdigest()[:32]
    with _LOCK:
        now = time.monotonic()
        if key in _UPLOADS:
            _UPLOADS[key] = _UPLOADS.pop(key)  # used now: the last to go
            _UPLOADS[key].used = now
            return key
        while len(_UPLOADS) >= MAX_UPLOADS:
            oldest = next(iter(_UPLOADS))
            if now - _UPLOADS[oldest].used < IN_USE_S:
                raise ChipforgeError(
                    f"the studio holds {len(_UPLOADS):,} files, each used in the last "
                    f"{IN_USE_S:g} s: try again later"
                )
            shutil.rmtree(_UPLOADS.pop(oldest).path.parent, ignore_errors=True)
        folder = _upload_dir() / f"{kind}-{key}"
        folder.mkdir(exist_ok=True)
        path = folder / {"chip": "chip.toml", "state": "state.json"}.get(kind, "config.json")
        atomic_write_bytes(path, data)
        _UPLOADS[key] = _Kept(path, used=now)
    return key


# An uploaded file travels in a shared URL compressed (zlib, base64url) when it fits in this
# many characters of the query; a larger one is named by its key, which only the studio that
# received it knows (the saved state file carries its content instead).
URL_FILE_MAX = 4096
STATE_MAX_BYTES = 2**20  # a saved state file: its query and its uploaded files' text


def share(key: str, kind: str) -> dict[str, str]:
    """The query parameters that reopen upload `key` (a `kind` file): its compressed content
    (`chipz`, `configz`) when small enough, else its key (`chipkey`, `configkey`). Compressed
    the first time a link asks for it (the key is the content's digest: it never changes)."""
    kept = _kept(key)
    if kept.packed is None:
        packed = base64.urlsafe_b64encode(zlib.compress(kept.path.read_bytes(), 9))
        kept.packed = packed.decode().rstrip("=")
    return {f"{kind}z": kept.packed} if len(kept.packed) <= URL_FILE_MAX else {f"{kind}key": key}


def unshare(query: dict, kind: str) -> str | None:
    """The upload key of a `kind` file a query names (compressed content or a key this studio
    holds), read back by the bounded loader of its kind; None when it names none. A bad one is
    a one-line ChipforgeError."""
    packed, key = query.get(f"{kind}z"), query.get(f"{kind}key")
    if packed:
        if len(packed) > URL_FILE_MAX:
            raise ChipforgeError(f"the shared {kind} file is over {URL_FILE_MAX} characters")
        try:
            raw = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))
            z = zlib.decompressobj()
            data = z.decompress(raw, MAX_TEXT_BYTES + 1)  # a bomb stops at the cap
        except (binascii.Error, ValueError, zlib.error):
            raise ChipforgeError(f"the shared {kind} file in the link is damaged") from None
        if len(data) > MAX_TEXT_BYTES or z.unconsumed_tail:
            raise ChipforgeError(f"the shared {kind} file is over {MAX_TEXT_BYTES} bytes")
        key = keep(data, kind)
    elif not key or str(key) not in _UPLOADS:
        return None
    _check(key, kind)
    return key


def _check(key: str, kind: str) -> None:
    (cf.load_chip if kind == "chip" else cf.load_model)(upload_path(key))


def state_files(base: str, config: str | None) -> dict[str, str]:
    """The uploaded files a state uses, by kind: their text (for a saved state file)."""
    out = {}
    kind, _, key = str(base).partition(":")
    for k, key_ in (("chip", key if kind == "upload" else None), ("config", config)):
        if key_:
            out[k] = upload_path(key_).read_text(encoding="utf-8")
    return out


def restore_files(files) -> dict[str, str]:
    """A saved state file's `files` ({kind: text}) kept again and read back by the bounded
    loaders: the query parameters naming them (`chipkey`, `configkey`)."""
    if files is None:
        return {}
    if not isinstance(files, dict) or set(files) - {"chip", "config"}:
        raise ChipforgeError("the state file's `files` must map chip/config to their text")
    out = {}
    for kind, text in files.items():
        if not isinstance(text, str) or len(text.encode()) > MAX_TEXT_BYTES:
            raise ChipforgeError(f"the state file's `files.{kind}` must be text of a {kind} file")
        key = keep(text.encode(), kind)
        _check(key, kind)
        out[f"{kind}key"] = key
    return out


def load_state(path: Path):
    """A saved state file, through the bounded JSON loader."""
    from chipforge.userfile import load_json

    return load_json(path, what="state file")


def _kept(key: str) -> _Kept:
    with _LOCK:
        kept = _UPLOADS.pop(str(key), None)
        if kept is not None:
            _UPLOADS[str(key)] = kept  # used now: the last to go
            kept.used = time.monotonic()
    if kept is None:
        raise ChipforgeError("the uploaded file is no longer on the server; upload it again")
    return kept


def upload_path(key: str) -> Path:
    return _kept(key).path


# ---- chip ---------------------------------------------------------------------------------


def base_chip(base: str):
    """The chip a form starts from: "preset:NAME" or "upload:KEY" (anything else refused)."""
    kind, _, name = str(base).partition(":")
    if kind == "preset":
        if name not in preset_names():
            raise ChipforgeError(f"`chip` must be a preset, not {name!r}")
        return cf.load_chip(name)
    if kind == "upload":
        return cf.load_chip(upload_path(name))
    raise ChipforgeError(f"unknown chip source {base!r}")


def _get(dump: dict, path: tuple):
    node = dump
    for key in path:
        if isinstance(node, (list, tuple)):
            node = node[key] if key < len(node) else None
        else:
            node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


def _parent(dump: dict, path: tuple) -> dict:
    """The dict holding the field at `path` (a memory level's or link's: build_chip's own)."""
    node = dump
    for key in path[:-1]:
        node = node.setdefault(key, {})
    return node


def show_value(field: Field, value) -> str:
    """A field's value as a person types it ("1.4 GHz", "bf16=65536, fp8=131072")."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if field.dimension and isinstance(value, (int, float)):
        return fmt(float(value), field.dimension, digits=6, binary=field.binary)
    if isinstance(value, float):
        return f"{value:.12g}"  # 16384, not 16384.0
    return str(value)


def form_values(spec) -> dict[str, str]:
    """Every field of `spec`, as the form shows it."""
    dump = _dump(spec)
    return {f.id: show_value(f, _get(dump, f.path)) for f in FIELDS}


def _dump(spec) -> dict:
    return spec.model_dump(mode="json", exclude_none=True)


_PAIR = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=\s*(\S+)\s*$")


def _typed(field: Field, text: str):
    if field.id == "matrix-macs":
        pairs = {}
        for part in text.split(","):
            m = _PAIR.match(part)
            if not m:
                return text  # left to the spec model to name the field
            pairs[m.group(1)] = m.group(2)
        return pairs
    if field.id == "matrix-block-scaled":
        return [p.strip() for p in text.split(",") if p.strip()]
    return text.strip()


def _field_of(message: str) -> str | None:
    """The form field a spec error names (its `dotted.path`), if the form has it."""
    m = re.search(r"`([^`]+)`", message)
    if not m:
        return None
    named = m.group(1)
    for f in FIELDS:
        path = ".".join(map(str, f.path))
        if named == path or named.startswith(path + "."):
            return f.id
    if named in LISTS:  # the levels or links as a whole (off-chip first): the first's name
        return "hbm-name" if named == "memory" else "link-name"
    if named == "(root)":  # a rule between fields: the one it names first
        at = {f.id: re.search(rf"\b{f.path[-1]}\b", message) for f in FIELDS if len(f.path) == 1}
        found = sorted((m_.start(), fid) for fid, m_ in at.items() if m_)
        return found[0][1] if found else None
    return None


def build_chip(base: str, values: dict[str, str]):
    """(ChipSpec or None, {field id: one-line error}) from a base chip and the form's text;
    errors come from the spec models (every bad field, each under its own input), so they read
    as a chip TOML's would. The chip's name is the name field's, as typed (a scenario's rack
    holds a chip by name: an edited chip keeps its base's name until the user gives one). A
    memory level or link section with a name is one of the chip's, in the form's order (a new
    one takes the values typed, the spec's defaults for blank optional fields); one without a
    name is not (a cleared name removes it), its other fields left out."""
    try:
        spec = base_chip(base)
    except ChipforgeError as e:
        return None, {"_": str(e)}
    dump = _dump(spec)
    errors: dict[str, str] = {}
    items = {(k, i): dict(v) for k in LISTS for i, v in enumerate(dump.get(k, ()))}
    filled: dict[tuple, bool] = {}  # (list, index in the form): named
    for f in FIELDS:
        shown = show_value(f, _get(dump, f.path))
        text = values.get(f.id)
        text = shown if text is None else str(text)
        listed = f.path[0] in LISTS
        if listed and f.path[-1] == "name":  # a level or link is there when it is named
            filled[f.path[:2]] = bool(text.strip())
        if text == shown:
            continue  # unchanged: keep the exact value (no rounding through the display)
        parent = items.setdefault(f.path[:2], {}) if listed else _parent(dump, f.path)
        if f.optional and not text.strip():
            parent.pop(f.path[-1], None)
        else:
            parent[f.path[-1]] = _typed(f, text)
    place: dict[str, dict[int, int]] = {}  # list -> {index in the chip: index in the form}
    for k in LISTS:
        kept = [i for i in range(LEVELS if k == "memory" else LINKS) if filled.get((k, i))]
        kept += [i for i in range(len(dump.get(k, ()))) if (k, i) not in filled]  # past the form
        dump[k] = [items[(k, i)] for i in kept]
        place[k] = dict(enumerate(kept))
    try:
        new = ChipSpec.model_validate(dump)
    except ValidationError as err:
        for msg in problems(err, "chip"):  # every bad field, under its own input
            msg = re.sub(r"`(memory|links)\.(\d+)",
                         lambda m: f"`{m[1]}.{place[m[1]].get(int(m[2]), m[2])}", msg)  # fmt: skip
            errors.setdefault(_field_of(msg) or "_", msg)
        return None, errors
    return (None, errors) if errors else (new, {})


def chip_toml(spec) -> str:
    """`spec` as a chip TOML (base SI units), loadable by `chipforge --chip FILE.toml`."""
    dump = _dump(spec)
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    for k, v in dump.items():
        if isinstance(v, dict):
            tables.append((f"[{k}]", v))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            tables += [(f"[[{k}]]", item) for item in v]
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    for head, table in tables:
        lines += ["", head]
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def chip_figures(spec) -> list[tuple[str, str]]:
    """Derived figures of a chip: peak per dtype, balance, die area, unit cost (`cf.cost`)."""
    rows = []
    for d in spec.matrix.macs_per_cycle:
        rows.append((f"peak {d}", fmt(spec.peak_flops(d), "flop_rate")))
    d0 = next(iter(spec.matrix.macs_per_cycle))
    rows.append((f"balance ({d0})", f"{spec.machine_balance(d0):.4g} FLOP per off-chip byte"))
    rows.append(("off-chip memory", f"{fmt(spec.hbm.capacity, 'bytes')} at "
                 f"{fmt(spec.hbm.bandwidth, 'bandwidth')}"))  # fmt: skip
    c = cf.cost(spec).to_dict()
    rows.append(("die area", f"{c['die_area_mm2']:,.0f} mm2 x {c['dies']}"))
    rows.append(("fits the reticle", "yes" if c["fits_reticle"] else "no"))
    rows.append(("unit cost", f"{c['unit_cost_usd']:,.0f} USD"))
    return rows


# ---- run: one workload on the chip and on the chips it is weighed against --------------------


def model_source(preset: str, custom: dict | None = None, upload: str | None = None) -> str:
    """The model head of a workload string: a preset, `llm:custom,...` or an uploaded
    config.json (its path in our own folder)."""
    if upload:
        return str(upload_path(upload))
    if preset == "custom":
        items = []
        for k, v in (custom or {}).items():
            text = str(v if v is not None else "").strip()
            if not text:
                raise ChipforgeError(f"`model.{k}` is required for a custom model; give a number")
            items.append(f"{k}={text}")
        return "llm:custom,name=custom," + ",".join(items)
    if preset not in model_names():
        raise ChipforgeError(f"`model` must be a preset, not {preset!r}")
    return preset


def workload(model: str, phase: str, batch, seq, context) -> str:
    if phase not in ("prefill", "decode"):
        raise ChipforgeError(f"`workload.phase` must be prefill or decode, not {phase!r}")
    text = f"{model},phase={phase},batch={batch}"
    return text + (f",context={context}" if phase == "decode" else f",seq={seq}")


def run(spec, wl: str, vs: list[str]) -> dict:
    """The chip and each of `vs` (presets) on one workload (`cf.evaluate`), with the speed of
    each against the H100 (H100 time / its time)."""
    vs = [v for v in vs if v in preset_names() and v != spec.name]
    results = [cf.evaluate(spec, wl).to_dict()]
    results += [cf.evaluate(v, wl).to_dict() for v in vs]
    ref = next((r for r in results if r["chip"] == H100), None)
    ref_time = ref["time_s"] if ref else cf.evaluate(H100, wl).time_s
    rows = [
        {
            "chip": r["chip"],
            "time": fmt(r["time_s"], "time"),
            "tokens/s": f"{r['tokens_per_s']:,.0f}" if r.get("tokens_per_s") else "",
            "bound": r["bound"],
            "energy": fmt(r["energy_j"], "energy"),
            "vs H100": f"{ref_time / r['time_s']:.3g}x",
        }
        for r in results
    ]
    return {"results": results, "rows": rows, "speed_vs_h100": ref_time / results[0]["time_s"]}


def cycle_layer(spec, model: str, phase: str, batch, seq, context) -> dict:
    """One layer of the workload through the cycle engine and the analytical one (`cf.evaluate`,
    engine="cycle"; about a second), with the cycle run's Perfetto trace events."""
    from chipforge.report.timeline import result_trace_events

    # one layer: the model's own `layers=` (llm:custom fields) gives way, a key is given once
    one = ",".join(p for p in model.split(",") if not p.strip().startswith("layers="))
    wl = workload(one, phase, batch, seq, context) + ",layers=1"
    cyc = cf.evaluate(spec, wl, engine="cycle").to_dict()
    ana = cf.evaluate(spec, wl).to_dict()
    rows = [
        ("workload", cyc["workload"]),
        ("cycle engine", fmt(cyc["time_s"], "time")),
        ("analytical", fmt(ana["time_s"], "time")),
        ("analytical / cycle", f"{ana['time_s'] / cyc['time_s']:.3g}"),
    ]
    return {"rows": rows, "trace": {"traceEvents": result_trace_events([cyc, ana])}}


# ---- cluster, silicon, site -------------------------------------------------------------------


def _positive(name: str, text) -> int:
    try:
        n = int(str(text).strip())
    except ValueError:
        raise ChipforgeError(f"`{name}` must be a whole number, not {text!r}") from None
    from chipforge.cluster.checks import whole

    return whole(n, f"`{name}`", error=ChipforgeError)  # the message train and serve give


def _plan(plan) -> str:
    if isinstance(plan, dict):
        return ", ".join(f"{k}={v}" for k, v in plan.items())
    return str(plan)


# run options the Cluster page offers, each the API's keyword of that name: training's on/off
# options are every switch of `chipforge train` (cluster.train_options, which also checks them
# as a decide scenario's [[workload.train]] keys are)
DTYPES = ("bf16", "fp8", "fp4")
RECOMPUTES = RECOMPUTE  # training's own list (cluster.memory); blank: searched
TRAIN_OPTIONS = train_options.SWITCHES
# plan_serving's switches, as serve's flags (cluster.serve_options; --gqa-kernel is on already)
SERVE_OPTIONS = tuple(k for k in serve_options.SWITCHES if k != "gqa_kernel")


def _options(names, allowed: tuple[str, ...]) -> dict[str, bool]:
    """A page's chosen run options (a list, or the URL's comma-separated text) as keywords."""
    names = names.split(",") if isinstance(names, str) else list(names or ())
    names = [n.strip() for n in names if n and n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ChipforgeError(f"unknown run option {bad[0]!r}: one of {', '.join(allowed)}")
    return dict.fromkeys(names, True)


def _choice(name: str, value, allowed: tuple[str, ...], default: str | None) -> str | None:
    value = str(value or "").strip() or default
    if value is not None and value not in allowed:
        raise ChipforgeError(f"`{name}` must be one of {', '.join(allowed)}, not {value!r}")
    return value


def train(spec, model: str, chips, seq, tp="", pp="", dtype="bf16", recompute="",
          options=()) -> dict:  # fmt: skip
    """The training plan (`cf.plan_training`); `tp`/`pp`/`recompute` blank: searched (slower);
    `options`: TRAIN_OPTIONS turned on."""
    fixed = {k: _positive(k, v) for k, v in (("tp", tp), ("pp", pp)) if str(v or "").strip()}
    run = {"dtype": _choice("dtype", dtype, DTYPES, "bf16"), **_options(options, TRAIN_OPTIONS)}
    rec = _choice("recompute", recompute, RECOMPUTES, None)
    if rec:
        run["recompute"] = rec
    plan = cf.plan_training(
        spec, model, _positive("chips", chips), seq=_positive("seq", seq), **fixed,
        **train_options.parse(run, "training", moe=cf.load_model(model).is_moe),
    ).to_dict()  # fmt: skip
    rows = [
        ("plan", _plan(plan.get("plan"))),
        ("step time", fmt(plan["step_time_s"], "time")),
        ("MFU", f"{plan['mfu']:.1%}"),
        ("tokens/s", f"{plan['tokens_per_s']:,.0f}"),
        (
            "memory per chip",
            f"{fmt(plan['memory_per_chip_bytes'], 'bytes')} of "
            f"{fmt(plan['memory_capacity_bytes'], 'bytes')}",
        ),  # fmt: skip
    ]
    return {"data": plan, "rows": rows}


def serve(spec, model: str, chips, isl, osl, dtype="bf16", options=(), tp="", pp="", ttft="",
          tpot="") -> dict:  # fmt: skip
    """The serving plan (`cf.plan_serving`); `options`: SERVE_OPTIONS turned on; tp, pp (blank:
    searched) and the SLOs ("2 s"; blank: none) read by `serve`'s own parser
    (cluster.serve_options), so the page refuses what the command refuses."""
    run = {"dtype": _choice("dtype", dtype, DTYPES, "bf16"), **_options(options, SERVE_OPTIONS)}
    run |= {k: _positive(k, v) for k, v in (("tp", tp), ("pp", pp)) if str(v or "").strip()}
    run |= {k: str(v).strip() for k, v in (("ttft_slo", ttft), ("tpot_slo", tpot))
            if str(v or "").strip()}  # fmt: skip
    options = serve_options.parse(run, "serving", model=cf.load_model(model))  # its refusals
    plan = cf.plan_serving(
        spec, model, _positive("chips", chips), isl=_positive("isl", isl),
        osl=_positive("osl", osl), **options,
    ).to_dict()  # fmt: skip
    rows = [
        ("plan", _plan(plan.get("plan"))),
        ("throughput", f"{plan['throughput_tokens_per_s']:,.0f} tokens/s"),
        ("TTFT", fmt(plan["ttft_s"], "time")),
        ("TPOT", "-" if plan["tpot_s"] is None else fmt(plan["tpot_s"], "time")),
        ("concurrency", str(plan.get("concurrency"))),
    ]
    return {"data": plan, "rows": rows}


def silicon(spec, node: str | None) -> dict:
    data = cf.cost(spec, node or None).to_dict()
    rows = [
        ("node", data["node"]),
        ("die area", f"{data['die_area_mm2']:,.0f} mm2"),
        ("dies per wafer", str(data["dies_per_wafer"])),
        ("yield", f"{data['yield']:.1%}"),
        ("unit cost", f"{data['unit_cost_usd']:,.0f} USD"),
        ("TDP (model)", fmt(data["tdp_w"], "power")),
    ]
    return {"data": data, "rows": rows}


def by_node(spec) -> dict[str, dict]:
    """Sensitivity to the process node: the same design re-targeted to each node (`cf.cost`):
    die area, unit cost, yield and whether it fits the reticle."""
    from chipforge.spec.nodes import nodes

    out = {}
    for n in nodes():
        try:
            c = cf.cost(spec, n).to_dict()
        except ChipforgeError:
            continue  # a node the design cannot be re-targeted to
        out[n] = {
            "die_area_mm2": c["die_area_mm2"],
            "unit_cost_usd": c["unit_cost_usd"],
            "yield": c["yield"],
            "fits_reticle": c["fits_reticle"],
        }
    return out


def silicon_sensitivity(spec, node: str | None) -> dict:
    """The unit cost at each cost-model input's ends (`cf.cost_sensitivity`, sorted by swing)
    (for `report.plans.cost_tornado`) and its table: each input's range in its unit (its key's
    suffix, as `chipforge cost --sensitivity` shows it)."""
    from chipforge.display import label, show

    given = cf.cost_sensitivity(spec, node or None)
    table = [
        (label(r["knob"]), f"{show(r['knob'], r['low'])} .. {show(r['knob'], r['high'])}",
         f"{show('usd', r['at_low_usd'])} .. {show('usd', r['at_high_usd'])}")
        for r in given
    ]  # fmt: skip
    return {"base_usd": given[0]["base_usd"], "sensitivity": given, "rows": table}


def _total(v) -> float:
    return v["total"] if isinstance(v, dict) else v


def chip_ref(spec, base: str) -> str:
    """A chip as the commands that take a name or a TOML path want it: the preset's name when
    `spec` is that preset unchanged, else a TOML of it kept as an upload is (`keep`: written
    whole before any request sees it, and bounded with the uploads)."""
    kind, _, name = base.partition(":")
    if kind == "preset" and spec == cf.load_chip(name):
        return name
    return str(upload_path(keep(chip_toml(spec).encode(), "chip")))


def site(spec, base: str, power: str) -> dict:
    """A site of the chip at a facility power (`cf.site`)."""
    data = cf.site(chip_ref(spec, base), power)
    rows = [
        ("chips", f"{data['chips']:,}"),
        ("racks", f"{data['racks']:,}"),
        ("facility power", fmt(data["facility_power_w"], "power")),
        ("capex", f"{data['capex_usd']['total'] / 1e9:,.2f} billion USD"),
        ("TCO per year", f"{_total(data['tco_usd_per_year']) / 1e9:,.2f} billion USD"),
        ("TCO per chip-hour", f"{data['tco_usd_per_chip_hour']:,.2f} USD"),
        ("USD per useful PFLOP-hour", f"{data['usd_per_useful_pflop_hour']:,.3f}"),
    ]
    return {"data": data, "rows": rows}


SAMPLES = (256, 1024, 4096)


def decide(spec, base: str, scenario: str | Path | None, use_chip: bool, samples, sobol: bool):
    """Build or buy (`cf.build_or_buy`) on the scenario the studio was started with
    (`--scenario`); with `use_chip`, the built chip is the Chip page's."""
    if not scenario:
        raise ChipforgeError(
            "no scenario: start the studio with --scenario FILE.toml (examples/decide/ has some)"
        )
    if int(samples) not in SAMPLES:
        raise ChipforgeError(f"`samples` must be one of {SAMPLES}, not {samples!r}")
    from chipforge.userfile import load_toml

    path = Path(scenario)
    d = load_toml(path, what="scenario file")
    if use_chip:
        d.setdefault("build", {})["chip"] = chip_ref(spec, base)
    data = cf.build_or_buy(d, samples=int(samples), sobol=bool(sobol), base=path.parent)
    be = data.get("breakeven") or {}
    rows = [
        ("built chip", spec.name if use_chip else str((d.get("build") or {}).get("chip", ""))),
        ("verdict", data["verdict"]),
        ("saving", data["headline_saving"]),
        ("break-even", data["headline_break_even"]),
        ("P(building is cheaper)", f"{data['probability_build_cheaper']:.0%}"),
        ("break-even within the horizon", f"{be.get('probability_within_horizon', 0):.0%}"),
    ]
    if data.get("headline_drivers"):
        rows.append(("drivers", data["headline_drivers"]))
    return {"data": data, "rows": rows}


# ---- sweep: a result store named on the command line --------------------------------------


def sweep_front(space: str | Path | None, store: str | Path | None) -> dict:
    """The store's points ranked by Pareto front (`chipforge sweep show`'s data): objectives,
    counts and rows (front first)."""
    if not space or not store:
        raise ChipforgeError(
            "no sweep: start the studio with --space SPACE.toml --store DIR (a finished "
            "`chipforge sweep`)"
        )
    from chipforge.explore import Store, pareto

    st = Store(store)
    df = st.read()
    objectives = st.meta().get("objectives") or {}
    ranked = pareto(df, objectives).sort_values("pareto", ascending=False, kind="stable")
    rows = [
        {k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
        for r in ranked.to_dict("records")
    ]
    counts = {str(k): int(v) for k, v in df["status"].value_counts().items()}
    data = {"objectives": objectives, "counts": counts, "rows": rows}
    params = [c for c in df.columns if c.startswith("p.")]
    table = [
        [r["id"][:8], "yes" if r.get("pareto") else "", *[r.get(c) for c in params],
         *[_short(r.get(o)) for o in objectives]]
        for r in rows if r.get("pareto")
    ][:30]  # fmt: skip
    head = ["id", "front", *[c.removeprefix("p.") for c in params], *objectives]
    return {"data": data, "rows": table, "head": head}


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def sweep_point(space: str | Path, store: str | Path, x: float, y: float):
    """The chip of the store's point at objective values (x, y) (a click on the Pareto chart):
    the space's base chip with the point's parameters, checked by the spec models."""
    from chipforge.explore import load_space
    from chipforge.explore.evaluate import apply

    data = sweep_front(space, store)["data"]
    xk, yk = list(data["objectives"])[:2]

    def close(a, b) -> bool:
        return isinstance(a, (int, float)) and abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-300)

    row = next((r for r in data["rows"] if close(r.get(xk), x) and close(r.get(yk), y)), None)
    if row is None:
        raise ChipforgeError("that point is not in the store; reload the Sweep page")
    sp = load_space(space)
    params = {k.removeprefix("p."): v for k, v in row.items() if k.startswith("p.")}
    dump = apply(sp.base_dump("json"), params)
    return chip_from_dict(dump, f"sweep point {row['id']}")
