"""Dask clusters for sweeps: a private TLS LocalCluster, or a scheduler the user names.

Dask moves tasks and results as pickles, so a scheduler can run code on its clients and its
workers, and any process that can reach a cluster can run code on its workers. Hence:
- the LocalCluster a sweep starts gets a per-run TLS context (`Security.temporary()`: a key
  and self-signed certificate made in memory for this run), listens on 127.0.0.1 only, and
  nothing without that key (another user, a browser, another process) can join or submit;
- a scheduler given by `--address` must be trusted (docs/explore.md); `tls://` with
  `--tls-ca/--tls-cert/--tls-key` (or Dask's `distributed.comm.tls.*` configuration)
  authenticates it;
- connecting is bounded by `--connect-timeout`: a refused port, an unknown host, a server that
  is not Dask (an HTTP server never answers Dask's handshake) or a scheduler with no workers
  is a one-line error within that time, not a hang.
"""

from __future__ import annotations

import asyncio
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from chipforge.errors import ChipforgeError

CONNECT_TIMEOUT_S = 10.0


def _needs_dask(e: ImportError) -> ChipforgeError:
    return ChipforgeError(
        f"--backend dask needs dask[distributed] and cryptography ({e}); "
        "pip install 'chipforge[explore]'"
    )


def local_cluster(workers: int, config: dict):
    """A LocalCluster of `workers` single-threaded processes on 127.0.0.1, TLS with a key made
    for this run, and a client of it."""
    try:
        import dask
        from dask.distributed import Client, LocalCluster
        from distributed.security import Security

        security = Security.temporary()
    except ImportError as e:
        raise _needs_dask(e) from None
    with dask.config.set(config):  # nannies pass it on to their workers
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            protocol="tls://",
            security=security,
            dashboard_address=None,
        )
    try:
        return cluster, Client(cluster)  # the client takes the cluster's security
    except BaseException:
        cluster.close()
        raise


def security_for(
    address: str, ca: Path | None = None, cert: Path | None = None, key: Path | None = None
):
    """The `Security` to reach `address` with: the --tls-* files, else Dask's configuration;
    a one-line error when a tls:// address has neither, or a tcp:// one is given certificates."""
    try:
        from distributed.security import Security
    except ImportError as e:
        raise _needs_dask(e) from None
    given = {"--tls-ca": ca, "--tls-cert": cert, "--tls-key": key}
    scheme = address.split("://", 1)[0] if "://" in address else "tcp"
    if scheme != "tls":
        named = [flag for flag, v in given.items() if v is not None]
        if named:
            raise ChipforgeError(
                f"`{named[0]}` needs a tls:// `--address`, not {address!r}; write tls://host:port"
            )
        return None
    for flag, v in given.items():
        if v is not None and not Path(v).is_file():
            raise ChipforgeError(f"`{flag}` {str(v)!r} is not a file; give the PEM file's path")
    if any(v is not None for v in given.values()):
        missing = [flag for flag, v in given.items() if v is None]
        if missing:
            raise ChipforgeError(
                f"a tls:// `--address` with certificates needs all of --tls-ca, --tls-cert and "
                f"--tls-key; missing {', '.join(missing)}"
            )
        security = Security(
            tls_ca_file=str(ca),
            tls_client_cert=str(cert),
            tls_client_key=str(key),
            require_encryption=True,
        )
    else:
        security = Security()  # distributed.comm.tls.* from Dask's configuration
    try:
        ok = security.get_connection_args("client")["ssl_context"] is not None
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        raise ChipforgeError(f"`--tls-*`: cannot load the certificates ({e})") from None
    if not ok:
        raise ChipforgeError(
            f"`--address` {address!r} is tls:// but no certificates are set; pass --tls-ca, "
            "--tls-cert and --tls-key (or set distributed.comm.tls.* in Dask's configuration)"
        )
    return security


def connect(address: str, security=None, timeout: float = CONNECT_TIMEOUT_S):
    """A Client of the scheduler at `address` with at least one worker, within `timeout`
    seconds, or a one-line error that says what is there instead."""
    try:
        from dask.distributed import Client
        from distributed.comm.addressing import parse_address, parse_host_port
        from distributed.comm.registry import get_backend
    except ImportError as e:
        raise _needs_dask(e) from None
    if not timeout > 0 or timeout == float("inf"):
        raise ChipforgeError(f"`--connect-timeout` must be a positive number, not {timeout}")
    where = f"`--address` {address!r}"
    usage = f"{where} must be tcp://host:port or tls://host:port"
    try:
        scheme, loc = parse_address(address)
        get_backend(scheme)
        host, port = parse_host_port(loc) if scheme in ("tcp", "tls") else (None, None)
    except (ValueError, TypeError) as e:
        raise ChipforgeError(f"{usage} ({e})") from None
    if host is not None and not 0 < port < 65536:
        raise ChipforgeError(f"{usage}, with a port from 1 to 65535")
    deadline = time.monotonic() + timeout
    if scheme in ("tcp", "tls"):  # (inproc:// is a cluster in this process)
        args = security.get_connection_args("client") if security is not None else {}
        with ThreadPoolExecutor(1) as pool:  # its own event loop, whatever loop the caller runs
            pool.submit(asyncio.run, _probe(address, host, port, args, timeout, where)).result()
    left = max(0.5, deadline - time.monotonic())
    try:
        client = Client(address, security=security, timeout=left)
    except Exception as e:  # noqa: BLE001 - any failure to connect is the address's fault
        raise ChipforgeError(f"{where}: cannot connect ({_short(e)})") from None
    try:
        client.wait_for_workers(1, timeout=max(0.5, deadline - time.monotonic()))
    except Exception:  # noqa: BLE001 - TimeoutError, or the scheduler went away
        client.close()
        raise ChipforgeError(
            f"{where}: the scheduler has no workers after {timeout:g} s; start some "
            f"(dask worker {address}) or raise --connect-timeout"
        ) from None
    return client


async def _probe(address: str, host: str, port: int, args: dict, timeout: float, where: str):
    """TCP first (refused and unknown hosts fail at once, where Dask retries until its
    timeout), then Dask's handshake under our own deadline (Dask waits for the handshake's
    reply without one)."""
    from distributed.comm import connect as dask_connect

    deadline = time.monotonic() + timeout
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.close()
    except socket.gaierror:
        raise ChipforgeError(f"{where}: unknown host {host!r}") from None
    except ConnectionRefusedError:
        raise ChipforgeError(
            f"{where}: connection refused (no scheduler listens on port {port})"
        ) from None
    except TimeoutError:
        raise ChipforgeError(f"{where}: no answer within {timeout:g} s") from None
    except OSError as e:
        raise ChipforgeError(f"{where}: cannot connect ({_short(e)})") from None
    left = deadline - time.monotonic()
    try:
        comm = await asyncio.wait_for(dask_connect(address, timeout=left, **args), left)
    except TimeoutError:
        raise ChipforgeError(
            f"{where}: no Dask handshake within {timeout:g} s; is it a Dask scheduler (an HTTP "
            "server or another service listens there)? or raise --connect-timeout"
        ) from None
    except Exception as e:  # noqa: BLE001 - closed by the peer, TLS refused, garbage frames
        raise ChipforgeError(
            f"{where}: not a Dask scheduler we can talk to ({_short(e)})"
        ) from None
    await comm.close()


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."
