"""Model sets: one fast simulation made of many bundles, each serving a (particle, |eta| range, energy range).

A campaign writes ``model_set.json`` beside the selected bundles (one directory per slice)::

    {"format": "caloforge-model-set/1", "campaign": "...", "metric": "chi2_ndf", "complete": true,
     "entries": [{"slice": "photon-eta0-0.4", "particle": "photon", "eta": [0.0, 0.4],
                  "energy": [256.0, 4194304.0], "bundle": "photon-eta0-0.4", "family": "gan",
                  "trial": "...", "params": {...}, "metrics": {...}}, ...]}

A slice trained with energy splits has one entry per energy range, each pointing at that range's
part of the split bundle (``photon-eta0-0.4/range-1``). :meth:`ModelSet.generate` sends each
requested shower to the entry that serves its particle, |eta| and incident energy.

Example:
    >>> models = ModelSet.load("campaign/model-set")  # doctest: +SKIP
    >>> showers = models.generate("pion", 0.22, [1024.0, 65536.0], seed=1)  # doctest: +SKIP
    >>> pions = models.at("pion", 0.22)  # the same as a Generator  # doctest: +SKIP
    >>> showers = pions.generate([1024.0, 65536.0], seed=1)  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from caloforge.data.checks import check_incident_energies, check_seed
from caloforge.data.documents import read_versioned_json
from caloforge.data.geometry import Geometry
from caloforge.data.outputs import atomic_path, strict_json
from caloforge.data.showers import ShowerSet
from caloforge.errors import CheckpointError, ConfigError

__all__ = ["MANIFEST", "MODEL_SET_FORMAT", "ModelSet", "ModelSetEntry", "ModelSetPoint", "write_model_set"]

MODEL_SET_FORMAT = "caloforge-model-set/1"
MANIFEST = "model_set.json"
_TOLERANCE = 1e-6  # relative: energies read back from files and typed by users match the trained range


@dataclass(frozen=True)
class ModelSetEntry:
    """One bundle of a model set and what it serves.

    Attributes:
        slice: The campaign slice it was selected for.
        particle: ``photon``, ``electron`` or ``pion``.
        eta: The |eta| range ``[low, high)``.
        energy: The incident-energy range ``[low, high]`` (MeV; ``[low, high)`` below a split energy).
        bundle: The bundle directory (absolute).
        family: The model family.
        metrics: The selected trial's metrics (objective, validation and reference chi2/NDF, AUC).
        info: Everything else the manifest records (trial, hyperparameters).
    """

    slice: str
    particle: str
    eta: tuple[float, float]
    energy: tuple[float, float]
    bundle: Path
    family: str
    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def serves(self, particle: str, abs_eta: float, energy: float, last: bool) -> bool:
        """Whether this entry serves the point; the top of the energy range is included when ``last``."""
        lo, hi = self.energy
        below_top = energy <= hi * (1 + _TOLERANCE) if last else energy < hi
        return (particle == self.particle and self.eta[0] <= abs_eta < self.eta[1]
                and energy >= lo * (1 - _TOLERANCE) and below_top)


def _canonical(particle: str) -> str:
    from caloforge.refsim import canonical_particle  # the simulator and scipy: 0.9 s of start-up for a name table

    return canonical_particle(particle)


class ModelSet:
    """A loaded model-set manifest; bundles are loaded when first used. Use :meth:`load`.

    Attributes:
        path: The manifest file.
        entries: Its entries.
        info: The whole manifest.
    """

    def __init__(self, path: Path, entries: Sequence[ModelSetEntry], info: dict[str, Any]) -> None:
        self.path = path
        self.entries = tuple(entries)
        self.info = info
        self._bundles: dict[Path, Any] = {}

    def __repr__(self) -> str:
        return f"ModelSet(path='{self.path}', entries={len(self.entries)})"

    @classmethod
    def load(cls, path: str | Path) -> ModelSet:
        """Read a manifest (the file, or the directory holding ``model_set.json``).

        Raises:
            CheckpointError: a missing or unreadable manifest, another format, an entry without its
                keys, or a bundle path outside the model set's directory.
        """
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST
        info = read_versioned_json(path, "model-set manifest", MODEL_SET_FORMAT, CheckpointError)
        entries = []
        folder = path.parent.resolve()
        for i, raw in enumerate(info.get("entries") or []):
            try:
                relative = Path(raw["bundle"])
                if relative.is_absolute() or ".." in relative.parts or \
                        not (folder / relative).resolve().is_relative_to(folder):  # a symbolic link leading out
                    msg = f"a path inside the model set but got '{relative}'"
                    raise ValueError(msg)
                entries.append(ModelSetEntry(
                    str(raw["slice"]), _canonical(str(raw["particle"])), (float(raw["eta"][0]), float(raw["eta"][1])),
                    (float(raw["energy"][0]), float(raw["energy"][1])), path.parent / relative, str(raw["family"]),
                    dict(raw.get("metrics") or {}), {k: v for k, v in raw.items() if k not in ("metrics",)}))
            except (KeyError, TypeError, ValueError, IndexError, ConfigError) as err:
                msg = f"expected entries with slice, particle, eta, energy, bundle and family but entry {i} " \
                      f"has {err!s:.120}, in {path}"
                raise CheckpointError(msg) from None
        if not entries:
            msg = f"expected at least one entry but got none, in {path}"
            raise CheckpointError(msg)
        return cls(path, entries, info)

    def lookup(self, particle: str, eta: float, energy: float) -> ModelSetEntry:
        """The entry serving a particle at pseudorapidity ``eta`` (its sign is ignored) and incident ``energy`` (MeV).

        Raises:
            ConfigError: for a point outside every slice; the message lists what the set covers.
        """
        name, abs_eta = _canonical(particle), abs(float(eta))
        for entry in self.entries:
            last = not any(e.slice == entry.slice and e.energy[0] > entry.energy[0] for e in self.entries)
            if entry.serves(name, abs_eta, float(energy), last):
                return entry
        raise _outside(self, f"a {name} at |eta| {abs_eta:g} and {float(energy):g} MeV")

    def bundle(self, entry: ModelSetEntry) -> Any:
        """The loaded bundle of ``entry`` (:class:`caloforge.training.Bundle`), cached."""
        from caloforge.training import load  # campaign and training are both heavy; loaded when first used

        if entry.bundle not in self._bundles:
            self._bundles[entry.bundle] = load(entry.bundle)
        return self._bundles[entry.bundle]

    def at(self, particle: str, eta: float, device: str = "auto") -> ModelSetPoint:
        """The model set for one particle at pseudorapidity ``eta``: a :class:`caloforge.generator.Generator`."""
        return ModelSetPoint(self, _canonical(particle), float(eta), device)

    def generate(self, particle: str, eta: float, energies: ArrayLike,
                 conditions: Mapping[str, ArrayLike] | None = None, batch_size: int = 10_000,
                 device: str = "auto", seed: int = 0) -> ShowerSet:
        """One shower per incident energy of a particle at ``eta``, each from the bundle that serves it.

        Args:
            particle: Particle name or alias.
            eta: Pseudorapidity (|eta| selects the slice).
            energies: Incident energies, MeV, shape (N,).
            conditions: Extra conditions the bundles need, each shape (N,).
            batch_size: Showers per forward pass.
            device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
            seed: Seed of the noise; entry ``k`` of the call uses ``seed + k``.

        Raises:
            ConfigError: for a point outside every slice, or bundles of different geometries.
        """
        return self.at(particle, eta, device).generate(energies, conditions, batch_size=batch_size, seed=seed)


class ModelSetPoint:
    """A model set at one particle and pseudorapidity: each energy goes to the bundle serving it. Use
    :meth:`ModelSet.at`.

    Attributes:
        models: The model set.
        particle: The canonical particle name.
        eta: The pseudorapidity (its sign is ignored).
        device: Where the bundles generate.
    """

    def __init__(self, models: ModelSet, particle: str, eta: float, device: str = "auto") -> None:
        self.models, self.particle, self.eta, self.device = models, particle, eta, device

    def __repr__(self) -> str:
        return f"ModelSetPoint(path='{self.models.path}', particle='{self.particle}', eta={self.eta:g})"

    def _first(self) -> Any:
        """The bundle of the first entry serving this particle and |eta| (at any energy)."""
        abs_eta = abs(self.eta)
        for entry in self.models.entries:
            if entry.particle == self.particle and entry.eta[0] <= abs_eta < entry.eta[1]:
                return self.models.bundle(entry)
        raise _outside(self.models, f"a {self.particle} at |eta| {abs_eta:g}")

    @property
    def geometry(self) -> Geometry:
        """The voxel geometry of the bundles serving this point."""
        geometry: Geometry = self._first().geometry
        return geometry

    @property
    def condition_names(self) -> tuple[str, ...]:
        """The conditions the bundles serving this point need."""
        return tuple(self._first().condition_names)

    def generate(self, energies: ArrayLike, conditions: Mapping[str, ArrayLike] | None = None,
                 batch_size: int = 10_000, seed: int = 0) -> ShowerSet:
        """One shower per incident energy (:class:`caloforge.generator.Generator`); entry ``k`` of the call
        draws from ``seed + k``.

        Raises:
            ConfigError: for an energy outside every slice, or bundles of different geometries.
        """
        where = f"in generate ({self.models.path})"
        e = check_incident_energies(energies, where, allow_empty=False)
        seed = check_seed(seed, where)
        chosen = [self.models.lookup(self.particle, self.eta, float(x)) for x in e]
        order = list(dict.fromkeys(c.bundle for c in chosen))
        cond = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in dict(conditions or {}).items()}
        out: np.ndarray | None = None
        geometry = None
        for k, path in enumerate(order):
            rows = np.flatnonzero([c.bundle == path for c in chosen])
            entry = next(c for c in chosen if c.bundle == path)
            part = self.models.bundle(entry).generate(e[rows], {n: v[rows] for n, v in cond.items()} or None,
                                                      batch_size=batch_size, device=self.device, seed=seed + k)
            if geometry is not None and part.geometry != geometry:
                msg = ("expected the bundles serving one slice to share a geometry but they differ, "
                       f"in {self.models.path}")
                raise ConfigError(msg)
            geometry = part.geometry
            if out is None:
                out = np.empty((e.size, geometry.n_voxels), dtype=np.float32)
            out[rows] = part.showers
        assert out is not None and geometry is not None  # e is not empty
        return ShowerSet(e, out, geometry, cond)


def _outside(models: ModelSet, point: str) -> ConfigError:
    """The error for a point outside every slice; it lists what the set covers."""
    covered = "; ".join(f"{e.particle} |eta| {e.eta[0]:g}-{e.eta[1]:g}, {e.energy[0]:g}-{e.energy[1]:g} MeV"
                        for e in models.entries)
    msg = f"expected {point} inside a slice of the model set but it is outside every one ({covered}), in {models.path}"
    return ConfigError(msg)


def _energy_ranges(low: float, high: float, splits: Sequence[float]) -> list[tuple[float, float]]:
    """``[low, high]`` cut at the split energies inside it.

    Example:
        >>> _energy_ranges(256.0, 4194304.0, [4100.0, 262000.0])
        [(256.0, 4100.0), (4100.0, 262000.0), (262000.0, 4194304.0)]
    """
    edges = [low, *[s for s in splits if low < s < high], high]
    return list(itertools.pairwise(edges))


def write_model_set(directory: str | Path, campaign: str, metric: str, selected: Sequence[Mapping[str, Any]],
                    complete: bool = True) -> Path:
    """Write ``model_set.json`` (atomically, replacing an earlier one of the same campaign) for bundles already
    copied into ``directory``.

    Args:
        directory: The model-set directory; each selection's ``bundle`` is relative to it.
        campaign: The campaign's name.
        metric: The metric the selection minimised.
        selected: Per slice: ``slice``, ``particle``, ``eta``, ``bundle``, ``family``, ``energy`` (the trained
            range), ``splits`` (the split energies), ``metrics`` and any other entries to record.
        complete: Whether every trial of the campaign finished.

    Returns:
        The manifest's path.
    """
    directory = Path(directory)
    entries = []
    for sel in selected:
        ranges = _energy_ranges(float(sel["energy"][0]), float(sel["energy"][1]), sel.get("splits") or ())
        for i, (lo, hi) in enumerate(ranges):
            bundle = sel["bundle"] if len(ranges) == 1 else f"{sel['bundle']}/range-{i}"
            extra = {k: v for k, v in sel.items() if k not in ("energy", "bundle", "splits")}
            entries.append({**extra, "eta": list(sel["eta"]), "energy": [lo, hi], "bundle": bundle})
    manifest = {"format": MODEL_SET_FORMAT, "campaign": campaign, "metric": metric, "complete": complete,
                "entries": entries}
    path = directory / MANIFEST
    with atomic_path(path, force=True) as tmp:
        tmp.write_text(strict_json(manifest, indent=2), encoding="utf-8")
    return path
