"""Samplers of the diffusion family: ODE solvers for the probability flow of a :class:`NoiseSchedule`.

Every sampler shares one protocol (the shape of diffusers' schedulers), so a few-step solver
can replace an accurate one on a trained network without retraining::

    sampler = get_sampler("dpm2m", schedule)
    sampler.set_timesteps(10)                      # 10 network evaluations
    x = sampler.initial_sample((n, d), generator, device, dtype)
    for t in sampler.timesteps:                    # one network evaluation per entry
        x = sampler.step(network(x, t), t, x).prev_sample

``model_output`` is the velocity ``dx/dt`` the network predicts at ``(sample, t)``.
:attr:`Sampler.timesteps` lists the times of the network evaluations in order, so
``len(sampler.timesteps)`` is exactly the number of evaluations per shower
(:attr:`Sampler.n_evaluations`). The time grid runs from t = 1 (noise) to t = 0 (data);
``spacing="uniform"`` spaces it evenly in t, ``"logsnr"`` evenly in the half log-SNR
``lambda = log(alpha / sigma)`` (DPM-Solver's choice, small steps near the data).

* :class:`DDIMSampler` (``"ddim"``): first order, one evaluation per step; the exact solution
  of the ODE's linear part with the denoised sample held constant (DDIM, the first-order
  DPM-Solver++); for the linear path it is Euler's method.
* :class:`HeunSampler` (``"heun"``): Heun's second-order method (EDM's Algorithm 1, deterministic);
  two evaluations per step except the last, ``2 n - 1`` in all.
* :class:`DPMSolver2MSampler` (``"dpm2m"``): DPM-Solver++(2M), second order with one evaluation
  per step, re-using the previous step's denoised sample; first order on the first and last step.

References:
    J. Song, C. Meng, S. Ermon, Denoising Diffusion Implicit Models, arXiv:2010.02502.
    T. Karras et al., Elucidating the Design Space of Diffusion-Based Generative Models (EDM), arXiv:2206.00364.
    C. Lu et al., DPM-Solver, arXiv:2206.00927; DPM-Solver++, arXiv:2211.01095.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

import torch
from torch import Tensor

from caloforge.errors import ConfigError
from caloforge.models.diffusion_schedules import NoiseSchedule

__all__ = ["SAMPLERS", "DDIMSampler", "DPMSolver2MSampler", "HeunSampler", "Sampler", "SamplerName",
           "SamplerOutput", "Spacing", "get_sampler", "time_grid"]

SamplerName = Literal["ddim", "heun", "dpm2m"]
Spacing = Literal["uniform", "logsnr", "karras"]
_CLIP = 1e-3  # the logsnr grid spans lambda(1 - _CLIP) .. lambda(_CLIP) before its ends are set to 1 and 0
_KARRAS = (0.002, 80.0, 7.0)  # EDM's sigma_min, sigma_max and rho, for the noise-to-signal ratio sigma / alpha


def time_grid(schedule: NoiseSchedule, n: int, spacing: Spacing) -> Tensor:
    """``n + 1`` decreasing times from 1 (noise) to 0 (data), float64 on the CPU.

    Example:
        >>> from caloforge.models.diffusion_schedules import LinearPath
        >>> time_grid(LinearPath(), 4, "uniform").tolist()
        [1.0, 0.75, 0.5, 0.25, 0.0]
        >>> [round(t, 3) for t in time_grid(LinearPath(), 2, "logsnr").tolist()]
        [1.0, 0.5, 0.0]

    Raises:
        ConfigError: for ``n < 1`` or an unknown spacing.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        msg = f"expected a number of sampler steps >= 1 but got {n!r}, in set_timesteps"
        raise ConfigError(msg)
    # device="cpu" even under a meta default device (bundles are first built there to check their size)
    if spacing == "uniform":
        grid = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64, device="cpu")
    elif spacing == "logsnr":
        ends = torch.tensor([1.0 - _CLIP, _CLIP], dtype=torch.float64, device="cpu")
        lam = schedule.half_log_snr(ends)
        grid = schedule.time_at(torch.linspace(float(lam[0]), float(lam[1]), n + 1, dtype=torch.float64, device="cpu"))
        grid[0], grid[-1] = 1.0, 0.0
    elif spacing == "karras":
        low, high, rho = _KARRAS
        ramp = (torch.linspace(0, 1, n, dtype=torch.float64, device="cpu") if n > 1
                else torch.zeros(1, dtype=torch.float64, device="cpu"))
        ratio = (high ** (1 / rho) + ramp * (low ** (1 / rho) - high ** (1 / rho))) ** rho
        grid = torch.cat([schedule.time_at(-torch.log(ratio)), torch.zeros(1, dtype=torch.float64, device="cpu")])
        grid[0] = 1.0
    else:
        msg = f"expected a time spacing in {list(get_args(Spacing))} but got {spacing!r}, in set_timesteps"
        raise ConfigError(msg)
    return grid


