"""The validation report: one self-contained HTML page, ``metrics.json`` and the plots.

Layout of the output directory::

    report.html      verdict table, per-energy chi2 table, every figure embedded as base64 PNG
    metrics.json     :meth:`caloforge.validation.result.EvaluationResult.to_dict` (stable keys)
    plots/*.png      the figures (also embedded in the page)
    plots/*.pdf      the same figures as vector graphics
    histograms.root  every histogram as TH1D pairs (reference, generated), with caloforge[root] (uproot)

The page needs no server and no network: it opens from disk in any browser.
Files are written atomically and never overwrite without ``force``.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import html
import os
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from caloforge._version import __version__
from caloforge.data.outputs import scratch_dir, strict_json
from caloforge.data.showers import format_energy
from caloforge.errors import OutputExistsError, OutputPathError
from caloforge.extras import require
from caloforge.runtime.progress import Progress
from caloforge.validation import plots, shape_plots, shower_plots
from caloforge.validation.drawing import draw_figures
from caloforge.validation.missing import format_value
from caloforge.validation.plots import Samples
from caloforge.validation.result import EvaluationResult
from caloforge.validation.root_export import write_root

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from caloforge.validation.metrics.separation import FeatureHistogram

__all__ = ["REPORT_FILES", "check_report_dir", "html_page", "png_figure", "publish",
           "render_html", "report_figures", "write_report"]

REPORT_FILES = ("report.html", "metrics.json")
ROOT_FILE = "histograms.root"
_FAMILIES = (
    ("e_layer", "Energy per layer"),
    ("centre_eta", "Centre of energy in eta"),
    ("centre_phi", "Centre of energy in phi"),
    ("width_eta", "Width in eta"),
    ("width_phi", "Width in phi"),
    ("centre_r", "Centre of energy in r"),
    ("width_r", "Width in r"),
    ("sparsity", "Sparsity (fraction of empty voxels)"),
    ("voxel", "Voxel energy spectrum"),
)
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0}td.l{text-align:left}.pass{background:#c8f0c8}.warn{background:#fff0b0}
.fail{background:#f8c0c0}.info{background:#eef}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.warning{background:#fff0b0;padding:.5em;border-left:4px solid #e0a000}h1 span{font-size:60%}
.not-computed{background:#eee;color:#555}.too-small{background:#e8e0f0;color:#444}
"""


def check_report_dir(out_dir: str | Path, force: bool) -> Path:
    """Check that a report may be written into ``out_dir``; creates nothing.

    Raises:
        OutputExistsError: if report.html, metrics.json or plots exist and ``force`` is false.
        OutputPathError: if ``out_dir`` is a file, or its nearest existing parent is not writable.
        MissingDependencyError: if matplotlib or mplhep (``caloforge[plot]``) is not installed.
    """
    for module in ("matplotlib", "mplhep"):  # before minutes of metrics, not after
        require(module, "plot", "the report's figures")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        msg = f"expected an output directory but {out} is a file; choose another --out"
        raise OutputPathError(msg)
    existing = [out / name for name in REPORT_FILES if (out / name).exists()] + sorted(out.glob("histograms*.root"))
    if (out / "plots").is_dir():
        existing += sorted((out / "plots").glob("*.p[nd][gf]"))
    if existing and not force:
        msg = f"{existing[0]} already exists; choose another --out or pass --force to overwrite it"
        raise OutputExistsError(msg)
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        msg = f"output directory {parent} is not writable; choose another --out"
        raise OutputPathError(msg)
    return out


