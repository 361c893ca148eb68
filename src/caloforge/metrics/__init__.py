"""Validation metrics: pure functions returning named result types."""

from __future__ import annotations

from caloforge.metrics.chi2 import Chi2Result, EnergyChi2, chi2_two_sample, response_chi2

__all__ = ["Chi2Result", "EnergyChi2", "chi2_two_sample", "response_chi2"]
