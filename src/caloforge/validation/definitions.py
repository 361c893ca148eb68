"""What each metric of an evaluation computes, in words and settings: the ``definitions`` of metrics.json.

A reader of metrics.json sees, next to the numbers, which features and settings produced them: the
FPD/KPD feature columns and estimator settings, the classifier's network, optimiser, split,
calibration and inputs, the separation-power formula, PRDC's feature space, and the response,
resolution and layer-correlation definitions. Built by :func:`metric_definitions` from the
geometry, the readout threshold and the results themselves (so the settings are those used).

Example:
    >>> from caloforge.data.geometry import Geometry
    >>> d = metric_definitions(Geometry.preset("ds1-photons"), 1.0)
    >>> len(d["fpd"]["feature_columns"]), d["classifier"]["high"]["inputs"][:2]
    (30, ['log10(E_inc)', 'log10(E_layer_0 + 1e-8)'])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from caloforge.data.geometry import Geometry
from caloforge.validation.distance_stage import FPD_DRAWS, FPD_MIN_SAMPLES, KPD_BATCH_SIZE, KPD_BATCHES
from caloforge.validation.features import high_level_columns
from caloforge.validation.metrics.classifier import CALIBRATION_BOUNDS, ClassifierConfig, ClassifierResult
from caloforge.validation.metrics.distances import DistanceResult

__all__ = ["OFFICIAL_CODE", "classifier_definition", "metric_definitions"]

OFFICIAL_CODE = {
    "repository": "https://github.com/CaloChallenge/homepage",
    "commit": "9b41df72a03aeecb48bfbaa946f9792f255e0ba7",
    "date": "2025-08-07",
    "files": ["code/evaluate.py", "code/HighLevelFeatures.py", "code/evaluate_plotting_helper.py"],
}
"""The head of the official CaloChallenge evaluation that caloforge follows (docs/validation.md)."""


def _low_level_columns(geometry: Geometry) -> list[str]:
    return ["log10(E_inc)", f"voxel_0..{geometry.n_voxels - 1} / E_inc"]


def classifier_definition(config: ClassifierConfig, kind: str, geometry: Geometry, threshold: float
                          ) -> dict[str, Any]:
    """How the ``kind`` (``low`` or ``high``) classifier test is defined with ``config``, JSON-ready."""
    inputs = list(high_level_columns(geometry)) if kind == "high" else _low_level_columns(geometry)
    widths = " -> ".join(str(w) for w in ("input", *config.hidden, 1))
    return {
        "inputs": inputs,
        "n_inputs": len(high_level_columns(geometry)) if kind == "high" else geometry.n_voxels + 1,
        "input_preprocessing": f"voxels below the readout threshold {threshold:g} MeV set to 0; no further "
                               "normalisation (the official prepare_*_data_for_classifier columns)",
        "architecture": f"fully connected {widths} logit, LeakyReLU (slope 0.01) after each hidden layer, "
                        f"dropout {config.dropout:g}, PyTorch's default initialisation",
        "loss": "binary cross-entropy on the logit (reference label 0, generated label 1)",
        "optimizer": "Adam (betas 0.9, 0.999, eps 1e-8, no weight decay)",
        "learning_rate": config.lr,
        "batch_size": config.batch_size,
        "max_epochs": config.max_epochs,
        "patience": "none: no early stopping" if config.patience is None else config.patience,
        "max_showers_per_sample": "all" if config.max_showers is None else config.max_showers,
        "split": "each sample cut to the same size n, then split 60/20/20 into train/test/validation (seeded)",
        "model_selection": "the epoch with the best test-split accuracy (sigmoid > 0.5)",
        "calibration": "isotonic regression of the test-split sigmoid outputs, clipped to "
                       f"[{CALIBRATION_BOUNDS[0]:g}, 1 - {CALIBRATION_BOUNDS[0]:g}], applied to the validation split",
        "auc": "ROC AUC of the calibrated validation-split outputs",
        "jsd": "(log 2 - BCE) / log 2 of the calibrated validation-split outputs",
        "repeats": config.repeats,
        "precision": config.precision,
        "budget_s": "none" if config.max_seconds is None else config.max_seconds,
    }


def _official(result: DistanceResult) -> dict[str, Any]:
    """Whether the distance used the official evaluate.py's settings, and which differ (numbers not comparable)."""
    official = {"fpd": {"min_samples": FPD_MIN_SAMPLES, "max_samples": 50_000, "n_points": 10, "n_draws": FPD_DRAWS},
                "kpd": {"batch_size": KPD_BATCH_SIZE, "n_batches": KPD_BATCHES}}.get(result.metric, {})
    used = dict(result.settings)
    differ = {k: {"used": used.get(k), "official": v} for k, v in official.items() if used.get(k) != v}
    return {"official_settings": not differ, **({"differs_from_official": differ} if differ else {})}


