"""The FPD/KPD stage of an evaluation: its settings, what may be skipped, and its progress.

:class:`DistanceConfig` holds the settings. The defaults are the official ``evaluate.py``'s calls
(``jetnet.evaluation.fpd(min_samples=10000)``, ``kpd(batch_size=10000)``, JetNet's 20 draws per
size and 10 batches, seed 42). With the exact fast kernel sums and weighted covariances of
:mod:`caloforge.validation.metrics.mmd` and :mod:`~caloforge.validation.metrics.frechet`, KPD takes seconds
even on the 362 columns of datasets 2 and 3; FPD's 400 covariances of 362 columns stay costly (3.9e11
multiply-adds at 10k vs 10k showers, about 30 s of one idle core), so by default (``fpd_draws="auto"``)
FPD draws fewer subsets per size where they would exceed :data:`FPD_WORK` (more than 10k vs 10k showers on
datasets 2/3), which datasets 1 never do. Neither cost grows with the
number of showers beyond the subset sizes (50k showers at most per FPD subset, 10 x 10k per KPD).
Fewer draws or batches (``fpd_draws``, ``kpd_batches``) or a skipped metric (``skip``)
are recorded: a distance computed with other settings than the official ones names them in its
definition and in a warning of the report; a skipped one is ``null`` in metrics.json with the reason.

Each distance reports through a :class:`~caloforge.runtime.progress.Progress` task: one update per
FPD draw and per block of 1024 kernel rows (well under a second each), so a log gets a line at least
every :attr:`Progress.interval_s` seconds.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from caloforge.errors import ConfigError
from caloforge.runtime.progress import SILENT, Progress, ProgressTask
from caloforge.validation.metrics.distances import DistanceResult, fpd, kpd, subset_sizes

__all__ = ["DISTANCE_SEED", "FPD_DRAWS", "FPD_MIN_SAMPLES", "KPD_BATCHES", "KPD_BATCH_SIZE", "SKIPPABLE",
           "DistanceConfig", "Distances", "compute_distances"]

FPD_MIN_SAMPLES = 10_000
"""The official ``evaluate.py`` calls ``jetnet.evaluation.fpd(min_samples=10000)`` (JetNet's defaults otherwise)."""
FPD_DRAWS = 20
"""JetNet's draws per subset size (``num_batches``)."""
KPD_BATCH_SIZE = 10_000
"""The official ``evaluate.py`` calls ``jetnet.evaluation.kpd(batch_size=10000)`` (JetNet's defaults otherwise)."""
KPD_BATCHES = 10
"""JetNet's number of KPD batches."""
DISTANCE_SEED = 42
"""FPD and KPD use seed ``DISTANCE_SEED + seed``: JetNet's default 42, the official one, at the default seed 0."""
FPD_WORK = 4e11
"""Multiply-adds of the FPD covariances (with the reference split) above which ``fpd_draws="auto"`` draws fewer
subsets per size than the official 20: about 30 s of one idle AMD EPYC core (2026-12-07). Datasets 1 stay far
below it (30 or 46 columns); 10k vs 10k showers of datasets 2/3 (362 columns) need 3.9e11 at 20 draws and keep
the official 20; 20k vs 20k get 11, 50k vs 50k 7."""
FPD_MIN_DRAWS = 4
"""The fewest draws per size ``fpd_draws="auto"`` uses."""
SKIPPABLE = ("fpd", "kpd", "split", "prdc", "figures")
"""What an evaluation can skip: FPD, KPD, the reference split (``split``: FPD's, KPD's and the classifiers'), PRDC
(full mode), and the report's figures (``figures``: minutes for the 45-layer panels of datasets 2/3 on a loaded
CPU; metrics.json and the verdict table are written all the same)."""


@dataclass(frozen=True)
class DistanceConfig:
    """Settings of FPD and KPD in an evaluation (defaults: the official code's).

    Attributes:
        fpd_min_samples: Smallest FPD subset (the largest is 50k, 10 sizes).
        fpd_draws: Subsets drawn per size, or ``"auto"``: the official 20 unless their covariances would take
            more than :data:`FPD_WORK` multiply-adds (362 columns and thousands of showers: datasets 2 and 3),
            then as many as fit (at least :data:`FPD_MIN_DRAWS`). A count of operations, not a clock, so the
            numbers are the same on every machine; fewer draws than 20 are named in the report and metrics.json.
        kpd_batch_size: Showers per KPD batch and sample.
        kpd_batches: KPD batches.
        skip: Metrics not to compute, among :data:`SKIPPABLE`.

    Example:
        >>> DistanceConfig().deviations()
        []
        >>> DistanceConfig(fpd_draws=5).deviations()
        ['FPD with 5 draws per subset size instead of the official 20']
    """

    fpd_min_samples: int = FPD_MIN_SAMPLES
    fpd_draws: int | Literal["auto"] = "auto"
    kpd_batch_size: int = KPD_BATCH_SIZE
    kpd_batches: int = KPD_BATCHES
    skip: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "skip", frozenset(self.skip))
        unknown = sorted(self.skip - set(SKIPPABLE))
        if unknown:
            msg = f"expected metrics to skip among {list(SKIPPABLE)} but got {unknown}, in the evaluation settings"
            raise ConfigError(msg)
        for name, least in (("fpd_min_samples", 2), ("fpd_draws", 1), ("kpd_batch_size", 2), ("kpd_batches", 1)):
            value = getattr(self, name)
            if name == "fpd_draws" and value == "auto":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                msg = f"expected {name} an integer >= {least} but got {value!r}, in the evaluation settings"
                raise ConfigError(msg)
        if self.fpd_min_samples >= 50_000:
            msg = f"expected fpd_min_samples < 50000 (the largest subset) but got {self.fpd_min_samples}, in the " \
                  "evaluation settings"
            raise ConfigError(msg)

    @classmethod
    def parse_skip(cls, text: str | Collection[str]) -> frozenset[str]:
        """``"fpd,kpd"`` (or a collection of names) as a set of names to skip; unknown names are refused."""
        names = [s.strip() for s in text.split(",")] if isinstance(text, str) else [str(s) for s in text]
        return cls(skip=frozenset(n for n in names if n)).skip

    def draws(self, n_reference: int, n_generated: int, n_columns: int) -> int:
        """FPD draws per size for these sample sizes (``auto`` resolved, see :attr:`fpd_draws`).

        Example:
            >>> DistanceConfig().draws(10_000, 10_000, 362), DistanceConfig().draws(50_000, 50_000, 362)
            (20, 7)
        """
        if self.fpd_draws != "auto":
            return int(self.fpd_draws)
        sizes = subset_sizes(self.fpd_min_samples, 50_000, 10)
        half = n_reference // 2
        rows = sum(min(n_reference, k) + min(n_generated, k) + min(half, k) + min(n_reference - half, k)
                   for k in sizes.tolist())
        work = FPD_DRAWS * rows * n_columns * (n_columns + 1) / 2
        return FPD_DRAWS if work <= FPD_WORK else max(FPD_MIN_DRAWS, int(FPD_DRAWS * FPD_WORK / work))

    def deviations(self) -> list[str]:
        """Each setting that differs from the official code's, in words (empty: numbers comparable)."""
        out = []
        for name, value, official, what in (
                ("fpd", self.fpd_min_samples, FPD_MIN_SAMPLES, "as the smallest subset"),
                ("fpd", self.fpd_draws, FPD_DRAWS, "draws per subset size"),
                ("kpd", self.kpd_batch_size, KPD_BATCH_SIZE, "showers per batch"),
                ("kpd", self.kpd_batches, KPD_BATCHES, "batches")):
            if value != official and value != "auto" and name not in self.skip:
                out.append(f"{name.upper()} with {value} {what} instead of the official {official}")
        return out


