"""Memory and disk budgets: refuse work that cannot fit before allocating or writing anything.

A tiny HDF5 file can declare a billion showers, and a disk can fill half-way through a
file. Callers estimate what they are about to need and call :func:`check_memory` or
:func:`check_disk`, which raise a one-line caloforge error saying what is needed, what
is available and what to do instead.

Example:
    >>> check_memory(1024, "a small buffer")  # passes silently
    >>> available_memory_bytes() > 0
    True
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from caloforge.errors import CaloforgeError, DataError, OutputPathError

__all__ = [
    "DISK_MARGIN_BYTES",
    "MEMORY_FRACTION",
    "available_memory_bytes",
    "check_disk",
    "check_memory",
    "format_bytes",
    "free_disk_bytes",
]

MEMORY_FRACTION = 0.8
"""Share of the available memory one request may take; the rest is left to temporaries and other processes."""

DISK_MARGIN_BYTES = 1 << 20
"""Free space kept in reserve on top of every disk request (HDF5 metadata, B-tree growth)."""

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNLIMITED = 1 << 62  # cgroup v1 writes a huge number for "no limit"


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit that keeps the number >= 1, e.g. ``'1.5 GiB'``.

    Example:
        >>> format_bytes(1536 * 1024**2)
        '1.5 GiB'
    """
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop always returns


def _read_int(path: Path) -> int | None:
    """The integer in a one-line system file, or None when it is absent, ``max`` or unreadable."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available() -> int | None:
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024  # kB
    return None


def _cgroup_dirs() -> list[Path]:
    """The cgroup directories of this process (v2 unified path, v1 memory controller), plus the root."""
    dirs = [_CGROUP_ROOT, _CGROUP_ROOT / "memory"]
    try:
        entries = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return dirs
    for entry in entries:
        _, controllers, rel = [*entry.split(":", 2), "", ""][:3]
        rel = rel.lstrip("/")
        if rel and controllers == "":  # v2
            dirs.insert(0, _CGROUP_ROOT / rel)
        elif rel and "memory" in controllers.split(","):  # v1
            dirs.insert(0, _CGROUP_ROOT / "memory" / rel)
    return dirs


def _cgroup_available() -> int | None:
    """Memory left under the tightest cgroup limit of this process, or None when there is no limit."""
    best: int | None = None
    for directory in _cgroup_dirs():
        for limit_name, usage_name in (("memory.max", "memory.current"),
                                       ("memory.limit_in_bytes", "memory.usage_in_bytes")):
            limit = _read_int(directory / limit_name)
            if limit is None or limit >= _UNLIMITED:
                continue
            usage = _read_int(directory / usage_name) or 0
            left = max(limit - usage, 0)
            best = left if best is None else min(best, left)
    return best


def _sysconf_available() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def available_memory_bytes() -> int:
    """Bytes of memory this process can still allocate without swapping or being killed.

    The smallest of: Linux's ``MemAvailable`` (``/proc/meminfo``), what is left under a
    cgroup memory limit (containers, batch systems), and, when neither is readable, the
    free physical pages from ``os.sysconf``. Returns a very large number when nothing
    can be read, so that an unknown platform never blocks work.
    """
    candidates = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    if not candidates:
        fallback = _sysconf_available()
        candidates = [fallback] if fallback is not None else [_UNLIMITED]
    return min(candidates)


def check_memory(
    nbytes: float, what: str, hint: str = "", error: type[CaloforgeError] = DataError
) -> None:
    """Refuse to allocate ``nbytes`` when it exceeds :data:`MEMORY_FRACTION` of the available memory.

    Args:
        nbytes: The estimated peak bytes of the work (include temporaries and copies).
        what: What needs the memory, with where it comes from, e.g. ``"reading 1000000 showers of x.h5"``.
        hint: What to do instead, appended to the message (e.g. ``"use caloforge.data.io.iter_chunks"``).
        error: The caloforge error type to raise (DataError for data, ConfigError for settings, ...).

    Raises:
        CaloforgeError: of type ``error``, in one line: needed, available, and the hint.
    """
    available = available_memory_bytes()
    if nbytes > MEMORY_FRACTION * available:
        also = f"; {hint}" if hint else ""
        msg = (
            f"expected {what} to fit in memory but it needs {format_bytes(nbytes)} and only "
            f"{format_bytes(available)} is available ({MEMORY_FRACTION:.0%} of it may be used){also}"
        )
        raise error(msg)


def free_disk_bytes(path: str | Path) -> int:
    """Bytes an unprivileged user may still write on the file system holding ``path``.

    ``path`` need not exist: its nearest existing parent is asked.
    """
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return int(shutil.disk_usage(probe).free)


def check_disk(path: str | Path, nbytes: float, what: str) -> None:
    """Refuse to write ``nbytes`` (plus :data:`DISK_MARGIN_BYTES`) where the file system cannot hold them.

    Args:
        path: The file (or directory) about to be written.
        nbytes: The bytes about to be written (an upper bound, e.g. uncompressed).
        what: What is being written, e.g. ``"showers 0..9999"``.

    Raises:
        OutputPathError: naming the path, what is needed and what is free.
    """
    try:
        free = free_disk_bytes(path)
    except OSError as err:
        msg = f"expected to find the free disk space for {path} but could not ({err.strerror or err})"
        raise OutputPathError(msg) from None
    needed = nbytes + DISK_MARGIN_BYTES
    if needed > free:
        msg = (
            f"expected {format_bytes(needed)} of free disk space to write {what} but got only "
            f"{format_bytes(free)} free, in {path} (no space left on the device); free some space "
            "or choose another output path"
        )
        raise OutputPathError(msg)
