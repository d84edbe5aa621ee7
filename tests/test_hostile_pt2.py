"""Hostile .pt2 files: a model file never runs code, never exhausts memory, never tracebacks.

Each archive is a real `torch.export.save` of a tiny module, then tampered with: a pickle whose
`__reduce__` creates a marker file is put where torch's loader would unpickle it (a weight or
constant marked `use_pickle`, an opaque object, the legacy layouts, the sample inputs). Every
command that takes a model file runs in a subprocess and must leave no marker, print at most
3 lines on stderr with no traceback, and exit 2 where it refuses (the cost path reads the
graph's JSON only, so it costs a file whose weights are pickled: exit 0, nothing unpickled).
`--trust-pickle` is what would run the pickle: the test checks that it does, and warns.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

SRC = str(Path(__file__).resolve().parents[1] / "src")
CHIP = "forge-n3"
# runs the CLI in this child and writes its peak RSS (KiB) to $RSS_OUT. VmHWM is this process's
# own high-water mark; ru_maxrss would carry over the parent's (a big pytest process) across the
# fork and exec that start the child.
RUN = """
import os, resource, sys
from chipforge.cli import main
sys.argv = ["chipforge", *sys.argv[1:]]
try:
    main()
    code = 0
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
try:
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(os.environ["RSS_OUT"], "w") as f:
    f.write(str(peak))
