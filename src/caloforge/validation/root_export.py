"""The report's histograms for ROOT: TH1D with a title and axis titles (with units), written with uproot.

Each feature histogram becomes ``<name>/reference`` and ``<name>/generated`` (one TH1D per sample,
the same bins); the title says the feature, the layer or incident energy, and the sample; the x
axis the quantity and its unit in ROOT's TLatex (``E_{tot} [MeV]``), the y axis what is counted.
Under- and overflow bins are empty: the histograms hold the counts the report's figures show.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from caloforge.data.showers import format_energy
from caloforge.validation.metrics.separation import FeatureHistogram

__all__ = ["histogram_titles", "latex", "write_root"]

_TITLES = {
    "response": "total-energy response",
    "response_per_energy": "total-energy response",
    "e_total": "total deposited energy",
    "e_layer": "energy in layer",
    "centre_eta": "centre of energy in eta",
    "centre_phi": "centre of energy in phi",
    "centre_r": "centre of energy in r",
    "width_eta": "shower width in eta",
    "width_phi": "shower width in phi",
    "width_r": "shower width in r",
    "sparsity": "sparsity (fraction of voxels above the readout threshold)",
    "voxel": "voxel energy spectrum",
}
_UNITLESS = {"response": "E_{tot}/E_{inc} [1]", "response_per_energy": "E_{tot}/E_{inc} [1]",
             "sparsity": "fraction of voxels above threshold [1]"}


def latex(label: str) -> str:
    """A matplotlib mathtext label in ROOT's TLatex: ``$E_\\mathrm{tot}$ [MeV]`` is ``E_{tot} [MeV]``.

    Example:
        >>> latex(r"centre of energy in $\\eta$ [mm]")
        'centre of energy in #eta [mm]'
    """
    text = re.sub(r"\\mathrm\{([^}]*)\}", r"{\1}", label)  # E_\mathrm{tot} -> E_{tot}
    text = re.sub(r"\\([A-Za-z]+)", r"#\1", text)  # Greek letters and symbols: \eta -> #eta
    return text.replace("$", "")


def histogram_titles(hist: FeatureHistogram, sample: str) -> tuple[str, str, str]:
    """The TH1D's title, x-axis title (with its unit) and y-axis title for ``hist`` of ``sample``."""
    what = _TITLES.get(hist.family, hist.family.replace("_", " "))
    if hist.layer is not None:
        what += f" {hist.layer}" if hist.family == "e_layer" else f", layer {hist.layer}"
    if hist.family == "response_per_energy":
        energy = hist.name.removeprefix("response_E")
        try:
            what += f" at E_{{inc}} = {format_energy(float(energy))}"
        except ValueError:
            what += f" ({hist.name})"
    x_title = _UNITLESS.get(hist.family, latex(hist.label))
    y_title = "voxels" if hist.family == "voxel" else "showers"
    return f"{what} ({sample})", x_title, y_title


def _th1d(uproot: Any, name: str, titles: tuple[str, str, str], counts: NDArray[np.float64],
          edges: NDArray[np.float64]) -> Any:
    """One TH1D from counts and edges (no under/overflow), with its titles and statistics."""
    title, x_title, y_title = titles
    centres = 0.5 * (edges[1:] + edges[:-1])
    data = np.concatenate([[0.0], counts, [0.0]])
    uniform = bool(np.allclose(np.diff(edges), edges[1] - edges[0], rtol=1e-9))
    x_axis = uproot.writing.identify.to_TAxis("xaxis", x_title, len(counts), float(edges[0]), float(edges[-1]),
                                              fXbins=None if uniform else edges.astype(np.float64))
    y_axis = uproot.writing.identify.to_TAxis("yaxis", y_title, 1, 0.0, 1.0)
    total = float(counts.sum())
    return uproot.writing.identify.to_TH1x(
        name, title, data, fEntries=total, fTsumw=total, fTsumw2=total, fTsumwx=float((counts * centres).sum()),
        fTsumwx2=float((counts * centres**2).sum()), fSumw2=data.copy(), fXaxis=x_axis, fYaxis=y_axis)


def write_root(path: str | Path, histograms: Iterable[FeatureHistogram],
               samples: Mapping[str, str] | None = None) -> bool:
    """Write every histogram as TH1D pairs ``<name>/reference`` and ``<name>/generated``; False without uproot.

    Args:
        path: The ROOT file (replaced).
        histograms: The feature histograms (reference and generated counts on the same bins).
        samples: How the titles name the two samples (default ``reference`` and ``generated``).
    """
    try:
        uproot = importlib.import_module("uproot")
    except ImportError:
        return False
    names = {"reference": "reference", "generated": "generated", **(samples or {})}
    with uproot.recreate(path) as file:
        for hist in histograms:
            edges = np.asarray(hist.edges, dtype=np.float64)
            for key, counts in (("reference", hist.reference), ("generated", hist.generated)):
                file[f"{hist.name}/{key}"] = _th1d(uproot, key, histogram_titles(hist, names[key]),
                                                   np.asarray(counts, dtype=np.float64), edges)
    return True
