"""CaloChallenge HDF5 files: read, stream, subsample and write.

Layout, as the challenge ships it: ``incident_energies`` (N, 1) and ``showers``
(N, V), both in MeV, gzip-compressed. Any other dataset of real numbers and length N
is an extra condition (e.g. ``theta``); other datasets are ignored. caloforge also
writes attributes (``caloforge_*``: geometry name, hash and layers, particle,
producer, version) but never needs them to read a file.

Before any data is read, the datasets' kinds (float, integer or bool; never complex,
text or records), shapes, stored chunks (a file that declares more rows than it
holds is refused) and the memory the read needs are checked, so a tiny forged file
cannot make a reader allocate gigabytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from caloforge.data.checks import check_dtype, check_finite, check_incident_energies, check_integer, check_seed
from caloforge.data.documents import parse_json
from caloforge.data.geometry import Geometry
from caloforge.data.presets import resolve_geometry
from caloforge.data.showers import ShowerSet, energy_bins
from caloforge.data.writer import ENERGY_KEY, SHOWER_KEY, ShowerWriter, write
from caloforge.errors import DataError, FileFormatError, GeometryError, GeometryMismatchError
from caloforge.runtime import resources

__all__ = ["FileInfo", "ShowerWriter", "inspect", "iter_chunks", "iter_rows", "read", "read_conditions", "read_subset",
           "write"]

_REAL = "biuf"  # dtype kinds read as numbers
_SMALLER = "read part of it with caloforge.data.io.read_subset or stream it with caloforge.data.io.iter_chunks"


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
        energies_ds, showers = _dataset(file, ENERGY_KEY, path), _dataset(file, SHOWER_KEY, path)
        if showers.ndim != 2:
            msg = f"expected '{SHOWER_KEY}' of shape (N, V) but got {showers.shape}, in {path}"
            raise DataError(msg)
        self.n_showers, self.n_voxels = (int(s) for s in showers.shape)
        if energies_ds.shape not in ((self.n_showers,), (self.n_showers, 1)):
            msg = (
                f"expected '{ENERGY_KEY}' of shape ({self.n_showers}, 1) to match {self.n_showers} showers "
                f"but got {energies_ds.shape}, in {path}"
            )
            raise DataError(msg)
        _check_stored(energies_ds, path)
        _check_stored(showers, path)
        resources.check_memory(self.n_showers * (energies_ds.dtype.itemsize + 10),
                               f"the {self.n_showers} incident energies of {path}",
                               "is the file complete? it declares more showers than this machine can index")
        self.energies = check_incident_energies(_read(energies_ds, (), path), f"in {path}")
        self.condition_names = sorted(k for k in file if k not in (ENERGY_KEY, SHOWER_KEY)
                                      and _is_condition(file, k, self.n_showers, path))
        self.attrs = {k: _plain(v) for k, v in file.attrs.items()}
        self.geometry: Geometry | None = None
        if "caloforge_geometry" in self.attrs:
            try:
                where = f"the caloforge_geometry attribute of {path}"
                self.geometry = Geometry.from_dict(parse_json(str(self.attrs["caloforge_geometry"]), where,
                                                              GeometryError))  # bounded: a hostile file stays one line
            except (GeometryError, ValueError):
                self.geometry = None  # metadata is a convenience, never a requirement

    def require_showers(self) -> FileInfo:
        """This info, after checking that the file holds at least one shower (for commands that read them).

        Raises:
            DataError: if the file holds no showers.
        """
        if self.n_showers == 0:
            msg = (f"expected showers in {self.path} but the file holds none ('{SHOWER_KEY}' has shape "
                   f"(0, {self.n_voxels})); pass a file with showers")
            raise DataError(msg)
        return self


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _dataset(file: h5py.File, key: str, path: Path) -> h5py.Dataset:
    """The dataset ``key`` of real numbers, or a one-line error for a missing, broken or non-numeric one."""
    if file.get(key, getlink=True) is None:
        msg = f"expected a dataset '{key}' in {path} but it has {sorted(file.keys())}; is it a CaloChallenge file?"
        raise FileFormatError(msg)
    dataset = _follow(file, key, path)
    if not isinstance(dataset, h5py.Dataset):
        msg = f"expected '{key}' to be a dataset but it is a {type(dataset).__name__}, in {path}"
        raise FileFormatError(msg)
    check_dtype(dataset.dtype, f"dataset '{key}' of {path}", FileFormatError)
    return dataset


def _follow(file: h5py.File, key: str, path: Path) -> Any:
    """``file[key]``, with a broken soft or external link turned into a one-line error."""
    try:
        return file[key]
    except (KeyError, OSError, RuntimeError) as err:
        link = file.get(key, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            what = f"an external link to '{link.path}' in {link.filename}"
        elif isinstance(link, h5py.SoftLink):
            what = f"a soft link to '{link.path}'"
        else:
            what = "an object"
        msg = f"expected '{key}' to be readable but it is {what} that cannot be opened ({err}), in {path}"
        raise FileFormatError(msg) from None


def _is_condition(file: h5py.File, key: str, n: int, path: Path) -> bool:
    """Whether ``file[key]`` is an extra condition: real numbers of shape (n,) or (n, 1), fully stored."""
    dataset = _follow(file, key, path)
    if not isinstance(dataset, h5py.Dataset) or dataset.shape not in ((n,), (n, 1)):
        return False
    if dataset.dtype.kind not in _REAL or dataset.dtype.fields is not None:
        return False  # text and records of length N are metadata, not conditions
    _check_stored(dataset, path)
    return True


def _check_stored(dataset: h5py.Dataset, path: Path) -> None:
    """Refuse a dataset that declares more rows than the file stores (never-written chunks read as zeros)."""
    if dataset.size == 0 or dataset.is_virtual or dataset.external:
        return
    if dataset.chunks is None:
        total, stored = 1, int(dataset.id.get_storage_size() > 0)
    else:
        total = math.prod(-(-s // c) for s, c in zip(dataset.shape, dataset.chunks, strict=True))
        stored = int(dataset.id.get_num_chunks())
    if stored < total:
        msg = (
            f"expected the {dataset.shape[0]} rows that '{dataset.name.lstrip('/')}' declares to be stored but only "
            f"{stored} of its {total} chunks hold data, in {path}; the file is truncated or was never fully written"
        )
        raise FileFormatError(msg)


def _read(dataset: h5py.Dataset, rows: Any, path: Path) -> NDArray[Any]:
    try:
        return np.asarray(dataset[rows])
    except (OSError, ValueError, RuntimeError) as err:
        msg = f"could not read '{dataset.name.lstrip('/')}' from {path} ({err}); the file may be truncated or corrupt"
        raise FileFormatError(msg) from None


def _check_rows_memory(info: FileInfo, file: h5py.File, n_rows: int, what: str, hint: str) -> None:
    """Refuse to read ``n_rows`` showers that would not fit: file dtype, float32 copy, masks and conditions."""
    itemsize = file[SHOWER_KEY].dtype.itemsize
    per_voxel = itemsize + (0 if file[SHOWER_KEY].dtype == np.float32 else 4) + 2
    nbytes = n_rows * (info.n_voxels * per_voxel + 16 * (1 + len(info.condition_names)))
    resources.check_memory(nbytes, f"{what} ({n_rows} x {info.n_voxels} voxels) of {info.path}", hint)


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
    """Read the energies, shapes and metadata of a file without loading the showers.

    Raises:
        FileFormatError: not HDF5, missing or broken (dangling link) datasets, datasets that are not
            real numbers, or datasets that declare more rows than the file stores.
        DataError: inconsistent shapes, bad incident energies, or energies that do not fit in memory.
    """
    with _open(path) as file:
        return FileInfo(Path(path), file)


def read_conditions(path: str | Path) -> dict[str, NDArray[np.float64]]:
    """The extra conditions of a file (e.g. ``theta``), each shape (N,), without reading the showers."""
    with _open(path) as file:
        info = FileInfo(Path(path), file)
        out = {}
        for name in info.condition_names:
            values = np.asarray(_read(_follow(file, name, info.path), (), info.path), dtype=np.float64).reshape(-1)
            check_finite(values, f"condition '{name}' in {path}")
            out[name] = values
        return out


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
    showers = _read(file[SHOWER_KEY], rows, info.path)
    conditions = {name: _read(file[name], rows, info.path).reshape(-1) for name in info.condition_names}
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
        DataError: no showers, inconsistent lengths, NaN/inf, negative voxel energies, incident energies
            outside 1 keV to 100 TeV, or more showers than fit in the available memory.
        GeometryMismatchError: the voxel count does not match the geometry.
    """
    with _open(path) as file:
        info = FileInfo(Path(path), file).require_showers()
        chosen = _geometry_for(info, geometry)
        _check_rows_memory(info, file, info.n_showers, "reading all showers", _SMALLER)
        return _read_rows(file, info, slice(0, info.n_showers), chosen)


