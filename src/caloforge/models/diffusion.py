"""Conditional diffusion (flow matching) over the voxels: a network, a probability path and a sampler.

The three pieces are separate objects (STYLE.md rule 5, the diffusers layout), put together here:

* the **network** (:mod:`caloforge.models.diffusion_networks`) predicts the velocity
  ``dx_t/dt`` from the noisy shower ``x_t``, the time t and the conditions;
* the **probability path** (:mod:`caloforge.models.diffusion_schedules`),
  ``x_t = alpha(t) x_0 + sigma(t) eps``, defines the training target: the loss is the mean
  squared error of the predicted velocity, ``|u(x_t, t, c) - (alpha'(t) x_0 + sigma'(t) eps)|^2``,
  at times drawn by ``time_sampling`` (flow matching for the linear path);
* the **sampler** (:mod:`caloforge.models.diffusion_samplers`) integrates the probability-flow
  ODE from noise at t = 1 to a shower at t = 0. Any sampler works on any trained network:
  ``sampler`` / ``sampler_steps`` in the config choose the default, :meth:`Diffusion.with_sampler`
  gives a copy that samples with another (``"fast"``: DPM-Solver++(2M), 10 evaluations;
  ``"accurate"``: Heun, 100 steps = 199 evaluations).

**Network space.** The fitted ``preprocessing`` (``total`` by default: the standardised
response, the layer fractions, the voxels normalised within each layer) is followed by a
logit of every feature in [0, 1], ``logit(a + (1 - 2 a) u)`` with ``a = logit_alpha`` (zero
voxels become one finite value), and a standardisation per feature. Its means and standard
deviations are buffers fitted at the first training iteration on ``normalisation_batches``
batches (a data-dependent initialisation, like Glow's actnorm): they travel with the weights
in checkpoints and bundles. Generated values map back through the sigmoid; fractions below
``a`` become exact zeros.

Sampling uses an exponential moving average of the weights (``ema_decay``;
:class:`~caloforge.models.averaging.MovingAverage`, buffers, so they are saved and restored with the
model but never trained), evaluated inside :meth:`Diffusion.sample_from_noise` so the export uses it too.

References:
    J. Ho, A. Jain, P. Abbeel, DDPM, arXiv:2006.11239.
    Y. Lipman et al., Flow Matching for Generative Modeling, arXiv:2210.02747.
    T. Karras et al., EDM, arXiv:2206.00364.
    C. Lu et al., DPM-Solver, arXiv:2206.00927.
    O. Amram, K. Pedro, CaloDiffusion, arXiv:2308.03876 (logit voxel space, per-voxel standardisation).
    D. Kingma, P. Dhariwal, Glow (data-dependent initialisation), arXiv:1807.03039.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from caloforge.errors import ConfigError
from caloforge.models.base import Batch, GenerativeModel, TrainableConfig, check_particle
from caloforge.models.cylinder import LayerShapes, layer_shapes_of
from caloforge.models.diffusion_networks import ResidualMLP, VoxelConv
from caloforge.models.diffusion_samplers import Sampler, SamplerName, Spacing, get_sampler
from caloforge.models.diffusion_schedules import ScheduleName, TimeSampling, get_schedule, training_times
from caloforge.models.diffusion_unet import CylinderUNet
from caloforge.models.preprocess import Preprocessing, TransformKind

if TYPE_CHECKING:
    from caloforge.data.geometry import Geometry

__all__ = ["SAMPLER_PRESETS", "UNET_ABOVE", "Diffusion", "DiffusionConfig", "LogitSpace"]

UNET_ABOVE = 2000
"""Voxels above which ``network="auto"`` is the U-Net (datasets 2 and 3), below which the MLP (dataset 1)."""

SAMPLER_PRESETS: dict[str, tuple[SamplerName, int]] = {"fast": ("dpm2m", 10), "accurate": ("heun", 100)}
"""Named (sampler, steps) pairs for :meth:`Diffusion.with_sampler`: 10 and 199 network evaluations."""

Positive = Annotated[int, Field(ge=1, le=2**24)]  # bounds: typos, not plans


class DiffusionConfig(TrainableConfig):
    """Hyperparameters of :class:`Diffusion`.

    Args:
        network: ``"mlp"`` (:class:`~caloforge.models.diffusion_networks.ResidualMLP`), ``"conv"``
            (:class:`~caloforge.models.diffusion_networks.VoxelConv`, full resolution), ``"unet"``
            (:class:`~caloforge.models.diffusion_unet.CylinderUNet`, for high granularity) or ``"auto"``
            (the default: ``"unet"`` above :data:`UNET_ABOVE` voxels, else ``"mlp"``). The
            convolutions take ``layer_shapes`` (``train`` fills them from the geometry).
        width: Width of the MLP's residual blocks.
        depth: Number of residual blocks (MLP) or convolution blocks (conv).
        channels: Channels of the convolutions (conv; the U-Net's at full resolution).
        levels: Down-sampling levels of the U-Net (unet).
        layer_shapes: ``(n_alpha, n_r)`` per layer, in order (conv only; e.g. ds1 photons
            ``((1, 8), (10, 16), (10, 19), (1, 5), (1, 5))``).
        time_dim: Sinusoidal time features.
        embedding_dim: Width of the (time, condition) embedding.
        schedule: The probability path, ``"linear"`` (flow matching) or ``"cosine"`` (variance preserving).
        time_sampling: Distribution of the training times, ``"uniform"`` or ``"logit_normal"``.
        sampler: The default sampler of :meth:`Diffusion.sample_features`: ``"ddim"``, ``"heun"`` or ``"dpm2m"``.
        sampler_steps: Its number of steps (``heun`` evaluates the network ``2 n - 1`` times, the others ``n``).
        spacing: Time grid of the sampler: ``"uniform"`` in t, ``"logsnr"`` or ``"karras"`` (EDM's rho = 7).
        logit_alpha: Regulariser ``a`` of the logit of features in [0, 1].
        lr: Adam learning rate.
        betas: Adam (beta1, beta2).
        grad_clip: Largest gradient norm (0: no clipping).
        ema_decay: Decay of the weights' moving average used for sampling (0: sample with the raw weights).
        lr_schedule, warmup_fraction, min_lr_ratio: See :class:`~caloforge.models.base.TrainableConfig`.
        normalisation_batches: Batches used to fit the network space at the first iteration.
        batch_size: Showers per iteration.
        preprocessing: See :class:`~caloforge.models.base.FamilyConfig`; ``total`` by default.
        energy_scale: See :class:`~caloforge.models.base.FamilyConfig`.

    Example:
        >>> DiffusionConfig.for_cpu("photon").sampler_steps
        10
        >>> DiffusionConfig.from_dict(DiffusionConfig().to_dict()) == DiffusionConfig()
        True
    """

    preprocessing: TransformKind = "total"
    batch_size: Positive = 512
    network: Literal["auto", "mlp", "conv", "unet"] = "auto"
    width: Positive = 512
    depth: Positive = 4
    channels: Positive = 32
    levels: Annotated[int, Field(ge=1, le=8)] = 2
    layer_shapes: LayerShapes = ()
    time_dim: Annotated[int, Field(ge=2, le=2**20)] = 64
    embedding_dim: Positive = 128
    schedule: ScheduleName = "linear"
    time_sampling: TimeSampling = "uniform"
    sampler: SamplerName = "dpm2m"
    sampler_steps: Annotated[int, Field(ge=1, le=100_000)] = 10
    spacing: Spacing = "uniform"
    logit_alpha: Annotated[float, Field(gt=0, lt=0.1, allow_inf_nan=False)] = 1e-6
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1e-3
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    grad_clip: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1.0
    ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.999
    normalisation_batches: Positive = 20

    @classmethod
    def for_particle(cls, particle: str | None) -> DiffusionConfig:
        """Settings for a GPU budget (hours): the defaults, a 512-wide 4-block MLP with batch 512.

        No paper publishes this family's settings for CaloChallenge dataset 1; these are ours.

        Raises:
            ConfigError: for an unknown particle name.
        """
        check_particle(particle, "DiffusionConfig.for_particle")
        return cls()

    @classmethod
    def for_cpu(cls, particle: str | None) -> DiffusionConfig:
        """Settings that learn in CPU minutes (measured in docs/training.md): a 256-wide MLP, batch 256.

        At high granularity (``network="auto"`` above :data:`UNET_ABOVE` voxels) the U-Net has 8 channels
        at full resolution (and the convolution network, when chosen, 8 channels): a diffusion model over
        every voxel stays slow on a CPU, where the ``latent`` family is the one to train.
        """
        return cls.for_particle(particle).replace(width=256, batch_size=256, channels=8)

    def network_for(self, n_voxels: int) -> Literal["mlp", "conv", "unet"]:
        """The network built for ``n_voxels`` voxels (``"auto"`` resolved)."""
        if self.network == "auto":
            return "unet" if n_voxels > UNET_ABOVE else "mlp"
        return self.network

    def for_geometry(self, geometry: Geometry) -> DiffusionConfig:
        """Fill ``layer_shapes`` from the geometry for the convolutional networks, when empty."""
        if self.network_for(geometry.n_voxels) == "mlp" or self.layer_shapes:
            return self
        return self.replace(layer_shapes=tuple((layer.n_alpha, layer.n_r) for layer in geometry.layers))


class LogitSpace(nn.Module):
    """Logit of the features in [0, 1], then a standardisation per feature fitted on training showers.

    Args:
        n_features: Width of the preprocessing's network space.
        n_plain: Leading features that are only standardised (the response of the ``total`` transform).
        alpha: The logit's regulariser ``a``: ``u -> logit(a + (1 - 2 a) u)``.

    Example:
        >>> space = LogitSpace(3, 1, 1e-6)
        >>> x = torch.tensor([[0.5, 0.0, 0.25]])
        >>> space.fit(x.repeat(4, 1))
        >>> torch.allclose(space.inverse(space(x)), x, atol=1e-6)
        True
    """

    mean: Tensor
    std: Tensor
    fitted: Tensor

    def __init__(self, n_features: int, n_plain: int, alpha: float) -> None:
        super().__init__()
        self.n_plain = n_plain
        self.alpha = alpha
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def logit(self, x: Tensor) -> Tensor:
        """Preprocessing features -> logit features (before the standardisation)."""
        u = self.alpha + (1 - 2 * self.alpha) * x[:, self.n_plain :].clamp(0, 1)
        return torch.cat([x[:, : self.n_plain], torch.log(u) - torch.log1p(-u)], dim=1)

    @torch.no_grad()
    def fit(self, x: Tensor) -> None:
        """Fit the means and standard deviations (at least 0.1, for features that hardly vary) on ``x``."""
        z = self.logit(x)
        self.mean.copy_(z.mean(dim=0))
        self.std.copy_(z.std(dim=0).nan_to_num(1.0).clamp_min(0.1))
        self.fitted.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        """Preprocessing features (N, D) -> network space (N, D)."""
        return (self.logit(x) - self.mean) / self.std

    def inverse(self, y: Tensor) -> Tensor:
        """Network space -> preprocessing features; fractions below the regulariser become 0."""
        z = y * self.std + self.mean
        u = (torch.sigmoid(z[:, self.n_plain :]) - self.alpha) / (1 - 2 * self.alpha)
        return torch.cat([z[:, : self.n_plain], u.clamp(0, 1)], dim=1)


class Diffusion(GenerativeModel):
    """Conditional diffusion / flow-matching model over the voxels, see the module docstring.

    Args:
        config: The hyperparameters.
        preprocessing: The transforms fitted on the training data.

    Raises:
        ConfigError: for ``network="conv"`` without ``layer_shapes`` matching the preprocessing, or with
            the ``energy`` preprocessing.
    """

    config_class = DiffusionConfig
    loss_names: ClassVar[tuple[str, ...]] = ("loss",)
    averages_in_sampling: ClassVar[bool] = True  # velocity(averaged=True): the export samples the average too
    config: DiffusionConfig

    def __init__(self, config: DiffusionConfig, preprocessing: Preprocessing) -> None:
        super().__init__(config, preprocessing)
        kind = preprocessing.showers.kind
        self.space = LogitSpace(self.n_features, 1 if kind == "total" else 0, config.logit_alpha)
        self.schedule = get_schedule(config.schedule)
        self.network = self._network(config, preprocessing)
        self.sampler = self.make_sampler()
        self.keep_average(self.network)

    def _network(self, config: DiffusionConfig, preprocessing: Preprocessing) -> nn.Module:
        common = {"time_dim": config.time_dim, "embedding_dim": config.embedding_dim}
        network = config.network_for(self.n_voxels)
        if network == "mlp":
            return ResidualMLP(self.n_features, self.n_conditions, config.width, config.depth, **common)
        kind = preprocessing.showers.kind
        if kind == "energy":
            msg = f"expected the 'total' or 'layer' preprocessing for network='{network}' but got 'energy'"
            raise ConfigError(msg)
        n_scalars = len(preprocessing.showers.layer_sizes) + (1 if kind == "total" else 0)
        if network == "unet":
            return CylinderUNet(self.n_features, self.n_conditions,
                                layer_shapes_of(preprocessing.showers.layer_sizes, config.layer_shapes), n_scalars,
                                config.channels, config.levels, **common)
        sizes = [a * r for a, r in config.layer_shapes]
        if sizes != list(preprocessing.showers.layer_sizes):
            msg = (f"expected layer_shapes (n_alpha, n_r) with {list(preprocessing.showers.layer_sizes)} voxels per "
                   f"layer for network='conv' but got {list(config.layer_shapes)}, in Diffusion")
            raise ConfigError(msg)
        return VoxelConv(self.n_features, self.n_conditions, config.layer_shapes, n_scalars, config.channels,
                         config.depth, **common)

    # ------------------------------------------------------------------ pieces
    def velocity(self, x: Tensor, t: Tensor, c: Tensor, averaged: bool = False) -> Tensor:
        """The network's velocity at noisy showers ``x`` (N, D), times ``t`` (N,), conditions ``c``.

        ``averaged`` evaluates the moving average of the weights (when the config keeps one).
        """
        if averaged and self.ema is not None:
            out: Tensor = torch.func.functional_call(self.network, self.ema.averaged(), (x, t, c))
            return out
        result: Tensor = self.network(x, t, c)
        return result

    def fit_space(self, batches: Sequence[Batch]) -> None:
        """Fit the network space's standardisation on training batches (done by the first :meth:`train_step`)."""
        with torch.no_grad():
            self.space.fit(torch.cat([self.encode(batch)[0] for batch in batches]))

    def with_sampler(self, name: str, steps: int | None = None, spacing: Spacing | None = None) -> Diffusion:
        """A copy of this model (same weights, same device) whose :meth:`sample` uses another sampler.

        Args:
            name: A sampler (``"ddim"``, ``"heun"``, ``"dpm2m"``) or a preset of :data:`SAMPLER_PRESETS`
                (``"fast"``, ``"accurate"``).
            steps: Its number of steps (default: the preset's, or the config's ``sampler_steps``).
            spacing: Its time grid (default: the config's).

        Raises:
            ConfigError: for an unknown sampler, spacing or a number of steps < 1.
        """
        sampler, default_steps = SAMPLER_PRESETS.get(name, (name, self.config.sampler_steps))
        config = self.config.replace(sampler=sampler, sampler_steps=default_steps if steps is None else steps,
                                     spacing=spacing or self.config.spacing)
        other = copy.deepcopy(self)
        other.config = config
        other.sampler = other.make_sampler()
        return other

    def make_sampler(self) -> Sampler:
        """The config's sampler with its time grid set (done once: a sampling call only resets it)."""
        sampler = get_sampler(self.config.sampler, self.schedule, self.config.spacing)
        sampler.set_timesteps(self.config.sampler_steps)
        return sampler

    # --------------------------------------------------------------- interface
    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """Mean squared error of the predicted velocity at random times of the path."""
        x, c = self.encode(batch)
        y = self.space(x)
        t = training_times(y.shape[0], self.config.time_sampling, generator, y)
        noise = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
        target = self.schedule.velocity(y, noise, t)
        return F.mse_loss(self.velocity(self.schedule.add_noise(y, noise, t), t, c), target)

    def sample_features(self, conditions: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Integrate the probability flow from noise with the config's sampler; network-space showers (N, D)."""
        noise = torch.randn((conditions.shape[0], self.n_features), generator=generator, device=conditions.device,
                            dtype=conditions.dtype)
        return self.sample_from_noise(conditions, noise)

    def noise_size(self) -> int:
        """The sampler starts from one standard-normal draw per feature and is deterministic after it."""
        return self.n_features

    def sample_from_noise(self, conditions: Tensor, noise: Tensor) -> Tensor:
        """Integrate the probability flow from ``noise`` (N, D) scaled to t = 1; network-space showers (N, D).

        The loop runs the config's fixed number of steps, so it unrolls into one graph (ONNX export).
        """
        sampler = copy.copy(self.sampler)  # its own step state; the prepared time grid is shared
        sampler.reset()
        y = sampler.start(noise)
        for t in sampler.timesteps.tolist():
            times = torch.full_like(y[:, 0], float(t))  # (N,), N stays dynamic in an exported graph
            y = sampler.step(self.velocity(y, times, conditions, averaged=True), t, y).prev_sample
        return self.space.inverse(y)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """One Adam over the network."""
        return [torch.optim.Adam(self.network.parameters(), lr=self.config.lr, betas=self.config.betas)]

    def prepare(self, next_batch: Callable[[], Batch], generator: torch.Generator | None = None) -> None:
        """The first step fits the network space."""
        if not bool(self.space.fitted):
            self.fit_space([next_batch() for _ in range(self.config.normalisation_batches)])

    def clip_gradients(self, logged: dict[str, float]) -> bool:
        """The network's gradient norm clipped at ``grad_clip`` (0: not clipped)."""
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.network.parameters(), self.config.grad_clip)
        return True

    def extra_repr(self) -> str:
        cfg = self.config
        return (f"{super().extra_repr()}, schedule={cfg.schedule}, sampler={cfg.sampler}, "
                f"steps={cfg.sampler_steps}, spacing={cfg.spacing}")
