"""The sweep driver: sample (or search), skip what the store holds, evaluate on a backend,
stream rows into the store."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from chipforge.errors import ChipforgeError
from chipforge.explore import backends, sample
from chipforge.explore.evaluate import point_id
from chipforge.explore.search import search
from chipforge.explore.space import Space
from chipforge.explore.store import Store

FLUSH_S = 1.0  # a part at most every FLUSH_S: bounds what a SIGKILL loses
FLUSH_ROWS = 2000


def fingerprint(space: Space) -> str:
    text = json.dumps(
        [
            space.base.model_dump(mode="json"),
            space.workloads,
            [p.__dict__ for p in space.params],
            space.constraints,
            space.site_power_w,
            *space.system_ident(),
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


CHUNK = 64  # points per task when a sweep is small (and the Optuna batch per worker)
CHUNK_MAX = {"local": 256, "dask": 1024}  # larger tasks amortise a scheduler's per-task cost
TASKS_PER_WORKER = 8  # enough that the last tasks do not leave a worker idle for long


def chunk_size(n: int, workers: int, backend: str) -> int:
    """Points per task: about TASKS_PER_WORKER tasks per worker, within [16, CHUNK_MAX]."""
    return max(16, min(CHUNK_MAX[backend], -(-n // (workers * TASKS_PER_WORKER))))


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _evaluator(runner: backends.Runner, backend: str, chunk: int):
    """items -> finished chunks of rows; chunks sized for the runner's workers (for a running
    Dask scheduler, the threads it reports)."""

    def evaluate(items: list) -> Iterator[list[dict]]:
        if not items:
            return iter(())
        runner.start()
        size = chunk or chunk_size(len(items), runner.threads, backend)
        return runner.run(_chunks(items, size))

    return evaluate


def cap_workers(workers: int, address: str | None = None) -> tuple[int, str | None]:
    """`--workers` for this machine and a note when it was lowered: 0 is one per core, more
    processes than cores only add memory and switching (a remote scheduler's own workers are
    not counted here)."""
    if workers < 0:
        raise ChipforgeError(f"`--workers` must be >= 0 (0: one per core), not {workers}")
    cores = backends.default_workers()
    if address or workers <= cores:
        return workers, None
    return cores, f"--workers {workers} is more than this machine's {cores} cores; using {cores}"


def sweep(
    space: Space,
    store_dir: str | Path,
    *,
    backend: str = "local",
    workers: int = 0,
    address: str | None = None,
    security=None,
    connect_timeout: float = backends.dask_client.CONNECT_TIMEOUT_S,
    resume: bool = False,
    n: int | None = None,
    chunk: int = 0,
    on_rows: Callable[[int, int], None] | None = None,
    flush_s: float = FLUSH_S,
) -> dict:
    """Run the sweep into `store_dir`; return counts. `on_rows(done, total)` reports progress.
    `address`: a Dask scheduler (`security`: its `distributed.security.Security`, see
    `explore.dask_client.security_for`), reached within `connect_timeout` s."""
    if backend not in ("local", "dask"):
        raise ChipforgeError(f"`--backend` must be local or dask, not {backend!r}")
    sample.check(space, n)  # before the store is touched
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise ChipforgeError(f"`--workers` must be a whole number, not {workers!r}")
    workers, _ = cap_workers(workers, address)  # the API as the CLI: >= 0, at most the cores
    if not (isinstance(flush_s, int | float) and 0 <= flush_s < math.inf):
        raise ChipforgeError(f"`--flush-s` must be a number of seconds >= 0, not {flush_s!r}")
    workers = workers or backends.default_workers()
    store = Store(store_dir)
    search_like = space.method in ("nsga2", "tpe")
    # an Optuna search replays its generations on resume: keep the batch of the first run
    batch = (store.meta().get("batch") if resume else None) or (chunk or CHUNK) * workers
    meta = {"fingerprint": fingerprint(space), "objectives": space.objectives}
    meta.update(method=space.method, **({"batch": batch} if search_like else {}))
    runner = backends.Runner(
        space, backend, workers, address, security=security, connect_timeout=connect_timeout
    )
    if backend == "dask" and address:
        runner.start()  # a wrong --address fails before the store is created
    evaluate = _evaluator(runner, backend, chunk)
    try:
        done = store.open(resume=resume, meta=meta)  # takes the store's lock
        if search_like:
            space_n = n or space.n
            previous = store.read().to_dict("records") if done else []
            stream = search(replace(space, n=space_n), previous, evaluate, batch=batch)
            total, already = space_n, len(previous)
        else:
            items = [(point_id(space, p), p) for p in sample.points(space, n)]
            unique = list(dict(items).items())
            todo = [(pid, p) for pid, p in unique if pid not in done]
            stream = evaluate(todo)
            total, already = len(unique), len(unique) - len(todo)
        return _stream(store, stream, total, already, on_rows, flush_s)
    finally:
        try:
            runner.close()
        finally:
            store.close()


def _stream(store: Store, stream, total: int, already: int, on_rows, flush_s: float) -> dict:
    """Store the evaluated rows as they come; the counts add up: points = evaluated + skipped
    (already in the store) + repeated (a search's proposals of a point it had evaluated) +
    not run (interrupted), and evaluated = ok + infeasible + failed."""
    counted = already
    last = time.monotonic()
    t0 = last
    status: dict[str, int] = {}
    try:
        for rows in stream:
            store.add(rows)
            counted += len(rows)
            for r in rows:
                status[str(r.get("status"))] = status.get(str(r.get("status")), 0) + 1
            if on_rows:
                on_rows(counted, total)
            if time.monotonic() - last > flush_s or len(store._pending) >= FLUSH_ROWS:
                store.flush()
                last = time.monotonic()
    finally:
        store.flush()  # Ctrl-C: what finished is kept
    evaluated = counted - already
    return {
        "points": total,
        "evaluated": evaluated,
        "skipped": already,
        "repeated": max(0, total - counted),
        **{s: status.get(s, 0) for s in ("ok", "infeasible", "failed")},
        "wall_s": time.monotonic() - t0,
    }
