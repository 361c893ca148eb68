"""Validation of generated showers against a reference: all metrics, then the report.

:func:`compute_evaluation` runs every metric (pure computation, no files);
:func:`evaluate` runs it and writes ``metrics.json``, ``report.html`` and
``plots/*.png|pdf`` into a directory. ``mode="fast"`` skips the classifier tests.

The readout threshold of the geometry is applied to both samples before
anything is computed. Every metric is also computed between two random halves
of the reference ("reference split"), the yardstick of what statistics alone give.

Samples are :data:`~caloforge.data.source.Showers`: in memory, or a
:class:`~caloforge.data.source.ShowerFile` streamed chunk by chunk (:mod:`caloforge.validation.passes`),
with the same numbers. Memory is bounded, whatever the number N of showers, by:

* per shower, the high-level features (about 8 x (2 + 4 L + 4 A) bytes for L layers, A of them with
  alpha bins: 2.9 kB for dataset 3, 1.8 % of its 162 kB shower) and two voxel extremes;
* one chunk of showers (:data:`~caloforge.data.source.CHUNK_BYTES`, 64 MiB) and its temporaries,
  about 8 chunks;
* PRDC (full mode): the log-voxels of its subsample, 2 x 5000 x V x 4 bytes (1.6 GB for dataset 3);
* the low-level classifier (full mode): 2 x 2 x n x (V + 1) x 4 bytes plus the network, n =
  ``max_showers`` of the classifier config (at most the smaller sample), checked before any pass.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.stats
from numpy.typing import NDArray

from caloforge.data.checks import check_seed
from caloforge.data.showers import energy_bins
from caloforge.data.source import Showers
from caloforge.errors import ConfigError, DataError, GeometryMismatchError
from caloforge.runtime.progress import SILENT, Progress
from caloforge.runtime.resources import check_memory
from caloforge.validation.classifier_stage import ClassifierStage, classifier_tests
from caloforge.validation.distance_stage import (
    DISTANCE_SEED,
    FPD_MIN_SAMPLES,
    KPD_BATCH_SIZE,
    SKIPPABLE,
    DistanceConfig,
    compute_distances,
)
from caloforge.validation.features import HighLevelFeatures, high_level_inputs, readout_threshold
from caloforge.validation.metrics import verdict as v
from caloforge.validation.metrics.binnings import response_edges_per_energy
from caloforge.validation.metrics.chi2 import chi2_two_sample, energy_groups, response_chi2
from caloforge.validation.metrics.classifier import ClassifierConfig
from caloforge.validation.metrics.prdc import PRDCResult, prdc, prdc_inputs, prdc_rows
from caloforge.validation.metrics.response import layer_correlation, response_per_energy
from caloforge.validation.metrics.rings import compare_rings
from caloforge.validation.metrics.separation import (
    FeatureHistogram,
    VoxelSpectrum,
    feature_histograms,
    voxel_spectrum_binning,
)
from caloforge.validation.passes import (
    SampleSummary,
    count_voxels,
    energy_range_means,
    energy_ranges,
    gather,
    summarise,
)
from caloforge.validation.report import check_report_dir, write_report
from caloforge.validation.result import EvaluationResult, max_abs_difference

__all__ = ["CLASSIFIERS", "DISTANCE_SEED", "FPD_MIN_SAMPLES", "KPD_BATCH_SIZE", "MIN_SHOWERS", "PRDC_SAMPLES",
           "SKIPPABLE", "DistanceConfig", "EvaluationResult", "Mode", "compute_evaluation", "evaluate"]

Mode = Literal["fast", "full"]
CLASSIFIERS = ("low", "high")
MIN_SHOWERS = 20
"""Fewest showers per sample an evaluation accepts (the reference is also split in two halves)."""
PRDC_SAMPLES = 5_000
"""Showers per sample that PRDC uses (its memory grows as their square)."""


def _take(features: HighLevelFeatures, index: NDArray[np.int64]) -> HighLevelFeatures:
    arrays = {f.name: getattr(features, f.name)[index] for f in dataclasses.fields(features)
              if isinstance(getattr(features, f.name), np.ndarray)}
    return dataclasses.replace(features, **arrays)


def _energy_warning(reference: Showers, generated: Showers) -> str | None:
    """A message when the two incident-energy distributions differ (chi2 test p < 1e-3)."""
    edges = energy_bins(reference.energies)
    edges = np.concatenate([[0.0], edges[1:-1], [np.inf]])
    chi2, ndf = chi2_two_sample(np.histogram(reference.energies, edges)[0], np.histogram(generated.energies, edges)[0])
    p = float(scipy.stats.chi2.sf(chi2, ndf)) if ndf > 0 else 1.0
    if p >= 1e-3:
        return None
    return (f"the incident-energy distributions of the reference and generated samples differ "
            f"(chi2/NDF = {chi2:.1f}/{ndf}, p = {p:.1e}): inclusive feature histograms will be distorted; "
            "generate showers at the reference's incident energies")


def _energy_histograms(ref: HighLevelFeatures, gen: HighLevelFeatures) -> tuple[FeatureHistogram, ...]:
    """E_tot/E_inc per incident energy in the chi2 test's groups; the official bins for dataset 1."""
    out = []
    for group in energy_groups(ref.energies, ref.response, gen.energies, gen.response):
        if group.reference.size < 2:
            continue
        binning = response_edges_per_energy(ref.geometry, group.energy, group.reference)
        label = f"{group.energy:.4g}"  # the key; the panel's title says the energy (format_energy)
        out.append(FeatureHistogram(
            f"response_E{label}", "response_per_energy", None, r"$E_\mathrm{tot}/E_\mathrm{inc}$",
            binning.edges, np.histogram(group.reference, binning.edges)[0].astype(float),
            np.histogram(group.generated, binning.edges)[0].astype(float), binning=binning.name))
    return tuple(out)


