"""Fitted, invertible, JSON-serialisable preprocessing of showers and conditions.

A :class:`Preprocessing` is fitted once on a training :class:`~caloforge.data.showers.ShowerSet`
and stored in every bundle. It maps physical quantities (MeV) to network space and back:

* the incident energy to ``E_hat = log(E/E_min) / log(E_max/E_min)`` in [0, 1]
  (CaloShowerGAN), with ``E_min``/``E_max`` taken from the training data;
* extra conditions to zero mean and unit variance;
* the voxel energies with one of three shower transforms:

  - ``"energy"``: voxels divided by ``scale * E_inc`` (CaloShowerGAN; ``scale`` fitted as
    the largest E_tot/E_inc of the training data unless given, so the summed output is <= 1);
  - ``"layer"``: per-layer energy fractions ``E_layer / (s_l * E_inc)`` (``s_l`` fitted per
    layer) followed by the voxels normalised to unit sum within each layer;
  - ``"total"``: the response E_tot/E_inc standardised per incident energy,
    ``z = (r - mu(E)) / sigma(E)`` with mu and sigma fitted per training energy (or log-energy
    bin) and interpolated linearly in log E, mapped to ``(z + 6) / 12`` so the usual range is
    inside [0, 1]; then the fractions of E_tot in each layer and the voxels normalised within
    each layer. The response is one output whose scale is the same at every energy, so a 0.5 %
    resolution at 1 TeV is as easy to learn as 20 % at 256 MeV.

Every transform works on torch tensors, on the caller's device and dtype.

References:
    M. Faucci Giannelli, R. Zhang, CaloShowerGAN, arXiv:2309.06515.
    ATLAS Collaboration, AtlFast3 / FastCaloGAN, arXiv:2109.02551.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from caloforge.data.geometry import Geometry
from caloforge.data.showers import ShowerSet, energy_bins
from caloforge.errors import ConfigError

__all__ = ["ConditionScaler", "EnergyScaler", "Preprocessing", "ShowerSummary", "ShowerTransform", "TransformKind"]

TransformKind = Literal["energy", "layer", "total"]
_EPS = 1e-12
_Z_RANGE = 6.0  # standardised responses z in [-6, 6] map to [0, 1]


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation of (xp, fp) at x, constant beyond the ends (torch, any device).

    Written as ``fp[0] + sum_k clamp((x - xp[k]) / (xp[k+1] - xp[k]), 0, 1) (fp[k+1] - fp[k])`` over
    the K-1 segments (exact for increasing knots): no search, so it exports to ONNX as a fixed graph.

    Example:
        >>> knots, values = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 0.0])
        >>> _interp(torch.tensor([0.0, 1.5, 9.0]), knots, values).tolist()
        [10.0, 15.0, 0.0]
    """
    if xp.numel() == 1:
        return fp.expand_as(x)
    w = ((x.unsqueeze(-1) - xp[:-1]) / (xp[1:] - xp[:-1])).clamp(0, 1)
    return fp[0] + (w * (fp[1:] - fp[:-1])).sum(dim=-1)


@dataclass(frozen=True)
class EnergyScaler:
    """Log-scaled incident energy ``E_hat = log(E/E_min) / log(E_max/E_min)``, energies in MeV.

    Example:
        >>> s = EnergyScaler(256.0, 4194304.0)
        >>> s.forward(torch.tensor([256.0, 4194304.0], dtype=torch.float64)).tolist()
        [0.0, 1.0]
    """

    e_min: float
    e_max: float

    @classmethod
    def fit(cls, energies: np.ndarray) -> EnergyScaler:
        """Take E_min and E_max (MeV) from the training energies."""
        return cls(float(np.min(energies)), float(np.max(energies)))

    @property
    def _span(self) -> float:
        span = float(np.log(self.e_max / self.e_min))
        return span if span > 0 else 1.0  # a single training energy maps to 0

    def forward(self, energies: Tensor) -> Tensor:
        """MeV -> E_hat (dimensionless, [0, 1] inside the training range)."""
        return torch.log(energies / self.e_min) / self._span

    def inverse(self, e_hat: Tensor) -> Tensor:
        """E_hat -> MeV."""
        return self.e_min * torch.exp(e_hat * self._span)


