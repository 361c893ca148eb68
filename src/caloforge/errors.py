"""The caloforge exception hierarchy.

Every error a user can cause derives from :class:`CaloforgeError`. Messages are
one line and say what was wrong, where, and what to do; the CLI prints them
without a traceback (unless ``--debug``) and exits non-zero.
"""

from __future__ import annotations

__all__ = [
    "CaloforgeError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "FileFormatError",
    "GeometryError",
    "GeometryMismatchError",
    "MissingDependencyError",
    "OutputExistsError",
    "OutputPathError",
]


class CaloforgeError(Exception):
    """Base class of every error caloforge raises on bad input."""


class DataError(CaloforgeError, ValueError):
    """Shower data that is inconsistent or unphysical (shapes, NaN, negative energies)."""


class FileFormatError(CaloforgeError, OSError):
    """A file that is not a readable CaloChallenge HDF5 file (not HDF5, truncated, missing datasets)."""


class GeometryError(CaloforgeError, ValueError):
    """A geometry that cannot be built: unknown preset, malformed binning XML."""


class GeometryMismatchError(GeometryError):
    """Data whose voxel count does not match the requested geometry."""


class OutputExistsError(CaloforgeError, FileExistsError):
    """An output path that already exists and would be overwritten without ``--force``."""


class OutputPathError(CaloforgeError, OSError):
    """An output location that cannot be written (missing or read-only directory)."""


class ConfigError(CaloforgeError, ValueError):
    """A configuration value or file that is invalid."""


class CheckpointError(CaloforgeError, OSError):
    """A checkpoint or bundle that is missing, incomplete or corrupt."""


class MissingDependencyError(CaloforgeError, ImportError):
    """An optional package that a feature needs is not installed; the message says which extra installs it."""
