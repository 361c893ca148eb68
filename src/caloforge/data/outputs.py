"""Safe output files: refuse to overwrite without ``force``, write atomically, leave no debris.

Outputs are written to a temporary path beside the target, named
``.<name>.<host>-<pid>-<random>.tmp``, and renamed onto the target only when complete.
If a process is killed (SIGKILL, power loss) its temporary file stays behind; the next
write of the same target on the same host removes the temporaries whose process is gone.
A write that fails for lack of space or permission raises :class:`OutputPathError`
naming the path and the reason, after removing its temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from caloforge.errors import CaloforgeError, OutputExistsError, OutputPathError

__all__ = ["atomic_dir", "atomic_path", "check_output", "check_output_dir", "host_name", "new_directory_guard",
           "remove_stale_temporaries", "scratch_dir", "strict_json"]

_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO}
_LEGACY_AGE_S = 24 * 3600  # temporaries of older caloforge versions (no pid in the name) older than this go


def strict_json(value: Any, indent: int = 1) -> str:
    """``value`` as standard JSON, the one writer of caloforge's JSON files (bundle.json, run.json, metrics.json).

    NaN and infinities become ``null`` (standard JSON has no such numbers), numpy scalars and
    arrays plain numbers and lists, tuples lists.

    Example:
        >>> import numpy as np
        >>> strict_json({"chi2": float("inf"), "n": np.int64(3), "x": (1.5, np.float32(2))}, indent=None)
        '{"chi2": null, "n": 3, "x": [1.5, 2.0]}'
    """

    def plain(item: Any) -> Any:
        if isinstance(item, Mapping):
            return {str(k): plain(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [plain(v) for v in item]
        if hasattr(item, "tolist") and not isinstance(item, str):  # numpy scalars and arrays
            item = item.tolist()
            if isinstance(item, list):
                return plain(item)
        if isinstance(item, float) and not math.isfinite(item):
            return None
        return item

    return json.dumps(plain(value), indent=indent, allow_nan=False)


def check_output(path: str | Path, force: bool = False) -> Path:
    """Check that ``path`` may be written: its directory exists and is writable, and it is new or ``force`` is set.

    Raises:
        OutputExistsError: if the path exists and ``force`` is false.
        OutputPathError: if the directory is missing or not writable, or the path is a directory.
    """
    path = Path(path)
    if path.is_dir():
        msg = f"expected an output file path but {path} is a directory"
        raise OutputPathError(msg)
    return _check_new(path, force)


def check_output_dir(path: str | Path, force: bool = False) -> Path:
    """Check that the directory ``path`` may be written whole (as :func:`atomic_dir` writes it), before any work.

    Raises:
        OutputExistsError: if the path exists and ``force`` is false.
        OutputPathError: if the path is a file, or its parent directory is missing or not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        msg = f"expected an output directory path but {path} is a file"
        raise OutputPathError(msg)
    return _check_new(path, force)


def _check_new(path: Path, force: bool) -> Path:
    """Refuse an existing ``path`` without ``force`` and a missing or read-only parent directory."""
    parent = _parent(path)
    if path.exists() and not force:
        msg = f"{path} already exists; choose another path or pass --force to overwrite it"
        raise OutputExistsError(msg)
    if not parent.is_dir():
        msg = f"output directory {parent} does not exist; create it first"
        raise OutputPathError(msg)
    if not os.access(parent, os.W_OK | os.X_OK):
        msg = f"output directory {parent} is not writable; choose another output path"
        raise OutputPathError(msg)
    return path


def _parent(path: Path) -> Path:
    return path.parent if str(path.parent) else Path()


def host_name() -> str:
    """This machine's name as it appears in temporary names (non-word characters replaced)."""
    return re.sub(r"\W", "_", socket.gethostname()) or "host"


def _prefix(path: Path) -> str:
    """The temporary-name prefix of ``path`` for this process."""
    return f".{path.name}.{host_name()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporaries of ``path`` left by dead processes of this host; returns what was removed.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> stale = d / f".x.h5.{host_name()}-999999999-abc.tmp"
        >>> _ = stale.write_text("partial")
        >>> [p.name for p in remove_stale_temporaries(d / "x.h5")] == [stale.name]
        True
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(?P<host>\w+)-(?P<pid>\d+)-)?\w*\.(?:tmp|old)")
    removed = []
    for candidate in _parent(path).glob(f".{_glob_escape(path.name)}.*"):
        match = pattern.fullmatch(candidate.name)
        if match is None:
            continue
        if match["pid"] is not None:
            stale = match["host"] == host_name() and not _alive(int(match["pid"]))
        else:  # an older naming without host and pid: only when clearly abandoned
            try:
                stale = time.time() - candidate.stat().st_mtime > _LEGACY_AGE_S
            except OSError:
                stale = False
        if stale:
            with contextlib.suppress(OSError):
                if candidate.is_dir():
                    shutil.rmtree(candidate)
                else:
                    candidate.unlink()
                removed.append(candidate)
    return removed


