"""chi2 of the total-energy response per incident energy (checkpoint selection and evaluation).

Definition (DESIGN.md), one for checkpoint selection and for the evaluation: for each incident
energy (each distinct energy of a discrete spectrum, or 10 log-spaced bins of a continuous one),
histogram E_tot/E_inc of the reference and generated showers with the same 30 equal bins
spanning the union of the two samples' 0.5-99.5 percentile ranges, and take the two-sample chi2
of ROOT's ``TH1::Chi2Test`` for unweighted histograms with its default option "UU" (bins inside
the range only; N_r, N_g are the in-range totals)::

    chi2 = sum_b (N_g n_r,b - N_r n_g,b)^2 / (N_r N_g (n_r,b + n_g,b))

over bins with entries, NDF = (number of those bins) - 1. The overall score is
sum(chi2) / sum(NDF). FastCaloGAN and CaloShowerGAN select their best training iteration with
this score (ROOT's default option).

Why the union: bins taken from the reference alone let a shifted sample leave the histogram;
at high energies, where the response peak is narrow, a model 5 % off then has almost no
showers in range and a chi2 that looks like agreement. With the union every shower of either
sample lies in range except the tails beyond its own 0.5 and 99.5 percentiles, at most 1 % of
each sample (more only when many showers share the value at a percentile); the counts outside
are recorded per energy (:attr:`EnergyChi2.reference_outside`, :attr:`EnergyChi2.generated_outside`)
and graded by the verdict. The top edge includes the 99.5 percentile value itself.

References:
    ROOT ``TH1::Chi2Test``; N. D. Gagunashvili, arXiv:physics/0605123;
    M. Faucci Giannelli, R. Zhang, arXiv:2309.06515 (CaloShowerGAN).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from caloforge.data.showers import energy_bins
from caloforge.errors import DataError

__all__ = ["Chi2Result", "EnergyChi2", "EnergyGroup", "chi2_two_sample", "energy_groups", "response_bins",
           "response_chi2"]

N_BINS = 30
PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class EnergyChi2:
    """The chi2 test at one incident energy (or energy bin), energies in MeV.

    ``energy`` is the mean incident energy of the reference showers in the bin: the
    energy itself for a discrete spectrum. ``n_*_in_range`` count the showers inside the
    histogram range (N_r and N_g of option "UU"); ``low`` and ``high`` are the range.
    """

    energy_low: float
    energy_high: float
    energy: float
    chi2: float
    ndf: int
    n_reference: int
    n_generated: int
    n_reference_in_range: int
    n_generated_in_range: int
    low: float
    high: float
    n_generated_beyond_reference: int

    @property
    def generated_beyond_reference(self) -> float:
        """Fraction of the generated showers outside the reference's own 0.5-99.5 percentile range.

        For a good model about 1 %; graded by the verdict ("response tails"): it says how much of the
        generated sample lies where the reference has almost nothing.
        """
        return self.n_generated_beyond_reference / self.n_generated

    @property
    def chi2_ndf(self) -> float:
        """chi2 / NDF (NaN when NDF is 0: all showers of both samples in one bin)."""
        return self.chi2 / self.ndf if self.ndf > 0 else float("nan")

    @property
    def reference_outside(self) -> float:
        """Fraction of the reference showers outside the histogram range."""
        return 1.0 - self.n_reference_in_range / self.n_reference

    @property
    def generated_outside(self) -> float:
        """Fraction of the generated showers outside the histogram range."""
        return 1.0 - self.n_generated_in_range / self.n_generated

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready fields, with chi2/NDF and the fractions outside the range."""
        return dataclasses.asdict(self) | {"chi2_ndf": self.chi2_ndf, "reference_outside": self.reference_outside,
                                           "generated_outside": self.generated_outside,
                                           "generated_beyond_reference": self.generated_beyond_reference}


