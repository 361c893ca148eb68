"""caloforge: machine-learning fast calorimeter simulation, from data to validated, deployable models."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("caloforge")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from caloforge.errors import CaloforgeError
from caloforge.geometry import Geometry, Layer
from caloforge.showers import ShowerSet

__all__ = ["CaloforgeError", "Geometry", "Layer", "ShowerSet", "__version__"]
