"""Writing CaloChallenge HDF5 files in chunks, atomically, and safely on a full disk.

:class:`ShowerWriter` and :func:`write` are re-exported by :mod:`caloforge.data.io`, which reads
the same layout: ``incident_energies`` (N, 1) and ``showers`` (N, V), both in MeV, gzip
compressed, plus one dataset per extra condition and ``caloforge_*`` attributes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import h5py

from caloforge._version import __version__
from caloforge.data.geometry import Geometry
from caloforge.data.outputs import atomic_path
from caloforge.data.showers import ShowerSet
from caloforge.errors import DataError, GeometryMismatchError, OutputPathError
from caloforge.runtime import resources

__all__ = ["ENERGY_KEY", "SHOWER_KEY", "ShowerWriter", "write"]

ENERGY_KEY = "incident_energies"
SHOWER_KEY = "showers"
_CHUNK_BYTES = 1 << 20  # target HDF5 chunk size of the showers dataset
_SPACE_ERRORS = {
    errno.ENOSPC: "the disk is full (no space left on the device)",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file would exceed the largest file this process may write",
}


def _redirect_to_devnull(file: h5py.File) -> None:
    """Point an open HDF5 file's descriptor at /dev/null, so that its remaining writes succeed and go nowhere."""
    try:
        fd = int(file.id.get_vfd_handle())
        devnull = os.open(os.devnull, os.O_RDWR)
    except (OSError, RuntimeError, ValueError, TypeError):  # not the default (sec2) driver: close as it is
        return
    try:
        os.dup2(devnull, fd)
    except OSError:
        pass
    finally:
        os.close(devnull)


class ShowerWriter:
    """Write a CaloChallenge file in chunks, atomically.

    Showers are appended to resizable gzip datasets in a temporary file beside the
    target; on a clean exit the file is renamed onto ``path``, on an error it is deleted.
    Each append first checks that the disk can hold the chunk uncompressed (plus a
    margin) and ends with a flush, so a full disk is an :class:`OutputPathError` at
    the append that met it, never an error swallowed by h5py later.

    Example:
        >>> import tempfile, pathlib
        >>> from caloforge.data.geometry import Geometry, Layer
        >>> g = Geometry((Layer(0, (0.0, 5.0, 10.0), 1),))
        >>> chunk = ShowerSet([100.0, 200.0], [[60.0, 30.0], [150.0, 40.0]], g)
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.h5"
        >>> with ShowerWriter(path, g) as writer:
        ...     for _ in range(3):
        ...         writer.append(chunk)
        >>> from caloforge.data.io import read
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
        self._datasets: dict[str, h5py.Dataset] = {}
        self._tmp: Path | None = None

    def __enter__(self) -> ShowerWriter:
        self._tmp = self._atomic.__enter__()
        try:
            self._file = h5py.File(self._tmp, "w")
            self._create_datasets()
            self._file.flush()
        except BaseException as err:
            self._abort(err, "the file header")
        return self

    def _create_datasets(self) -> None:
        assert self._file is not None  # opened by __enter__
        v = self.geometry.n_voxels
        rows = max(1, min(4096, _CHUNK_BYTES // (4 * v)))
        opts: dict[str, Any] = {"compression": "gzip", "compression_opts": self._level, "shuffle": True}
        # Kept open until the file closes: closing a dataset writes its cache, and h5py only
        # prints (never raises) the errors of a close that happens when a handle is dropped.
        self._datasets = {
            ENERGY_KEY: self._file.create_dataset(ENERGY_KEY, shape=(0, 1), maxshape=(None, 1), dtype="f8",
                                                  chunks=(4096, 1), **opts),
            SHOWER_KEY: self._file.create_dataset(SHOWER_KEY, shape=(0, v), maxshape=(None, v), dtype="f4",
                                                  chunks=(rows, v), **opts),
        }
        for name in self.condition_names:
            self._datasets[name] = self._file.create_dataset(name, shape=(0,), maxshape=(None,), dtype="f8",
                                                             chunks=(4096,), **opts)
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
        what = f"showers {n0}..{n0 + n - 1}"
        nbytes = showers.showers.nbytes + 8 * n * (1 + len(self.condition_names))
        resources.check_disk(self.path, nbytes, f"{what} of {self.path.name}")
        datasets = [(ENERGY_KEY, showers.energies[:, None]), (SHOWER_KEY, showers.showers)]
        datasets += [(k, showers.conditions[k]) for k in self.condition_names]
        try:
            for key, values in datasets:
                self._datasets[key].resize(n0 + n, axis=0)
                self._datasets[key][n0:] = values
            self._file.flush()  # write errors surface here, not in h5py's clean-up
        except (OSError, RuntimeError) as err:
            raise self._discard(err, what) from None
        self.n_written += n

    def _discard(self, err: BaseException, what: str) -> BaseException:
        """Close the file after a failed write; return the one-line error to raise in place of ``err``.

        HDF5 writes its caches when the file closes; on a full disk that fails again, and
        h5py then leaves objects whose clean-up prints tracebacks and can crash the
        interpreter (exit 139). So the file's descriptor is first pointed at /dev/null (the
        data is discarded anyway): the close succeeds without touching the disk, and the
        atomic path deletes the temporary file.
        """
        if self._file is not None:
            _redirect_to_devnull(self._file)
            with contextlib.suppress(OSError, RuntimeError):
                self._file.close()
            self._file = None
        self._datasets = {}
        if not isinstance(err, OSError | RuntimeError) or isinstance(err, OutputPathError):
            return err
        text = str(err)
        code = getattr(err, "errno", None)
        if not isinstance(code, int):  # h5py's RuntimeErrors carry the errno in their text only
            found = re.search(r"errno = (\d+)", text)
            code = int(found.group(1)) if found else None
        reason = _SPACE_ERRORS.get(code) if code is not None else None
        if reason is not None:
            reason += "; free some space or choose another output path"
        else:
            reason = f"the write failed ({os.strerror(code) if code else text.splitlines()[0] if text else err!r:.200})"
        return OutputPathError(f"expected to write {what} to {self.path} but {reason}")

    def _abort(self, err: BaseException, what: str) -> NoReturn:
        """Discard the file and raise the error for ``err``, after the atomic path has deleted the file."""
        error = self._discard(err, what)
        self._atomic.__exit__(type(error), error, error.__traceback__)
        raise error from None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            if self._file is not None:
                self._discard(exc, "")
            self._atomic.__exit__(exc_type, exc, tb)
            return
        if self._file is not None:
            try:
                self._file.flush()  # the last metadata goes to disk here
                self._file.close()
            except (OSError, RuntimeError) as err:
                self._abort(err, f"the end of {self.path.name}")
            self._file, self._datasets = None, {}
        self._atomic.__exit__(None, None, None)


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
