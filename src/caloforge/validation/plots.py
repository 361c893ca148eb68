"""Validation figures (matplotlib, Agg backend, mplhep style): reference vs generated.

Every function returns a :class:`matplotlib.figure.Figure`; :mod:`caloforge.validation.report`
saves them as PNG and PDF and embeds the PNGs in the HTML page. Reference is drawn
as a filled histogram, generated as a line, with a generated/reference ratio panel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from caloforge.data.showers import format_energy
from caloforge.extras import require

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from caloforge.validation.metrics.classifier import ClassifierResult
    from caloforge.validation.metrics.response import ResponseResult
    from caloforge.validation.metrics.separation import FeatureHistogram

__all__ = [
    "DPI",
    "histogram_grid",
    "histogram_title",
    "new_figure",
    "plot_correlations",
    "plot_response",
    "plot_roc",
    "plot_training",
    "style",
]

REF_COLOUR, GEN_COLOUR = "#5790fc", "#e42536"
DPI = 110
"""Resolution of the report's PNG figures: the narrowest figure is 6.5 in, about 700 pixels wide."""
_WORDS = {"response": "all incident energies", "e_total": "total deposited energy", "voxel": "all voxels"}


def histogram_title(hist: FeatureHistogram) -> str:
    """A panel title in words: the layer, the incident energy, or what the whole-shower feature is."""
    if hist.layer is not None:
        return f"layer {hist.layer}"
    if hist.family == "response_per_energy":
        return "E_inc = " + format_energy(float(hist.name.removeprefix("response_E")))
    return _WORDS.get(hist.name, hist.name.replace("_", " "))


def style() -> dict[str, Any]:
    """The mplhep ROOT style with font sizes suited to multi-panel figures."""
    mplhep = require("mplhep", "plot", "the report's figures")

    base = dict(mplhep.style.ROOT)
    base.update({"font.size": 11, "axes.labelsize": 11, "axes.titlesize": 11, "xtick.labelsize": 9,
                 "ytick.labelsize": 9, "legend.fontsize": 9, "xaxis.labellocation": "right",
                 "yaxis.labellocation": "top", "figure.dpi": DPI, "savefig.dpi": DPI})
    return base


def new_figure(width: float, height: float, layout: Literal["constrained"] | None = None,
            fig: Figure | None = None) -> Figure:
    """``fig`` (sized and laid out as asked) or a new figure, detached from pyplot's global state."""
    if fig is None:
        figure = require("matplotlib.figure", "plot", "the report's figures")
        return figure.Figure(figsize=(width, height), layout=layout)  # type: ignore[no-any-return]
    fig.set_size_inches(width, height)
    if layout is not None:
        fig.set_layout_engine(layout)
    return fig