def _glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _write_error(path: Path, err: OSError) -> OutputPathError:
    reason = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        reason = "no space left on the device; free some space or choose another output path"
    return OutputPathError(f"could not write {path}: {reason}")


@contextlib.contextmanager
def _one_line_write_errors(path: Path) -> Iterator[None]:
    """Turn a full disk, a quota or a read-only file system while writing ``path`` into an OutputPathError."""
    try:
        yield
    except OSError as err:
        if isinstance(err, CaloforgeError) or err.errno not in _WRITE_ERRORS:
            raise
        raise _write_error(path, err) from None


def _temporary(path: Path, directory: bool) -> Path:
    """A new temporary file or directory beside ``path``, named for this host and process."""
    remove_stale_temporaries(path)
    with _one_line_write_errors(path):
        if directory:
            return Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp", dir=_parent(path)))
        fd, name = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp", dir=_parent(path))
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it.

    The user's file is never half-written: it is either untouched or replaced whole.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
        >>> with atomic_path(out) as tmp:
        ...     _ = tmp.write_text("hello")
        >>> out.read_text()
        'hello'
    """
    path = check_output(path, force)
    tmp = _temporary(path, directory=False)
    try:
        with _one_line_write_errors(path):
            yield tmp
            if path.exists() and not force:  # appeared while we were writing
                msg = f"{path} appeared while writing; pass --force to overwrite it"
                raise OutputExistsError(msg)
            tmp.chmod(0o666 & ~_umask())
            tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a new temporary directory beside ``path``; on success move it onto ``path``, on error delete it.

    The directory gets the permissions of ``mkdir`` under the current umask. An existing
    directory is replaced only with ``force``, and never left half-written: it is either
    untouched or replaced whole.

    Raises:
        OutputExistsError: if the path exists (or appears while writing) and ``force`` is false.
        OutputPathError: if the parent directory is missing or not writable, or the path is a file.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "bundle"
        >>> with atomic_dir(out) as tmp:
        ...     _ = (tmp / "x.txt").write_text("hello")
        >>> (out / "x.txt").read_text()
        'hello'
    """
    path = check_output_dir(path, force)
    tmp = _temporary(path, directory=True)
    try:
        with _one_line_write_errors(path):
            yield tmp
            tmp.chmod(0o777 & ~_umask())
            if not path.exists():
                tmp.rename(path)
            elif not force:  # appeared while we were writing
                msg = f"{path} appeared while writing; pass --force to overwrite it"
                raise OutputExistsError(msg)
            else:
                _replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def scratch_dir(path: str | Path) -> Iterator[Path]:
    """Yield a new temporary directory beside ``path`` that is always removed afterwards.

    For outputs of several files (a report) that the caller moves into place one by one once
    all are written. A write that fails for lack of space or permission raises
    :class:`OutputPathError`.
    """
    path = Path(path)
    tmp = _temporary(path, directory=True)
    try:
        with _one_line_write_errors(path):
            yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def new_directory_guard(path: str | Path) -> Iterator[Path]:
    """On an error or interrupt inside the block, remove ``path`` (and its parents) if the block created them empty.

    For outputs written into a directory that the work creates (a report): a failure must not
    leave an empty directory behind. A directory that existed before, or holds anything, is kept.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "report" / "ds1"
        >>> try:
        ...     with new_directory_guard(out):
        ...         out.mkdir(parents=True)
        ...         raise KeyboardInterrupt
        ... except KeyboardInterrupt:
        ...     pass
        >>> out.parent.exists()
        False
    """
    path = Path(path)
    missing = []
    candidate = path
    while not candidate.exists() and candidate != candidate.parent:
        missing.append(candidate)  # deepest first
        candidate = candidate.parent
    try:
        yield path
    except BaseException:
        for directory in missing:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when empty
        raise


def _replace_dir(new: Path, path: Path) -> None:
    """Swap the directory ``new`` in for the existing ``path``, restoring ``path`` if that fails."""
    old = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".old", dir=_parent(path)))
    path.rename(old)  # onto the empty directory just made: atomic on POSIX
    try:
        new.rename(path)
    except BaseException:
        old.rename(path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
