"""What a campaign produced: every trial's row (``trials.json``) and the model set of the best trial per slice.

:func:`collect_trials` turns Ray Tune's results into caloforge rows (slice, family, status, the
hyperparameters, the metrics, whether the trial evaluated the defaults); :func:`build_model_set`
copies the bundle of each slice's best complete trial (over all families) into
``OUT/model-set/<slice>`` and writes ``model_set.json`` with each bundle's metrics and the search's
improvement over the defaults.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from caloforge.campaign.model_set import write_model_set
from caloforge.campaign.search import OBJECTIVE, SELECTION, decode_params
from caloforge.campaign.slices import slice_energies
from caloforge.campaign.spec import CampaignSpec, family_config, same_value
from caloforge.campaign.trial import SliceFiles, trial_dir
from caloforge.data.documents import read_json
from caloforge.data.outputs import atomic_dir, atomic_path, strict_json
from caloforge.errors import CheckpointError

__all__ = ["TRIALS", "build_model_set", "collect_trials", "improvement", "write_trials"]

TRIALS = "trials.json"
_METRICS = (OBJECTIVE, "chi2_ndf", "reference_chi2_ndf", "auc", "auc_error", SELECTION, "iterations", "elapsed_s")


def _is_default(spec: CampaignSpec, slice_label: str, family: str, params: Mapping[str, Any]) -> bool:
    default = family_config(spec, family, spec.slice(slice_label).particle)
    return all(same_value(value, getattr(default, key)) for key, value in params.items())


def collect_trials(spec: CampaignSpec, out_dir: Path, results: Sequence[Any], finished: bool) -> list[dict[str, Any]]:
    """One row per trial from Tune's results (``ResultGrid`` items): status, parameters, metrics.

    Status: ``complete`` (trained and evaluated), ``stopped`` (by early stopping), ``error``, or
    ``unfinished`` (the campaign was interrupted before it ended).
    """
    rows = []
    for result in results:
        config = result.config or {}
        if "slice" not in config:
            continue
        trial_id = Path(result.path).name
        metrics = result.metrics or {}
        params = decode_params(spec.families[config["family"]].search, config.get("params", {}))
        status = ("error" if result.error is not None else "complete" if OBJECTIVE in metrics
                  else "stopped" if finished else "unfinished")
        row = {"trial": trial_id, "slice": config["slice"], "family": config["family"], "status": status,
               "params": params, "default": _is_default(spec, config["slice"], config["family"], params),
               **{k: metrics[k] for k in _METRICS if k in metrics and metrics[k] is not None},
               "dir": str(trial_dir(out_dir, config["slice"], config["family"], trial_id).relative_to(out_dir))}
        if result.error is not None:
            row["error"] = " ".join(str(result.error).split())[-400:]
        rows.append(row)
    return sorted(rows, key=lambda r: (r["slice"], r["family"], r["trial"]))


def improvement(rows: Sequence[Mapping[str, Any]], slice_label: str, family: str) -> dict[str, float] | None:
    """The best objective of a (slice, family) against its default trial's, or None without both.

    Returns:
        ``{"default": ..., "best": ..., "relative": (default - best) / default}``.
    """
    done = [r for r in rows if r["slice"] == slice_label and r["family"] == family and r["status"] == "complete"
            and math.isfinite(r.get(OBJECTIVE, math.nan))]
    defaults = [r for r in done if r["default"]]
    if not done or not defaults:
        return None
    default, best = defaults[0][OBJECTIVE], min(r[OBJECTIVE] for r in done)
    return {"default": default, "best": best, "relative": (default - best) / default if default else math.nan}


def write_trials(out_dir: Path, spec: CampaignSpec, rows: Sequence[Mapping[str, Any]], finished: bool,
                 elapsed_s: float, machine: str) -> Path:
    """Write ``trials.json`` (atomically): every trial's row and how the campaign ran."""
    path = out_dir / TRIALS
    data = {"format": "caloforge-campaign-trials/1", "campaign": spec.name, "metric": spec.metric,
            "finished": finished, "elapsed_s": round(elapsed_s, 1), "machine": machine,
            "budget": spec.budget.to_dict(), "trials_per_group": spec.trials, "resources": spec.resources.to_dict(),
            "trials": list(rows)}
    with atomic_path(path, force=True) as tmp:
        tmp.write_text(strict_json(data, indent=2), encoding="utf-8")
    return path


def build_model_set(spec: CampaignSpec, out_dir: Path, rows: Sequence[Mapping[str, Any]],
                    files: Mapping[str, SliceFiles], finished: bool) -> Path | None:
    """Copy each slice's best complete trial's bundle into ``OUT/model-set`` and write the manifest.

    Returns:
        The manifest's path, or None when no slice has a complete trial yet.
    """
    directory = out_dir / "model-set"
    directory.mkdir(exist_ok=True)
    selected = []
    for s in spec.slices:
        done = [r for r in rows if r["slice"] == s.label and r["status"] == "complete"
                and math.isfinite(r.get(OBJECTIVE, math.nan))]
        if not done:
            continue
        best = min(done, key=lambda r: r[OBJECTIVE])
        source = out_dir / best["dir"] / "run" / "bundle"
        with atomic_dir(directory / s.label, force=True) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
        energies = slice_energies(files[s.label])
        record = read_json(out_dir / best["dir"] / "trial.json", "a trial record", CheckpointError)
        metrics = {k: best[k] for k in _METRICS if k in best}
        gain = improvement(rows, s.label, best["family"])
        if gain is not None:
            metrics.update(default_objective=gain["default"], improvement=gain["relative"])
        selected.append({"slice": s.label, "particle": s.particle, "eta": list(s.eta), "bundle": s.label,
                         "family": best["family"], "trial": best["trial"], "params": best["params"],
                         "energy": [float(energies.min()), float(energies.max())], "splits": list(spec.energy_split),
                         "metrics": metrics, "config": record.get("config", {})})
    if not selected:
        return None
    return write_model_set(directory, spec.name or "campaign", spec.metric, selected, complete=finished)
