"""Materials and sampling stacks with the GFLASH mixing rules.

Element values are the PDG "Atomic and nuclear properties" tables (recalled in
the physics notes, ``refsim-physics.md`` §1.1). A :class:`Stack` of slabs (one
sampling period) is reduced to an effective homogeneous :class:`Material` with
the rules of Grindhammer & Peters: mass-weighted Z and A, 1/X0 averaged by mass
(g/cm²) or by thickness (mm), critical energy and Molière radius from the
mass-weighted Ec/X0, sampling frequency F_S = X0,eff / period and the e/mip
ratio ê = 1/(1 + 0.007 (Z_passive - Z_active)).

References:
    G. Grindhammer, S. Peters, "The parameterized simulation of electromagnetic
    showers in homogeneous and sampling calorimeters", hep-ex/0001020.
    PDG, "Passage of particles through matter" (critical energy, Molière radius).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from caloforge.errors import ConfigError

__all__ = [
    "ELEMENTS",
    "SCALE_ENERGY_MEV",
    "Element",
    "Layer",
    "Material",
    "Stack",
    "critical_energy",
]

SCALE_ENERGY_MEV = 21.2
"""Multiple-scattering scale energy Es (MeV) in R_M = X0 Es / Ec [PDG, GFLASH]."""


def critical_energy(x0_g_cm2: float, z: float, a: float) -> float:
    """GFLASH critical energy Ec = 2.66 (X0 Z / A)^1.1 MeV with X0 in g/cm².

    Geant4's GFLASH evaluates this with X0 in mm (physics notes §1.5); we use g/cm²
    as the paper does.

    Example:
        >>> round(critical_energy(6.76, 74, 183.84), 2)  # tungsten
        8.0
    """
    return float(2.66 * (x0_g_cm2 * z / a) ** 1.1)


@dataclass(frozen=True)
class Element:
    """A pure material (element or compound treated as one), PDG values.

    Args:
        name: Label.
        z: (Effective) atomic number.
        a: (Effective) mass number, g/mol.
        density: g/cm³.
        x0_g_cm2: Radiation length, g/cm².
        lambda_g_cm2: Nuclear interaction length, g/cm².
        dedx_mip: Minimum-ionisation stopping power, MeV cm²/g.
    """

    name: str
    z: float
    a: float
    density: float
    x0_g_cm2: float
    lambda_g_cm2: float
    dedx_mip: float

    @property
    def x0_mm(self) -> float:
        """Radiation length in mm."""
        return 10.0 * self.x0_g_cm2 / self.density

    @property
    def lambda_mm(self) -> float:
        """Nuclear interaction length in mm."""
        return 10.0 * self.lambda_g_cm2 / self.density

    @property
    def critical_energy(self) -> float:
        """Ec in MeV from :func:`critical_energy`."""
        return critical_energy(self.x0_g_cm2, self.z, self.a)


ELEMENTS: dict[str, Element] = {
    "W": Element("W", 74, 183.84, 19.3, 6.76, 191.9, 1.145),
    "Si": Element("Si", 14, 28.0855, 2.329, 21.82, 108.4, 1.664),
    "Pb": Element("Pb", 82, 207.2, 11.35, 6.37, 199.6, 1.122),
    "Fe": Element("Fe", 26, 55.845, 7.874, 13.84, 132.1, 1.451),
    "LAr": Element("LAr", 18, 39.948, 1.396, 19.55, 119.7, 1.519),
    "Al": Element("Al", 13, 26.98, 2.699, 24.01, 107.2, 1.615),
    # Kapton (C22H10N2O5) and polystyrene scintillator: mass-weighted Z and A.
    "Kapton": Element("Kapton", 6.36, 12.69, 1.42, 40.58, 85.8, 1.820),
    "Scint": Element("Scint", 5.61, 11.16, 1.032, 43.79, 77.07, 1.936),
}
"""PDG element/compound properties used by the detector descriptions (physics notes §1.1)."""


@dataclass(frozen=True)
class Material:
    """An effective homogeneous medium as seen by the shower parameterisations.

    Args:
        name: Label.
        z_eff: Effective atomic number (mass-weighted).
        x0_mm: Radiation length, mm.
        lambda_mm: Nuclear interaction length, mm.
        moliere_radius_mm: Molière radius, mm.
        critical_energy: Ec, MeV.
        sampling_frequency: F_S = X0 / sampling period; ``inf`` for a homogeneous medium.
        e_over_mip: ê, the electron-to-MIP response ratio (1 for a homogeneous medium).
        mip_sampling_fraction: Fraction of a MIP's energy loss deposited in the active medium.
        mip_dedx: Mean MIP energy loss, MeV/mm (all media of the stack).
        components: The real sub-layers of one sampling period (a stack's layers; one layer of
            the element for a homogeneous block), for particle transport (``refsim.cascade``).
    """

    name: str
    z_eff: float
    x0_mm: float
    lambda_mm: float
    moliere_radius_mm: float
    critical_energy: float
    sampling_frequency: float = math.inf
    e_over_mip: float = 1.0
    mip_sampling_fraction: float = 1.0
    mip_dedx: float = 0.0
    components: tuple[Layer, ...] = field(default=(), repr=False)

    @property
    def electron_sampling_fraction(self) -> float:
        """GFLASH estimate of the electron sampling fraction, ê × SF_mip."""
        return self.e_over_mip * self.mip_sampling_fraction

    @classmethod
    def homogeneous(cls, element: Element) -> Material:
        """A fully active (or fully passive) block of one element."""
        ec = element.critical_energy
        return cls(
            element.name,
            element.z,
            element.x0_mm,
            element.lambda_mm,
            element.x0_mm * SCALE_ENERGY_MEV / ec,
            ec,
            mip_dedx=element.dedx_mip * element.density / 10.0,
            components=(Layer(element, element.x0_mm),),
        )


@dataclass(frozen=True)
class Layer:
    """One slab of a sampling period: an element, its thickness (mm) and whether it is read out."""

    element: Element
    thickness_mm: float
    active: bool = False


@dataclass(frozen=True)
class Stack:
    """One sampling period, reduced to an effective :class:`Material` by the GFLASH rules.

    Args:
        name: Label.
        layers: The slabs of one period; at least one active and one passive.

    Example:
        >>> w, si = ELEMENTS["W"], ELEMENTS["Si"]
        >>> m = Stack("W/Si", (Layer(w, 1.4), Layer(si, 0.3, active=True))).material()
        >>> round(m.z_eff, 1), round(m.x0_mm, 2), round(m.moliere_radius_mm, 1), round(m.critical_energy, 1)
        (72.5, 4.22, 10.9, 8.2)
        >>> round(m.sampling_frequency, 2), round(m.e_over_mip, 3), round(m.mip_sampling_fraction, 4)
        (2.48, 0.704, 0.0362)
    """

    name: str
    layers: tuple[Layer, ...]

    def material(self) -> Material:
        """The effective medium (physics notes §1.1; hep-ex/0001020)."""
        active = [s for s in self.layers if s.active]
        passive = [s for s in self.layers if not s.active]
        if not active or not passive or any(s.thickness_mm <= 0 for s in self.layers):
            msg = (
                f"expected a stack with active and passive slabs of positive thickness but got {self.layers}, "
                f"in {self.name}"
            )
            raise ConfigError(msg)
        period = sum(s.thickness_mm for s in self.layers)
        mass = [s.element.density * s.thickness_mm for s in self.layers]
        w = [m / sum(mass) for m in mass]
        z_eff = sum(wi * s.element.z for wi, s in zip(w, self.layers, strict=True))
        inv_x0_g = sum(wi / s.element.x0_g_cm2 for wi, s in zip(w, self.layers, strict=True))
        ec_over_x0 = sum(
            wi * s.element.critical_energy / s.element.x0_g_cm2 for wi, s in zip(w, self.layers, strict=True)
        )
        rho = sum(mass) / period
        x0_mm = period / sum(s.thickness_mm / s.element.x0_mm for s in self.layers)
        lambda_mm = period / sum(s.thickness_mm / s.element.lambda_mm for s in self.layers)
        rm_mm = 10.0 * SCALE_ENERGY_MEV / ec_over_x0 / rho
        ec = ec_over_x0 / inv_x0_g
        mip_loss = [s.element.dedx_mip * s.element.density * s.thickness_mm / 10.0 for s in self.layers]
        mip_active = sum(m for m, s in zip(mip_loss, self.layers, strict=True) if s.active)
        z_active = _mass_weighted_z(active)
        z_passive = _mass_weighted_z(passive)
        return Material(
            name=self.name,
            z_eff=z_eff,
            x0_mm=x0_mm,
            lambda_mm=lambda_mm,
            moliere_radius_mm=rm_mm,
            critical_energy=ec,
            sampling_frequency=x0_mm / period,
            e_over_mip=1.0 / (1.0 + 0.007 * (z_passive - z_active)),
            mip_sampling_fraction=mip_active / sum(mip_loss),
            mip_dedx=sum(mip_loss) / period,
            components=self.layers,
        )


def _mass_weighted_z(layers: list[Layer]) -> float:
    mass = [s.element.density * s.thickness_mm for s in layers]
    return sum(m * s.element.z for m, s in zip(mass, layers, strict=True)) / sum(mass)
