"""The frozen-shower library's caches: on disk (one ``.npz`` per stack and settings) and in memory.

``$XDG_CACHE_HOME/caloforge/cascade-library`` (else ``~/.cache/...``): each file is keyed by the cascade sources'
hash, the stack and the settings the library depends on (``LIBRARY_FIELDS``), written atomically; a missing or
corrupt file is rebuilt. :func:`prepare_library` builds a missing one with progress (a first run on W/Si: minutes
of CPU), :func:`library_for` returns it (from memory, the disk, or a build).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import zipfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from caloforge.data.outputs import atomic_path
from caloforge.errors import CaloforgeError, ConfigError
from caloforge.refsim.cascade.calibrate import TRANSPORT_FIELDS
from caloforge.refsim.cascade.config import CascadeConfig
from caloforge.refsim.cascade.jit import cache_root, sources_digest
from caloforge.refsim.cascade.library import (
    LIBRARY_ANGLE_COS,
    LIBRARY_ARRAYS,
    LIBRARY_ENERGY_BINS,
    LIBRARY_PHASES,
    LIBRARY_SEED,
    ShowerLibrary,
    build_library,
)
from caloforge.refsim.materials import Material

__all__ = ["LIBRARY_FIELDS", "library_for", "library_path", "prepare_library"]

CACHE_VERSION = 1
LIBRARY_FIELDS = (*TRANSPORT_FIELDS, "hybrid_split_mev", "handoff_min_mev", "library_entries", "library_precision",
                  "calibration_energy_mev")
"""The settings a library depends on."""


def library_path(material: Material, config: CascadeConfig) -> Path:
    """The cache file of ``material``'s library with ``config``'s settings."""
    settings = {name: value for name, value in config.to_dict().items() if name in LIBRARY_FIELDS}
    key = json.dumps([CACHE_VERSION, sources_digest(), repr(material), repr(material.components), settings,
                      LIBRARY_ENERGY_BINS, LIBRARY_PHASES, LIBRARY_ANGLE_COS, LIBRARY_SEED], sort_keys=True)
    return cache_root("cascade-library") / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"


@lru_cache(maxsize=8)
def library_for(material: Material, config: CascadeConfig, jobs: int = 1) -> ShowerLibrary:
    """``material``'s library: from memory, else from the disk cache, else built with ``jobs`` processes (and saved).

    Raises:
        ConfigError: for a homogeneous material (a library needs a sampling stack).
    """
    _check_stack(material)
    lib = _load(material, config)
    return lib if lib is not None else _build_and_save(material, config, jobs)


def prepare_library(material: Material, config: CascadeConfig, jobs: int = 1,
                    progress: Callable[[int, int], None] | None = None) -> None:
    """Build and save ``material``'s library unless the disk cache has it, calling ``progress(done, total)`` per
    part of the build (a first run on W/Si: minutes of CPU, shown instead of a silent wait).

    Raises:
        ConfigError: for a homogeneous material (a library needs a sampling stack).
    """
    _check_stack(material)
    with contextlib.suppress(OSError, CaloforgeError):
        if library_path(material, config).is_file():
            return
    _build_and_save(material, config, jobs, progress)


def _check_stack(material: Material) -> None:
    if len(material.components) < 2:
        msg = f"expected a sampling stack (several sub-layers) but got {material.name!r}, in the shower library"
        raise ConfigError(msg)


def _load(material: Material, config: CascadeConfig) -> ShowerLibrary | None:
    bad = (OSError, RuntimeError, KeyError, ValueError, TypeError, zipfile.BadZipFile)
    with contextlib.suppress(*bad):  # no cache, or a bad one: rebuild
        with np.load(library_path(material, config), allow_pickle=False) as saved:
            return ShowerLibrary(**{name: saved[name] for name in saved.files
                                    if name != "period_mm"}, period_mm=float(saved["period_mm"]))
    return None


def _build_and_save(material: Material, config: CascadeConfig, jobs: int,
                    progress: Callable[[int, int], None] | None = None) -> ShowerLibrary:
    lib = build_library(material, config, jobs, progress)
    with contextlib.suppress(OSError, CaloforgeError):  # a read-only home only costs the rebuild
        path = library_path(material, config)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, force=True) as tmp, tmp.open("wb") as f:
            np.savez(f, **{n: getattr(lib, n) for n in LIBRARY_ARRAYS}, period_mm=np.float64(lib.period_mm))
    return lib
