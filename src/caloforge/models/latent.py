"""Latent family: a cylindrical autoencoder to a few hundred numbers, and a flow-matching prior over them.

Built for high granularity (CaloChallenge datasets 2 and 3: 6 480 and 40 500 voxels), where a
generative network over every voxel is large and slow:

* **network space**: the ``total`` preprocessing (standardised response, layer fractions,
  voxels normalised within each layer), then the diffusion family's
  :class:`~caloforge.models.diffusion.LogitSpace` (logit of every fraction, standardised per
  feature, fitted at the first iteration);
* **autoencoder** (:mod:`caloforge.models.latent_networks`): the voxels go through
  convolutions over (layer, alpha, r), circular in alpha, down to ``latent_dim`` numbers; the
  decoder gets them back *given* the shower's scalars (response and the L layer fractions), so
  the energy bookkeeping is never compressed. During training the decoder reads the latent
  with Gaussian noise of ``latent_noise`` (the latent is LayerNorm-ed to unit scale), which
  makes it robust to the prior's errors;
* **prior**: conditional flow matching (:class:`~caloforge.models.diffusion_networks.ResidualMLP`,
  linear path) over ``latent_dim + 1 + L`` numbers, the latent and the scalars, conditioned on
  the incident energy; sampling integrates its ODE with a fixed-step solver (``sampler``,
  ``sampler_steps``), then decodes. Sampling is thus a fixed function of one Gaussian draw
  per shower and exports as one ONNX graph.

**voxel model** (``voxel_model``): ``"mean"`` decodes one number per voxel, trained by the mean squared
error: each voxel's conditional mean given the latent, so every voxel-level fluctuation the latent does not
hold is lost (on ds2 the low-level classifier separated such showers completely, docs/results.md).
``"zero_inflated"`` decodes a distribution per voxel instead: the probability of a hit, and a logistic
distribution of the hit's logit amplitude (location, log scale), trained by the likelihood (binary
cross-entropy on hit or empty, plus the logistic negative log-likelihood on the hits). Sampling draws
every voxel from it with one more standard-normal number per voxel ``e``: ``u = Phi(e)``, a hit when
``u < p``, with the amplitude ``location + scale * logit(u / p)`` (``u / p`` is uniform given the hit:
inverse-CDF sampling, exact, and a fixed function of the noise, so it still exports as one graph).
A layer whose sampled voxels are all empty gets its most probable voxel, so the layer's energy from the
prior is never dropped.

Training is joint, one Adam step on ``reconstruction + prior_weight * prior``, where the prior
learns the encoder's current latents with the gradient stopped (the encoder is trained by the
reconstruction only): one optimiser, no phase switch in checkpoints or resumes; the prior
chases moving latents until the autoencoder settles (a two-phase schedule was not compared).

References:
    L. Favaro, A. Ore, S. Palacios Schweitzer, T. Plehn, CaloDREAM, arXiv:2405.09629
    (a latent generative model for datasets 2 and 3).
    F. Ernst, L. Favaro, C. Krause, T. Plehn, D. Shih, Normalizing Flows for High-Dimensional Detector
    Simulations (CaloVAE+INN: an INN in a VAE's latent space for datasets 2 and 3), arXiv:2312.09290.
    CaloLatent (a score-based model in a learned latent space, a CaloChallenge entry; no arXiv number checked).
    R. Rombach et al., latent diffusion, arXiv:2112.10752.
    Y. Lipman et al., Flow Matching for Generative Modeling, arXiv:2210.02747.
    O. Amram, K. Pedro, CaloDiffusion (cylindrical convolutions), arXiv:2308.03876.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from caloforge.errors import ConfigError
from caloforge.models.base import Batch, GenerativeModel, TrainableConfig, check_particle
from caloforge.models.cylinder import CylinderGrid, LayerShapes, layer_shapes_of
from caloforge.models.diffusion import LogitSpace
from caloforge.models.diffusion_networks import ResidualMLP
from caloforge.models.diffusion_samplers import Sampler, SamplerName, Spacing, get_sampler
from caloforge.models.diffusion_schedules import TimeSampling, get_schedule, training_times
from caloforge.models.latent_networks import ConvDecoder, ConvEncoder
from caloforge.models.preprocess import Preprocessing, TransformKind

if TYPE_CHECKING:
    from caloforge.data.geometry import Geometry

__all__ = ["Latent", "LatentConfig", "zero_inflated_nll"]

Positive = Annotated[int, Field(ge=1, le=2**24)]  # bounds: typos, not plans
VoxelModel = Literal["mean", "zero_inflated"]
_LOG_SCALE = (-7.0, 3.0)  # the logistic's log scale, clamped: a scale of 1e-3 to 20 standard deviations
_EMPTY = -1.0e4  # network-space value of an empty voxel: its fraction is 0 after LogitSpace.inverse


class LatentConfig(TrainableConfig):
    """Hyperparameters of :class:`Latent`.

    Args:
        layer_shapes: ``(n_alpha, n_r)`` per layer, in order; empty: filled from the geometry by
            :meth:`for_geometry` (``train`` does it), or one alpha bin per layer when built directly.
        channels: Channels of the autoencoder after its patch embedding, then after each down-sampling stage.
        latent_dim: Width of the autoencoder's latent (the prior adds 1 + L scalars).
        latent_noise: Standard deviation of the noise the decoder reads the (unit-scale) latent with.
        voxel_model: ``"mean"`` (one number per voxel, mean squared error) or ``"zero_inflated"`` (a hit
            probability and a logistic amplitude per voxel, sampled; see the module docstring). The presets
            use ``zero_inflated``; the class default ``mean`` is what configs stored before it existed load as.
        prior_width: Width of the prior's residual MLP.
        prior_depth: Its residual blocks.
        time_dim: Sinusoidal time features of the prior.
        embedding_dim: Width of its (time, condition) embedding.
        time_sampling: Distribution of the prior's training times.
        sampler: The prior's ODE solver, ``"ddim"``, ``"heun"`` or ``"dpm2m"``.
        sampler_steps: Its steps.
        spacing: Its time grid.
        prior_weight: Weight of the prior's loss in the joint objective.
        logit_alpha: Regulariser of the logit of features in [0, 1].
        voxel_min_std: Smallest standard deviation (logit units) a voxel is divided by: a voxel that is
            almost always empty would otherwise turn its rare hits into outliers of hundreds of standard
            deviations that dominate the reconstruction loss (seen on ds2: the loss rose from 2.5 to 4.7).
        lr: Adam learning rate.
        lr_schedule, warmup_fraction, min_lr_ratio, ema_decay: The schedule over the budget and the weight
            averaging, see :class:`~caloforge.models.base.TrainableConfig` (constant, no averaging by default).
        grad_clip: Largest gradient norm (0: no clipping).
        normalisation_batches: Batches used to fit the network space at the first iteration.
        preprocessing: ``total`` (default) or ``layer``; ``energy`` is refused.

    Example:
        >>> LatentConfig.for_cpu("electron").latent_dim
        128
        >>> LatentConfig.from_dict(LatentConfig().to_dict()) == LatentConfig()
        True
    """

    preprocessing: TransformKind = "total"
    batch_size: Positive = 256
    layer_shapes: LayerShapes = ()
    channels: tuple[Positive, ...] = Field(default=(16, 32, 64), min_length=1, max_length=8)
    latent_dim: Positive = 256
    latent_noise: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)] = 0.05
    voxel_model: VoxelModel = "mean"  # the default of configs stored before it existed
    prior_width: Positive = 512
    prior_depth: Positive = 4
    time_dim: Annotated[int, Field(ge=2, le=2**20)] = 64
    embedding_dim: Positive = 128
    time_sampling: TimeSampling = "uniform"
    sampler: SamplerName = "dpm2m"
    sampler_steps: Annotated[int, Field(ge=1, le=100_000)] = 10
    spacing: Spacing = "uniform"
    prior_weight: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    logit_alpha: Annotated[float, Field(gt=0, lt=0.1, allow_inf_nan=False)] = 1e-6
    voxel_min_std: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 1.0
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1e-3
    grad_clip: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1.0
    normalisation_batches: Positive = 10

    @classmethod
    def for_particle(cls, particle: str | None) -> LatentConfig:
        """Settings for a GPU budget (hours): channels (16, 32, 64), a 256-wide latent, a 512-wide 4-block prior,
        the zero-inflated voxel model (docs/results.md, session 32: on ds2 after 61 CPU minutes, mean separation
        power 0.036 against the mean model's 0.223, low-level AUC 0.959 against 0.9986; response chi2/NDF 4.0
        against 1.1, which the prior's scalars set).

        Raises:
            ConfigError: for an unknown particle name.
        """
        check_particle(particle, "LatentConfig.for_particle")
        return cls(voxel_model="zero_inflated")

    @classmethod
    def for_cpu(cls, particle: str | None) -> LatentConfig:
        """Settings that learn in an hour on 2 cores (measured in docs/training.md): channels (8, 16, 32), batch 64."""
        return cls.for_particle(particle).replace(channels=(8, 16, 32), latent_dim=128, prior_width=256,
                                                  prior_depth=3, embedding_dim=64, time_dim=32, batch_size=64)

    def for_geometry(self, geometry: Geometry) -> LatentConfig:
        """Fill ``layer_shapes`` from the geometry when empty."""
        if self.layer_shapes:
            return self
        return self.replace(layer_shapes=tuple((layer.n_alpha, layer.n_r) for layer in geometry.layers))


class Latent(GenerativeModel):
    """Cylindrical autoencoder plus a flow-matching prior in its latent space, see the module docstring.

    Raises:
        ConfigError: for the ``energy`` preprocessing, or ``layer_shapes`` that do not match it.
    """

    config_class = LatentConfig
    decode_rows: ClassVar[int] = 16  # showers per decoder call in sampling (docs/results.md, session 30)
    sample_block_rows: ClassVar[int | None] = 512  # CPU sampling: the prior and output transforms in blocks
    loss_names: ClassVar[tuple[str, ...]] = ("loss", "reconstruction", "prior")
    config: LatentConfig

    def __init__(self, config: LatentConfig, preprocessing: Preprocessing) -> None:
        super().__init__(config, preprocessing)
        kind = preprocessing.showers.kind
        if kind == "energy":
            msg = "expected the 'total' or 'layer' preprocessing but got 'energy', in Latent"
            raise ConfigError(msg)
        sizes = preprocessing.showers.layer_sizes
        self.n_scalars = len(sizes) + (1 if kind == "total" else 0)
        self.space = LogitSpace(self.n_features, 1 if kind == "total" else 0, config.logit_alpha)
        grid = CylinderGrid(layer_shapes_of(sizes, config.layer_shapes))
        self.encoder = ConvEncoder(grid, config.latent_dim, config.channels)
        self.stochastic = config.voxel_model == "zero_inflated"
        self.decoder = ConvDecoder(grid, config.latent_dim, self.n_scalars, config.channels, self.encoder.sizes,
                                   self.encoder.patch, outputs=3 if self.stochastic else 1)
        self.schedule = get_schedule("linear")
        self.prior = ResidualMLP(config.latent_dim + self.n_scalars, self.n_conditions, config.prior_width,
                                 config.prior_depth, time_dim=config.time_dim, embedding_dim=config.embedding_dim)
        self.sampler = self._make_sampler()
        self.keep_average(self)

    def _make_sampler(self) -> Sampler:
        sampler = get_sampler(self.config.sampler, self.schedule, self.config.spacing)
        sampler.set_timesteps(self.config.sampler_steps)
        return sampler

    # ------------------------------------------------------------------ pieces
    def encode_latent(self, y: Tensor) -> Tensor:
        """Network-space features (N, D) after the logit space -> latent (N, latent_dim)."""
        scalars = y[:, : self.n_scalars]
        out: Tensor = self.encoder(y[:, self.n_scalars :], scalars[:, -len(self.preprocessing.showers.layer_sizes):])
        return out

    def decode_latent(self, z: Tensor, scalars: Tensor, voxel_noise: Tensor | None = None) -> Tensor:
        """Latent (N, latent_dim) and scalars (N, 1 + L) -> logit-space features (N, D).

        A ``zero_inflated`` decoder draws each voxel with one standard-normal number of ``voxel_noise``
        (N, V); without it, it gives each voxel's most probable state (hit where p > 1/2, at the location).
        """
        out = self.decoder(z, scalars)
        return torch.cat([scalars, self.draw_voxels(out, voxel_noise) if self.stochastic else out], dim=1)

    def draw_voxels(self, params: Tensor, noise: Tensor | None) -> Tensor:
        """The zero-inflated decoder's (N, 3, V) parameters -> network-space voxels (N, V); see the module docstring.

        Hit when ``Phi(e) < p``; the amplitude is then the logistic's inverse CDF at ``Phi(e) / p``, uniform
        given the hit. A layer without a hit gets its most probable voxel.
        """
        logit_p, loc, log_scale = params.unbind(1)
        if noise is None:
            hit, amplitude = logit_p > 0, loc
        else:
            p = torch.sigmoid(logit_p)
            u = 0.5 * (1 + torch.erf(noise * math.sqrt(0.5)))  # Phi(e): erf exports to ONNX, erfinv does not
            hit = u < p
            v = (u / p).clamp(1e-6, 1 - 1e-6)
            amplitude = loc + log_scale.clamp(*_LOG_SCALE).exp() * (torch.log(v) - torch.log1p(-v))
        hit = hit | self._top_of_empty_layers(logit_p, hit)
        return torch.where(hit, amplitude, torch.full_like(amplitude, _EMPTY))

    def _top_of_empty_layers(self, logit_p: Tensor, hit: Tensor) -> Tensor:
        """(N, V): True at the most probable voxel of each layer that has no hit."""
        sizes = self.preprocessing.showers.layer_sizes
        if len(set(sizes)) == 1:  # ds2, ds3: a reshape
            shape = (len(logit_p), len(sizes), sizes[0])
            lp, h = logit_p.reshape(shape), hit.reshape(shape)
            top = (lp == lp.amax(dim=2, keepdim=True)) & ~h.any(dim=2, keepdim=True)
            return top.reshape(hit.shape)
        parts = [(lp == lp.amax(dim=1, keepdim=True)) & ~h.any(dim=1, keepdim=True)
                 for lp, h in zip(torch.split(logit_p, list(sizes), dim=1), torch.split(hit, list(sizes), dim=1),
                                 strict=True)]
        return torch.cat(parts, dim=1)

    def reconstruct(self, batch: Batch) -> Tensor:
        """Showers through the autoencoder (no noise), in MeV (N, V): what the decoder can represent (a
        ``zero_inflated`` decoder: each voxel's most probable state)."""
        with torch.no_grad():
            x, _ = self.encode(batch)
            y = self.space(x)
            out = self.space.inverse(self.decode_latent(self.encode_latent(y), y[:, : self.n_scalars]))
            return self.preprocessing.showers.inverse(out, batch.energies.to(out))

    def fit_space(self, batches: Sequence[Batch]) -> None:
        """Fit the logit space's standardisation on training batches (done by the first :meth:`train_step`)."""
        with torch.no_grad():
            self.space.fit(torch.cat([self.encode(batch)[0] for batch in batches]))
            self.space.std[self.n_scalars :].clamp_(min=self.config.voxel_min_std)

    def losses(self, batch: Batch, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(reconstruction, prior): the decoder's mean squared error (or its zero-inflated negative
        log-likelihood per voxel) and the prior's flow-matching loss."""
        x, c = self.encode(batch)
        y = self.space(x)
        scalars = y[:, : self.n_scalars]
        z = self.encode_latent(y)
        noisy = z + self.config.latent_noise * torch.randn(z.shape, generator=generator, device=z.device,
                                                           dtype=z.dtype)
        decoded = self.decoder(noisy, scalars)
        if self.stochastic:
            reconstruction = zero_inflated_nll(decoded, y[:, self.n_scalars :], x[:, self.n_scalars :] > 0)
        else:
            reconstruction = F.mse_loss(decoded, y[:, self.n_scalars :])
        target = torch.cat([z.detach(), scalars], dim=1)
        t = training_times(target.shape[0], self.config.time_sampling, generator, target)
        eps = torch.randn(target.shape, generator=generator, device=target.device, dtype=target.dtype)
        velocity = self.prior(self.schedule.add_noise(target, eps, t), t, c)
        prior = F.mse_loss(velocity, self.schedule.velocity(target, eps, t))
        return reconstruction, prior

    # --------------------------------------------------------------- interface
    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """``reconstruction + prior_weight * prior`` (the prior's target latents carry no gradient)."""
        reconstruction, prior = self.losses(batch, generator)
        return reconstruction + self.config.prior_weight * prior

    def noise_size(self) -> int:
        """One standard-normal draw per latent and scalar starts the prior's deterministic ODE; a
        ``zero_inflated`` decoder draws one more per voxel."""
        return self.config.latent_dim + self.n_scalars + (self.n_features - self.n_scalars if self.stochastic else 0)

    def sample_features(self, conditions: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw the prior's noise and call :meth:`sample_from_noise`."""
        noise = torch.randn((conditions.shape[0], self.noise_size()), generator=generator, device=conditions.device,
                            dtype=conditions.dtype)
        return self.sample_from_noise(conditions, noise)

    def sample_from_noise(self, conditions: Tensor, noise: Tensor) -> Tensor:
        """Integrate the prior from ``noise``'s first latent_dim + 1 + L columns, decode (drawing the voxels with
        the rest for ``zero_inflated``); preprocessing features (N, D)."""
        width = self.config.latent_dim + self.n_scalars
        noise, voxel_noise = noise[:, :width], (noise[:, width:] if self.stochastic else None)
        sampler = copy.copy(self.sampler)  # its own step state; the prepared time grid is shared
        sampler.reset()
        y = sampler.start(noise)
        for t in sampler.timesteps.tolist():
            times = torch.full_like(y[:, 0], float(t))
            y = sampler.step(self.prior(y, times, conditions), t, y).prev_sample
        z, scalars = y[:, : self.config.latent_dim], y[:, self.config.latent_dim :]
        rows = self.decode_rows
        exporting = torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()  # the graph's batch is dynamic
        if exporting or torch.is_grad_enabled() or z.device.type != "cpu" or len(z) <= rows:  # a GPU takes it whole
            return self.space.inverse(self.decode_latent(z, scalars, voxel_noise))
        out = z.new_empty(len(z), self.n_features)
        for first in range(0, len(z), rows):  # each block's activations in cache; rows are independent
            block = slice(first, first + rows)
            out[block] = self.decode_latent(z[block], scalars[block], None if voxel_noise is None else
                                            voxel_noise[block])
        return self.space.inverse(out)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """One Adam over the autoencoder and the prior."""
        return [torch.optim.Adam(self.parameters(), lr=self.config.lr)]

    def prepare(self, next_batch: Callable[[], Batch], generator: torch.Generator | None = None) -> None:
        """The first step fits the logit space."""
        if not bool(self.space.fitted):
            self.fit_space([next_batch() for _ in range(self.config.normalisation_batches)])

    def loss_terms(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The joint loss and its two parts."""
        reconstruction, prior = self.losses(batch, generator)
        return {"loss": reconstruction + self.config.prior_weight * prior, "reconstruction": reconstruction,
                "prior": prior}

    def clip_gradients(self, logged: dict[str, float]) -> bool:
        """The gradient norm clipped at ``grad_clip`` (0: not clipped)."""
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.parameters(), self.config.grad_clip)
        return True

    def extra_repr(self) -> str:
        cfg = self.config
        return (f"{super().extra_repr()}, grid={self.encoder.grid.size}, latent_dim={cfg.latent_dim}, "
                f"channels={cfg.channels}, sampler={cfg.sampler}, steps={cfg.sampler_steps}")


def zero_inflated_nll(params: Tensor, y: Tensor, hit: Tensor) -> Tensor:
    """Mean over voxels of ``-log`` of the zero-inflated likelihood of network-space voxels ``y`` (N, V).

    ``params`` (N, 3, V): the logit of the hit probability, the logistic's location and log scale;
    ``hit`` (N, V): which voxels are not empty (where ``y`` is read).

    Binary cross-entropy of hit against empty, plus on the hits the logistic's negative log-density
    ``z + 2 softplus(-z) + log s`` with ``z = (y - location) / s``.
    """
    logit_p, loc, log_scale = params.unbind(1)
    log_scale = log_scale.clamp(*_LOG_SCALE)
    z = (y - loc) * torch.exp(-log_scale)
    logistic = z + 2 * F.softplus(-z) + log_scale
    bce = F.binary_cross_entropy_with_logits(logit_p, hit.to(logit_p.dtype))
    return bce + torch.where(hit, logistic, torch.zeros_like(logistic)).mean()