@dataclass(frozen=True)
class ConditionScaler:
    """Standardises named extra conditions: ``(c - mean) / std``."""

    names: tuple[str, ...] = ()
    means: tuple[float, ...] = ()
    stds: tuple[float, ...] = ()

    @classmethod
    def fit(cls, conditions: dict[str, np.ndarray]) -> ConditionScaler:
        """Fit means and standard deviations (a constant condition gets std 1)."""
        names = tuple(sorted(conditions))
        means = tuple(float(np.mean(conditions[n])) for n in names)
        stds = tuple(float(np.std(conditions[n])) or 1.0 for n in names)
        return cls(names, means, stds)

    def forward(self, conditions: dict[str, Tensor], n: int, like: Tensor) -> Tensor:
        """Stack the named conditions into a standardised (n, len(names)) tensor like ``like``."""
        missing = sorted(set(self.names) - set(conditions))
        extra = sorted(set(conditions) - set(self.names))
        if missing or extra:
            msg = f"expected conditions {list(self.names)} but got {sorted(conditions)}, in the model's inputs"
            raise ConfigError(msg)
        if not self.names:
            return like.new_zeros((n, 0))
        columns = [
            (conditions[name].to(like) - mean) / std
            for name, mean, std in zip(self.names, self.means, self.stds, strict=True)
        ]
        return torch.stack(columns, dim=1)


@dataclass(frozen=True, eq=False)
class ShowerSummary:
    """Per-shower sums that preprocessing is fitted on, so a file can be summarised chunk by chunk.

    Attributes:
        energies: Incident energies, MeV, (N,).
        layer_sums: Energy per layer, MeV, (N, layers): float32 sums, as float64.
        response: E_tot / E_inc, (N,), with E_tot summed in float64.
        conditions: Extra conditions by name, each (N,).
    """

    energies: NDArray[np.float64]
    layer_sums: NDArray[np.float64]
    response: NDArray[np.float64]
    conditions: dict[str, NDArray[np.float64]]

    @classmethod
    def of(cls, data: ShowerSet) -> ShowerSummary:
        """The sums of a sample in memory (or of one chunk of a file)."""
        sums = np.stack([data.showers[:, data.geometry.layer_slice(i)].sum(axis=1)
                         for i in range(data.geometry.n_layers)], axis=1).astype(np.float64)
        return cls(data.energies, sums, data.response, dict(data.conditions))

    def __getitem__(self, rows: NDArray[np.int64]) -> ShowerSummary:
        return ShowerSummary(self.energies[rows], self.layer_sums[rows], self.response[rows],
                             {k: v[rows] for k, v in self.conditions.items()})