@dataclass(frozen=True)
class SamplerOutput:
    """The result of one :meth:`Sampler.step`.

    Attributes:
        prev_sample: The sample to pass to the network at the next entry of ``timesteps``
            (after the last step: the generated sample at t = 0).
        denoised: The current prediction of the clean sample ``x0``.
    """

    prev_sample: Tensor
    denoised: Tensor


class Sampler(ABC):
    """Base of the samplers: the time grid, the evaluation times, the noise to start from.

    Args:
        schedule: The probability path the network was trained on.
        spacing: How the time grid is spaced (``"uniform"`` in t or ``"logsnr"``).
    """

    name: ClassVar[str]
    order: ClassVar[int]

    def __init__(self, schedule: NoiseSchedule, spacing: Spacing = "logsnr") -> None:
        if spacing not in get_args(Spacing):
            msg = f"expected a time spacing in {list(get_args(Spacing))} but got {spacing!r}, in {type(self).__name__}"
            raise ConfigError(msg)
        self.schedule = schedule
        self.spacing: Spacing = spacing
        self.grid = torch.tensor([1.0, 0.0], dtype=torch.float64)
        self.timesteps = torch.empty(0, dtype=torch.float64)
        self._grid: list[float] = [1.0, 0.0]
        self._times: list[float] = []
        self._table: dict[float, tuple[float, float]] = {}
        self._index = 0

    def set_timesteps(self, n: int) -> None:
        """Prepare ``n`` steps from t = 1 to t = 0 and reset the sampler's state.

        Raises:
            ConfigError: for ``n < 1``.
        """
        self.grid = time_grid(self.schedule, n, self.spacing)
        self.timesteps = self._evaluation_times(self.grid)
        # Python floats from here on: a step does no tensor-to-number conversion, so the sampling
        # loop traces into a graph (ONNX export) with the times and coefficients as constants.
        self._grid = self.grid.tolist()
        self._times = self.timesteps.tolist()
        alpha, sigma = self.schedule.alpha(self.grid).tolist(), self.schedule.sigma(self.grid).tolist()
        self._table = {t: (a, s) for t, a, s in zip(self._grid, alpha, sigma, strict=True)}
        self.reset()

    def reset(self) -> None:
        """Start again at the first of the :attr:`timesteps` (keeps the time grid)."""
        self._index = 0
        self._reset()

    @property
    def n_evaluations(self) -> int:
        """Network evaluations per sample for the current ``set_timesteps``."""
        return int(self.timesteps.numel())

    def initial_sample(self, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
                       dtype: torch.dtype) -> Tensor:
        """Pure noise at t = 1, ``N(0, sigma(1)^2)``, drawn with ``generator``."""
        return self.start(torch.randn(shape, generator=generator, device=device, dtype=dtype))

    def start(self, noise: Tensor) -> Tensor:
        """The sample at t = 1 from standard-normal ``noise``: ``sigma(1) * noise``."""
        return self._coefficients(self._grid[0])[1] * noise

    def step(self, model_output: Tensor, t: float | Tensor, sample: Tensor) -> SamplerOutput:
        """Advance ``sample`` given the network's velocity ``model_output`` at ``(sample, t)``.

        Raises:
            ConfigError: before :meth:`set_timesteps`, after the last step, or for a ``t`` that is
                not the next entry of :attr:`timesteps`.
        """
        if self._index >= self.n_evaluations:
            msg = (f"expected at most {self.n_evaluations} steps after set_timesteps but got one more, "
                   f"in {type(self).__name__}.step")
            raise ConfigError(msg)
        expected = self._times[self._index]
        if not math.isclose(float(t), expected, rel_tol=1e-6, abs_tol=1e-9):
            msg = f"expected t={expected:.6g} (timesteps[{self._index}]) but got t={float(t):.6g}, in {self.name}.step"
            raise ConfigError(msg)
        out = self._step(model_output, self._index, sample)
        self._index += 1
        return out

    def _coefficients(self, t: float) -> tuple[float, float]:
        """(alpha, sigma) at the grid time ``t`` (every step asks for grid times only)."""
        return self._table[t]

    def _denoised(self, model_output: Tensor, t: float, sample: Tensor) -> Tensor:
        return self.schedule.split(sample, model_output, t)[0]

    def _first_order(self, sample: Tensor, denoised: Tensor, t: float, t_next: float) -> Tensor:
        """The exponential-integrator step with ``denoised`` held constant from t to t_next (DDIM)."""
        a, s = self._coefficients(t)
        a_next, s_next = self._coefficients(t_next)
        return (s_next / s) * sample + (a_next - a * s_next / s) * denoised

    def _reset(self) -> None:  # noqa: B027 (an optional hook)
        """Forget the state of a previous run (samplers with memory override this)."""

    @abstractmethod
    def _evaluation_times(self, grid: Tensor) -> Tensor:
        """The times of the network evaluations for the time grid ``grid``."""

    @abstractmethod
    def _step(self, model_output: Tensor, index: int, sample: Tensor) -> SamplerOutput:
        """The step for evaluation number ``index``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(schedule={self.schedule!r}, spacing='{self.spacing}')"


class DDIMSampler(Sampler):
    """First-order exponential integrator (DDIM, DPM-Solver++(1)); ``n`` evaluations for ``n`` steps."""

    name = "ddim"
    order = 1

    def _evaluation_times(self, grid: Tensor) -> Tensor:
        return grid[:-1].clone()

    def _step(self, model_output: Tensor, index: int, sample: Tensor) -> SamplerOutput:
        t, t_next = self._grid[index], self._grid[index + 1]
        denoised = self._denoised(model_output, t, sample)
        return SamplerOutput(self._first_order(sample, denoised, t, t_next), denoised)


class HeunSampler(Sampler):
    """Heun's second-order method on ``dx/dt = v`` (EDM Algorithm 1); ``2 n - 1`` evaluations for ``n`` steps.

    Evaluations alternate between a predictor at the current sample (an Euler step to the
    next time) and a corrector at the predicted point (the average of both slopes); the last
    step, to t = 0, is an Euler step.
    """

    name = "heun"
    order = 2

    def _reset(self) -> None:
        self._start: Tensor | None = None
        self._slope: Tensor | None = None

    def _evaluation_times(self, grid: Tensor) -> Tensor:
        inner = grid[1:-1].repeat_interleave(2)
        return torch.cat([grid[:1], inner])

    def _step(self, model_output: Tensor, index: int, sample: Tensor) -> SamplerOutput:
        interval = (index + 1) // 2
        if index % 2 == 0:  # predictor at grid[interval]
            t, t_next = self._grid[interval], self._grid[interval + 1]
            self._start, self._slope = sample, model_output
            predicted = sample + (t_next - t) * model_output
            return SamplerOutput(predicted, self._denoised(model_output, t, sample))
        if self._start is None or self._slope is None:  # unreachable: an odd index always follows a predictor
            msg = f"expected a predictor step before the corrector, in {self.name}.step"
            raise ConfigError(msg)
        t, t_next = self._grid[interval - 1], self._grid[interval]
        corrected = self._start + (t_next - t) * 0.5 * (self._slope + model_output)
        return SamplerOutput(corrected, self._denoised(model_output, t_next, sample))


class DPMSolver2MSampler(Sampler):
    """DPM-Solver++(2M): second-order multistep in the half log-SNR; ``n`` evaluations for ``n`` steps."""

    name = "dpm2m"
    order = 2

    def _reset(self) -> None:
        self._previous: Tensor | None = None

    def _evaluation_times(self, grid: Tensor) -> Tensor:
        return grid[:-1].clone()

    def _lambda(self, t: float) -> float:
        a, s = self._coefficients(t)
        return math.log(a) - math.log(s) if a > 0 and s > 0 else (math.inf if s <= 0 else -math.inf)

    def _step(self, model_output: Tensor, index: int, sample: Tensor) -> SamplerOutput:
        t, t_next = self._grid[index], self._grid[index + 1]
        denoised = self._denoised(model_output, t, sample)
        combined = denoised
        if self._previous is not None and index >= 1:
            lam_prev, lam, lam_next = (self._lambda(self._grid[i]) for i in (index - 1, index, index + 1))
            h, h_prev = lam_next - lam, lam - lam_prev
            if all(map(math.isfinite, (h, h_prev))) and h > 0 and h_prev > 0:
                half_inv_r = 0.5 * h / h_prev
                combined = (1 + half_inv_r) * denoised - half_inv_r * self._previous
        self._previous = denoised
        return SamplerOutput(self._first_order(sample, combined, t, t_next), denoised)


SAMPLERS: dict[str, type[Sampler]] = {"ddim": DDIMSampler, "heun": HeunSampler, "dpm2m": DPMSolver2MSampler}


def get_sampler(name: str, schedule: NoiseSchedule, spacing: Spacing = "logsnr") -> Sampler:
    """A new sampler registered as ``name`` for ``schedule``.

    Raises:
        ConfigError: for an unknown name (the message lists the valid ones) or spacing.
    """
    if name not in SAMPLERS:
        msg = f"expected a sampler in {sorted(SAMPLERS)} but got {name!r}, in get_sampler"
        raise ConfigError(msg)
    return SAMPLERS[name](schedule, spacing)
