"""The classical parametric baseline: what fast simulations did before ML, learned from the training data.

Per incident energy (``knots`` energies equally spaced in log E; the showers of a continuous
spectrum go to the nearest knot, and generation interpolates between the two knots around
each energy):

* **energies**: the response ``E_tot / E_inc`` and the layer fractions ``E_k / E_tot`` follow a
  Gaussian copula: each marginal is the empirical distribution of the training showers (a
  quantile table, so empty layers keep their probability and no layer energy falls between 0
  and the threshold), their dependence the correlation of the normal scores, as FastCaloSim V2
  parameterises layer energies; sampled fractions are renormalised to sum to one. The showers
  are kept in a reservoir per knot (Algorithm R), refitted after every step.
* **lateral shapes**: per voxel, the probability ``o_v`` that it is above the threshold when its
  layer is not empty, and the mean ``m_v`` and variance ``s_v^2`` of its share of the layer energy
  when it is. A shower draws which voxels are hit (independent Bernoulli draws), a gamma
  variable with mean ``m_v`` and shape ``m_v^2 / s_v^2`` for each hit voxel, and normalises them
  within the layer: mean lateral shapes, occupancies and per-voxel spreads as measured.
* **readout**: voxels below the threshold are zeroed and the layer's remaining voxels rescaled to
  the layer energy (the largest voxel is kept when the layer energy exceeds the threshold), so the
  response and layer energies are those of the copula.

Training goes through the common loop: each :meth:`Parametric.train_step` adds a batch to the
sufficient statistics (buffers) and refits the model (frozen parameters, never trained by
gradient). It ignores correlations between voxels and between the lateral shape and the layer
energies beyond their dependence on the incident energy: what a generative network must beat.

References:
    ATLAS Collaboration, AtlFast3: the next generation of fast simulation in ATLAS (FastCaloSim V2),
    arXiv:2109.02551.
    G. Grindhammer, S. Peters, The parameterized simulation of electromagnetic showers in homogeneous
    and sampling calorimeters (GFLASH), arXiv:hep-ex/0001020.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from caloforge.data.datasets import readout_threshold_mev
from caloforge.errors import ConfigError
from caloforge.models.base import Batch, FamilyConfig, GenerativeModel, check_particle
from caloforge.models.knots import fill_empty_knots
from caloforge.models.parametric_stats import fit_copula, interpolate_quantiles, reservoir_slots, standard_gamma
from caloforge.models.preprocess import Preprocessing

if TYPE_CHECKING:
    from caloforge.data.geometry import Geometry

__all__ = ["Parametric", "ParametricConfig"]

_SHAPE_RANGE = (1e-2, 1e6)  # bounds of the gamma shape of a hit voxel's share


class ParametricConfig(FamilyConfig):
    """Settings of :class:`Parametric`.

    Args:
        knots: Incident energies, equally spaced in log E over the training range, at which the
            statistics are kept (15 puts one on each energy of the CaloChallenge dataset-1 ladder).
        reservoir: Showers kept per knot for the copula of response and layer fractions.
        levels: Levels of each marginal quantile table.
        threshold: Readout threshold, MeV; None: the training data's geometry's (:meth:`for_geometry`, ``train``
            does it: 1 MeV for dataset 1, 15.15 keV for datasets 2 and 3, :mod:`caloforge.data.datasets`), or
            1 MeV for a custom geometry or a model built directly.
        batch_size: Showers added to the statistics per step.
        preprocessing: The network-space vector handed to the base class (any kind).
        energy_scale: See :class:`~caloforge.models.base.FamilyConfig`.

    Example:
        >>> from caloforge.data.presets import PRESETS
        >>> ParametricConfig().knots, round(ParametricConfig().for_geometry(PRESETS["ds2"]).threshold * 1e3, 2)
        (15, 15.15)
    """

    knots: Annotated[int, Field(ge=1, le=10_000)] = 15
    reservoir: Annotated[int, Field(ge=2, le=10**7)] = 10_000
    levels: Annotated[int, Field(ge=2, le=10**5)] = 513
    threshold: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=2**24)] = 2048

    @classmethod
    def for_particle(cls, particle: str | None) -> ParametricConfig:
        """The defaults (the same for every particle; the readout threshold is the geometry's, :meth:`for_geometry`).

        Raises:
            ConfigError: for another particle name.
        """
        check_particle(particle, "ParametricConfig.for_particle")
        return cls()

    def for_geometry(self, geometry: Geometry) -> ParametricConfig:
        """Fill ``threshold`` from the geometry's dataset when None (:mod:`caloforge.data.datasets`)."""
        return self if self.threshold is not None else self.replace(threshold=readout_threshold_mev(geometry))


class Parametric(GenerativeModel):
    """Gaussian-copula layer energies and gamma-fluctuated mean lateral shapes, see the module docstring.

    Args:
        config: The settings.
        preprocessing: The fitted preprocessing (energy range and layer sizes; no extra conditions).

    Raises:
        ConfigError: if the preprocessing has extra conditions (the baseline models the incident energy only).

    Example:
        >>> from caloforge.models.preprocess import ConditionScaler, EnergyScaler, Preprocessing, ShowerTransform
        >>> p = Preprocessing(ShowerTransform("energy", (8, 160, 190, 5, 5), (1.0,)), EnergyScaler(256.0, 4194304.0),
        ...                   ConditionScaler())
        >>> model = Parametric(ParametricConfig(), p)
        >>> model.trained_by_gradient, tuple(model.quantiles.shape)
        (False, (15, 6, 513))
    """

    config_class = ParametricConfig
    loss_names: ClassVar[tuple[str, ...]] = ("loss", "showers", "change")
    trained_by_gradient: ClassVar[bool] = False  # fitted statistics; the contract test checks that instead
    config: ParametricConfig
    seen: Tensor
    rows: Tensor
    sum_p: Tensor
    sum_p2: Tensor
    hits: Tensor
    voxel_hits: Tensor

    def __init__(self, config: ParametricConfig, preprocessing: Preprocessing) -> None:
        super().__init__(config, preprocessing)
        if preprocessing.conditions.names:
            msg = (f"expected no extra conditions for the parametric baseline (it models the incident energy "
                   f"only) but got {list(preprocessing.conditions.names)}")
            raise ConfigError(msg)
        sizes = preprocessing.showers.layer_sizes
        k, n_layers, n_voxels, cfg = config.knots, len(sizes), sum(sizes), config
        self.layer_sizes = tuple(sizes)
        self.threshold = readout_threshold_mev(None) if config.threshold is None else config.threshold
        # sufficient statistics (buffers)
        self.register_buffer("seen", torch.zeros(k, dtype=torch.long))
        self.register_buffer("rows", torch.zeros(k, cfg.reservoir, 1 + n_layers))
        self.register_buffer("sum_p", torch.zeros(k, n_voxels, dtype=torch.float64))
        self.register_buffer("sum_p2", torch.zeros(k, n_voxels, dtype=torch.float64))
        self.register_buffer("hits", torch.zeros(k, n_layers, dtype=torch.float64))
        self.register_buffer("voxel_hits", torch.zeros(k, n_voxels, dtype=torch.float64))
        # the fitted model (frozen parameters); before any data, a flat prior
        flat = torch.linspace(0, 1, cfg.levels).expand(k, 1 + n_layers, cfg.levels).clone()
        self.quantiles = nn.Parameter(flat, requires_grad=False)
        eye = torch.eye(1 + n_layers).expand(k, 1 + n_layers, 1 + n_layers).clone()
        self.cholesky = nn.Parameter(eye, requires_grad=False)
        uniform = torch.cat([torch.full((n,), 1.0 / n) for n in sizes])
        self.occupancy = nn.Parameter(torch.ones(k, n_voxels), requires_grad=False)
        self.hit_mean = nn.Parameter(uniform.expand(k, n_voxels).clone(), requires_grad=False)
        self.hit_shape = nn.Parameter(torch.ones(k, n_voxels), requires_grad=False)

    # ------------------------------------------------------------ statistics
    def _energy_position(self, e_hat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Knots below and above each ``E_hat`` and the interpolation weight of the upper one."""
        k = self.config.knots
        if k == 1:
            zero = torch.zeros_like(e_hat, dtype=torch.long)
            return zero, zero, torch.zeros_like(e_hat)
        t = e_hat.clamp(0, 1) * (k - 1)
        low = t.floor().clamp(max=k - 2)
        return low.long(), low.long() + 1, t - low

    def _variables(self, showers: Tensor, energies: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Readout showers -> (response and layer fractions (N, 1 + L), layer energies (N, L), patterns (N, V))."""
        s = torch.where(showers >= self.threshold, showers, torch.zeros_like(showers)).double()
        parts = torch.split(s, list(self.layer_sizes), dim=1)
        layers = torch.stack([p.sum(dim=1) for p in parts], dim=1)
        total = layers.sum(dim=1, keepdim=True)
        fractions = layers / total.clamp_min(1e-300)
        response = total / energies.double().unsqueeze(1)
        patterns = torch.cat([p / layers[:, i : i + 1].clamp_min(1e-300) for i, p in enumerate(parts)], dim=1)
        return torch.cat([response, fractions], dim=1), layers, patterns

    def accumulate(self, batch: Batch, generator: torch.Generator | None = None) -> None:
        """Add a batch to the statistics: the reservoirs and the sums of the normalised patterns."""
        with torch.no_grad():
            variables, layers, patterns = self._variables(batch.showers, batch.energies)
            e_hat = self.preprocessing.energy.forward(batch.energies.double())
            knot = (e_hat.clamp(0, 1) * (self.config.knots - 1)).round().long()
            items, groups, slots = reservoir_slots(knot, self.seen, self.config.reservoir, generator)
            self.rows[groups, slots] = variables[items].to(self.rows)
            self.seen += torch.bincount(knot, minlength=self.config.knots)
            self.sum_p.index_add_(0, knot, patterns)
            self.sum_p2.index_add_(0, knot, patterns.square())
            self.hits.index_add_(0, knot, (layers > 0).double())
            self.voxel_hits.index_add_(0, knot, (patterns > 0).double())

    def refit(self) -> float:
        """Refit the model from the statistics; returns the mean absolute change of the quantiles and shapes."""
        with torch.no_grad():
            before = torch.cat([self.quantiles.flatten(), self.occupancy.flatten(), self.hit_mean.flatten()])
            filled = (self.seen >= 2).tolist()
            for k, ok in enumerate(filled):
                if ok:
                    n = min(int(self.seen[k]), self.config.reservoir)
                    quantiles, chol = fit_copula(self.rows[k, :n], self.config.levels)
                    self.quantiles[k] = quantiles.to(self.quantiles)
                    self.cholesky[k] = chol.to(self.cholesky)
            layer_hits = torch.cat([self.hits[:, i : i + 1].expand(-1, n) for i, n in enumerate(self.layer_sizes)],
                                   dim=1)
            n_hit = self.voxel_hits
            mean = self.sum_p / n_hit.clamp_min(1)
            var = (self.sum_p2 / n_hit.clamp_min(1) - mean.square()).clamp_min(0)
            shape = (mean.square() / var.clamp_min(1e-300)).clamp(*_SHAPE_RANGE)
            measured = layer_hits >= 1
            occupancy = n_hit / layer_hits.clamp_min(1)
            self.occupancy.copy_(torch.where(measured, occupancy, self.occupancy.double()))
            self.hit_mean.copy_(torch.where(measured, mean, self.hit_mean.double()))
            self.hit_shape.copy_(torch.where(n_hit >= 2, shape, torch.ones_like(shape)))
            self._fill_empty_knots(filled)
            after = torch.cat([self.quantiles.flatten(), self.occupancy.flatten(), self.hit_mean.flatten()])
            return float((after - before).abs().mean())

    def _fill_empty_knots(self, filled: Sequence[bool]) -> None:
        """Knots without showers take the values interpolated between the nearest knots with showers."""
        valid = torch.tensor(list(filled), dtype=torch.bool, device=self.quantiles.device)
        for table in (self.quantiles, self.cholesky, self.occupancy, self.hit_mean, self.hit_shape):
            table.copy_(fill_empty_knots(table, valid))

    # -------------------------------------------------------------- sampling
    def _layer_energies(self, e_hat: Tensor, energies: Tensor, generator: torch.Generator | None) -> Tensor:
        low, high, w = self._energy_position(e_hat)
        n, d = e_hat.shape[0], self.quantiles.shape[1]
        use_high = torch.rand(n, generator=generator, device=e_hat.device, dtype=torch.float64) < w
        chol = torch.where(use_high[:, None, None], self.cholesky[high], self.cholesky[low]).double()
        eps = torch.randn(n, d, 1, generator=generator, device=e_hat.device, dtype=torch.float64)
        u = torch.special.ndtr((chol @ eps).squeeze(2))
        wq = w.unsqueeze(1)
        values = (1 - wq) * interpolate_quantiles(self.quantiles, low, u) + wq * interpolate_quantiles(self.quantiles,
                                                                                                       high, u)
        total = values[:, :1].clamp_min(0) * energies.unsqueeze(1)
        fractions = values[:, 1:].clamp(0, 1)
        typical = ((1 - wq) * self.quantiles[low, 1:].mean(dim=-1) + wq * self.quantiles[high, 1:].mean(dim=-1))
        sums = fractions.sum(dim=1, keepdim=True)
        fractions = torch.where(sums > 0, fractions, typical.double())  # every fraction drew its empty mass
        return fractions / fractions.sum(dim=1, keepdim=True).clamp_min(1e-300) * total

    def _interpolated(self, table: Tensor, e_hat: Tensor) -> Tensor:
        low, high, w = self._energy_position(e_hat)
        wv = w.unsqueeze(1)
        return ((1 - wv) * table[low] + wv * table[high]).double()

    def mean_patterns(self, e_hat: Tensor) -> Tensor:
        """Mean share of its layer's energy of each voxel, (N, V), at log-scaled energies ``e_hat`` (N,)."""
        return self._interpolated(self.occupancy, e_hat) * self._interpolated(self.hit_mean, e_hat)

    def _showers(self, e_hat: Tensor, layers: Tensor, generator: torch.Generator | None) -> Tensor:
        occupancy, mean = self._interpolated(self.occupancy, e_hat), self._interpolated(self.hit_mean, e_hat)
        shape = self._interpolated(self.hit_shape, e_hat)
        u = torch.rand(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        hit = (u < occupancy) & (mean > 0)
        draws = torch.zeros_like(mean)
        draws[hit] = standard_gamma(shape[hit], generator) * mean[hit] / shape[hit]
        typical = occupancy * mean
        threshold, out = self.threshold, []
        for i, (g, m) in enumerate(zip(torch.split(draws, list(self.layer_sizes), dim=1),
                                       torch.split(typical, list(self.layer_sizes), dim=1), strict=True)):
            total = g.sum(dim=1, keepdim=True)
            p = torch.where(total > 0, g / total.clamp_min(1e-300), m / m.sum(dim=1, keepdim=True).clamp_min(1e-300))
            e = layers[:, i : i + 1]
            v = p * e
            keep = (v >= threshold) | ((v == v.max(dim=1, keepdim=True).values) & (e >= threshold))
            v = torch.where(keep & (e >= threshold) & (e > 0), v, torch.zeros_like(v))
            out.append(v / v.sum(dim=1, keepdim=True).clamp_min(1e-300) * e)
        return torch.cat(out, dim=1)

    # ------------------------------------------------------------- interface
    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """Mean squared distance of the batch's normalised layer patterns from the fitted mean patterns.

        Not minimised by gradient: it measures how much lateral-shape variance the mean patterns
        leave (it drops from the flat prior to the showers' own spread as statistics accumulate).
        """
        _, layers, patterns = self._variables(batch.showers, batch.energies)
        mean = self.mean_patterns(self.preprocessing.energy.forward(batch.energies.double()))
        hit = torch.cat([(layers[:, i : i + 1] > 0).expand(-1, n) for i, n in enumerate(self.layer_sizes)], dim=1)
        squared = torch.where(hit, (patterns - mean).square(), torch.zeros_like(mean))
        return (squared.sum() / hit.any(dim=1).sum().clamp_min(1) / len(self.layer_sizes)).to(self.quantiles.dtype)

    def sample_features(self, conditions: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Network-space showers (N, n_features) for conditioning vectors (N, 1)."""
        e_hat = conditions[:, 0].double()
        energies = self.preprocessing.energy.inverse(e_hat)
        layers = self._layer_energies(e_hat, energies, generator)
        showers = self._showers(e_hat, layers, generator)
        return self.preprocessing.showers.forward(showers.to(conditions.dtype), energies.to(conditions.dtype))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """No optimiser: nothing is trained by gradient."""
        return []

    def train_step(
        self,
        next_batch: Callable[[], Batch],
        optimizers: Sequence[Any],
        backward: Callable[[Tensor], None],
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        """Add one batch to the statistics and refit; returns the fit's distance to the batch before it was added."""
        batch = next_batch()
        loss = float(self.loss(batch))
        self.accumulate(batch, generator)
        change = self.refit()
        return {"loss": loss, "showers": float(self.seen.sum()), "change": change}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, knots={self.config.knots}, showers={int(self.seen.sum())}"