def _separations(ref: HighLevelFeatures, gen: HighLevelFeatures) -> dict[str, float]:
    return {h.name: h.separation for h in feature_histograms(ref, gen)}


def _check_memory(reference: Showers, generated: Showers, mode: Mode, classifiers: Sequence[str],
                  config: ClassifierConfig, with_prdc: bool) -> None:
    """Refuse, before any pass over the data, the subsets that PRDC and the low-level classifier hold."""
    n_voxels = reference.geometry.n_voxels
    n = min(len(reference), len(generated))
    if mode != "full":
        return
    if with_prdc:
        m = min(n, PRDC_SAMPLES)
        check_memory(2 * m * n_voxels * 4 + 5 * m * m * 4, f"PRDC on 2 x {m} showers of {n_voxels} voxels",
                     "evaluate without PRDC (with_prdc=False; caloforge evaluate --no-prdc)", ConfigError)
    if "low" in classifiers:
        m = min(n, config.max_showers or n)
        check_memory(config.memory_bytes(n_voxels + 1, m), f"the low-level classifier on 2 x {m} showers of "
                     f"{n_voxels} voxels", "lower max_showers of the classifier config (caloforge evaluate "
                     "--classifier-showers)", ConfigError)


def _prdc(reference: Showers, generated: Showers, rows_r: NDArray[np.int64], rows_g: NDArray[np.int64],
          threshold: float, seed: int, chunk_size: int | None) -> PRDCResult:
    """PRDC on exactly the rows that :func:`prdc` would pick (``prdc_rows``), read from the samples."""
    x_r = gather(reference, rows_r, threshold, lambda s: prdc_inputs(s.showers), chunk_size)
    x_g = gather(generated, rows_g, threshold, lambda s: prdc_inputs(s.showers), chunk_size)
    return prdc(x_r, x_g, max_samples=PRDC_SAMPLES, seed=seed, subsampled=True)


def _check_arguments(reference: Showers, generated: Showers, mode: str, classifiers: Sequence[str], seed: int
                     ) -> int:
    """One geometry, a known mode and classifiers, enough showers; the checked seed."""
    if reference.geometry != generated.geometry:
        msg = (f"expected generated showers of the reference geometry '{reference.geometry.name}' "
               f"(hash {reference.geometry.hash}) but got '{generated.geometry.name}' "
               f"(hash {generated.geometry.hash}), in evaluate")
        raise GeometryMismatchError(msg)
    if mode not in ("fast", "full"):
        msg = f"expected mode 'fast' or 'full' but got {mode!r}, in evaluate"
        raise ConfigError(msg)
    unknown = sorted(set(classifiers) - set(CLASSIFIERS))
    if unknown:
        msg = f"expected classifiers among {list(CLASSIFIERS)} but got {unknown}, in evaluate"
        raise ConfigError(msg)
    seed = check_seed(seed, "in evaluate")
    for name, sample in (("reference", reference), ("generated", generated)):
        if len(sample) < MIN_SHOWERS:
            msg = f"expected at least {MIN_SHOWERS} {name} showers to evaluate but got {len(sample)}, in evaluate"
            raise DataError(msg)
    return seed


