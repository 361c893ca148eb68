"""Validation of generated showers against a reference: all metrics, then the report.

:func:`compute_evaluation` runs every metric (pure computation, no files);
:func:`evaluate` runs it and writes ``metrics.json``, ``report.html`` and
``plots/*.png|pdf`` into a directory. ``mode="fast"`` skips the classifier tests.

The readout threshold of the geometry is applied to both samples before
anything is computed. Every metric is also computed between two random halves
of the reference ("reference split"), the yardstick of what statistics alone give.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.stats
from numpy.typing import NDArray

from caloforge.data.checks import check_seed
from caloforge.data.showers import ShowerSet, energy_bins
from caloforge.errors import ConfigError, DataError, GeometryMismatchError
from caloforge.runtime.progress import SILENT, Progress
from caloforge.validation.features import (
    HighLevelFeatures,
    apply_threshold,
    compute_features,
    high_level_inputs,
    low_level_inputs,
    readout_threshold,
)
from caloforge.validation.metrics import verdict as v
from caloforge.validation.metrics.binnings import response_edges_per_energy
from caloforge.validation.metrics.chi2 import chi2_two_sample, energy_groups, response_chi2
from caloforge.validation.metrics.classifier import ClassifierConfig, ClassifierResult, classifier_test
from caloforge.validation.metrics.distances import fpd, kpd
from caloforge.validation.metrics.prdc import prdc, prdc_inputs
from caloforge.validation.metrics.response import layer_correlation, response_per_energy
from caloforge.validation.metrics.separation import FeatureHistogram, feature_histograms, voxel_histogram
from caloforge.validation.result import EnergyRangeMeans, EvaluationResult, max_abs_difference

__all__ = ["CLASSIFIERS", "MIN_SHOWERS", "EvaluationResult", "Mode", "compute_evaluation", "evaluate"]

Mode = Literal["fast", "full"]
CLASSIFIERS = ("low", "high")
MIN_SHOWERS = 20
"""Fewest showers per sample an evaluation accepts (the reference is also split in two halves)."""


def _take(features: HighLevelFeatures, index: NDArray[np.int64]) -> HighLevelFeatures:
    arrays = {f.name: getattr(features, f.name)[index] for f in dataclasses.fields(features)
              if isinstance(getattr(features, f.name), np.ndarray)}
    return dataclasses.replace(features, **arrays)


def _energy_warning(reference: ShowerSet, generated: ShowerSet) -> str | None:
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
        label = f"{group.energy:.4g}"
        out.append(FeatureHistogram(
            f"response_E{label}", "response_per_energy", None, rf"$E_\mathrm{{tot}}/E_\mathrm{{inc}}$, E = {label} MeV",
            binning.edges, np.histogram(group.reference, binning.edges)[0].astype(float),
            np.histogram(group.generated, binning.edges)[0].astype(float), binning=binning.name))
    return tuple(out)


def _mean_fraction(showers: ShowerSet, rows: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Mean of voxels / E_inc over the selected showers, as one matrix-vector product (no copy of the showers)."""
    weights = np.where(rows, 1.0 / showers.energies, 0.0).astype(np.float32) / max(int(rows.sum()), 1)
    return np.asarray(weights @ showers.showers, dtype=np.float64)


def _energy_range_means(reference: ShowerSet, generated: ShowerSet, n_ranges: int = 4) -> tuple[EnergyRangeMeans, ...]:
    """Mean showers (voxels / E_inc) of both samples in up to ``n_ranges`` incident-energy ranges.

    A discrete spectrum is cut into contiguous groups of its energies (one energy per range when
    it has at most ``n_ranges``); a continuous one into log-spaced ranges.
    """
    edges = energy_bins(reference.energies)
    groups = np.array_split(np.arange(len(edges) - 1), min(n_ranges, len(edges) - 1))
    out = []
    for group in groups:
        lo, hi = edges[group[0]], edges[group[-1] + 1]
        in_r = (reference.energies >= lo) & (reference.energies < hi)
        in_g = (generated.energies >= lo) & (generated.energies < hi)
        if not in_r.any() or not in_g.any():
            continue
        distinct = np.unique(reference.energies[in_r])
        low, high = (float(distinct[0]), float(distinct[-1])) if distinct.size <= 50 else (float(lo), float(hi))
        out.append(EnergyRangeMeans(low, high, int(in_r.sum()), int(in_g.sum()), _mean_fraction(reference, in_r),
                                    _mean_fraction(generated, in_g)))
    return tuple(out)


def _separations(ref: HighLevelFeatures, gen: HighLevelFeatures) -> dict[str, float]:
    return {h.name: h.separation for h in feature_histograms(ref, gen)}


def _classifier_inputs(kind: str, showers: ShowerSet, features: HighLevelFeatures) -> NDArray[np.float32]:
    return low_level_inputs(showers, 0.0) if kind == "low" else high_level_inputs(features)


