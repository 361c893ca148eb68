"""numba for the cascade kernels, with its compiled-code cache outside the source tree; where the cascade's
caches live and the hash of its sources that keys them.

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
from functools import cache
from pathlib import Path

import numba as nb

__all__ = ["cache_root", "nb", "sources_digest"]


@cache
def sources_digest() -> str:
    """Hash of the cascade's sources, in the key of every cascade cache (numba's, the calibration's, the
    library's): nothing cached can outlive a change of the transport (with a version number bumped by hand,
    one was forgotten: a machine's cached W/Si calibration kept the sampling term 0.126 and sampling fraction
    0.02905 of an older transport, whose own were 0.134 and 0.02888)."""
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(Path(__file__).parent.glob("*.py")))).hexdigest()


def cache_root(kind: str) -> Path:
    """``$XDG_CACHE_HOME/caloforge/<kind>``, else ``~/.cache/caloforge/<kind>`` (RuntimeError without a home)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "caloforge" / kind


def _cache_dir() -> str | None:
    try:
        return str(cache_root("numba") / sources_digest()[:16])
    except RuntimeError:  # no home directory: numba's default (next to the sources) rather than failing
        return None


if not os.environ.get("NUMBA_CACHE_DIR") and (_directory := _cache_dir()) is not None:
    nb.config.CACHE_DIR = _directory  # type: ignore[attr-defined]  # numba reads it when a cached kernel is made
