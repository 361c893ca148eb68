"""The four CaloChallenge binnings as :class:`~caloforge.data.geometry.Geometry` presets, and resolving a user's choice.

Written in code, equal bit for bit to the official binning XML files (a test reads them):
``ds1-photons`` (368 voxels), ``ds1-pions`` (533), ``ds2`` (6480), ``ds3`` (40500).

References:
    CaloChallenge 2022, https://calochallenge.github.io/homepage/ (binning XML files).
"""

from __future__ import annotations

from pathlib import Path

from caloforge.data.geometry import Geometry, Layer
from caloforge.errors import GeometryError

__all__ = ["PRESETS", "matching_presets", "resolve_geometry"]


def _uniform(step: str, n: int) -> tuple[float, ...]:
    """Edges 0, step, ..., n*step, rounded to the decimals of ``step`` as the official XML writes them."""
    decimals = len(step.split(".")[1]) if "." in step else 0
    return tuple(round(k * float(step), decimals) for k in range(n + 1))


_DS1_PRE = (0, 5, 10, 30, 50, 100, 200, 400, 600)
_DS1_EMB3 = (0, 50, 100, 200, 400, 600)

PRESETS: dict[str, Geometry] = {
    "ds1-photons": Geometry(
        (
            Layer(0, _DS1_PRE, 1),
            Layer(1, (0, 2, 4, 6, 8, 10, 12, 15, 20, 30, 40, 50, 70, 90, 120, 150, 200), 10),
            Layer(2, (0, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 130, 160, 200, 250, 300, 350, 400), 10),
            Layer(3, _DS1_EMB3, 1),
            Layer(12, (0, 100, 200, 400, 1000, 2000), 1),
        ),
        name="ds1-photons",
        particle="photon",
    ),
    "ds1-pions": Geometry(
        (
            Layer(0, _DS1_PRE, 1),
            Layer(1, (0, 1, 4, 7, 10, 15, 30, 50, 90, 150, 200), 10),
            Layer(2, (0, 5, 10, 20, 30, 50, 80, 130, 200, 300, 400), 10),
            Layer(3, _DS1_EMB3, 1),
            Layer(12, (0, 10, 20, 30, 50, 80, 100, 130, 160, 200, 250, 300, 350, 400, 1000, 2000), 10),
            Layer(13, (0, 10, 20, 30, 50, 80, 100, 130, 160, 200, 250, 300, 350, 400, 600, 1000, 2000), 10),
            Layer(14, (0, 50, 100, 150, 200, 250, 300, 400, 600, 1000, 2000), 1),
        ),
        name="ds1-pions",
        particle="pion",
    ),
    # Par04 W/Si readout mesh: 45 layers, 9 x 4.65 mm (ds2) or 18 x 2.325 mm (ds3) radial bins.
    "ds2": Geometry(tuple(Layer(i, _uniform("4.65", 9), 16) for i in range(45)), name="ds2", particle="electron"),
    "ds3": Geometry(tuple(Layer(i, _uniform("2.325", 18), 50) for i in range(45)), name="ds3", particle="electron"),
}


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
