"""Training data in bounded memory: one pass over the showers, the validation target, the selection chi2.

A training run needs the full showers only to draw batches (:mod:`caloforge.training.batches`).
Everything else is per-shower numbers, computed in one streamed pass (:func:`scan`): the layer
sums preprocessing is fitted on, the reference responses the checkpoint-selection chi2 compares
with, and the fingerprints of the data and of each model's training rows. A dataset-3 file of
20k showers (3.2 GB of float32) keeps 45 numbers per shower in memory this way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from caloforge.data.geometry import Geometry
from caloforge.data.showers import ShowerSet
from caloforge.data.source import ShowerDigest, Showers, chunk_rows, iter_showers
from caloforge.models.base import GenerativeModel
from caloforge.models.preprocess import ShowerSummary
from caloforge.models.sampling import sample_showers
from caloforge.runtime.progress import SILENT, Progress
from caloforge.training.shapes import ShapeAccumulator, ShapeReference, shower_columns
from caloforge.validation.features import readout_threshold
from caloforge.validation.metrics.chi2 import Chi2Result, response_chi2

if TYPE_CHECKING:
    from caloforge.training.bundle import Bundle

__all__ = ["Scan", "ValidationTarget", "bundle_response", "generated_response", "scan", "validation_chi2"]


@dataclass(frozen=True, eq=False)
class Scan:
    """Per-shower sums of a whole sample and the fingerprints of chosen row subsets.

    Attributes:
        summary: Energies, layer sums, responses and conditions of every shower.
        response_after_threshold: E_tot / E_inc after the readout threshold, (N,).
        fingerprints: :meth:`ShowerSet.fingerprint` of each requested subset, by name.
        feature_rows: The rows whose high-level columns were computed (the validation rows), increasing.
        features: Their columns (:func:`~caloforge.training.shapes.shower_columns`), (len(feature_rows), D).
    """

    summary: ShowerSummary
    response_after_threshold: NDArray[np.float64]
    fingerprints: dict[str, dict[str, Any]]
    feature_rows: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    features: NDArray[np.float32] | None = None


def _thresholded_response(showers: NDArray[np.float32], energies: NDArray[np.float64],
                          threshold: float) -> NDArray[np.float64]:
    """E_tot / E_inc after setting voxels below ``threshold`` to zero (as ``apply_threshold(...).response``)."""
    if threshold > 0:
        showers = np.where(showers < threshold, np.float32(0), showers)
    total: NDArray[np.float64] = showers.sum(axis=1, dtype=np.float64)
    return total / energies


def validation_chi2(reference: ShowerSet, generated: ShowerSet) -> Chi2Result:
    """The checkpoint-selection chi2 of E_tot/E_inc per incident energy, after the readout threshold on both samples.

    The same definition as the evaluation's (:func:`~caloforge.validation.metrics.chi2.response_chi2`):
    the bins cover both samples at every energy, so the value stays finite and grows when a
    model puts the showers of some energy far from the reference (an untrained model does).
    """
    threshold = readout_threshold(reference.geometry)
    ref = _thresholded_response(reference.showers, reference.energies, threshold)
    gen = _thresholded_response(generated.showers, generated.energies, threshold)
    return response_chi2(reference.energies, ref, generated.energies, gen)


def scan(data: Showers, subsets: Mapping[str, NDArray[np.int64]], threshold: float,
         progress: Progress = SILENT, feature_rows: NDArray[np.int64] | None = None) -> Scan:
    """Go once through ``data`` chunk by chunk; ``subsets`` are strictly increasing row indices to fingerprint.

    The high-level columns of the shape distance are computed for ``feature_rows`` (strictly
    increasing; the validation rows), so the validation side of checkpoint selection costs no second pass.
    """
    n, n_layers = len(data), data.geometry.n_layers
    layer_sums = np.empty((n, n_layers))
    response, response_thr = np.empty(n), np.empty(n)
    digests = {name: ShowerDigest(data, rows) for name, rows in subsets.items()}
    wanted = np.empty(0, np.int64) if feature_rows is None else np.asarray(feature_rows, np.int64)
    features: list[NDArray[np.float32]] = []
    start = 0
    with progress.task(f"read {n} showers", total=n, unit="showers") as bar:
        for chunk in iter_showers(data):
            stop = start + len(chunk)
            part = ShowerSummary.of(chunk)
            layer_sums[start:stop], response[start:stop] = part.layer_sums, part.response
            response_thr[start:stop] = _thresholded_response(chunk.showers, chunk.energies, threshold)
            for name, rows in subsets.items():
                local = rows[np.searchsorted(rows, start):np.searchsorted(rows, stop)] - start
                digests[name].update(chunk[local])
            local = wanted[np.searchsorted(wanted, start):np.searchsorted(wanted, stop)] - start
            if local.size:
                features.append(shower_columns(chunk[local], threshold))
            start = stop
            bar.update(stop)
    fingerprints = {name: digest.result() for name, digest in digests.items()}
    summary = ShowerSummary(data.energies, layer_sums, response, dict(data.conditions))
    columns = np.concatenate(features) if features else None
    return Scan(summary, response_thr, fingerprints, wanted, columns)


@dataclass(frozen=True, eq=False)
class ValidationTarget:
    """What checkpoints are compared with: the validation showers' energies, conditions and reference responses.

    Attributes:
        energies: Incident energies, MeV, (n,).
        conditions: Extra conditions, each (n,).
        response: Reference E_tot / E_inc after the readout threshold, (n,).
        geometry: The voxel geometry.
        threshold: The readout threshold, MeV.
        shapes: The validation side of the shape distance (None when the scan computed no columns).
    """

    energies: NDArray[np.float64]
    conditions: dict[str, NDArray[np.float64]]
    response: NDArray[np.float64]
    geometry: Geometry
    threshold: float
    shapes: ShapeReference | None = None

    @classmethod
    def from_scan(cls, data: Showers, result: Scan, rows: NDArray[np.int64], threshold: float,
                  with_shapes: bool = True) -> ValidationTarget:
        """The target of the showers ``rows`` of a scanned sample (with the shape reference if it has their columns
        and ``with_shapes``; the final bundle's chi2 needs none)."""
        shapes = None
        if with_shapes and result.features is not None and len(rows) >= 4:
            at = np.searchsorted(result.feature_rows, rows)
            if at.max() < len(result.feature_rows) and np.array_equal(result.feature_rows[at], rows):
                shapes = ShapeReference.from_columns(result.features[at], threshold)
        return cls(data.energies[rows], {k: v[rows] for k, v in data.conditions.items()},
                   result.response_after_threshold[rows], data.geometry, threshold, shapes)

    def __len__(self) -> int:
        return int(self.energies.shape[0])

    def chi2(self, generated: NDArray[np.float64]) -> Chi2Result:
        """The selection chi2 (see :func:`validation_chi2`) of generated responses, (n,)."""
        return response_chi2(self.energies, self.response, self.energies, generated)


def generated_response(model: GenerativeModel, target: ValidationTarget, seed: int,
                       shapes: ShapeAccumulator | None = None) -> NDArray[np.float64] | None:
    """Responses after the threshold of one generated shower per validation shower; None if any voxel is not finite.

    Generated in batches of at most 10000 showers (fewer for large geometries, 64 MiB per batch)
    from one seeded noise stream, so the memory is bounded and the numbers are those of
    :func:`~caloforge.models.sampling.sample_showers` for small geometries. Each batch is also
    added to ``shapes`` (the shape distance of the same showers).
    """
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    size = min(10_000, chunk_rows(target.geometry.n_voxels))
    out = np.empty(len(target))
    for start in range(0, len(target), size):
        rows = slice(start, start + size)
        showers = sample_showers(model, target.energies[rows], {k: v[rows] for k, v in target.conditions.items()},
                                 generator=generator, batch_size=size)
        if not np.isfinite(showers).all():
            return None
        out[rows] = _thresholded_response(showers, target.energies[rows], target.threshold)
        if shapes is not None:
            shapes.add_showers(ShowerSet(target.energies[rows], showers, target.geometry))
    return out


def bundle_response(bundle: Bundle, target: ValidationTarget, seed: int, device: str) -> NDArray[np.float64]:
    """Responses after the threshold of a bundle's showers at the target's energies, generated in bounded slices.

    A slice holds at most 64 MiB of showers (:func:`~caloforge.data.source.chunk_rows`: all of them
    for dataset 1, with ``seed``; slice ``k`` of a large geometry uses ``seed + k``).
    """
    size = chunk_rows(target.geometry.n_voxels)
    out = np.empty(len(target))
    for k, start in enumerate(range(0, len(target), size)):
        rows = slice(start, start + size)
        conditions = {name: target.conditions[name][rows] for name in bundle.condition_names}
        showers = bundle.generate(target.energies[rows], conditions, device=device, seed=seed + k)
        out[rows] = _thresholded_response(showers.showers, showers.energies, target.threshold)
    return out
