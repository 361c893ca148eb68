"""CaloChallenge HDF5 files: read, stream, subsample and write.

Layout, as the challenge ships it: ``incident_energies`` (N, 1) and ``showers``
(N, V), both in MeV, gzip-compressed. Any other dataset of length N is an extra
condition (e.g. ``theta``). caloforge also writes attributes (``caloforge_*``:
geometry name, hash and layers, particle, producer, version) but never needs them
to read a file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from caloforge import __version__
from caloforge.errors import DataError, FileFormatError, GeometryError, GeometryMismatchError
from caloforge.geometry import Geometry, resolve_geometry
from caloforge.outputs import atomic_path
from caloforge.showers import ShowerSet, _check_energies

__all__ = ["FileInfo", "ShowerWriter", "inspect", "iter_chunks", "read", "read_subset", "write"]

ENERGY_KEY = "incident_energies"
SHOWER_KEY = "showers"
_CHUNK_BYTES = 1 << 20  # target HDF5 chunk size of the showers dataset


class FileInfo:
    """What a CaloChallenge file holds, read without loading the showers.

    Attributes:
        path: The file.
        n_showers: Number of showers N.
        n_voxels: Number of voxels V.
        energies: All incident energies, MeV, shape (N,).
        condition_names: Names of the extra condition datasets.
        attrs: The file's root attributes.
        geometry: The geometry stored by caloforge in the attributes, if any.
    """

    def __init__(self, path: Path, file: h5py.File) -> None:
        self.path = path
        for key in (ENERGY_KEY, SHOWER_KEY):
            if key not in file or not isinstance(file[key], h5py.Dataset):
                found = sorted(file.keys())
                msg = f"expected a dataset '{key}' in {path} but it has {found}; is it a CaloChallenge file?"
                raise FileFormatError(msg)
        showers = file[SHOWER_KEY]
        if showers.ndim != 2:
            msg = f"expected '{SHOWER_KEY}' of shape (N, V) but got {showers.shape}, in {path}"
            raise DataError(msg)
        self.n_showers, self.n_voxels = (int(s) for s in showers.shape)
        energies = np.asarray(file[ENERGY_KEY][()], dtype=np.float64)
        if energies.ndim == 2 and energies.shape[1] == 1:
            energies = energies[:, 0]
        if energies.shape != (self.n_showers,):
            msg = (
                f"expected '{ENERGY_KEY}' of shape ({self.n_showers}, 1) to match {self.n_showers} showers "
                f"but got {file[ENERGY_KEY].shape}, in {path}"
            )
            raise DataError(msg)
        _check_energies(energies, f"in {path}")
        self.energies = energies
        self.condition_names = sorted(
            k
            for k, v in file.items()
            if k not in (ENERGY_KEY, SHOWER_KEY)
            and isinstance(v, h5py.Dataset)
            and v.shape in ((self.n_showers,), (self.n_showers, 1))  # other datasets are not conditions
        )
        self.attrs = {k: _plain(v) for k, v in file.attrs.items()}
        self.geometry: Geometry | None = None
        if "caloforge_geometry" in self.attrs:
            try:
                self.geometry = Geometry.from_dict(json.loads(str(self.attrs["caloforge_geometry"])))
            except (GeometryError, ValueError):
                self.geometry = None  # metadata is a convenience, never a requirement


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _open(path: str | Path) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        msg = f"input file not found: {path}"
        raise FileFormatError(msg)
    try:
        return h5py.File(path, "r")
    except OSError as err:
        msg = f"expected an HDF5 file but could not open {path} ({err}); is it truncated or another format?"
        raise FileFormatError(msg) from None


def inspect(path: str | Path) -> FileInfo:
    """Read the energies, shapes and metadata of a file without loading the showers."""
    with _open(path) as file:
        return FileInfo(Path(path), file)


def _geometry_for(info: FileInfo, geometry: str | Path | Geometry | None) -> Geometry:
    if geometry is None and info.geometry is not None:
        chosen = info.geometry
    else:
        try:
            chosen = resolve_geometry(geometry, None if geometry is not None else info.n_voxels)
        except GeometryError as err:
            msg = f"{err}; in {info.path}"
            raise GeometryError(msg) from None
    chosen.check_voxels(info.n_voxels, where=str(info.path))
    stored = info.attrs.get("caloforge_geometry_hash")
    if info.geometry is not None and stored != chosen.hash:
        msg = (
            f"{info.path} was written for geometry '{info.geometry.name}' (hash {stored}) "
            f"but '{chosen.name}' (hash {chosen.hash}) was requested; pass the geometry the file was made with"
        )
        raise GeometryMismatchError(msg)
    return chosen


def _read_rows(file: h5py.File, info: FileInfo, rows: slice | NDArray[np.int64], geometry: Geometry) -> ShowerSet:
    try:
        showers = file[SHOWER_KEY][rows]
        conditions = {name: np.asarray(file[name][rows], dtype=np.float64) for name in info.condition_names}
    except (OSError, ValueError) as err:
        msg = f"could not read showers from {info.path} ({err}); the file may be truncated or corrupt"
        raise FileFormatError(msg) from None
    where = f"showers {rows.start}..{rows.stop - 1}" if isinstance(rows, slice) else "the selected showers"
    try:
        return ShowerSet(info.energies[rows], showers, geometry, conditions)
    except DataError as err:
        msg = f"{err}; in {info.path} ({where})"
        raise DataError(msg) from None


def read(path: str | Path, geometry: str | Path | Geometry | None = None) -> ShowerSet:
    """Read a whole CaloChallenge file into memory.

    Args:
        path: The HDF5 file.
        geometry: Preset name, binning XML, Geometry, or None to use the file's
            caloforge metadata or the unique preset with the file's voxel count.

    Raises:
        FileFormatError: not HDF5, truncated, or missing datasets.
        DataError: inconsistent lengths, NaN/inf, negative voxel or non-positive incident energies.
        GeometryMismatchError: the voxel count does not match the geometry.
    """
    with _open(path) as file:
        info = FileInfo(Path(path), file)
        return _read_rows(file, info, slice(0, info.n_showers), _geometry_for(info, geometry))


def iter_chunks(
    path: str | Path, chunk_size: int = 10_000, geometry: str | Path | Geometry | None = None
) -> Iterator[ShowerSet]:
    """Stream a file in chunks of at most ``chunk_size`` showers; memory stays bounded for any file size."""
    if chunk_size < 1:
        msg = f"expected chunk_size >= 1 but got {chunk_size}"
        raise DataError(msg)
    with _open(path) as file:
        info = FileInfo(Path(path), file)
        chosen = _geometry_for(info, geometry)
        for start in range(0, info.n_showers, chunk_size):
            yield _read_rows(file, info, slice(start, min(start + chunk_size, info.n_showers)), chosen)


def read_subset(
    path: str | Path,
    n: int,
    seed: int,
    stratify: bool = False,
    geometry: str | Path | Geometry | None = None,
    chunk_size: int = 10_000,
) -> ShowerSet:
    """Load a random subset of ``n`` showers, streaming the file chunk by chunk.

    Args:
        path: The HDF5 file.
        n: Number of showers to keep (all if the file has fewer).
        seed: Seed of the random choice.
        stratify: Keep the same fraction of every incident energy (discrete spectra)
            or energy bin (continuous spectra) instead of a uniform choice.
        geometry: As in :func:`read`.
        chunk_size: Showers read per step; bounds the memory used.

    Returns:
        The chosen showers in file order.
    """
    from caloforge.showers import energy_bins

    info = inspect(path)
    rng = np.random.default_rng(seed)
    n = min(n, info.n_showers)
    if stratify:
        groups = np.digitize(info.energies, energy_bins(info.energies)[1:-1])
        chosen_parts = []
        labels, counts = np.unique(groups, return_counts=True)
        quota = np.floor(counts * n / info.n_showers).astype(int)
        remainder = n - quota.sum()  # largest remainders get one more
        frac = counts * n / info.n_showers - quota
        quota[np.argsort(-frac, kind="stable")[:remainder]] += 1
        for label, q in zip(labels, quota, strict=True):
            members = np.flatnonzero(groups == label)
            chosen_parts.append(rng.choice(members, size=q, replace=False))
        chosen = np.sort(np.concatenate(chosen_parts))
    else:
        chosen = np.sort(rng.choice(info.n_showers, size=n, replace=False))
    parts = []
    with _open(path) as file:
        geometry_ = _geometry_for(info, geometry)
        for start in range(0, info.n_showers, chunk_size):
            stop = min(start + chunk_size, info.n_showers)
            local = chosen[(chosen >= start) & (chosen < stop)]
            if local.size:
                block = _read_rows(file, info, slice(start, stop), geometry_)
                parts.append(block[local - start])
    return ShowerSet.concatenate(parts)


class ShowerWriter:
    """Write a CaloChallenge file in chunks, atomically.

    Showers are appended to resizable gzip datasets in a temporary file beside the
    target; on a clean exit the file is renamed onto ``path``, on an error it is deleted.

    Example:
        >>> import tempfile, pathlib
        >>> from caloforge.geometry import Geometry, Layer
        >>> g = Geometry((Layer(0, (0.0, 5.0, 10.0), 1),))
        >>> chunk = ShowerSet(np.array([100.0, 200.0]), np.array([[60.0, 30.0], [150.0, 40.0]]), g)
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.h5"
        >>> with ShowerWriter(path, g) as writer:
        ...     for _ in range(3):
        ...         writer.append(chunk)
        >>> writer.n_written, len(read(path))
        (6, 6)
    """

    def __init__(
        self,
        path: str | Path,
        geometry: Geometry,
        condition_names: tuple[str, ...] = (),
        force: bool = False,
        metadata: dict[str, str | int | float] | None = None,
        compression_level: int = 4,
    ) -> None:
        self.path = Path(path)
        self.geometry = geometry
        self.condition_names = tuple(condition_names)
        self.metadata = dict(metadata or {})
        self.n_written = 0
        self._atomic = atomic_path(self.path, force)
        self._level = compression_level
        self._file: h5py.File | None = None

    def __enter__(self) -> ShowerWriter:
        tmp = self._atomic.__enter__()
        try:
            self._file = h5py.File(tmp, "w")
            self._create_datasets()
        except BaseException:
            if self._file is not None:
                self._file.close()
                self._file = None
            self._atomic.__exit__(*sys.exc_info())  # removes the temporary file
            raise
        return self

    def _create_datasets(self) -> None:
        assert self._file is not None  # opened by __enter__
        v = self.geometry.n_voxels
        rows = max(1, min(4096, _CHUNK_BYTES // (4 * v)))
        opts: dict[str, Any] = {"compression": "gzip", "compression_opts": self._level, "shuffle": True}
        self._file.create_dataset(ENERGY_KEY, shape=(0, 1), maxshape=(None, 1), dtype="f8", chunks=(4096, 1), **opts)
        self._file.create_dataset(SHOWER_KEY, shape=(0, v), maxshape=(None, v), dtype="f4", chunks=(rows, v), **opts)
        for name in self.condition_names:
            self._file.create_dataset(name, shape=(0,), maxshape=(None,), dtype="f8", chunks=(4096,), **opts)
        attrs: dict[str, str | int | float] = {
            "caloforge_version": __version__,
            "caloforge_geometry_name": self.geometry.name,
            "caloforge_geometry_hash": self.geometry.hash,
            "caloforge_geometry": json.dumps(self.geometry.to_dict()),
            "caloforge_particle": self.geometry.particle or "",
            "caloforge_producer": "caloforge",
        }
        attrs.update({f"caloforge_{k}": v for k, v in self.metadata.items()})
        self._file.attrs.update(attrs)

    def append(self, showers: ShowerSet) -> None:
        """Append a chunk of showers (same geometry and condition names as the writer)."""
        if self._file is None:
            msg = "ShowerWriter.append called outside its 'with' block"
            raise RuntimeError(msg)
        if showers.geometry != self.geometry:
            msg = f"expected showers of geometry '{self.geometry.name}' but got '{showers.geometry.name}'"
            raise GeometryMismatchError(msg)
        if set(showers.conditions) != set(self.condition_names):
            msg = f"expected conditions {sorted(self.condition_names)} but got {sorted(showers.conditions)}"
            raise DataError(msg)
        n0, n = self.n_written, len(showers)
        datasets = [(ENERGY_KEY, showers.energies[:, None]), (SHOWER_KEY, showers.showers)]
        datasets += [(k, showers.conditions[k]) for k in self.condition_names]
        for key, values in datasets:
            dataset = self._file[key]
            dataset.resize(n0 + n, axis=0)
            dataset[n0:] = values
        self.n_written += n

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._atomic.__exit__(exc_type, exc, tb)


def write(
    path: str | Path,
    showers: ShowerSet,
    force: bool = False,
    metadata: dict[str, str | int | float] | None = None,
) -> Path:
    """Write a ShowerSet as a CaloChallenge HDF5 file, atomically; refuses to overwrite unless ``force``."""
    with ShowerWriter(path, showers.geometry, tuple(sorted(showers.conditions)), force, metadata) as writer:
        writer.append(showers)
    return Path(path)
