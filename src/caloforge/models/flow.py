"""Conditional normalizing flow on coupling blocks (CaloFlow / CaloINN), built on zuko.

A shower becomes energy features (log response and stick-breaking layer fractions) and
pattern features (voxels normalised within their layer), each through a logit, with uniform
noise below the readout threshold on the empty voxels and layers in training, removed exactly
after sampling (:mod:`caloforge.models.flow_transforms`). The features are standardised with
means and spreads that depend on the incident energy (taken from the first training batches
at ``knots`` energies and interpolated in log E): without it the response, 25 % wide at 256 MeV
and 1 % at 4 TeV, is a needle at high energies and the chi2 of the response stays high. The
standardised features are modelled by

* ``design="split"``: flow I for the energy features given the incident energy, and flow II
  for the pattern given the incident energy and the (standardised) energy features, as in
  CaloFlow; or
* ``design="joint"``: one flow over both, as CaloINN does for dataset 1.

Every block is a coupling transform (affine, as in RealNVP, or a rational-quadratic spline,
as in CaloINN) whose conditioner sees half of the features and the context; consecutive
blocks use complementary halves of a fixed random split. Training maximises the likelihood;
sampling draws Gaussian noise with the caller's generator and runs each block's inverse once,
so one shower costs one network pass per block whatever the number of voxels.

References:
    C. Krause, D. Shih, CaloFlow, arXiv:2106.05285.
    C. Krause, I. Pang, D. Shih, CaloFlow for CaloChallenge Dataset 1, arXiv:2210.14245.
    F. Ernst et al., Normalizing Flows for High-Dimensional Detector Simulations (CaloINN), arXiv:2312.09290.
    L. Dinh, J. Sohl-Dickstein, S. Bengio, Density estimation using Real NVP, arXiv:1605.08803.
    C. Durkan et al., Neural Spline Flows, arXiv:1906.04032.
    F. Rozet et al., zuko (https://github.com/probabilists/zuko).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import torch
import zuko
from pydantic import Field
from torch import Tensor, nn

from caloforge.data.datasets import readout_threshold_mev
from caloforge.models.base import Batch, GenerativeModel, TrainableConfig, check_particle
from caloforge.models.flow_transforms import ShowerFeatures, Standardiser
from caloforge.models.preprocess import Preprocessing

if TYPE_CHECKING:
    from caloforge.data.geometry import Geometry

__all__ = ["Z_CLAMP", "CouplingBlock", "CouplingFlow", "Flow", "FlowConfig", "features_to_network"]

Width = Annotated[int, Field(ge=1, le=2**20)]
Z_CLAMP = 12.0  # sampled standardised features are kept within +-12 (no overflow from a far tail)
_LOG_2PI = math.log(2 * math.pi)


class FlowConfig(TrainableConfig):
    """Hyperparameters of :class:`Flow`; the defaults are :meth:`for_particle`'s (CaloINN, dataset 1).

    Args:
        design: ``"joint"`` (one flow over energies and pattern) or ``"split"`` (flow I for the
            energies, flow II for the pattern given them).
        coupling: ``"spline"`` (monotonic rational-quadratic, CaloINN) or ``"affine"`` (RealNVP).
        blocks: Coupling blocks of the joint flow, or of flow II.
        hidden: Hidden widths of each block's conditioner network.
        energy_blocks: Coupling blocks of flow I (``design="split"`` only).
        energy_hidden: Hidden widths of flow I's conditioners (``design="split"`` only).
        bins: Spline bins (``coupling="spline"`` only).
        spline_bound: The splines act on [-bound, bound] of the standardised features; identity outside.
        threshold: Readout threshold, MeV: training voxels below it count as empty, samples below it are zeroed;
            None: the training data's geometry's (:meth:`for_geometry`, ``train`` does it: 1 MeV for
            CaloChallenge dataset 1, 15.15 keV for datasets 2 and 3, :mod:`caloforge.data.datasets`), or
            1 MeV for a custom geometry or a flow built directly.
        noise: Uniform noise on empty training voxels and layers, up to ``noise * threshold``; 1 fills the whole
            range below the threshold, so that the flow sees no gap between noise and signal.
        alpha: Squeeze of the logit transform.
        knots: Incident energies (equally spaced in log E) at which the features are standardised;
            in between, mean and spread are interpolated (1: one standardisation for all energies).
        init_batches: Batches whose features set the standardisation, at the first training step.
        lr: Adam learning rate.
        lr_schedule, warmup_fraction, min_lr_ratio, ema_decay: The schedule over the budget and the weight
            averaging, see :class:`~caloforge.models.base.TrainableConfig` (constant, no averaging by default).
        grad_clip: Largest gradient norm (larger ones are scaled down).
        batch_size: Showers per step.
        preprocessing: The network-space vector handed to the base class (any kind; the flow itself
            works on its own features).
        energy_scale: See :class:`~caloforge.models.base.FamilyConfig`.

    Example:
        >>> FlowConfig().design, FlowConfig.for_cpu("photon").design
        ('joint', 'split')
        >>> FlowConfig.from_dict(FlowConfig().to_dict()) == FlowConfig()
        True
    """

    design: Literal["joint", "split"] = "joint"
    coupling: Literal["spline", "affine"] = "spline"
    blocks: Annotated[int, Field(ge=1, le=1000)] = 18
    hidden: tuple[Width, ...] = (32, 32, 32)
    energy_blocks: Annotated[int, Field(ge=1, le=1000)] = 6
    energy_hidden: tuple[Width, ...] = (64, 64)
    bins: Annotated[int, Field(ge=2, le=10_000)] = 10
    spline_bound: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 5.0
    threshold: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    noise: Annotated[float, Field(gt=0, le=1)] = 1.0
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 1e-6
    knots: Annotated[int, Field(ge=1, le=10_000)] = 15
    init_batches: Annotated[int, Field(ge=1, le=10_000)] = 8
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 5e-4
    grad_clip: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 10.0
    batch_size: Annotated[int, Field(ge=1, le=2**24)] = 256

    @classmethod
    def for_particle(cls, particle: str | None) -> FlowConfig:
        """CaloINN's dataset-1 settings (the same for every particle).

        One flow over energies and pattern, 18 rational-quadratic spline coupling blocks with 10
        bins, conditioners of 3 x 32 units, batch 256, Adam at 5e-4 (the peak of CaloINN's one-cycle
        schedule; here constant), logit alpha 1e-6 (CaloFlow, CaloINN). The readout threshold is the
        geometry's (:meth:`for_geometry`).

        Raises:
            ConfigError: for another particle name.
        """
        check_particle(particle, "FlowConfig.for_particle")
        return cls()

    @classmethod
    def for_cpu(cls, particle: str | None) -> FlowConfig:
        """Settings that learn in CPU minutes: flows I and II of 8 spline blocks with 2 x 128 units, batch 256.

        Measured on reference-simulator dataset-1 photons (docs/training.md, section ``flow``): at
        equal CPU time (about 10 minutes, one thread) these reach a proxy low-level classifier AUC of
        0.69 where affine blocks (8 x 2 x 256, batch 512, ten times cheaper per step) stay at 0.75 from
        3 minutes on; the joint design of the paper preset costs 2 s per step on a CPU.
        """
        return cls.for_particle(particle).replace(design="split", coupling="spline", blocks=8, hidden=(128, 128),
                                                  bins=8, batch_size=256, lr=1e-3)

    def for_geometry(self, geometry: Geometry) -> FlowConfig:
        """Fill ``threshold`` from the geometry's dataset when None (:mod:`caloforge.data.datasets`)."""
        return self if self.threshold is not None else self.replace(threshold=readout_threshold_mev(geometry))


