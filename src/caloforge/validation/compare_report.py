"""The comparison report: several generated samples against one reference, in one page.

Layout of the output directory (as the single-sample report, :mod:`caloforge.validation.report`)::

    report.html   the verdict of each sample, one table of every metric per sample (value, error, verdict),
                  chi2/NDF per incident energy per sample, every figure with all samples overlaid
    metrics.json  :meth:`caloforge.validation.compare.Comparison.to_dict`: each sample's full metrics
    plots/*.png   the figures (and *.pdf)
    histograms_<k>_<label>.root  each sample's histograms as TH1D pairs (reference, the sample), with uproot
"""

from __future__ import annotations

import dataclasses
import html
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from caloforge._version import __version__
from caloforge.data.showers import format_energy
from caloforge.runtime.progress import Progress
from caloforge.validation.drawing import draw_figures
from caloforge.validation.missing import format_value
from caloforge.validation.report import (
    figures_note,
    html_page,
    png_figure,
    report_figures,
    report_stage,
    report_timings,
    write_pages,
)
from caloforge.validation.root_export import write_root

if TYPE_CHECKING:
    from caloforge.validation.compare import Comparison
    from caloforge.validation.metrics.verdict import VerdictRow
    from caloforge.validation.result import EvaluationResult

__all__ = ["render_comparison", "shared_name", "write_comparison"]


_WHERE = re.compile(r"\((?:max: |generated beyond the reference's 99 %, worst at )([^)]*)\)")
"""The part of a metric's name that differs between samples: the worst feature, the worst energy."""


def shared_name(metric: str) -> str:
    """A metric's name without the sample-specific part (shown in each sample's cell instead).

    Example:
        >>> shared_name("separation power (max: e_layer_12)")
        'separation power (max over features)'
    """
    return _WHERE.sub(lambda m: "(max over features)" if m.group(0).startswith("(max") else
                      "(generated beyond the reference's 99 %, worst energy)", metric)


def _cell(row: VerdictRow | None) -> str:
    if row is None:
        return "<td class='l'>–</td><td></td>"
    error = f" ± {format_value(row.error, 2)}" if row.error == row.error else ""  # NaN: no error estimate
    where = _WHERE.search(row.metric)
    detail = f" <small>({html.escape(where.group(1))})</small>" if where else ""
    css = row.verdict.replace(" ", "-")
    return (f"<td>{format_value(row.value)}{error}{detail}</td><td class='{css}' title='{html.escape(row.rule)}'>"
            f"{row.verdict}</td>")


