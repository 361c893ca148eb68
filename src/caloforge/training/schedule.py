"""The learning-rate schedule over a run's budget: a linear warm-up, then constant or a half cosine.

A CPU run is bounded by minutes more often than by iterations, so the schedule is a function of the
**fraction of the budget used**, the larger of ``iteration / max_iterations`` and ``elapsed /
max_seconds`` (:func:`budget_fraction`), not of a step count fixed in advance (CaloINN and
CaloDiffusion use a one-cycle or a warm-up-then-cosine schedule over a known number of epochs).
:class:`~caloforge.training.callbacks.LRScheduler` (a Lightning callback, kept there so that this module, which
``distill`` uses, does not import Lightning) sets every optimiser's learning rate to
``initial_lr * lr_factor(fraction)`` before each iteration; the family's config says which schedule
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

from caloforge.errors import ConfigError
from caloforge.models.base import LR_SCHEDULES

__all__ = ["budget_fraction", "lr_factor"]


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
