"""Files and stores under hostile or careless use: outputs are written atomically (a failed
write keeps the previous file), bad `--out` paths are one-line errors, the sweep store is
locked, damaged parts are skipped and re-run, pool workers die with their driver, and Dask
connections are private (TLS LocalCluster) and bounded (`--connect-timeout`)."""

from __future__ import annotations

import http.server
import json
import os
import resource
import signal
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from chipforge.atomic import atomic_path, atomic_write_text
from chipforge.errors import ChipforgeError
from chipforge.explore import Store, space_from_dict, sweep

LAYER = "llm:llama3-70b,phase=decode,batch=64,context=4096,layers=1"
EVAL = ["evaluate", "--chip", "forge-n3", "--workload", "gemm:m=256,n=256,k=256", "--json"]


def _cli(*args, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "chipforge", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        **kw,
    )


_MANY = """
import json, sys
from chipforge.cli import main
for line in sys.stdin:
    sys.argv = ["chipforge", *json.loads(line)]
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    print(f"\\n@@exit {code}", file=sys.stderr, flush=True)
"""


def _cli_many(*argvs: list) -> list[tuple[int, str]]:
    """(exit status, stderr) of each command line, run through the CLI's entry point one after
    another in one child process (one Python start-up instead of one per case)."""
    r = subprocess.run(
        [sys.executable, "-c", _MANY],
        input="".join(json.dumps(list(map(str, a))) + "\n" for a in argvs),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=120,
    )
    chunks = r.stderr.split("@@exit ")
    assert len(chunks) == len(argvs) + 1, r.stderr
    out, err = [], chunks[0]
    for chunk in chunks[1:]:
        code, _, rest = chunk.partition("\n")
        out.append((int(code), err))
        err = rest
    return out


def _one_line_error(r, *words: str) -> None:
    code, stderr = (r.returncode, r.stderr) if hasattr(r, "stderr") else r
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def _space(steps: int = 6):
    return space_from_dict(
        {
            "base": {"chip": "forge-n3"},
            "params": {"clock": {"min": "1 GHz", "max": "2 GHz", "steps": steps}},
            "workloads": [{"spec": LAYER}],
            "objectives": {"tokens_per_s": "max", "unit_cost_usd": "min"},
        }
    )


# --- atomic outputs ------------------------------------------------------------------------


def _small_file_limit():
    resource.setrlimit(resource.RLIMIT_FSIZE, (400, 400))  # Python ignores SIGXFSZ: EFBIG


def test_full_disk_keeps_the_previous_out_file(tmp_path):
    """A write that fails part-way (the child may not write past 400 bytes, as on a full disk)
    is a one-line error naming `--out`, and the good file from before is left whole."""
    out = tmp_path / "result.json"
    good = json.dumps({"previous": "good result", "rows": list(range(200))}).encode()
    out.write_bytes(good)
    r = _cli(*EVAL, "--out", out, preexec_fn=_small_file_limit)
    _one_line_error(r, "`--out`", str(out), "File too large")
    assert out.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary left


def test_atomic_write_error_midway_keeps_old_file_and_no_temp(tmp_path):
    target = tmp_path / "page.html"
    target.write_text("old page")
    with (
        pytest.raises(ChipforgeError, match="`--html`.*No space left"),
        atomic_path(target, flag="--html") as tmp,
    ):
        tmp.write_text("half a new pa")
        raise OSError(28, "No space left on device")
    assert target.read_text() == "old page"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]
    atomic_write_text(target, "new page", flag="--html")
    assert target.read_text() == "new page"
    assert oct(target.stat().st_mode & 0o777) != "0o600"  # not the temporary's private mode


