"""Validation figures (matplotlib, Agg backend, mplhep style): reference vs generated.

Every function returns a :class:`matplotlib.figure.Figure`; :mod:`caloforge.validation.report`
saves them as PNG and PDF and embeds the PNGs in the HTML page. Reference is drawn
as a filled histogram, generated as a line, with a generated/reference ratio panel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

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
    "GEN_COLOURS",
    "MINOR_TICKS_UP_TO",
    "RATIO_HALF_RANGE",
    "Samples",
    "draw_ratio",
    "histogram_grid",
    "histogram_title",
    "new_figure",
    "plot_correlations",
    "plot_response",
    "plot_roc",
    "plot_training",
    "ratio_axis",
    "ratio_limits",
    "sample_style",
    "style",
]

REF_COLOUR, GEN_COLOUR = "#5790fc", "#e42536"
GEN_COLOURS = (GEN_COLOUR, "#f89c20", "#964a8b", "#7a21dd", "#9c9ca1", "#b9ac70", "#717581", "#92dadd")
"""Colours of the generated samples, in order (the mplhep/Petroff palette; the reference is blue)."""
GEN_STYLES = ("-", "--", "-.", ":")
DPI = 110
"""Resolution of the report's PNG figures: the narrowest figure is 6.5 in, about 700 pixels wide."""
RATIO_HALF_RANGE = (0.1, 1.0)
"""Bounds of a ratio panel's half range around 1: it adapts to the data within them (0.9-1.1 to 0-2)."""
MINOR_TICKS_UP_TO = 8
"""Histogram grids of more panels (one per layer: 45 on datasets 2/3) are drawn without minor ticks: half the
drawing time of such a figure; the labelled major ticks stay."""
_NICE = (0.1, 0.2, 0.3, 0.5, 1.0)
_WORDS = {"response": "all incident energies", "e_total": "total deposited energy", "voxel": "all voxels"}

T = TypeVar("T")
Samples = Sequence[tuple[str, T]]
"""Generated samples as (label, data) pairs, in the order they are drawn (one for a single-sample report)."""


