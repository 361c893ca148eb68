"""The arrays the transport kernel reads: sub-layers of the detector, per-material tables, voxel binning.

:func:`build_layout` unrolls every slab of a :class:`~caloforge.refsim.detector.Detector` into its
real sub-layers (one sampling period after the other, the last one cut at the slab's end; a
homogeneous slab is one sub-layer), and tabulates the cross sections of :mod:`.physics` for each
element on a logarithmic energy grid (the kernel interpolates linearly in log E).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from caloforge.data.geometry import Geometry
from caloforge.errors import ConfigError
from caloforge.refsim.cascade import physics as ph
from caloforge.refsim.cascade.config import CascadeConfig
from caloforge.refsim.detector import Detector
from caloforge.refsim.materials import Element

__all__ = ["GRID_PER_DECADE", "GRID_RANGE", "Layout", "Tables", "build_layout", "build_tables"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

GRID_RANGE = (1e-3, 1e7)
"""Energies of the tables, MeV (1 keV - 10 TeV); outside, the end values are used."""
GRID_PER_DECADE = 50
"""Table points per decade of energy."""

# rows of Tables.data[m]
PAIR, COMPTON, PHOTO, DEDX_E, DEDX_P, BREM, MOLLER, BHABHA, DEDX_PI, MSC = range(10)


@dataclass(frozen=True)
class Tables:
    """Per-element tables, ``data[m, row, i]`` at energies ``GRID_RANGE[0] * 10**(i / GRID_PER_DECADE)``.

    Rows: pair, Compton and photo-electric attenuation (1/mm), continuous loss of e- and e+
    (MeV/mm), bremsstrahlung (above the cut), Møller and Bhabha (above the cut) rates (1/mm), and the
    charged-pion stopping power (MeV/mm), the e± inverse transport mean free path 1/λ1 (1/mm).
    ``props[m]``: X0 (mm), Z, λ_I (mm), electron density (1/mm³).
    """

    names: tuple[str, ...]
    data: F64
    props: F64


@dataclass(frozen=True)
class Layout:
    """The detector as the kernel sees it (all arrays per sub-layer, front to back).

    Attributes:
        z_edges: Sub-layer boundaries along the axis, mm (n+1,).
        material: Element index into :class:`Tables` (n,).
        active: 1 where deposits are read out (the active medium of an instrumented slab).
        layer: Geometry layer position read out by the sub-layer, or -1.
        calibration: File MeV per MeV deposited in the active medium (the readout's 1/SF).
        slab: Slab index of each sub-layer.
        local_scale: File MeV per MeV of a soft particle read where it is (hybrid), per sub-layer;
            zeros until calibrated (``run.calibrated_layout``).
        slab_layer: Geometry layer position of the sub-layer's slab (whatever its medium), or -1.
        hadron_visible, hadron_scale: Active share and file MeV per MeV of slow-nucleon energy (the slab's
            MIP sampling fraction; zeros until calibrated).
        r_edges, r_offset, n_r, n_alpha, voxel_offset: Voxel binning per geometry layer.
    """

    z_edges: F64
    material: I64
    active: I64
    layer: I64
    calibration: F64
    slab: I64
    r_edges: F64
    r_offset: I64
    n_r: I64
    n_alpha: I64
    voxel_offset: I64
    tables: Tables
    local_scale: F64
    slab_layer: I64
    hadron_visible: F64
    hadron_scale: F64

    @property
    def depth_mm(self) -> float:
        """Total depth, mm."""
        return float(self.z_edges[-1])


def energy_grid() -> F64:
    """The tables' energies, MeV."""
    lo, hi = GRID_RANGE
    n = round(math.log10(hi / lo) * GRID_PER_DECADE) + 1
    return lo * 10.0 ** (np.arange(n) / GRID_PER_DECADE)


def build_tables(elements: tuple[Element, ...], config: CascadeConfig) -> Tables:
    """Tabulate :mod:`.physics` for ``elements`` with the cuts of ``config``."""
    e = energy_grid()
    rows = []
    for el in elements:
        if el.name not in ph.EXCITATION_EV:
            msg = f"expected elements in {sorted(ph.EXCITATION_EV)} but got '{el.name}', in the cascade tables"
            raise ConfigError(msg)
        rows.append(np.stack([
            ph.pair_mu(el, e),
            ph.compton_mu(el, e),
            ph.photo_mu(el, e),
            ph.restricted_dedx(el, e, config.delta_cut_mev, config.brems_cut_mev, positron=False),
            ph.restricted_dedx(el, e, config.delta_cut_mev, config.brems_cut_mev, positron=True),
            ph.brems_mu(el, e, config.brems_cut_mev),
            ph.delta_mu(el, e, config.delta_cut_mev, positron=False),
            ph.delta_mu(el, e, config.delta_cut_mev, positron=True),
            ph.pion_dedx(el, e),
            ph.transport_mu(el, e),
        ]))
    props = np.array([[el.x0_mm, el.z, el.lambda_mm, ph.electron_density(el)] for el in elements])
    return Tables(tuple(el.name for el in elements), np.ascontiguousarray(np.stack(rows)), props)


@lru_cache(maxsize=16)
def build_layout(detector: Detector, geometry: Geometry, config: CascadeConfig) -> Layout:
    """Unroll ``detector``'s slabs into sub-layers and tabulate their materials (cached)."""
    detector.check_geometry(geometry)
    position = {lid: i for i, lid in enumerate(geometry.layer_ids)}
    elements: dict[str, Element] = {}
    z, mat, act, lay, cal, slab_of, lay_of_slab = [0.0], [], [], [], [], [], []
    for k, slab in enumerate(detector.slabs):
        parts = slab.material.components
        if not parts:
            msg = f"expected a material with sub-layers (materials.Stack, Material.homogeneous), in slab {slab.name}"
            raise ConfigError(msg)
        read = slab.readout is not None and slab.layer_id in position
        layer = position[slab.layer_id] if read and slab.layer_id is not None else -1
        calib = slab.readout.calibration if read and slab.readout is not None else 0.0
        lay_of_slab.append(layer)
        homogeneous = len(parts) == 1
        end = z[-1] + slab.thickness_mm
        while z[-1] < end - 1e-9:
            for part in parts:
                elements.setdefault(part.element.name, part.element)
                top = end if homogeneous else min(end, z[-1] + part.thickness_mm)
                if top <= z[-1] + 1e-12:
                    continue
                z.append(top)
                mat.append(list(elements).index(part.element.name))
                active = read and (homogeneous or part.active)
                act.append(int(active))
                lay.append(layer if active else -1)
                cal.append(calib if active else 0.0)
                slab_of.append(k)
    edges: list[float] = []
    offsets, n_r, n_a, vox = [0], [], [], []
    for li, gl in enumerate(geometry.layers):
        edges.extend(gl.r_edges)
        offsets.append(len(edges))
        n_r.append(gl.n_r)
        n_a.append(gl.n_alpha)
        vox.append(geometry.layer_slice(li).start)
    return Layout(
        np.array(z), np.array(mat, dtype=np.int64), np.array(act, dtype=np.int64), np.array(lay, dtype=np.int64),
        np.array(cal), np.array(slab_of, dtype=np.int64), np.array(edges, dtype=np.float64),
        np.array(offsets, dtype=np.int64), np.array(n_r, dtype=np.int64), np.array(n_a, dtype=np.int64),
        np.array(vox, dtype=np.int64), build_tables(tuple(elements.values()), config),
        np.zeros(len(mat)), np.array([lay_of_slab[k] for k in slab_of], dtype=np.int64), np.zeros(len(mat)),
        np.zeros(len(mat)),
    )
