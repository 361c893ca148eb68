"""chi2 of the total-energy response per incident energy (checkpoint-selection metric).

Definition (DESIGN.md): for each incident energy (each distinct energy of a
discrete spectrum, or 10 log-spaced bins of a continuous one), histogram
E_tot/E_inc of the reference and generated showers with the same 30 bins
spanning the reference's 0.5-99.5 percentile range, and take the two-sample chi2
of ROOT's ``TH1::Chi2Test`` for unweighted histograms with its default option
"UU" (bins inside the range only; N_r, N_g are the in-range totals; bins are [low, up)
as in ROOT, so a value equal to the upper edge is outside)::

    chi2 = sum_b (N_g n_r,b - N_r n_g,b)^2 / (N_r N_g (n_r,b + n_g,b))

over bins with entries, NDF = (number of those bins) - 1. The overall score is
sum(chi2) / sum(NDF). FastCaloGAN and CaloShowerGAN select their best training
iteration with this score (ROOT's default option, so their numbers compare with
ours). ``overflow=True`` adds an underflow and an overflow bin (ROOT's "UU UF OF"),
which counts the tails outside the range too and gives larger values. If no generated
shower of an energy falls in the range, its chi2 is infinite (ROOT refuses the test).

References:
    ROOT ``TH1::Chi2Test``; N. D. Gagunashvili, arXiv:physics/0605123;
    M. Faucci Giannelli, R. Zhang, arXiv:2309.06515 (CaloShowerGAN).
"""

from __future__ import annotations

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
    histogram range (N_r and N_g of option "UU"; all showers with "UU UF OF"); chi2 is
    infinite when no generated shower is in range.
    """

    energy_low: float
    energy_high: float
    energy: float
    chi2: float
    ndf: int
    n_reference: int
    n_generated: int
    n_reference_in_range: int = -1
    n_generated_in_range: int = -1

    @property
    def chi2_ndf(self) -> float:
        """chi2 / NDF (NaN when NDF is 0)."""
        return self.chi2 / self.ndf if self.ndf > 0 else float("nan")


@dataclass(frozen=True)
class Chi2Result:
    """Per-energy chi2 tests and their combination sum(chi2)/sum(NDF). Lower is better.

    Attributes:
        per_energy: The test at each incident energy.
        option: ROOT's ``Chi2Test`` option the numbers follow: ``"UU"`` (in-range bins only,
            the default) or ``"UU UF OF"`` (with under- and overflow).
        binning: How the bins and energy groups were chosen, in words.
    """

    per_energy: tuple[EnergyChi2, ...]
    option: str = "UU"
    binning: str = ""
    higher_is_better = False

    @property
    def definition(self) -> dict[str, str | int]:
        """What was computed, JSON-ready: the test, its option, the binning and the NDF rule."""
        return {"test": "two-sample chi2 of unweighted histograms (ROOT TH1::Chi2Test)", "option": self.option,
                "binning": self.binning, "ndf": "bins with entries - 1, summed over energies",
                "score": "sum(chi2) / sum(NDF)", "n_energies": len(self.per_energy)}

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


def response_bins(reference: NDArray[np.float64], overflow: bool = False) -> NDArray[np.float64]:
    """The chi2 test's bin edges: 30 bins over the reference's 0.5-99.5 percentiles.

    Args:
        reference: The reference values (E_tot/E_inc at one incident energy).
        overflow: Add an underflow and an overflow bin (edges -inf and +inf), ROOT's "UU UF OF".

    Returns:
        31 edges (33 with ``overflow``).

    Example:
        >>> import numpy as np
        >>> edges = response_bins(np.linspace(0.0, 1.0, 1001))
        >>> len(edges), round(float(edges[0]), 3), round(float(edges[-1]), 3)
        (31, 0.005, 0.995)
        >>> len(response_bins(np.linspace(0.0, 1.0, 1001), overflow=True))
        33
    """
    lo, hi = np.percentile(reference, PERCENTILES)
    if not hi > lo:  # a degenerate reference (e.g. one shower): widen around its value
        width = max(abs(lo) * 1e-3, 1e-12)
        lo, hi = lo - width, hi + width
    edges = np.linspace(lo, hi, N_BINS + 1)
    return np.concatenate([[-np.inf], edges, [np.inf]]) if overflow else edges


def _test(counts_r: NDArray[np.int64], counts_g: NDArray[np.int64]) -> tuple[float, int]:
    """chi2_two_sample, with an infinite chi2 when one histogram has no entry in range."""
    if counts_r.sum() == 0 or counts_g.sum() == 0:
        return float("inf"), max(int(np.count_nonzero(counts_r + counts_g)) - 1, 0)
    return chi2_two_sample(counts_r, counts_g)


def response_chi2(
    reference_energies: ArrayLike,
    reference_response: ArrayLike,
    generated_energies: ArrayLike,
    generated_response: ArrayLike,
    energy_edges: ArrayLike | None = None,
    overflow: bool = False,
) -> Chi2Result:
    """chi2 of the E_tot/E_inc distributions per incident energy (ROOT's option "UU" by default).

    Args:
        reference_energies: Incident energies of the reference showers, MeV, shape (N_r,).
        reference_response: E_tot/E_inc of the reference showers, shape (N_r,).
        generated_energies: Incident energies of the generated showers, MeV, shape (N_g,).
        generated_response: E_tot/E_inc of the generated showers, shape (N_g,).
        energy_edges: Incident-energy bin edges; by default one bin per distinct
            reference energy, or 10 log-spaced bins for a continuous spectrum.
        overflow: Include an underflow and an overflow bin (ROOT's "UU UF OF") instead of
            only the bins in range ("UU").

    Returns:
        The per-energy tests; energies with no reference or no generated shower are skipped.

    Raises:
        DataError: if no energy has both reference and generated showers.
    """
    results = []
    for group in energy_groups(reference_energies, reference_response, generated_energies, generated_response,
                               energy_edges):
        bins = response_bins(group.reference, overflow=True)  # ROOT's bins: [low, up), x >= xmax overflows
        counts_r, counts_g = np.histogram(group.reference, bins)[0], np.histogram(group.generated, bins)[0]
        if not overflow:
            counts_r, counts_g = counts_r[1:-1], counts_g[1:-1]
        chi2, ndf = _test(counts_r, counts_g)
        results.append(EnergyChi2(group.energy_low, group.energy_high, group.energy, chi2, ndf,
                                  int(group.reference.size), int(group.generated.size), int(counts_r.sum()),
                                  int(counts_g.sum())))
    if not results:
        msg = "expected reference and generated showers at common incident energies but found none"
        raise DataError(msg)
    groups = ("one group per distinct reference energy (10 log-spaced bins for a continuous spectrum)"
              if energy_edges is None else "the given incident-energy bins")
    binning = (f"{N_BINS} equal bins of E_tot/E_inc over the reference's {PERCENTILES[0]}-{PERCENTILES[1]} "
               f"percentile range at each incident energy{', plus under- and overflow' if overflow else ''}; "
               f"{groups}")
    return Chi2Result(tuple(results), "UU UF OF" if overflow else "UU", binning)
