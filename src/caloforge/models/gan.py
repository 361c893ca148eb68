"""Conditional Wasserstein GAN with gradient penalty, with CaloShowerGAN defaults.

The generator maps noise ``z ~ N(0.5, 0.5)`` and the conditioning vector to a shower in
network space through 3 hidden blocks plus an output block, each dense + batch
normalisation + activation; the output activation is non-negative, so generated energies
are too. The critic is 3 dense + activation blocks (no batch normalisation) and a linear
output. Training alternates ``critic_steps`` critic updates with one generator update;
the critic loss is ``D(fake) - D(real) + lambda * (|grad D(x_hat)| - 1)^2`` on random
interpolates ``x_hat`` (WGAN-GP).

References:
    I. Gulrajani et al., Improved Training of Wasserstein GANs, arXiv:1704.00028.
    ATLAS Collaboration, AtlFast3 (FastCaloGAN), arXiv:2109.02551.
    M. Faucci Giannelli, R. Zhang, CaloShowerGAN, arXiv:2309.06515.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_linear_bn_eval

from caloforge.models.base import Batch, GenerativeModel, TrainableConfig, check_particle
from caloforge.models.preprocess import Preprocessing

__all__ = ["GAN", "GANConfig"]

Activation = Literal["swish", "relu", "leaky_relu"]
Init = Literal["glorot_normal", "he_uniform"]
OutputActivation = Literal["relu", "softplus", "sigmoid"]
Width = Annotated[int, Field(ge=1, le=2**20)]
Beta = Annotated[float, Field(ge=0, lt=1)]


class GANConfig(TrainableConfig):
    """Hyperparameters of :class:`GAN`; the defaults are CaloShowerGAN's photon network.

    Args:
        noise_dim: Dimension of the latent noise.
        noise_mean: Mean of the Gaussian noise (0.5 in CaloShowerGAN).
        noise_std: Standard deviation of the Gaussian noise (0.5 in CaloShowerGAN).
        generator_layers: Widths of the generator's hidden layers.
        critic_layers: Widths of the critic's hidden layers.
        activation: Hidden-layer activation of both networks.
        init: Weight initialisation (biases start at 0).
        output_activation: Non-negative activation of the generator output.
        lr: Adam learning rate of both networks.
        lr_schedule, warmup_fraction, min_lr_ratio, ema_decay: The schedule over the budget and the weight
            averaging, see :class:`~caloforge.models.base.TrainableConfig` (constant, no averaging by default).
        generator_betas: Adam (beta1, beta2) of the generator.
        critic_betas: Adam (beta1, beta2) of the critic.
        critic_steps: Critic updates per generator update (the D/G ratio).
        gp_lambda: Weight of the gradient penalty.
        batch_size: Showers per critic or generator update.
        preprocessing: See :class:`~caloforge.models.base.FamilyConfig`.
        energy_scale: See :class:`~caloforge.models.base.FamilyConfig`.

    Example:
        >>> GANConfig.for_particle("pion").critic_steps
        5
        >>> GANConfig.from_dict(GANConfig().to_dict()) == GANConfig()
        True
    """

    noise_dim: Annotated[int, Field(ge=1, le=2**20)] = 100
    noise_mean: Annotated[float, Field(allow_inf_nan=False)] = 0.5
    noise_std: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 0.5
    generator_layers: tuple[Width, ...] = (100, 200, 400)
    critic_layers: tuple[Width, ...] = (368, 368, 368)
    activation: Activation = "swish"
    init: Init = "glorot_normal"
    output_activation: OutputActivation = "relu"
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1e-4
    generator_betas: tuple[Beta, Beta] = (0.5, 0.999)
    critic_betas: tuple[Beta, Beta] = (0.9, 0.999)
    critic_steps: Annotated[int, Field(ge=1, le=1000)] = 8
    gp_lambda: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 3.0

    @classmethod
    def for_particle(cls, particle: str | None) -> GANConfig:
        """CaloShowerGAN's hyperparameters for ``"photon"`` (also electrons) or ``"pion"``.

        Raises:
            ConfigError: for another particle name.
        """
        check_particle(particle, "GANConfig.for_particle")
        if particle == "pion":
            return cls().replace(
                noise_dim=200, generator_layers=(200, 400, 800), critic_layers=(800, 400, 200),
                activation="relu", init="he_uniform", critic_betas=(0.5, 0.999), critic_steps=5, gp_lambda=20.0,
            )
        return cls()

    @classmethod
    def for_cpu(cls, particle: str | None) -> GANConfig:
        """CaloShowerGAN's networks with training settings that learn faster per CPU-minute.

        Batch 256, D/G ratio 2, Adam lr 5e-4 with betas (0.5, 0.9), and the ``"total"``
        preprocessing (the response standardised per incident energy, layer fractions,
        normalised voxels), so the total energy is one output with the same scale at every
        energy. Measured on reference-simulator dataset-1 photons, 4 CPU minutes, 20k
        training showers: evaluation chi2/NDF 2.6 against 9.4 with the per-layer
        preprocessing and about 20 (untrained level) with the paper's settings (batch 1024,
        D/G 8, lr 1e-4, voxels / E_inc), see docs/results.md.
        """
        return cls.for_particle(particle).replace(batch_size=256, critic_steps=2, lr=5e-4, critic_betas=(0.5, 0.9),
                                                  generator_betas=(0.5, 0.9), preprocessing="total")


def _activation(name: str) -> nn.Module:
    kinds: dict[str, type[nn.Module]] = {"swish": nn.SiLU, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU,
                                         "softplus": nn.Softplus, "sigmoid": nn.Sigmoid}
    return kinds[name]()


def _initialise(module: nn.Module, init: str) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            if init == "glorot_normal":
                nn.init.xavier_normal_(layer.weight)
            else:
                nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)


def _mlp(widths: Sequence[int], activation: str, batch_norm: bool, last: str | None) -> nn.Sequential:
    """Dense blocks ``widths[0] -> ... -> widths[-1]``; the last block gets activation ``last``."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        is_last = i == len(widths) - 2
        layers.append(nn.Linear(n_in, n_out))
        if batch_norm:
            layers.append(nn.BatchNorm1d(n_out))
        act = last if is_last else activation
        if act is not None:
            layers.append(_activation(act))
    return nn.Sequential(*layers)


