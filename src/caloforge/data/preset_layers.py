"""The layers of the four CaloChallenge binnings as plain numbers: (particle, ((layer id, r edges, alpha bins), ...)).

A leaf module: :mod:`caloforge.data.geometry` builds the :class:`~caloforge.data.geometry.Geometry` presets from it
(:func:`~caloforge.data.geometry.presets`), and :mod:`caloforge.data.presets` resolves a user's choice among them.
Written in code, equal bit for bit to the official binning XML files (a test reads them).

References:
    CaloChallenge 2022, https://calochallenge.github.io/homepage/ (binning XML files).
"""

from __future__ import annotations

__all__ = ["PRESET_LAYERS", "LayerSpec"]

LayerSpec = tuple[int, tuple[float, ...], int]
"""A layer: its id, its radial bin edges (mm), its number of alpha bins."""


def _uniform(step: str, n: int) -> tuple[float, ...]:
    """Edges 0, step, ..., n*step, rounded to the decimals of ``step`` as the official XML writes them."""
    decimals = len(step.split(".")[1]) if "." in step else 0
    return tuple(round(k * float(step), decimals) for k in range(n + 1))


_DS1_PRE = (0, 5, 10, 30, 50, 100, 200, 400, 600)
_DS1_EMB3 = (0, 50, 100, 200, 400, 600)

PRESET_LAYERS: dict[str, tuple[str, tuple[LayerSpec, ...]]] = {
    "ds1-photons": (
        "photon",
        (
            (0, _DS1_PRE, 1),
            (1, (0, 2, 4, 6, 8, 10, 12, 15, 20, 30, 40, 50, 70, 90, 120, 150, 200), 10),
            (2, (0, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 130, 160, 200, 250, 300, 350, 400), 10),
            (3, _DS1_EMB3, 1),
            (12, (0, 100, 200, 400, 1000, 2000), 1),
        ),
    ),
    "ds1-pions": (
        "pion",
        (
            (0, _DS1_PRE, 1),
            (1, (0, 1, 4, 7, 10, 15, 30, 50, 90, 150, 200), 10),
            (2, (0, 5, 10, 20, 30, 50, 80, 130, 200, 300, 400), 10),
            (3, _DS1_EMB3, 1),
            (12, (0, 10, 20, 30, 50, 80, 100, 130, 160, 200, 250, 300, 350, 400, 1000, 2000), 10),
            (13, (0, 10, 20, 30, 50, 80, 100, 130, 160, 200, 250, 300, 350, 400, 600, 1000, 2000), 10),
            (14, (0, 50, 100, 150, 200, 250, 300, 400, 600, 1000, 2000), 1),
        ),
    ),
    # Par04 W/Si readout mesh: 45 layers, 9 x 4.65 mm (ds2) or 18 x 2.325 mm (ds3) radial bins.
    "ds2": ("electron", tuple((i, _uniform("4.65", 9), 16) for i in range(45))),
    "ds3": ("electron", tuple((i, _uniform("2.325", 18), 50) for i in range(45))),
}