def iter_chunks(
    path: str | Path, chunk_size: int = 10_000, geometry: str | Path | Geometry | None = None
) -> Iterator[ShowerSet]:
    """Stream a file in chunks of at most ``chunk_size`` showers; memory stays bounded for any file size."""
    chunk_size = check_integer(chunk_size, "chunk_size", 1, 2**62, "iter_chunks", DataError)
    with _open(path) as file:
        info = FileInfo(Path(path), file)
        chosen = _geometry_for(info, geometry)
        _check_rows_memory(info, file, min(chunk_size, info.n_showers), "a chunk", "pass a smaller chunk_size")
        for start in range(0, info.n_showers, chunk_size):
            yield _read_rows(file, info, slice(start, min(start + chunk_size, info.n_showers)), chosen)


_SPAN_GAP_BYTES = 2**20  # unselected rows up to this size between two selected ones are read through


def _spans(rows: NDArray[np.int64], chunk_size: int, gap: int) -> Iterator[tuple[int, int]]:
    """Contiguous [start, stop) spans covering the increasing ``rows``, each at most ``chunk_size`` long.

    Rows at most ``gap`` apart share a span; a larger gap starts a new one.

    Example:
        >>> list(_spans(np.array([0, 1, 2, 50, 51, 52, 53]), chunk_size=10, gap=4))
        [(0, 3), (50, 54)]
        >>> list(_spans(np.array([0, 5, 9, 12]), chunk_size=10, gap=8))
        [(0, 10), (12, 13)]
    """
    for group in np.split(rows, np.flatnonzero(np.diff(rows) > gap) + 1):
        i = 0
        while i < len(group):
            start = int(group[i])
            j = int(np.searchsorted(group, start + chunk_size))
            yield start, int(group[j - 1]) + 1
            i = j