def compute_evaluation(
    reference: ShowerSet,
    generated: ShowerSet,
    mode: Mode = "fast",
    classifiers: Sequence[str] = CLASSIFIERS,
    seed: int = 0,
    classifier_config: ClassifierConfig | None = None,
    device: str = "cpu",
    threshold: float | None = None,
    with_prdc: bool = True,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Compute every validation metric of ``generated`` against ``reference``.

    Args:
        reference: The reference showers (e.g. Geant4).
        generated: The generated showers; same geometry, ideally the same incident energies.
        mode: ``fast`` (no classifiers) or ``full``.
        classifiers: Which classifier tests to run in full mode: ``low`` (voxels) and/or ``high`` (features).
        seed: Seed of every random step (reference split, subsets, trainings).
        classifier_config: Classifier settings (default :meth:`ClassifierConfig.cpu_budget`).
        device: Torch device for the classifiers (the caller's choice).
        threshold: Readout threshold in MeV (default: the geometry's, see :func:`readout_threshold`).
        with_prdc: Also compute precision/recall/density/coverage (full mode only).
        progress: Reports each stage (and each classifier epoch); None is silent.

    Raises:
        GeometryMismatchError: if the samples have different geometries.
        ConfigError: for an unknown mode or classifier name.
        DataError: if a sample has fewer than :data:`MIN_SHOWERS` showers.

    Warns:
        UserWarning: if the incident-energy distributions differ.
    """
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
    timings: dict[str, float] = {}
    prog = progress or SILENT
    clock = time.perf_counter()

    def lap(name: str, announce: bool = True) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now
        if announce:
            prog.message(f"{name.replace('_', ' ')}: done ({timings[name]:.1f} s)")

    prog.message(f"evaluate ({mode} mode): features of {len(reference)} reference and {len(generated)} generated "
                 "showers")
    messages = []
    message = _energy_warning(reference, generated)
    if message:
        warnings.warn(message, UserWarning, stacklevel=2)
        messages.append(message)
    geometry = reference.geometry
    thr = readout_threshold(geometry) if threshold is None else float(threshold)
    ref_s, gen_s = apply_threshold(reference, thr), apply_threshold(generated, thr)
    ref_f, gen_f = compute_features(ref_s, 0.0), compute_features(gen_s, 0.0)
    ref_f, gen_f = dataclasses.replace(ref_f, threshold=thr), dataclasses.replace(gen_f, threshold=thr)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(reference))
    half_a, half_b = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])
    ref_a, ref_b = _take(ref_f, half_a), _take(ref_f, half_b)
    lap("features")

    chi2 = response_chi2(ref_f.energies, ref_f.response, gen_f.energies, gen_f.response)
    chi2_split = response_chi2(ref_a.energies, ref_a.response, ref_b.energies, ref_b.response)
    histograms = (*feature_histograms(ref_f, gen_f),
                  voxel_histogram(ref_s.showers, gen_s.showers, thr, geometry=geometry))
    energy_hists = _energy_histograms(ref_f, gen_f)
    split = _separations(ref_a, ref_b)
    split["voxel"] = voxel_histogram(ref_s.showers[half_a], ref_s.showers[half_b], thr, geometry=geometry).separation
    corr_r, corr_g = layer_correlation(ref_f.e_layer), layer_correlation(gen_f.e_layer)
    corr_split = max_abs_difference(layer_correlation(ref_a.e_layer), layer_correlation(ref_b.e_layer))
    lap("histograms")

    prog.message("FPD and KPD (with the reference split): started")
    hl_r, hl_g = high_level_inputs(ref_f), high_level_inputs(gen_f)
    with warnings.catch_warnings(record=True) as caught:  # small-sample notes go into the report
        warnings.simplefilter("always", UserWarning)
        fpd_r, kpd_r = fpd(hl_r, hl_g, seed=seed), kpd(hl_r, hl_g, seed=seed)
        fpd_s, kpd_s = fpd(hl_r[half_a], hl_r[half_b], seed=seed), kpd(hl_r[half_a], hl_r[half_b], seed=seed)
    messages += sorted({str(w.message) for w in caught})
    lap("fpd_kpd")

    prdc_r = prdc_s = None
    if with_prdc and mode == "full":
        prog.message("precision/recall/density/coverage (k=5, at most 5000 showers): started")
        x_r, x_g = prdc_inputs(ref_s.showers), prdc_inputs(gen_s.showers)
        prdc_r = prdc(x_r, x_g, max_samples=5_000, seed=seed)
        prdc_s = prdc(x_r[half_a], x_r[half_b], max_samples=5_000, seed=seed)
        lap("prdc")

    results: dict[str, ClassifierResult] = {}
    results_split: dict[str, ClassifierResult] = {}
    if mode == "full":
        config = classifier_config or ClassifierConfig.cpu_budget()
        inputs = {kind: (_classifier_inputs(kind, ref_s, ref_f), _classifier_inputs(kind, gen_s, gen_f))
                  for kind in classifiers}
        jobs = [(kind, split_half) for kind in classifiers for split_half in (False, True)]
        sizes = {job: min(len(ref_s) // 2 if job[1] else min(len(ref_s), len(gen_s)), config.max_showers or 10**12)
                 for job in jobs}
        work = {job: config.epoch_flops(inputs[job[0]][0].shape[1], sizes[job]) for job in jobs}
        deadline = None if config.max_seconds is None else time.monotonic() + config.max_seconds
        for i, (kind, split_half) in enumerate(jobs):
            x_r, x_g = inputs[kind]
            if split_half:
                x_r, x_g = x_r[half_a], x_r[half_b]
            job_config = config
            if deadline is not None:  # the time left, shared in proportion to each test's work
                share = work[(kind, split_half)] / sum(work[j] for j in jobs[i:])
                job_config = config.replace(max_seconds=max(1e-3, (deadline - time.monotonic()) * share))
            label = f"classifier {kind}-level" + (" (reference split)" if split_half else "")
            result = classifier_test(x_r, x_g, job_config, seed=seed, device=device, progress=progress, label=label)
            (results_split if split_half else results)[kind] = result
            lap(f"classifier_{kind}" + ("_split" if split_half else ""), announce=False)  # it reports itself
        del inputs
        for kind, result in results.items():
            if result.budget_exhausted:
                messages.append(f"the {kind}-level classifier was stopped by its wall-clock budget after "
                                f"{'/'.join(str(r.epochs_run) for r in result.runs)} epochs: its AUC may be "
                                "understated (give it more time with --max-minutes)")

    rows = v.assemble(
        chi2, chi2_split, {h.name: h.separation for h in histograms}, split,
        {"fpd": (fpd_r, fpd_s), "kpd": (kpd_r, kpd_s)},
        {kind: (results[kind], results_split[kind]) for kind in results},
        (max_abs_difference(corr_r, corr_g), corr_split),
        (prdc_r, prdc_s) if prdc_r is not None and prdc_s is not None else None)
    lap("verdicts")
    return EvaluationResult(
        mode=mode, seed=seed, geometry=geometry, threshold=thr, n_reference=len(reference),
        n_generated=len(generated), chi2=chi2, chi2_split=chi2_split, histograms=histograms,
        energy_histograms=energy_hists, separation_split=split,
        response_reference=response_per_energy(ref_f.energies, ref_f.response),
        response_generated=response_per_energy(gen_f.energies, gen_f.response, energy_bins(ref_f.energies)),
        correlation_reference=corr_r, correlation_generated=corr_g, correlation_split_max=corr_split,
        energy_means=_energy_range_means(ref_s, gen_s),
        mean_reference=ref_s.showers.mean(axis=0, dtype=np.float64),
        mean_generated=gen_s.showers.mean(axis=0, dtype=np.float64),
        fpd=fpd_r, kpd=kpd_r, fpd_split=fpd_s, kpd_split=kpd_s, prdc=prdc_r, prdc_split=prdc_s,
        classifiers=results, classifiers_split=results_split, verdicts=rows,
        warnings=tuple(messages), timings=timings,
    )


def evaluate(
    reference: ShowerSet,
    generated: ShowerSet,
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
) -> EvaluationResult:
    """Validate ``generated`` against ``reference`` and write the report into ``out_dir``.

    Writes ``metrics.json``, ``report.html`` (self-contained) and ``plots/*.png`` and
    ``*.pdf`` (see :func:`caloforge.validation.report.write_report`). The arguments are those of
    :func:`compute_evaluation`, plus the output directory (created if missing), ``force``,
    optionally the training history of the model that generated the showers (a bundle's
    ``history``: rows with ``iteration``, ``elapsed_s`` and validation ``chi2_ndf``), which adds a
    training section, and ``inputs``, a description of where the samples came from (files,
    fingerprints, the model bundle) for the report's header and metrics.json.

    Returns:
        The result as written, its timings including the report and the total.

    Raises:
        OutputExistsError: if the report or metrics already exist and ``force`` is false
            (checked before any computation).
    """
    from caloforge.validation.report import check_report_dir, write_report

    out = check_report_dir(out_dir, force)
    start = time.perf_counter()
    result = compute_evaluation(reference, generated, mode, classifiers, seed, classifier_config, device,
                                threshold, with_prdc, progress)
    history = tuple({k: float(v) for k, v in row.items() if v is not None} for row in training_history)  # null: NaN
    result = dataclasses.replace(result, training_history=history, inputs=dict(inputs or {}))
    return write_report(result, out, force=force, progress=progress, started=start)