class CouplingBlock(zuko.lazy.LazyTransform):  # type: ignore[misc]
    """One conditional coupling block: ``x_b -> f(x_b | x_a, c)``, ``x_a`` unchanged.

    ``f`` is element-wise monotonic (affine or spline); its parameters come from an MLP of
    ``x_a`` and the context ``c``. With no kept feature the block is element-wise given ``c``.

    Args:
        mask: Boolean (F,) on the CPU, True for the kept features ``x_a``.
        n_kept: Number of True entries of ``mask`` (counted by the caller, so that the block can
            be built on PyTorch's meta device).
        context: Width of the context.
        univariate: zuko's element-wise transform constructor.
        shapes: Shapes of its parameters.
        hidden: Hidden widths of the MLP.
    """

    mask: Tensor

    def __init__(self, mask: Tensor, n_kept: int, context: int, univariate: Callable[..., Any],
                 shapes: Sequence[tuple[int, ...]], hidden: Sequence[int]) -> None:
        super().__init__()
        self.univariate, self.shapes = univariate, list(shapes)
        self.total = sum(math.prod(s) for s in shapes)
        self.register_buffer("mask", mask)
        self.hyper = zuko.nn.MLP(n_kept + context, (mask.numel() - n_kept) * self.total, hidden_features=tuple(hidden))
        last = self.hyper[-1]
        nn.init.zeros_(last.weight)  # the block starts as the identity
        nn.init.zeros_(last.bias)

    def _conditional(self, context: Tensor, kept: Tensor) -> Any:
        phi = self.hyper(torch.cat([kept, context], dim=-1)).unflatten(-1, (-1, self.total))
        return zuko.transforms.DependentTransform(self.univariate(*zuko.utils.unpack(phi, self.shapes)), 1)

    def forward(self, c: Tensor) -> Any:
        """The block's transform for context ``c`` (N, C)."""
        return zuko.transforms.CouplingTransform(partial(self._conditional, c), self.mask)


