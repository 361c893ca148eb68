"""The on-disk format of bundles: strict JSON, weights checked against their sha256, safe part names.

A bundle directory holds ``bundle.json`` and ``model.safetensors``; a split bundle holds
one such directory per energy range, named in its ``parts``. Reading refuses what a
damaged or hostile bundle could hold: NaN/inf numbers, weights whose sha256 differs from
the one recorded at save time, and parts outside the bundle directory.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save

from caloforge._version import __version__
from caloforge.data.documents import read_json, read_versioned_json
from caloforge.data.geometry import Geometry
from caloforge.data.outputs import atomic_dir, atomic_path, strict_json
from caloforge.errors import CheckpointError, ConfigError
from caloforge.models.base import GenerativeModel
from caloforge.runtime import resources

__all__ = ["BUNDLE_FORMAT", "BUNDLE_JSON", "WEIGHTS", "part_names", "read_info", "read_weights", "save_model",
           "save_split", "update_history", "weights_sha256"]

BUNDLE_FORMAT = "caloforge-bundle/1"
BUNDLE_JSON = "bundle.json"
WEIGHTS = "model.safetensors"

_log = logging.getLogger(__name__)


def weights_sha256(data: bytes) -> str:
    """The hex sha256 of a weights file's bytes, as recorded in ``bundle.json`` (``weights_sha256``)."""
    return hashlib.sha256(data).hexdigest()


def read_info(path: Path) -> dict[str, Any]:
    """The parsed ``bundle.json`` of the bundle directory ``path``.

    Raises:
        CheckpointError: if it is missing, not JSON, holds non-finite numbers or is not a caloforge bundle.
    """
    file = path / BUNDLE_JSON
    if not path.is_dir() or not file.is_file():
        msg = f"expected a bundle directory with {BUNDLE_JSON} but {path} is missing or is not one"
        raise CheckpointError(msg)
    return read_versioned_json(file, "bundle", BUNDLE_FORMAT, CheckpointError)  # bounded; NaN and 1e999 refused


def read_weights(path: Path, info: dict[str, Any], trust_unverified: bool = False) -> dict[str, torch.Tensor]:
    """The weights of the bundle at ``path``, checked against the sha256 recorded in bundle.json.

    A bundle without ``weights_sha256`` (written before caloforge recorded it, or edited) is refused
    unless ``trust_unverified`` is set: deleting the entry must not turn the check off silently.

    Raises:
        CheckpointError: missing or unreadable weights, a sha256 that differs, or none recorded (without
            ``trust_unverified``).
    """
    weights = path / WEIGHTS
    if not weights.is_file():
        msg = f"expected the weights file {weights} but it is missing"
        raise CheckpointError(msg)
    resources.check_memory(2 * weights.stat().st_size, f"the weights {weights}", error=CheckpointError)
    data = weights.read_bytes()
    expected = info.get("weights_sha256")
    if expected is None and not trust_unverified:
        msg = (f"expected the weights' sha256 (weights_sha256) in {path / BUNDLE_JSON} but it is missing, so "
               f"{weights} cannot be verified; if you trust where the bundle came from, load it with "
               f"trust_unverified=True (caloforge generate and export: --no-verify)")
        raise CheckpointError(msg)
    if expected is None:
        _log.warning("loading %s without verifying it: bundle.json records no weights_sha256", weights)
    else:
        digest = weights_sha256(data)
        if not isinstance(expected, str) or digest != expected.lower():
            msg = (f"expected {weights} to have the sha256 {expected!r:.70} recorded in {BUNDLE_JSON} but it has "
                   f"{digest}; the weights are corrupt or were replaced, copy the bundle again")
            raise CheckpointError(msg)
    try:
        return load_bytes(data)
    except Exception as err:  # safetensors raises its own error types on corrupt files
        msg = f"expected readable weights in {weights} but: {str(err).splitlines()[0] if str(err) else err!r:.200}"
        raise CheckpointError(msg) from None


def part_names(path: Path, info: dict[str, Any]) -> list[str]:
    """The sub-directory names of a split bundle's parts, after checking them and the split energies.

    Raises:
        CheckpointError: for a part that is not a plain sub-directory name (an absolute path, ``..``,
            a path with separators, a symbolic link), or split energies that do not match the parts.
    """
    names = info.get("parts")
    if not isinstance(names, list) or not names:
        msg = f"expected model parts in the split bundle {path} but found {names!r:.80}"
        raise CheckpointError(msg)
    for name in names:
        plain = isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0:")
        if not plain or (path / name).is_symlink():
            msg = (f"expected the parts of a split bundle to be sub-directories such as 'range-0' but got "
                   f"{name!r:.80}, in {path / BUNDLE_JSON}")
            raise CheckpointError(msg)
    splits = info.get("splits")
    if (not isinstance(splits, list) or len(splits) != len(names) - 1
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in splits)
            or any(b <= a for a, b in itertools.pairwise(splits))):
        msg = f"expected {len(names) - 1} increasing split energies but got {splits!r:.80}, in {path / BUNDLE_JSON}"
        raise CheckpointError(msg)
    return [str(name) for name in names]


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
    info = read_json(target, "a bundle description", CheckpointError)
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
    first = read_info(Path(parts[0]))
    names = [f"range-{i}" for i in range(len(parts))]
    info = {"format": BUNDLE_FORMAT, "kind": "split", "splits": [float(s) for s in splits], "parts": names,
            "geometry": first["geometry"], "conditions": list(first.get("conditions", [])),
            "caloforge_version": __version__, **dict(metadata or {})}
    with atomic_dir(path, force) as tmp:
        for name, part in zip(names, parts, strict=True):
            shutil.copytree(part, tmp / name)
        (tmp / BUNDLE_JSON).write_text(strict_json(info))
    return path
