"""Facts of the four CaloChallenge datasets, in one table: every stage reads them from here.

Which dataset a geometry is, is decided by its binning (:attr:`caloforge.data.geometry.Geometry.dataset`);
what follows from it (the readout threshold, ``min_energy`` of the official ``evaluate.py``: applied
to both samples and the lower edge of the log-spaced E_layer and voxel histograms; the particle,
the energy spectrum and the detector the reference simulator uses) is this table.
A custom geometry has no entry: callers fall back to their documented defaults (the model families
to :data:`CUSTOM_THRESHOLD_MEV`, through :func:`readout_threshold_mev`).

Example:
    >>> from caloforge.data.presets import PRESETS
    >>> facts = dataset_facts(PRESETS["ds2"])
    >>> facts.particle, round(facts.readout_threshold_mev * 1e3, 2), facts.spectrum
    ('electron', 15.15, 'log-uniform:1000:1000000')
    >>> dataset_facts(PRESETS["ds1-photons"]).readout_threshold_mev
    1.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from caloforge.data.geometry import Geometry

__all__ = ["CUSTOM_THRESHOLD_MEV", "DATASETS", "WSI_SAMPLING_FRACTION", "WSI_THRESHOLD_MEV", "DatasetFacts",
           "dataset_facts", "readout_threshold_mev"]

WSI_SAMPLING_FRACTION = 0.033
"""Datasets 2 and 3 (Par04 W/Si): file energy = silicon energy / 0.033 (the CaloChallenge calibration)."""

WSI_THRESHOLD_MEV = 0.5e-3 / WSI_SAMPLING_FRACTION
"""Datasets 2 and 3: the 0.5 keV silicon readout threshold in file units, 15.15 keV."""

CUSTOM_THRESHOLD_MEV = 1.0
"""The readout threshold the model families (flow, parametric) assume where no dataset is known: a custom
geometry, or a model built without one. Dataset 1's; set the family's ``threshold`` for another detector."""


@dataclass(frozen=True)
class DatasetFacts:
    """What is known of one CaloChallenge dataset.

    Attributes:
        name: ``ds1-photons``, ``ds1-pions``, ``ds2`` or ``ds3`` (the preset of the same name).
        particle: The particle of its showers.
        readout_threshold_mev: Voxels below this are read out as 0 (1 MeV for dataset 1,
            15.15 keV for datasets 2 and 3): the official evaluation's ``min_energy``, applied to
            both samples before every metric and the lower edge of the log-spaced E_layer and
            voxel histograms.
        spectrum: The incident-energy spectrum (``caloforge.refsim.Spectrum.parse`` syntax).
        detector: The reference simulator's detector description for it.
    """

    name: str
    particle: str
    readout_threshold_mev: float
    spectrum: str
    detector: Literal["atlas-like", "par04-wsi"]


DATASETS: dict[str, DatasetFacts] = {
    "ds1-photons": DatasetFacts("ds1-photons", "photon", 1.0, "ds1", "atlas-like"),
    "ds1-pions": DatasetFacts("ds1-pions", "pion", 1.0, "ds1", "atlas-like"),
    "ds2": DatasetFacts("ds2", "electron", WSI_THRESHOLD_MEV, "log-uniform:1000:1000000", "par04-wsi"),
    "ds3": DatasetFacts("ds3", "electron", WSI_THRESHOLD_MEV, "log-uniform:1000:1000000", "par04-wsi"),
}


def dataset_facts(geometry: Geometry) -> DatasetFacts | None:
    """The facts of the CaloChallenge dataset whose binning ``geometry`` is, or None for a custom geometry."""
    name = geometry.dataset
    return None if name is None else DATASETS[name]


def readout_threshold_mev(geometry: Geometry | None, default: float = CUSTOM_THRESHOLD_MEV) -> float:
    """The readout threshold of ``geometry``'s CaloChallenge dataset, MeV, or ``default`` for a custom geometry or None.

    Example:
        >>> from caloforge.data.presets import PRESETS
        >>> readout_threshold_mev(PRESETS["ds3"]) == WSI_THRESHOLD_MEV, readout_threshold_mev(None)
        (True, 1.0)
    """
    facts = None if geometry is None else dataset_facts(geometry)
    return default if facts is None else facts.readout_threshold_mev
