"""The result of an evaluation: every number the validation computed, and its ``metrics.json`` form.

:class:`EvaluationResult` is frozen: :func:`caloforge.validation.evaluate.evaluate` returns a new
result (``dataclasses.replace``) when it adds the training history, the inputs' description or
the time spent drawing the report, so the object a caller holds and the metrics.json written
from it always agree.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from caloforge.data.geometry import Geometry
from caloforge.data.showers import format_energy
from caloforge.validation.definitions import metric_definitions
from caloforge.validation.metrics import verdict as v
from caloforge.validation.metrics.chi2 import Chi2Result
from caloforge.validation.metrics.classifier import ClassifierResult
from caloforge.validation.metrics.distances import DistanceResult
from caloforge.validation.metrics.prdc import PRDCResult
from caloforge.validation.metrics.response import ResponseResult
from caloforge.validation.metrics.rings import RingComparison
from caloforge.validation.metrics.separation import FeatureHistogram
from caloforge.validation.missing import explain_missing

__all__ = ["SCHEMA", "EnergyRangeMeans", "EvaluationResult", "max_abs_difference"]

SCHEMA = "caloforge.evaluate/2"


@dataclass(frozen=True, eq=False)
class EnergyRangeMeans:
    """Mean showers of the reference and generated samples in one incident-energy range (MeV).

    Attributes:
        energy_low: Lower edge of the range, MeV.
        energy_high: Upper edge, MeV.
        n_reference: Reference showers in the range.
        n_generated: Generated showers in the range.
        mean_reference: Mean voxel energies divided by E_inc (per shower), shape (V,).
        mean_generated: The same for the generated showers.
    """

    energy_low: float
    energy_high: float
    n_reference: int
    n_generated: int
    mean_reference: NDArray[np.float64]
    mean_generated: NDArray[np.float64]

    @property
    def label(self) -> str:
        """``1.02 GeV``, or ``1.02 - 8.19 GeV`` for a range of energies."""
        lo, hi = format_energy(self.energy_low), format_energy(self.energy_high)
        return lo if lo == hi else f"{lo} - {hi}"


def _skipped(row: v.VerdictRow) -> dict[str, str]:
    """The reason of a row that was not computed, beside each of its null numbers (metrics.json)."""
    if row.verdict != "not computed":
        return {}
    return {f"{k}_missing": row.rule for k in ("value", "error", "reference_split")}


def max_abs_difference(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """The largest absolute difference of two arrays (e.g. correlation matrices)."""
    return float(np.abs(a - b).max())


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    """Everything the validation computed; :meth:`to_dict` is the content of metrics.json.

    Histogram and classifier fields hold reference-vs-generated results; ``*_split``
    fields the same metric between two halves of the reference.
    """

    mode: str
    seed: int
    geometry: Geometry
    threshold: float
    n_reference: int
    n_generated: int
    chi2: Chi2Result
    chi2_split: Chi2Result
    histograms: tuple[FeatureHistogram, ...]
    energy_histograms: tuple[FeatureHistogram, ...]
    separation_split: dict[str, float]
    response_reference: ResponseResult
    response_generated: ResponseResult
    correlation_reference: NDArray[np.float64]
    correlation_generated: NDArray[np.float64]
    correlation_split_max: float
    mean_reference: NDArray[np.float64]
    mean_generated: NDArray[np.float64]
    fpd: DistanceResult
    kpd: DistanceResult
    fpd_split: DistanceResult
    kpd_split: DistanceResult
    prdc: PRDCResult | None
    prdc_split: PRDCResult | None
    classifiers: dict[str, ClassifierResult]
    classifiers_split: dict[str, ClassifierResult]
    verdicts: tuple[v.VerdictRow, ...]
    warnings: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    training_history: tuple[dict[str, float], ...] = ()
    inputs: Mapping[str, Any] = field(default_factory=dict)
    energy_means: tuple[EnergyRangeMeans, ...] = ()
    rings: RingComparison | None = None

    @property
    def training(self) -> dict[str, float] | None:
        """Validation chi2/NDF of the model before training (iteration 0) and at its selected checkpoint, if known.

        The selected checkpoint is the trained one of lowest ``score`` where the rows have one (selection
        by shapes, issue 21), else of lowest chi2/NDF.
        """
        rows = [r for r in self.training_history if math.isfinite(float(r.get("chi2_ndf", math.nan)))]
        if not rows:
            return None
        key = "score" if all("score" in r for r in rows) else "chi2_ndf"
        trained = [r for r in rows if int(r["iteration"]) > 0] if key == "score" else rows
        best = min(trained or rows, key=lambda r: float(r[key]))
        first = rows[0]
        return {
            "untrained_chi2_ndf": float(first["chi2_ndf"]) if int(first["iteration"]) == 0 else math.nan,
            "best_chi2_ndf": float(best["chi2_ndf"]),
            "best_iteration": int(best["iteration"]),
            "iterations": int(self.training_history[-1]["iteration"]),
            "elapsed_s": float(self.training_history[-1].get("elapsed_s", math.nan)),
        }

    @property
    def verdict(self) -> v.Verdict:
        """Overall verdict: the worst of the rows."""
        return v.overall(self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary with stable keys (see docs/validation.md).

        A value that could not be computed is ``None`` with the reason beside it, in ``<key>_missing``
        (:func:`~caloforge.validation.missing.explain_missing`).
        """
        return explain_missing(self._raw_dict())  # type: ignore[no-any-return]

    def _raw_dict(self) -> dict[str, Any]:
        def dist(d: DistanceResult) -> dict[str, Any]:
            out = {"value_e3": d.value * 1e3, "error_e3": d.error * 1e3, "definition": d.definition}
            if d.missing is not None:  # the specific reason (explain_missing would give a generic one)
                out |= {"value_e3_missing": d.missing, "error_e3_missing": d.missing}
            return out

        return {
            "schema": "caloforge.validation.evaluate/2",
            "mode": self.mode,
            "seed": self.seed,
            "geometry": {"name": self.geometry.name, "hash": self.geometry.hash},
            "readout_threshold_mev": self.threshold,
            "n_reference": self.n_reference,
            "n_generated": self.n_generated,
            "verdict": self.verdict,
            "verdicts": [dataclasses.asdict(r) | _skipped(r) for r in self.verdicts],
            "response_chi2": {
                "chi2_ndf": self.chi2.chi2_ndf, "chi2": self.chi2.chi2, "ndf": self.chi2.ndf,
                "reference_split_chi2_ndf": self.chi2_split.chi2_ndf, "definition": self.chi2.definition,
                "max_outside": self.chi2.max_outside,
                "per_energy": [e.to_dict() for e in self.chi2.per_energy],
            },
            "separation_power": {h.name: h.separation for h in self.histograms},
            "separation_power_per_energy": {h.name: h.separation for h in self.energy_histograms},
            "separation_power_reference_split": dict(self.separation_split),
            "histogram_binnings": {h.name: h.definition for h in (*self.histograms, *self.energy_histograms)},
            "definitions": metric_definitions(self.geometry, self.threshold, self.classifiers, self.fpd, self.kpd),
            "fpd": dist(self.fpd) | {"reference_split": dist(self.fpd_split)},
            "kpd": dist(self.kpd) | {"reference_split": dist(self.kpd_split)},
            "prdc": None if self.prdc is None else dataclasses.asdict(self.prdc)
            | {"reference_split": dataclasses.asdict(self.prdc_split) if self.prdc_split else None},
            "classifiers": {
                name: {"auc": r.auc, "auc_error": r.auc_error, "jsd": r.jsd, "jsd_error": r.jsd_error,
                       "n_per_sample": r.n_per_sample, "repeats": len(r.runs),
                       "best_epochs": [run.best_epoch for run in r.runs],
                       "epochs_run": [run.epochs_run for run in r.runs],
                       "stopped_by": [run.stopped_by for run in r.runs],
                       "budget_exhausted": r.budget_exhausted, "precision": r.runs[0].precision,
                       "budget_s": r.config.max_seconds, "max_epochs": r.config.max_epochs,
                       "patience": r.config.patience, "summary": r.summary(),
                       "reference_split": {"auc": self.classifiers_split[name].auc,
                                           "jsd": self.classifiers_split[name].jsd}
                       if name in self.classifiers_split else None}
                for name, r in self.classifiers.items()
            },
            "response": {"reference": [dataclasses.asdict(e) for e in self.response_reference.per_energy],
                         "generated": [dataclasses.asdict(e) for e in self.response_generated.per_energy]},
            "layer_correlation": {
                "reference": self.correlation_reference.tolist(),
                                  "generated": self.correlation_generated.tolist(),
                                  "max_abs_difference": max_abs_difference(self.correlation_reference,
                                                                 self.correlation_generated),
                                  "reference_split_max_abs_difference": self.correlation_split_max},
            "rings": None if self.rings is None else self.rings.to_dict(),
            "training": self.training,
            "warnings": list(self.warnings),
            "timings_s": dict(self.timings),
            "inputs": dict(self.inputs),
        }
