"""The campaign report: a leaderboard of every trial and heat maps of the chosen models per slice.

:func:`write_report` reads ``trials.json`` and ``model-set/model_set.json`` of a campaign directory
and writes ``report/campaign.md`` (the tables) and ``report/campaign.html`` (the validation report's
style): the chosen model of each slice with its metrics and the search's gain over the defaults,
heat maps of those metrics over particle and |eta|, and every trial ranked within its slice.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from caloforge.campaign.model_set import MANIFEST
from caloforge.campaign.results import TRIALS, improvement
from caloforge.data.documents import read_json
from caloforge.data.outputs import atomic_path
from caloforge.errors import CheckpointError
from caloforge.validation.plots import new_figure
from caloforge.validation.report import html_page, png_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["heat_map", "write_report"]

_TRIAL_COLUMNS = (("slice", "slice", "{}"), ("family", "family", "{}"), ("trial", "trial", "{}"),
                  ("status", "status", "{}"), ("objective", "objective", "{:.4g}"),
                  ("val. chi2/NDF", "chi2_ndf", "{:.4g}"), ("ref. chi2/NDF", "reference_chi2_ndf", "{:.4g}"),
                  ("AUC", "auc", "{:.3f}"), ("iterations", "iterations", "{}"), ("parameters", "params", "{}"))
_HEAT = (("objective", "objective"), ("reference chi2/NDF", "reference_chi2_ndf"), ("AUC", "auc"))


def _cell(row: Mapping[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if key == "params":
        text = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in (value or {}).items())
        return text + (" (defaults)" if row.get("default") else "")
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return fmt.format(value)


def _ranked(trials: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    def key(row: Mapping[str, Any]) -> tuple[str, int, float]:
        objective = row.get("objective")
        return row["slice"], 0 if row["status"] == "complete" else 1, objective if objective is not None else math.inf

    return sorted(trials, key=key)


def _chosen_rows(manifest: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    rows, seen = [], set()
    for entry in manifest.get("entries", []):
        if entry["slice"] in seen:
            continue
        seen.add(entry["slice"])
        m = entry.get("metrics", {})
        gain = improvement(trials, entry["slice"], entry["family"])
        rows.append([entry["slice"], entry["particle"], f"{entry['eta'][0]:g}-{entry['eta'][1]:g}", entry["family"],
                     _cell(m, "objective", "{:.4g}"), _cell(m, "reference_chi2_ndf", "{:.4g}"),
                     _cell(m, "auc", "{:.3f}"), "–" if gain is None else f"{gain['default']:.4g}",
                     "–" if gain is None else f"{100 * gain['relative']:.0f} %"])
    return rows


_CHOSEN = ("slice", "particle", "abs(eta)", "family", "objective", "ref. chi2/NDF", "AUC", "defaults' objective",
           "gain over defaults")


def heat_map(manifest: Mapping[str, Any], key: str, label: str, ax: Any = None) -> Figure | None:
    """A metric of the chosen models over particle (rows) and |eta| slice (columns), annotated with the family.

    Returns:
        The figure (that of ``ax`` when given), or None when no chosen model has the metric.
    """
    entries = {e["slice"]: e for e in manifest.get("entries", []) if e.get("metrics", {}).get(key) is not None}
    if not entries:
        return None
    etas = sorted({tuple(e["eta"]) for e in entries.values()})
    particles = sorted({e["particle"] for e in entries.values()})
    grid = np.full((len(particles), len(etas)), np.nan)
    for e in entries.values():
        grid[particles.index(e["particle"]), etas.index(tuple(e["eta"]))] = e["metrics"][key]
    fig = ax.figure if ax is not None else new_figure(1.6 + 1.4 * len(etas), 1.4 + 0.7 * len(particles),
                                                      "constrained")
    ax = ax if ax is not None else fig.subplots()
    image = ax.imshow(grid, cmap="viridis_r", aspect="auto")
    for e in entries.values():
        i, j = particles.index(e["particle"]), etas.index(tuple(e["eta"]))
        light = image.norm(e["metrics"][key]) < 0.5  # viridis_r: low values are yellow
        ax.text(j, i, f"{e['metrics'][key]:.3g}\n{e['family']}", ha="center", va="center", fontsize=9,
                color="black" if light else "white")
    ax.set_xticks(range(len(etas)), [f"{lo:g}-{hi:g}" for lo, hi in etas])
    ax.set_yticks(range(len(particles)), particles)
    ax.set_xlabel("|eta| slice")
    ax.set_title(f"chosen models: {label}")
    fig.colorbar(image, ax=ax, label=label)
    return fig


def _table_md(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(r) + " |" for r in rows]]


def _table_html(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _caption(data: Mapping[str, Any]) -> str:
    budget = data.get("budget", {})
    what = " and ".join(f"{v:g} {k}" for k, v in budget.items() if k in ("iterations", "minutes") and v is not None)
    state = "finished" if data.get("finished") else "not finished (resume it to complete)"
    return (f"Campaign '{data.get('campaign')}', metric {data.get('metric')} (lower is better), "
            f"{data.get('trials_per_group')} trials per slice and family, {what} per trial; {state}. "
            f"Machine: {data.get('machine')}; {float(data.get('elapsed_s', 0)) / 60:.1f} minutes.")


def write_report(out_dir: str | Path) -> Path:
    """Write ``report/campaign.md`` and ``report/campaign.html`` of the campaign in ``out_dir`` (replacing them).

    Returns:
        The HTML page.

    Raises:
        CheckpointError: without ``trials.json`` (the campaign has not run yet).
    """
    out = Path(out_dir)
    data = read_json(out / TRIALS, f"a campaign directory with {TRIALS}", CheckpointError)  # bounded, no NaN
    manifest_file = out / "model-set" / MANIFEST
    manifest = read_json(manifest_file, "a model-set manifest", CheckpointError) if manifest_file.is_file() else {}
    if not isinstance(data, dict) or not isinstance(data.get("trials"), list) or not isinstance(manifest, dict):
        msg = f"expected the trials of a campaign in {out / TRIALS} (and a manifest) but they have another form"
        raise CheckpointError(msg)
    trials = data["trials"]
    chosen = _chosen_rows(manifest, trials)
    ranked = [[_cell(t, key, fmt) for _, key, fmt in _TRIAL_COLUMNS] for t in _ranked(trials)]
    header = [name for name, _, _ in _TRIAL_COLUMNS]
    markdown = ["# Campaign report", "", "## Chosen model per slice", "", *_table_md(_CHOSEN, chosen), "",
                "## All trials", "", *_table_md(header, ranked), "", _caption(data), ""]
    parts = [f"<h1>Campaign {html.escape(str(data.get('campaign')))}</h1>", "<h2>Chosen model per slice</h2>",
             _table_html(_CHOSEN, chosen)]
    for label, key in _HEAT:
        label = f"objective ({data.get('metric')})" if key == "objective" else label
        fig = heat_map(manifest, key, label)
        if fig is not None:
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=110)
            parts.append(png_figure(buffer.getvalue(), f"{label} of the chosen model per particle and |eta| slice"))
    parts += ["<h2>All trials</h2>", _table_html(header, ranked), f"<p>{html.escape(_caption(data))}</p>"]
    report = out / "report"
    report.mkdir(exist_ok=True)
    for name, text in (("campaign.md", "\n".join(markdown)), ("campaign.html", html_page("caloforge campaign", parts))):
        with atomic_path(report / name, force=True) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return report / "campaign.html"
