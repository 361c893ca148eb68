"""Pass / warn / fail verdicts of the validation metrics, with documented thresholds.

Each rule compares the metric of reference vs generated with a bound; bounds that
depend on statistics use the same metric computed on two halves of the reference
("reference split"), which shows what sample-size noise alone produces. The
reasons for each threshold are in docs/validation.md.

=====================  ==========================================  ==========================
metric                 pass                                        warn (else fail)
=====================  ==========================================  ==========================
response chi2/NDF      <= 1 + 3 sqrt(2/NDF) (statistics alone)     <= 3
response tails         generated beyond the reference's 0.5-99.5   <= pass bound + 5 %
                       percentiles <= 1 % + 2/(N_ref+1) + 3 sigma
max separation power   <= max(0.01, 2 x split)                     <= max(0.1, 5 x split)
FPD, KPD               <= split + 3 sigma (or consistent with 0)    <= 5 x the pass bound
classifier AUC         <= max(0.6, split + 0.05)                   <= max(0.8, split + 0.2);
                                                                   below 0.5 - 3 sigma: warn
layer correlations     max |dC| <= max(0.05, 2 x split)            <= max(0.15, 5 x split)
mean energy per ring   every graded ring's ratio within 0.8-1.25   within 0.5-2
                       (beyond 3 sigma; :mod:`.rings`)
=====================  ==========================================  ==========================

JSD, precision/recall/density/coverage and response/resolution are shown for
information only ("info"). A graded metric on samples too small for it (:data:`JUDGE_MIN_SHOWERS`,
:data:`JUDGE_MIN_PER_ENERGY`) is "too small" to judge: its value is shown, its rule says which size it needs,
and it does not enter the overall verdict (:func:`judge_sizes`). A metric the user skipped
(``caloforge evaluate --skip fpd``) has the verdict "not computed", with the reason as its rule; like "info"
it does not enter the overall verdict.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from caloforge.data.showers import format_energy

if TYPE_CHECKING:
    from caloforge.validation.metrics.chi2 import Chi2Result
    from caloforge.validation.metrics.classifier import ClassifierResult
    from caloforge.validation.metrics.distances import DistanceResult
    from caloforge.validation.metrics.prdc import PRDCResult
    from caloforge.validation.metrics.rings import RingComparison

__all__ = [
    "JUDGE_MIN_CLASSIFIER_STEPS",
    "JUDGE_MIN_PER_ENERGY",
    "JUDGE_MIN_SHOWERS",
    "Verdict",
    "VerdictRow",
    "assemble",
    "auc_verdict",
    "chi2_verdict",
    "correlation_verdict",
    "distance_verdict",
    "judge_sizes",
    "overall",
    "ring_verdict",
    "separation_verdict",
    "tail_verdict",
    "too_small_message",
]

Verdict = Literal["pass", "warn", "fail", "info", "not computed", "too small"]

JUDGE_MIN_SHOWERS = 1000
"""Fewest showers per sample that separation power, layer correlations, FPD, KPD and classifier AUCs need to be
graded: min(N_gen, N_ref / 2) (the reference split compares two halves), or the classifier's showers per sample.
Below it, the statistical noise alone (the reference split) is so large that the bounds it sets admit a
visibly wrong model."""
JUDGE_MIN_CLASSIFIER_STEPS = 1000
"""Fewest optimiser steps of a classifier whose AUC may be graded ``pass``: with fewer (e.g. 10 epochs of 12
batches on 10k dataset-2 showers) a classifier can stay at the loss log 2 without having learned, and its AUC
of 0.5 says nothing. A ``warn`` or ``fail`` stands: a classifier that separates early shows a real difference."""
JUDGE_MIN_PER_ENERGY = 50
"""Fewest showers per incident energy, in either sample, that the response chi2 and tail rules need:
below it the chi2 per energy is not chi2-distributed and a 1 % tail is less than one shower."""


@dataclass(frozen=True)
class VerdictRow:
    """One row of the verdict table.

    Attributes:
        key: Stable machine key (also used in metrics.json).
        metric: Human-readable name.
        value: The reference-vs-generated value.
        error: Its uncertainty (NaN if none).
        reference_split: The same metric on two halves of the reference (NaN if not computed).
        verdict: pass, warn, fail, info or not computed (skipped; the rule gives the reason).
        rule: The threshold applied, in words.
    """

    key: str
    metric: str
    value: float
    error: float
    reference_split: float
    verdict: Verdict
    rule: str

    @property
    def graded(self) -> bool:
        """Whether the row enters the overall verdict (pass, warn or fail)."""
        return self.verdict in ("pass", "warn", "fail")


def _grade(value: float, pass_bound: float, warn_bound: float) -> Verdict:
    if not math.isfinite(value):
        return "fail"
    if value <= pass_bound:
        return "pass"
    return "warn" if value <= warn_bound else "fail"


def _finite(x: float, default: float) -> float:
    return x if math.isfinite(x) else default


def chi2_verdict(chi2_ndf: float, ndf: int, split: float = float("nan")) -> VerdictRow:
    """Response chi2/NDF: pass within 3 standard deviations of 1 (sd = sqrt(2/NDF)), warn up to 3.

    Example:
        >>> chi2_verdict(1.05, 400).verdict, chi2_verdict(2.0, 400).verdict, chi2_verdict(5.0, 400).verdict
        ('pass', 'warn', 'fail')
    """
    bound = 1.0 + 3.0 * math.sqrt(2.0 / max(ndf, 1))
    return VerdictRow("response_chi2_ndf", "response chi2/NDF", chi2_ndf, math.sqrt(2.0 / max(ndf, 1)), split,
                      _grade(chi2_ndf, bound, max(3.0, bound)), f"pass <= {bound:.3f} (1 + 3 sqrt(2/NDF)), warn <= 3")


def tail_verdict(chi2: Chi2Result) -> VerdictRow:
    """Generated showers beyond the reference's 0.5-99.5 percentile range of E_tot/E_inc, at the worst energy.

    Expected: 1 %, plus 2/(N_ref + 1) because the percentiles of N_ref showers are estimates (a new
    shower lies outside the range of N_ref others with probability 2/(N_ref + 1)); pass within 3
    binomial standard deviations of that, warn up to 5 % above it.

    Example:
        >>> import numpy as np
        >>> from caloforge.validation.metrics.chi2 import response_chi2
        >>> rng, e = np.random.default_rng(0), np.full(1000, 1e4)
        >>> ref = rng.normal(1.0, 0.02, 1000)
        >>> tail_verdict(response_chi2(e, ref, e, rng.normal(1.0, 0.02, 1000))).verdict
        'pass'
        >>> tail_verdict(response_chi2(e, ref, e, rng.normal(1.05, 0.02, 1000))).verdict
        'fail'
    """
    worst = chi2.worst_tail
    if worst is None:
        return VerdictRow("response_tails", "response tails (beyond the reference's 99 %)", math.nan, math.nan,
                          math.nan, "info", "no energy to compare")
    value = worst.generated_beyond_reference
    expected = min(0.01 + 2.0 / (worst.n_reference + 1), 1.0)  # one reference shower: every new one lies outside
    bound = expected + 3.0 * math.sqrt(expected * (1.0 - expected) / worst.n_generated)
    return VerdictRow("response_tails", f"response tails (generated beyond the reference's 99 %, worst at "
                      f"{format_energy(worst.energy)})", value,
                      math.sqrt(max(value * (1 - value), 1e-4) / worst.n_generated),
                      math.nan, _grade(value, bound, bound + 0.05),
                      f"pass <= {bound:.3f} (1 % + 2/(N_ref+1) + 3 binomial sigma), warn <= {bound + 0.05:.3f}")


def separation_verdict(value: float, split: float = float("nan"), what: str = "max") -> VerdictRow:
    """Separation power (the worst feature): pass <= max(0.01, 2 x split), warn <= max(0.1, 5 x split)."""
    s = _finite(split, 0.0)
    p, w = max(0.01, 2.0 * s), max(0.1, 5.0 * s)
    return VerdictRow(f"separation_power_{what}", f"separation power ({what} over features)", value, float("nan"),
                      split, _grade(value, p, w), f"pass <= {p:.4f}, warn <= {w:.4f}")


def distance_verdict(key: str, name: str, value: float, error: float, split: float, split_error: float) -> VerdictRow:
    """FPD / KPD (x10^3 units as given): pass if within 3 sigma of the reference split (or of 0), warn <= 5x that."""
    sigma = math.sqrt(_finite(error, 0.0) ** 2 + _finite(split_error, 0.0) ** 2)
    bound = max(_finite(split, 0.0), 0.0) + 3.0 * sigma
    bound = max(bound, 3.0 * _finite(error, 0.0), 1e-12)
    return VerdictRow(key, name, value, error, split, _grade(value, bound, 5.0 * bound),
                      f"pass <= {bound:.4g} (split + 3 sigma), warn <= {5 * bound:.4g}")


def auc_verdict(key: str, name: str, auc: float, error: float, split: float = float("nan")) -> VerdictRow:
    """Classifier AUC: pass <= max(0.6, split + 0.05), warn <= max(0.8, split + 0.2).

    An AUC below 0.5 - 3 sigma is not a good model but a broken test (labels swapped, or a
    calibration that failed): it is flagged ``warn`` with that explanation, never ``pass``.

    Example:
        >>> auc_verdict("auc_low", "AUC", 0.51, 0.01).verdict, auc_verdict("auc_low", "AUC", 0.9, 0.01).verdict
        ('pass', 'fail')
        >>> row = auc_verdict("auc_low", "AUC", 0.3, 0.01)
        >>> row.verdict, row.rule.split(":")[0]
        ('warn', 'AUC below 0.5 - 3 sigma')
    """
    s = _finite(split, 0.5)
    p, w = max(0.6, s + 0.05), max(0.8, s + 0.2)
    sigma = error if math.isfinite(error) and error > 0 else 0.01
    if math.isfinite(auc) and auc < 0.5 - 3.0 * sigma:
        return VerdictRow(key, name, auc, error, split, "warn",
                          f"AUC below 0.5 - 3 sigma: the labels or the calibration are wrong (pass <= {p:.3f})")
    return VerdictRow(key, name, auc, error, split, _grade(auc, p, w), f"pass <= {p:.3f}, warn <= {w:.3f}")


def correlation_verdict(value: float, split: float = float("nan")) -> VerdictRow:
    """Largest absolute difference of the layer-energy correlation matrices."""
    s = _finite(split, 0.0)
    p, w = max(0.05, 2.0 * s), max(0.15, 5.0 * s)
    return VerdictRow("layer_correlation_max_diff", "layer correlation max |dC|", value, float("nan"), split,
                      _grade(value, p, w), f"pass <= {p:.3f}, warn <= {w:.3f}")


RING_BOUNDS = (1.25, 2.0)
"""Pass and warn bounds of the worst ring's factor off 1 (ratio or its inverse), after three standard errors."""


