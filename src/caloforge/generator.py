"""Generators: the one interface of everything that turns incident energies into showers.

A trained bundle (:class:`caloforge.training.bundle.Bundle`), its exported ONNX graph
(:class:`caloforge.deploy.onnx_runtime.OnnxGenerator`), a bundle in reduced precision
(:class:`caloforge.deploy.precision.ReducedGenerator`) and a campaign's model set at one particle and
pseudorapidity (:meth:`caloforge.campaign.model_set.ModelSet.at`) are all a :class:`Generator`;
:func:`caloforge.deploy.backends.open_generator` opens any of them from a path.

The checks of a request (:func:`check_request`) and the routing of each incident energy to the
model of its energy range (:func:`generate_routed`) are written here once for all of them.

Example:
    >>> request = check_request([500.0, 8000.0, 700.0], None, seed=3, batch_size=10, condition_names=(),
    ...                         where="generate (example)")
    >>> [(i, rows.tolist()) for i, rows in route(request.energies, (1000.0,))]
    [(0, [0, 2]), (1, [1])]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from caloforge.data.checks import check_incident_energies, check_integer, check_seed, to_real_array
from caloforge.data.geometry import Geometry
from caloforge.data.showers import ShowerSet
from caloforge.data.source import CHUNK_BYTES
from caloforge.errors import ConfigError, GeometryMismatchError
from caloforge.runtime import resources

__all__ = ["Generator", "Request", "check_request", "generate_like", "generate_routed", "reference_inputs", "route"]


@runtime_checkable
class Generator(Protocol):
    """Showers at given incident energies (and conditions): every backend's one signature.

    Attributes:
        geometry: The voxel geometry of the generated showers.
        condition_names: The extra conditions :meth:`generate` needs, besides the energies.
    """

    @property
    def geometry(self) -> Geometry: ...

    @property
    def condition_names(self) -> tuple[str, ...]: ...

    def generate(self, energies: ArrayLike, conditions: Mapping[str, ArrayLike] | None = None, *,
                 seed: int = 0, batch_size: int = 10_000) -> ShowerSet:
        """One shower per incident energy (MeV); the same seed, batch size and inputs give the same showers."""
        ...


@dataclass(frozen=True)
class Request:
    """A checked generation request.

    Attributes:
        energies: Incident energies, MeV, shape (N,), N >= 1.
        conditions: Exactly the generator's conditions, each shape (N,), float64.
        seed: The noise seed (range ``k`` of a routed request draws from ``seed + k``).
        batch_size: Showers per forward pass.
    """

    energies: NDArray[np.float64]
    conditions: dict[str, NDArray[np.float64]]
    seed: int
    batch_size: int

    def subset(self, rows: NDArray[np.intp]) -> Request:
        """The request restricted to ``rows``."""
        return Request(self.energies[rows], {k: v[rows] for k, v in self.conditions.items()}, self.seed,
                       self.batch_size)


def check_request(energies: ArrayLike, conditions: Mapping[str, ArrayLike] | None, *, seed: int, batch_size: int,
                  condition_names: Sequence[str], where: str, n_voxels: int = 0) -> Request:
    """Check the arguments of a ``generate`` call.

    Args:
        energies: Incident energies, MeV, shape (N,) or (N, 1); at least one.
        conditions: The extra conditions, each shape (N,); exactly ``condition_names``.
        seed: The noise seed.
        batch_size: Showers per forward pass, >= 1.
        condition_names: The conditions the generator needs.
        where: The call, e.g. ``"generate (run/bundle)"``; ends each message.
        n_voxels: Voxels per shower; a request whose showers cannot fit in memory is refused (0: not checked).

    Raises:
        ConfigError: bad energies, seed, batch size or conditions, or showers that would not fit in memory.
    """
    e = check_incident_energies(energies, f"in {where}", allow_empty=False)
    seed = check_seed(seed, f"in {where}")
    batch_size = check_integer(batch_size, "batch_size", 1, 2**62, where)
    cond = {k: to_real_array(v, np.float64, f"condition '{k}' in {where}").reshape(-1)
            for k, v in dict(conditions or {}).items()}
    if sorted(cond) != sorted(condition_names) or any(v.shape != e.shape for v in cond.values()):
        got = {k: v.size for k, v in cond.items()}
        msg = f"expected conditions {sorted(condition_names)} with {e.size} values each but got {got}, in {where}"
        raise ConfigError(msg)
    needed = 8 * e.size * n_voxels
    if needed > CHUNK_BYTES:  # reading the system's memory figures costs more than a small batch
        resources.check_memory(needed, f"{e.size} generated showers", "generate fewer showers per call", ConfigError)
    return Request(e, cond, seed, batch_size)


def route(energies: NDArray[np.float64], splits: Sequence[float]) -> list[tuple[int, NDArray[np.intp]]]:
    """(energy range index, rows) of each range that receives energies; range ``k`` is
    ``[splits[k-1], splits[k])``."""
    part = np.searchsorted(np.asarray(splits, dtype=np.float64), energies, side="right")
    routed = [(i, np.flatnonzero(part == i)) for i in range(len(splits) + 1)]
    return [(i, rows) for i, rows in routed if rows.size]


def generate_routed(request: Request, splits: Sequence[float], n_voxels: int,
                    sample: Callable[[int, Request], NDArray[np.float32]]) -> NDArray[np.float32]:
    """The showers of ``request``, each energy sent to the model of its range.

    Args:
        request: The checked request.
        splits: The split energies between consecutive models (empty: one model).
        n_voxels: Voxels per shower.
        sample: ``sample(k, part)``: the showers of model ``k`` for ``part`` of the request, shape
            (len(part.energies), n_voxels); model ``k`` draws its noise from ``request.seed + k``.

    Returns:
        float32 showers, shape (N, n_voxels), in the request's order.
    """
    if not splits:  # no copies: the samples are the result
        return sample(0, request)
    showers = np.empty((request.energies.size, n_voxels), dtype=np.float32)
    for i, rows in route(request.energies, splits):
        showers[rows] = sample(i, request.subset(rows))
    return showers


def reference_inputs(generator: Generator, reference: ShowerSet | str | Path
                     ) -> tuple[NDArray[np.float64], dict[str, NDArray[np.float64]]]:
    """The incident energies and the generator's conditions of ``reference`` (showers, or a CaloChallenge
    file of which only the energies and conditions are read).

    Raises:
        GeometryMismatchError: if the reference has another geometry than the generator.
        ConfigError: if the reference lacks a condition the generator needs.
    """
    geometry = generator.geometry
    if isinstance(reference, ShowerSet):
        energies, conditions, other = reference.energies, dict(reference.conditions), reference.geometry
        where = "the reference"
    else:
        from caloforge.data import io  # h5py is imported only when a file is read (start-up time)

        info, where = io.inspect(reference).require_showers(), str(reference)
        geometry.check_voxels(info.n_voxels, where=f"{where} (the model was trained on '{geometry.name}')",
                              advice="this model cannot generate showers of that file's geometry: use a model "
                              "trained on it, or --energies")
        energies, other = info.energies, info.geometry or geometry
        conditions = io.read_conditions(reference) if generator.condition_names else {}
    if other != geometry:
        msg = (f"expected showers of the model's geometry '{geometry.name}' (hash {geometry.hash}) "
               f"but {where} has '{other.name}' (hash {other.hash})")
        raise GeometryMismatchError(msg)
    missing = sorted(set(generator.condition_names) - set(conditions))
    if missing:
        msg = f"expected {where} to hold the model's conditions {missing}, in generate_like"
        raise ConfigError(msg)
    return energies, {k: np.asarray(conditions[k], dtype=np.float64) for k in generator.condition_names}


def generate_like(generator: Generator, reference: ShowerSet | str | Path, *, seed: int = 0,
                  batch_size: int = 10_000) -> ShowerSet:
    """One shower per reference shower, at its incident energy and (the generator's) conditions.

    Raises:
        GeometryMismatchError: if the reference has another geometry than the generator.
        ConfigError: if the reference lacks a condition the generator needs.
    """
    energies, conditions = reference_inputs(generator, reference)
    return generator.generate(energies, conditions, seed=seed, batch_size=batch_size)
