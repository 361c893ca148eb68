"""Synthetic showers for tests that need data but not physics (the reference simulator covers physics)."""

from __future__ import annotations

import numpy as np

from caloforge.data.geometry import Geometry
from caloforge.data.showers import ShowerSet

__all__ = ["make_showers"]


def make_showers(geometry: Geometry, n: int, seed: int, energies: tuple[float, ...] = (1000.0, 4000.0)) -> ShowerSet:
    """Random sparse showers whose voxel energies sum to about the incident energy."""
    rng = np.random.default_rng(seed)
    e_inc = rng.choice(np.asarray(energies), size=n)
    weights = rng.gamma(0.5, size=(n, geometry.n_voxels)) * (rng.random((n, geometry.n_voxels)) < 0.7)
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    showers = (weights * e_inc[:, None] * rng.normal(1.0, 0.05, size=(n, 1))).clip(min=0).astype(np.float32)
    return ShowerSet(e_inc, showers, geometry)