class CouplingFlow(nn.Module):
    """A conditional flow of coupling blocks with a standard normal base, on zuko's transforms.

    Args:
        features: Width of the modelled vector (>= 1; one feature gets element-wise blocks).
        context: Width of the conditioning vector (>= 1).
        blocks: Number of coupling blocks.
        hidden: Hidden widths of each conditioner.
        coupling: ``"affine"`` or ``"spline"``.
        bins: Spline bins.
        bound: Spline domain bound.
        seed: Seed of the fixed random feature split (a model is rebuilt identically from its config).
    """

    def __init__(self, features: int, context: int, blocks: int, hidden: Sequence[int], coupling: str, bins: int,
                 bound: float, seed: int) -> None:
        super().__init__()
        univariate: Callable[..., Any]
        if coupling == "spline":
            univariate = partial(zuko.transforms.MonotonicRQSTransform, bound=bound)
            shapes: list[tuple[int, ...]] = [(bins,), (bins,), (bins - 1,)]
        else:
            univariate, shapes = zuko.transforms.MonotonicAffineTransform, [(), ()]
        self.features = features
        self.blocks = nn.ModuleList()
        split = torch.Generator().manual_seed(seed)
        mask = torch.zeros(features, dtype=torch.bool, device="cpu")
        half = features // 2
        for i in range(blocks):
            if features > 1:
                if i % 2 == 0:  # a new random half, then its complement
                    mask = torch.randperm(features, generator=split, device="cpu") < half
                else:
                    mask = ~mask
            n_kept = (half if i % 2 == 0 else features - half) if features > 1 else 0
            self.blocks.append(CouplingBlock(mask.clone(), n_kept, context, univariate, shapes, hidden))

    def transform(self, context: Tensor) -> Any:
        """The composed transform features -> base space for ``context`` (N, C)."""
        return zuko.transforms.ComposedTransform(*(block(context) for block in self.blocks))

    def log_prob(self, x: Tensor, context: Tensor) -> Tensor:
        """Log density of ``x`` (N, F) given ``context`` (N, C), shape (N,)."""
        z, ladj = self.transform(context).call_and_ladj(x)
        base = -0.5 * (z.square().sum(dim=1) + self.features * _LOG_2PI)
        out: Tensor = base + ladj
        return out

    def sample(self, z: Tensor, context: Tensor) -> Tensor:
        """Map base-space noise ``z`` (N, F) to features: one inverse pass per block."""
        out: Tensor = self.transform(context).inv(z)
        return out

    def extra_repr(self) -> str:
        return f"features={self.features}, blocks={len(self.blocks)}"