def test_bad_output_paths_are_one_line_errors(tmp_path):
    """`--out`: a missing folder, a folder, /dev/full, a read-only place, a 5000-character
    name; `--html`/`--trace` a folder, `--png` a file: one line naming the flag and the path,
    before any work where the path alone shows it."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    read_only = ro / "out.json"
    if os.access(ro, os.W_OK):  # root ignores the mode bits: a read-only mount instead
        read_only = Path("/sys/chipforge-out.json")
    a_file = tmp_path / "a.txt"
    a_file.write_text("x")
    cases = [
        ("--out", tmp_path / "no" / "such" / "r.json", "does not exist"),
        ("--out", tmp_path, "is a folder"),
        ("--out", Path("/dev/full"), "No space left"),
        ("--out", read_only, ""),
        ("--out", tmp_path / ("a" * 5000), "File name too long"),
        ("--html", tmp_path, "is a folder"),
        ("--trace", tmp_path, "is a folder"),
        ("--html", a_file / "r.html", "is a file, not a folder"),
        ("--png", a_file, "is a file"),
    ]
    results = _cli_many(*[[*EVAL, flag, p] for flag, p, _ in cases])
    for (flag, path, words), r in zip(cases, results, strict=True):
        _one_line_error(r, f"`{flag}`", str(path)[:40], words)
    assert a_file.read_text() == "x"


# --- the sweep store -----------------------------------------------------------------------


def test_second_sweep_on_a_store_is_refused_and_a_dead_owners_lock_taken_over(tmp_path):
    sp = _space()
    held = Store(tmp_path / "r")
    held.open(resume=False, meta={"fingerprint": "x"})  # a sweep running on this store
    with pytest.raises(ChipforgeError, match=r"in use by another sweep \(pid \d+"):
        sweep(sp, tmp_path / "r", workers=1)
    with pytest.raises(ChipforgeError, match="in use by another sweep"):
        sweep(sp, tmp_path / "r", workers=1, resume=True)
    held.close()
    # a lock file left by a sweep that was SIGKILLed: its pid is gone, the lock is free
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / ".lock").write_text(f"pid {dead.pid} on here\n")
    seen = []
    st = Store(tmp_path / "s", on_warning=seen.append)
    st.open(resume=False, meta={"fingerprint": "x"})
    st.close()
    assert len(seen) == 1 and f"pid {dead.pid}" in seen[0] and "taking over" in seen[0]
    assert sweep(sp, tmp_path / "s", workers=1)["evaluated"] == 6


def test_damaged_parts_are_skipped_by_show_and_rerun_by_resume(tmp_path):
    sp = _space()
    clean = tmp_path / "clean"
    sweep(sp, clean, workers=1)
    store = tmp_path / "r"
    sweep(sp, store, workers=1, chunk=2, flush_s=0.0)  # a part per chunk of 2 points
    parts = sorted(store.glob("part-*.parquet"))
    assert len(parts) == 3
    good = parts[0].read_bytes()
    parts[0].write_bytes(good[: len(good) // 2])  # truncated
    (store / "part-900000-garbage.parquet").write_bytes(b"PAR1 not parquet at all" * 10)
    (store / "part-900001-empty.parquet").write_bytes(b"")
    (store / "part-900002-folder.parquet").mkdir()
    (store / ".part-900003-x.parquet.abc.tmp").write_bytes(b"left by a crash")

    r = _cli("sweep", "show", store, "--json")
    assert r.returncode == 0 or "holds no readable results" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 4 and len(r.stderr.strip().splitlines()) <= 4, r.stderr
    assert all("is damaged" in w for w in warnings)

    counts = sweep(sp, store, workers=1, resume=True)
    assert counts["evaluated"] == 2  # the truncated part's points, and only those
    assert Store(store).read().equals(Store(clean).read())
    assert not list(store.glob(".*.tmp"))
    assert len(list(store.glob("*.damaged"))) == 4
    seen = []
    assert len(Store(store, on_warning=seen.append).read()) == 6 and not seen


# --- pool workers die with their driver ----------------------------------------------------


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # an orphan's zombie waits for a reaper: it has exited


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_pool_workers_die_with_a_sigkilled_driver(tmp_path):
    space = tmp_path / "space.toml"
    space.write_text(
        textwrap.dedent(f"""
        [base]
        chip = "forge-n3"
        [params]
        clock = {{ min = "1 GHz", max = "2 GHz", steps = 20000 }}
        [[workloads]]
        spec = "{LAYER}"
        [objectives]
        tokens_per_s = "max"
        unit_cost_usd = "min"
        """)
    )
    store = tmp_path / "r"
    cmd = [sys.executable, "-m", "chipforge", "sweep", space, "--store", store, "--workers", "2"]
    driver = subprocess.Popen(list(map(str, cmd)), stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    kids: list[int] = []
    while time.time() < deadline and driver.poll() is None:
        kids = _children(driver.pid)
        if len(kids) >= 2 and (store / "space.json").exists():
            break
        time.sleep(0.05)
    assert driver.poll() is None and len(kids) >= 2, "the sweep never got going"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(map(_running, kids)):
        time.sleep(0.05)
    alive = [k for k in kids if _running(k)]
    for k in alive:
        os.kill(k, signal.SIGKILL)
    assert not alive, f"workers {alive} outlived their driver"


# --- Dask ----------------------------------------------------------------------------------


class _Http(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # pragma: no cover - Dask never sends a request line
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_port():
    pytest.importorskip("distributed")
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Http)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("where", ["refused", "http", "unknown host", "no workers"])
def test_wrong_dask_address_fails_within_the_timeout(tmp_path, where, http_port):
    cluster = None
    if where == "refused":
        address, words = f"tcp://127.0.0.1:{_free_port()}", "connection refused"
    elif where == "http":
        address, words = f"tcp://127.0.0.1:{http_port}", "no Dask handshake within 2 s"
    elif where == "unknown host":
        address, words = "tcp://no-such-host.invalid:8786", "unknown host"
    else:
        from dask.distributed import LocalCluster

        cluster = LocalCluster(n_workers=0, processes=False, dashboard_address=None)
        address, words = cluster.scheduler_address, "no workers after 2 s"
    t0 = time.monotonic()
    try:
        with pytest.raises(ChipforgeError, match=words):
            sweep(_space(), tmp_path / "r", backend="dask", address=address, connect_timeout=2)
    finally:
        if cluster is not None:
            cluster.close()
    assert time.monotonic() - t0 < 2 + 3  # the timeout, plus a loaded machine's slack
    assert not (tmp_path / "r").exists()  # nothing written for a sweep that never started


def test_cli_dask_wrong_addresses_are_one_line_exit_2(tmp_path, http_port):
    space = tmp_path / "s.toml"
    space.write_text(
        f'[base]\nchip = "forge-n3"\n[params]\nclock = [1e9, 2e9]\n[[workloads]]\n'
        f'spec = "{LAYER}"\n[objectives]\ntokens_per_s = "max"\n'
    )
    port = _free_port()
    dask = ["sweep", space, "--store", tmp_path / "r", "--backend", "dask", "--address"]
    refused, no_certs, http = _cli_many(
        [*dask, f"tcp://127.0.0.1:{port}"],
        [*dask, f"tls://127.0.0.1:{port}"],
        [*dask, f"tcp://127.0.0.1:{http_port}", "--connect-timeout", "1"],
    )
    _one_line_error(refused, "`--address`", "connection refused")
    _one_line_error(no_certs, "no certificates are set", "--tls-ca")
    _one_line_error(http, "no Dask handshake within 1 s")


def test_local_cluster_is_tls_and_refuses_outsiders(tmp_path, monkeypatch):
    """The sweep's LocalCluster listens with TLS on a key made for the run: a client without
    it (plain tcp://, or TLS with another key) cannot join while the sweep runs, and the rows
    equal an in-process run's."""
    pytest.importorskip("cryptography")
    from distributed import Client
    from distributed.security import Security

    from chipforge.explore import dask_client
    from chipforge.explore.dask_client import connect

    seen: dict = {}
    real = dask_client.local_cluster

    def spy(workers, config):
        cluster, client = real(workers, config)
        seen["address"] = cluster.scheduler_address
        return cluster, client

    def outsiders(done, total):
        if "refused" in seen:
            return
        address = seen["address"]
        with pytest.raises(ChipforgeError, match="not a Dask scheduler|no Dask handshake"):
            connect(address.replace("tls://", "tcp://"), None, timeout=2)
        with pytest.raises(OSError):
            Client(address, security=Security.temporary(), timeout=2)
        seen["refused"] = True

    monkeypatch.setattr(dask_client, "local_cluster", spy)
    sp = _space()
    sweep(sp, tmp_path / "dask", backend="dask", workers=1, on_rows=outsiders)
    assert seen["address"].startswith("tls://127.0.0.1:") and seen["refused"]
    sweep(sp, tmp_path / "local", workers=1)
    assert Store(tmp_path / "dask").read().equals(Store(tmp_path / "local").read())