def ring_verdict(rings: RingComparison) -> VerdictRow:
    """The ring whose generated / reference mean is furthest from 1 beyond its noise (:mod:`.rings`)."""
    worst, (p, w) = rings.worst, RING_BOUNDS
    rule = (f"ratio of every ring with >= 0.1 % of the energy, less 3 sigma: pass within {1 / p:g}-{p:g}, "
            f"warn within {1 / w:g}-{w:g}")
    if worst < 0:
        return VerdictRow("ring_ratio_worst", "mean energy per ring", math.nan, math.nan, math.nan, "info",
                          "no ring carries enough energy to be graded")
    ratio = float(rings.ratio[worst])
    relative = math.hypot(float(rings.reference_error[worst] / rings.reference[worst]),
                          float(rings.generated_error[worst] / rings.generated[worst]) if rings.generated[worst] else 0)
    return VerdictRow("ring_ratio_worst", f"mean energy per ring, gen/ref (worst: {rings.label(worst)})", ratio,
                      ratio * relative, math.nan, _grade(math.exp(float(rings.excess[worst])), p, w), rule)


def overall(rows: tuple[VerdictRow, ...] | list[VerdictRow]) -> Verdict:
    """fail if any row fails, else warn if any warns, else pass (info, not-computed and too-small rows ignored);
    "too small" when no row could be graded and at least one was too small.

    Example:
        >>> overall([auc_verdict("a", "a", 0.5, 0.0), auc_verdict("b", "b", 0.7, 0.0)])
        'warn'
    """
    verdicts = {r.verdict for r in rows}
    if "fail" in verdicts:
        return "fail"
    if "warn" in verdicts:
        return "warn"
    return "too small" if "pass" not in verdicts and "too small" in verdicts else "pass"


