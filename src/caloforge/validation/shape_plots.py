"""Shower shapes per incident energy: the radial centre and width of the mean shower, per layer, vs energy.

The mean shower of each incident-energy range (:class:`~caloforge.validation.result.EnergyRangeMeans`,
voxel energies over E_inc averaged over the range's showers) gives, in each layer, its energy-weighted
radial centre ``<r>`` (bin mid-points) and width ``sqrt(<r^2> - <r>^2)``. They equal the per-shower centre
and width averaged with weights E_layer/E_inc, so no extra pass over the data is needed; a model that
gets the shape wrong at some energies shows it here, energy by energy.
"""

from __future__ import annotations

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
    from matplotlib.figure import Figure

    from caloforge.data.geometry import Geometry
    from caloforge.validation.result import EnergyRangeMeans

__all__ = ["plot_shapes_by_energy", "radial_moments"]


def radial_moments(geometry: Geometry, mean: NDArray[np.float64], index: int) -> tuple[float, float]:
    """Energy-weighted radial centre and width (mm) of the mean shower ``mean`` in the layer at ``index``.

    NaN where the layer is empty.

    Example:
        >>> import numpy as np
        >>> from caloforge.data.geometry import Geometry, Layer
        >>> g = Geometry((Layer(0, (0.0, 2.0, 4.0), 1),), name="two-rings")
        >>> radial_moments(g, np.array([1.0, 1.0]), 0)
        (2.0, 1.0)
    """
    layer = geometry.layers[index]
    edges = np.asarray(layer.r_edges, dtype=np.float64)
    energy = mean[geometry.layer_slice(index)].reshape(layer.n_alpha, layer.n_r).sum(axis=0)
    total = float(energy.sum())
    if total <= 0:
        return float("nan"), float("nan")
    r = 0.5 * (edges[1:] + edges[:-1])
    centre = float((r * energy).sum() / total)
    return centre, float(np.sqrt(max(float((r * r * energy).sum() / total) - centre**2, 0.0)))


def plot_shapes_by_energy(geometry: Geometry, ranges: Samples[Sequence[EnergyRangeMeans]], max_layers: int = 4,
                          fig: Figure | None = None) -> Figure:
    """Radial centre (top) and width (bottom) of the mean shower vs incident energy, in the most energetic layers.

    Args:
        geometry: The voxel geometry.
        ranges: (label, energy ranges) of each generated sample; the reference is the first sample's.
        max_layers: Panels for at most this many layers (the most energetic of the reference).
        fig: A figure to draw into (default: a new one).
    """
    first = ranges[0][1]
    total = np.sum([m.mean_reference for m in first], axis=0)
    energetic = np.argsort([-total[geometry.layer_slice(i)].sum() for i in range(geometry.n_layers)])
    layers = sorted(int(i) for i in energetic[:max_layers])
    # matplotlib's import time (about 0.5 s): only when a figure is drawn
    from matplotlib.ticker import NullFormatter

    energy = np.array([np.sqrt(max(m.energy_low, 1e-9) * m.energy_high) for m in first])
    cols = len(layers)
    fig = new_figure(max(3.6 * cols, 6.5), 7.6, "constrained", fig)
    grid = fig.add_gridspec(2, cols)
    for row, (what, unit) in enumerate((("centre", r"$\langle r\rangle$ [mm]"), ("width", r"$\sigma_r$ [mm]"))):
        for col, index in enumerate(layers):
            sub = grid[row, col].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.0)
            ax, rax = fig.add_subplot(sub[0]), fig.add_subplot(sub[1])
            ax.sharex(rax)
            ref = np.array([radial_moments(geometry, m.mean_reference, index)[row] for m in first])
            ax.plot(energy, ref, color=REF_COLOUR, marker="o", linewidth=2.0, label="reference")
            ratios = []
            for k, (label, sample) in enumerate(ranges):
                gen = np.array([radial_moments(geometry, m.mean_generated, index)[row] for m in sample])
                ax.plot(energy, gen, marker="s", markersize=4, label=label, **sample_style(k))
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratios.append(np.where(ref > 0, gen / ref, np.nan))
            limits = ratio_limits(ratios)
            for k, ratio in enumerate(ratios):
                draw_ratio(rax, energy, ratio, None, limits, color=sample_style(k)["color"])
            ratio_axis(rax, limits)
            rax.set_xscale("log")
            rax.xaxis.set_minor_formatter(NullFormatter())
            rax.set_xlabel(r"$E_\mathrm{inc}$ [MeV]")
            ax.tick_params(labelbottom=False)
            ax.set_ylabel(unit if col == 0 else "")
            ax.set_title(f"layer {geometry.layers[index].id}: {what}", fontsize=11)
            if row == 0 and col == 0:
                ax.legend(frameon=False, fontsize=9)
    fig.suptitle("Radial centre and width of the mean shower per incident energy")
    return fig
