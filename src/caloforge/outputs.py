"""Safe output files: refuse to overwrite without ``force``, write atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from caloforge.errors import OutputExistsError, OutputPathError

__all__ = ["atomic_path", "check_output"]


def check_output(path: str | Path, force: bool = False) -> Path:
    """Check that ``path`` may be written: its directory exists and is writable, and it is new or ``force`` is set.

    Raises:
        OutputExistsError: if the path exists and ``force`` is false.
        OutputPathError: if the directory is missing or not writable, or the path is a directory.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path()
    if path.is_dir():
        msg = f"expected an output file path but {path} is a directory"
        raise OutputPathError(msg)
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
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