def iter_rows(
    path: str | Path,
    rows: NDArray[np.int64] | None = None,
    chunk_size: int = 10_000,
    geometry: str | Path | Geometry | None = None,
) -> Iterator[ShowerSet]:
    """Stream the showers of ``rows`` (all if None) in file order, at most ``chunk_size`` per step.

    The file is read in contiguous spans of at most ``chunk_size`` rows that cover the selected
    rows (:func:`_spans`: rows less than about 1 MiB apart share a span, farther ones are not read),
    so memory stays bounded by about two chunks whichever rows are asked for, and a sparse
    selection (e.g. random 32-row blocks) reads little more than its own rows.

    Raises:
        DataError: ``rows`` not strictly increasing or outside the file.
    """
    chunk_size = check_integer(chunk_size, "chunk_size", 1, 2**62, "iter_rows", DataError)
    with _open(path) as file:
        info = FileInfo(Path(path), file)
        chosen = _geometry_for(info, geometry)
        _check_rows_memory(info, file, 2 * min(chunk_size, info.n_showers), "two chunks", "pass a smaller chunk_size")
        if rows is None:
            for start in range(0, info.n_showers, chunk_size):
                yield _read_rows(file, info, slice(start, min(start + chunk_size, info.n_showers)), chosen)
            return
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows[0] < 0 or rows[-1] >= info.n_showers or np.any(np.diff(rows) <= 0)):
            msg = f"expected strictly increasing rows within 0..{info.n_showers - 1}, in iter_rows of {path}"
            raise DataError(msg)
        pending: list[ShowerSet] = []
        n_pending = 0
        gap = max(1, _SPAN_GAP_BYTES // (4 * info.n_voxels))
        for start, stop in _spans(rows, chunk_size, gap):
            local = rows[np.searchsorted(rows, start):np.searchsorted(rows, stop)] - start
            block = _read_rows(file, info, slice(start, stop), chosen)
            pending.append(block if local.size == stop - start else block[local])
            n_pending += local.size
            if n_pending >= chunk_size:
                joined = ShowerSet.concatenate(pending)
                yield joined[:chunk_size]
                pending, n_pending = ([joined[chunk_size:]], n_pending - chunk_size) if n_pending > chunk_size \
                    else ([], 0)
        if n_pending:
            yield ShowerSet.concatenate(pending)


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
    n = check_integer(n, "n", 0, 2**62, "read_subset", DataError)
    chunk_size = check_integer(chunk_size, "chunk_size", 1, 2**62, "read_subset", DataError)
    rng = np.random.default_rng(check_seed(seed, "in read_subset"))
    info = inspect(path)
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
    with _open(path) as file:
        _check_rows_memory(info, file, n + min(chunk_size, info.n_showers), f"a subset of {n} showers",
                           "choose a smaller n")
    return ShowerSet.concatenate(list(iter_rows(path, chosen, chunk_size, geometry)))