class _Laps:
    """The wall-clock time of each stage (``timings``), announced as it ends."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.timings, self.clock = progress, dict[str, float](), time.perf_counter()

    def __call__(self, name: str, announce: bool = True) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self.clock, 3)
        self.clock = now
        if announce:
            self.progress.message(f"{name.replace('_', ' ')}: done ({self.timings[name]:.1f} s)")


@dataclass(frozen=True)
class _Passes:
    """The passes over the samples: features of both, voxel spectra (with the reference split's), the split."""

    reference: SampleSummary
    generated: SampleSummary
    spectra: dict[str, VoxelSpectrum]
    halves: tuple[NDArray[np.int64], NDArray[np.int64]]
    ranges: tuple[tuple[float, float], ...]

    @classmethod
    def run(cls, reference: Showers, generated: Showers, thr: float, seed: int, chunk_size: int | None,
            prog: Progress) -> _Passes:
        geometry = reference.geometry
        order = np.random.default_rng(seed).permutation(len(reference))
        half_a, half_b = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])
        in_a = np.zeros(len(reference), dtype=bool)
        in_a[half_a] = True
        ranges = energy_ranges(reference.energies)
        with prog.task("reference: features", total=len(reference), unit="showers") as task:
            ref_sum = summarise(reference, thr, ranges, chunk_size, task=task)
        # the voxel bins need the reference's largest voxel (those of the split, half A's): generated voxels are
        # counted in the generated sample's only pass, the reference's in a second pass over it
        bins = voxel_spectrum_binning(ref_sum.extremes(), thr, geometry=geometry)
        split_bins = voxel_spectrum_binning(ref_sum.extremes(half_a), thr, geometry=geometry)  # as if half A were all
        spectra = {"ref": VoxelSpectrum(bins), "gen": VoxelSpectrum(bins), "a": VoxelSpectrum(split_bins),
                   "b": VoxelSpectrum(split_bins)}
        with prog.task("generated: features and voxel spectrum", total=len(generated), unit="showers") as task:
            gen_sum = summarise(generated, thr, ranges, chunk_size, [(spectra["gen"], None)], task)
        with prog.task("reference: voxel spectra", total=len(reference), unit="showers") as task:
            count_voxels(reference, thr, [(spectra["ref"], None), (spectra["a"], in_a), (spectra["b"], ~in_a)],
                         chunk_size, task)
        return cls(ref_sum, gen_sum, spectra, (half_a, half_b), ranges)


def _prdc_pair(reference: Showers, generated: Showers, halves: tuple[NDArray[np.int64], NDArray[np.int64]],
               thr: float, seed: int, chunk_size: int | None) -> tuple[PRDCResult, PRDCResult]:
    """PRDC of the generated sample and of the reference split."""
    half_a, half_b = halves
    rows_r, rows_g = prdc_rows(len(reference), len(generated), PRDC_SAMPLES, seed)
    rows_a, rows_b = prdc_rows(len(half_a), len(half_b), PRDC_SAMPLES, seed)
    return (_prdc(reference, generated, rows_r, rows_g, thr, seed, chunk_size),
            _prdc(reference, reference, half_a[rows_a], half_b[rows_b], thr, seed, chunk_size))


