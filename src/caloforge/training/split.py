"""The validation sample that selects checkpoints: split from the training data, sized to be able to do it.

The checkpoint-selection chi2 can only tell checkpoints apart with enough showers per incident
energy: with ~25 per energy a run looked fine (chi2/NDF 3.1) where an independent 5k sample gave
18.8. The default split holds about 500 per energy; fewer than :data:`MIN_VALIDATION_PER_ENERGY`
warn.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from caloforge.data.showers import ShowerSet, energy_bins
from caloforge.errors import ConfigError, DataError

if TYPE_CHECKING:
    from caloforge.data.source import Showers
    from caloforge.training.settings import TrainingSettings

__all__ = ["MIN_VALIDATION_PER_ENERGY", "RunRows", "split_rows", "split_validation", "validation_counts",
           "warn_small_validation"]

MIN_VALIDATION_PER_ENERGY = 200
"""Below this many validation showers per incident energy the chi2 cannot separate checkpoints: a warning."""
_AUTO_TARGET, _AUTO_MIN_FRACTION, _AUTO_MAX_FRACTION = 500, 0.1, 0.25


def split_rows(energies: NDArray[np.float64], fraction: float | None, seed: int
               ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Training and validation rows (each sorted), stratified by incident energy (bin).

    Args:
        energies: The incident energies of the showers, MeV.
        fraction: Fraction of each energy's showers held out, or None for the automatic size:
            500 showers per energy where that is between 10 % and 25 % of them, else the
            nearer bound, so the chi2 that selects the checkpoint has the statistics to do it.
        seed: Seed of the random choice.

    Raises:
        ConfigError: if ``fraction`` is not in (0, 1).
        DataError: if nothing is left for training.
    """
    if fraction is not None and not 0 < fraction < 1:
        msg = f"expected a validation fraction in (0, 1) but got {fraction}"
        raise ConfigError(msg)
    rng = np.random.default_rng(seed)
    groups = np.digitize(energies, energy_bins(energies)[1:-1])
    val = np.zeros(len(energies), dtype=bool)
    for g in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == g))
        if fraction is None:
            n_val = min(max(_AUTO_TARGET, round(_AUTO_MIN_FRACTION * members.size)),
                        round(_AUTO_MAX_FRACTION * members.size))
        else:
            n_val = round(fraction * members.size)
        val[members[: max(1, n_val)]] = True
    if val.all():
        msg = f"expected enough showers for a validation split but got {len(energies)}"
        raise DataError(msg)
    return np.flatnonzero(~val), np.flatnonzero(val)


def split_validation(data: ShowerSet, fraction: float | None, seed: int) -> tuple[ShowerSet, ShowerSet]:
    """Split showers into training and validation sets (see :func:`split_rows`)."""
    train, val = split_rows(data.energies, fraction, seed)
    return data[train], data[val]


def validation_counts(energies: NDArray[np.float64]) -> dict[float, int]:
    """Validation showers per incident energy (or energy bin, keyed by its lower edge), MeV."""
    edges = energy_bins(energies)
    counts = np.histogram(energies, edges)[0]
    distinct = np.unique(energies)
    keys = distinct if distinct.size <= 50 else edges[:-1]
    return {float(k): int(c) for k, c in zip(keys, counts, strict=True) if c > 0}


def warn_small_validation(energies: NDArray[np.float64]) -> None:
    """Warn when some incident energy has fewer than :data:`MIN_VALIDATION_PER_ENERGY` validation showers."""
    counts = validation_counts(energies)
    small = {e: n for e, n in counts.items() if n < MIN_VALIDATION_PER_ENERGY}
    if small:
        listed = ", ".join(f"{n} at {e:g} MeV" for e, n in list(small.items())[:5])
        msg = (f"the validation sample has fewer than {MIN_VALIDATION_PER_ENERGY} showers at {len(small)} of "
               f"{len(counts)} incident energies ({listed}{', ...' if len(small) > 5 else ''}): the chi2 that selects "
               "the checkpoint cannot tell them apart well; pass more training showers or an independent "
               "validation file")
        warnings.warn(msg, UserWarning, stacklevel=3)


@dataclass(frozen=True)
class RunRows:
    """The training and validation rows of each energy range (indices into the data or the validation sample)."""

    train: tuple[NDArray[np.int64], ...]
    validation: tuple[NDArray[np.int64], ...]

    @classmethod
    def choose(cls, data: Showers, validation: Showers | None, settings: TrainingSettings) -> RunRows:
        """Hold out ``hold_out_energy``, split off the validation rows, cut into the energy ranges."""
        keep = np.arange(len(data))
        keep_val = None if validation is None else np.arange(len(validation))
        held = settings.hold_out_energy
        if held is not None:
            keep = np.flatnonzero(~np.isclose(data.energies, held, rtol=1e-6, atol=0))
            if keep.size == len(data):
                msg = f"expected the hold-out energy {held:g} MeV among the training energies but it is absent"
                raise ConfigError(msg)
            if validation is not None:
                keep_val = np.flatnonzero(~np.isclose(validation.energies, held, rtol=1e-6, atol=0))
        if validation is None:
            train_part, val_part = split_rows(data.energies[keep], settings.validation_fraction, settings.seed)
            train, val, val_energies = keep[train_part], keep[val_part], data.energies
        else:
            assert keep_val is not None  # set with the validation sample
            train, val, val_energies = keep, keep_val, validation.energies
        edges = [-np.inf, *settings.split_energies, np.inf]
        parts_train, parts_val = [], []
        for lo, hi in itertools.pairwise(edges):
            in_tr = train[(data.energies[train] >= lo) & (data.energies[train] < hi)]
            in_val = val[(val_energies[val] >= lo) & (val_energies[val] < hi)]
            if not in_tr.size or not in_val.size:
                msg = f"expected training and validation showers in the energy range {lo:g}-{hi:g} MeV but found none"
                raise ConfigError(msg)
            parts_train.append(in_tr)
            parts_val.append(in_val)
        return cls(tuple(parts_train), tuple(parts_val))
