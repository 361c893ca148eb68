"""Safe output files: refuse to overwrite without ``force``, write atomically."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from caloforge.errors import OutputExistsError, OutputPathError

__all__ = ["atomic_dir", "atomic_path", "check_output"]


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
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=_parent(path))
    os.close(fd)
    tmp = Path(name)
    try:
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
    path = Path(path)
    if path.exists() and not path.is_dir():
        msg = f"expected an output directory path but {path} is a file"
        raise OutputPathError(msg)
    path = _check_new(path, force)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=_parent(path)))
    try:
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


def _replace_dir(new: Path, path: Path) -> None:
    """Swap the directory ``new`` in for the existing ``path``, restoring ``path`` if that fails."""
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=_parent(path)))
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
