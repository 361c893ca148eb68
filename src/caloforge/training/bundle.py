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

import hashlib
import json
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from caloforge._version import __version__
from caloforge.data.checks import check_incident_energies, check_integer, check_seed, to_real_array
from caloforge.data.geometry import Geometry
from caloforge.data.outputs import atomic_dir, atomic_path
from caloforge.data.showers import ShowerSet
from caloforge.errors import CaloforgeError, CheckpointError, ConfigError
from caloforge.models import get_family
from caloforge.models.base import FamilyConfig, GenerativeModel
from caloforge.models.preprocess import Preprocessing
from caloforge.runtime import resources
from caloforge.training.bundle_format import (
    BUNDLE_FORMAT,
    BUNDLE_JSON,
    WEIGHTS,
    part_names,
    read_info,
    read_weights,
    strict_json,
    weights_sha256,
)

__all__ = ["BUNDLE_FORMAT", "Bundle", "ExtrapolationWarning", "check_model_size", "fingerprint", "load",
           "resolve_device", "save_model", "save_split"]


class ExtrapolationWarning(UserWarning):
    """Incident energies outside the range a model was trained on."""


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` when present.

    Raises:
        ConfigError: for another name, or a device this machine does not have (no GPU, or N >= the GPU count).
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        msg = f"expected a device 'auto', 'cpu' or 'cuda[:N]' but got {device!r}"
        raise ConfigError(msg) from err
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            msg = f"expected a CUDA device but none is available, for device '{device}'; use --device cpu (or auto)"
            raise ConfigError(msg)
        if dev.index is not None and dev.index >= count:
            msg = f"expected a CUDA device index from 0 to {count - 1} but got '{device}'; this machine has {count}"
            raise ConfigError(msg)
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        msg = f"expected an Apple MPS device but none is available, for device '{device}'; use --device cpu"
        raise ConfigError(msg)
    elif dev.type not in ("cpu", "cuda", "mps"):
        msg = f"expected a device 'auto', 'cpu' or 'cuda[:N]' but got {device!r}"
        raise ConfigError(msg)
    return dev


def check_model_size(
    family: type[GenerativeModel],
    config: FamilyConfig,
    preprocessing: Preprocessing,
    training: bool = True,
    error: type[CaloforgeError] = ConfigError,
) -> int:
    """Refuse a model too large for the available memory, before allocating it.

    The model is built on PyTorch's ``meta`` device, which allocates nothing, to count its
    parameters and buffers. Training needs about 16 bytes per parameter (float32 weights,
    gradients and Adam's two moments), loading 8 (the weights file's tensors and the model).

    Args:
        family: The model class, e.g. ``get_family("gan")``.
        config: Its config.
        preprocessing: The fitted preprocessing (sets the input and output widths).
        training: Whether the model is about to be trained (else loaded for generation).
        error: The error to raise: ConfigError when training, CheckpointError when loading a bundle.

    Returns:
        The number of parameters.

    Raises:
        CaloforgeError: of type ``error``, naming the parameter count, the memory needed and available.
    """
    with torch.device("meta"):
        model = family(config, preprocessing)
    n_params = sum(p.numel() for p in model.parameters())
    n_buffers = sum(b.numel() for b in model.buffers())
    nbytes = 4 * (n_params * (4 if training else 2) + n_buffers * (1 if training else 2))
    what = f"a {family.__name__} with {n_params:,} parameters ({'training' if training else 'loading'})"
    resources.check_memory(nbytes, what, "reduce the layer sizes in its config", error)
    return n_params


def fingerprint(data: ShowerSet) -> dict[str, Any]:
    """A fingerprint of training data: sha256 of the energies, showers and conditions, plus counts."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(data.energies).tobytes())
    digest.update(np.ascontiguousarray(data.showers).tobytes())
    for name in sorted(data.conditions):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(data.conditions[name]).tobytes())
    distinct = data.distinct_energies()
    return {"sha256": digest.hexdigest(), "n_showers": len(data), "geometry_hash": data.geometry.hash,
            "energies": None if distinct is None else [float(e) for e in distinct],
            "energy_range": [float(data.energies.min()), float(data.energies.max())]}


def save_model(
    path: str | Path,
    model: GenerativeModel,
    family: str,
    geometry: Geometry,
    metadata: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write ``model`` as a bundle directory (atomically).

    Args:
        path: The bundle directory.
        model: A trained model (any device).
        family: Its registered family name.
        geometry: The voxel geometry.
        metadata: Extra JSON entries: ``data`` (fingerprint), ``history``, ``validation``, ...;
            non-finite numbers are written as null.
        force: Replace an existing bundle.

    Raises:
        OutputExistsError: if ``path`` exists and ``force`` is false.
        OutputPathError: if its parent directory is missing or not writable.
    """
    from safetensors.torch import save

    path = Path(path)
    info = {"format": BUNDLE_FORMAT, "kind": "model", "family": family, "config": model.config.to_dict(),
            "preprocessing": model.preprocessing.to_dict(), "geometry": geometry.to_dict(),
            "conditions": list(model.preprocessing.conditions.names), "caloforge_version": __version__,
            **dict(metadata or {})}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = save(state, metadata={"format": "pt"})  # save_file would make the file 0o600
    info["weights_sha256"] = weights_sha256(weights)
    with atomic_dir(path, force) as tmp:
        (tmp / WEIGHTS).write_bytes(weights)
        (tmp / BUNDLE_JSON).write_text(strict_json(info))
    return path


def update_history(path: str | Path, history: Sequence[Mapping[str, Any]]) -> None:
    """Replace the training history in the bundle at ``path`` (atomically; the weights are untouched).

    The bundle is saved when a checkpoint improves; at the end of training its history is
    completed with the rows after the selected checkpoint.
    """
    target = Path(path) / BUNDLE_JSON
    info = json.loads(target.read_text(encoding="utf-8"))
    info["history"] = list(history)
    with atomic_path(target, force=True) as tmp:
        tmp.write_text(strict_json(info), encoding="utf-8")


def save_split(
    path: str | Path,
    parts: Sequence[str | Path],
    splits: Sequence[float],
    metadata: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Combine model bundles, one per incident-energy range, into a split bundle.

    Args:
        path: The split bundle directory.
        parts: Model bundles, ordered by energy; they are copied into ``path``.
        splits: The ``len(parts) - 1`` split energies (MeV); energy E goes to range
            ``i`` with ``splits[i-1] <= E < splits[i]``.
        metadata: Extra JSON entries; non-finite numbers are written as null.
        force: Replace an existing bundle.

    Raises:
        ConfigError: if the split energies do not match the parts.
        OutputExistsError: if ``path`` exists and ``force`` is false.
        OutputPathError: if its parent directory is missing or not writable.
    """
    path = Path(path)
    if len(splits) != len(parts) - 1 or list(splits) != sorted(splits):
        msg = f"expected {len(parts) - 1} increasing split energies but got {list(splits)}"
        raise ConfigError(msg)
    first = load(parts[0])
    names = [f"range-{i}" for i in range(len(parts))]
    info = {"format": BUNDLE_FORMAT, "kind": "split", "splits": [float(s) for s in splits], "parts": names,
            "geometry": first.geometry.to_dict(), "conditions": list(first.condition_names),
            "caloforge_version": __version__, **dict(metadata or {})}
    with atomic_dir(path, force) as tmp:
        for name, part in zip(names, parts, strict=True):
            shutil.copytree(part, tmp / name)
        (tmp / BUNDLE_JSON).write_text(strict_json(info))
    return path


class Bundle:
    """A loaded bundle: one model, or one model per incident-energy range. Use :func:`load`.

    Attributes:
        path: The bundle directory.
        info: The parsed ``bundle.json``.
        geometry: The voxel geometry of the generated showers.
        condition_names: Names of the extra conditions :meth:`generate` needs.
        models: The models, ordered by energy range.
        splits: The split energies (MeV) between consecutive models.
    """

    def __init__(self, path: Path, info: dict[str, Any], models: list[GenerativeModel], splits: tuple[float, ...],
                 geometry: Geometry) -> None:
        self.path = path
        self.info = info
        self.models = models
        self.splits = splits
        self.geometry = geometry
        self.condition_names = tuple(models[0].preprocessing.conditions.names)

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
        device: str | torch.device = "auto",
        seed: int = 0,
    ) -> ShowerSet:
        """Generate one shower per incident energy.

        Args:
            energies: Incident energies, MeV, shape (N,).
            conditions: The extra conditions the model was trained with, each shape (N,).
            batch_size: Showers per forward pass (bounds the memory).
            device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ...
            seed: Seed of the noise; the same seed, batch size and inputs give the same showers.

        Returns:
            The generated showers (MeV) with the requested energies and conditions.

        Warns:
            ExtrapolationWarning: if energies lie outside the trained range.
        """
        where = f"in generate ({self.path})"
        e = check_incident_energies(energies, where, allow_empty=False)
        seed = check_seed(seed, where)
        batch_size = check_integer(batch_size, "batch_size", 1, 2**62, f"generate ({self.path})")
        cond = {k: to_real_array(v, np.float64, f"condition '{k}' {where}").reshape(-1)
                for k, v in dict(conditions or {}).items()}
        if sorted(cond) != sorted(self.condition_names) or any(v.shape != e.shape for v in cond.values()):
            got = {k: v.size for k, v in cond.items()}
            msg = f"expected conditions {sorted(self.condition_names)} with {e.size} values each but got {got}, {where}"
            raise ConfigError(msg)
        resources.check_memory(8 * e.size * self.geometry.n_voxels, f"{e.size} generated showers",
                               "generate fewer showers per call", ConfigError)
        lo, hi = self.energy_range
        outside = int(np.sum((e < lo * (1 - 1e-6)) | (e > hi * (1 + 1e-6))))
        if outside:
            msg = (f"{outside} of {e.size} incident energies lie outside the trained range {lo:g}-{hi:g} MeV "
                   f"of {self.path}; the model extrapolates there")
            warnings.warn(msg, ExtrapolationWarning, stacklevel=2)
        dev = resolve_device(device)
        showers = np.zeros((e.size, self.geometry.n_voxels), dtype=np.float32)
        part = np.searchsorted(np.asarray(self.splits), e, side="right")
        for i, model in enumerate(self.models):
            rows = np.flatnonzero(part == i)
            if rows.size == 0:
                continue
            model.to(dev)
            generator = torch.Generator(device=dev).manual_seed(seed + i)
            for start in range(0, rows.size, batch_size):
                chunk = rows[start : start + batch_size]
                e_t = torch.as_tensor(e[chunk], device=dev)
                c_t = {k: torch.as_tensor(v[chunk], device=dev) for k, v in cond.items()}
                showers[chunk] = model.sample(e_t, c_t, generator).float().cpu().numpy()
        return ShowerSet(e, showers, self.geometry, cond)


def _load_model(path: Path, info: dict[str, Any]) -> tuple[GenerativeModel, Geometry]:
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
    state = read_weights(path, info)
    try:
        model.load_state_dict(state, strict=True)
    except Exception as err:  # missing, unexpected or mis-shaped tensors
        detail = " ".join(str(err).split())  # torch lists the missing and unexpected keys over several lines
        msg = f"expected weights matching the model in {path / WEIGHTS} but: {detail:.300}"
        raise CheckpointError(msg) from None
    model.eval()
    return model, geometry


def load(path: str | Path) -> Bundle:
    """Load a bundle directory (or a training run directory holding ``bundle/``); never unpickles.

    Raises:
        CheckpointError: if the bundle is missing, its JSON is invalid or holds NaN/inf, its geometry does
            not match its preprocessing, its model would not fit in memory, or its weights are missing,
            corrupt (sha256 mismatch) or do not match the model.
    """
    path = Path(path)
    if not (path / BUNDLE_JSON).is_file() and (path / "bundle" / BUNDLE_JSON).is_file():
        path = path / "bundle"
    info = read_info(path)
    if info.get("kind") == "split":
        names = part_names(path, info)
        parts = [read_info(path / name) for name in names]
        loaded = [_load_model(path / name, p) for name, p in zip(names, parts, strict=True)]
        if any(g != loaded[0][1] for _, g in loaded):
            msg = f"expected the parts of the split bundle {path} to share one geometry but they differ"
            raise CheckpointError(msg)
        info = {**info, "members": parts}
        splits = tuple(float(s) for s in info["splits"])
        return Bundle(path, info, [m for m, _ in loaded], splits, loaded[0][1])
    model, geometry = _load_model(path, info)
    return Bundle(path, info, [model], (), geometry)
