"""Values that could not be computed: ``null`` in metrics.json, always with the reason beside it.

A metric that is NaN or infinite is written as ``null`` (JSON has no such numbers) and a sibling key
``<name>_missing`` says why, in words; :func:`format_value` prints the same value in the terminal
and in the HTML report ("n/a" where the JSON has ``null``), so the three never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["FALLBACK", "REASONS", "explain_missing", "format_value"]

FALLBACK = "not a finite number"
"""The reason given when no specific one is known (tests check that evaluations never need it)."""

REASONS: Mapping[str, str] = {
    "chi2_ndf": "no degree of freedom: all showers of both samples in one bin",
    "reference_split_chi2_ndf": "no degree of freedom in the reference split: all its showers in one bin",
    "error": "this metric has no error estimate",
    "reference_split": "not computed on the reference split for this metric",
    "auc_error": "one classifier training: no spread to estimate an error from (use --classifier-repeats > 1)",
    "jsd_error": "one classifier training: no spread to estimate an error from (use --classifier-repeats > 1)",
    "untrained_chi2_ndf": "the training history does not start at iteration 0",
    "elapsed_s": "the training history does not record the elapsed time",
    "value": "the samples are too small to compute this metric",
    "value_e3": "the samples are too small to compute this distance",
    "error_e3": "the samples are too small to estimate this distance's error",
    "separation": "no entry in the shared bins",
    "ratio": "the reference's mean energy in this ring is zero",
    "std": "fewer than two showers at this energy",
    "std_error": "fewer than two showers at this energy",
    "mean_error": "fewer than two showers at this energy",
    "resolution": "fewer than two showers at this energy",
    "resolution_error": "fewer than two showers at this energy",
    "prdc": "not computed: fast mode, or --no-prdc (full mode computes it)",
    "training": "no training history: the generated file was evaluated without --run",
}
"""Why a value of a given key can be missing."""


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def explain_missing(value: Any, reasons: Mapping[str, str] = REASONS, key: str = "") -> Any:
    """A copy of ``value`` (dicts, lists, numbers) with every None, NaN or infinity explained.

    Each dict entry ``k`` whose value is None or not finite becomes ``None`` and gains ``k_missing``, the reason
    from ``reasons`` (by key) or :data:`FALLBACK`; inside lists the reason of the list's key is used
    once, as ``<list key>_missing``. Dict keys are kept in order.

    Example:
        >>> explain_missing({"chi2_ndf": float("nan"), "n": 3, "auc_error": 0.01})
        {'chi2_ndf': None, 'chi2_ndf_missing': 'no degree of freedom: all showers of both samples in one bin', \
'n': 3, 'auc_error': 0.01}
    """
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            k = str(k)
            if _missing(v):
                out[k] = None
                out[f"{k}_missing"] = reasons.get(k, FALLBACK)
                continue
            out[k] = explain_missing(v, reasons, k)
            if isinstance(v, list | tuple) and any(_missing(x) for x in v):
                out[f"{k}_missing"] = reasons.get(k, FALLBACK)
        return out
    if isinstance(value, list | tuple):
        return [None if _missing(x) else explain_missing(x, reasons, key) for x in value]
    return value


def format_value(value: float | None, digits: int = 4) -> str:
    """A metric as the terminal and the report show it: ``n/a`` where metrics.json has ``null``.

    Example:
        >>> format_value(1.23456), format_value(float("inf")), format_value(None)
        ('1.235', 'n/a', 'n/a')
    """
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}g}"
