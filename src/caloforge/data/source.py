"""Showers in memory or in a file, read the same way: chunk by chunk, so memory stays bounded.

A dataset-3 file holds 162 kB per shower (40500 voxels): 50k showers are 8 GB of float32.
Training and evaluation take a :data:`Showers` (a :class:`~caloforge.data.showers.ShowerSet`
or a :class:`ShowerFile`) and go through it with :func:`iter_showers`, keeping per-shower
summaries (energies, layer sums, responses) and reading full showers only a chunk at a time.

Example:
    >>> import numpy as np
    >>> from caloforge.data.presets import resolve_geometry
    >>> g = resolve_geometry("ds1-photons")
    >>> data = ShowerSet(np.full(5, 1000.0), np.ones((5, g.n_voxels), np.float32), g)
    >>> [len(c) for c in iter_showers(data, chunk_size=2)]
    [2, 2, 1]
    >>> fingerprint(data)["sha256"] == data.fingerprint()["sha256"]
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from caloforge.data import io
from caloforge.data.geometry import Geometry
from caloforge.data.showers import ShowerSet
from caloforge.errors import DataError

__all__ = ["CHUNK_BYTES", "ShowerDigest", "ShowerFile", "Showers", "chunk_rows", "fingerprint", "iter_showers",
           "read_rows"]

CHUNK_BYTES = 64 << 20
"""Float32 shower bytes read per step (64 MiB: 414 dataset-3 showers, 45k dataset-1 photons)."""


def chunk_rows(n_voxels: int, nbytes: int = CHUNK_BYTES) -> int:
    """Showers per chunk of ``nbytes`` float32 voxel energies.

    Example:
        >>> chunk_rows(40500), chunk_rows(368)
        (414, 45590)
    """
    return max(1, nbytes // (4 * n_voxels))


@dataclass(frozen=True, eq=False)
class ShowerFile:
    """A CaloChallenge file whose incident energies and conditions are in memory and whose showers are streamed.

    Open with :meth:`open`, which checks the file (shapes, energies, geometry) without reading the showers.

    Attributes:
        path: The HDF5 file.
        geometry: Its geometry.
        energies: Incident energies, MeV, shape (N,).
        conditions: Extra conditions by name, each shape (N,).
    """

    path: Path
    geometry: Geometry
    energies: NDArray[np.float64]
    conditions: dict[str, NDArray[np.float64]]

    @classmethod
    def open(cls, path: str | Path, geometry: str | Path | Geometry | None = None) -> ShowerFile:
        """Check the file and read its energies and conditions (not its showers); a file without showers is refused."""
        info = io.inspect(path).require_showers()
        first = next(io.iter_rows(path, np.zeros(1, np.int64), 1, geometry))  # checks the geometry
        return cls(Path(path), first.geometry, info.energies, io.read_conditions(path))

    def __len__(self) -> int:
        return int(self.energies.shape[0])

    def __repr__(self) -> str:
        return f"ShowerFile({str(self.path)!r}, n={len(self)}, geometry={self.geometry.name!r})"

    @property
    def n_voxels(self) -> int:
        """Voxels per shower."""
        return self.geometry.n_voxels

    @property
    def nbytes(self) -> int:
        """Bytes of all showers as float32 in memory."""
        return len(self) * self.n_voxels * 4


Showers = ShowerSet | ShowerFile
"""Showers in memory or in a file."""


def iter_showers(data: Showers, rows: NDArray[np.int64] | None = None, chunk_size: int | None = None
                 ) -> Iterator[ShowerSet]:
    """The showers of ``rows`` (strictly increasing; all if None), in order, at most ``chunk_size`` at a time.

    ``chunk_size`` defaults to :data:`CHUNK_BYTES` worth of showers.
    """
    size = chunk_size or chunk_rows(data.geometry.n_voxels)
    if isinstance(data, ShowerFile):
        yield from io.iter_rows(data.path, rows, size, data.geometry)
        return
    n = len(data) if rows is None else len(rows)
    for start in range(0, n, size):
        yield data[start:start + size] if rows is None else data[rows[start:start + size]]


def read_rows(data: Showers, rows: NDArray[np.int64] | None = None) -> ShowerSet:
    """The showers of ``rows`` (all if None) in memory, memory permitting (see :func:`caloforge.data.io.read`)."""
    if isinstance(data, ShowerSet):
        return data if rows is None else data[rows]
    if rows is None:
        return io.read(data.path, data.geometry)
    return ShowerSet.concatenate(list(iter_showers(data, rows, max(1, len(rows)))))


class ShowerDigest:
    """The sha256 of :func:`fingerprint`, fed chunk by chunk by a caller that reads the showers anyway.

    Feed every chunk of the selected showers, in order, to :meth:`update`; :meth:`result` then
    equals ``fingerprint(data, rows)`` without a pass of its own.
    """

    def __init__(self, data: Showers, rows: NDArray[np.int64] | None = None) -> None:
        self._energies = data.energies if rows is None else data.energies[rows]
        self._conditions = {k: v if rows is None else v[rows] for k, v in data.conditions.items()}
        self._geometry_hash = data.geometry.hash
        self._digest = hashlib.sha256()
        self._digest.update(np.ascontiguousarray(self._energies).tobytes())
        self._seen = 0

    def update(self, chunk: ShowerSet) -> None:
        """Add the next showers (raw, in order)."""
        self._digest.update(np.ascontiguousarray(chunk.showers).data)  # the buffer itself, no bytes copy
        self._seen += len(chunk)

    def result(self) -> dict[str, Any]:
        """The fingerprint: sha256, counts, energies, geometry hash (as :meth:`ShowerSet.fingerprint`)."""
        if self._seen != self._energies.size:
            msg = f"expected {self._energies.size} showers in the fingerprint but got {self._seen}, in ShowerDigest"
            raise DataError(msg)
        digest = self._digest.copy()
        for name in sorted(self._conditions):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(self._conditions[name]).tobytes())
        energies = self._energies
        distinct = np.unique(energies)
        return {"sha256": digest.hexdigest(), "n_showers": int(energies.size), "geometry_hash": self._geometry_hash,
                "energies": None if distinct.size > 50 else [float(e) for e in distinct],
                "energy_range": [float(energies.min()), float(energies.max())]}


def fingerprint(data: Showers, rows: NDArray[np.int64] | None = None) -> dict[str, Any]:
    """:meth:`ShowerSet.fingerprint` of the showers of ``rows`` (all if None), streamed: the same sha256."""
    if isinstance(data, ShowerSet) and rows is None:
        return data.fingerprint()
    digest = ShowerDigest(data, rows)
    for chunk in iter_showers(data, rows):
        digest.update(chunk)
    return digest.result()
