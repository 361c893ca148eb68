"""caloforge: machine-learning fast calorimeter simulation, from data to validated, deployable models.

The package is laid out by the stages of a shower's journey: :mod:`caloforge.data` (geometries,
showers, CaloChallenge files), :mod:`caloforge.refsim` (the reference simulator),
:mod:`caloforge.models` (generative families), :mod:`caloforge.training` (Lightning loop,
checkpoint selection, bundles), :mod:`caloforge.validation` (features, metrics, report),
:mod:`caloforge.deploy` and :mod:`caloforge.campaign`; :mod:`caloforge.runtime` holds what every
stage needs of the machine. The public API is this module:

Example:
    >>> import caloforge
    >>> showers = caloforge.simulate("ds1-photons", "photon", [65536.0] * 3, seed=1)
    >>> showers
    ShowerSet(n=3, geometry='ds1-photons')
    >>> caloforge.Geometry.preset("ds1-photons").n_voxels
    368

With a trained bundle: ``caloforge.load("run/bundle").generate(energies, seed=1)``; files with
``caloforge.io.read`` / ``caloforge.io.write``; validation with
``caloforge.evaluate(reference, generated, "report/")``.
"""

from __future__ import annotations

import importlib
from typing import Any

from caloforge._version import __version__
from caloforge.data.geometry import Geometry, Layer
from caloforge.data.showers import ShowerSet
from caloforge.errors import CaloforgeError

__all__ = ["CaloforgeError", "Geometry", "Layer", "ShowerSet", "__version__", "evaluate", "io", "load", "simulate"]

# imported on first use: they pull in h5py, torch or matplotlib; an attribute of None is the module itself
_LAZY: dict[str, tuple[str, str | None]] = {
    "io": ("caloforge.data.io", None),
    "load": ("caloforge.training.bundle", "load"),
    "evaluate": ("caloforge.validation.compare", "evaluate"),
    "simulate": ("caloforge.refsim", "simulate"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        imported = importlib.import_module(module)
        return imported if attribute is None else getattr(imported, attribute)
    msg = f"module 'caloforge' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(__all__)