class GAN(GenerativeModel):
    """Conditional WGAN-GP (CaloShowerGAN architecture), see the module docstring.

    Args:
        config: The hyperparameters.
        preprocessing: The transforms fitted on the training data.

    Example:
        >>> from caloforge.models.preprocess import ConditionScaler, EnergyScaler, Preprocessing, ShowerTransform
        >>> p = Preprocessing(ShowerTransform("energy", (368,), (1.0,)), EnergyScaler(256.0, 4194304.0),
        ...                   ConditionScaler())
        >>> gan = GAN(GANConfig(), p)
        >>> sum(q.numel() for q in gan.generator.parameters()), sum(q.numel() for q in gan.critic.parameters())
        (260504, 408113)
    """

    config_class = GANConfig
    loss_names: ClassVar[tuple[str, ...]] = ("critic", "generator", "w_distance", "gp")
    sample_block_rows: ClassVar[int | None] = 512  # CPU sampling in 512-row blocks (docs/performance.md)
    config: GANConfig

    def __init__(self, config: GANConfig, preprocessing: Preprocessing) -> None:
        super().__init__(config, preprocessing)
        c = self.n_conditions
        g_widths = [config.noise_dim + c, *config.generator_layers, self.n_features]
        d_widths = [self.n_features + c, *config.critic_layers]
        self.generator = _mlp(g_widths, config.activation, batch_norm=True, last=config.output_activation)
        critic = _mlp(d_widths, config.activation, batch_norm=False, last=config.activation)
        critic.append(nn.Linear(d_widths[-1], 1))
        self.critic = critic
        _initialise(self, config.init)
        self._folded: tuple[tuple[tuple[int, int], ...], nn.Sequential] | None = None
        self.keep_average(self.generator)  # generation needs the generator only

    # ------------------------------------------------------------------ pieces
    def noise(self, n: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
        """Latent noise ``N(noise_mean, noise_std)``, shape (n, noise_dim), on ``like``'s device."""
        z = torch.randn(n, self.config.noise_dim, generator=generator, device=like.device, dtype=like.dtype)
        return self.config.noise_mean + self.config.noise_std * z

    def generate(self, c: Tensor, generator: torch.Generator | None) -> Tensor:
        """Network-space showers for conditions ``c`` in the current (train or eval) mode."""
        out: Tensor = self.generator(torch.cat([self.noise(c.shape[0], generator, c), c], dim=1))
        return out

    def score(self, x: Tensor, c: Tensor) -> Tensor:
        """Critic score, shape (N,)."""
        out: Tensor = self.critic(torch.cat([x, c], dim=1))
        return out.squeeze(1)

    def critic_loss(
        self, real: Tensor, fake: Tensor, c: Tensor, generator: torch.Generator | None
    ) -> dict[str, Tensor]:
        """WGAN-GP critic loss and its parts; ``fake`` should be detached."""
        eps = torch.rand(real.shape[0], 1, generator=generator, device=real.device, dtype=real.dtype)
        mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.score(mixed, c).sum(), mixed, create_graph=True)
        penalty = ((grad.norm(2, dim=1) - 1) ** 2).mean()
        w_distance = self.score(real, c).mean() - self.score(fake, c).mean()
        return {"critic": -w_distance + self.config.gp_lambda * penalty, "w_distance": w_distance, "gp": penalty}

    # --------------------------------------------------------------- interface
    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """Critic loss (with detached fakes) plus generator loss on one batch."""
        real, c = self.encode(batch)
        fake = self.generate(c, generator)
        critic = self.critic_loss(real, fake.detach(), c, generator)["critic"]
        return critic - self.score(fake, c).mean()

    def sample_features(self, conditions: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Network-space showers (N, n_features) for conditioning vectors (N, n_conditions)."""
        noise = torch.randn(conditions.shape[0], self.config.noise_dim, generator=generator, device=conditions.device,
                            dtype=conditions.dtype)
        return self.sample_from_noise(conditions, noise)

    def noise_size(self) -> int:
        """The latent dimension: sampling is the generator applied to standard-normal noise (exports to ONNX)."""
        return self.config.noise_dim

    def sample_from_noise(self, conditions: Tensor, noise: Tensor) -> Tensor:
        """The generator on latent ``noise_mean + noise_std * noise`` and the conditions, in the current mode."""
        z = self.config.noise_mean + self.config.noise_std * noise
        # traced for ONNX or torch.compile: the plain network (ONNX Runtime folds BatchNorm into Gemm itself)
        plain = self.generator.training or torch.compiler.is_compiling()
        network = self.generator if plain else self._folded_generator()
        out: Tensor = network(torch.cat([z, conditions], dim=1))
        return out

    def _folded_generator(self) -> nn.Sequential:
        """The evaluation-mode generator with each BatchNorm folded into the Linear before it.

        The same function (to float rounding) with one pass less over the activations per layer:
        at batch 10000 the BatchNorms took 8 % of the generation time. Rebuilt when a weight or a
        running statistic changes or the model moves (their storage and version are the cache key).
        """
        # the generator is one flat Sequential: its modules' own tensors, without parameters()' recursive walk,
        # which cost 0.4-1 us per shower at batch 10000 once sampling ran in 512-row blocks
        tensors = [t for module in self.generator for t in (*module._parameters.values(), *module._buffers.values())
                   if t is not None]
        key = tuple((t.data_ptr(), t._version) for t in tensors)  # moved or updated: rebuilt
        if self._folded is None or self._folded[0] != key:
            layers: list[nn.Module] = []
            for module in self.generator:
                if isinstance(module, nn.BatchNorm1d) and layers and isinstance(layers[-1], nn.Linear):
                    layers[-1] = fuse_linear_bn_eval(layers[-1], module)
                else:
                    layers.append(module)
            self._folded = (key, nn.Sequential(*layers))
        return self._folded[1]

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam for the critic, then Adam for the generator (CaloShowerGAN betas)."""
        cfg = self.config
        return [
            torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, betas=cfg.critic_betas),
            torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=cfg.generator_betas),
        ]

    def train_step(
        self,
        next_batch: Callable[[], Batch],
        optimizers: Sequence[Any],
        backward: Callable[[Tensor], None],
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        """``critic_steps`` critic updates, each on a new batch, then one generator update."""
        opt_critic, opt_generator = optimizers
        parts: dict[str, Tensor] = {}
        for _ in range(self.config.critic_steps):
            real, c = self.encode(next_batch())
            with torch.no_grad():
                fake = self.generate(c, generator)
            parts = self.critic_loss(real, fake, c, generator)
            opt_critic.zero_grad()
            backward(parts["critic"])
            opt_critic.step()
        _, c = self.encode(next_batch())
        self.critic.requires_grad_(False)
        try:
            g_loss = -self.score(self.generate(c, generator), c).mean()
            opt_generator.zero_grad()
            backward(g_loss)
            opt_generator.step()
        finally:
            self.critic.requires_grad_(True)
        self.after_step()
        return {"critic": float(parts["critic"].detach()), "generator": float(g_loss.detach()),
                "w_distance": float(parts["w_distance"].detach()), "gp": float(parts["gp"].detach())}
