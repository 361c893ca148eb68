"""numba for the cascade kernels, with its compiled-code cache outside the source tree.

Every numba module of the cascade imports ``nb`` from here, so the cache directory is chosen once,
when the transport is first used (not when :mod:`caloforge.refsim` is imported): the user's
``$NUMBA_CACHE_DIR`` if set, else ``~/.cache/caloforge/numba/<hash of the cascade sources>``. The hash
matters: numba checks only the file of a cached function, not the functions it calls from other
modules, so a changed kernel module gets a fresh cache. Only numba's configuration is changed, not
the process environment.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba as nb

__all__ = ["nb"]


def _cache_dir() -> str | None:
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except RuntimeError:  # no home directory: numba's default (next to the sources) rather than failing
        return None
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(Path(__file__).parent.glob("*.py"))))
    return str(base / "caloforge" / "numba" / digest.hexdigest()[:16])


if not os.environ.get("NUMBA_CACHE_DIR") and (_directory := _cache_dir()) is not None:
    nb.config.CACHE_DIR = _directory  # type: ignore[attr-defined]  # numba reads it when a cached kernel is made