@dataclass(frozen=True)
class Distances:
    """FPD and KPD of reference vs generated and of the reference split, and notes for the report."""

    fpd: DistanceResult
    kpd: DistanceResult
    fpd_split: DistanceResult
    kpd_split: DistanceResult
    messages: tuple[str, ...] = ()


def _skipped(metric: str, what: str, n_ref: int, n_gen: int) -> DistanceResult:
    return DistanceResult.not_computed(metric, f"not computed: skipped ({what}; caloforge evaluate --skip {what})",
                                       n_ref, n_gen)


def compute_distances(
    hl_r: NDArray[np.floating],
    hl_g: NDArray[np.floating],
    half_a: NDArray[np.int64],
    half_b: NDArray[np.int64],
    seed: int = 0,
    config: DistanceConfig | None = None,
    progress: Progress | None = None,
) -> Distances:
    """FPD and KPD on the high-level columns, and on the reference halves ``half_a``/``half_b``.

    Args:
        hl_r: Reference high-level inputs (N_r, D).
        hl_g: Generated high-level inputs (N_g, D).
        half_a: Reference rows of the first half of the reference split.
        half_b: The other half.
        seed: The evaluation's seed (the distances use ``DISTANCE_SEED + seed``).
        config: The settings (default: the official ones).
        progress: Reports each distance, per draw and per block of kernel rows.

    Returns:
        The four distances (skipped ones with their reason) and the notes for the report (small
        samples, settings other than the official ones, skipped metrics).
    """
    config = config or DistanceConfig()
    prog = progress or SILENT
    s = DISTANCE_SEED + seed
    draws = config.draws(len(hl_r), len(hl_g), hl_r.shape[1])
    fpd_call = functools.partial(fpd, seed=s, min_samples=config.fpd_min_samples, n_draws=draws)
    kpd_call = functools.partial(kpd, seed=s, batch_size=config.kpd_batch_size, n_batches=config.kpd_batches)
    n_points = 10
    jobs: dict[str, tuple[str, Callable[..., DistanceResult], NDArray[np.floating], NDArray[np.floating]]] = {
        "FPD": ("fpd", fpd_call, hl_r, hl_g), "KPD": ("kpd", kpd_call, hl_r, hl_g),
        "FPD (reference split)": ("fpd", fpd_call, hl_r[half_a], hl_r[half_b]),
        "KPD (reference split)": ("kpd", kpd_call, hl_r[half_a], hl_r[half_b])}
    found: dict[str, DistanceResult] = {}
    messages = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)  # small-sample notes go into the report
        for name, (metric, call, a, b) in jobs.items():
            split = "split" in name
            if metric in config.skip or (split and "split" in config.skip):
                found[name] = _skipped(metric, metric if metric in config.skip else "split", len(a), len(b))
                continue
            total, unit = (n_points * draws, "draws") if metric == "fpd" else (None, "blocks")
            with prog.task(f"{name} on {a.shape[1]} columns", total=total, unit=unit) as task:
                found[name] = call(a, b, tick=_ticker(task, metric))
    caught_messages = sorted({str(w.message) for w in caught})
    few = [m for m in caught_messages if "drawn with replacement" in m]  # one per distance and sample pair
    if few:  # said once, for FPD and KPD, the samples and the reference split together
        messages.append(f"FPD and KPD on {len(hl_r)} reference and {len(hl_g)} generated showers (reference split: "
                        f"{len(half_a)} and {len(half_b)}), fewer than the official settings use (FPD subsets of "
                        f"{config.fpd_min_samples}-50000, KPD batches of {config.kpd_batch_size}): subsets are drawn "
                        "with replacement (as JetNet does), so the values keep the finite-sample bias of the smaller "
                        "sample (about c/N) and compare only with values at the same sample sizes; the "
                        "CaloChallenge tables use at least 50k showers per sample")
    messages += [m for m in caught_messages if m not in few]
    noted = len(messages)
    if config.fpd_draws == "auto" and draws != FPD_DRAWS and "fpd" not in config.skip:
        messages.append(f"FPD with {draws} draws per subset size instead of the official {FPD_DRAWS} (fpd_draws auto: "
                        f"{hl_r.shape[1]} columns; --fpd-draws 20 for the official settings): its error is larger; "
                        "not comparable with the official numbers (definitions in metrics.json)")
    for deviation in config.deviations():
        messages.append(f"{deviation}: not comparable with the official numbers (definitions in metrics.json)")
    for metric in ("fpd", "kpd"):
        if metric in config.skip:
            messages.append(f"{metric.upper()} not computed (--skip {metric})")
        elif "split" in config.skip:
            messages.append(f"{metric.upper()} of the reference split not computed (--skip split): {metric.upper()} "
                            "is shown without a verdict")
    for message in messages[noted:]:  # settings other than the official ones, skips: also on the terminal
        warnings.warn(message, UserWarning, stacklevel=3)
    return Distances(found["FPD"], found["KPD"], found["FPD (reference split)"], found["KPD (reference split)"],
                     tuple(messages))


def _ticker(task: ProgressTask, metric: str) -> Callable[[float], None]:
    if metric == "fpd":
        return lambda work: task.update(advance=work)

    done = [0.0]

    def tick(work: float) -> None:
        done[0] += work
        task.update(advance=work, status=f"{done[0]:.0f} blocks of kernel rows")

    return tick
