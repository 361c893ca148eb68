"""Settings of the particle-level (``cascade``) transport: production and tracking cuts, the hybrid split.

Energies are kinetic energies in MeV. Each cut trades speed for detail; ``docs/refsim.md``
("cascade mode") lists the measured effect of the defaults.

Example:
    >>> CascadeConfig().hybrid_split_mev
    1000.0
    >>> CascadeConfig(brems_cut_mev=-1.0)
    Traceback (most recent call last):
    ...
    caloforge.errors.ConfigError: expected brems_cut_mev > 0.0 but got -1.0, in CascadeConfig
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from caloforge.config import Config
from caloforge.errors import ConfigError

__all__ = ["PHYSICS", "CascadeConfig", "check_physics"]

PHYSICS = ("gflash", "cascade")
"""The physics modes of :func:`caloforge.refsim.simulate`."""

_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class CascadeConfig(Config):
    """Cuts and switches of the cascade transport.

    Args:
        brems_cut_mev: Bremsstrahlung production cut k_cut: softer photons are part of the
            continuous (local) energy loss.
        delta_cut_mev: Møller/Bhabha δ-ray production cut: softer transfers are part of the
            restricted ionisation loss.
        electron_cut_mev: e± tracking cut: slower electrons deposit their energy where they are
            (positrons then annihilate at rest).
        photon_cut_mev: Photon tracking cut: softer photons are absorbed where they are
            (photo-electric absorption; above it photo-absorption is a sampled process).
        max_step_x0: Longest e± step, in radiation lengths of the sub-layer's material.
        max_loss_fraction: Longest e± step as a fraction of the energy lost continuously in it.
        max_scatter_rad: Longest e± step as the path over which the Highland angle θ0 reaches this
            (Highland is a small-angle law: the energy deposited in thin active layers by slow,
            strongly scattered electrons converges only with steps of θ0 of a few tenths of a radian).
        hybrid_split_mev: e± and photons below this energy (and above ``handoff_min_mev``,
            moving forward) deposit a GFLASH sub-shower from where they are, along their
            direction; 0 transports everything.
        handoff_min_mev: In hybrid mode, softer particles are not handed off. With GFLASH hand-offs each
            is read where it is (a photon where it first interacts) with the transported sampling fraction
            of its slab (a few-MeV particle travels millimetres); with library hand-offs photons are
            transported and e± deposit where they are, in their sub-layer (as below ``electron_cut_mev``).
        handoff_min_cos: A hand-off must move forward: direction cosine to the detector axis >= this.
        em_scale: File MeV per active MeV. ``transport``: the EM scale, 1 / the electron sampling
            fraction that the transport itself gives (:mod:`.calibrate`); ``readout``: the detector
            readout's fixed calibration; ``auto``: ``readout`` for the CaloChallenge W/Si convention
            (file = Si energy / 0.033), ``transport`` for every other readout (dataset 1: EM scale).
        spot_fraction: Energy spots of a parameterised sub-shower, as a fraction of GFLASH's
            N_spot = (10.3/c_s) E^0.959 (fewer: faster, grainier sub-showers).
        calibration_energy_mev: Electron energy of the self-calibration.
        handoff_min_alpha: Lower clamp on the gamma shape α of a parameterised sub-shower (GFLASH
            mode: 1.1); GFLASH's laws, fitted above a few hundred MeV, give soft sub-showers α ≈ 1.1
            and a mean depth of ~10 X0, far deeper than transport puts them.
        handoff_radial_cut_rm: Truncation of a parameterised sub-shower's radial profile, Molière
            radii (GFLASH mode: 8). PDG: 99 % of a shower lies within 3.5 R_M; with 8 the sub-showers'
            tails put 2-3 % more energy outside the dataset-2 binning (4 R_M) than transport does.
        calibration_showers: Electron showers of the self-calibration of the hand-off response
            (visible fraction and its spread in each sampling stack, from full transport).
        pion_model: Whether charged pions undergo nuclear interactions (False: ionisation only).
        handoff: What a hand-off deposits: ``gflash`` (a parameterised sub-shower, :mod:`.handoff`),
            ``library`` (a frozen sub-shower of full transport replayed, :mod:`.library`, :mod:`.replay`;
            hand-offs outside the detector's EM stack still use GFLASH), or ``auto`` (the default): ``library``
            where every read-out slab is made of the EM stack (W/Si: datasets 2 and 3), ``gflash`` elsewhere
            (dataset 1, whose Tile after the EMB the library does not describe).
        library_entries: Least frozen sub-showers per (particle, energy, start phase) bin of the library at normal
            incidence (more: fewer repeats, a longer one-off build).
        library_precision: Relative statistical error wanted of the library's mean visible energy per particle
            (hand-offs reuse the entries, so it is a bias of the hybrid's response): sets the entries per bin
            where ``library_entries`` is not enough (c_s² / precision² GeV of sub-showers per particle).
    """

    brems_cut_mev: _Positive = 1.0
    delta_cut_mev: _Positive = 1.0
    electron_cut_mev: _Positive = 0.5
    photon_cut_mev: _Positive = 0.05
    max_step_x0: Annotated[float, Field(gt=0, le=5, allow_inf_nan=False)] = 0.2
    max_loss_fraction: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.2
    max_scatter_rad: Annotated[float, Field(gt=0, le=3, allow_inf_nan=False)] = 0.3
    hybrid_split_mev: _NonNegative = 1000.0
    handoff_min_mev: _Positive = 5.0
    handoff_min_cos: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.5
    em_scale: Literal["auto", "transport", "readout"] = "auto"
    spot_fraction: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] = 0.5
    calibration_energy_mev: _Positive = 1000.0
    calibration_showers: Annotated[int, Field(ge=10, le=100000)] = 400
    handoff_min_alpha: Annotated[float, Field(ge=1.01, le=10, allow_inf_nan=False)] = 2.0
    handoff_radial_cut_rm: Annotated[float, Field(gt=0, le=20, allow_inf_nan=False)] = 4.0
    pion_model: bool = True
    handoff: Literal["auto", "gflash", "library"] = "auto"
    library_entries: Annotated[int, Field(ge=1, le=1000)] = 16
    library_precision: Annotated[float, Field(ge=0.001, le=0.1, allow_inf_nan=False)] = 0.003

    @model_validator(mode="after")
    def _ordered(self) -> CascadeConfig:
        if self.hybrid_split_mev and self.hybrid_split_mev < self.handoff_min_mev:
            msg = (f"expected hybrid_split_mev = 0 or >= handoff_min_mev ({self.handoff_min_mev}) but got "
                   f"{self.hybrid_split_mev}, in CascadeConfig")
            raise ConfigError(msg)
        return self

    @property
    def reference_energy_mev(self) -> float:
        """Electron energy of the self-calibration, MeV."""
        return self.calibration_energy_mev

    @property
    def hybrid(self) -> bool:
        """Whether sub-showers below the split are parameterised."""
        return self.hybrid_split_mev > 0


def check_physics(
    physics: str, cascade: CascadeConfig | None = None, where: str = "in simulate"
) -> CascadeConfig | None:
    """The cascade settings to use, or None for the GFLASH mode.

    Raises:
        ConfigError: for an unknown mode, or cascade settings given to the GFLASH mode.

    Example:
        >>> check_physics("gflash") is None, check_physics("cascade").hybrid
        (True, True)
        >>> check_physics("geant4")
        Traceback (most recent call last):
        ...
        caloforge.errors.ConfigError: expected physics in ['gflash', 'cascade'] but got 'geant4', in simulate
    """
    if physics not in PHYSICS:
        msg = f"expected physics in {list(PHYSICS)} but got {physics!r}, {where}"
        raise ConfigError(msg)
    if physics == "gflash":
        if cascade is not None:
            msg = f"expected no cascade settings with physics='gflash' but got {cascade!r}, {where}"
            raise ConfigError(msg)
        return None
    return cascade or CascadeConfig()