_BY_SIZE = ("separation_power_max", "layer_correlation_max_diff", "fpd_e3", "kpd_e3", "ring_ratio_worst")
_BY_ENERGY = ("response_chi2_ndf", "response_tails")


def judge_sizes(rows: tuple[VerdictRow, ...], chi2: Chi2Result, n_reference: int, n_generated: int,
                classifier_sizes: Mapping[str, int] | None = None,
                classifier_steps: Mapping[str, int] | None = None) -> tuple[VerdictRow, ...]:
    """The rows with every graded metric whose samples are too small for it turned into "too small".

    Args:
        rows: The verdict table (:func:`assemble`).
        chi2: The response chi2 (its showers per energy).
        n_reference: Reference showers (halved: the reference split).
        n_generated: Generated showers.
        classifier_sizes: Showers per sample of each classifier (``{"low": n}``), keys as in ``auc_<kind>``.
        classifier_steps: Optimiser steps of each classifier: a ``pass`` needs :data:`JUDGE_MIN_CLASSIFIER_STEPS`.

    Example:
        >>> import numpy as np
        >>> from caloforge.validation.metrics.chi2 import response_chi2
        >>> e, rng = np.full(400, 1e4), np.random.default_rng(0)
        >>> c = response_chi2(e, rng.normal(1, .02, 400), e, rng.normal(1, .02, 400))
        >>> rows = judge_sizes((separation_verdict(0.004, 0.002, "max"),), c, 400, 400)
        >>> rows[0].verdict, rows[0].rule.split(" (")[0]
        ('too small', 'too small to judge: needs min(N_gen, N_ref/2) >= 1000 showers but got 200')
    """
    n = min(n_reference // 2, n_generated)
    per_energy = min((min(e.n_reference, e.n_generated) for e in chi2.per_energy), default=0)
    out = []
    for row in rows:
        need, got, what = 0, 0, ""
        if row.key in _BY_SIZE:
            need, got, what = JUDGE_MIN_SHOWERS, n, f"min(N_gen, N_ref/2) >= {JUDGE_MIN_SHOWERS} showers"
        elif row.key in _BY_ENERGY:
            need, got, what = JUDGE_MIN_PER_ENERGY, per_energy, (f">= {JUDGE_MIN_PER_ENERGY} showers per incident "
                                                                 "energy in each sample")
        elif row.key.startswith("auc_") and classifier_sizes and row.key[4:] in classifier_sizes:
            need, got, what = (JUDGE_MIN_SHOWERS, classifier_sizes[row.key[4:]],
                               f">= {JUDGE_MIN_SHOWERS} classifier showers per sample")
            steps = (classifier_steps or {}).get(row.key[4:], JUDGE_MIN_CLASSIFIER_STEPS)
            if got >= need and row.verdict == "pass" and steps < JUDGE_MIN_CLASSIFIER_STEPS:
                need, got, what = (JUDGE_MIN_CLASSIFIER_STEPS, steps,
                                   f"a classifier trained >= {JUDGE_MIN_CLASSIFIER_STEPS} optimiser steps to pass")
        if row.graded and got < need:
            row = dataclasses.replace(row, verdict="too small", rule=f"too small to judge: needs {what} but got "
                                      f"{got} (if it were enough: {row.verdict}, {row.rule})")
        out.append(row)
    return tuple(out)


def too_small_message(rows: tuple[VerdictRow, ...]) -> str | None:
    """The one warning for every metric that was too small to judge (None if none was)."""
    small = [r for r in rows if r.verdict == "too small"]
    if not small:
        return None
    needs = sorted({r.rule.split(" (if it were")[0].removeprefix("too small to judge: ") for r in small})
    return (f"samples too small to judge {len(small)} metric(s) ({', '.join(r.metric for r in small)}): "
            f"{'; '.join(needs)}. Their values are shown, without pass/fail; generate and compare more showers")


def assemble(
    chi2: Chi2Result,
    chi2_split: Chi2Result,
    separations: Mapping[str, float],
    separations_split: Mapping[str, float],
    distances: Mapping[str, tuple[DistanceResult, DistanceResult]],
    classifiers: Mapping[str, tuple[ClassifierResult, ClassifierResult | None]],
    correlation: tuple[float, float],
    prdc: tuple[PRDCResult, PRDCResult] | None = None,
    rings: RingComparison | None = None,
) -> tuple[VerdictRow, ...]:
    """The verdict table of an evaluation, in report order.

    Args:
        chi2: Response chi2 of reference vs generated; ``chi2_split``: of the reference halves.
        separations: Separation power per feature histogram; ``separations_split``: of the halves.
        distances: ``{"fpd": (result, split result), "kpd": ...}``, raw units (shown x10^3).
        classifiers: ``{"low": (result, split result or None), "high": ...}``.
        correlation: Largest layer-correlation difference, generated and reference split.
        prdc: Precision/recall/density/coverage and their reference split, shown for information.
        rings: The mean energy per ring of both samples.
    """
    rows = [chi2_verdict(chi2.chi2_ndf, chi2.ndf, chi2_split.chi2_ndf), tail_verdict(chi2)]
    finite = {k: s for k, s in separations.items() if math.isfinite(s)}
    worst = max(finite, key=finite.__getitem__) if finite else "none"
    split_finite = [s for s in separations_split.values() if math.isfinite(s)]
    split_max = max(split_finite, default=math.nan)
    row = separation_verdict(finite.get(worst, math.nan), split_max)
    rows.append(dataclasses.replace(row, metric=f"separation power (max: {worst})"))
    mean = sum(finite.values()) / len(finite) if finite else math.nan
    mean_split = sum(split_finite) / len(split_finite) if split_finite else math.nan
    rows.append(dataclasses.replace(separation_verdict(mean, mean_split, "mean"), verdict="info"))
    for key, (res, split) in distances.items():
        name = f"{key.upper()} x10^3"
        if res.missing is not None:
            rows.append(VerdictRow(f"{key}_e3", name, math.nan, math.nan, math.nan, "not computed", res.missing))
            continue
        row = distance_verdict(f"{key}_e3", name, res.value * 1e3, res.error * 1e3, split.value * 1e3,
                               split.error * 1e3)
        if split.missing is not None:  # nothing to grade against: FPD of one distribution is not 0 (bias c/N)
            row = dataclasses.replace(row, verdict="info", rule=f"not graded: {split.missing}")
        rows.append(row)
    for kind, (clf, split_clf) in classifiers.items():
        row = auc_verdict(f"auc_{kind}", f"classifier AUC ({kind}-level)", clf.auc, clf.auc_error,
                          split_clf.auc if split_clf is not None else math.nan)
        rows.append(row if split_clf is not None else
                    dataclasses.replace(row, rule=f"{row.rule} (no reference split, --skip split: against 0.5)"))
        rows.append(VerdictRow(f"jsd_{kind}", f"classifier JSD ({kind}-level)", clf.jsd, clf.jsd_error,
                               split_clf.jsd if split_clf is not None else math.nan, "info", "information only"))
    rows.append(correlation_verdict(*correlation))
    if rings is not None:
        rows.append(ring_verdict(rings))
    if prdc is not None:
        for name in ("precision", "recall", "density", "coverage"):
            rows.append(VerdictRow(name, f"{name} (k=5, voxels)", getattr(prdc[0], name), math.nan,
                                   getattr(prdc[1], name), "info", "information only"))
    return tuple(rows)