def features_to_network(z: Tensor, conditions: Tensor, standardise: Standardiser, shower_features: ShowerFeatures,
                        preprocessing: Preprocessing) -> Tensor:
    """Standardised flow features (N, n_energy + n_pattern) -> network-space showers (N, n_features).

    Undoes the standardisation, rebuilds the layer energies and the pattern after the readout
    threshold (:class:`~caloforge.models.flow_transforms.ShowerFeatures`), then applies the
    preprocessing's forward transform, in the standardisation's dtype.
    """
    c = conditions.to(standardise.mean)
    dtype = c.dtype
    f = standardise.inverse(z, c[:, 0]).double()
    n_energy = shower_features.n_layers
    energies = preprocessing.energy.inverse(conditions[:, 0].double())
    layers = shower_features.readout_layers(shower_features.layer_energies(f[:, :n_energy], energies))
    showers = shower_features.showers(f[:, n_energy:], layers)
    return preprocessing.showers.forward(showers.to(dtype), energies.to(dtype))


class Flow(GenerativeModel):
    """Conditional normalizing flow for showers, see the module docstring.

    Args:
        config: The hyperparameters.
        preprocessing: The fitted preprocessing (energy range, extra conditions, layer sizes).

    Example:
        >>> from caloforge.models.preprocess import ConditionScaler, EnergyScaler, Preprocessing, ShowerTransform
        >>> p = Preprocessing(ShowerTransform("energy", (8, 160, 190, 5, 5), (1.0,)), EnergyScaler(256.0, 4194304.0),
        ...                   ConditionScaler())
        >>> flow = Flow(FlowConfig.for_cpu("photon"), p)
        >>> flow.n_energy, flow.n_pattern
        (5, 368)
    """

    config_class = FlowConfig
    loss_names: ClassVar[tuple[str, ...]] = ("loss", "grad_norm")
    config: FlowConfig

    def __init__(self, config: FlowConfig, preprocessing: Preprocessing) -> None:
        super().__init__(config, preprocessing)
        threshold = readout_threshold_mev(None) if config.threshold is None else config.threshold
        self.shower_features = ShowerFeatures(preprocessing.showers.layer_sizes, threshold, config.noise, config.alpha)
        self.n_energy = self.shower_features.n_layers
        self.n_pattern = self.shower_features.n_pattern
        self.standardise = Standardiser(self.n_energy + self.n_pattern, config.knots)
        cfg, c = config, self.n_conditions
        build = partial(CouplingFlow, coupling=cfg.coupling, bins=cfg.bins, bound=cfg.spline_bound)
        self.energy_flow: CouplingFlow | None = None  # flow I (split design only)
        self.shower_flow: CouplingFlow | None = None  # flow II, or the one flow of the joint design
        if cfg.design == "split":
            self.energy_flow = build(self.n_energy, c, cfg.energy_blocks, cfg.energy_hidden, seed=1)
            c += self.n_energy
        width = self.n_pattern + (self.n_energy if self.energy_flow is None else 0)
        if width:
            self.shower_flow = build(width, c, cfg.blocks, cfg.hidden, seed=0)
        self.keep_average(self)

    # ------------------------------------------------------------------ pieces
    def features(self, batch: Batch, generator: torch.Generator | None) -> Tensor:
        """Unstandardised features (N, n_energy + n_pattern), float64, of a dequantised batch."""
        sf = self.shower_features
        noisy = sf.dequantise(batch.showers, generator)
        layers = sf.dequantise_layers(sf.layer_sums(sf.readout(batch.showers)), generator)
        return torch.cat([sf.energy_features(layers, batch.energies), sf.pattern_features(noisy)], dim=1)

    def log_prob(self, z: Tensor, c: Tensor) -> Tensor:
        """Log density (N,) of standardised features ``z`` given conditions ``c``."""
        out, context, start = z.new_zeros(z.shape[0]), c, 0
        if self.energy_flow is not None:
            y = z[:, : self.n_energy]
            out, context, start = self.energy_flow.log_prob(y, c), torch.cat([c, y], dim=1), self.n_energy
        if self.shower_flow is not None:
            out = out + self.shower_flow.log_prob(z[:, start:], context)
        return out

    # --------------------------------------------------------------- interface
    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """Negative log-likelihood per feature of the standardised, dequantised features."""
        f = self.features(batch, generator)
        c = self.preprocessing.condition(batch.energies.to(self.standardise.mean), batch.conditions)
        if self.training:
            self.standardise.fit_once(f, c[:, 0])
        z: Tensor = self.standardise(f, c[:, 0])
        return -self.log_prob(z, c).mean() / z.shape[1]

    def sample_features(self, conditions: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Network-space showers (N, n_features) for conditioning vectors (N, n_conditions)."""
        noise = torch.randn(conditions.shape[0], self.noise_size(), generator=generator, device=conditions.device,
                            dtype=self.standardise.mean.dtype)
        return self.sample_from_noise(conditions, noise)

    def noise_size(self) -> int:
        """The flows' base dimensions (flow I's, then flow II's): sampling is a fixed function of the noise."""
        return sum(flow.features for flow in (self.energy_flow, self.shower_flow) if flow is not None)

    def sample_from_noise(self, conditions: Tensor, noise: Tensor) -> Tensor:
        """Network-space showers from conditions and standard-normal base noise (N, :meth:`noise_size`)."""
        z = self.standardised_from_noise(conditions, noise)
        return features_to_network(z, conditions, self.standardise, self.shower_features, self.preprocessing)

    def standardised_from_noise(self, conditions: Tensor, noise: Tensor) -> Tensor:
        """Standardised features (N, n_energy + n_pattern) from conditions and base noise: each flow's inverse once.

        The map a one-pass student learns (:mod:`caloforge.models.flow_student`).
        """
        c = conditions.to(self.standardise.mean)
        parts, context, start = [], c, 0
        for flow in (self.energy_flow, self.shower_flow):
            if flow is None:
                continue
            part = flow.sample(noise[:, start:start + flow.features].to(c), context).clamp(-Z_CLAMP, Z_CLAMP)
            start += flow.features
            parts.append(part)
            context = torch.cat([c, part], dim=1)
        return torch.cat(parts, dim=1)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """One Adam over every parameter."""
        return [torch.optim.Adam(self.parameters(), lr=self.config.lr)]

    def prepare(self, next_batch: Callable[[], Batch], generator: torch.Generator | None = None) -> None:
        """The first step sets the standardisation from ``init_batches`` batches."""
        if not bool(self.standardise.initialised):
            with torch.no_grad():
                batches = [next_batch() for _ in range(self.config.init_batches)]
                f = torch.cat([self.features(b, generator) for b in batches])
                e = torch.cat([self.preprocessing.energy.forward(b.energies.double()) for b in batches])
                self.standardise.fit_once(f, e)

    def clip_gradients(self, logged: dict[str, float]) -> bool:
        """The gradient norm clipped at ``grad_clip`` (logged); a non-finite gradient skips the step."""
        norm = nn.utils.clip_grad_norm_(self.parameters(), self.config.grad_clip)
        logged["grad_norm"] = float(norm)
        return bool(torch.isfinite(norm))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, design={self.config.design}, coupling={self.config.coupling}"
