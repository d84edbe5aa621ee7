"""Reading a text file a user gave us (chip TOML, config.json, sweep space): bounded.

Files come from other people: the size is checked with stat before a byte is read, the text
must be UTF-8, and nesting too deep for the parser is one line, not a RecursionError. Every
loader of a user text file goes through `read_text`, `load_toml` or `load_json`.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from chipforge.errors import ChipforgeError

# One rule: a command never writes over a file it reads (`--out my-chip.toml` must not replace
# the chip it costs, `--html` not a scenario's chip TOML). Files read as input by this process:
# (device, inode) -> what they were read as; the command line's outputs (`--out`, `--html`,
# `--trace`, declared when their flags are checked): (flag, path). Whichever comes second is
# refused, so a file read through another is refused when it is read, before the run; `atomic`
# checks again at write time. The CLI clears both per command (`forget_inputs`).
_INPUTS: dict[tuple[int, int], str] = {}
_OUTPUTS: list[tuple[str, Path]] = []

MAX_TEXT_BYTES = 8 * 2**20  # 8 MiB: a chip TOML is ~2 kB, a config.json ~5 kB
MAX_DEPTH = 64  # tables, arrays or objects inside one another


def note_input(path: str | Path, what: str) -> None:
    """Remember `path` (a file this process reads) as an input: no output may replace it. One
    the command line names as an output is refused (one line naming the flag)."""
    try:
        st = Path(path).stat()
    except (OSError, ValueError):
        return
    for flag, out in _OUTPUTS:
        if _same(out, path):
            raise _replaces(flag, out, what)
    _INPUTS.setdefault((st.st_dev, st.st_ino), what)


def note_output(path: str | Path, flag: str) -> None:
    """Declare `path` the file the command line's `flag` writes: refused when the command read
    it already or another output flag names it; every input read later is checked against it."""
    p = Path(path)
    check_output(p, flag)
    if (flag, p) not in _OUTPUTS:
        _OUTPUTS.append((flag, p))


def check_output(path: str | Path, flag: str) -> None:
    """One line naming `flag` when `path` is a file this command read (`note_input`) or the
    file another output flag names (`note_output`): at declaration, and when written (`atomic`:
    a `--png` chart named as `--out`)."""
    what = input_read_as(path)
    if what:
        raise _replaces(flag, path, what)
    for other, out in _OUTPUTS:
        if other != flag and (os.path.abspath(out) == os.path.abspath(path) or _same(out, path)):
            raise ChipforgeError(
                f"`{other}` and `{flag}` both name {str(path)[:120]}; give each its own file"
            )


def _replaces(flag: str, path: str | Path, what: str) -> ChipforgeError:
    return ChipforgeError(
        f"`{flag}` {str(path)[:120]} is also an input of this command (the {what}); "
        "writing it would replace it: give another path"
    )


def _same(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # one does not exist (yet), a name too long, a NUL
        return False


def input_read_as(path: str | Path) -> str | None:
    """What the file at `path` was read as (`note_input`), or None: not an input (yet)."""
    if not _INPUTS:
        return None
    try:
        st = Path(path).stat()
    except (OSError, ValueError):
        return None
    return _INPUTS.get((st.st_dev, st.st_ino))


def forget_inputs() -> None:
    """A new command: no file read or output declared by an earlier one counts."""
    _INPUTS.clear()
    _OUTPUTS.clear()


def bare_name(text: str) -> str:
    """A chip or rack named by the user, without the spaces around it (as in a `--chip a, b`
    list), unless a file is named exactly `text`. A name the file system refuses (too long, a
    NUL) is kept as given: the loader's own checks then say what is wrong with it."""
    if text == text.strip():
        return text
    try:
        return text if Path(text).exists() else text.strip()
    except (OSError, ValueError):
        return text


PATH_SUFFIXES = (".toml", ".json", ".onnx", ".pt2")  # chip/rack TOML, config.json, model files


def beside(value: str, folder: str | Path) -> str:
    """A chip, rack or model named inside a file (a rack TOML, a sweep space, a decide
    scenario) kept in `folder`: a relative path in it is relative to that file, as a user keeps
    them together, wherever the command runs. A path is a name ending in .toml, .json, .onnx or
    .pt2, one with a slash (./model-folder), or the name of a file in `folder` or of a model
    folder there (one holding a config.json); `llm:` before it stays, spaces around it go
    (`bare_name`) unless `folder` holds a file named with them. A preset's name (even beside a
    folder of that name: a sweep store, a report folder), an absolute path, or a name the file
    system refuses is returned as given (the loaders then say what is wrong with it)."""
    bare = value.removeprefix("llm:")
    lead = value[: len(value) - len(bare)]
    try:
        if bare != bare.strip() and not (Path(folder) / bare).exists():
            bare = bare.strip()
        path = Path(folder) / bare
        if not bare or Path(bare).is_absolute():
            return value
        named = "/" in bare or bare.lower().endswith(PATH_SUFFIXES)
        if not (named or path.is_file() or (path / "config.json").is_file()):
            return value
    except (OSError, ValueError):
        return value
    return lead + str(path)


