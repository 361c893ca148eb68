"""Several generated samples against one reference: one report that compares them, as papers' figures do.

:func:`evaluate_samples` evaluates each sample against the same reference
(:func:`~caloforge.validation.evaluate.compute_evaluation`, same seed, so the reference split and
every binning are the same for all) and writes one report
(:func:`~caloforge.validation.compare_report.write_comparison`): every histogram with all samples
overlaid on the reference, one table of every metric per sample with its error and verdict, and
``metrics.json`` with each sample's full results under ``samples``.

:func:`evaluate` is ``caloforge.evaluate``: one sample (a :data:`~caloforge.data.source.Showers`) gives
the single-sample report, a mapping ``{label: showers}`` or a sequence of samples the comparison.

Each sample costs one evaluation: the reference is read once per sample (its features are not
cached), so comparing k samples takes about k times one evaluation.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from caloforge.data.source import Showers
from caloforge.errors import ConfigError
from caloforge.runtime.progress import SILENT, Progress
from caloforge.validation.compare_report import write_comparison
from caloforge.validation.distance_stage import DistanceConfig
from caloforge.validation.evaluate import CLASSIFIERS, Mode, compute_evaluation, result_skips
from caloforge.validation.evaluate import evaluate as evaluate_one
from caloforge.validation.metrics import verdict as v
from caloforge.validation.metrics.classifier import ClassifierConfig
from caloforge.validation.report import check_report_dir
from caloforge.validation.result import EvaluationResult

__all__ = ["COMPARISON_SCHEMA", "MAX_SAMPLES", "Comparison", "evaluate", "evaluate_samples", "sample_labels"]

COMPARISON_SCHEMA = "caloforge.validation.compare/1"
MAX_SAMPLES = 8
"""Most generated samples one report overlays (the palette's colours; beyond it the plots are unreadable)."""


@dataclass(frozen=True, eq=False)
class Comparison:
    """The evaluations of several generated samples against one reference, in the order given.

    Attributes:
        labels: Each sample's label (unique).
        results: Each sample's evaluation.
        timings: Seconds per stage: ``report`` and ``total``.
    """

    labels: tuple[str, ...]
    results: tuple[EvaluationResult, ...]
    timings: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @property
    def samples(self) -> list[tuple[str, EvaluationResult]]:
        """(label, result) pairs, in order."""
        return list(zip(self.labels, self.results, strict=True))

    @property
    def verdicts(self) -> dict[str, v.Verdict]:
        """The overall verdict of each sample."""
        return {label: r.verdict for label, r in self.samples}

    def to_dict(self) -> dict[str, Any]:
        """``metrics.json`` of the comparison: the verdict of each sample, then each sample's full metrics."""
        return {"schema": COMPARISON_SCHEMA, "labels": list(self.labels), "verdicts": self.verdicts,
                "timings_s": dict(self.timings),
                "samples": {label: r.to_dict() for label, r in self.samples}}


def sample_labels(names: Sequence[str], labels: Sequence[str] = ()) -> tuple[str, ...]:
    """The labels of the samples: ``labels`` if given (one per sample), else ``names`` (e.g. the file stems).

    Raises:
        ConfigError: if the number of labels differs from the number of samples, a label is empty,
            two labels are the same, or there are more than :data:`MAX_SAMPLES` samples.

    Example:
        >>> sample_labels(["gen_gan", "gen_vae"]), sample_labels(["a", "b"], ["GAN", "VAE"])
        (('gen_gan', 'gen_vae'), ('GAN', 'VAE'))
    """
    chosen = tuple(labels) if labels else tuple(names)
    if labels and len(labels) != len(names):
        msg = (f"expected one --label per generated sample ({len(names)}) but got {len(labels)}, "
               "in the sample labels")
        raise ConfigError(msg)
    if len(chosen) > MAX_SAMPLES:
        msg = f"expected at most {MAX_SAMPLES} generated samples in one report but got {len(chosen)}"
        raise ConfigError(msg)
    duplicates = sorted({x for x in chosen if chosen.count(x) > 1})
    if duplicates or any(not str(x).strip() for x in chosen):
        what = f"the duplicates {duplicates}" if duplicates else "an empty label"
        msg = (f"expected a different label for each generated sample but got {what}, in the sample labels; "
               "give each its own with --label")
        raise ConfigError(msg)
    return tuple(str(x) for x in chosen)


def evaluate_samples(
    reference: Showers,
    generated: Mapping[str, Showers],
    out_dir: str | Path,
    mode: Mode = "fast",
    classifiers: Sequence[str] = CLASSIFIERS,
    seed: int = 0,
    force: bool = False,
    classifier_config: ClassifierConfig | None = None,
    device: str = "cpu",
    threshold: float | None = None,
    with_prdc: bool = True,
    progress: Progress | None = None,
    inputs: Mapping[str, Any] | None = None,
    chunk_size: int | None = None,
    distances: DistanceConfig | None = None,
    skip: Collection[str] = (),
) -> Comparison:
    """Evaluate each generated sample against ``reference`` and write one comparison report into ``out_dir``.

    The arguments are those of :func:`caloforge.validation.evaluate.evaluate`, with ``generated`` a mapping
    ``{label: showers}`` (labels as the report shows them) and ``inputs`` holding ``reference`` and ``generated``,
    a mapping with one entry per label (e.g. ``{"path": ...}``), completed with each sample's fingerprint.
    A training history (``--run``) belongs to one model and is not taken.

    Raises:
        ConfigError: for no sample, or labels that :func:`sample_labels` refuses.
        OutputExistsError: if the report exists and ``force`` is false (checked before any computation).
    """
    if not generated:
        msg = "expected at least one generated sample but got none, in evaluate"
        raise ConfigError(msg)
    labels = sample_labels(list(generated))
    out = check_report_dir(out_dir, force)
    start = time.perf_counter()
    prog = progress or SILENT
    given = dict(inputs or {})
    results = []
    for k, label in enumerate(labels):
        prog.message(f"sample {k + 1} of {len(labels)}: {label}")
        result = compute_evaluation(reference, generated[label], mode, classifiers, seed, classifier_config,
                                    device, threshold, with_prdc, progress, chunk_size, distances, skip)
        per_sample = given.get("generated")
        described = {"reference": given.get("reference"),
                     "generated": per_sample.get(label) if isinstance(per_sample, Mapping) else None}
        for role, computed in result.inputs.items():
            item = described.get(role)
            described[role] = {**item, **computed} if isinstance(item, Mapping) else computed
        results.append(dataclasses.replace(result, inputs={**described, "label": label}))
    comparison = Comparison(labels, tuple(results))
    return write_comparison(comparison, out, force=force, progress=progress, started=start,
                            figures="figures" not in result_skips(distances, skip))


@overload
def evaluate(reference: Showers, generated: Showers, out_dir: str | Path, **kwargs: Any) -> EvaluationResult: ...


@overload
def evaluate(reference: Showers, generated: Mapping[str, Showers] | Sequence[Showers], out_dir: str | Path,
             **kwargs: Any) -> Comparison: ...


def evaluate(reference: Showers, generated: Showers | Mapping[str, Showers] | Sequence[Showers],
             out_dir: str | Path, **kwargs: Any) -> EvaluationResult | Comparison:
    """Validate one generated sample, or compare several, against ``reference``; write the report into ``out_dir``.

    Args:
        reference: The reference showers.
        generated: One sample (the single-sample report,
            :func:`caloforge.validation.evaluate.evaluate`), or several: ``{label: showers}``, or a list
            (labelled ``sample 1``, ``sample 2``, ...), compared in one report (:func:`evaluate_samples`).
        out_dir: The report directory.
        **kwargs: The options of :func:`caloforge.validation.evaluate.evaluate` (``training_history``: one
            sample only).

    Example:
        >>> import caloforge, tempfile
        >>> ref = caloforge.simulate("ds1-photons", "photon", [4096.0] * 40, seed=1)
        >>> gens = {"A": caloforge.simulate("ds1-photons", "photon", [4096.0] * 40, seed=2),
        ...         "B": caloforge.simulate("ds1-photons", "photon", [4096.0] * 40, seed=3)}
        >>> with tempfile.TemporaryDirectory() as out:  # doctest: +SKIP
        ...     caloforge.evaluate(ref, gens, out).verdicts
        {'A': 'too small', 'B': 'too small'}
    """
    several = isinstance(generated, Mapping) or (isinstance(generated, Sequence) and len(generated) > 1)
    if several and kwargs.pop("training_history", None):
        msg = ("expected a training history with one generated sample but got several samples, in evaluate "
               "(the history belongs to one model: evaluate its sample alone with --run)")
        raise ConfigError(msg)
    if isinstance(generated, Mapping):
        return evaluate_samples(reference, generated, out_dir, **kwargs)
    if isinstance(generated, Sequence):  # a list or tuple of samples (ShowerSet and ShowerFile are not sequences)
        if len(generated) == 1:
            return evaluate_one(reference, generated[0], out_dir, **kwargs)
        return evaluate_samples(reference, {f"sample {k + 1}": g for k, g in enumerate(generated)}, out_dir, **kwargs)
    return evaluate_one(reference, generated, out_dir, **kwargs)