def compute_evaluation(
    reference: Showers,
    generated: Showers,
    mode: Mode = "fast",
    classifiers: Sequence[str] = CLASSIFIERS,
    seed: int = 0,
    classifier_config: ClassifierConfig | None = None,
    device: str = "cpu",
    threshold: float | None = None,
    with_prdc: bool = True,
    progress: Progress | None = None,
    chunk_size: int | None = None,
    distances: DistanceConfig | None = None,
    skip: Collection[str] = (),
) -> EvaluationResult:
    """Compute every validation metric of ``generated`` against ``reference``.

    Each sample is read chunk by chunk: the reference twice (features, then voxel counts once the
    bins are known), the generated sample once, then only the rows that PRDC and the low-level
    classifier use. The numbers do not depend on the chunk size or on whether a sample is in memory
    (see the module docstring for the memory bound).

    Args:
        reference: The reference showers (e.g. Geant4), in memory or a :class:`~caloforge.data.source.ShowerFile`.
        generated: The generated showers; same geometry, ideally the same incident energies.
        mode: ``fast`` (no classifiers) or ``full``.
        classifiers: Which classifier tests to run in full mode: ``low`` (voxels) and/or ``high`` (features).
        seed: Seed of every random step (reference split, subsets, trainings).
        classifier_config: Classifier settings (default :meth:`ClassifierConfig.cpu_budget`).
        device: Torch device for the classifiers (the caller's choice).
        threshold: Readout threshold in MeV (default: the geometry's, see :func:`readout_threshold`).
        with_prdc: Also compute precision/recall/density/coverage (full mode only).
        progress: Reports each stage (and each classifier epoch); None is silent.
        chunk_size: Showers per chunk (default :func:`caloforge.data.source.chunk_rows`, 64 MiB).
        distances: FPD/KPD settings (default: the official code's, :class:`DistanceConfig`).
        skip: Metrics not to compute, among :data:`SKIPPABLE` (``fpd``, ``kpd``, ``split``: the reference split of
            FPD, KPD and the classifiers, ``prdc``): null in metrics.json with the reason, "not computed" in the
            verdict table.

    Returns:
        The result; its ``inputs`` hold the fingerprint of each sample (sha256 of the raw showers).

    Raises:
        GeometryMismatchError: if the samples have different geometries.
        ConfigError: for an unknown mode or classifier name, or if the PRDC or low-level classifier
            subsets cannot fit in memory (checked before any pass over the data).
        DataError: if a sample has fewer than :data:`MIN_SHOWERS` showers.

    Warns:
        UserWarning: if the incident-energy distributions differ.
    """
    seed = _check_arguments(reference, generated, mode, classifiers, seed)
    distances = DistanceConfig() if distances is None else distances
    distances = dataclasses.replace(distances, skip=distances.skip | DistanceConfig.parse_skip(skip))
    with_prdc = with_prdc and "prdc" not in distances.skip
    config = classifier_config or ClassifierConfig.cpu_budget()
    _check_memory(reference, generated, mode, classifiers, config, with_prdc)
    prog = progress or SILENT
    lap = _Laps(prog)
    prog.message(f"evaluate ({mode} mode): features of {len(reference)} reference and {len(generated)} generated "
                 "showers")
    messages = []
    message = _energy_warning(reference, generated)
    if message:
        warnings.warn(message, UserWarning, stacklevel=2)
        messages.append(message)
    geometry = reference.geometry
    thr = readout_threshold(geometry) if threshold is None else float(threshold)
    passes = _Passes.run(reference, generated, thr, seed, chunk_size, prog)
    ref_sum, gen_sum, spectra, half_a, half_b = passes.reference, passes.generated, passes.spectra, *passes.halves
    ref_f, gen_f = ref_sum.features, gen_sum.features
    ref_a, ref_b = _take(ref_f, half_a), _take(ref_f, half_b)
    lap("features")

    chi2 = response_chi2(ref_f.energies, ref_f.response, gen_f.energies, gen_f.response)
    chi2_split = response_chi2(ref_a.energies, ref_a.response, ref_b.energies, ref_b.response)
    histograms = (*feature_histograms(ref_f, gen_f), spectra["ref"].histogram(spectra["gen"]))
    energy_hists = _energy_histograms(ref_f, gen_f)
    split = _separations(ref_a, ref_b)
    split["voxel"] = spectra["a"].histogram(spectra["b"]).separation
    corr_r, corr_g = layer_correlation(ref_f.e_layer), layer_correlation(gen_f.e_layer)
    corr_split = max_abs_difference(layer_correlation(ref_a.e_layer), layer_correlation(ref_b.e_layer))
    rings = compare_rings(ref_sum.rings, gen_sum.rings)
    lap("histograms")

    hl_r, hl_g = high_level_inputs(ref_f), high_level_inputs(gen_f)
    dist = compute_distances(hl_r, hl_g, half_a, half_b, seed, distances, progress)
    fpd_r, kpd_r, fpd_s, kpd_s = dist.fpd, dist.kpd, dist.fpd_split, dist.kpd_split
    messages += dist.messages
    lap("fpd_kpd")

    prdc_r = prdc_s = None
    if with_prdc and mode == "full":
        prog.message(f"precision/recall/density/coverage (k=5, at most {PRDC_SAMPLES} showers): started")
        prdc_r, prdc_s = _prdc_pair(reference, generated, passes.halves, thr, seed, chunk_size)
        lap("prdc")

    stage = ClassifierStage({}, {}, ())
    if mode == "full":  # each classifier reports itself: its lap is not announced
        stage = classifier_tests(reference, generated, (hl_r, hl_g), passes.halves, classifiers, config, seed=seed,
                                 device=device, threshold=thr, chunk_size=chunk_size, progress=progress,
                                 lap=lambda name: lap(name, announce=False), with_split="split" not in distances.skip)
        messages += stage.messages
    results, results_split = stage.results, stage.split

    rows = v.assemble(
        chi2, chi2_split, {h.name: h.separation for h in histograms}, split,
        {"fpd": (fpd_r, fpd_s), "kpd": (kpd_r, kpd_s)},
        {kind: (results[kind], results_split.get(kind)) for kind in results},
        (max_abs_difference(corr_r, corr_g), corr_split),
        (prdc_r, prdc_s) if prdc_r is not None and prdc_s is not None else None, rings)
    rows = v.judge_sizes(rows, chi2, len(reference), len(generated), {k: r.n_per_sample for k, r in results.items()},
                         {k: r.optimiser_steps for k, r in results.items()})
    small = v.too_small_message(rows)
    if small:  # one note for all of them, in the report (the terminal prints it under the verdict table)
        messages.append(small)
    lap("verdicts")
    return EvaluationResult(
        mode=mode, seed=seed, geometry=geometry, threshold=thr, n_reference=len(reference),
        n_generated=len(generated), chi2=chi2, chi2_split=chi2_split, histograms=histograms,
        energy_histograms=energy_hists, separation_split=split,
        response_reference=response_per_energy(ref_f.energies, ref_f.response),
        response_generated=response_per_energy(gen_f.energies, gen_f.response, energy_bins(ref_f.energies)),
        correlation_reference=corr_r, correlation_generated=corr_g, correlation_split_max=corr_split,
        energy_means=energy_range_means(passes.ranges, ref_sum, gen_sum), mean_reference=ref_sum.mean,
        mean_generated=gen_sum.mean, rings=rings, fpd=fpd_r, kpd=kpd_r, fpd_split=fpd_s, kpd_split=kpd_s, prdc=prdc_r,
        prdc_split=prdc_s, classifiers=results, classifiers_split=results_split, verdicts=rows,
        warnings=tuple(messages), timings=lap.timings,
        inputs={"reference": ref_sum.fingerprint, "generated": gen_sum.fingerprint},
    )


