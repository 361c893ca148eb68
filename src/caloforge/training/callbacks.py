"""Lightning callbacks of :mod:`caloforge.training.loop` (the module is :mod:`caloforge.training.task`).

Lightning does the checkpointing: two ``ModelCheckpoint`` callbacks (:func:`checkpoints`) write
``last.ckpt`` after every validation and ``best.ckpt`` when the monitored validation chi2/NDF
improves; ``max_time`` is the wall-clock budget's backstop; its loggers take the losses and the chi2.
What Lightning has no mechanism for is here:

* :class:`BestBundle` keeps the run's history (the untrained baseline first), writes
  ``log.csv`` and exports the model ``ModelCheckpoint`` selects as a pickle-free bundle.
* :class:`Budget` stops on the iteration budget (iterations, not optimiser steps: a GAN takes
  several optimiser steps per iteration), on Ctrl-C or SIGTERM after a complete iteration, and
  early enough on the wall-clock budget for the work after the stop to end within it
  (:func:`out_of_time`; Lightning's ``max_time`` stops only once the budget is spent, and then
  validates and exports again).
* :class:`TrainingProgress` shows iterations, losses and the running best chi2/NDF (a live bar
  on a terminal, plain timestamped lines in a log, where Lightning's bars print nothing useful).
* :class:`LRScheduler` sets the learning rate from the fraction of the budget used (:mod:`.schedule`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar

from caloforge.data.outputs import atomic_path
from caloforge.models.base import FamilyConfig, TrainableConfig
from caloforge.runtime.progress import Progress, ProgressTask
from caloforge.training.bundle_format import save_model, update_history
from caloforge.training.schedule import budget_fraction, lr_factor
from caloforge.training.shapes import Selection
from caloforge.training.task import GenerativeTask, monitor

__all__ = ["BestBundle", "Budget", "TrainingProgress", "checkpoints", "out_of_time", "status_line"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def checkpoints(directory: Path, selection: Selection = "chi2") -> tuple[ModelCheckpoint, ModelCheckpoint]:
    """``best.ckpt`` (lowest selection score: chi2/NDF by default) and ``last.ckpt`` (every validation), atomically.

    Lightning saves ``last.ckpt`` with ``save_last`` only when a top-k checkpoint was saved at the
    same step; the second callback (no monitor, one file) writes it at every validation.
    """
    best = ModelCheckpoint(dirpath=directory, filename="best", monitor=monitor(selection), mode="min", save_top_k=1,
                           save_on_train_epoch_end=False, enable_version_counter=False, auto_insert_metric_name=False)
    last = ModelCheckpoint(dirpath=directory, filename="last", monitor=None, save_top_k=1,
                           save_on_train_epoch_end=False, enable_version_counter=False)
    return best, last


class BestBundle(L.Callback):
    """The run's history, ``log.csv`` and the bundle of the checkpoint ``ModelCheckpoint`` selects.

    The decision is ``ModelCheckpoint.check_monitor_top_k``'s (strictly lower chi2/NDF, the first
    trained checkpoint always), asked before that callback saves, so the bundle and ``best.ckpt``
    always hold the same model. The untrained model is evaluated when a run starts, as the
    baseline of the log, but is not a candidate.

    Args:
        run_dir: Where ``log.csv`` and ``bundle/`` go.
        best: The ``ModelCheckpoint`` that monitors the validation chi2/NDF.
        bundle_metadata: Extra entries for the bundle's JSON (family, data fingerprint, ...).
    """

    def __init__(self, run_dir: Path, best: ModelCheckpoint, bundle_metadata: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.best = best
        self.metadata = bundle_metadata

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        task: GenerativeTask = pl_module  # type: ignore[assignment]
        if task.iteration == 0 and not task.selection.history:  # the baseline every later row is read against
            task.model.eval()
            with torch.inference_mode():
                chi2 = task.last_chi2_ndf = task.evaluate_validation()
            task.model.train()
            task.log_to_loggers(task.validation_metrics())
            task.selection.record(self._row(task, chi2), chi2, 0, candidate=False, score=task.last_score,
                                  fd_norm=task.last_shape.fd_norm)
            if trainer.is_global_zero:
                self._write_csv(task.selection.history)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        task: GenerativeTask = pl_module  # type: ignore[assignment]
        chi2 = task.last_chi2_ndf  # in double precision; ModelCheckpoint compares the logged float32 value
        assert self.best.monitor is not None  # set in checkpoints()
        improved = self.best.check_monitor_top_k(trainer, trainer.callback_metrics[self.best.monitor])
        task.selection.record(self._row(task, chi2), chi2, task.iteration, candidate=improved,
                              score=task.last_score, fd_norm=task.last_shape.fd_norm)
        if not trainer.is_global_zero:
            return
        if improved:
            self._save_bundle(task, chi2)
        self._write_csv(task.selection.history)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        task: GenerativeTask = pl_module  # type: ignore[assignment]
        bundle = self.run_dir / "bundle"
        if trainer.is_global_zero and (bundle / "bundle.json").is_file():
            update_history(bundle, task.selection.history)  # the rows after the selected checkpoint too

    @staticmethod
    def _row(task: GenerativeTask, chi2: float) -> dict[str, float]:
        shape = task.last_shape
        return {"iteration": task.iteration, "elapsed_s": round(task.elapsed_s, 3), "chi2_ndf": chi2,
                "fd": shape.fd, "fd_norm": shape.fd_norm, "score": task.last_score,
                **{name: math.nan for name in task.model.loss_names}, **task.last_losses}

    def _save_bundle(self, task: GenerativeTask, chi2: float) -> None:
        result, validation = task.validation_result, task.validation
        per_energy = [] if result is None else [
            {"energy": e.energy, "energy_low": e.energy_low, "energy_high": e.energy_high, "chi2": e.chi2,
             "ndf": e.ndf}
            for e in result.per_energy]
        meta = {**self.metadata, "history": task.selection.history,
                "validation": {"chi2_ndf": chi2, "iteration": task.iteration, "per_energy": per_energy,
                               "selection": task.selection_by, "score": task.last_score,
                               "fd": task.last_shape.fd, "fd_norm": task.last_shape.fd_norm,
                               "definition": None if result is None else result.definition,
                               "n_showers": len(validation)}}
        save_model(self.run_dir / "bundle", task.model, self.metadata["family"], validation.geometry,
                   {k: v for k, v in meta.items() if k != "family"}, force=True)

    def _write_csv(self, history: list[dict[str, Any]]) -> None:
        """Write the whole log from the history (rewritten, never appended: a resumed run has no duplicate rows)."""
        fields: list[str] = []
        for row in history:
            fields += [k for k in row if k not in fields]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        with atomic_path(self.run_dir / "log.csv", force=True) as tmp:
            tmp.write_text(buffer.getvalue(), encoding="utf-8")


def out_of_time(now: float, deadline: float, *, batch_s: float, checkpoint_s: float, checkpoint_due: bool,
                final_checkpoints: float = 1.0) -> bool:
    """Whether training must stop now for everything after the stop to end by ``deadline`` (all in seconds).

    After a stop come a last validation (with its checkpoint and bundle export), ``checkpoint_s``
    as measured at the previous one, and the final bundle's evaluation, ``final_checkpoints``
    times that. Going on instead costs the next iteration (``batch_s``, the last one's duration)
    and, when a checkpoint is due after this iteration (``checkpoint_due``), that checkpoint too,
    before the next chance to stop. So training goes on only while all of it still fits.

    Example:
        >>> # 60 s left, validations take 20 s: going on (1 s) then stopping (20 + 20 s) fits ...
        >>> out_of_time(940.0, 1000.0, batch_s=1.0, checkpoint_s=20.0, checkpoint_due=False)
        False
        >>> # ... but not when a checkpoint is due first: stop now, and that validation is the last one
        >>> out_of_time(940.0, 1000.0, batch_s=1.0, checkpoint_s=20.0, checkpoint_due=True)
        True
    """
    closing = checkpoint_s * (1.0 + final_checkpoints + (1.0 if checkpoint_due else 0.0))
    return now + batch_s + closing >= deadline


class Budget(L.Callback):
    """Stop at ``max_iterations`` (counted over resumes), before the ``deadline`` or on Ctrl-C / SIGTERM.

    Stopping sets ``trainer.should_stop``, on which Lightning runs a last validation, so the
    final model is evaluated and checkpointed like every other. A second signal interrupts at once.
    Also counts the training time (``elapsed_s``).

    Args:
        max_iterations: The iteration budget (None: none).
        deadline: ``time.monotonic()`` by which the fit (its final validation included) should
            have ended (None: no wall-clock budget); see :func:`out_of_time`.
        checkpoint_every: Iterations between validations.
        final_checkpoints: The evaluation after the fit (the final bundle's), in validations.
    """

    def __init__(self, max_iterations: int | None, deadline: float | None = None, checkpoint_every: int = 0,
                 final_checkpoints: float = 1.0) -> None:
        self.max_iterations = max_iterations
        self.deadline = deadline
        self.checkpoint_every = checkpoint_every
        self.final_checkpoints = final_checkpoints
        self.interrupted = False
        self.timed_out = False  # stopped early enough for the final validation to end within the deadline
        self.signum = 0  # the signal that stopped training (SIGINT 2, SIGTERM 15), 0 when none did
        self._previous_handlers: dict[int, Any] = {}
        self._start = 0.0
        self._elapsed_at_start = 0.0
        self.checkpoint_s = 0.0  # the latest validation with its checkpoint and export (the baseline's at first)
        self._checkpoint_start: float | None = None
        self._batch_start = 0.0
        self.batch_s = 0.0
        self._resumed = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.interrupted = True
        self.signum = int(signum)
        self._restore_handler()

    def state_dict(self) -> dict[str, Any]:
        """The measured validation time, for a resumed call (which has no untrained validation to measure)."""
        return {"checkpoint_s": self.checkpoint_s}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.checkpoint_s = float(state_dict.get("checkpoint_s", 0.0))
        self._resumed = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()
        # a new run's baseline validation follows (BestBundle) and is measured; a resumed run keeps its measure
        self._checkpoint_start = None if self._resumed else self._start
        self._elapsed_at_start = float(pl_module.elapsed_s)  # type: ignore[arg-type]
        if threading.current_thread() is threading.main_thread():
            self._previous_handlers = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._checkpoint_start = time.monotonic()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._batch_start = time.monotonic()
        if self._checkpoint_start is not None:  # a validation, its checkpoints and export ended since the last batch
            self.checkpoint_s = self._batch_start - self._checkpoint_start
            self._checkpoint_start = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        task: GenerativeTask = pl_module  # type: ignore[assignment]
        now = time.monotonic()
        self.batch_s = now - self._batch_start
        task.elapsed_s = self._elapsed_at_start + now - self._start
        due = self.checkpoint_every > 0 and task.iteration % self.checkpoint_every == 0
        if self.deadline is not None and not self.timed_out:
            self.timed_out = out_of_time(now, self.deadline, batch_s=self.batch_s, checkpoint_s=self.checkpoint_s,
                                           checkpoint_due=due, final_checkpoints=self.final_checkpoints)
        stop = self.interrupted or self.timed_out or (
            self.max_iterations is not None and task.iteration >= self.max_iterations)
        if trainer.strategy.reduce_boolean_decision(stop, all=False):
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handler()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handler()

    def _restore_handler(self) -> None:
        if self._previous_handlers and threading.current_thread() is threading.main_thread():
            for sig, handler in self._previous_handlers.items():
                signal.signal(sig, handler)
            self._previous_handlers = {}


def status_line(task: GenerativeTask) -> str:
    """Iteration, latest losses and the selected checkpoint's chi2/NDF, as the run's summary prints it (3 decimals).

    Then its normalised shape distance and, when selecting by another score than chi2, that score.
    Before the first trained checkpoint there is no best: "not yet measured", never ``inf``.
    """
    losses = " ".join(f"{k}={v:.3g}" for k, v in task.last_losses.items())
    sel = task.selection
    if sel.best_iteration < 0:  # inf after that: the selected model generates nothing comparable
        return f"it {task.iteration}  {losses}  best chi2/NDF not yet measured"
    line = f"it {task.iteration}  {losses}  best chi2/NDF {sel.best_chi2_ndf:.3f}"
    if not math.isnan(sel.best_fd_norm):
        line += f"  FD/FD(halves) {sel.best_fd_norm:.3f}"
    if getattr(task, "selection_by", "chi2") != "chi2":
        line += f"  score {sel.best_score:.3f}"
    return line


class TrainingProgress(ProgressBar):
    """Lightning's progress bar slot filled with caloforge's :class:`~caloforge.runtime.progress.Progress`.

    Shows iterations (or seconds of the budget), the latest losses and the running best chi2/NDF:
    a live bar with ETA (within the wall-clock budget) on a terminal; in a log, one line per checkpoint
    and at least every few seconds, also while a validation runs (the untrained model's first).
    """

    def __init__(self, progress: Progress, label: str, max_iterations: int | None, max_seconds: float | None,
                 line_every: int) -> None:
        super().__init__()
        self.progress = progress
        self.label = label
        self.max_iterations = max_iterations
        self.max_seconds = max_seconds
        self.line_every = line_every
        self._enabled = True
        self._task: contextlib.ExitStack | None = None
        self._bar: ProgressTask | None = None
        self._step = contextlib.ExitStack()  # the heartbeat of a validation
        self._start = 0.0
        self._last_line = -math.inf

    def disable(self) -> None:  # Lightning disables the bar on ranks other than 0
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the task before the untrained model's validation (in ``BestBundle.on_train_start``: can be minutes)."""
        if not self._enabled or not trainer.is_global_zero:
            return
        self._start = time.monotonic()
        by_iterations = self.max_iterations is not None
        total = self.max_iterations if by_iterations else self.max_seconds
        self._task = contextlib.ExitStack()
        self._bar = self._task.enter_context(
            self.progress.task(self.label, total=total, unit="iterations" if by_iterations else "s",
                               max_seconds=self.max_seconds))  # the ETA within the budget, also by iterations
        task: GenerativeTask = pl_module  # type: ignore[assignment]
        first = task.iteration == 0 and not task.selection.history
        self._step.enter_context(self.progress.heartbeat(
            f"{self.label}: validating the untrained model" if first else f"{self.label}: starting"))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._step.close()
        if self._bar is not None:
            task: GenerativeTask = pl_module  # type: ignore[assignment]
            self._bar.update(task.iteration if self.max_iterations is not None else time.monotonic() - self._start)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._bar is not None:
            task: GenerativeTask = pl_module  # type: ignore[assignment]
            self._step.enter_context(self.progress.heartbeat(f"{self.label}: validating iteration {task.iteration}"))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._step.close()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._bar is None:
            return
        task: GenerativeTask = pl_module  # type: ignore[assignment]
        now = self.progress.now()
        completed = task.iteration if self.max_iterations is not None else time.monotonic() - self._start
        # a line per checkpoint, but not every second for a fast family (a VAE wrote 534 lines in 10 minutes):
        # at most one forced line per half the log interval; the routine lines keep the log's pace
        line = task.iteration % self.line_every == 0 and now - self._last_line >= self.progress.interval_s / 2
        self._last_line = now if line else self._last_line
        self._bar.update(completed, status=status_line(task), line=line)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._bar is not None:  # the last validation ran after the last batch: the "done" line then gives
            task: GenerativeTask = pl_module  # type: ignore[assignment]  # the status the summary agrees with
            completed = task.iteration if self.max_iterations is not None else time.monotonic() - self._start
            self._bar.update(completed, status=status_line(task), line=False)
        self._stop()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop()

    def _stop(self) -> None:
        self._step.close()
        if self._task is not None:
            self._task.close()
            self._task = None
            self._bar = None


class LRScheduler(L.Callback):
    """Sets each optimiser's learning rate before every iteration from the fraction of the budget used.

    The iteration fraction counts over resumes (``task.iteration``); the time fraction is this call's
    (:mod:`caloforge.training.schedule`). A constant schedule without warm-up changes nothing.

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
