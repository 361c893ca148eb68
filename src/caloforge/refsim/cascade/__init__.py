"""Particle-level transport for the reference simulator (``physics="cascade"``).

Photons, electrons and positrons (and charged pions) are followed through the real
sub-layers of the detector (absorber and active layers of each sampling cell); the voxels
are filled from the energy deposited in the active layers. Below an energy split a
particle may deposit a GFLASH sub-shower from where it is (the hybrid). See
``docs/refsim.md`` ("cascade mode").

numba compiles the kernels on first use (about 20 s) and caches them under the user cache
directory (``$NUMBA_CACHE_DIR``, default ``~/.cache/caloforge/numba/<hash of these sources>``), not
in the source tree (:mod:`.jit`).
"""

from __future__ import annotations

from typing import Any

from caloforge.refsim.cascade.config import PHYSICS, CascadeConfig, check_physics

__all__ = ["PHYSICS", "CascadeConfig", "CascadeResult", "cascade_chunk", "cascade_voxels", "check_physics"]


def __getattr__(name: str) -> Any:
    """The numba parts load on first use (importing numba costs about half a second)."""
    if name in ("CascadeResult", "cascade_chunk", "cascade_voxels"):
        # numba's import time (about 0.5 s): on first use only
        from caloforge.refsim.cascade import run

        return getattr(run, name)
    msg = f"module 'caloforge.refsim.cascade' has no attribute '{name}'"
    raise AttributeError(msg)
