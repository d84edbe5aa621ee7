"""The result store: a folder of Parquet part files, one row per design point.

Each flush writes a new part atomically (`chipforge.atomic`: a temporary file, fsync, then
`os.replace`), so a Ctrl-C or SIGKILL loses at most the unflushed rows, never a finished part,
and a half-written part never appears. Reading merges the parts and keeps the first row of each
point id, so a resumed run recomputes nothing that was stored and stores nothing twice.

A running sweep holds the store's lock (`.lock`: an exclusive `flock`, with the owner's pid
and host written in it), so a second sweep on the same folder is refused instead of mixing or
duplicating rows; the kernel drops the lock when its owner dies, so a SIGKILLed sweep's lock is
simply taken over. A part that cannot be read (truncated, garbage, empty, a folder) is reported
in one warning line and skipped; a resumed sweep moves it aside (`*.damaged`) and runs its
points again, and removes the temporary files a crash left behind.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from chipforge.atomic import atomic_path, atomic_write_bytes, remove_stale_temporaries
from chipforge.errors import ChipforgeError
from chipforge.userfile import load_json, note_input

LOCK = ".lock"
SPACE_JSON = "sweep store's space.json"  # what it is read as, in errors


def _stderr_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class Store:
    def __init__(self, path: str | Path, *, on_warning: Callable[[str], None] | None = None):
        self.path = Path(path)
        self._pending: list[dict] = []
        self._seq = 0
        self._lock_fd: int | None = None
        self._warn = on_warning or _stderr_warning
        self._reported: set[str] = set()

    def parts(self) -> list[Path]:
        return sorted(self.path.glob("part-*.parquet")) if self.path.is_dir() else []

    def open(self, *, resume: bool, meta: dict) -> set[str]:
        """Take the store's lock and prepare the folder; return the ids already stored (resume)
        or refuse to mix runs. `close()` releases the lock."""
        if self.path.exists() and not self.path.is_dir():
            raise ChipforgeError(f"`--store` {str(self.path)!r} is a file; give a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ChipforgeError(
                f"`--store` {str(self.path)!r}: cannot create it ({e.strerror})"
            ) from None
        self._lock()
        try:
            return self._prepare(resume, meta)
        except BaseException:
            self.close()
            raise

    def _prepare(self, resume: bool, meta: dict) -> set[str]:
        meta_path = self.path / "space.json"
        if self.parts() and not resume:
            raise ChipforgeError(
                f"store {str(self.path)!r} already holds results; pass --resume to continue it "
                "or --store to choose an empty folder"
            )
        if resume and meta_path.exists():
            old = self._read_meta(meta_path)
            if old is None or old.get("fingerprint") != meta.get("fingerprint"):
                raise ChipforgeError(
                    f"store {str(self.path)!r} holds a different space"
                    f"{' (its space.json is damaged)' if old is None else ''}; resume with the "
                    "same space file or choose another --store"
                )
        remove_stale_temporaries(self.path)  # ours are gone: we hold the lock
        atomic_write_bytes(meta_path, json.dumps(meta, sort_keys=True, indent=1).encode())
        note_input(meta_path, SPACE_JSON)  # `--out STORE/space.json` is refused before the run
        self._seq = len(self.parts())
        return self.ids()

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return
        lock = self.path / LOCK
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ChipforgeError(
                f"`--store` {str(self.path)!r}: cannot create its lock file ({e.strerror})"
            ) from None
        previous = os.read(fd, 200).decode(errors="replace").strip()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            owner = f" ({previous})" if previous else ""
            raise ChipforgeError(
                f"store {str(self.path)!r} is in use by another sweep{owner}; wait for it to "
                "finish, or choose another --store"
            ) from None
        if previous:
            self._warn(
                f"store {str(self.path)!r}: taking over the lock of a sweep that did not finish "
                f"({previous}, no longer running)"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._lock_fd = fd

    def close(self) -> None:
        """Release the lock (the lock file stays, emptied: an empty lock file is a free one)."""
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)  # closing the last descriptor drops the flock
            self._lock_fd = None

    def _tables(self, columns: list[str] | None = None) -> Iterator:
        """Each readable part as a pyarrow Table; a damaged one is reported and skipped (and
        moved aside when this store is open for a sweep, so its points run again)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        for p in self.parts():
            note_input(p, "sweep store's part")  # an output flag naming it is refused
            try:
                if not p.is_file():  # a folder pyarrow reads as a dataset; a pipe blocks
                    raise OSError(f"{p.name} is not a regular file")
                table = pq.read_table(p, columns=columns)
                if "id" not in table.column_names:
                    raise ValueError("no `id` column")
            except (OSError, ValueError, KeyError, pa.ArrowException) as e:
                self._damaged(p, e)
                continue
            yield table

    def _damaged(self, part: Path, err: BaseException) -> None:
        why = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:200]
        if self._lock_fd is not None:
            aside = part.with_name(part.name + ".damaged")
            os.replace(part, aside)
            self._warn(
                f"store part {part.name} is damaged ({why}); moved to {aside.name}, "
                "its points run again"
            )
        elif part.name not in self._reported:
            self._reported.add(part.name)
            self._warn(
                f"store part {part.name} is damaged ({why}); skipped (`sweep --resume` runs "
                "its points again)"
            )

    def ids(self) -> set[str]:
        return {i for t in self._tables(["id"]) for i in t["id"].to_pylist()}

    def add(self, rows: list[dict]) -> None:
        self._pending.extend(rows)

    def flush(self) -> None:
        if not self._pending:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = list(dict.fromkeys(k for row in self._pending for k in row))  # union, in order
        table = pa.Table.from_pylist([{k: row.get(k) for k in cols} for row in self._pending])
        name = f"part-{self._seq:06d}-{uuid.uuid4().hex[:8]}.parquet"
        with atomic_path(self.path / name, flag="--store") as tmp:
            pq.write_table(table, tmp)
        self._seq += 1
        self._pending = []

    def read(self):
        """All rows as a pandas DataFrame sorted by id, one row per point."""
        import pandas as pd

        tables = [t.to_pandas() for t in self._tables()]
        if not tables:
            what = "no readable results" if self.parts() else "no results"
            raise ChipforgeError(f"store {str(self.path)!r} holds {what}; run a sweep first")
        df = pd.concat(tables, ignore_index=True)
        df = df.drop_duplicates("id", keep="first").sort_values("id", kind="stable")
        return df.reset_index(drop=True)

    def meta(self) -> dict:
        p = self.path / "space.json"
        if not p.exists():
            return {}
        meta = self._read_meta(p)
        if meta is None:
            self._warn(f"store {str(self.path)!r}: space.json is damaged; objectives unknown")
        return meta or {}

    @staticmethod
    def _read_meta(p: Path) -> dict | None:
        """space.json by the bounded reader, or None when damaged: larger than 1 MB, not a
        regular file (a named pipe blocked the read), not UTF-8 JSON. An output flag naming
        it is refused (`note_input`), not read as damage and then written over."""
        note_input(p, SPACE_JSON)
        try:
            meta = load_json(p, what="space.json", limit=1_000_000)
        except ChipforgeError:
            return None
        return meta if isinstance(meta, dict) else None
