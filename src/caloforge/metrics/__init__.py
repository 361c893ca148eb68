"""Validation metrics: pure functions returning named result types."""

from __future__ import annotations

from caloforge.metrics.chi2 import Chi2Result, EnergyChi2, chi2_two_sample, response_chi2
from caloforge.metrics.classifier import ClassifierConfig, ClassifierResult, ClassifierRun, classifier_test
from caloforge.metrics.distances import DistanceResult, fpd, frechet_distance, kpd, mmd_poly_unbiased
from caloforge.metrics.prdc import PRDCResult, prdc, prdc_inputs
from caloforge.metrics.response import EnergyResponse, ResponseResult, layer_correlation, response_per_energy
from caloforge.metrics.separation import FeatureHistogram, feature_histograms, separation_power, voxel_histogram

__all__ = [
    "Chi2Result",
    "ClassifierConfig",
    "ClassifierResult",
    "ClassifierRun",
    "DistanceResult",
    "EnergyChi2",
    "EnergyResponse",
    "FeatureHistogram",
    "PRDCResult",
    "ResponseResult",
    "chi2_two_sample",
    "classifier_test",
    "feature_histograms",
    "fpd",
    "frechet_distance",
    "kpd",
    "layer_correlation",
    "mmd_poly_unbiased",
    "prdc",
    "prdc_inputs",
    "response_chi2",
    "response_per_energy",
    "separation_power",
    "voxel_histogram",
]
