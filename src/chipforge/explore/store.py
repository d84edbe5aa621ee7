"""The result store: a folder of Parquet part files, one row per design point.

Each flush writes a new part atomically (a temporary file, fsync, then `os.replace`), so a
Ctrl-C or SIGKILL loses at most the unflushed rows, never a finished part, and a half-written
part never appears. Reading merges the parts and keeps the first row of each point id, so a
resumed run recomputes nothing that was stored and stores nothing twice.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from chipforge.errors import ChipforgeError


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._pending: list[dict] = []
        self._seq = 0

    def parts(self) -> list[Path]:
        return sorted(self.path.glob("part-*.parquet")) if self.path.is_dir() else []

    def open(self, *, resume: bool, meta: dict) -> set[str]:
        """Prepare the folder; return the ids already stored (resume) or refuse to mix runs."""
        self.path.mkdir(parents=True, exist_ok=True)
        meta_path = self.path / "space.json"
        if self.parts() and not resume:
            raise ChipforgeError(
                f"store {str(self.path)!r} already holds results; pass --resume to continue it "
                "or --store to choose an empty folder"
            )
        if resume and meta_path.exists():
            old = json.loads(meta_path.read_text())
            if old.get("fingerprint") != meta.get("fingerprint"):
                raise ChipforgeError(
                    f"store {str(self.path)!r} holds a different space; resume with the same "
                    "space file or choose another --store"
                )
        _atomic_write(meta_path, json.dumps(meta, sort_keys=True, indent=1).encode())
        self._seq = len(self.parts())
        return self.ids()

    def ids(self) -> set[str]:
        import pyarrow.parquet as pq

        return {i for p in self.parts() for i in pq.read_table(p, columns=["id"])["id"].to_pylist()}

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
        tmp = self.path / f".{name}.tmp"
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.path / name)
        self._seq += 1
        self._pending = []

    def read(self):
        """All rows as a pandas DataFrame sorted by id, one row per point."""
        import pandas as pd
        import pyarrow.parquet as pq

        parts = self.parts()
        if not parts:
            raise ChipforgeError(f"store {str(self.path)!r} holds no results; run a sweep first")
        df = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
        df = df.drop_duplicates("id", keep="first").sort_values("id", kind="stable")
        return df.reset_index(drop=True)

    def meta(self) -> dict:
        p = self.path / "space.json"
        return json.loads(p.read_text()) if p.exists() else {}


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
