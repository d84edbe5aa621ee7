"""Every file chipforge writes goes through here.

A file is written to a temporary file in its own folder, flushed, fsync'd and renamed over
the target (`os.replace`), so a full disk, a crash or a Ctrl-C leaves the previous file whole,
never a half-written one. A character device (`/dev/null`) or the process's own
stream (`/dev/stdout`) is written in place; a named pipe, socket or block device is refused (a
FIFO with no reader blocks forever), and so is a user's output (`flag`) that is a file this
command read or that another output flag names (`userfile.check_output`: `--out my-chip.toml`,
`--png` charts over `--out`; the command line's outputs are declared and checked before the
run, `userfile.note_output`). A write that fails is a one-line
`ChipforgeError` naming the flag and the path: a folder given as a file, a missing folder, a
read-only path, a full disk.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chipforge.errors import ChipforgeError
from chipforge.userfile import check_output, note_output

TMP_SUFFIX = ".tmp"  # `.<name>.<random>.tmp`: what a crash can leave behind


def _show(path: Path) -> str:
    s = str(path)
    return s if len(s) <= 120 else f"{s[:58]}...{s[-58:]}"


def _what(flag: str | None) -> str:
    return f"`{flag}` " if flag else ""


def _error(path: Path, flag: str | None, err: OSError) -> ChipforgeError:
    why = err.strerror or type(err).__name__
    return ChipforgeError(f"{_what(flag)}{_show(path)}: cannot write it ({why})")


def _in_place(path: Path) -> bool:
    """A device, pipe or /proc entry: renaming a file over it would be wrong."""
    return str(path).startswith(("/dev/", "/proc/")) or (path.exists() and not path.is_file())


def _special(p: Path) -> str | None:
    """What `p` is when it exists and is neither a regular file nor a folder, and writing to it
    is refused: a named pipe (opening it blocks until a reader comes), a socket, a block
    device. A character device (/dev/null, a terminal) and the process's own streams
    (/dev/stdout, /dev/fd/N, /proc/self/fd/N: a pipe to the next command) are written as
    given."""
    try:
        mode = p.stat().st_mode
    except OSError as e:
        return "a loop of symbolic links" if e.errno == errno.ELOOP else None  # None: a new file
    except ValueError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISCHR(mode):
        return None
    if stat.S_ISFIFO(mode) and str(p).startswith(("/dev/std", "/dev/fd/", "/proc/self/fd/")):
        return None
    return "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else (
        "a block device" if stat.S_ISBLK(mode) else "not a regular file")  # fmt: skip


def check_target(path: str | Path, flag: str | None = None, *, declare: bool = False) -> Path:
    """`path` as a file to (over)write, or a one-line error naming `flag` and the path.
    `declare`: the command line's `flag` names it, declared its output (`userfile.note_output`)
    as it is checked."""
    p = Path(path)
    try:
        return _check(p, flag, declare)
    except OSError as e:  # a name too long, a loop of links, ...
        raise _error(p, flag, e) from None


def _check(p: Path, flag: str | None, declare: bool) -> Path:
    if p.is_dir():
        raise ChipforgeError(f"{_what(flag)}{_show(p)} is a folder; give a file path inside it")
    if not p.parent.is_dir():
        raise ChipforgeError(
            f"{_what(flag)}{_show(p)}: folder {_show(p.parent)} does not exist; create it first"
        )
    if p.is_file() and not os.access(p, os.W_OK):
        raise ChipforgeError(f"{_what(flag)}{_show(p)} is read-only")
    if not _in_place(p):  # the temporary file goes beside it
        _writable(p, p.parent, flag)
    _not_special(p, flag)
    if flag:  # a user's output never replaces a file this command read or another flag writes
        (note_output if declare else check_output)(p, flag)
    return p


def _writable(p: Path, folder: Path, flag: str | None) -> None:
    """A file (or the folders to it) can be created in `folder`: refused before the run, not
    after it (a read-only folder failed only when the result was written)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ChipforgeError(
            f"{_what(flag)}{_show(p)}: folder {_show(folder)} is not writable; give another path"
        )


