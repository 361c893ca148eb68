"""Optional dependencies, imported where they are used, with an install hint when they are missing.

caloforge's core needs numpy, scipy, h5py, torch, lightning, zuko, pydantic, typer and rich.
Figures need ``caloforge[plot]`` (matplotlib, mplhep), ONNX export ``caloforge[onnx]``,
campaigns ``caloforge[ray]``; ``caloforge[all]`` installs everything (the README does).

Example:
    >>> require("math", "plot", "an example").__name__
    'math'
    >>> require("no_such_package_here", "plot", "the report's figures")
    Traceback (most recent call last):
    ...
    caloforge.errors.MissingDependencyError: expected the optional package 'no_such_package_here' for the report's \
figures but it is not installed; install it with: pip install "caloforge[plot]"
"""

from __future__ import annotations

import importlib
from types import ModuleType

from caloforge.errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingDependencyError` naming the extra that installs it.

    Args:
        module: The module to import, e.g. ``"matplotlib"``.
        extra: The caloforge extra that installs it, e.g. ``"plot"``.
        purpose: What needs it, for the message, e.g. ``"the report's figures"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        msg = (f"expected the optional package '{module.split('.')[0]}' for {purpose} but it is not installed; "
               f"install it with: pip install \"caloforge[{extra}]\"")
        raise MissingDependencyError(msg) from None
