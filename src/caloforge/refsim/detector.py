"""Detector descriptions for the reference simulator: slabs of material along the shower axis.

A :class:`Detector` is an ordered stack of :class:`Slab` s, front to back. Each slab
has an effective :class:`~caloforge.refsim.materials.Material` (X0, λ_I, Molière
radius, ...), a thickness and, when it is read out, the id of the CaloChallenge
layer it fills and a :class:`Readout` (sampling fraction, EM-scale calibration,
sampling terms, e/h). Dead material (cryostats, cables) has no readout: energy
deposited there is lost, as in the real detector.

The two descriptions of the physics notes (§3) are in
:mod:`caloforge.refsim.presets`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from caloforge.data.geometry import Geometry
from caloforge.errors import ConfigError, GeometryError
from caloforge.refsim.materials import Material

__all__ = ["Detector", "Readout", "Slab", "StepGrid"]


@dataclass(frozen=True)
class Readout:
    """How energy deposited in a slab becomes the file's voxel energy.

    Args:
        sampling_fraction: Visible (active) fraction of an electron shower's deposit.
        calibration: File MeV per visible MeV (1 / the calibration sampling fraction);
            ``sampling_fraction * calibration = 1`` is the EM scale.
        em_stochastic: Sampling term c_s of EM deposits, sqrt(GeV) (σ/E = c_s/√E).
        hadronic_stochastic: Sampling term of the hadronic component, sqrt(GeV).
        e_over_h: Non-compensation e/h: hadronic deposits read 1/(e/h) of EM ones.
    """

    sampling_fraction: float
    calibration: float
    em_stochastic: float
    hadronic_stochastic: float
    e_over_h: float

    def __post_init__(self) -> None:
        for name in ("sampling_fraction", "calibration", "e_over_h"):
            if not getattr(self, name) > 0:
                msg = f"expected a positive {name} but got {getattr(self, name)}, in a detector Readout"
                raise ConfigError(msg)

    @property
    def em_scale(self) -> float:
        """File MeV per deposited MeV of an EM shower (1 at the EM scale)."""
        return self.sampling_fraction * self.calibration


@dataclass(frozen=True)
class Slab:
    """A slab of homogenised material along the shower axis.

    Args:
        name: Label (e.g. ``EMB2``).
        material: Effective medium.
        thickness_mm: Thickness along the axis at normal incidence, mm.
        layer_id: CaloChallenge layer id it fills, or None for dead material.
        readout: Readout of an instrumented slab; None for dead material.
        moliere_radius_mm: Lateral EM scale used in this slab; defaults to the
            material's. Thin slabs (presampler) take that of the material the
            shower developed in.
    """

    name: str
    material: Material
    thickness_mm: float
    layer_id: int | None = None
    readout: Readout | None = None
    moliere_radius_mm: float | None = None

    @property
    def rm_mm(self) -> float:
        """Lateral EM scale in this slab, mm."""
        return self.moliere_radius_mm or self.material.moliere_radius_mm


@dataclass(frozen=True)
class StepGrid:
    """Longitudinal integration steps of a detector read out with a given geometry.

    Arrays of length S+1 are step edges, of length S per-step properties. Steps never
    straddle a slab boundary. ``layer`` is the geometry layer position or -1.
    """

    z_mm: NDArray[np.float64]
    t_x0: NDArray[np.float64]
    l_lambda: NDArray[np.float64]
    slab: NDArray[np.int64]
    layer: NDArray[np.int64]
    rm_mm: NDArray[np.float64]
    lambda_mm: NDArray[np.float64]
    em_scale: NDArray[np.float64]
    had_scale: NDArray[np.float64]
    mip_scale: NDArray[np.float64]
    c_em: NDArray[np.float64]
    c_had: NDArray[np.float64]
    mip_dedx: NDArray[np.float64]
    layer_steps: tuple[NDArray[np.int64], ...]

    @property
    def n_steps(self) -> int:
        """Number of steps S."""
        return int(self.slab.size)


@dataclass(frozen=True)
class Detector:
    """A calorimeter description: slabs plus the medium that sets the EM shower parameters.

    Args:
        name: Label.
        slabs: Front to back.
        em_medium: Medium whose Z_eff, Ec, F_S and ê enter the GFLASH longitudinal
            parameters (the main EM sampling stack).
        em_stochastic: Sampling term c_s (sqrt(GeV)) of the main EM stack; also sets
            the GFLASH spot count N_spot = (10.3/c_s) E^0.959.
        threshold_mev: Voxels below this (file units, MeV) are zeroed.
        tilt_allowed: Whether an incidence angle may tilt the shower axis.
        max_step_x0: Largest integration step, X0.
        max_step_lambda: Largest integration step, λ_I.
        max_steps_per_slab: Cap on steps per slab (thick hadronic slabs).
    """

    name: str
    slabs: tuple[Slab, ...]
    em_medium: Material
    em_stochastic: float
    threshold_mev: float = 0.0
    tilt_allowed: bool = False
    max_step_x0: float = 0.5
    max_step_lambda: float = 0.1
    max_steps_per_slab: int = 16
    _ids: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = tuple(s.layer_id for s in self.slabs if s.layer_id is not None)
        if len(set(ids)) != len(ids):
            msg = f"expected each layer id in one slab but got {ids}, in detector {self.name}"
            raise ConfigError(msg)
        if any(s.thickness_mm <= 0 for s in self.slabs) or not self.slabs:
            msg = f"expected slabs of positive thickness, in detector {self.name}"
            raise ConfigError(msg)
        object.__setattr__(self, "_ids", ids)

    @property
    def layer_ids(self) -> tuple[int, ...]:
        """Ids of the instrumented slabs, front to back."""
        return self._ids

    def check_geometry(self, geometry: Geometry) -> None:
        """Raise :class:`GeometryError` unless every geometry layer id is a slab of this detector."""
        missing = [i for i in geometry.layer_ids if i not in self._ids]
        if missing:
            msg = (
                f"expected layer ids in {list(self._ids)} but got {missing}, in geometry '{geometry.name}' "
                f"with detector '{self.name}'"
            )
            raise GeometryError(msg)

    def steps(self, geometry: Geometry) -> StepGrid:
        """The integration steps for ``geometry`` (cached)."""
        self.check_geometry(geometry)
        return _step_grid(self, geometry)


@lru_cache(maxsize=16)
def _step_grid(detector: Detector, geometry: Geometry) -> StepGrid:
    position = {lid: i for i, lid in enumerate(geometry.layer_ids)}
    z, t, lam = [0.0], [0.0], [0.0]
    rows: list[tuple[float, ...]] = []
    for k, slab in enumerate(detector.slabs):
        m = slab.material
        x0, ll = slab.thickness_mm / m.x0_mm, slab.thickness_mm / m.lambda_mm
        n = int(
            min(
                detector.max_steps_per_slab,
                max(1, math.ceil(max(x0 / detector.max_step_x0, ll / detector.max_step_lambda) - 1e-9)),
            )
        )
        r = slab.readout
        read = r is not None and slab.layer_id in position
        layer = position[slab.layer_id] if read and slab.layer_id is not None else -1
        em = r.em_scale if read and r is not None else 0.0
        for _ in range(n):
            z.append(z[-1] + slab.thickness_mm / n)
            t.append(t[-1] + x0 / n)
            lam.append(lam[-1] + ll / n)
            rows.append(
                (
                    k,
                    layer,
                    slab.rm_mm,
                    m.lambda_mm,
                    em,
                    em / r.e_over_h if read and r is not None else 0.0,
                    m.mip_sampling_fraction * r.calibration if read and r is not None else 0.0,
                    r.em_stochastic if r is not None else 0.0,
                    r.hadronic_stochastic if r is not None else 0.0,
                    m.mip_dedx,
                )
            )
    cols = np.array(rows, dtype=np.float64).T
    layer_of = cols[1].astype(np.int64)
    return StepGrid(
        z_mm=np.array(z),
        t_x0=np.array(t),
        l_lambda=np.array(lam),
        slab=cols[0].astype(np.int64),
        layer=layer_of,
        rm_mm=cols[2],
        lambda_mm=cols[3],
        em_scale=cols[4],
        had_scale=cols[5],
        mip_scale=cols[6],
        c_em=cols[7],
        c_had=cols[8],
        mip_dedx=cols[9],
        layer_steps=tuple(np.flatnonzero(layer_of == i) for i in range(geometry.n_layers)),
    )
