"""Per-shower random streams and the kernel's view of the config.

A shower's seed depends only on the run's seed and the shower's index in the run, so the
output depends on neither the number of jobs nor the chunk size.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from caloforge.refsim.cascade.config import CascadeConfig

__all__ = ["config_array", "shower_seeds"]

F64 = NDArray[np.float64]
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def shower_seeds(seed: int, start: int, n: int, stream: int = 0) -> NDArray[np.int64]:
    """32-bit seeds of showers ``start .. start+n-1`` of a run seeded by ``seed`` (``stream`` picks a use).

    Example:
        >>> bool((shower_seeds(7, 0, 10)[3:5] == shower_seeds(7, 3, 2)).all())
        True
    """
    base = np.random.SeedSequence(seed, spawn_key=(2, stream)).generate_state(1, np.uint64)[0]
    idx = np.arange(start, start + n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        mixed = _splitmix(base ^ (idx * _GOLDEN))
    return (mixed >> np.uint64(32)).astype(np.int64)


def config_array(config: CascadeConfig, hybrid: bool | None = None, library: bool = False) -> F64:
    """The cuts in the order the kernel reads them (``CONFIG_FIELDS``); ``library``: the hand-offs replay the
    frozen-shower library (the kernel then transports the primary and the particles below the hand-off minimum)."""
    use_hybrid = config.hybrid if hybrid is None else hybrid
    return np.array([
        config.brems_cut_mev, config.delta_cut_mev, config.electron_cut_mev, config.photon_cut_mev,
        config.max_step_x0, config.max_loss_fraction, config.hybrid_split_mev if use_hybrid else 0.0,
        config.handoff_min_mev, config.handoff_min_cos, 1.0 if config.pion_model else 0.0, config.max_scatter_rad,
        1.0 if library else 0.0,
    ])


