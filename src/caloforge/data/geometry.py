"""Calorimeter voxel geometries in the CaloChallenge convention.

A :class:`Geometry` is an ordered list of :class:`Layer` s. Each layer is a
polar grid around the shower axis: radial bin edges in mm and a number of
equal azimuthal (alpha) bins spanning [-pi, pi]. Voxels are flattened in the
CaloChallenge order: layer, then alpha, then r fastest.

References:
    CaloChallenge 2022, https://calochallenge.github.io/homepage/ (binning XML files).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from caloforge.data.checks import check_integer
from caloforge.data.preset_layers import PRESET_LAYERS
from caloforge.errors import GeometryError, GeometryMismatchError

__all__ = ["MAX_VOXELS", "MAX_XML_BYTES", "Geometry", "Layer", "presets"]

MAX_VOXELS = 10**7
"""Most voxels a geometry may have (ds3 has 40500); more is a typo or a forged binning file."""

MAX_XML_BYTES = 4 << 20
"""Largest binning XML file read (the official ones are under 8 KB)."""


@dataclass(frozen=True)
class Layer:
    """One calorimeter layer: radial edges (mm) and the number of alpha bins.

    Args:
        id: Layer id as written in the binning XML (ids need not be contiguous).
        r_edges: Radial bin edges in mm, strictly increasing, starting at >= 0.
        n_alpha: Number of equal azimuthal bins over [-pi, pi].
    """

    id: int
    r_edges: tuple[float, ...]
    n_alpha: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", check_integer(self.id, "the layer id", -(2**31), 2**31 - 1, "a Layer",
                                                     GeometryError))
        where = f"layer {self.id}"
        try:
            edges = tuple(float(r) for r in self.r_edges)
        except (TypeError, ValueError):
            edges = ()
        if not 2 <= len(edges) <= MAX_VOXELS + 1 or not all(math.isfinite(r) for r in edges):
            msg = f"expected 2 to {MAX_VOXELS + 1} finite radial edges (mm) but got {self.r_edges!r:.120}, in {where}"
            raise GeometryError(msg)
        object.__setattr__(self, "r_edges", edges)
        if edges[0] < 0 or any(b <= a for a, b in itertools.pairwise(edges)):
            msg = f"expected radial edges >= 0 and strictly increasing but got {edges!r:.120}, in {where}"
            raise GeometryError(msg)
        object.__setattr__(self, "n_alpha", check_integer(self.n_alpha, "n_alpha", 1, MAX_VOXELS, where, GeometryError))
        if self.n_voxels > MAX_VOXELS:
            msg = f"expected at most {MAX_VOXELS} voxels but got {self.n_alpha} x {self.n_r} bins, in {where}"
            raise GeometryError(msg)

    @property
    def n_r(self) -> int:
        """Number of radial bins."""
        return len(self.r_edges) - 1

    @property
    def n_voxels(self) -> int:
        """Number of voxels in this layer (n_alpha * n_r)."""
        return self.n_alpha * self.n_r

    @property
    def r_centres(self) -> NDArray[np.float64]:
        """Radial bin mid-points in mm, shape (n_r,)."""
        e = np.asarray(self.r_edges, dtype=np.float64)
        centres: NDArray[np.float64] = 0.5 * (e[1:] + e[:-1])
        return centres

    @property
    def alpha_edges(self) -> NDArray[np.float64]:
        """Azimuthal bin edges in rad, shape (n_alpha + 1,), from -pi to pi."""
        return np.linspace(-math.pi, math.pi, self.n_alpha + 1)

    @property
    def alpha_centres(self) -> NDArray[np.float64]:
        """Azimuthal bin centres in rad; 0 for a layer with a single alpha bin."""
        e = self.alpha_edges
        return 0.5 * (e[1:] + e[:-1])


@dataclass(frozen=True, eq=False)
class Geometry:
    """An ordered set of layers with the CaloChallenge voxel order.

    Two geometries are equal when their layers are equal; the name is a label.

    Args:
        layers: The layers, front to back.
        name: A label (a preset name, or the XML file stem).
        particle: The particle the binning was made for, if known.

    Example:
        >>> g = Geometry.preset("ds1-photons")
        >>> g.n_voxels, g.n_layers, g.layer_ids
        (368, 5, (0, 1, 2, 3, 12))
    """

    layers: tuple[Layer, ...]
    name: str = "custom"
    particle: str | None = None
    _offsets: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        if not layers:
            msg = "expected at least one layer but got none"
            raise GeometryError(msg)
        if not all(isinstance(layer, Layer) for layer in layers):
            msg = f"expected Layer objects but got {[type(x).__name__ for x in layers][:5]}"
            raise GeometryError(msg)
        ids = [layer.id for layer in layers]
        if len(set(ids)) != len(ids):
            msg = f"expected unique layer ids but got {ids}"
            raise GeometryError(msg)
        total = sum(layer.n_voxels for layer in layers)
        if total > MAX_VOXELS:
            msg = f"expected at most {MAX_VOXELS} voxels but got {total} in {len(layers)} layers"
            raise GeometryError(msg)
        offsets = np.concatenate([[0], np.cumsum([layer.n_voxels for layer in layers])])
        object.__setattr__(self, "_offsets", tuple(int(o) for o in offsets))

    # ----------------------------------------------------------------- basics
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Geometry) and self.layers == other.layers

    def __hash__(self) -> int:
        return hash(self.layers)

    def __repr__(self) -> str:
        return f"Geometry(name={self.name!r}, n_layers={self.n_layers}, n_voxels={self.n_voxels}, hash={self.hash})"

    @property
    def n_voxels(self) -> int:
        """Total number of voxels."""
        return self._offsets[-1]

    @property
    def n_layers(self) -> int:
        """Number of layers."""
        return len(self.layers)

    @property
    def layer_ids(self) -> tuple[int, ...]:
        """The XML ids of the layers, in order."""
        return tuple(layer.id for layer in self.layers)

    @property
    def alpha_layers(self) -> tuple[int, ...]:
        """Indices (not ids) of the layers with more than one alpha bin."""
        return tuple(i for i, layer in enumerate(self.layers) if layer.n_alpha > 1)

    @property
    def dataset(self) -> str | None:
        """The CaloChallenge dataset of this binning: ``ds1-photons``, ``ds1-pions``, ``ds2``, ``ds3`` or None.

        Recognised by the binning itself, not the name, so an official binning XML is its dataset;
        the facts of each dataset are in :mod:`caloforge.data.datasets`.
        """
        return next((name for name, preset in presets().items() if preset == self), None)

    @cached_property
    def hash(self) -> str:
        """A stable 16-hex-digit hash of the binning (ids, edges, alpha bins); the name is not part of it."""
        blob = json.dumps(self._layers_payload(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def layer_slice(self, index: int) -> slice:
        """The voxel slice of layer ``index`` (position, not id) in the flat voxel vector."""
        return slice(self._offsets[index], self._offsets[index + 1])

    # ------------------------------------------------------- voxel ordering
    def split_layers(self, showers: NDArray[Any]) -> list[NDArray[Any]]:
        """Reshape flat showers (N, V) into one (N, n_alpha, n_r) view per layer.

        Raises:
            GeometryMismatchError: if the last axis is not ``n_voxels`` long.
        """
        self.check_voxels(showers.shape[-1])
        lead = showers.shape[:-1]
        return [
            showers[..., self.layer_slice(i)].reshape(*lead, layer.n_alpha, layer.n_r)
            for i, layer in enumerate(self.layers)
        ]

    def join_layers(self, layers: list[NDArray[Any]]) -> NDArray[Any]:
        """Inverse of :meth:`split_layers`: flatten per-layer (N, n_alpha, n_r) arrays to (N, V)."""
        if len(layers) != self.n_layers:
            msg = f"expected {self.n_layers} layer arrays but got {len(layers)}"
            raise GeometryMismatchError(msg)
        lead = layers[0].shape[:-2]
        return np.concatenate([a.reshape(*lead, -1) for a in layers], axis=-1)

    def check_voxels(self, n_voxels: int, where: str = "the data",
                     advice: str = "pass the geometry that the data was made with") -> None:
        """Raise :class:`GeometryMismatchError` unless ``n_voxels`` matches this geometry; ``advice`` ends it."""
        if n_voxels != self.n_voxels:
            hint = [name for name, preset in presets().items() if preset.n_voxels == n_voxels]
            also = f"; presets with {n_voxels} voxels: {', '.join(hint)}" if hint else ""
            msg = (
                f"expected {self.n_voxels} voxels for geometry '{self.name}' but got {n_voxels}, "
                f"in {where}{also}; {advice}"
            )
            raise GeometryMismatchError(msg)

    # --------------------------------------------------------- voxel centres
    @cached_property
    def voxel_layer(self) -> NDArray[np.int64]:
        """Layer index (position) of each voxel, shape (V,)."""
        return np.repeat(np.arange(self.n_layers), [layer.n_voxels for layer in self.layers])

    @cached_property
    def voxel_r(self) -> NDArray[np.float64]:
        """Radial bin centre (mm) of each voxel, shape (V,)."""
        return np.concatenate([np.tile(layer.r_centres, layer.n_alpha) for layer in self.layers])

    @cached_property
    def voxel_alpha(self) -> NDArray[np.float64]:
        """Alpha bin centre (rad) of each voxel, shape (V,); 0 in layers with one alpha bin."""
        return np.concatenate([np.repeat(layer.alpha_centres, layer.n_r) for layer in self.layers])

    @property
    def voxel_eta(self) -> NDArray[np.float64]:
        """Voxel centre 'eta' coordinate r*cos(alpha) in mm, as the CaloChallenge helper defines it."""
        return self.voxel_r * np.cos(self.voxel_alpha)

    @property
    def voxel_phi(self) -> NDArray[np.float64]:
        """Voxel centre 'phi' coordinate r*sin(alpha) in mm, as the CaloChallenge helper defines it."""
        return self.voxel_r * np.sin(self.voxel_alpha)

    # ---------------------------------------------------------- persistence
    def _layers_payload(self) -> list[dict[str, Any]]:
        return [{"id": layer.id, "r_edges": list(layer.r_edges), "n_alpha": layer.n_alpha} for layer in self.layers]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description; :meth:`from_dict` inverts it exactly."""
        return {"name": self.name, "particle": self.particle, "hash": self.hash, "layers": self._layers_payload()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Geometry:
        """Rebuild a geometry written by :meth:`to_dict`, checking its hash."""
        try:
            particle = data.get("particle")
            if particle is not None and not isinstance(particle, str):
                msg = f"expected the geometry's particle to be a name or null but got {particle!r:.60}"
                raise GeometryError(msg)
            layers = tuple(Layer(d["id"], d["r_edges"], d["n_alpha"]) for d in data["layers"])
            geometry = cls(layers, name=str(data.get("name", "custom")), particle=particle)
        except GeometryError as err:
            msg = f"{err}; in a stored geometry description"
            raise GeometryError(msg) from None
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            msg = f"expected a geometry description with 'layers' of id/r_edges/n_alpha but got {data!r:.200}"
            raise GeometryError(msg) from err
        if "hash" in data and data["hash"] != geometry.hash:
            msg = f"expected geometry hash {data['hash']} but the stored layers hash to {geometry.hash}"
            raise GeometryError(msg)
        return geometry

    @classmethod
    def preset(cls, name: str) -> Geometry:
        """One of the CaloChallenge presets: ``ds1-photons``, ``ds1-pions``, ``ds2``, ``ds3``."""
        try:
            return presets()[name]
        except KeyError:
            msg = f"expected a geometry preset in {sorted(presets())} but got '{name}'; or pass a binning XML file"
            raise GeometryError(msg) from None

    @classmethod
    def from_xml(cls, path: str | Path, particle: str | None = None) -> Geometry:
        """Read a CaloChallenge binning XML file.

        Layers with a single radial edge carry no voxels and are skipped, as the
        official helper does. The alpha bins span [-pi, pi].

        Args:
            path: The binning XML file.
            particle: The ``name`` of the ``<Bin>`` to read; may be omitted when the file has one.

        Raises:
            GeometryError: if the file is missing, larger than :data:`MAX_XML_BYTES`, not XML, not a
                CaloChallenge binning file, or its binning is absurd (NaN/inf edges, more than
                :data:`MAX_VOXELS` voxels).
        """
        path = Path(path)
        size = path.stat().st_size if path.is_file() else 0
        if size > MAX_XML_BYTES:  # parsing millions of edges takes minutes; official files are < 8 KB
            msg = f"expected a binning XML file of at most {MAX_XML_BYTES} bytes but got {size} bytes, in {path}"
            raise GeometryError(msg)
        try:
            root = ET.parse(path).getroot()
        except FileNotFoundError:
            msg = f"binning XML file not found: {path}"
            raise GeometryError(msg) from None
        except (ET.ParseError, OSError) as err:
            msg = f"expected a CaloChallenge binning XML file but could not parse {path}: {err}"
            raise GeometryError(msg) from None
        bins = [b for b in root.iter("Bin")]
        if root.tag != "Bins" or not bins:
            msg = f"expected a CaloChallenge binning file (<Bins><Bin><Layer/>) but got root <{root.tag}>, in {path}"
            raise GeometryError(msg)
        names = [b.attrib.get("name", "") for b in bins]
        if particle is None:
            if len(bins) > 1:
                msg = f"{path} holds binnings for {names}; choose one with particle=... (CLI: --geometry FILE.xml:NAME)"
                raise GeometryError(msg)
            chosen = bins[0]
        else:
            matches = [b for b in bins if b.attrib.get("name") == particle]
            if not matches:
                msg = f"expected a <Bin name='{particle}'> but {path} has only {names}"
                raise GeometryError(msg)
            chosen = matches[0]
        layers = []
        for element in chosen.iter("Layer"):
            try:
                edges = tuple(float(s) for s in element.attrib["r_edges"].split(","))
                layer_id = int(element.attrib["id"])
                n_alpha = int(element.attrib.get("n_bin_alpha", "1"))
                if len(edges) > 1:
                    layers.append(Layer(layer_id, edges, n_alpha))
            except GeometryError as err:
                msg = f"{err}, in {path}"
                raise GeometryError(msg) from None
            except (KeyError, ValueError) as err:
                msg = f"expected <Layer id=.. r_edges=.. n_bin_alpha=..> but got {element.attrib!r:.200}, in {path}"
                raise GeometryError(msg) from err
        if not layers:
            msg = f"expected at least one layer with radial bins, in {path}"
            raise GeometryError(msg)
        try:
            geometry = cls(tuple(layers), name=path.stem, particle=chosen.attrib.get("name") or particle)
        except GeometryError as err:
            msg = f"{err}, in {path}"
            raise GeometryError(msg) from None
        for preset in presets().values():  # an official file gets the preset's name
            if preset == geometry:
                return preset
        return geometry


@functools.cache
def presets() -> dict[str, Geometry]:
    """The four CaloChallenge binnings by name (built once; :data:`caloforge.data.presets.PRESETS` is this dict)."""
    return {name: Geometry(tuple(Layer(*spec) for spec in layers), name=name, particle=particle)
            for name, (particle, layers) in PRESET_LAYERS.items()}
