"""caloforge's reference shower simulator: a fast, parameterised stand-in for Geant4.

GFLASH electromagnetic showers (e±, γ) and a two-component pion model, deposited
as energy spots into any CaloChallenge geometry that has a detector description
(ATLAS-barrel-like for dataset 1, Par04 W/Si for datasets 2 and 3); or, with
``physics="cascade"``, particle transport through the detector's sub-layers
(:mod:`caloforge.refsim.cascade`). See ``docs/refsim.md`` for the models, their
parameters and their validation.

Example:
    >>> from caloforge.refsim import simulate
    >>> showers = simulate("ds2", "electron", [1e4, 1e5], seed=0)
    >>> showers.showers.shape
    (2, 6480)
"""

from __future__ import annotations

from caloforge.refsim.cascade.config import CascadeConfig
from caloforge.refsim.detector import Detector, Readout, Slab
from caloforge.refsim.em import EmModel
from caloforge.refsim.hadron import PionModel
from caloforge.refsim.presets import atlas_like, detector_for, par04_wsi
from caloforge.refsim.simulate import PARTICLES, canonical_particle, simulate, simulate_to_file
from caloforge.refsim.spectra import Spectrum

__all__ = [
    "PARTICLES",
    "CascadeConfig",
    "Detector",
    "EmModel",
    "PionModel",
    "Readout",
    "Slab",
    "Spectrum",
    "atlas_like",
    "canonical_particle",
    "detector_for",
    "par04_wsi",
    "simulate",
    "simulate_to_file",
]