def report_figures(samples: Samples[EvaluationResult]) -> list[tuple[str, str, str, Callable[[], Figure]]]:
    """(section, file stem, caption, figure maker) for every plot of the report; figures are drawn on demand.

    ``samples`` are (label, result) of each generated sample, evaluated against the same reference: every
    histogram overlays them all on the reference (one pair: the single-sample report).
    """
    result = samples[0][1]
    g = result.geometry

    def each(get: Callable[[EvaluationResult], Any]) -> list[tuple[str, Any]]:
        return [(label, get(r)) for label, r in samples]

    def family(*names: str) -> Callable[[EvaluationResult], list[FeatureHistogram]]:
        return lambda r: [h for h in r.histograms if h.family in names]

    out: list[tuple[str, str, str, Callable[[], Figure]]] = [
        ("Response", "response", "E_tot/E_inc and E_tot, all energies",
         partial(plots.histogram_grid, each(family("response", "e_total")), "Total energy", columns=2)),
    ]
    if result.energy_histograms:
        out.append(("Response", "response_per_energy",
                    "E_tot/E_inc per incident energy (official binning for dataset 1)",
                    partial(plots.histogram_grid, each(lambda r: r.energy_histograms),
                            "E_tot/E_inc per incident energy")))
    out.append(("Response", "response_resolution", "Response and resolution vs energy",
                partial(plots.plot_response, result.response_reference, each(lambda r: r.response_generated))))
    present = {h.family for h in result.histograms}
    for name, title in _FAMILIES:
        if name in present:
            out.append(("Features", name, title, partial(plots.histogram_grid, each(family(name)), title)))
    means = each(lambda r: r.mean_generated)
    out.append(("Shower shape", "profiles", "Mean longitudinal and radial profiles",
                partial(shower_plots.plot_profiles, g, result.mean_reference, means)))
    per_figure = 9 if len(samples) == 1 else 5
    for start in range(0, g.n_layers, per_figure):
        layers = list(range(start, min(start + per_figure, g.n_layers)))
        out.append(("Shower shape", f"mean_images_{start}",
                    f"Average shower, {shower_plots.layer_list([g.layers[i].id for i in layers])}",
                    partial(shower_plots.plot_mean_images, g, result.mean_reference, means, layers)))
    if result.energy_means:
        ranges = each(lambda r: r.energy_means)
        out.append(("Per incident energy", "layer_energies_by_energy",
                    "Mean fraction of E_inc per layer, per incident-energy range",
                    partial(shower_plots.plot_layer_energies_by_range, g.layer_ids, g, ranges)))
        out.append(("Per incident energy", "shapes_by_energy",
                    "Radial centre and width of the mean shower per layer, per incident-energy range",
                    partial(shape_plots.plot_shapes_by_energy, g, ranges)))
        energetic = int(np.argmax([result.mean_reference[g.layer_slice(i)].sum() for i in range(g.n_layers)]))
        for k, group in enumerate(result.energy_means):
            at_k = [(label, r.energy_means[k].mean_generated) for label, r in samples]
            out.append(("Per incident energy", f"mean_image_energy_{k}",
                        f"Average shower in the most energetic layer, E_inc = {group.label}",
                        partial(shower_plots.plot_mean_images, g, group.mean_reference,
                                at_k, [energetic],
                                title=f"E_inc = {group.label}", unit="MeV/MeV")))
    out.append(("Correlations", "layer_correlations", "Layer-energy correlations",
                partial(plots.plot_correlations, g.layer_ids, result.correlation_reference,
                        each(lambda r: r.correlation_generated))))
    if result.training is not None and len(samples) == 1:
        out.append(("Training", "training", "Validation chi2/NDF during training (checkpoint selection)",
                    partial(plots.plot_training, result.training_history)))
    if result.classifiers:
        out.append(("Classifiers", "roc", "ROC curves of the classifiers",
                    partial(plots.plot_roc, each(lambda r: r.classifiers), result.classifiers_split)))
    return out


_fmt = format_value  # "n/a" where metrics.json has null, as the terminal prints it


def _verdict_table(result: EvaluationResult) -> str:
    rows = ["<tr><th>metric</th><th>value</th><th>error</th><th>reference split</th><th>verdict</th>"
            "<th>rule</th></tr>"]
    for r in result.verdicts:
        rows.append(f'<tr><td class="l">{html.escape(r.metric)}</td><td>{_fmt(r.value)}</td><td>{_fmt(r.error)}</td>'
                    f'<td>{_fmt(r.reference_split)}</td><td class="{r.verdict.replace(" ", "-")}">{r.verdict}</td>'
                    f'<td class="l">{html.escape(r.rule)}</td></tr>')
    return "<table>" + "".join(rows) + "</table>"


