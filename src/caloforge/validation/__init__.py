"""Stage 5, validation: the CaloChallenge features and metrics, verdicts, and the report.

* :mod:`~caloforge.validation.features`: high-level features and the readout threshold.
* :mod:`~caloforge.validation.metrics`: one metric per module (chi2, separation power and the
  official binnings, classifier test, FPD/KPD, PRDC, response) and the verdict rules.
* :mod:`~caloforge.validation.evaluate`: :func:`compute_evaluation` (numbers only) and
  :func:`evaluate` (numbers, then the report); :mod:`~caloforge.validation.result`: the result type;
  :mod:`~caloforge.validation.definitions`: what each metric computes (metrics.json ``definitions``).
* :mod:`~caloforge.validation.plots` (figures from arrays) and :mod:`~caloforge.validation.report`
  (writes report.html, metrics.json and plots/).

Validation depends only on :mod:`caloforge.data` and :mod:`caloforge.runtime`, never on models or training.
"""

from __future__ import annotations

from caloforge.validation.evaluate import CLASSIFIERS, compute_evaluation, evaluate
from caloforge.validation.result import EvaluationResult

__all__ = ["CLASSIFIERS", "EvaluationResult", "compute_evaluation", "evaluate"]
