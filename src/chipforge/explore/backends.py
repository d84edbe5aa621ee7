"""Where chunks of design points run: a local process pool (default) or a Dask cluster.

A backend yields finished chunks (lists of rows) in completion order. A chunk whose worker
dies is resubmitted once; if it fails again its points are recorded as failed with the error.
Per-task overhead is kept small: the space is sent to each worker once (pool initializer /
Dask scatter), tasks carry only (id, params) pairs, and `2 x workers` chunks are in flight so
a worker never waits for the driver.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from chipforge.explore import dask_client
from chipforge.explore.evaluate import STATUS_FAILED, evaluate_chunk
from chipforge.explore.space import Space

Chunk = list[tuple[str, dict]]


def _failed(chunk: Chunk, err: BaseException) -> list[dict]:
    return [
        {
            "id": pid,
            **{f"p.{k}": v if isinstance(v, (int, float)) else str(v) for k, v in params.items()},
            "status": STATUS_FAILED,
            "reason": f"{type(err).__name__}: {err}",
        }
        for pid, params in chunk
    ]


# A LocalCluster's workers run one task thread each; Dask's statistical profiler (a stack
# sample every 10 ms taken under the GIL) and 100 ms memory polling only cost them CPU here.
LOCAL_DASK_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.gil.enabled": False,
}

_SPACE: Space | None = None  # the pool worker's copy, sent once by the initializer


def _init(space: Space, driver: int) -> None:
    global _SPACE
    _SPACE = space
    threading.Thread(target=_exit_with, args=(driver,), daemon=True, name="driver-watch").start()


def _exit_with(driver: int) -> None:
    """Exit when the driver process does (a SIGKILL included): a pool worker otherwise waits
    on its task queue for ever, orphaned. Linux: wait on a pidfd; elsewhere: poll."""
    try:
        fd = os.pidfd_open(driver)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # not Linux >= 5.3
        while _alive(driver):
            time.sleep(0.5)
        os._exit(1)
    select.select([fd], [], [])  # readable once the driver has exited
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _pool_chunk(chunk: Chunk) -> list[dict]:
    return evaluate_chunk(_SPACE, chunk)


class Runner:
    """Runs lists of chunks on one process pool or Dask cluster, started on first use and kept
    until `close()`: an Optuna search evaluates a batch per generation on the same workers.

    backend "local": `workers` processes (1: in-process, no pickling); "dask": a scheduler at
    `address`, or a LocalCluster of `workers` single-threaded processes."""

    def __init__(
        self,
        space: Space,
        backend: str,
        workers: int,
        address: str | None = None,
        *,
        security=None,
        connect_timeout: float = dask_client.CONNECT_TIMEOUT_S,
    ):
        self.space, self.backend, self.workers, self.address = space, backend, workers, address
        self.security, self.connect_timeout = security, connect_timeout
        self.threads = workers  # what the chunks are sized for; a running cluster's own count
        self._pool = self._client = self._cluster = self._remote = None

    def start(self) -> Runner:
        if self.backend == "local" and self.workers > 1 and self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, initializer=_init, initargs=(self.space, os.getpid())
            )
        elif self.backend == "dask" and self._client is None:
            self._start_dask()
        return self

    def _start_dask(self) -> None:
        if self.address:
            self._client = dask_client.connect(self.address, self.security, self.connect_timeout)
        else:
            self._cluster, self._client = dask_client.local_cluster(self.workers, LOCAL_DASK_CONFIG)
        self._remote = self._client.scatter(self.space, broadcast=True)
        self.threads = sum(self._client.ncores().values()) or self.workers

    def run(self, chunks: list[Chunk]) -> Iterator[list[dict]]:
        """Finished chunks (lists of rows) in completion order."""
        self.start()
        if self._pool is not None:
            yield from _drive(lambda c: self._pool.submit(_pool_chunk, c), chunks, self.threads * 2)
        elif self._client is not None:
            client, remote = self._client, self._remote
            yield from _drive(
                lambda c: client.submit(evaluate_chunk, remote, c, pure=False),
                chunks,
                self.threads * 2,
            )
        else:
            for chunk in chunks:
                yield evaluate_chunk(self.space, chunk)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._pool = self._client = self._cluster = self._remote = None


def _drive(submit, chunks: list[Chunk], inflight: int) -> Iterator[list[dict]]:
    """Keep `inflight` chunks running; retry a crashed chunk once."""
    todo = list(reversed(chunks))
    running = {}
    while todo or running:
        while todo and len(running) < inflight:
            chunk = todo.pop()
            running[submit(chunk)] = (chunk, 1)
        done, _ = (
            wait(list(running), return_when=FIRST_COMPLETED)
            if _is_cf(running)
            else (_dask_wait(running))
        )
        for fut in done:
            chunk, attempt = running.pop(fut)
            try:
                yield fut.result()
            except Exception as err:  # noqa: BLE001 - a dead worker: retry once, then record
                if attempt == 1:
                    running[submit(chunk)] = (chunk, 2)
                else:
                    yield _failed(chunk, err)


def _is_cf(running) -> bool:
    return type(next(iter(running))).__module__.startswith("concurrent")


def _dask_wait(running):
    from dask.distributed import wait as dwait

    return dwait(list(running), return_when="FIRST_COMPLETED")


def default_workers() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