def _chi2_table(result: EvaluationResult) -> str:
    rows = ["<tr><th>E_inc</th><th>N ref</th><th>N gen</th><th>chi2</th><th>NDF</th><th>chi2/NDF</th>"
            "<th>range of E_tot/E_inc</th><th>outside: ref / gen</th><th>gen beyond ref 99 %</th></tr>"]
    for e in result.chi2.per_energy:
        label = format_energy(e.energy)
        rows.append(f"<tr><td>{label}</td><td>{e.n_reference}</td><td>{e.n_generated}</td><td>{_fmt(e.chi2)}</td>"
                    f"<td>{e.ndf}</td><td>{_fmt(e.chi2_ndf)}</td><td>{e.low:.4g} - {e.high:.4g}</td>"
                    f"<td>{e.reference_outside:.1%} / {e.generated_outside:.1%}</td>"
                    f"<td>{e.generated_beyond_reference:.1%}</td></tr>")
    rows.append(f"<tr><th>all</th><th>{result.n_reference}</th><th>{result.n_generated}</th><th>{_fmt(result.chi2.chi2)}"
                f"</th><th>{result.chi2.ndf}</th><th>{_fmt(result.chi2.chi2_ndf)}</th><th></th>"
                f"<th>max {result.chi2.max_outside:.1%}</th><th></th></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _training_lines(result: EvaluationResult) -> list[str]:
    t = result.training
    if t is None:
        return []
    return [f"<p>model training: validation chi2/NDF of E_tot/E_inc <b>{_fmt(t['untrained_chi2_ndf'])}</b> untrained "
            f"&rarr; <b>{_fmt(t['best_chi2_ndf'])}</b> at the selected checkpoint (iteration {t['best_iteration']} of "
            f"{t['iterations']}, {_fmt(t['elapsed_s'] / 60)} min); see the Training section.</p>"]


def _input_lines(result: EvaluationResult) -> list[str]:
    """The header's description of the inputs: files and their fingerprints, the model that generated."""
    rows = []
    for role in ("reference", "generated"):
        item = result.inputs.get(role)
        if isinstance(item, dict):
            where = html.escape(str(item.get("path", "in memory")))
            digest = str(item.get("sha256", ""))[:16]
            rows.append(f"<li>{role}: <b>{where}</b> ({item.get('n_showers', '?')} showers, sha256 {digest}…)</li>")
    model = result.inputs.get("model")
    if isinstance(model, dict):
        minutes = model.get("training_minutes")
        trained = f", trained {minutes:.1f} min" if isinstance(minutes, int | float) else ""
        rows.append(f"<li>model: <b>{html.escape(str(model.get('path', '')))}</b> (family "
                    f"{html.escape(str(model.get('family', '?')))}, {model.get('iterations', '?')} iterations"
                    f"{trained})</li>")
    return ["<p>inputs:</p><ul class='inputs'>", *rows, "</ul>"] if rows else []


def _classifier_lines(result: EvaluationResult) -> list[str]:
    lines = []
    for name, clf in result.classifiers.items():
        split = result.classifiers_split.get(name)
        also = f"; reference split: {html.escape(split.summary())}" if split is not None else ""
        lines.append(f"<li>{name}-level classifier: {html.escape(clf.summary())}{also}</li>")
    return ["<p>classifier trainings:</p><ul>", *lines, "</ul>"] if lines else []


def html_page(title: str, body: list[str]) -> str:
    """A self-contained page in the report's style (no external resources): ``body`` is HTML fragments."""
    head = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>", "<link rel='icon' href='data:,'>",
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    return "\n".join([*head, *body, "</body></html>"])


def png_figure(png: bytes, caption: str) -> str:
    """An embedded PNG figure with its caption."""
    data = base64.b64encode(png).decode("ascii")
    return (f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render_html(result: EvaluationResult, images: list[tuple[str, str, bytes]], note: str = "") -> str:
    """The report page; ``images`` are (section, caption, PNG bytes) in display order; ``note`` ends the header."""
    g = result.geometry
    css = result.verdict.replace(" ", "-")
    parts = [
        f"<h1>Validation report <span>verdict: <b class='{css}'>{result.verdict}</b></span></h1>",
        f"<p>geometry <b>{html.escape(g.name)}</b> (hash {g.hash}), readout threshold {result.threshold:.4g} MeV, "
        f"{result.n_reference} reference and {result.n_generated} generated showers, mode <b>{result.mode}</b>, "
        f"seed {result.seed}, caloforge {html.escape(__version__)}. The reference split compares two random halves "
        "of the reference: what statistics alone give. See docs/validation.md for every definition and threshold.</p>",
        *_input_lines(result),
        *([f"<p>{html.escape(note)}.</p>"] if note else []),
    ]
    parts += [f"<p class='warning'>warning: {html.escape(w)}</p>" for w in dict.fromkeys(result.warnings)]
    parts += ["<h2>Verdict</h2>", _verdict_table(result), *_classifier_lines(result), *_training_lines(result),
              "<h2>chi2 of E_tot/E_inc per incident energy</h2>", _chi2_table(result)]
    section = None
    for name, caption, png in images:
        if name != section:
            parts.append(f"<h2>{html.escape(name)}</h2>")
            section = name
        parts.append(png_figure(png, caption))
    return html_page(f"caloforge validation report: {g.name}", parts)


def write_report(result: EvaluationResult, out_dir: str | Path, force: bool = False, pdf: bool = True,
                 progress: Progress | None = None, started: float | None = None, figures: bool = True
                 ) -> EvaluationResult:
    """Draw every figure and write plots, report.html and metrics.json into ``out_dir``.

    Everything is written into a temporary directory beside the report first and moved into
    place only when complete: a failure (a full disk, Ctrl-C) leaves no partial report that
    would block a rerun.

    Args:
        result: The evaluation.
        out_dir: The report directory (created if missing).
        force: Replace an existing report.
        pdf: Also write every figure as PDF.
        progress: Reports each figure; None is silent.
        started: ``time.perf_counter()`` at the start of the evaluation, for the total time.
        figures: Draw the figures (False: ``caloforge evaluate --skip figures``; the page says they were skipped).

    Returns:
        The result as written: ``result`` with the report's and the total time added to its timings
        (a new object; ``result`` itself is never changed).
    """
    start = time.perf_counter()
    with report_stage(out_dir, force) as stage:
        images = draw_figures(report_figures([("generated", result)]) if figures else [], stage, pdf, progress)
        result = dataclasses.replace(result, timings=report_timings(result.timings, start, started))
        if write_root(stage / ROOT_FILE, (*result.histograms, *result.energy_histograms)):
            root_note = f"every histogram is also in {ROOT_FILE} (TH1D, reference and generated) for ROOT"
        else:
            root_note = f'install caloforge[root] (uproot) to also get every histogram in {ROOT_FILE} for ROOT'
        write_pages(stage, render_html(result, images, figures_note(figures) + root_note), result.to_dict())
    return result


@contextlib.contextmanager
def report_stage(out_dir: str | Path, force: bool) -> Iterator[Path]:
    """A scratch directory inside ``out_dir`` (checked, and created if missing) whose files are published into
    ``out_dir`` when the block ends without an error: a failure (a full disk, Ctrl-C) leaves no partial report.

    Raises:
        OutputPathError: if ``out_dir`` cannot be created; and what :func:`check_report_dir` raises.
    """
    out = check_report_dir(out_dir, force)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        msg = f"could not create the output directory {out} ({err.strerror}); choose another --out"
        raise OutputPathError(msg) from None
    with scratch_dir(out / "report") as stage:
        yield stage
        publish(stage, out)


def report_timings(timings: Mapping[str, float], start: float, started: float | None) -> dict[str, float]:
    """``timings`` with the report's seconds since ``start`` and, if ``started`` is given, the total since then."""
    out = {**timings, "report": round(time.perf_counter() - start, 3)}
    if started is not None:
        out["total"] = round(time.perf_counter() - started, 3)
    return out


def figures_note(figures: bool) -> str:
    """The page's note when the figures were skipped (``caloforge evaluate --skip figures``), else ""."""
    return "" if figures else "figures not drawn (caloforge evaluate --skip figures); "


def write_pages(stage: Path, page: str, metrics: Mapping[str, Any]) -> None:
    """report.html and metrics.json into ``stage``."""
    (stage / "report.html").write_text(page, encoding="utf-8")
    (stage / "metrics.json").write_text(strict_json(metrics, indent=2), encoding="utf-8")


def publish(stage: Path, out: Path) -> None:
    """Move the finished files from ``stage`` into ``out`` (plots first, the page and metrics.json last)."""
    (out / "plots").mkdir(exist_ok=True)
    for path in sorted((stage / "plots").iterdir()):
        path.replace(out / "plots" / path.name)
    for path in sorted(stage.glob("histograms*.root")):  # histograms.root; one per sample in a comparison
        path.replace(out / path.name)
    for name in REPORT_FILES:
        (stage / name).replace(out / name)
