"""Conditional variational autoencoder, as in Geant4's Par04 example.

The **encoder** maps a network-space shower and its conditioning vector (E_hat plus extra
conditions) through dense blocks (dense + activation, then batch normalisation, as Par04) to
the mean and log-variance of a Gaussian latent; the **decoder** maps a latent vector and the
same conditions through the mirrored blocks to the shower. Every feature of the ``total``,
``layer`` and ``energy`` preprocessing lies in [0, 1], so the decoder ends in a sigmoid and the
reconstruction loss is the binary cross-entropy summed over features (Par04's choice;
``reconstruction="mse"`` uses the squared error instead). The loss per shower is

    reconstruction + beta(iteration) * KL(q(z | x, c) || N(0, 1)),

with ``beta`` rising linearly from 0 to ``kl_weight`` over ``kl_warmup_iterations``
(KL warm-up). The iteration count is a buffer, so the warm-up continues where it was after a
resume from a checkpoint or a bundle. Par04 weights the KL term by ``1 / n_features`` relative
to the summed reconstruction loss; ``kl_weight=None`` does the same.

**Generation uses only the decoder**: ``z ~ N(0, 1)`` and the conditions go through
:attr:`VAE.decoder`, the deployable generator (what Par04 exports to ONNX). The encoder
exists for training only.

References:
    D. Kingma, M. Welling, Auto-Encoding Variational Bayes, arXiv:1312.6114.
    S. Bowman et al., Generating Sentences from a Continuous Space (KL annealing), arXiv:1511.06349.
    Geant4 example extended/parameterisations/Par04 and its training code (D. Salamani et al.,
    github.com/DalilaSalamani/MLFastSim): the architecture and the loss weighting.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from caloforge.models.base import Batch, GenerativeModel, TrainableConfig, check_particle
from caloforge.models.preprocess import Preprocessing, TransformKind

__all__ = ["VAE", "VAEConfig"]

Width = Annotated[int, Field(ge=1, le=2**20)]
_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "swish": nn.SiLU}


class VAEConfig(TrainableConfig):
    """Hyperparameters of :class:`VAE`; the defaults are Par04's network.

    Args:
        encoder_layers: Widths of the encoder's hidden layers; the decoder mirrors them.
        latent_dim: Dimension of the Gaussian latent space.
        activation: Hidden-layer activation.
        batch_norm: Batch normalisation after every hidden layer (Par04).
        reconstruction: ``"bce"`` (binary cross-entropy, Par04) or ``"mse"``, summed over features.
        kl_weight: Final weight ``beta`` of the KL term; None is Par04's ``1 / n_features``.
        kl_warmup_iterations: Iterations over which ``beta`` rises linearly from 0 (0: no warm-up).
        lr: Adam learning rate.
        lr_schedule, warmup_fraction, min_lr_ratio, ema_decay: The schedule over the budget and the weight
            averaging, see :class:`~caloforge.models.base.TrainableConfig` (constant, no averaging by default).
        batch_size: Showers per iteration (Par04: 100).
        preprocessing: See :class:`~caloforge.models.base.FamilyConfig`; ``total`` by default.
        energy_scale: See :class:`~caloforge.models.base.FamilyConfig`.

    Example:
        >>> VAEConfig().latent_dim, VAEConfig().encoder_layers
        (10, (100, 50, 20, 14))
        >>> VAEConfig.from_dict(VAEConfig().to_dict()) == VAEConfig()
        True
    """

    preprocessing: TransformKind = "total"
    batch_size: Width = 100
    encoder_layers: Annotated[tuple[Width, ...], Field(min_length=1)] = (100, 50, 20, 14)
    latent_dim: Width = 10
    activation: Literal["relu", "leaky_relu", "swish"] = "relu"
    batch_norm: bool = True
    reconstruction: Literal["bce", "mse"] = "bce"
    kl_weight: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    kl_warmup_iterations: Annotated[int, Field(ge=0, le=10**9)] = 1000
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1e-3

    @classmethod
    def for_particle(cls, particle: str | None) -> VAEConfig:
        """Par04's settings (the same for every particle): layers 100-50-20-14, latent 10, batch 100.

        Raises:
            ConfigError: for an unknown particle name.
        """
        check_particle(particle, "VAEConfig.for_particle")
        return cls()

    @classmethod
    def for_cpu(cls, particle: str | None) -> VAEConfig:
        """Settings that learn in CPU minutes (measured in docs/training.md)."""
        return cls.for_particle(particle).replace(encoder_layers=(512, 256, 128), latent_dim=32, batch_size=256)


def _blocks(widths: Sequence[int], activation: str, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(widths):
        layers += [nn.Linear(n_in, n_out), _ACTIVATIONS[activation]()]
        if batch_norm:
            layers.append(nn.BatchNorm1d(n_out))
    return layers


class VAE(GenerativeModel):
    """Conditional VAE (Par04), see the module docstring; :attr:`decoder` is the generator.

    Args:
        config: The hyperparameters.
        preprocessing: The transforms fitted on the training data.

    Example:
        >>> from caloforge.models.preprocess import ConditionScaler, EnergyScaler, Preprocessing, ShowerTransform
        >>> p = Preprocessing(ShowerTransform("energy", (368,), (1.0,)), EnergyScaler(256.0, 4194304.0),
        ...                   ConditionScaler())
        >>> vae = VAE(VAEConfig(), p)
        >>> vae.beta(), sum(q.numel() for q in vae.decoder.parameters())
        (0.0, 44154)
    """

    config_class = VAEConfig
    loss_names: ClassVar[tuple[str, ...]] = ("loss", "reconstruction", "kl", "beta")
    config: VAEConfig
    iteration: Tensor

    def __init__(self, config: VAEConfig, preprocessing: Preprocessing) -> None:
        super().__init__(config, preprocessing)
        d, c, hidden = self.n_features, self.n_conditions, list(config.encoder_layers)
        self.encoder = nn.Sequential(*_blocks([d + c, *hidden], config.activation, config.batch_norm))
        self.to_mean = nn.Linear(hidden[-1], config.latent_dim)
        self.to_log_var = nn.Linear(hidden[-1], config.latent_dim)
        self.decoder = nn.Sequential(*_blocks([config.latent_dim + c, *hidden[::-1]], config.activation,
                                              config.batch_norm), nn.Linear(hidden[0], d))
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self.keep_average(self.decoder)  # generation needs the decoder only

    def beta(self) -> float:
        """The KL weight at the current iteration: linear from 0 to the final weight over the warm-up."""
        cfg = self.config
        final = cfg.kl_weight if cfg.kl_weight is not None else 1.0 / self.n_features
        if cfg.kl_warmup_iterations == 0:
            return final
        return final * min(1.0, float(self.iteration) / cfg.kl_warmup_iterations)

    def encode_latent(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z | x, c) for network-space showers ``x`` (training only)."""
        h = self.encoder(torch.cat([x, c], dim=1))
        return self.to_mean(h), self.to_log_var(h).clamp(-30.0, 20.0)

    def decode(self, z: Tensor, c: Tensor) -> Tensor:
        """Network-space showers in [0, 1] for latent vectors ``z`` and conditions ``c`` (the generator)."""
        return torch.sigmoid(self._decode_logits(z, c))

    def _decode_logits(self, z: Tensor, c: Tensor) -> Tensor:
        out: Tensor = self.decoder(torch.cat([z, c], dim=1))
        return out

    def losses(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The loss and its parts, each a mean over the batch: reconstruction, KL and their weighted sum."""
        x, c = self.encode(batch)
        target = x.clamp(0, 1)
        mean, log_var = self.encode_latent(x, c)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        logits = self._decode_logits(mean + torch.exp(0.5 * log_var) * eps, c)
        if self.config.reconstruction == "bce":
            per_feature = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        else:
            per_feature = (torch.sigmoid(logits) - target) ** 2
        reconstruction = per_feature.sum(dim=1).mean()
        kl = (-0.5 * (1 + log_var - mean**2 - torch.exp(log_var))).sum(dim=1).mean()
        beta = self.beta()
        return {"loss": reconstruction + beta * kl, "reconstruction": reconstruction, "kl": kl,
                "beta": torch.tensor(beta)}

    # --------------------------------------------------------------- interface
    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """Reconstruction plus ``beta`` times KL (the negative ELBO for ``beta = 1``), a scalar."""
        return self.losses(batch, generator)["loss"]

    def sample_features(self, conditions: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Decode ``z ~ N(0, 1)`` with the conditions: only the decoder runs."""
        z = torch.randn(conditions.shape[0], self.config.latent_dim, generator=generator, device=conditions.device,
                        dtype=conditions.dtype)
        return self.decode(z, conditions)

    def noise_size(self) -> int:
        """The latent dimension: the decoder alone maps standard-normal latents to showers (exports to ONNX)."""
        return self.config.latent_dim

    def sample_from_noise(self, conditions: Tensor, noise: Tensor) -> Tensor:
        """The decoder on latents ``noise`` (N, latent_dim) and the conditions."""
        return self.decode(noise, conditions)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """One Adam over encoder and decoder (Par04)."""
        return [torch.optim.Adam(self.parameters(), lr=self.config.lr)]

    def loss_terms(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The loss, its reconstruction and KL parts and ``beta``."""
        return self.losses(batch, generator)

    def after_step(self) -> None:
        """The iteration count (and with it ``beta``) advances; the moving average follows the step."""
        self.iteration += 1
        super().after_step()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, latent_dim={self.config.latent_dim}, iteration={int(self.iteration)}"
