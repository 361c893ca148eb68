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

__all__ = ["CaloforgeError", "Geometry", "Layer", "ShowerSet", "__version__", "load"]


def __getattr__(name: str) -> object:
    """``caloforge.load`` is :func:`caloforge.bundle.load`, imported on first use (it pulls in torch)."""
    if name == "load":
        from caloforge.bundle import load

        return load
    msg = f"module 'caloforge' has no attribute {name!r}"
    raise AttributeError(msg)
