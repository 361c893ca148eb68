"""Figures of the average shower: images per layer, longitudinal and radial profiles, per energy range.

Functions take the geometry and mean voxel energies (arrays, MeV), never a whole evaluation
result, and an optional ``fig``; they return the figure. Style and helpers are those of
:mod:`caloforge.validation.plots`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from caloforge.validation.plots import GEN_COLOUR, REF_COLOUR, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from caloforge.data.geometry import Geometry
    from caloforge.validation.result import EnergyRangeMeans

__all__ = ["plot_layer_energies_by_range", "plot_mean_images", "plot_profiles"]


def _layer_grid(geometry: Geometry, values: NDArray[np.float64], index: int) -> NDArray[np.float64]:
    layer = geometry.layers[index]
    return values[geometry.layer_slice(index)].reshape(layer.n_alpha, layer.n_r)


def plot_mean_images(geometry: Geometry, mean_reference: NDArray[np.float64], mean_generated: NDArray[np.float64],
                     layers: Sequence[int], fig: Figure | None = None, title: str | None = None,
                     unit: str = "MeV") -> Figure:
    """Average shower per layer (polar, radial bins drawn with equal width): reference, generated, ratio.

    Args:
        geometry: The voxel geometry.
        mean_reference: Mean voxel energies of the reference, MeV, shape (V,).
        mean_generated: The same for the generated showers.
        layers: Layer positions (not ids) to draw, one row each.
        fig: A figure to draw into (default: a new one).
        title: The figure's title (default: "Average shower per layer").
        unit: The colour-bar unit of the means.
    """
    from matplotlib.colors import LogNorm, Normalize

    fig = new_figure(9.0, 2.6 * len(layers) + 0.4, "constrained", fig)
    grid = fig.add_gridspec(len(layers), 3)
    vmax = max(float(mean_reference.max()), 1e-6)
    norm = LogNorm(vmin=max(vmax * 1e-5, 1e-6), vmax=vmax)
    for row, index in enumerate(layers):
        layer = geometry.layers[index]
        split = math.ceil(72 / layer.n_alpha)  # sub-divide alpha bins so that rings look round
        theta = np.linspace(-np.pi, np.pi, layer.n_alpha * split + 1)
        radius = np.arange(layer.n_r + 1, dtype=float)
        ref = np.repeat(_layer_grid(geometry, mean_reference, index), split, axis=0)
        gen = np.repeat(_layer_grid(geometry, mean_generated, index), split, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(ref > 0, gen / ref, np.nan)
        panels = (("reference", ref, norm, "viridis"), ("generated", gen, norm, "viridis"),
                  ("generated / reference", ratio, Normalize(0.5, 1.5), "RdBu_r"))
        for col, (name, data, nrm, cmap) in enumerate(panels):
            ax = fig.add_subplot(grid[row, col], projection="polar")
            mesh = ax.pcolormesh(theta, radius, np.ma.masked_invalid(np.where(data > 0, data, np.nan)
                                                                     if col < 2 else data).T,
                                 norm=nrm, cmap=cmap, shading="flat")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            ax.set_title(f"layer {layer.id}: {name}", fontsize=9)
            if col != 0:
                fig.colorbar(mesh, ax=ax, shrink=0.7, label=unit if col == 1 else "ratio")
    fig.suptitle(f"{title or 'Average shower per layer'} (rings: radial bins)")
    return fig


def plot_profiles(geometry: Geometry, mean_reference: NDArray[np.float64], mean_generated: NDArray[np.float64],
                  max_layers: int = 6, fig: Figure | None = None) -> Figure:
    """Mean longitudinal profile (energy per layer) and mean radial profiles of the most energetic layers.

    Args:
        geometry: The voxel geometry.
        mean_reference: Mean voxel energies of the reference, MeV, shape (V,).
        mean_generated: The same for the generated showers.
        max_layers: Radial profiles of at most this many layers (the most energetic).
        fig: A figure to draw into (default: a new one).
    """
    fig = new_figure(10.0, 4.2, "constrained", fig)
    ax_l, ax_r = fig.subplots(1, 2)
    e_ref = np.array([mean_reference[geometry.layer_slice(i)].sum() for i in range(geometry.n_layers)])
    e_gen = np.array([mean_generated[geometry.layer_slice(i)].sum() for i in range(geometry.n_layers)])
    x = np.arange(geometry.n_layers + 1) - 0.5
    ax_l.stairs(e_ref, x, fill=True, color=REF_COLOUR, alpha=0.35, label="reference")
    ax_l.stairs(e_gen, x, color=GEN_COLOUR, linewidth=1.5, label="generated")
    ax_l.set_xticks(range(geometry.n_layers))
    ax_l.set_xticklabels([str(i) for i in geometry.layer_ids], fontsize=7 if geometry.n_layers > 15 else 9)
    if (e_ref > 0).any():
        ax_l.set_yscale("log")
    ax_l.set_xlabel("layer id")
    ax_l.set_ylabel("mean energy [MeV]")
    ax_l.legend(frameon=False)
    top = np.argsort(-e_ref)[:max_layers]
    colours = [f"C{k}" for k in range(len(top))]
    for colour, index in zip(colours, sorted(top), strict=True):
        layer = geometry.layers[index]
        area = np.pi * np.diff(np.asarray(layer.r_edges) ** 2)
        ref = _layer_grid(geometry, mean_reference, index).sum(axis=0) / area
        gen = _layer_grid(geometry, mean_generated, index).sum(axis=0) / area
        ax_r.step(layer.r_edges[1:], ref, where="pre", color=colour, label=f"layer {layer.id}")
        ax_r.step(layer.r_edges[1:], gen, where="pre", color=colour, linestyle="--")
    ax_r.plot([], [], color="grey", label="reference (solid)")
    ax_r.plot([], [], color="grey", linestyle="--", label="generated (dashed)")
    ax_r.set_xscale("symlog", linthresh=1.0)
    ax_r.set_yscale("log")
    ax_r.set_xlabel("r [mm]")
    ax_r.set_ylabel(r"mean energy density [MeV/mm$^2$]")
    ax_r.legend(frameon=False, fontsize=8, ncol=2)
    fig.suptitle("Mean longitudinal and radial profiles")
    return fig




def plot_layer_energies_by_range(layer_ids: Sequence[int], geometry: Geometry, ranges: Sequence[EnergyRangeMeans],
                                 fig: Figure | None = None) -> Figure:
    """Mean fraction of E_inc deposited in each layer, one panel per incident-energy range, with the ratio."""
    cols = min(len(ranges), 2)
    rows = math.ceil(len(ranges) / cols)
    fig = new_figure(6.5 * cols, 3.6 * rows + 0.4, fig=fig)
    grid = fig.add_gridspec(rows, cols, hspace=0.5, wspace=0.3, left=0.08, right=0.98, bottom=0.08, top=0.9)
    x = np.arange(len(layer_ids) + 1) - 0.5
    for k, means in enumerate(ranges):
        sub = grid[k // cols, k % cols].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.0)
        ax, rax = fig.add_subplot(sub[0]), fig.add_subplot(sub[1])
        ax.sharex(rax)
        ref = np.array([means.mean_reference[geometry.layer_slice(i)].sum() for i in range(len(layer_ids))])
        gen = np.array([means.mean_generated[geometry.layer_slice(i)].sum() for i in range(len(layer_ids))])
        ax.stairs(ref, x, fill=True, color=REF_COLOUR, alpha=0.35, label="reference")
        ax.stairs(gen, x, color=GEN_COLOUR, linewidth=1.5, label="generated")
        if (ref > 0).any():
            ax.set_yscale("log")
        ax.set_ylabel(r"$\langle E_\mathrm{layer}/E_\mathrm{inc}\rangle$", fontsize=9)
        ax.set_title(f"E_inc {means.label} ({means.n_reference} / {means.n_generated} showers)", fontsize=9)
        ax.tick_params(labelbottom=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            rax.stairs(np.where(ref > 0, gen / ref, np.nan), x, color=GEN_COLOUR)
        rax.axhline(1.0, color="grey", linewidth=0.8)
        rax.set_ylim(0.5, 1.5)
        rax.set_yticks([0.75, 1.0, 1.25])
        rax.set_ylabel("gen/ref", fontsize=8)
        step = max(1, len(layer_ids) // 15)
        rax.set_xticks(range(0, len(layer_ids), step), [str(i) for i in layer_ids][::step], fontsize=8)
        rax.set_xlabel("layer id", fontsize=9)
        if k == 0:
            ax.legend(frameon=False, fontsize=8)
    fig.suptitle("Mean energy per layer, per incident-energy range")
    return fig
