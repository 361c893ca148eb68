"""The one batched generation path: a model, incident energies and conditions in, showers in MeV out.

Used by :meth:`caloforge.training.bundle.Bundle.generate`, by checkpoint selection during
training and, through the bundle, by the demo, the benchmarks and the evaluation commands,
so every number caloforge reports comes from the same code.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from numpy.typing import NDArray

from caloforge.models.base import GenerativeModel

__all__ = ["sample_showers"]


def sample_showers(
    model: GenerativeModel,
    energies: NDArray[np.float64],
    conditions: Mapping[str, NDArray[np.float64]] | None = None,
    *,
    generator: torch.Generator,
    batch_size: int = 10_000,
    out: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """Generate one shower per incident energy, in batches on the model's device.

    Args:
        model: A model (on any device; its first parameter's device is used).
        energies: Incident energies, MeV, shape (N,).
        conditions: The model's extra conditions, each shape (N,).
        generator: The noise generator, on the model's device; its state advances batch by batch.
        batch_size: Showers per forward pass (bounds the memory).
        out: A preallocated (N, V) float32 array to fill (e.g. rows of a larger array); allocated if None.

    Returns:
        The showers in MeV, float32, shape (N, V).
    """
    device = next(model.parameters()).device
    n = len(energies)
    if out is None:
        out = np.empty((n, model.n_voxels), dtype=np.float32)
    conditions = dict(conditions or {})
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size)
        e = torch.as_tensor(energies[rows], device=device)
        c = {name: torch.as_tensor(values[rows], device=device) for name, values in conditions.items()}
        out[rows] = model.sample(e, c, generator).float().cpu().numpy()
    return out
