"""Incident-energy spectra: the dataset-1 ladder, log-uniform ranges and explicit lists.

References:
    CaloChallenge 2022 README (dataset 1: 15 energies 2^8 ... 2^22 MeV, 10k showers each,
    5k/3k/2k/1k at the top four; datasets 2 and 3: log-uniform 1 GeV - 1 TeV).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from caloforge.data.datasets import dataset_facts
from caloforge.data.geometry import Geometry
from caloforge.errors import ConfigError

__all__ = ["DS1_COUNTS", "DS1_ENERGIES", "Spectrum", "apportion", "default_spectrum"]

DS1_ENERGIES: tuple[float, ...] = tuple(float(2**k) for k in range(8, 23))
"""Dataset-1 incident energies, MeV: 256 MeV ... 4.19 TeV."""

DS1_COUNTS: tuple[int, ...] = (10_000,) * 11 + (5_000, 3_000, 2_000, 1_000)
"""Showers per energy in the real dataset 1 (per particle file pair)."""


def apportion(n: int, weights: ArrayLike) -> NDArray[np.int64]:
    """Split ``n`` into integer counts proportional to ``weights`` (largest remainder; sums to ``n``).

    Example:
        >>> apportion(10, [1, 1, 1]).tolist()
        [4, 3, 3]
    """
    w = np.asarray(weights, dtype=np.float64)
    exact = n * w / w.sum()
    counts: NDArray[np.int64] = np.floor(exact).astype(np.int64)
    rest = n - int(counts.sum())
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


@dataclass(frozen=True)
class Spectrum:
    """An incident-energy spectrum.

    Args:
        kind: ``ds1`` (the dataset-1 ladder with its relative counts), ``log-uniform``
            (uniform in ln E between ``e_min`` and ``e_max``) or ``list`` (equal shares
            of ``values``).
        e_min: Lower end of a log-uniform range, MeV.
        e_max: Upper end of a log-uniform range, MeV.
        values: The energies of a ``list`` spectrum, MeV.

    Example:
        >>> Spectrum.parse("ds1").sample(121, np.random.default_rng(0)).max()
        np.float64(4194304.0)
    """

    kind: Literal["ds1", "log-uniform", "list"] = "log-uniform"
    e_min: float = 1e3
    e_max: float = 1e6
    values: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("ds1", "log-uniform", "list"):
            msg = f"expected a spectrum kind in ['ds1', 'log-uniform', 'list'] but got '{self.kind}'"
            raise ConfigError(msg)
        if self.kind == "log-uniform" and not 0 < self.e_min <= self.e_max < np.inf:
            msg = f"expected 0 < e_min <= e_max (MeV) but got {self.e_min}, {self.e_max}, in a log-uniform spectrum"
            raise ConfigError(msg)
        if self.kind == "list" and (not self.values or not all(np.isfinite(v) and v > 0 for v in self.values)):
            msg = f"expected a non-empty list of positive energies (MeV) but got {list(self.values)}"
            raise ConfigError(msg)

    @classmethod
    def parse(cls, text: str) -> Spectrum:
        """Read ``ds1``, ``log-uniform``, ``log-uniform:EMIN:EMAX`` (MeV) or a comma list of energies (MeV)."""
        spec = text.strip()
        if spec == "ds1":
            return cls("ds1")
        if spec.startswith("log-uniform"):
            parts = spec.split(":")
            if len(parts) == 1:
                return cls("log-uniform")
            try:
                lo, hi = (float(p) for p in parts[1:])
            except ValueError:
                msg = f"expected 'log-uniform:EMIN:EMAX' with energies in MeV but got '{text}'"
                raise ConfigError(msg) from None
            return cls("log-uniform", lo, hi)
        try:
            values = tuple(float(v) for v in spec.split(",") if v.strip())
        except ValueError:
            msg = (
                f"expected a spectrum 'ds1', 'log-uniform[:EMIN:EMAX]' or a comma list of energies in MeV "
                f"but got '{text}'"
            )
            raise ConfigError(msg) from None
        return cls("list", values=values)

    def sample(self, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
        """``n`` incident energies in MeV, in random order (the counts of discrete spectra are exact)."""
        if n < 1:
            msg = f"expected a number of showers >= 1 but got {n}"
            raise ConfigError(msg)
        if self.kind == "log-uniform":
            return np.exp(rng.uniform(np.log(self.e_min), np.log(self.e_max), n))
        values, weights = (DS1_ENERGIES, DS1_COUNTS) if self.kind == "ds1" else (self.values, [1.0] * len(self.values))
        energies = np.repeat(np.asarray(values, dtype=np.float64), apportion(n, weights))
        return rng.permutation(energies)

    def describe(self) -> str:
        """A one-line description, stored in file metadata."""
        if self.kind == "ds1":
            return "ds1"
        if self.kind == "log-uniform":
            return f"log-uniform:{self.e_min:g}:{self.e_max:g}"
        return ",".join(f"{v:g}" for v in self.values)


def default_spectrum(geometry: Geometry) -> Spectrum:
    """The dataset's spectrum (:mod:`caloforge.data.datasets`) for the CaloChallenge binnings; for a custom
    geometry the dataset-1 ladder when its layer ids are ATLAS-like, else log-uniform 1 GeV - 1 TeV."""
    facts = dataset_facts(geometry)
    if facts is not None:
        return Spectrum.parse(facts.spectrum)
    if 12 in geometry.layer_ids and set(geometry.layer_ids) <= {0, 1, 2, 3, 12, 13, 14}:
        return Spectrum("ds1")
    return Spectrum("log-uniform")
