"""Validation metrics: pure functions returning named result types."""

from __future__ import annotations

from caloforge.validation.metrics.binnings import Binning, response_edges_per_energy
from caloforge.validation.metrics.chi2 import Chi2Result, EnergyChi2, chi2_two_sample, response_chi2
from caloforge.validation.metrics.classifier import ClassifierConfig, ClassifierResult, ClassifierRun, classifier_test
from caloforge.validation.metrics.distances import DistanceResult, fpd, fpd_debiased, frechet_distance, kpd
from caloforge.validation.metrics.mmd import mmd_poly_unbiased
from caloforge.validation.metrics.prdc import PRDCResult, prdc, prdc_inputs
from caloforge.validation.metrics.response import EnergyResponse, ResponseResult, layer_correlation, response_per_energy
from caloforge.validation.metrics.rings import RingComparison, RingSums, compare_rings
from caloforge.validation.metrics.separation import (
    FeatureHistogram,
    feature_histograms,
    separation_power,
    voxel_histogram,
)

__all__ = [
    "Binning",
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
    "RingComparison",
    "RingSums",
    "chi2_two_sample",
    "classifier_test",
    "compare_rings",
    "feature_histograms",
    "fpd",
    "fpd_debiased",
    "frechet_distance",
    "kpd",
    "layer_correlation",
    "mmd_poly_unbiased",
    "prdc",
    "prdc_inputs",
    "response_chi2",
    "response_edges_per_energy",
    "response_per_energy",
    "separation_power",
    "voxel_histogram",
]