def _panel(fig: Figure, spec: object, hist: FeatureHistogram, legend: bool) -> None:
    sub = spec.subgridspec(2, 1, height_ratios=(3, 1), hspace=0.0)  # type: ignore[attr-defined]
    ax, rax = fig.add_subplot(sub[0]), fig.add_subplot(sub[1])
    ax.sharex(rax)
    widths = np.diff(hist.edges)
    n_ref, n_gen = max(hist.reference.sum(), 1.0), max(hist.generated.sum(), 1.0)
    ref, gen = hist.reference / n_ref / widths, hist.generated / n_gen / widths
    ax.stairs(ref, hist.edges, fill=True, color=REF_COLOUR, alpha=0.35, label="reference")
    ax.stairs(gen, hist.edges, color=GEN_COLOUR, linewidth=1.5, label="generated")
    if hist.log_y and (ref > 0).any():
        ax.set_yscale("log")
    if hist.log_x:
        rax.set_xscale("log")
    centres = np.sqrt(hist.edges[1:] * hist.edges[:-1]) if hist.log_x else 0.5 * (hist.edges[1:] + hist.edges[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):  # Poisson errors of both histograms, in quadrature
        ratio = np.where(ref > 0, gen / ref, np.nan)
        error = ratio * np.sqrt(1.0 / np.maximum(hist.generated, 1.0) + 1.0 / np.maximum(hist.reference, 1.0))
    shown = np.isfinite(ratio) & (hist.generated > 0)
    rax.errorbar(centres[shown], ratio[shown], yerr=error[shown], color=GEN_COLOUR, marker="o", markersize=2,
                 linestyle="none", elinewidth=0.8)
    rax.axhline(1.0, color="grey", linewidth=0.8)
    rax.set_ylim(0.5, 1.5)
    rax.set_yticks([0.75, 1.0, 1.25])  # no label at the panels' shared edge
    rax.set_ylabel("gen/ref", fontsize=8)
    rax.set_xlabel(hist.label, fontsize=9)
    ax.set_ylabel("normalised entries / bin width", fontsize=8)
    ax.tick_params(labelbottom=False)
    ax.set_title(f"{histogram_title(hist)}   S = {hist.separation:.2g}", fontsize=9)
    if legend:
        ax.legend(loc="best", frameon=False)


def histogram_grid(histograms: Sequence[FeatureHistogram], title: str, columns: int = 4,
                   fig: Figure | None = None) -> Figure:
    """One figure with a panel (histogram + ratio) per histogram, e.g. one per layer."""
    n = len(histograms)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig = new_figure(max(3.4 * cols, 6.5), 3.0 * rows + 0.4, fig=fig)
    margin = 0.6 / (3.0 * rows + 0.4)
    grid = fig.add_gridspec(rows, cols, left=0.07 if cols > 1 else 0.15, right=0.98, bottom=margin + 0.02,
                            top=1 - margin, wspace=0.3, hspace=0.45)
    for k, hist in enumerate(histograms):
        _panel(fig, grid[k // cols, k % cols], hist, legend=k == 0)
    fig.suptitle(title)
    return fig


def plot_response(reference: ResponseResult, generated: ResponseResult, fig: Figure | None = None) -> Figure:
    """Mean response and relative resolution of E_tot/E_inc versus incident energy."""
    fig = new_figure(10.0, 4.0, "constrained", fig)
    ax_m, ax_s = fig.subplots(1, 2)
    for res, colour, label, marker in ((reference, REF_COLOUR, "reference", "o"),
                                       (generated, GEN_COLOUR, "generated", "s")):
        a = res.arrays()
        ax_m.errorbar(a["energy_mean"], a["response"], a["response_error"], color=colour, marker=marker,
                      linestyle="none", markersize=4, label=label)
        ax_s.errorbar(a["energy_mean"], a["resolution"], a["resolution_error"], color=colour, marker=marker,
                      linestyle="none", markersize=4, label=label)
    for ax, name in ((ax_m, r"$\langle E_\mathrm{tot}/E_\mathrm{inc}\rangle$"),
                     (ax_s, r"RMS / mean of $E_\mathrm{tot}/E_\mathrm{inc}$")):
        ax.set_xscale("log")
        ax.set_xlabel(r"$E_\mathrm{inc}$ [MeV]")
        ax.set_ylabel(name)
        ax.legend(frameon=False)
    fig.suptitle("Response and resolution")
    return fig


def plot_correlations(layer_ids: Sequence[int], reference: NDArray[np.float64], generated: NDArray[np.float64],
                      fig: Figure | None = None) -> Figure:
    """Layer-energy Pearson correlation matrices: reference, generated and their difference."""
    fig = new_figure(13.0, 4.3, "constrained", fig)
    axes = fig.subplots(1, 3)
    ids = [str(i) for i in layer_ids]
    panels = (("reference", reference, "RdBu_r", (-1, 1)), ("generated", generated, "RdBu_r", (-1, 1)),
              ("generated - reference", generated - reference, "PuOr", (-0.3, 0.3)))
    for ax, (name, matrix, cmap, (lo, hi)) in zip(axes, panels, strict=True):
        image = ax.imshow(matrix, cmap=cmap, vmin=lo, vmax=hi, origin="lower")
        step = max(1, len(ids) // 10)
        ax.set_xticks(range(0, len(ids), step), ids[::step], fontsize=8)
        ax.set_yticks(range(0, len(ids), step), ids[::step], fontsize=8)
        ax.set_title(name)
        ax.set_xlabel("layer id")
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle("Layer-energy correlations")
    return fig


def plot_roc(results: Mapping[str, ClassifierResult], splits: Mapping[str, ClassifierResult],
             ax: Axes | None = None) -> Figure:
    """ROC curves (first training, calibrated validation outputs) of each classifier and its reference split."""
    if ax is None:
        ax = new_figure(5.5, 5.0, "constrained").subplots()
    fig = ax.figure
    for k, (name, res) in enumerate(results.items()):
        run = res.runs[0]
        ax.plot(run.fpr, run.tpr, color=f"C{k}", label=f"{name}-level: AUC {res.auc:.3f}")
        if name in splits:
            s = splits[name].runs[0]
            label = f"{name}-level ref. split: {splits[name].auc:.3f}"
            ax.plot(s.fpr, s.tpr, color=f"C{k}", linestyle=":", label=label)
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(frameon=False, loc="lower right")
    ax.set_title("Classifier ROC curves")
    return fig  # type: ignore[return-value]


def plot_training(history: Sequence[Mapping[str, float]], ax: Axes | None = None) -> Figure:
    """Validation chi2/NDF of the total-energy response versus training iteration; iteration 0 is untrained."""
    if ax is None:
        ax = new_figure(7.0, 4.0, "constrained").subplots()
    fig = ax.figure
    rows = [r for r in history if math.isfinite(r.get("chi2_ndf", math.nan))]
    it = np.array([r["iteration"] for r in rows])
    chi2 = np.array([r["chi2_ndf"] for r in rows])
    ax.plot(it, chi2, color=GEN_COLOUR, marker="o", markersize=3, label="validation split")
    if rows and rows[0]["iteration"] == 0:
        ax.axhline(chi2[0], color="grey", linestyle=":", label=f"untrained: {chi2[0]:.3g}")
    if rows:
        best = int(np.argmin(chi2))
        ax.plot(it[best], chi2[best], marker="*", markersize=12, color="black", linestyle="none",
                label=f"selected: {chi2[best]:.3g} at {int(it[best])}")
    ax.set_yscale("log")
    ax.set_xlabel("training iteration")
    ax.set_ylabel(r"$\chi^2$/NDF of $E_\mathrm{tot}/E_\mathrm{inc}$")
    ax.legend(frameon=False)
    return fig  # type: ignore[return-value]