@dataclass(frozen=True)
class Chi2Result:
    """Per-energy chi2 tests and their combination sum(chi2)/sum(NDF). Lower is better.

    Attributes:
        per_energy: The test at each incident energy.
        binning: How the bins and energy groups were chosen, in words.
    """

    per_energy: tuple[EnergyChi2, ...]
    binning: str = ""
    option = "UU"
    higher_is_better = False

    @property
    def definition(self) -> dict[str, str | int]:
        """What was computed, JSON-ready: the test, its option, the binning and the NDF rule."""
        return {"test": "two-sample chi2 of unweighted histograms (ROOT TH1::Chi2Test)", "option": self.option,
                "binning": self.binning, "ndf": "bins with entries - 1, summed over energies",
                "score": "sum(chi2) / sum(NDF)", "n_energies": len(self.per_energy),
                "outside": "showers beyond either sample's 0.5/99.5 percentile are outside the bins; "
                           "their fraction per sample and energy is recorded (reference_outside, "
                           "generated_outside) and graded"}

    @property
    def chi2(self) -> float:
        """Sum of chi2 over energies."""
        return float(sum(e.chi2 for e in self.per_energy))

    @property
    def ndf(self) -> int:
        """Sum of NDF over energies."""
        return int(sum(e.ndf for e in self.per_energy))

    @property
    def chi2_ndf(self) -> float:
        """sum(chi2) / sum(NDF); NaN if there is no degree of freedom."""
        return self.chi2 / self.ndf if self.ndf > 0 else float("nan")

    @property
    def max_outside(self) -> float:
        """The largest fraction of either sample outside the bins, over energies."""
        return max((max(e.reference_outside, e.generated_outside) for e in self.per_energy), default=0.0)

    @property
    def worst_tail(self) -> EnergyChi2 | None:
        """The energy with the largest fraction of generated showers beyond the reference's range."""
        return max(self.per_energy, key=lambda e: e.generated_beyond_reference, default=None)


def chi2_two_sample(reference_counts: ArrayLike, generated_counts: ArrayLike) -> tuple[float, int]:
    """Two-sample chi2 of two unweighted histograms with the same bins (ROOT ``TH1::Chi2Test``, "UU").

    Args:
        reference_counts: Entries per bin of the reference histogram.
        generated_counts: Entries per bin of the generated histogram.

    Returns:
        (chi2, NDF), summing over bins where either histogram has entries; NDF = those bins - 1.

    Example:
        >>> chi2_two_sample([10, 20, 30], [10, 20, 30])
        (0.0, 2)
        >>> round(chi2_two_sample([10, 0], [0, 10])[0], 6)
        20.0
    """
    r = np.asarray(reference_counts, dtype=np.float64)
    g = np.asarray(generated_counts, dtype=np.float64)
    if r.shape != g.shape:
        msg = f"expected histograms with the same bins but got shapes {r.shape} and {g.shape}"
        raise DataError(msg)
    n_r, n_g = r.sum(), g.sum()
    if n_r <= 0 or n_g <= 0:
        msg = f"expected non-empty histograms but got {n_r:g} reference and {n_g:g} generated entries"
        raise DataError(msg)
    used = (r + g) > 0
    chi2 = np.sum((n_g * r[used] - n_r * g[used]) ** 2 / (n_r * n_g * (r[used] + g[used])))
    return float(chi2), int(used.sum()) - 1


@dataclass(frozen=True)
class EnergyGroup:
    """The responses of the reference and generated showers in one incident-energy bin (MeV)."""

    energy_low: float
    energy_high: float
    energy: float
    reference: NDArray[np.float64]
    generated: NDArray[np.float64]


def energy_groups(
    reference_energies: ArrayLike,
    reference_values: ArrayLike,
    generated_energies: ArrayLike,
    generated_values: ArrayLike,
    energy_edges: ArrayLike | None = None,
) -> list[EnergyGroup]:
    """Split both samples' values by incident energy, as the chi2 test does.

    The bins are ``energy_edges`` or, by default, one per distinct reference energy (10
    log-spaced bins for a continuous spectrum); bins without reference or generated
    showers are left out.
    """
    e_r = np.asarray(reference_energies, dtype=np.float64)
    x_r = np.asarray(reference_values, dtype=np.float64)
    e_g = np.asarray(generated_energies, dtype=np.float64)
    x_g = np.asarray(generated_values, dtype=np.float64)
    if e_r.shape != x_r.shape or e_g.shape != x_g.shape:
        msg = "expected one value per incident energy in each sample"
        raise DataError(msg)
    edges = energy_bins(e_r) if energy_edges is None else np.asarray(energy_edges, dtype=np.float64)
    groups = []
    for low, high in itertools.pairwise(edges):
        in_r = (e_r >= low) & (e_r < high)
        in_g = (e_g >= low) & (e_g < high)
        if in_r.any() and in_g.any():
            groups.append(EnergyGroup(float(low), float(high), float(e_r[in_r].mean()), x_r[in_r], x_g[in_g]))
    return groups


