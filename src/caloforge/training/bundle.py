"""Bundles: a trained generator on disk, loaded without unpickling.

A bundle is a directory with ``model.safetensors`` (the weights) and ``bundle.json``
(family, config, fitted preprocessing, geometry, condition names, training-data
fingerprint, training history, validation metrics, caloforge version). A *split* bundle
holds one such bundle per incident-energy range in sub-directories and a ``bundle.json``
with the split energies; :meth:`Bundle.generate` sends each energy to its model.

Example:
    >>> bundle = load("runs/photons/bundle")  # doctest: +SKIP
    >>> showers = bundle.generate([1024.0] * 100, seed=1)  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from caloforge.data.geometry import Geometry
from caloforge.data.showers import ShowerSet
from caloforge.errors import CaloforgeError, CheckpointError
from caloforge.generator import Request, check_request, generate_routed, reference_inputs
from caloforge.models import get_family
from caloforge.models.base import GenerativeModel, check_model_size
from caloforge.models.preprocess import Preprocessing
from caloforge.models.sampling import sample_showers
from caloforge.runtime.hardware import resolve_device
from caloforge.training.bundle_format import BUNDLE_JSON, WEIGHTS, part_names, read_info, read_weights

__all__ = ["Bundle", "ExtrapolationWarning", "load"]


class ExtrapolationWarning(UserWarning):
    """Incident energies outside the range a model was trained on."""


class Bundle:
    """A loaded bundle: one model, or one model per incident-energy range. Use :func:`load`.

    Attributes:
        path: The bundle directory.
        info: The parsed ``bundle.json``.
        geometry: The voxel geometry of the generated showers.
        condition_names: Names of the extra conditions :meth:`generate` needs.
        models: The models, ordered by energy range.
        splits: The split energies (MeV) between consecutive models.
        device: Where :meth:`generate` runs when its call names no device (``"auto"``: CUDA when present).
    """

    def __init__(self, path: Path, info: dict[str, Any], models: list[GenerativeModel], splits: tuple[float, ...],
                 geometry: Geometry) -> None:
        self.path = path
        self.info = info
        self.models = models
        self.splits = splits
        self.geometry = geometry
        self.condition_names = tuple(models[0].preprocessing.conditions.names)
        self.device: str | torch.device = "auto"

    def __repr__(self) -> str:
        lo, hi = self.energy_range
        return (f"Bundle(path='{self.path}', family='{self.family}', models={len(self.models)}, "
                f"geometry='{self.geometry.name}', energies={lo:g}-{hi:g} MeV)")

    @property
    def family(self) -> str:
        """The model family name."""
        return str(self.info.get("family") or self.info["members"][0]["family"])

    @property
    def energy_range(self) -> tuple[float, float]:
        """(E_min, E_max) in MeV of the training data."""
        return self.models[0].preprocessing.energy.e_min, self.models[-1].preprocessing.energy.e_max

    def generate(
        self,
        energies: ArrayLike,
        conditions: Mapping[str, ArrayLike] | None = None,
        batch_size: int = 10_000,
        device: str | torch.device | None = None,
        seed: int = 0,
    ) -> ShowerSet:
        """Generate one shower per incident energy (:class:`caloforge.generator.Generator`).

        Args:
            energies: Incident energies, MeV, shape (N,).
            conditions: The extra conditions the model was trained with, each shape (N,).
            batch_size: Showers per forward pass (bounds the memory).
            device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ...; None: :attr:`device`.
            seed: Seed of the noise; the same seed, batch size and inputs give the same showers.

        Returns:
            The generated showers (MeV) with the requested energies and conditions.

        Warns:
            ExtrapolationWarning: if energies lie outside the trained range.
        """
        request = check_request(energies, conditions, seed=seed, batch_size=batch_size,
                                condition_names=self.condition_names, where=f"generate ({self.path})",
                                n_voxels=self.geometry.n_voxels)
        e = request.energies
        lo, hi = self.energy_range
        outside = int(np.sum((e < lo * (1 - 1e-6)) | (e > hi * (1 + 1e-6))))
        if outside:
            msg = (f"{outside} of {e.size} incident energies lie outside the trained range {lo:g}-{hi:g} MeV "
                   f"of {self.path}; the model extrapolates there")
            warnings.warn(msg, ExtrapolationWarning, stacklevel=2)
        dev = resolve_device(self.device if device is None else device)

        def sample(k: int, part: Request) -> NDArray[np.float32]:
            return sample_showers(_on(self.models[k], dev), part.energies, part.conditions,
                                  batch_size=part.batch_size,
                                  generator=torch.Generator(device=dev).manual_seed(part.seed + k))

        showers = generate_routed(request, self.splits, self.geometry.n_voxels, sample)
        return ShowerSet(e, showers, self.geometry, request.conditions)

    def generate_like(self, reference: ShowerSet | str | Path, batch_size: int = 10_000,
                      device: str | torch.device | None = None, seed: int = 0) -> ShowerSet:
        """One shower per reference shower: its incident energies and (the model's) conditions.

        Args:
            reference: Showers, or a CaloChallenge file (only its energies and conditions are read).
            batch_size: Showers per forward pass.
            device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...; None: :attr:`device`.
            seed: Seed of the noise.

        Raises:
            GeometryMismatchError: if the reference has another geometry than the model.
            ConfigError: if the reference lacks a condition the model needs.
        """
        energies, conditions = reference_inputs(self, reference)
        return self.generate(energies, conditions, batch_size=batch_size, device=device, seed=seed)


def _load_model(path: Path, info: dict[str, Any], trust_unverified: bool) -> tuple[GenerativeModel, Geometry]:
    description = path / BUNDLE_JSON
    try:
        family = get_family(info["family"])
        config = family.config_class.from_dict(info["config"])
        preprocessing = Preprocessing.from_dict(info["preprocessing"])
        geometry = Geometry.from_dict(info["geometry"])
    except (CaloforgeError, KeyError, TypeError, ValueError, AttributeError) as err:
        msg = f"expected a complete model description in {description} but: {err}"
        raise CheckpointError(msg) from None
    if not preprocessing.check_geometry(geometry):
        sizes = [layer.n_voxels for layer in geometry.layers]
        msg = (f"expected the geometry's voxels per layer {sizes} to match the preprocessing's "
               f"{list(preprocessing.showers.layer_sizes)} but they differ, in {description}")
        raise CheckpointError(msg)
    try:
        check_model_size(family, config, preprocessing, training=False, error=CheckpointError)
        model = family(config, preprocessing)
    except CheckpointError as err:
        msg = f"{err}; in {description}"
        raise CheckpointError(msg) from None
    except (CaloforgeError, RuntimeError, ValueError) as err:
        msg = f"expected a model that can be built from {description} but: {str(err).splitlines()[0]:.200}"
        raise CheckpointError(msg) from None
    state = read_weights(path, info, trust_unverified)
    try:
        model.load_state_dict(state, strict=True)
    except Exception as err:  # missing, unexpected or mis-shaped tensors
        detail = " ".join(str(err).split())  # torch lists the missing and unexpected keys over several lines
        msg = f"expected weights matching the model in {path / WEIGHTS} but: {detail:.300}"
        raise CheckpointError(msg) from None
    model.eval()
    return model, geometry


def load(path: str | Path, trust_unverified: bool = False) -> Bundle:
    """Load a bundle directory (or a training run directory holding ``bundle/``); never unpickles.

    Args:
        path: The bundle (or run) directory.
        trust_unverified: Load weights whose bundle.json records no sha256 (a warning is logged);
            by default such a bundle is refused, as its weights cannot be verified.

    Raises:
        CheckpointError: if the bundle is missing, its JSON is invalid or holds NaN/inf, its geometry does
            not match its preprocessing, its model would not fit in memory, or its weights are missing,
            corrupt (sha256 mismatch or none recorded) or do not match the model.
    """
    path = Path(path)
    if not (path / BUNDLE_JSON).is_file() and (path / "bundle" / BUNDLE_JSON).is_file():
        path = path / "bundle"
    info = read_info(path)
    if info.get("kind") == "split":
        names = part_names(path, info)
        parts = [read_info(path / name) for name in names]
        loaded = [_load_model(path / name, p, trust_unverified) for name, p in zip(names, parts, strict=True)]
        if any(g != loaded[0][1] for _, g in loaded):
            msg = f"expected the parts of the split bundle {path} to share one geometry but they differ"
            raise CheckpointError(msg)
        info = {**info, "members": parts}
        splits = tuple(float(s) for s in info["splits"])
        return Bundle(path, info, [m for m, _ in loaded], splits, loaded[0][1])
    model, geometry = _load_model(path, info, trust_unverified)
    return Bundle(path, info, [model], (), geometry)


def _on(model: GenerativeModel, device: torch.device) -> GenerativeModel:
    """``model`` on ``device``; moved only when it is elsewhere (``Module.to`` walks every submodule)."""
    here = next(model.parameters()).device
    same = here.type == device.type and (device.index is None or here.index == device.index)
    return model if same else model.to(device)