def _not_special(p: Path, flag: str | None) -> None:
    kind = _special(p)
    if kind:
        raise ChipforgeError(
            f"{_what(flag)}{_show(p)} is {kind}, not a regular file; give a file path "
            "(or /dev/stdout)"
        )


def check_created(path: str | Path, flag: str, *, folder: bool = False) -> Path:
    """A path whose missing folders will be created (`--html`, `--trace`; `folder`: `--png`),
    checked before any work: a folder given for a file, a file given for a folder, or a file
    where a folder must go is a one-line error now, not after a long run."""
    p = Path(path)
    try:
        if folder:
            if p.exists() and not p.is_dir():
                raise ChipforgeError(f"`{flag}` {_show(p)} is a file; give a folder")
            above = next((a for a in (p, *p.parents) if a.exists()), None)
            if above is not None and above.is_dir():
                _writable(p, above, flag)
            return p
        if p.is_dir():
            raise ChipforgeError(f"`{flag}` {_show(p)} is a folder; give a file path inside it")
        above = next((a for a in p.parents if a.exists()), None)
        if above is not None and not above.is_dir():
            raise ChipforgeError(f"`{flag}` {_show(p)}: {_show(above)} is a file, not a folder")
        if above is not None and not _in_place(p):
            _writable(p, above, flag)
        _not_special(p, flag)
    except OSError as e:
        raise _error(p, flag, e) from None
    return p


def output_dir(path: str | Path, flag: str | None = None) -> Path:
    """The folder `path`, created with its parents; a one-line error when it cannot be."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ChipforgeError(f"{_what(flag)}{_show(p)} is a file; give a folder") from None
    except OSError as e:
        raise _error(p, flag, e) from None
    return p


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename itself is still atomic
    finally:
        os.close(fd)


def _mode(target: Path) -> int:
    """The permissions the file gets: the old file's, else what `open` would give."""
    if target.is_file():
        return target.stat().st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(
    path: str | Path, *, flag: str | None = None, mkdir: bool = False
) -> Iterator[Path]:
    """A temporary path to write (e.g. `savefig(tmp)`, `pq.write_table(t, tmp)`); on a clean
    exit it is fsync'd and renamed to `path`, on an error removed. `mkdir`: create the
    target's folders (the reports do; `--out` does not)."""
    target = Path(path)
    try:
        if mkdir:
            output_dir(target.parent, flag)
        if target.is_symlink() and not _in_place(target):
            _not_special(target, flag)  # a loop of links
            target = target.resolve()  # write through a link, as `open` would
        check_target(target, flag)
        if _in_place(target):
            yield target
            return
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name[:80]}.", suffix=TMP_SUFFIX, dir=target.parent
        )
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            os.chmod(tmp, _mode(target))
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
    except OSError as e:
        raise _error(target, flag, e) from None


@contextmanager
def atomic_open(
    path: str | Path,
    mode: str = "w",
    *,
    flag: str | None = None,
    mkdir: bool = False,
    encoding: str | None = "utf-8",
) -> Iterator:
    """`open(path, mode)` for writing, through `atomic_path`."""
    binary = "b" in mode
    with (
        atomic_path(path, flag=flag, mkdir=mkdir) as tmp,
        open(tmp, mode, encoding=None if binary else encoding) as f,
    ):
        yield f


def atomic_write_text(
    path: str | Path, text: str, *, flag: str | None = None, mkdir: bool = False
) -> Path:
    with atomic_open(path, "w", flag=flag, mkdir=mkdir) as f:
        f.write(text)
    return Path(path)


def atomic_write_bytes(
    path: str | Path, data: bytes, *, flag: str | None = None, mkdir: bool = False
) -> Path:
    with atomic_open(path, "wb", flag=flag, mkdir=mkdir) as f:
        f.write(data)
    return Path(path)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the `.*.tmp` files a crash left in `folder` (call only while holding the folder,
    e.g. the sweep store's lock); returns what was removed."""
    gone = []
    for p in Path(folder).glob(f".*{TMP_SUFFIX}"):
        if p.is_file():
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone
