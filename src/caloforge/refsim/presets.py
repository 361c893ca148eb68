"""The detector descriptions of the physics notes (``refsim-physics.md`` §3), and the choice per geometry.

:func:`atlas_like`: ATLAS barrel at |η| ≈ 0.2 as seen by CaloChallenge dataset 1, or another barrel η slice
(longer paths, optionally more material in front).
:func:`par04_wsi`: Geant4 Par04 W/Si, CaloChallenge datasets 2 and 3.
:func:`detector_for`: the description for a geometry. Every estimate is a named
module constant with its source, passed to the constructors.
"""

from __future__ import annotations

import math
from functools import lru_cache

from caloforge.data.datasets import WSI_SAMPLING_FRACTION, WSI_THRESHOLD_MEV, dataset_facts
from caloforge.data.geometry import Geometry
from caloforge.errors import ConfigError, GeometryError
from caloforge.refsim.detector import Detector, Readout, Slab
from caloforge.refsim.materials import ELEMENTS, Layer, Material, Stack

__all__ = ["ATLAS_LAYER_IDS", "MAX_BARREL_ETA", "WSI_THRESHOLD_MEV", "atlas_like", "detector_for", "par04_wsi"]

ATLAS_LAYER_IDS = (0, 1, 2, 3, 12, 13, 14)
"""CaloChallenge dataset-1 layer ids: PreSamplerB, EMB1-3, TileBar0-2 (CC binning XML)."""

# WSI_SAMPLING_FRACTION (0.033, CC ``Dataset_creation.ipynb``) and WSI_THRESHOLD_MEV (0.5 keV in silicon,
# 15.15 keV in file units, CC ``evaluate.py``) are dataset facts: caloforge.data.datasets; notes §3b.


# ------------------------------------------------------------------ ATLAS-like
ETA = 0.2
"""The |η| of CaloChallenge dataset 1 (the slice 0.20-0.25)."""

MAX_BARREL_ETA = 1.4
"""Largest |η| of an ATLAS-like barrel slice (EMB covers |η| < 1.475)."""

COSH_ETA = math.cosh(ETA)
"""Path-length factor at η = 0.2: depths quoted at η = 0 are scaled by cosh η ≈ 1.02 (notes §3a)."""

EMB_SAMPLING_FRACTION = 0.18
"""EMB electron sampling fraction, ê·SF_mip ≈ 0.18 (estimate, notes §1.1, §3a)."""

TILE_SAMPLING_FRACTION = 1.0 / 34.0
"""Tile EM-scale sampling fraction, 1/34.0 (athena ``TileSamplingFraction_jobOptions.py``, notes §3a)."""

EMB_STOCHASTIC = 0.10
"""EMB EM sampling term, 10 %/√E (Aharrouche et al., NIM A568 (2006) 601; notes §3a)."""

TILE_EM_STOCHASTIC = 0.30
"""Tile EM sampling term, sqrt(GeV) (estimate: coarse 3 mm scintillator sampling)."""

PRESAMPLER_STOCHASTIC = 0.05
"""Presampler sampling term, sqrt(GeV) (estimate: thin fully active LAr layer)."""

HADRONIC_STOCHASTIC = 0.45
"""Sampling/intrinsic term of hadronic deposits, sqrt(GeV) (estimate tuned to ≈50 %/√E pions, notes §2)."""

E_OVER_H_LAR = 1.74
"""e/h of the LAr EM calorimeter, 1.74 ± 0.04 (Kulchitsky et al., hep-ex/9911033; notes §2)."""

E_OVER_H_TILE = 1.362
"""e/h of the Tile calorimeter, 1.362 ± 0.006 (Budagov et al., JINR-E1-2002-13; notes §2)."""

UPSTREAM_X0 = 1.5
"""Solenoid + cryostat in front of the presampler, X0 (notes §3a: ≈2 X0 minus the inner detector)."""

PS_TO_STRIPS_X0 = 0.4
"""Material between presampler and strips, X0 (notes §3a: 0.3-0.5 X0, less certain)."""

EMB_DEPTHS_X0 = (4.3, 16.0, 2.0)
"""EMB1/2/3 depths at η = 0, X0 (ATLAS JINST 3 S08003; notes §3a)."""

TILE_DEPTHS_LAMBDA = (1.5, 4.1, 1.8)
"""Tile A/BC/D depths at η = 0, λ_I (notes §3a)."""

LAMBDA_IN_FRONT_OF_TILE = 2.0
"""Material in front of Tile from the calorimeter envelope, λ_I; the LAr-Tile gap is what remains.

The notes (§3a) derive ≈2.3 λ from 9.7 λ total - 7.4 λ of Tile, a recalled figure that
includes material ds1 particles do not cross. 2.0 λ (a 0.43 λ gap) is a tuning choice
(estimate) that keeps the 10 GeV pion response inside 0.7-0.95; 2.3 λ gives 0.68.
"""


def _emb() -> Material:
    e = ELEMENTS
    return Stack(
        "EMB Pb/LAr accordion",
        (
            Layer(e["Pb"], 1.53),
            Layer(e["Fe"], 0.4),
            Layer(e["Kapton"], 0.3),
            Layer(e["LAr"], 4.2, active=True),
        ),
    ).material()


def _tile() -> Material:
    e = ELEMENTS
    return Stack("Tile Fe/scintillator", (Layer(e["Fe"], 14.0), Layer(e["Scint"], 3.0, active=True))).material()


def atlas_like(eta: float = ETA, extra_material_x0: float = 0.0, *, cosh_eta: float | None = None) -> Detector:
    """ATLAS barrel at |η| ≈ ``eta`` as seen by CaloChallenge dataset 1 (notes §3a); the default is |η| ≈ 0.2.

    Upstream material (solenoid, cryostat), presampler (layer 0), EMB strips/middle/back
    (1, 2, 3), the LAr-Tile gap and Tile A/BC/D (12, 13, 14). Voxels are at the EM scale.
    Another η slice crosses every slab on a path longer by cosh η; ``extra_material_x0`` adds
    dead material in front of everything (inner-detector services, as at larger |η|): showers
    start earlier, more energy is lost before the presampler and its fluctuation worsens the
    resolution. The binning (dataset 1's) is the same for every slice.

    Args:
        eta: Pseudorapidity of the slice, in the barrel: 0 <= |η| <= :data:`MAX_BARREL_ETA`.
        extra_material_x0: Dead material added in front, X0 at η = 0 (aluminium; >= 0).
        cosh_eta: Path-length factor used instead of cosh(eta) (kept for callers of earlier versions).

    Raises:
        ConfigError: for |η| outside the barrel or negative (or absurd, over 20 X0) extra material.

    Example:
        >>> atlas_like() == atlas_like(0.2, 0.0)
        True
        >>> atlas_like(0.7, 1.0).name
        'ATLAS-barrel-like |eta|~0.7, +1 X0 in front'
    """
    if not (math.isfinite(eta) and abs(eta) <= MAX_BARREL_ETA):
        msg = f"expected |eta| <= {MAX_BARREL_ETA} (the barrel) but got {eta!r}, in atlas_like"
        raise ConfigError(msg)
    if not (math.isfinite(extra_material_x0) and 0 <= extra_material_x0 <= 20):
        msg = f"expected extra_material_x0 in [0, 20] X0 but got {extra_material_x0!r}, in atlas_like"
        raise ConfigError(msg)
    if cosh_eta is None:
        cosh_eta = math.cosh(eta)
    emb, tile = _emb(), _tile()
    al = Material.homogeneous(ELEMENTS["Al"])
    lar = Material.homogeneous(ELEMENTS["LAr"])
    emb_ro = Readout(
        EMB_SAMPLING_FRACTION, 1 / EMB_SAMPLING_FRACTION, EMB_STOCHASTIC, HADRONIC_STOCHASTIC, E_OVER_H_LAR
    )
    tile_ro = Readout(
        TILE_SAMPLING_FRACTION, 1 / TILE_SAMPLING_FRACTION, TILE_EM_STOCHASTIC, HADRONIC_STOCHASTIC, E_OVER_H_TILE
    )
    ps_ro = Readout(1.0, 1.0, PRESAMPLER_STOCHASTIC, HADRONIC_STOCHASTIC, E_OVER_H_LAR)
    upstream_mm = UPSTREAM_X0 * al.x0_mm * cosh_eta
    gap_x0 = PS_TO_STRIPS_X0 * al.x0_mm * cosh_eta
    emb_mm = [d * emb.x0_mm * cosh_eta for d in EMB_DEPTHS_X0]
    in_front = (upstream_mm + gap_x0) / al.lambda_mm + 11.0 * cosh_eta / lar.lambda_mm + sum(emb_mm) / emb.lambda_mm
    gap_mm = max(0.0, LAMBDA_IN_FRONT_OF_TILE * cosh_eta - in_front) * al.lambda_mm
    extra = () if extra_material_x0 == 0 else (
        Slab("extra material in front (services)", al, extra_material_x0 * al.x0_mm * cosh_eta),)
    slabs = (
        *extra,
        Slab("upstream (solenoid, cryostat)", al, upstream_mm),
        Slab("PreSamplerB", lar, 11.0 * cosh_eta, 0, ps_ro, moliere_radius_mm=al.moliere_radius_mm),
        Slab("presampler-strips material", al, gap_x0),
        Slab("EMB1", emb, emb_mm[0], 1, emb_ro),
        Slab("EMB2", emb, emb_mm[1], 2, emb_ro),
        Slab("EMB3", emb, emb_mm[2], 3, emb_ro),
        Slab("LAr-Tile gap (cryostat)", al, gap_mm),
        Slab("TileBar0 (A)", tile, TILE_DEPTHS_LAMBDA[0] * tile.lambda_mm * cosh_eta, 12, tile_ro),
        Slab("TileBar1 (BC)", tile, TILE_DEPTHS_LAMBDA[1] * tile.lambda_mm * cosh_eta, 13, tile_ro),
        Slab("TileBar2 (D)", tile, TILE_DEPTHS_LAMBDA[2] * tile.lambda_mm * cosh_eta, 14, tile_ro),
    )
    name = f"ATLAS-barrel-like |eta|~{abs(eta):g}" + (f", +{extra_material_x0:g} X0 in front" if extra else "")
    return Detector(name, slabs, emb, EMB_STOCHASTIC)


# --------------------------------------------------------------------- Par04
WSI_LAYER_MM = 3.4
"""Par04 readout layer: 2 periods of 1.4 mm W + 0.3 mm Si = 3.4 mm ≈ 0.81 X0 (notes §3b)."""

WSI_STOCHASTIC = 0.14
"""W/Si EM sampling term, sqrt(GeV) (estimate in 12-17 %; CALICE SiW 16.5 % with thicker W, notes §3b)."""

WSI_E_OVER_H = 1.4
"""e/h of W/Si (estimate; not in the notes, typical of non-compensating Si calorimeters)."""

WSI_HADRONIC_STOCHASTIC = 0.6
"""Hadronic sampling term of W/Si, sqrt(GeV) (estimate)."""


def par04_wsi(
    n_layers: int = 45, layer_mm: float = WSI_LAYER_MM, sampling_fraction: float = WSI_SAMPLING_FRACTION
) -> Detector:
    """Geant4 Par04 W/Si (CaloChallenge datasets 2 and 3): ``n_layers`` uniform readout slabs.

    Voxel energy = Si energy / 0.033 with a 15.15 keV threshold in file units (notes §3b).
    The electron sampling fraction defaults to the CC calibration value 0.033 (the GFLASH
    estimate ê·SF_mip = 0.026 would give a response of ≈0.79).

    Args:
        n_layers: Number of readout layers (ids 0..n_layers-1).
        layer_mm: Thickness of each readout layer, mm.
        sampling_fraction: Electron sampling fraction (Si energy / deposit).
    """
    e = ELEMENTS
    wsi = Stack("Par04 W 1.4 mm / Si 0.3 mm", (Layer(e["W"], 1.4), Layer(e["Si"], 0.3, active=True))).material()
    ro = Readout(sampling_fraction, 1 / WSI_SAMPLING_FRACTION, WSI_STOCHASTIC, WSI_HADRONIC_STOCHASTIC, WSI_E_OVER_H)
    slabs = tuple(Slab(f"W/Si layer {i}", wsi, layer_mm, i, ro) for i in range(n_layers))
    return Detector("Par04 W/Si", slabs, wsi, WSI_STOCHASTIC, threshold_mev=WSI_THRESHOLD_MEV, tilt_allowed=True)


def detector_for(geometry: Geometry) -> Detector:
    """The detector description for a geometry.

    The dataset's detector (:mod:`caloforge.data.datasets`) for the CaloChallenge binnings. For
    a custom geometry: ATLAS-like when the layer ids are a subset of the dataset-1 ids that
    includes the Tile layer 12 (sub-binnings of dataset 1); W/Si with one 3.4 mm slab per layer
    when the ids are 0..n-1 (any uniform-slab binning).

    Raises:
        GeometryError: for any other set of layer ids.

    Example:
        >>> detector_for(Geometry.preset("ds2")).name
        'Par04 W/Si'
    """
    facts = dataset_facts(geometry)
    ids = geometry.layer_ids
    if facts is not None:
        return _atlas_cached() if facts.detector == "atlas-like" else _wsi_cached(len(ids))
    if set(ids) <= set(ATLAS_LAYER_IDS) and 12 in ids:
        return _atlas_cached()
    if ids == tuple(range(len(ids))):
        return _wsi_cached(len(ids))
    msg = (
        f"expected layer ids that are a subset of {list(ATLAS_LAYER_IDS)} including 12 (ATLAS-like) or 0..n-1 "
        f"(W/Si slabs) but got {list(ids)}, in geometry '{geometry.name}'; pass detector=... to describe it"
    )
    raise GeometryError(msg)


@lru_cache(maxsize=1)
def _atlas_cached() -> Detector:
    return atlas_like()


@lru_cache(maxsize=8)
def _wsi_cached(n_layers: int) -> Detector:
    return par04_wsi(n_layers)