def sample_style(k: int) -> dict[str, Any]:
    """Colour and line style of the ``k``-th generated sample."""
    return {"color": GEN_COLOURS[k % len(GEN_COLOURS)], "linestyle": GEN_STYLES[(k // len(GEN_COLOURS)) % 4]}


def histogram_title(hist: FeatureHistogram) -> str:
    """A panel title in words: the layer, the incident energy, or what the whole-shower feature is."""
    if hist.layer is not None:
        return f"layer {hist.layer}"
    if hist.family == "response_per_energy":
        return "E_inc = " + format_energy(float(hist.name.removeprefix("response_E")))
    return _WORDS.get(hist.name, hist.name.replace("_", " "))


def style() -> dict[str, Any]:
    """The mplhep ROOT style with font sizes that stay legible when a 4-panel-wide figure is shown 1400 px wide."""
    mplhep = require("mplhep", "plot", "the report's figures")

    base = dict(mplhep.style.ROOT)
    base.update({"font.size": 12, "axes.labelsize": 12, "axes.titlesize": 12, "xtick.labelsize": 11,
                 "ytick.labelsize": 11, "legend.fontsize": 10, "xaxis.labellocation": "right",
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


def ratio_limits(ratios: Sequence[NDArray[np.float64]]) -> tuple[float, float]:
    """The y range of a ratio panel: symmetric around 1, wide enough for 90 % of the points (plus a margin).

    The half range is a round number within :data:`RATIO_HALF_RANGE`; points beyond it are drawn as
    arrows at the panel's edge (:func:`draw_ratio`).

    Example:
        >>> import numpy as np
        >>> ratio_limits([np.array([0.98, 1.01, 1.02])]), ratio_limits([np.array([0.6, 1.3, 1.1, 9.0])])
        ((0.9, 1.1), (0.0, 2.0))
    """
    values = np.concatenate([np.asarray(r, dtype=np.float64).ravel() for r in ratios]) if ratios else np.zeros(0)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.5, 1.5
    need = float(np.quantile(np.abs(values - 1.0), 0.9)) * 1.25
    lo, hi = RATIO_HALF_RANGE
    half = next((n for n in _NICE if n >= min(max(need, lo), hi)), hi)
    return round(1.0 - half, 6), round(1.0 + half, 6)


def draw_ratio(rax: Axes, x: NDArray[np.float64], ratio: NDArray[np.float64], error: NDArray[np.float64] | None,
               limits: tuple[float, float], **style: Any) -> int:
    """Ratio points with error bars; those off the panel drawn as arrows (gid ``off-scale``) at its edge.

    Returns:
        The number of off-scale points.
    """
    lo, hi = limits
    shown = np.isfinite(ratio)
    inside = shown & (ratio >= lo) & (ratio <= hi)
    colour = style.get("color", GEN_COLOUR)
    rax.errorbar(x[inside], ratio[inside], yerr=None if error is None else error[inside], color=colour,
                 marker="o", markersize=3, linestyle="none", elinewidth=0.9)
    pad = 0.06 * (hi - lo)
    for mask, y, marker in ((shown & (ratio > hi), hi - pad, "^"), (shown & (ratio < lo), lo + pad, "v")):
        if mask.any():
            rax.plot(x[mask], np.full(int(mask.sum()), y), marker=marker, markersize=6, linestyle="none",
                     color=colour, gid="off-scale")
    rax.set_ylim(lo, hi)
    return int((shown & ~inside).sum())


def ratio_axis(rax: Axes, limits: tuple[float, float], label: str = "gen/ref") -> None:
    """The ratio panel's frame: a line at 1, ticks half-way to each edge (none at the shared edge)."""
    lo, hi = limits
    rax.axhline(1.0, color="grey", linewidth=0.8)
    rax.set_ylim(lo, hi)
    half = (hi - lo) / 4
    rax.set_yticks([round(1.0 - half, 4), round(1.0 + half, 4)])
    rax.tick_params(axis="y", labelsize=10)
    rax.set_ylabel(label, fontsize=10)


def _panel(fig: Figure, spec: object, hists: Samples[FeatureHistogram], legend: bool, minor: bool = True) -> None:
    sub = spec.subgridspec(2, 1, height_ratios=(3, 1), hspace=0.0)  # type: ignore[attr-defined]
    ax, rax = fig.add_subplot(sub[0]), fig.add_subplot(sub[1])
    ax.sharex(rax)
    first = hists[0][1]
    widths = np.diff(first.edges)
    ref = first.reference / max(first.reference.sum(), 1.0) / widths
    ax.stairs(ref, first.edges, fill=True, color=REF_COLOUR, alpha=0.35, label="reference")
    centres = (np.sqrt(first.edges[1:] * first.edges[:-1]) if first.log_x
               else 0.5 * (first.edges[1:] + first.edges[:-1]))
    ratios = []
    for k, (label, hist) in enumerate(hists):
        gen = hist.generated / max(hist.generated.sum(), 1.0) / widths
        ax.stairs(gen, hist.edges, linewidth=1.5, label=label, **sample_style(k))
        with np.errstate(divide="ignore", invalid="ignore"):  # Poisson errors of both histograms, in quadrature
            ratio = np.where((ref > 0) & (hist.generated > 0), gen / ref, np.nan)
            error = ratio * np.sqrt(1.0 / np.maximum(hist.generated, 1.0) + 1.0 / np.maximum(hist.reference, 1.0))
        ratios.append((ratio, error))
    limits = ratio_limits([r for r, _ in ratios])
    for k, (ratio, error) in enumerate(ratios):
        draw_ratio(rax, centres, ratio, error, limits, color=sample_style(k)["color"])
    ratio_axis(rax, limits)
    if first.log_y and (ref > 0).any():
        ax.set_yscale("log")
    if first.log_x:
        rax.set_xscale("log")
    rax.set_xlabel(first.label)
    ax.set_ylabel("normalised density", fontsize=10)
    ax.tick_params(labelbottom=False)
    separations = " / ".join(f"{h.separation:.2g}" for _, h in hists)
    # y given: matplotlib need not measure every tick label to place the title (a third of a panel's drawing time)
    ax.set_title(f"{histogram_title(first)}   S = {separations}", fontsize=11, y=1.0)
    if not minor:  # the other half: minor ticks (the style's, and log axes' 8 per decade) are most of the ticks
        null = require("matplotlib.ticker", "plot", "the report's figures").NullLocator
        for axis in (ax.xaxis, ax.yaxis, rax.yaxis):  # ax and rax share x
            axis.set_minor_locator(null())
    if legend:
        ax.legend(loc="best", frameon=False, fontsize=10)


def histogram_grid(samples: Samples[Sequence[FeatureHistogram]], title: str, columns: int = 4,
                   fig: Figure | None = None) -> Figure:
    """One figure with a panel (histogram + ratio) per histogram, e.g. one per layer, every sample overlaid.

    Args:
        samples: (label, histograms) of each generated sample; histograms are matched by name and
            drawn against the first sample's reference (the same for every sample of one evaluation).
        title: The figure's title.
        columns: Panels per row.
        fig: A figure to draw into (default: a new one).
    """
    first = samples[0][1]
    by_name = [{h.name: h for h in hists} for _, hists in samples]
    n = len(first)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    height = 3.2 * rows + (0.8 if len(samples) == 1 else 1.1)
    fig = new_figure(max((3.5 if cols > 2 else 4.6) * cols, 6.5), height, fig=fig)  # room for a title with S
    grid = fig.add_gridspec(rows, cols, left=0.08 if cols > 1 else 0.15, right=0.98, bottom=0.55 / height,
                            top=1 - (0.8 if len(samples) == 1 else 1.1) / height, wspace=0.38, hspace=0.5)
    for k, hist in enumerate(first):
        matched = [(label, found[hist.name]) for (label, _), found in zip(samples, by_name, strict=True)
                   if hist.name in found and np.array_equal(found[hist.name].edges, hist.edges)]
        _panel(fig, grid[k // cols, k % cols], matched, legend=k == 0 and len(samples) == 1,
               minor=n <= MINOR_TICKS_UP_TO)
    if len(samples) > 1:  # one legend for the figure, under its title; S in each panel's title, in this order
        handles, labels = fig.axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 5),
                   frameon=False, bbox_to_anchor=(0.5, 1 - 0.3 / height))
    fig.suptitle(title, y=1 - 0.12 / height)  # several samples: S in each panel's title lists them in legend order
    return fig


def plot_response(reference: ResponseResult, generated: Samples[ResponseResult], fig: Figure | None = None
                  ) -> Figure:
    """Mean response and relative resolution of E_tot/E_inc versus incident energy, every sample overlaid."""
    fig = new_figure(11.0, 4.4, "constrained", fig)
    ax_m, ax_s = fig.subplots(1, 2)
    markers = "sD^vP*"
    drawn = [(reference, REF_COLOUR, "reference", "o", 0.0)]
    drawn += [(res, sample_style(k)["color"], label, markers[k % len(markers)], 0.015 * (k + 1))
              for k, (label, res) in enumerate(generated)]
    for res, colour, label, marker, shift in drawn:
        a = res.arrays()
        x = a["energy_mean"] * (1.0 + shift)  # side by side where the energies are the same
        ax_m.errorbar(x, a["response"], a["response_error"], color=colour, marker=marker,
                      linestyle="none", markersize=4, label=label)
        ax_s.errorbar(x, a["resolution"], a["resolution_error"], color=colour, marker=marker,
                      linestyle="none", markersize=4, label=label)
    for ax, name in ((ax_m, r"$\langle E_\mathrm{tot}/E_\mathrm{inc}\rangle$"),
                     (ax_s, r"RMS / mean of $E_\mathrm{tot}/E_\mathrm{inc}$")):
        ax.set_xscale("log")
        ax.set_xlabel(r"$E_\mathrm{inc}$ [MeV]")
        ax.set_ylabel(name)
        ax.legend(frameon=False)
    fig.suptitle("Response and resolution")
    return fig


def plot_correlations(layer_ids: Sequence[int], reference: NDArray[np.float64],
                      generated: Samples[NDArray[np.float64]], fig: Figure | None = None) -> Figure:
    """Layer-energy Pearson correlation matrices: reference, generated (one sample) and each sample's difference."""
    panels = [("reference", reference, "RdBu_r", (-1.0, 1.0))]
    if len(generated) == 1:
        panels.append(("generated", generated[0][1], "RdBu_r", (-1.0, 1.0)))
    panels += [(f"{label} - reference", matrix - reference, "PuOr", (-0.3, 0.3)) for label, matrix in generated]
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig = new_figure(4.4 * cols, 4.3 * rows, "constrained", fig)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    ids = [str(i) for i in layer_ids]
    for ax, (name, matrix, cmap, (lo, hi)) in zip(axes, panels, strict=False):
        image = ax.imshow(matrix, cmap=cmap, vmin=lo, vmax=hi, origin="lower")
        step = max(1, len(ids) // 10)
        ax.set_xticks(range(0, len(ids), step), ids[::step], fontsize=10)
        ax.set_yticks(range(0, len(ids), step), ids[::step], fontsize=10)
        ax.set_title(name)
        ax.set_xlabel("layer id")
        fig.colorbar(image, ax=ax, shrink=0.8)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle("Layer-energy correlations")
    return fig


def plot_roc(results: Samples[Mapping[str, ClassifierResult]], splits: Mapping[str, ClassifierResult],
             ax: Axes | None = None) -> Figure:
    """ROC curves (first training, calibrated validation outputs) of each sample's classifiers and the reference split.

    One sample: a colour per classifier; several: a colour per sample, solid for low-level, dashed for high-level.
    """
    if ax is None:
        ax = new_figure(6.0, 5.5, "constrained").subplots()
    fig = ax.figure
    single = len(results) == 1
    for s, (label, by_kind) in enumerate(results):
        for k, (name, res) in enumerate(by_kind.items()):
            run = res.runs[0]
            colour = f"C{k}" if single else sample_style(s)["color"]
            prefix = "" if single else f"{label}, "
            ax.plot(run.fpr, run.tpr, color=colour, linestyle="-" if single or k == 0 else "--",
                    label=f"{prefix}{name}-level: AUC {res.auc:.3f}")
    for k, (name, split) in enumerate(splits.items()):
        s_run = split.runs[0]
        ax.plot(s_run.fpr, s_run.tpr, color=f"C{k}" if single else "grey", linestyle=":",
                label=f"{name}-level ref. split: {split.auc:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(frameon=False, loc="lower right", fontsize=9)
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
