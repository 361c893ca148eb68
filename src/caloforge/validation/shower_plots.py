"""Figures of the average shower: images per layer, longitudinal and radial profiles, per energy range.

Functions take the geometry and mean voxel energies (arrays, MeV), never a whole evaluation
result, and an optional ``fig``; they return the figure. Generated samples come as (label, data)
pairs (:data:`~caloforge.validation.plots.Samples`), one or several, each drawn against the
reference. Style and helpers are those of :mod:`caloforge.validation.plots`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from caloforge.validation.plots import (
    REF_COLOUR,
    Samples,
    draw_ratio,
    new_figure,
    ratio_axis,
    ratio_limits,
    sample_style,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.collections import QuadMesh
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    from caloforge.data.geometry import Geometry
    from caloforge.validation.result import EnergyRangeMeans

__all__ = ["layer_list", "plot_layer_energies_by_range", "plot_mean_images", "plot_profiles", "ratio_norm"]


def _layer_grid(geometry: Geometry, values: NDArray[np.float64], index: int) -> NDArray[np.float64]:
    layer = geometry.layers[index]
    return values[geometry.layer_slice(index)].reshape(layer.n_alpha, layer.n_r)


def layer_list(ids: Sequence[int]) -> str:
    """Layer ids as a caption writes them: ``0-3`` only where they are contiguous, else listed.

    Example:
        >>> layer_list([0, 1, 2, 3]), layer_list([0, 1, 2, 3, 12]), layer_list([5])
        ('layers 0-3', 'layers 0, 1, 2, 3, 12', 'layer 5')
    """
    ids = list(ids)
    if len(ids) == 1:
        return f"layer {ids[0]}"
    if ids == list(range(ids[0], ids[0] + len(ids))):
        return f"layers {ids[0]}-{ids[-1]}"
    return "layers " + ", ".join(str(i) for i in ids)


def ratio_norm(ratios: Sequence[NDArray[np.float64]]) -> Normalize:
    """A diverging colour scale centred at 1 whose range spans 2-98 % of the finite ratios (0.05-20 at most).

    Example:
        >>> import numpy as np
        >>> norm = ratio_norm([np.array([0.5, 0.9, 1.0, 1.2, np.nan])])
        >>> float(norm.vcenter), norm.vmin < 0.6, 1.15 < norm.vmax < 1.25
        (1.0, True, True)
    """
    # matplotlib's import time (about 0.5 s): only when a figure is drawn
    from matplotlib.colors import TwoSlopeNorm

    values = np.concatenate([np.asarray(r, dtype=np.float64).ravel() for r in ratios])
    values = values[np.isfinite(values)]
    lo, hi = (np.quantile(values, [0.02, 0.98]) if values.size else (0.5, 1.5))
    return TwoSlopeNorm(vcenter=1.0, vmin=float(np.clip(lo, 0.05, 0.95)), vmax=float(np.clip(hi, 1.05, 20.0)))


def plot_mean_images(geometry: Geometry, mean_reference: NDArray[np.float64],
                     mean_generated: Samples[NDArray[np.float64]], layers: Sequence[int], fig: Figure | None = None,
                     title: str | None = None, unit: str = "MeV") -> Figure:
    """Average shower per layer (polar, radial bins drawn with equal width): reference, generated, ratio.

    With several samples: the reference and each sample's ratio to it. The ratio's colour scale is
    diverging, centred at 1 (white), over the range of the ratios shown (:func:`ratio_norm`); voxels where the
    reference mean is below 1e-5 of its maximum are left blank.

    Args:
        geometry: The voxel geometry.
        mean_reference: Mean voxel energies of the reference, MeV, shape (V,).
        mean_generated: (label, the same for the generated showers) of each sample.
        layers: Layer positions (not ids) to draw, one row each.
        fig: A figure to draw into (default: a new one).
        title: The figure's title (default: "Average shower per layer").
        unit: The colour-bar unit of the means.
    """
    # matplotlib's import time (about 0.5 s): only when a figure is drawn
    from matplotlib.colors import LogNorm

    single = len(mean_generated) == 1
    cols = 3 if single else 1 + len(mean_generated)
    fig = new_figure(3.3 * cols + 1.0, 2.9 * len(layers) + 0.5, "constrained", fig)
    grid = fig.add_gridspec(len(layers), cols)
    vmax = max(float(mean_reference.max()), 1e-6)
    floor = max(vmax * 1e-5, 1e-6)
    norm = LogNorm(vmin=floor, vmax=vmax)
    rows = []
    for index in layers:
        layer = geometry.layers[index]
        split = math.ceil(72 / layer.n_alpha)  # sub-divide alpha bins so that rings look round
        ref = np.repeat(_layer_grid(geometry, mean_reference, index), split, axis=0)
        gens = [(label, np.repeat(_layer_grid(geometry, g, index), split, axis=0)) for label, g in mean_generated]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = [(label, np.where(ref > floor, gen / ref, np.nan)) for label, gen in gens]
        rows.append((layer, split, ref, gens, ratios))
    rnorm = ratio_norm([r for *_, ratios in rows for _, r in ratios])
    columns: dict[int, tuple[list[Axes], QuadMesh]] = {}  # every row of a column shares its colour scale
    for row, (layer, split, ref, gens, ratios) in enumerate(rows):
        theta = np.linspace(-np.pi, np.pi, layer.n_alpha * split + 1)
        radius = np.arange(layer.n_r + 1, dtype=float)
        panels: list[tuple[str, NDArray[np.float64], Normalize, str]] = [("reference", ref, norm, "viridis")]
        if single:
            panels.append(("generated", gens[0][1], norm, "viridis"))
        panels += [(f"{'generated' if single else label} / ref.", r, rnorm, "RdBu_r") for label, r in ratios]
        for col, (name, data, nrm, cmap) in enumerate(panels):
            ax = fig.add_subplot(grid[row, col], projection="polar")
            shown = np.where(data > 0, data, np.nan) if cmap == "viridis" else data
            # rasterised: the PDF holds the image, not one path per cell (2 x 10^4 cells a figure)
            mesh = ax.pcolormesh(theta, radius, np.ma.masked_invalid(shown).T, norm=nrm, cmap=cmap, shading="flat",
                                 rasterized=True)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            ax.set_title(f"layer {layer.id}: {name}", fontsize=11, y=1.0)  # y given: no tick-label layout
            columns.setdefault(col, ([], mesh))[0].append(ax)
    for col, (axes, mesh) in columns.items():  # one colour bar per column (the scales are shared), not per row
        shrink = 0.75 if len(axes) == 1 else 0.3
        if mesh.cmap.name != "viridis":
            fig.colorbar(mesh, ax=axes, shrink=shrink, label="ratio", extend="both")
        elif col == (1 if single else 0):
            fig.colorbar(mesh, ax=axes, shrink=shrink, label=unit)
    fig.suptitle(f"{title or 'Average shower per layer'} (rings: radial bins)")
    return fig


def _layer_sums(geometry: Geometry, values: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.array([values[geometry.layer_slice(i)].sum() for i in range(geometry.n_layers)])


def plot_profiles(geometry: Geometry, mean_reference: NDArray[np.float64],
                  mean_generated: Samples[NDArray[np.float64]], max_layers: int = 6,
                  fig: Figure | None = None) -> Figure:
    """Mean longitudinal profile (energy per layer, with the ratio); mean radial profiles of the most energetic layers.

    Args:
        geometry: The voxel geometry.
        mean_reference: Mean voxel energies of the reference, MeV, shape (V,).
        mean_generated: (label, the same for the generated showers) of each sample.
        max_layers: Radial profiles of at most this many layers (the most energetic; 3 with several samples).
        fig: A figure to draw into (default: a new one).
    """
    fig = new_figure(12.0, 5.0, "constrained", fig)
    grid = fig.add_gridspec(1, 2)
    sub = grid[0].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.0)
    ax_l, rax = fig.add_subplot(sub[0]), fig.add_subplot(sub[1])
    ax_l.sharex(rax)
    ax_r = fig.add_subplot(grid[1])
    e_ref = _layer_sums(geometry, mean_reference)
    x = np.arange(geometry.n_layers + 1) - 0.5
    ax_l.stairs(e_ref, x, fill=True, color=REF_COLOUR, alpha=0.35, label="reference")
    ratios = []
    for k, (label, gen) in enumerate(mean_generated):
        e_gen = _layer_sums(geometry, gen)
        ax_l.stairs(e_gen, x, linewidth=1.5, label=label, **sample_style(k))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios.append(np.where(e_ref > 0, e_gen / e_ref, np.nan))
    limits = ratio_limits(ratios)
    for k, ratio in enumerate(ratios):
        draw_ratio(rax, np.arange(geometry.n_layers, dtype=float), ratio, None, limits, color=sample_style(k)["color"])
    ratio_axis(rax, limits)
    step = max(1, geometry.n_layers // 15)
    rax.set_xticks(range(0, geometry.n_layers, step), [str(i) for i in geometry.layer_ids][::step])
    ax_l.tick_params(labelbottom=False)
    if (e_ref > 0).any():
        ax_l.set_yscale("log")
    rax.set_xlabel("layer id")
    ax_l.set_ylabel("mean energy [MeV]")
    ax_l.legend(frameon=False)
    n_top = max_layers if len(mean_generated) == 1 else min(max_layers, 3)
    top = sorted(np.argsort(-e_ref)[:n_top])
    for colour, index in zip([f"C{k}" for k in range(len(top))], top, strict=True):
        layer = geometry.layers[index]
        area = np.pi * np.diff(np.asarray(layer.r_edges) ** 2)
        ref = _layer_grid(geometry, mean_reference, index).sum(axis=0) / area
        ax_r.step(layer.r_edges[1:], ref, where="pre", color=colour, linewidth=2.0, label=f"layer {layer.id}")
        for k, (_, gen) in enumerate(mean_generated):
            ax_r.step(layer.r_edges[1:], _layer_grid(geometry, gen, index).sum(axis=0) / area, where="pre",
                      color=colour, linestyle=("--", "-.", ":", (0, (5, 1)))[k % 4])
    ax_r.plot([], [], color="grey", linewidth=2.0, label="reference (solid)")
    for k, (label, _) in enumerate(mean_generated):
        ax_r.plot([], [], color="grey", linestyle=("--", "-.", ":", (0, (5, 1)))[k % 4], label=label)
    ax_r.set_xscale("symlog", linthresh=1.0)
    ax_r.set_yscale("log")
    ax_r.set_xlabel("r [mm]")
    ax_r.set_ylabel(r"mean energy density [MeV/mm$^2$]")
    ax_r.legend(frameon=False, fontsize=9, ncol=2)
    fig.suptitle("Mean longitudinal and radial profiles")
    return fig


def plot_layer_energies_by_range(layer_ids: Sequence[int], geometry: Geometry,
                                 ranges: Samples[Sequence[EnergyRangeMeans]], fig: Figure | None = None) -> Figure:
    """Mean fraction of E_inc deposited in each layer, one panel per incident-energy range, with the ratio.

    ``ranges`` holds each sample's ranges (label, ranges); the reference is the first sample's (the same for all).
    """
    first = ranges[0][1]
    cols = min(len(first), 2)
    rows = math.ceil(len(first) / cols)
    height = 3.8 * rows + 0.8
    fig = new_figure(6.8 * cols, height, fig=fig)
    grid = fig.add_gridspec(rows, cols, hspace=0.55, wspace=0.25, left=0.08, right=0.98, bottom=0.5 / height,
                            top=1 - 0.8 / height)
    x = np.arange(len(layer_ids) + 1) - 0.5
    for k, means in enumerate(first):
        sub = grid[k // cols, k % cols].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.0)
        ax, rax = fig.add_subplot(sub[0]), fig.add_subplot(sub[1])
        ax.sharex(rax)
        ref = _layer_sums(geometry, means.mean_reference)
        ax.stairs(ref, x, fill=True, color=REF_COLOUR, alpha=0.35, label="reference")
        ratios = []
        for s, (label, sample) in enumerate(ranges):
            gen = _layer_sums(geometry, sample[k].mean_generated)
            ax.stairs(gen, x, linewidth=1.5, label=label, **sample_style(s))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios.append(np.where(ref > 0, gen / ref, np.nan))
        if (ref > 0).any():
            ax.set_yscale("log")
        ax.set_ylabel(r"$\langle E_\mathrm{layer}/E_\mathrm{inc}\rangle$", fontsize=11)
        counts = " / ".join(str(sample[k].n_generated) for _, sample in ranges)
        ax.set_title(f"E_inc = {means.label} ({means.n_reference} ref. / {counts} gen. showers)", fontsize=11)
        ax.tick_params(labelbottom=False)
        limits = ratio_limits(ratios)
        for s, ratio in enumerate(ratios):
            draw_ratio(rax, np.arange(len(layer_ids), dtype=float), ratio, None, limits, color=sample_style(s)["color"])
        ratio_axis(rax, limits)
        step = max(1, len(layer_ids) // 15)
        rax.set_xticks(range(0, len(layer_ids), step), [str(i) for i in layer_ids][::step])
        rax.set_xlabel("layer id")
        if k == 0:
            ax.legend(frameon=False, fontsize=10)
    fig.suptitle("Mean energy per layer, per incident-energy range", y=1 - 0.25 / height)
    return fig