@dataclass(frozen=True)
class ShowerTransform:
    """Invertible voxel transform; ``kind`` is ``"energy"`` or ``"layer"`` (see the module docstring).

    Args:
        kind: The transform.
        layer_sizes: Voxels per layer, in order (sums to V).
        scales: One fitted scale (``"energy"``), one per layer (``"layer"``), or for ``"total"``
            the response table ``(*log_e, *mean, *std)`` over K knots in increasing log(E/MeV).
    """

    kind: TransformKind
    layer_sizes: tuple[int, ...]
    scales: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.kind not in get_args(TransformKind):
            msg = f"expected a shower transform in {list(get_args(TransformKind))} but got '{self.kind}'"
            raise ConfigError(msg)
        want = {"energy": 1, "layer": len(self.layer_sizes), "total": 3}[self.kind]
        if self.kind == "total":
            k = len(self.scales) // 3
            knots, stds = self.scales[:k], self.scales[2 * k :]
            bad = (k == 0 or len(self.scales) != 3 * k or any(not s > 0 for s in stds)
                   or any(b <= a for a, b in itertools.pairwise(knots)))
        else:
            bad = len(self.scales) != want or any(not s > 0 for s in self.scales)
        if bad:
            msg = f"expected {want} positive scale(s) for the '{self.kind}' transform but got {self.scales}"
            raise ConfigError(msg)

    @classmethod
    def fit(cls, data: ShowerSet, kind: TransformKind, scale: float | None = None) -> ShowerTransform:
        """Fit the scale(s) on training showers; ``scale`` fixes the ``"energy"`` scale instead.

        Raises:
            ConfigError: if ``scale`` is not positive.
        """
        summary = ShowerSummary.of(data)
        return cls.fit_summary(summary, tuple(layer.n_voxels for layer in data.geometry.layers), kind, scale)

    @classmethod
    def fit_summary(cls, summary: ShowerSummary, layer_sizes: tuple[int, ...], kind: TransformKind,
                    scale: float | None = None) -> ShowerTransform:
        """:meth:`fit` from per-shower sums (what a streamed pass over a large file keeps)."""
        if kind == "energy":
            if scale is not None:  # the user's scale, checked in __post_init__
                return cls(kind, layer_sizes, (float(scale),))
            fitted = float(np.max(summary.response, initial=0.0))
            return cls(kind, layer_sizes, (fitted if fitted > 0 else 1.0,))  # 1.0 for all-empty showers
        energies, response = summary.energies, summary.response
        if kind == "total":
            edges = energy_bins(energies)
            group = np.clip(np.digitize(energies, edges) - 1, 0, edges.size - 2)
            knots, means, stds = [], [], []
            for g in np.unique(group):
                r = response[group == g]
                knots.append(float(np.log(np.median(energies[group == g]))))
                means.append(float(r.mean()))
                stds.append(float(max(r.std(), 1e-4 * abs(r.mean()), 1e-6)))
            return cls(kind, layer_sizes, (*knots, *means, *stds))
        per_layer = np.max(summary.layer_sums / energies[:, None], axis=0, initial=0.0)
        return cls(kind, layer_sizes, tuple(float(s) if s > 0 else 1.0 for s in per_layer))

    @property
    def n_features(self) -> int:
        """Width of the network-space vector."""
        n_voxels = sum(self.layer_sizes)
        extra = {"energy": 0, "layer": len(self.layer_sizes), "total": 1 + len(self.layer_sizes)}[self.kind]
        return n_voxels + extra

    def forward(self, showers: Tensor, energies: Tensor) -> Tensor:
        """Voxel energies (N, V) MeV and incident energies (N,) MeV -> network space (N, n_features)."""
        e = energies.to(showers).unsqueeze(1)
        if self.kind == "energy":
            return showers / (e * self.scales[0])
        layers = torch.split(showers, list(self.layer_sizes), dim=1)
        sums = torch.stack([layer.sum(dim=1) for layer in layers], dim=1)
        normalised = [layer / sums[:, i : i + 1].clamp_min(_EPS) for i, layer in enumerate(layers)]
        if self.kind == "total":
            total = sums.sum(dim=1, keepdim=True)
            mean, std = self._response_moments(e)
            response = ((total / e - mean) / std + _Z_RANGE) / (2 * _Z_RANGE)
            return torch.cat([response, sums / total.clamp_min(_EPS), *normalised], dim=1)
        fractions = sums / (e * showers.new_tensor(self.scales))
        return torch.cat([fractions, *normalised], dim=1)

    def _response_moments(self, e: Tensor) -> tuple[Tensor, Tensor]:
        """Fitted mean and std of E_tot/E_inc at incident energies ``e`` (N, 1) MeV (``"total"`` only)."""
        table = e.new_tensor(self.scales).reshape(3, -1)
        log_e = torch.log(e)
        return _interp(log_e, table[0], table[1]), _interp(log_e, table[0], table[2])

    def inverse(self, x: Tensor, energies: Tensor) -> Tensor:
        """Network space (N, n_features) -> voxel energies (N, V) MeV; negative inputs are clipped to 0."""
        x = x.clamp_min(0)
        e = energies.to(x).unsqueeze(1)
        if self.kind == "energy":
            return x * (e * self.scales[0])
        n_layers = len(self.layer_sizes)
        if self.kind == "total":
            mean, std = self._response_moments(e)
            total = (mean + (x[:, :1] * (2 * _Z_RANGE) - _Z_RANGE) * std).clamp_min(0) * e
            fractions = x[:, 1 : 1 + n_layers]
            sums = fractions / fractions.sum(dim=1, keepdim=True).clamp_min(_EPS) * total
            # the voxels sliced once: an exported graph copies per slice (int8 GAN, batch 10000: -0.06 us per shower)
            return _rescale_layers(x[:, 1 + n_layers :], sums, self.layer_sizes)
        sums = x[:, :n_layers] * (e * x.new_tensor(self.scales))
        return _rescale_layers(x[:, n_layers:], sums, self.layer_sizes)


def _rescale_layers(voxels: Tensor, sums: Tensor, layer_sizes: tuple[int, ...]) -> Tensor:
    """Each layer's voxels (N, V) rescaled so that the layer holds ``sums`` (N, layers), in a handful of operations.

    Not five per layer: at batch 1 each operation of an exported graph costs about 0.5 us, most of its time
    (docs/performance.md, "Batch 1"). Layers of one size (ds2, ds3) are a reshape; others (ds1) sum and
    broadcast through a (V, layers) one-hot matrix (2 V layers FLOPs per shower each way).
    """
    n, n_layers = voxels.shape[0], len(layer_sizes)
    if len(set(layer_sizes)) == 1:
        grid = voxels.reshape(n, n_layers, layer_sizes[0])
        scale = sums / grid.sum(dim=2).clamp_min(_EPS)
        return (grid * scale.unsqueeze(2)).reshape(n, -1)
    onehot = voxels.new_tensor(np.repeat(np.eye(n_layers, dtype=np.float32), layer_sizes, axis=0))
    scale = sums / (voxels @ onehot).clamp_min(_EPS)
    return voxels * (scale @ onehot.T)


