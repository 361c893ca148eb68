"""The showers of each campaign slice on disk, before any trial starts.

Slices with ``data`` use their files as they are. Slices with ``refsim`` are simulated once into
``OUT/data/<slice>/train.h5`` and ``reference.h5`` with the slice's detector
(:func:`caloforge.refsim.atlas_like` at its |eta|, with its extra material); ``refsim.json`` beside
them records the settings, so a resumed campaign reuses them. Every slice is then checked to have
showers on both sides of each split energy, so that no trial fails on it.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from caloforge.campaign.spec import CampaignSpec, SliceSpec
from caloforge.campaign.trial import SliceFiles
from caloforge.data import io
from caloforge.data.documents import read_json
from caloforge.data.outputs import atomic_path, strict_json
from caloforge.errors import CheckpointError, ConfigError
from caloforge.refsim import atlas_like, simulate_to_file
from caloforge.runtime.progress import SILENT, Progress

__all__ = ["prepare_slices", "slice_energies"]


def _recorded(record: Path) -> object:
    """The settings a slice's files were simulated with; None when there is no readable record (simulate again)."""
    try:
        return read_json(record, "a campaign slice record", CheckpointError) if record.is_file() else None
    except CheckpointError:
        return None


def _simulate(s: SliceSpec, directory: Path, progress: Progress) -> SliceFiles:
    r = s.refsim
    if r is None:  # prepare_slices only calls this for refsim slices
        msg = f"expected refsim settings for slice {s.label} but got none"
        raise ConfigError(msg)
    geometry = r.geometry or "ds1-photons"
    settings = {"particle": s.particle, **r.to_dict()}
    record = directory / "refsim.json"
    train, reference = directory / "train.h5", directory / "reference.h5"
    if _recorded(record) == json.loads(strict_json(settings)):
        return SliceFiles(train=str(train), reference=str(reference), geometry=geometry)
    directory.mkdir(parents=True, exist_ok=True)
    detector = atlas_like(r.eta if r.eta is not None else 0.5 * sum(s.eta), r.extra_material_x0)
    source = {"energies": list(r.energies)} if r.energies else {"spectrum": r.spectrum}
    for path, n, seed in ((train, r.n_train, r.seed), (reference, r.n_reference, r.seed + 1)):
        progress.message(f"campaign: simulating {n} {s.particle}s for slice {s.label} ({detector.name})")
        simulate_to_file(path, geometry, s.particle, n, seed, detector=detector, force=True, **source)
    with atomic_path(record, force=True) as tmp:
        tmp.write_text(strict_json(settings), encoding="utf-8")
    return SliceFiles(train=str(train), reference=str(reference), geometry=geometry)


def slice_energies(files: SliceFiles) -> np.ndarray:
    """The incident energies (MeV) of a slice's training file, read without the showers."""
    return np.asarray(io.inspect(files.train).energies, dtype=np.float64)


def _check_splits(label: str, energies: np.ndarray, splits: tuple[float, ...], where: str) -> None:
    edges = [-np.inf, *splits, np.inf]
    for lo, hi in itertools.pairwise(edges):
        if not np.any((energies >= lo) & (energies < hi)):
            msg = (f"expected showers of slice {label} in every energy range of energy_split but the range "
                   f"{lo:g}-{hi:g} MeV has none (its energies: {energies.min():g}-{energies.max():g} MeV), in {where}")
            raise ConfigError(msg)


def prepare_slices(spec: CampaignSpec, out_dir: Path, progress: Progress | None = None,
                   where: str = "the campaign spec") -> dict[str, SliceFiles]:
    """The files of every slice, simulating the refsim ones (once) into ``out_dir/data``.

    Raises:
        ConfigError: a slice without showers in some energy range of ``energy_split``.
    """
    progress = progress or SILENT
    files = {}
    for s in spec.slices:
        if s.data is not None:
            d = s.data
            files[s.label] = SliceFiles(train=d.train, validation=d.validation, reference=d.reference,
                                        geometry=d.geometry)
        else:
            files[s.label] = _simulate(s, out_dir / "data" / s.label, progress)
        _check_splits(s.label, slice_energies(files[s.label]), spec.energy_split, where)
    return files
