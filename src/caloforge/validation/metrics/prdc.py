"""Precision, recall, density and coverage (k nearest neighbours) on the voxels.

Each shower is represented by log10 of its voxel energies (MeV), empty voxels set
to 0.1 MeV first. With the radius of each reference point to its k-th nearest
reference neighbour (and likewise for generated points):

* precision: fraction of generated showers inside some reference ball;
* recall: fraction of reference showers inside some generated ball;
* density: (1/k) x mean number of reference balls containing a generated shower;
* coverage: fraction of reference balls that contain at least one generated shower.

An optional metric: all four are near 1 for identical distributions (density
fluctuates around 1). Samples larger than ``max_samples`` are subsampled (seeded).

References:
    M. F. Naeem et al., "Reliable Fidelity and Diversity Metrics for Generative
    Models", arXiv:2002.09797; T. Kynkäänniemi et al., arXiv:1904.06991.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from caloforge.errors import DataError

__all__ = ["PRDCResult", "prdc", "prdc_inputs", "prdc_rows"]


@dataclass(frozen=True)
class PRDCResult:
    """Precision, recall, density and coverage; higher is better (about 1 for matching samples)."""

    precision: float
    recall: float
    density: float
    coverage: float
    k: int
    n_samples: int
    seed: int
    higher_is_better = True


def prdc_inputs(voxels: NDArray[np.floating], empty: float = 0.1) -> NDArray[np.float32]:
    """log10 of the voxel energies (MeV), empty voxels (0) set to ``empty`` MeV first.

    Example:
        >>> prdc_inputs(np.array([[0.0, 1000.0]])).round(4).tolist()
        [[-1.0, 3.0]]
    """
    v = np.asarray(voxels, dtype=np.float32)
    return np.log10(np.where(v > 0, v, np.float32(empty)))


def _distances(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    return torch.cat([torch.cdist(a[s : s + chunk], b) for s in range(0, len(a), chunk)])


def _kth_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    d = _distances(x, x)
    return d.kthvalue(k + 1, dim=1).values  # the 0 self-distance is the 1st


def prdc_rows(n_reference: int, n_generated: int, max_samples: int = 10_000, seed: int = 0
              ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The rows of each sample that :func:`prdc` uses, in its order (a caller may then read only those).

    Example:
        >>> r, g = prdc_rows(100, 50, max_samples=20, seed=0)
        >>> len(r), len(g), bool(r.max() < 100 and g.max() < 50)
        (20, 20, True)
    """
    n = min(n_reference, n_generated, max_samples)
    rng = np.random.default_rng(seed)
    return rng.choice(n_reference, n, replace=False), rng.choice(n_generated, n, replace=False)


def prdc(
    reference: NDArray[np.floating],
    generated: NDArray[np.floating],
    k: int = 5,
    max_samples: int = 10_000,
    seed: int = 0,
    subsampled: bool = False,
) -> PRDCResult:
    """Precision / recall / density / coverage of generated against reference points.

    Args:
        reference: Reference points, (N_r, D) (e.g. :func:`prdc_inputs` of the voxels).
        generated: Generated points, (N_g, D).
        k: Neighbour rank defining the ball radii.
        max_samples: Use at most this many points of each sample (memory grows as its square).
        seed: Seed of the subsampling.
        subsampled: The points are already the rows of :func:`prdc_rows` (in its order, for this
            ``max_samples`` and ``seed``): used as they are, with the same result.

    Raises:
        DataError: for mismatched widths, fewer than k + 1 points, or ``subsampled`` points of other sizes.
    """
    ref = np.asarray(reference, np.float32)
    gen = np.asarray(generated, np.float32)
    if ref.ndim != 2 or gen.ndim != 2 or ref.shape[1] != gen.shape[1]:
        msg = f"expected two (N, D) arrays with the same D but got {ref.shape} and {gen.shape}, in prdc"
        raise DataError(msg)
    n = min(len(ref), len(gen), max_samples)
    if n <= k:
        msg = f"expected more than k={k} points per sample but got {n}, in prdc"
        raise DataError(msg)
    if subsampled:
        if not len(ref) == len(gen) == n:
            msg = f"expected {n} subsampled points per sample but got {len(ref)} and {len(gen)}, in prdc"
            raise DataError(msg)
        r, g = torch.from_numpy(ref), torch.from_numpy(gen)
    else:
        rows_r, rows_g = prdc_rows(len(ref), len(gen), max_samples, seed)
        r, g = torch.from_numpy(ref[rows_r]), torch.from_numpy(gen[rows_g])
    radius_r = _kth_radius(r, k)
    radius_g = _kth_radius(g, k)
    d_rg = _distances(r, g)  # (n_r, n_g)
    inside_r = d_rg < radius_r[:, None]  # generated j inside the ball of reference i
    precision = inside_r.any(dim=0).float().mean()
    recall = (d_rg < radius_g[None, :]).any(dim=1).float().mean()
    density = inside_r.sum(dim=0).float().mean() / k
    coverage = (d_rg.min(dim=1).values < radius_r).float().mean()
    return PRDCResult(float(precision), float(recall), float(density), float(coverage), k, n, seed)
