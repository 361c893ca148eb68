"""Probability paths (noise schedules) of the diffusion family: ``x_t = alpha(t) x_0 + sigma(t) eps``, t in [0, 1].

A schedule is pure maths with no parameters: t = 0 is the data, t = 1 pure Gaussian noise
(``alpha(1) = 0``, ``sigma(1) = 1``). The network learns the velocity of the path,
``u = alpha'(t) x_0 + sigma'(t) eps``, whose conditional mean given ``x_t`` is the drift of the
probability-flow ODE ``dx/dt = u(x, t)``; :meth:`NoiseSchedule.split` turns a predicted velocity
back into the predicted clean sample and noise, which the samplers of
:mod:`caloforge.models.diffusion_samplers` need. Velocity prediction is well conditioned at both
ends of the path, unlike noise prediction near t = 1 or data prediction near t = 0.

* :class:`LinearPath` (``"linear"``): ``alpha = 1 - t``, ``sigma = t``, the straight path of
  conditional flow matching / rectified flow; its velocity is ``eps - x_0``.
* :class:`CosineSchedule` (``"cosine"``): variance preserving, ``alpha = cos(pi t / 2)``,
  ``sigma = sin(pi t / 2)``, i.e. ``alpha_bar = alpha^2`` of the cosine schedule; its velocity is
  ``pi / 2`` times the ``v`` of v-prediction.

Example:
    >>> s = get_schedule("linear")
    >>> t = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    >>> s.alpha(t).tolist(), s.sigma(t).tolist()
    ([1.0, 0.75, 0.0], [0.0, 0.25, 1.0])

References:
    J. Ho, A. Jain, P. Abbeel, Denoising Diffusion Probabilistic Models, arXiv:2006.11239.
    A. Nichol, P. Dhariwal, Improved Denoising Diffusion Probabilistic Models, arXiv:2102.09672.
    T. Salimans, J. Ho, Progressive Distillation for Fast Sampling of Diffusion Models, arXiv:2202.00512.
    Y. Lipman et al., Flow Matching for Generative Modeling, arXiv:2210.02747.
    X. Liu, C. Gong, Q. Liu, Flow Straight and Fast (rectified flow), arXiv:2209.03003.
    T. Karras et al., Elucidating the Design Space of Diffusion-Based Generative Models (EDM), arXiv:2206.00364.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar, Literal, get_args

import torch
from torch import Tensor

from caloforge.errors import ConfigError

__all__ = ["SCHEDULES", "CosineSchedule", "LinearPath", "NoiseSchedule", "ScheduleName", "TimeSampling",
           "get_schedule", "training_times"]

ScheduleName = Literal["linear", "cosine"]
TimeSampling = Literal["uniform", "logit_normal"]


class NoiseSchedule(ABC):
    """A Gaussian probability path from the data (t = 0) to noise (t = 1).

    Subclasses give ``alpha``, ``sigma``, their time derivatives and the inverse of the
    half log-SNR; everything else follows. All methods take and return tensors of times.
    """

    name: ClassVar[str]

    @abstractmethod
    def alpha(self, t: Tensor) -> Tensor:
        """Signal scale, 1 at t = 0, 0 at t = 1, decreasing."""

    @abstractmethod
    def sigma(self, t: Tensor) -> Tensor:
        """Noise scale, 0 at t = 0, 1 at t = 1, increasing."""

    @abstractmethod
    def d_alpha(self, t: Tensor) -> Tensor:
        """d alpha / dt."""

    @abstractmethod
    def d_sigma(self, t: Tensor) -> Tensor:
        """d sigma / dt."""

    @abstractmethod
    def time_at(self, half_log_snr: Tensor) -> Tensor:
        """The time t where ``log(alpha / sigma)`` equals ``half_log_snr`` (inverse of :meth:`half_log_snr`)."""

    def alpha_bar(self, t: Tensor) -> Tensor:
        """Fraction of signal variance, ``alpha^2`` (DDPM's cumulative product of ``1 - beta``)."""
        return self.alpha(t) ** 2

    def snr(self, t: Tensor) -> Tensor:
        """Signal-to-noise ratio ``alpha^2 / sigma^2``: infinite at t = 0, 0 at t = 1."""
        return self.alpha(t) ** 2 / self.sigma(t) ** 2

    def half_log_snr(self, t: Tensor) -> Tensor:
        """``lambda(t) = log(alpha / sigma)``, the time variable of DPM-Solver (decreasing in t)."""
        return torch.log(self.alpha(t)) - torch.log(self.sigma(t))

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """``x_t = alpha(t) x0 + sigma(t) noise``, with ``t`` of shape (N,) for x0 of shape (N, D)."""
        t = t.reshape(-1, 1)
        return self.alpha(t) * x0 + self.sigma(t) * noise

    def velocity(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """The training target ``d x_t / dt = alpha'(t) x0 + sigma'(t) noise``, ``t`` of shape (N,)."""
        t = t.reshape(-1, 1)
        return self.d_alpha(t) * x0 + self.d_sigma(t) * noise

    def split(self, x_t: Tensor, velocity: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor]:
        """Invert ``(x_t, velocity)`` into the implied ``(x0, noise)``; ``t`` a float or of shape (N,)."""
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device).reshape(-1, 1)
        a, s, da, ds = self.alpha(t), self.sigma(t), self.d_alpha(t), self.d_sigma(t)
        det = a * ds - s * da
        return (ds * x_t - s * velocity) / det, (a * velocity - da * x_t) / det

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinearPath(NoiseSchedule):
    """Straight path ``x_t = (1 - t) x0 + t eps`` of conditional flow matching (arXiv:2210.02747, 2209.03003).

    Example:
        >>> LinearPath().time_at(torch.tensor([0.0])).item()
        0.5
    """

    name = "linear"

    def alpha(self, t: Tensor) -> Tensor:
        return 1 - t

    def sigma(self, t: Tensor) -> Tensor:
        return t

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.full_like(t, -1.0)

    def d_sigma(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def time_at(self, half_log_snr: Tensor) -> Tensor:
        return torch.sigmoid(-half_log_snr)


class CosineSchedule(NoiseSchedule):
    """Variance-preserving cosine schedule ``alpha = cos(pi t / 2)``, ``sigma = sin(pi t / 2)`` (arXiv:2102.09672).

    Example:
        >>> s = CosineSchedule()
        >>> t = torch.linspace(0, 1, 5, dtype=torch.float64)
        >>> bool(torch.allclose(s.alpha(t) ** 2 + s.sigma(t) ** 2, torch.ones(5, dtype=torch.float64)))
        True
    """

    name = "cosine"

    def alpha(self, t: Tensor) -> Tensor:
        return torch.cos(0.5 * math.pi * t)

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sin(0.5 * math.pi * t)

    def d_alpha(self, t: Tensor) -> Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def d_sigma(self, t: Tensor) -> Tensor:
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)

    def time_at(self, half_log_snr: Tensor) -> Tensor:
        return torch.atan(torch.exp(-half_log_snr)) * (2 / math.pi)


SCHEDULES: dict[str, type[NoiseSchedule]] = {"linear": LinearPath, "cosine": CosineSchedule}


def get_schedule(name: str) -> NoiseSchedule:
    """The schedule registered as ``name``.

    Raises:
        ConfigError: for an unknown name; the message lists the valid ones.
    """
    if name not in SCHEDULES:
        msg = f"expected a noise schedule in {sorted(SCHEDULES)} but got {name!r}, in get_schedule"
        raise ConfigError(msg)
    return SCHEDULES[name]()


def training_times(n: int, kind: TimeSampling, generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Times t in (0, 1) at which the training loss is evaluated, shape (n,), on ``like``'s device and dtype.

    ``"uniform"`` draws t ~ U(0, 1) (flow matching); ``"logit_normal"`` draws
    ``t = sigmoid(n)``, ``n ~ N(0, 1)``, which weights the middle of the path, where the
    velocity is hardest to predict (Esser et al., arXiv:2403.03206).

    Raises:
        ConfigError: for an unknown kind.
    """
    if kind == "uniform":
        return torch.rand(n, generator=generator, device=like.device, dtype=like.dtype)
    if kind == "logit_normal":
        return torch.sigmoid(torch.randn(n, generator=generator, device=like.device, dtype=like.dtype))
    msg = f"expected a time sampling in {list(get_args(TimeSampling))} but got {kind!r}, in training_times"
    raise ConfigError(msg)