def result_skips(distances: DistanceConfig | None, skip: Collection[str]) -> frozenset[str]:
    """Everything skipped, from the distance settings' ``skip`` and the ``skip`` argument together."""
    return DistanceConfig.parse_skip(skip) | (distances.skip if distances is not None else frozenset())


def evaluate(
    reference: Showers,
    generated: Showers,
    out_dir: str | Path,
    mode: Mode = "fast",
    classifiers: Sequence[str] = CLASSIFIERS,
    seed: int = 0,
    force: bool = False,
    classifier_config: ClassifierConfig | None = None,
    device: str = "cpu",
    threshold: float | None = None,
    with_prdc: bool = True,
    training_history: Sequence[Mapping[str, float]] = (),
    progress: Progress | None = None,
    inputs: Mapping[str, Any] | None = None,
    chunk_size: int | None = None,
    distances: DistanceConfig | None = None,
    skip: Collection[str] = (),
) -> EvaluationResult:
    """Validate ``generated`` against ``reference`` and write the report into ``out_dir``.

    Writes ``metrics.json``, ``report.html`` (self-contained) and ``plots/*.png`` and
    ``*.pdf`` (see :func:`caloforge.validation.report.write_report`). The arguments are those of
    :func:`compute_evaluation`, plus the output directory (created if missing), ``force``,
    optionally the training history of the model that generated the showers (a bundle's
    ``history``: rows with ``iteration``, ``elapsed_s`` and validation ``chi2_ndf``), which adds a
    training section, and ``inputs``, a description of where the samples came from (files,
    fingerprints, the model bundle) for the report's header and metrics.json: each sample's entry is
    completed with the fingerprint computed while reading it (:func:`compute_evaluation`).

    Returns:
        The result as written, its timings including the report and the total.

    Raises:
        OutputExistsError: if the report or metrics already exist and ``force`` is false
            (checked before any computation).
    """
    out = check_report_dir(out_dir, force)
    start = time.perf_counter()
    result = compute_evaluation(reference, generated, mode, classifiers, seed, classifier_config, device,
                                threshold, with_prdc, progress, chunk_size, distances, skip)
    history = tuple({k: float(v) for k, v in row.items() if v is not None} for row in training_history)  # null: NaN
    described = dict(inputs or {})
    for role, computed in result.inputs.items():  # the caller's description (e.g. a path), then the fingerprint
        given = described.get(role)
        described[role] = {**given, **computed} if isinstance(given, Mapping) else computed
    result = dataclasses.replace(result, training_history=history, inputs=described)
    return write_report(result, out, force=force, progress=progress, started=start,
                        figures="figures" not in result_skips(distances, skip))