sys.exit(code)
"""


class Marker:
    """Unpickling this creates the file `path` (what an attacker's __reduce__ would do)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 4)
        self.register_buffer("shift", torch.ones(4))

    def forward(self, x):
        return torch.relu(self.fc(x)) + self.shift


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pt2") / "tiny.pt2"
    torch.manual_seed(0)
    torch.export.save(torch.export.export(Tiny().eval(), (torch.randn(2, 8),)), str(path))
    return path


def rewrite(src: Path, dst: Path, edit=None, add: dict | None = None, drop=()) -> Path:
    """A copy of the archive: `edit(name, bytes) -> bytes` on each member, `add` new members
    (by name under the archive's folder), `drop` members whose name ends so."""
    with zipfile.ZipFile(src) as z:
        prefix = z.namelist()[0].split("/")[0] + "/"
        with zipfile.ZipFile(dst, "w") as out:
            for name in z.namelist():
                if name.endswith(tuple(drop)) and drop:
                    continue
                data = z.read(name)
                out.writestr(name, edit(name, data) if edit else data)
            for name, data in (add or {}).items():
                out.writestr(prefix + name, data)
    return dst


def edit_json(suffix: str, change):
    def edit(name: str, data: bytes) -> bytes:
        if not name.endswith(suffix):
            return data
        doc = json.loads(data)
        change(doc)
        return json.dumps(doc).encode()

    return edit


def cli(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, int]:
    """The CLI in a child process; (the run, its peak RSS in bytes)."""
    rss = tmp_path / "rss"
    env = {**os.environ, "PYTHONPATH": SRC, "RSS_OUT": str(rss)}
    run = subprocess.run(
        [sys.executable, "-c", RUN, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    return run, int(rss.read_text()) * 1024 if rss.exists() else 0


def commands(path: Path) -> dict[str, list[str]]:
    costed = f"{path},dtype=bf16"
    return {
        "evaluate": ["evaluate", "--chip", CHIP, "--workload", costed, "--json"],
        "compile": ["compile", "--chip", CHIP, "--workload", costed, "--json"],
        "functional": ["simulate", "--chip", CHIP, "--workload", str(path), "--functional"],
    }


def check(tmp_path: Path, path: Path, marker: Path, expect: dict[str, int], needle: str = ""):
    """Each command exits as `expect` says, with no marker and no traceback; refusals are
    one line (at most 3) that contains `needle`."""
    for command, code in expect.items():
        run, _ = cli(tmp_path, *commands(path)[command])
        assert not marker.exists(), (command, "a pickle ran")
        assert run.returncode == code, (command, run.stderr)
        assert "Traceback" not in run.stderr, (command, run.stderr)
        assert len(run.stderr.strip().splitlines()) <= 3, (command, run.stderr)
        if code == 2:
            assert needle in run.stderr, (command, run.stderr)


def _set_pickled(doc, fqn, path_name, meta=True):
    entry = doc["config"].setdefault(fqn, {"is_param": False, "tensor_meta": None})
    entry.update(path_name=path_name, use_pickle=True)
    if not meta:
        entry["tensor_meta"] = None


def _pickled_weight(base: Path, tmp_path: Path, marker: Path) -> Path:
    """`fc.weight` stored as a pickle (use_pickle in the weight config) that makes `marker`."""
    evil = pickle.dumps(Marker(marker))
    change = edit_json(
        "model_weights_config.json", lambda d: _set_pickled(d, "fc.weight", "weight_0")
    )
    return rewrite(
        base,
        tmp_path / "weight.pt2",
        edit=lambda name, data: evil if name.endswith("weights/weight_0") else change(name, data),
    )


def test_pickled_weight_never_runs_and_functional_names_trust_pickle(tmp_path, base):
    marker = tmp_path / "pwned"
    path = _pickled_weight(base, tmp_path, marker)
    check(tmp_path, path, marker, {"evaluate": 0, "compile": 0})  # the graph is JSON
    check(tmp_path, path, marker, {"functional": 2}, "--trust-pickle")


def test_trust_pickle_is_what_unpickles_and_it_warns(tmp_path, base):
    """The hostile archive is real: with --trust-pickle torch.load runs its pickle."""
    marker = tmp_path / "pwned"
    path = _pickled_weight(base, tmp_path, marker)
    run, _ = cli(tmp_path, *commands(path)["functional"], "--trust-pickle")
    assert marker.exists()
    assert "warning: --trust-pickle" in run.stderr.splitlines()[0]
    run, _ = cli(tmp_path, *commands(base)["evaluate"], "--trust-pickle")
    assert run.returncode == 0 and run.stderr.startswith("warning: --trust-pickle")
    assert len(run.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("kind", ["tensor", "opaque"])
def test_pickled_or_opaque_constant_is_refused(tmp_path, base, kind):
    marker = tmp_path / "pwned"
    name = "tensor_constant_0" if kind == "tensor" else "opaque_obj_0"
    change = edit_json(
        "model_constants_config.json",
        lambda d: _set_pickled(d, "c_evil", name, meta=kind == "tensor"),
    )
    path = rewrite(
        base,
        tmp_path / f"{kind}.pt2",
        edit=change,
        add={f"data/constants/{name}": pickle.dumps(Marker(marker))},
    )
    check(tmp_path, path, marker, {"functional": 2}, "--trust-pickle")


def test_legacy_layouts_are_refused(tmp_path, base):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(Marker(marker))
    with zipfile.ZipFile(base) as z:
        program = z.read(next(n for n in z.namelist() if n.endswith("models/model.json")))
    old = tmp_path / "old.pt2"  # torch < 2.6: serialized_*.pt beside the program's JSON
    with zipfile.ZipFile(old, "w") as z:
        z.writestr("serialized_exported_program.json", program)
        for part in ("state_dict", "constants", "example_inputs"):
            z.writestr(f"serialized_{part}.pt", evil)
    check(tmp_path, old, marker, {"evaluate": 2, "functional": 2}, "--trust-pickle")
    # the newer layout with its legacy pickled weights file
    mixed = rewrite(base, tmp_path / "mixed.pt2", add={"data/weights/model.pt": evil})
    check(tmp_path, mixed, marker, {"functional": 2}, "legacy layout")


def test_tampered_sample_inputs_are_never_read(tmp_path, base):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(Marker(marker))
    path = rewrite(
        base,
        tmp_path / "inputs.pt2",
        edit=lambda name, data: evil if "sample_inputs" in name else data,
    )
    check(tmp_path, path, marker, {"evaluate": 0, "functional": 0})


def test_unknown_schema_and_keys_are_one_line_errors(tmp_path, base):
    marker = tmp_path / "pwned"

    def major(doc):
        doc["schema_version"]["major"] = 9

    path = rewrite(base, tmp_path / "v9.pt2", edit=edit_json("models/model.json", major))
    check(tmp_path, path, marker, {"evaluate": 2, "compile": 2, "functional": 2}, "schema")

    def key(doc):
        doc["graph_module"]["graph"]["nodes"][0]["payload"] = "x"

    path = rewrite(base, tmp_path / "key.pt2", edit=edit_json("models/model.json", key))
    check(tmp_path, path, marker, {"evaluate": 2}, "unknown node key 'payload'")

    def target(doc):  # a torch function that is not an aten op: never resolved or called
        doc["graph_module"]["graph"]["nodes"][0]["target"] = "torch.load"

    path = rewrite(base, tmp_path / "target.pt2", edit=edit_json("models/model.json", target))
    check(tmp_path, path, marker, {"evaluate": 2, "functional": 2}, "torch.load")


def _deflated_zeros(z: zipfile.ZipFile, name: str, total: int) -> None:
    """A member of `total` zeros, deflated (~1000:1), written without compressing them all:
    one 16 MiB block after a full flush repeats byte for byte. Its CRC is not set (the
    archive is refused before anything is inflated)."""
    chunk = 2**24
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = co.compress(bytes(chunk)) + co.flush(zlib.Z_FULL_FLUSH)
    stream = block * (total // chunk) + co.flush()
    z.writestr(zipfile.ZipInfo(name), stream)  # stored; the header says deflated below
    info = z.getinfo(name)
    info.compress_type, info.file_size = zipfile.ZIP_DEFLATED, total
    z.fp.seek(info.header_offset)
    z.fp.write(info.FileHeader(zip64=False))  # the same length: sizes fit 32 bits
    z.fp.seek(0, 2)


def test_zip_bomb_is_refused_from_declared_sizes(tmp_path, base):
    """~3 MB expanding to 3 GiB (as model.json, then as a weight), and a member whose stream
    runs past the size it declares: refused before reading, peak RSS under 2 GB."""
    marker = tmp_path / "pwned"
    bomb = tmp_path / "bomb.pt2"
    with zipfile.ZipFile(bomb, "w") as z:
        _deflated_zeros(z, "bomb/models/model.json", 3 * 2**30)
    assert bomb.stat().st_size < 4 * 2**20
    for command in ("evaluate", "functional"):
        run, rss = cli(tmp_path, *commands(bomb)[command])
        assert run.returncode == 2 and "zip bomb" in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1 and rss < 2 * 2**30, rss
    weight = rewrite(base, tmp_path / "weight.pt2", drop=("data/weights/weight_0",))
    with zipfile.ZipFile(weight, "a") as z:
        _deflated_zeros(z, "tiny/data/weights/weight_0", 3 * 2**30)
    check(tmp_path, weight, marker, {"functional": 2}, "zip bomb")

    # a member that declares 4 KiB and inflates to 64 MiB: read with a bound, refused
    liar = rewrite(base, tmp_path / "liar.pt2", drop=("models/model.json",))
    with zipfile.ZipFile(liar, "a") as z:
        _deflated_zeros(z, "tiny/models/model.json", 64 * 2**20)
    data = bytearray(liar.read_bytes())
    central = data.rfind(b"tiny/models/model.json") - 46  # its central directory entry
    assert data[central : central + 4] == b"PK\x01\x02"
    data[central + 24 : central + 28] = struct.pack("<I", 4096)  # uncompressed size
    liar.write_bytes(bytes(data))
    run, rss = cli(tmp_path, *commands(liar)["evaluate"])
    assert run.returncode == 2 and "not a readable torch.export program" in run.stderr
    assert "Traceback" not in run.stderr and rss < 2 * 2**30


def test_functional_run_is_sized_before_any_weight_is_read(tmp_path, base):
    """A graph whose input says 2^40 rows: the functional run's memory, estimated from the
    JSON's shapes, is over the budget: one line, before a weight is read or torch imported."""

    def huge(doc):
        for meta in doc["graph_module"]["graph"]["tensor_values"].values():
            if meta["sizes"] and meta["sizes"][0] == {"as_int": 2}:
                meta["sizes"][0] = {"as_int": 2**40}

    path = rewrite(base, tmp_path / "huge.pt2", edit=edit_json("models/model.json", huge))
    run, rss = cli(tmp_path, *commands(path)["functional"])
    assert run.returncode == 2 and "memory budget" in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and rss < 2**30


ODD_VALUES = [
    None,
    0,
    -1,
    2**70,
    1.5,
    "x",
    [],
    {},
    [1],
    True,
    {"as_int": -3},
    {"as_expr": {"expr_str": "__import__('builtins').open('pwned', 'w')"}},
    "__import__('builtins').open('pwned', 'w')",
    "torch.ops.aten.from_file.default",
    "_operator.call",
]


def _paths(o, path=()):
    yield path
    items = o.items() if isinstance(o, dict) else enumerate(o) if isinstance(o, list) else ()
    for k, v in items:
        yield from _paths(v, (*path, k))


def test_mutated_archives_only_raise_one_line_errors(tmp_path, base, monkeypatch):
    """300 seeded mutations of the graph JSON and the weight config (a key dropped, a value
    swapped for an odd one, up to 3 at once): both readers raise only chipforge's one-line
    errors (never KeyError, StopIteration, ...), and nothing ever runs the odd strings."""
    import copy
    import random

    from chipforge.errors import ChipforgeError
    from chipforge.sim.pt2_module import load
    from chipforge.workload import load_pt2

    with zipfile.ZipFile(base) as z:
        members = {n: z.read(n) for n in z.namelist()}
    docs = {
        n: json.loads(d) for n, d in members.items() if n.endswith(("model.json", "config.json"))
    }
    monkeypatch.chdir(tmp_path)  # where an evaluated 'pwned' would appear
    rng = random.Random(0)
    for i in range(300):
        name = rng.choice(sorted(docs))
        doc = copy.deepcopy(docs[name])
        paths = [p for p in _paths(doc) if p]
        for path in rng.sample(paths, k=min(len(paths), rng.randint(1, 3))):
            parent = doc
            try:
                for key in path[:-1]:
                    parent = parent[key]
                if rng.random() < 0.3 and isinstance(parent, dict):
                    del parent[path[-1]]
                else:
                    parent[path[-1]] = rng.choice(ODD_VALUES)
            except (KeyError, IndexError, TypeError):
                pass  # an earlier mutation removed or replaced this path
        path = tmp_path / f"m{i}.pt2"
        with zipfile.ZipFile(path, "w") as z:
            for n, d in members.items():
                z.writestr(n, json.dumps(doc).encode() if n == name else d)
        for read, args in ((load_pt2, {"dtype": "bf16"}), (load, {"dims": {}})):
            try:
                read(path, **args)
            except ChipforgeError as e:
                assert "\n" not in str(e), (i, str(e))
    assert not Path("pwned").exists() and not (tmp_path / "pwned").exists()


def test_the_unpickling_lines_check_the_trust_flag_themselves(tmp_path):
    """The two places that unpickle (torch.export.load, and torch.load of a pickled archive
    entry) refuse on their own without the trust flag, not only through their callers' checks:
    neither the file nor its pickle is ever opened."""
    import io
    from types import SimpleNamespace

    from chipforge.errors import WorkloadError
    from chipforge.sim import pt2_module
    from chipforge.workload import torch_import

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    bad = tmp_path / "m.pt2"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("m/data/weights/w0", pickle.dumps(Evil()))
    with pytest.raises(WorkloadError, match="--trust-pickle"):
        torch_import.load_exported(bad, trust_pickle=False)
    archive = SimpleNamespace(path=bad, prefix="m/")
    meta = {"path_name": "w0", "use_pickle": True}
    with zipfile.ZipFile(bad) as z, pytest.raises(WorkloadError, match="--trust-pickle"):
        pt2_module._tensor(io, z, archive, "weights", "w", meta, {}, trust=False)
    assert not marker.exists()
