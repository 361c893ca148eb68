"""The four CaloChallenge binnings as :class:`~caloforge.data.geometry.Geometry` presets, and resolving a user's choice.

Written in code, equal bit for bit to the official binning XML files (a test reads them):
``ds1-photons`` (368 voxels), ``ds1-pions`` (533), ``ds2`` (6480), ``ds3`` (40500).

References:
    CaloChallenge 2022, https://calochallenge.github.io/homepage/ (binning XML files).
"""

from __future__ import annotations

from pathlib import Path

from caloforge.data.geometry import Geometry, presets
from caloforge.errors import GeometryError

__all__ = ["PRESETS", "matching_presets", "resolve_geometry"]


PRESETS: dict[str, Geometry] = presets()
"""The presets by name (the objects :meth:`Geometry.preset` returns)."""


def matching_presets(n_voxels: int) -> list[str]:
    """Names of the presets with ``n_voxels`` voxels."""
    return [name for name, g in PRESETS.items() if g.n_voxels == n_voxels]


def resolve_geometry(spec: str | Path | Geometry | None, n_voxels: int | None = None) -> Geometry:
    """Turn a user's geometry choice into a :class:`Geometry`.

    Args:
        spec: A preset name, a path to a binning XML file (``file.xml:particle`` picks
            one ``<Bin>`` of a file with several), a Geometry, or None to infer the preset
            from ``n_voxels`` (unambiguous only).
        n_voxels: The voxel count of the data, checked against the result when given.

    Raises:
        GeometryError: if nothing or more than one preset matches.
        GeometryMismatchError: if the voxel count does not match.
    """
    if isinstance(spec, Geometry):
        geometry = spec
    elif spec is None:
        if n_voxels is None:
            msg = "expected a geometry (preset name or binning XML) but got none"
            raise GeometryError(msg)
        names = matching_presets(n_voxels)
        if len(names) != 1:
            found = f"presets {names} match" if names else "no preset matches"
            msg = f"cannot infer the geometry of data with {n_voxels} voxels ({found}); pass --geometry NAME|XML"
            raise GeometryError(msg)
        geometry = PRESETS[names[0]]
    elif str(spec) in PRESETS:
        geometry = PRESETS[str(spec)]
    elif str(spec).endswith(".xml") or Path(spec).is_file():
        geometry = Geometry.from_xml(spec)
    elif ".xml:" in str(spec):
        path, particle = str(spec).rsplit(":", 1)
        geometry = Geometry.from_xml(path, particle=particle)
    else:
        geometry = Geometry.preset(str(spec))
    if n_voxels is not None:
        geometry.check_voxels(n_voxels)
    return geometry