@dataclass(frozen=True)
class Preprocessing:
    """Everything fitted on the training data that maps physics to network space and back.

    Example:
        >>> from caloforge.data.geometry import Geometry, Layer
        >>> g = Geometry((Layer(0, (0, 1, 2), 1),))
        >>> data = ShowerSet(np.array([10.0, 100.0]), np.array([[1.0, 2.0], [30.0, 40.0]]), g)
        >>> p = Preprocessing.fit(data, "layer")
        >>> x = p.showers.forward(torch.tensor(data.showers), torch.tensor(data.energies))
        >>> torch.allclose(p.showers.inverse(x, torch.tensor(data.energies)), torch.tensor(data.showers))
        True
        >>> Preprocessing.from_dict(p.to_dict()) == p
        True
    """

    showers: ShowerTransform
    energy: EnergyScaler
    conditions: ConditionScaler

    @classmethod
    def fit(cls, data: ShowerSet, kind: TransformKind = "energy", scale: float | None = None) -> Preprocessing:
        """Fit the shower transform, the energy range and the condition scaler on ``data``."""
        sizes = tuple(layer.n_voxels for layer in data.geometry.layers)
        return cls.fit_summary(ShowerSummary.of(data), sizes, kind, scale)

    @classmethod
    def fit_summary(cls, summary: ShowerSummary, layer_sizes: tuple[int, ...], kind: TransformKind = "energy",
                    scale: float | None = None) -> Preprocessing:
        """:meth:`fit` from per-shower sums (see :class:`ShowerSummary`)."""
        return cls(
            ShowerTransform.fit_summary(summary, layer_sizes, kind, scale),
            EnergyScaler.fit(summary.energies),
            ConditionScaler.fit(dict(summary.conditions)),
        )

    @property
    def n_features(self) -> int:
        """Width of the network-space shower vector."""
        return self.showers.n_features

    @property
    def n_conditions(self) -> int:
        """Width of the conditioning vector: E_hat plus the extra conditions."""
        return 1 + len(self.conditions.names)

    def condition(self, energies: Tensor, conditions: dict[str, Tensor] | None = None) -> Tensor:
        """The conditioning vector (N, n_conditions): E_hat then standardised extra conditions."""
        e_hat = self.energy.forward(energies).unsqueeze(1)
        extra = self.conditions.forward(dict(conditions or {}), energies.shape[0], e_hat)
        return torch.cat([e_hat, extra], dim=1)

    def check_geometry(self, geometry: Geometry) -> bool:
        """Whether ``geometry`` has this transform's layer structure."""
        return tuple(layer.n_voxels for layer in geometry.layers) == self.showers.layer_sizes

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description; :meth:`from_dict` inverts it exactly."""
        return {
            "showers": {"kind": self.showers.kind, "layer_sizes": list(self.showers.layer_sizes),
                        "scales": list(self.showers.scales)},
            "energy": {"e_min": self.energy.e_min, "e_max": self.energy.e_max},
            "conditions": {"names": list(self.conditions.names), "means": list(self.conditions.means),
                           "stds": list(self.conditions.stds)},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ConfigError: if keys are missing or unknown.
        """
        try:
            s, e, c = data["showers"], data["energy"], data["conditions"]
            if set(data) != {"showers", "energy", "conditions"}:
                msg = f"expected preprocessing keys showers/energy/conditions but got {sorted(data)}"
                raise ConfigError(msg)
            return cls(
                ShowerTransform(s["kind"], tuple(int(n) for n in s["layer_sizes"]),
                                tuple(float(v) for v in s["scales"])),
                EnergyScaler(float(e["e_min"]), float(e["e_max"])),
                ConditionScaler(tuple(c["names"]), tuple(float(v) for v in c["means"]),
                                tuple(float(v) for v in c["stds"])),
            )
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, ConfigError):
                raise
            msg = f"expected a preprocessing description (showers, energy, conditions) but got {data!r:.200}"
            raise ConfigError(msg) from err