def missing(path: str | Path) -> str:
    """Why `path` cannot be read as a file, for an error: 'does not exist' or 'is not a regular
    file' (a folder, a named pipe, a device)."""
    try:
        return "is not a regular file" if Path(path).exists() else "does not exist"
    except (OSError, ValueError):
        return "cannot be read"


def read_text(
    path: str | Path,
    *,
    what: str,
    error: type[ChipforgeError] = ChipforgeError,
    limit: int = MAX_TEXT_BYTES,
) -> str:
    """The UTF-8 text of `path`, refused (`error`, one line naming the file) when it is not a
    regular file, is larger than `limit` bytes, or is not UTF-8."""
    p = Path(path)
    try:
        st = p.stat()
    except (OSError, ValueError) as e:  # missing, a name too long, a NUL in the path
        raise error(f"{what} {_name(p)} cannot be read ({_reason(e)})") from None
    if not p.is_file():
        raise error(f"{what} {_name(p)} is not a regular file")
    if st.st_size > limit:
        raise error(
            f"{what} {_name(p)} is {st.st_size / 2**20:.1f} MiB; text inputs are capped at "
            f"{limit / 2**20:.0f} MiB (is it the right file?)"
        )
    try:
        with p.open("rb") as f:
            data = f.read(limit + 1)  # the file may grow between stat and read
    except OSError as e:
        raise error(f"{what} {_name(p)} cannot be read ({_reason(e)})") from None
    if len(data) > limit:
        raise error(f"{what} {_name(p)} is larger than {limit / 2**20:.0f} MiB")
    note_input(p, what.strip("`"))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(
            f"{what} {_name(p)} is not UTF-8 text (byte {e.start}); save it as UTF-8"
        ) from None


def nesting_depth(text: str) -> int:
    """How deep brackets and braces nest in TOML or JSON `text`, counting those inside strings
    too (a vectorised scan: an 8 MiB file takes milliseconds)."""
    import numpy as np  # only for a file with many brackets: the CLI starts without numpy

    codes = np.frombuffer(text.encode("utf-8"), np.uint8)
    step = np.isin(codes, (0x5B, 0x7B)).astype(np.int64) - np.isin(codes, (0x5D, 0x7D))
    return int(np.cumsum(step).max(initial=0))


def _check_depth(text: str, p: Path, what: str, error: type[ChipforgeError]) -> None:
    if text.count("[") + text.count("{") > MAX_DEPTH and nesting_depth(text) > MAX_DEPTH:
        raise error(f"{what} {_name(p)} nests tables, arrays or objects more than {MAX_DEPTH} deep")


def load_toml(
    path: str | Path,
    *,
    what: str,
    error: type[ChipforgeError] = ChipforgeError,
    limit: int = MAX_TEXT_BYTES,
) -> dict[str, Any]:
    """The TOML document of a user file (`read_text`'s checks, then parse errors and nesting
    deeper than MAX_DEPTH as one-line `error`s)."""
    p = Path(path)
    text = read_text(p, what=what, error=error, limit=limit)
    _check_depth(text, p, what, error)
    try:
        return tomllib.loads(text)
    except ValueError as e:  # TOMLDecodeError, or an integer of more than 4300 digits
        raise error(f"{what} {_name(p)}: not valid TOML ({_first(e)})") from None
    except RecursionError:
        raise error(f"{what} {_name(p)} nests too deeply to parse") from None


def load_json(
    path: str | Path,
    *,
    what: str,
    error: type[ChipforgeError] = ChipforgeError,
    limit: int = MAX_TEXT_BYTES,
) -> Any:
    """The JSON document of a user file (`read_text`'s checks, then parse errors and nesting
    deeper than MAX_DEPTH as one-line `error`s)."""
    p = Path(path)
    text = read_text(p, what=what, error=error, limit=limit)
    _check_depth(text, p, what, error)
    try:
        return json.loads(text)
    except ValueError as e:  # JSONDecodeError, or an integer of more than 4300 digits
        raise error(f"{what} {_name(p)} is not valid JSON ({_first(e)})") from None
    except RecursionError:
        raise error(f"{what} {_name(p)} nests too deeply to parse") from None


def _first(e: Exception) -> str:
    """The first line of an error's text, at most 200 characters."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text if len(text) <= 200 else text[:197] + "..."


def _name(p: Path) -> str:
    text = str(p)
    return repr(text if len(text) <= 120 else "..." + text[-117:])


def _reason(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return type(e).__name__