def response_bins(reference: ArrayLike, generated: ArrayLike | None = None) -> NDArray[np.float64]:
    """The chi2 test's bin edges: 30 equal bins over the union of the samples' 0.5-99.5 percentile ranges.

    Args:
        reference: The reference values (E_tot/E_inc at one incident energy).
        generated: The generated values; None for bins from the reference alone (histograms
            drawn before a generated sample exists).

    Returns:
        31 edges; the last is nudged up so that the 99.5 percentile value itself is inside
        (bins are [low, up) as in ROOT).

    Example:
        >>> import numpy as np
        >>> edges = response_bins(np.linspace(0.0, 1.0, 1001))
        >>> len(edges), round(float(edges[0]), 3), round(float(edges[-1]), 3)
        (31, 0.005, 0.995)
        >>> edges = response_bins(np.linspace(0.0, 1.0, 1001), np.linspace(0.5, 1.5, 1001))
        >>> round(float(edges[0]), 3), round(float(edges[-1]), 3)
        (0.005, 1.495)
    """
    samples = [np.asarray(reference, np.float64)] + ([] if generated is None else [np.asarray(generated, np.float64)])
    ranges = np.array([np.percentile(x, PERCENTILES) for x in samples if x.size])
    if not ranges.size:
        msg = "expected at least one value to bin but got empty samples"
        raise DataError(msg)
    lo, hi = float(ranges[:, 0].min()), float(ranges[:, 1].max())
    if not hi > lo:  # a degenerate sample (e.g. one shower): widen around its value
        width = max(abs(lo) * 1e-3, 1e-12)
        lo, hi = lo - width, hi + width
    edges = np.linspace(lo, hi, N_BINS + 1)
    edges[-1] = np.nextafter(hi, np.inf)
    return edges


def response_chi2(
    reference_energies: ArrayLike,
    reference_response: ArrayLike,
    generated_energies: ArrayLike,
    generated_response: ArrayLike,
    energy_edges: ArrayLike | None = None,
) -> Chi2Result:
    """chi2 of the E_tot/E_inc distributions per incident energy (ROOT's option "UU", union-range bins).

    Args:
        reference_energies: Incident energies of the reference showers, MeV, shape (N_r,).
        reference_response: E_tot/E_inc of the reference showers, shape (N_r,).
        generated_energies: Incident energies of the generated showers, MeV, shape (N_g,).
        generated_response: E_tot/E_inc of the generated showers, shape (N_g,).
        energy_edges: Incident-energy bin edges; by default one bin per distinct
            reference energy, or 10 log-spaced bins for a continuous spectrum.

    Returns:
        The per-energy tests; energies with no reference or no generated shower are skipped.

    Raises:
        DataError: if no energy has both reference and generated showers, or a response is not finite.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> e = np.full(2000, 65536.0)
        >>> ref, gen = rng.normal(1.0, 0.02, 2000), rng.normal(1.0, 0.02, 2000)
        >>> round(response_chi2(e, ref, e, gen).chi2_ndf, 1)  # two samples of one distribution
        1.0
        >>> response_chi2(e, ref, e, 1.05 * gen).chi2_ndf > 50  # 5 % off: the bins follow the shift
        True
    """
    results = []
    for group in energy_groups(reference_energies, reference_response, generated_energies, generated_response,
                               energy_edges):
        if not (np.isfinite(group.reference).all() and np.isfinite(group.generated).all()):
            msg = f"expected finite E_tot/E_inc but got NaN or infinity, in the chi2 test at {group.energy:g} MeV"
            raise DataError(msg)
        bins = response_bins(group.reference, group.generated)
        counts_r, counts_g = np.histogram(group.reference, bins)[0], np.histogram(group.generated, bins)[0]
        chi2, ndf = chi2_two_sample(counts_r, counts_g)
        lo, hi = np.percentile(group.reference, PERCENTILES)
        beyond = int(np.count_nonzero((group.generated < lo) | (group.generated > hi)))
        results.append(EnergyChi2(group.energy_low, group.energy_high, group.energy, chi2, ndf,
                                  int(group.reference.size), int(group.generated.size), int(counts_r.sum()),
                                  int(counts_g.sum()), float(bins[0]), float(bins[-1]), beyond))
    if not results:
        msg = "expected reference and generated showers at common incident energies but found none"
        raise DataError(msg)
    groups = ("one group per distinct reference energy (10 log-spaced bins for a continuous spectrum)"
              if energy_edges is None else "the given incident-energy bins")
    binning = (f"{N_BINS} equal bins of E_tot/E_inc over the union of the reference's and the generated sample's "
               f"{PERCENTILES[0]}-{PERCENTILES[1]} percentile ranges at each incident energy; {groups}")
    return Chi2Result(tuple(results), binning)