def _distance(result: DistanceResult | None, columns: list[str]) -> dict[str, Any]:
    settings = {} if result is None else result.definition
    if result is not None and result.missing is None:
        settings |= _official(result)
    return {"feature_columns": columns, "n_features": len(columns),
            "normalisation": "each column divided by the reference's max |x| (JetNet's normalise=True)", **settings}


def metric_definitions(geometry: Geometry, threshold: float,
                       classifiers: Mapping[str, ClassifierResult] | None = None,
                       fpd: DistanceResult | None = None, kpd: DistanceResult | None = None,
                       ) -> dict[str, Any]:
    """The definitions block of metrics.json: what each metric computes and with which settings.

    Args:
        geometry: The voxel geometry (names the feature columns).
        threshold: The readout threshold applied to both samples, MeV.
        classifiers: The classifier results by kind (their configs are the settings used); kinds not run
            are described with the recipe's settings (:class:`ClassifierConfig`) and ``"run": false``.
        fpd: The FPD result (its estimator settings), if computed.
        kpd: The KPD result, if computed.
    """
    columns = list(high_level_columns(geometry))
    done = dict(classifiers or {})
    classifier = {}
    for kind in ("low", "high"):
        result = done.get(kind)
        config = result.config if result is not None else ClassifierConfig()
        classifier[kind] = {"run": result is not None, **classifier_definition(config, kind, geometry, threshold)}
    return {
        "official_code": OFFICIAL_CODE,
        "readout_threshold": f"voxels below {threshold:g} MeV set to 0 in both samples before every metric "
                             "(the official min_energy)",
        "fpd": _distance(fpd, columns) | {
            "formula": "Frechet distance |mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2)) of subsets, "
                       "extrapolated in 1/N to N -> infinity (JetNet fpd)"},
        "kpd": _distance(kpd, columns) | {
            "formula": "unbiased MMD^2 with the kernel (x.y / d + 1)^4, median over batches (JetNet kpd)"},
        "classifier": classifier,
        "separation_power": {
            "formula": "S = 1/2 sum_i (p_i - q_i)^2 / (p_i + q_i), p and q the histograms normalised to unit sum "
                       "over their bins (eq. 15 of arXiv:2009.03796; the official _separation_power)",
            "range": "0 (identical) to 1 (disjoint)",
            "binnings": "per histogram in histogram_binnings",
        },
        "prdc": {
            "feature_space": f"log10(voxel energy / MeV) of all {geometry.n_voxels} voxels, empty voxels set to "
                             "0.1 MeV first (the official evaluate.py's prdc mode)",
            "k": 5,
            "distance": "Euclidean",
        },
        "response": {
            "definition": "per incident energy (each distinct energy, or 10 log-spaced bins of a continuous "
                          "spectrum): response <x>, x = E_tot / E_inc, error std(x) / sqrt(n)",
        },
        "resolution": {
            "definition": "per incident energy: std(x) / <x>, error resolution / sqrt(2 (n - 1))",
        },
        "layer_correlation": {
            "definition": "Pearson correlation matrix of the per-layer energies over all showers (constant "
                          "layers: 0 off the diagonal); compared by the largest absolute difference of the "
                          "reference and generated matrices",
        },
    }