def _metric_table(comparison: Comparison) -> str:
    """One row per metric, for each sample its value ± error and verdict (the rule on hovering the verdict)."""
    labels = comparison.labels
    head = "".join(f"<th colspan='2'>{html.escape(label)}</th>" for label in labels)
    rows = [f"<tr><th>metric</th><th>reference split</th>{head}</tr>"]
    overall = "".join(f"<td></td><td class='{r.verdict.replace(' ', '-')}'><b>{r.verdict}</b></td>"
                      for r in comparison.results)
    rows.append(f"<tr><td class='l'><b>overall verdict</b></td><td></td>{overall}</tr>")
    by_key = [{row.key: row for row in r.verdicts} for r in comparison.results]
    keys = list(dict.fromkeys(row.key for r in comparison.results for row in r.verdicts))
    for key in keys:
        first = next(found[key] for found in by_key if key in found)
        rows.append(f"<tr><td class='l'>{html.escape(shared_name(first.metric))}</td>"
                    f"<td>{format_value(first.reference_split)}</td>"
                    + "".join(_cell(found.get(key)) for found in by_key) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _chi2_table(comparison: Comparison) -> str:
    """chi2/NDF of E_tot/E_inc per incident energy, one column per sample."""
    head = "".join(f"<th>{html.escape(label)}</th>" for label in comparison.labels)
    rows = [f"<tr><th>E_inc</th><th>N ref</th>{head}</tr>"]
    per = [{round(e.energy, 6): e for e in r.chi2.per_energy} for r in comparison.results]
    energies = list(dict.fromkeys(round(e.energy, 6) for r in comparison.results for e in r.chi2.per_energy))
    for energy in energies:
        first = next(p[energy] for p in per if energy in p)
        cells = "".join(f"<td>{format_value(p[energy].chi2_ndf) if energy in p else '–'}</td>" for p in per)
        rows.append(f"<tr><td>{format_energy(energy)}</td><td>{first.n_reference}</td>{cells}</tr>")
    total = "".join(f"<th>{format_value(r.chi2.chi2_ndf)}</th>" for r in comparison.results)
    rows.append(f"<tr><th>all</th><th>{comparison.results[0].n_reference}</th>{total}</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _warnings(comparison: Comparison) -> list[str]:
    """Each warning once, with the samples it concerns."""
    where: dict[str, list[str]] = {}
    for label, result in comparison.samples:
        for message in dict.fromkeys(result.warnings):
            where.setdefault(message, []).append(label)
    every = len(comparison.labels)
    return [f"<p class='warning'>warning ({'all samples' if len(labels) == every else ', '.join(labels)}): "
            f"{html.escape(message)}</p>" for message, labels in where.items()]


def _inputs(comparison: Comparison) -> list[str]:
    rows = []
    for label, result in comparison.samples:
        item = result.inputs.get("generated")
        if isinstance(item, dict):
            rows.append(f"<li><b>{html.escape(label)}</b>: {html.escape(str(item.get('path', 'in memory')))} "
                        f"({item.get('n_showers', '?')} showers, sha256 {str(item.get('sha256', ''))[:16]}…)</li>")
    ref = comparison.results[0].inputs.get("reference")
    if isinstance(ref, dict):
        rows.insert(0, f"<li>reference: {html.escape(str(ref.get('path', 'in memory')))} "
                       f"({ref.get('n_showers', '?')} showers, sha256 {str(ref.get('sha256', ''))[:16]}…)</li>")
    return ["<p>inputs:</p><ul class='inputs'>", *rows, "</ul>"]


def render_comparison(comparison: Comparison, images: list[tuple[str, str, bytes]], note: str = "") -> str:
    """The comparison page; ``images`` are (section, caption, PNG bytes) in display order."""
    first = comparison.results[0]
    g = first.geometry
    verdicts = ", ".join(f"{html.escape(label)}: <b class='{verdict.replace(' ', '-')}'>{verdict}</b>"
                         for label, verdict in comparison.verdicts.items())
    parts = [
        f"<h1>Validation report: {len(comparison.labels)} samples <span>{verdicts}</span></h1>",
        f"<p>geometry <b>{html.escape(g.name)}</b> (hash {g.hash}), readout threshold {first.threshold:.4g} MeV, "
        f"{first.n_reference} reference showers, mode <b>{first.mode}</b>, seed {first.seed}, caloforge "
        f"{html.escape(__version__)}. Every sample is evaluated against the same reference with the same seed; the "
        "reference split compares two random halves of the reference: what statistics alone give. Hover a verdict "
        "for its rule; docs/validation.md has every definition and threshold. In each histogram panel's title, "
        "S lists the separation power of each sample, in the legend's order.</p>",
        *_inputs(comparison), *([f"<p>{html.escape(note)}.</p>"] if note else []), *_warnings(comparison),
        "<h2>Metrics per sample</h2>", _metric_table(comparison),
        "<h2>chi2/NDF of E_tot/E_inc per incident energy</h2>", _chi2_table(comparison),
    ]
    section = None
    for name, caption, png in images:
        if name != section:
            parts.append(f"<h2>{html.escape(name)}</h2>")
            section = name
        parts.append(png_figure(png, caption))
    return html_page(f"caloforge comparison: {', '.join(comparison.labels)}", parts)


def _write_root(stage: Path, k: int, label: str, result: EvaluationResult) -> str:
    """Sample ``k``'s histograms in ``histograms_<k>_<label>.root`` (the label's letters and digits); "" without
    uproot."""
    name = f"histograms_{k + 1}_{re.sub(r'[^A-Za-z0-9]+', '_', label).strip('_')[:40]}.root"
    written = write_root(stage / name, (*result.histograms, *result.energy_histograms), {"generated": label})
    return name if written else ""
    return name


def write_comparison(comparison: Comparison, out_dir: str | Path, force: bool = False, pdf: bool = True,
                     progress: Progress | None = None, started: float | None = None, figures: bool = True
                     ) -> Comparison:
    """Draw every figure (all samples overlaid) and write plots, report.html and metrics.json into ``out_dir``.

    Written atomically, as :func:`caloforge.validation.report.write_report`.

    Returns:
        ``comparison`` with the report's and the total time in its timings.
    """
    start = time.perf_counter()
    with report_stage(out_dir, force) as stage:
        images = draw_figures(report_figures(comparison.samples) if figures else [], stage, pdf, progress)
        comparison = dataclasses.replace(comparison, timings=report_timings({}, start, started))
        roots = [_write_root(stage, k, label, result) for k, (label, result) in enumerate(comparison.samples)]
        note = (f"each sample's histograms are also in {', '.join(roots)} (TH1D, reference and the sample) for ROOT"
                if all(roots) else "install caloforge[root] (uproot) to also get every histogram for ROOT")
        write_pages(stage, render_comparison(comparison, images, figures_note(figures) + note), comparison.to_dict())
    return comparison
