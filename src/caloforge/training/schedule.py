"""The learning-rate schedule over a run's budget: a linear warm-up, then constant or a half cosine.

A CPU run is bounded by minutes more often than by iterations, so the schedule is a function of the
**fraction of the budget used**, the larger of ``iteration / max_iterations`` and ``elapsed /
max_seconds`` (:func:`budget_fraction`), not of a step count fixed in advance (CaloINN and
CaloDiffusion use a one-cycle or a warm-up-then-cosine schedule over a known number of epochs).
:class:`LRScheduler` sets every optimiser's learning rate to ``initial_lr * lr_factor(fraction)``
before each iteration; the family's config says which schedule
(:class:`~caloforge.models.base.TrainableConfig`).

**Resuming.** The initial learning rate is kept in each optimiser's parameter groups
(``initial_lr``), which Lightning saves in ``last.ckpt``; the iteration count is saved too. So

* an iteration budget spans the whole run (it is counted over resumes): a resumed run continues
  the schedule exactly where it stopped;
* a wall-clock budget is per call (``--resume --max-minutes M`` trains M more minutes), so **the
  time schedule spans one call**: a resumed call restarts it over its own M minutes (a warm
  restart, as SGDR: warm-up, then the cosine from the initial learning rate down to its floor);
  with both budgets the larger fraction rules, as in a new run.

References:
    I. Loshchilov, F. Hutter, SGDR: Stochastic Gradient Descent with Warm Restarts, arXiv:1608.03983.
    L. Smith, N. Topin, Super-Convergence (one-cycle), arXiv:1708.07120.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L

from caloforge.errors import ConfigError
from caloforge.models.base import LR_SCHEDULES, FamilyConfig, TrainableConfig

__all__ = ["LRScheduler", "budget_fraction", "lr_factor"]


def lr_factor(fraction: float, schedule: str, warmup_fraction: float = 0.0, min_lr_ratio: float = 0.01) -> float:
    """The learning rate over the initial one after ``fraction`` of the budget (clipped to [0, 1]).

    Linear from 0 to 1 over ``[0, warmup_fraction]``, then 1 (``"constant"``) or
    ``min_lr_ratio + (1 - min_lr_ratio) (1 + cos(pi p)) / 2`` with ``p`` the fraction of the rest
    of the budget used (``"cosine"``).

    Example:
        >>> [round(lr_factor(f, "cosine", 0.1, 0.0), 3) for f in (0.05, 0.1, 0.55, 1.0)]
        [0.5, 1.0, 0.5, 0.0]
        >>> lr_factor(0.5, "constant", 0.1)
        1.0

    Raises:
        ConfigError: for an unknown schedule, a warm-up fraction outside [0, 1) or a ratio outside [0, 1].
    """
    if schedule not in LR_SCHEDULES:
        msg = f"expected a learning-rate schedule in {list(LR_SCHEDULES)} but got {schedule!r}"
        raise ConfigError(msg)
    if not 0 <= warmup_fraction < 1 or not 0 <= min_lr_ratio <= 1:
        msg = (f"expected warmup_fraction in [0, 1) and min_lr_ratio in [0, 1] but got {warmup_fraction} and "
               f"{min_lr_ratio}")
        raise ConfigError(msg)
    f = min(max(fraction, 0.0), 1.0)
    if f < warmup_fraction:
        return f / warmup_fraction
    if schedule == "constant":
        return 1.0
    p = (f - warmup_fraction) / (1 - warmup_fraction)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))


def budget_fraction(iteration: int, max_iterations: int | None, elapsed_s: float, max_seconds: float | None) -> float:
    """The fraction of the budget used: the larger of the iteration and time fractions (0 without either budget).

    Example:
        >>> budget_fraction(50, 100, 30.0, 120.0), budget_fraction(50, None, 90.0, 120.0)
        (0.5, 0.75)
    """
    fractions = [0.0]
    if max_iterations:
        fractions.append(iteration / max_iterations)
    if max_seconds:
        fractions.append(elapsed_s / max_seconds)
    return min(max(fractions), 1.0)


class LRScheduler(L.Callback):
    """Sets each optimiser's learning rate before every iteration from the fraction of the budget used.

    The iteration fraction counts over resumes (``task.iteration``); the time fraction is this
    call's (see the module docstring). A constant schedule without warm-up changes nothing.

    Args:
        config: The family's config (a :class:`~caloforge.models.base.TrainableConfig`; others: no schedule).
        max_iterations: The run's iteration budget (None: none).
        max_seconds: This call's wall-clock budget, s (None: none).
        start: ``time.monotonic()`` when this call's budget started (default: when training starts).
    """

    def __init__(self, config: FamilyConfig, max_iterations: int | None, max_seconds: float | None,
                 start: float | None = None) -> None:
        self.config = config if isinstance(config, TrainableConfig) else None
        self.max_iterations = max_iterations
        self.max_seconds = max_seconds
        self.start = start
        self.fraction = 0.0
        self.factor = 1.0

    @property
    def active(self) -> bool:
        """Whether the learning rate changes during training."""
        return self.config is not None and self.config.schedules_lr

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.start is None:
            self.start = time.monotonic()
        for optimizer in trainer.optimizers:  # restored from last.ckpt on resume: initial_lr is there already
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if not self.active:
            return
        assert self.config is not None and self.start is not None  # active; set in on_train_start
        iteration = int(getattr(pl_module, "iteration", 0))
        # the iteration about to run: its fraction once done, so the first step has a learning rate above 0
        self.fraction = budget_fraction(iteration + 1, self.max_iterations, time.monotonic() - self.start,
                                        self.max_seconds)
        cfg = self.config
        self.factor = lr_factor(self.fraction, cfg.lr_schedule, cfg.warmup_fraction, cfg.min_lr_ratio)
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * self.factor
