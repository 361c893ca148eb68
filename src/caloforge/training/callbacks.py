"""Lightning callbacks of :mod:`caloforge.training.loop` (the task module is :mod:`caloforge.training.task`).

* :class:`Chi2Selection` evaluates the chi2/NDF of the total-energy response on the
  validation split every ``every`` iterations (DESIGN.md definition, after the readout
  threshold), keeps the best model as a bundle, writes the CSV log and the last checkpoint,
  and stops on the iteration or wall-clock budget or on Ctrl-C (after a complete iteration).
* :class:`ProgressBar` shows iterations, losses and the running best chi2/NDF (a live bar on a
  terminal, plain lines in a log).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import math
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import numpy as np
import torch

from caloforge.data.outputs import atomic_path
from caloforge.data.showers import ShowerSet
from caloforge.errors import OutputPathError
from caloforge.models.sampling import sample_showers
from caloforge.runtime.progress import Progress, ProgressTask
from caloforge.training.bundle_format import save_model, update_history
from caloforge.training.settings import SelectionState
from caloforge.training.task import GenerativeTask
from caloforge.validation.metrics.chi2 import Chi2Result, response_chi2

__all__ = ["Chi2Selection", "ProgressBar", "validation_chi2"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def validation_chi2(reference: ShowerSet, generated: ShowerSet) -> Chi2Result:
    """The checkpoint-selection chi2 of E_tot/E_inc per incident energy, after the readout threshold on both samples.

    It counts the under- and overflow bins (ROOT's "UU UF OF"): unlike the "UU" chi2 the
    evaluation reports, it stays finite when a model puts every shower of some energy
    outside the reference's range (an untrained model does), so the log starts from a real
    untrained value, and it penalises tails that "UU" does not see.
    """
    from caloforge.validation.features import apply_threshold, readout_threshold

    threshold = readout_threshold(reference.geometry)
    ref = apply_threshold(reference, threshold)
    gen = apply_threshold(generated, threshold)
    return response_chi2(ref.energies, ref.response, gen.energies, gen.response, overflow=True)


class Chi2Selection(L.Callback):
    """Checkpoint every ``every`` iterations, keep the best model by validation chi2/NDF, stop on budget or Ctrl-C.

    Args:
        run_dir: Where ``last.ckpt``, ``log.csv`` and ``bundle/`` go.
        validation: The held-out validation showers.
        every: Iterations between checkpoints.
        max_iterations: Stop at this iteration (None: no limit).
        max_seconds: Stop after this much wall-clock time of this fit (None: no limit).
        bundle_metadata: Extra entries for the bundle's JSON (family, data fingerprint, ...).
        seed: Seed of the validation generation.
    """

    def __init__(self, run_dir: Path, validation: ShowerSet, every: int, max_iterations: int | None,
                 max_seconds: float | None, bundle_metadata: dict[str, Any], seed: int) -> None:
        self.run_dir = run_dir
        self.validation = validation
        self.every = every
        self.max_iterations = max_iterations
        self.max_seconds = max_seconds
        self.metadata = bundle_metadata
        self.seed = seed
        self.interrupted = False
        self._previous_handlers: dict[int, Any] = {}
        self._start = 0.0
        self._elapsed_at_start = 0.0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.interrupted = True
        self._restore_handler()  # a second Ctrl-C (or SIGTERM) interrupts at once

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()
        self._elapsed_at_start = float(pl_module.elapsed_s)  # type: ignore[arg-type]
        if threading.current_thread() is threading.main_thread():
            self._previous_handlers = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
        task: GenerativeTask = pl_module  # type: ignore[assignment]
        if task.iteration == 0 and not task.selection.history:
            self.checkpoint(trainer, task)  # the untrained model: the baseline every later row is read against

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handler()
        task: GenerativeTask = pl_module  # type: ignore[assignment]
        bundle = self.run_dir / "bundle"
        if trainer.is_global_zero and (bundle / "bundle.json").is_file():
            update_history(bundle, task.selection.history)  # the rows after the selected checkpoint too

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handler()

    def _restore_handler(self) -> None:
        if self._previous_handlers and threading.current_thread() is threading.main_thread():
            for sig, handler in self._previous_handlers.items():
                signal.signal(sig, handler)
            self._previous_handlers = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        task: GenerativeTask = pl_module  # type: ignore[assignment]
        elapsed = time.monotonic() - self._start
        task.elapsed_s = self._elapsed_at_start + elapsed
        stop = (self.interrupted or (self.max_iterations is not None and task.iteration >= self.max_iterations)
                or (self.max_seconds is not None and elapsed >= self.max_seconds))
        stop = bool(trainer.strategy.reduce_boolean_decision(stop, all=False))
        if stop or task.iteration % self.every == 0:
            self.checkpoint(trainer, task)
        if stop:
            trainer.should_stop = True

    def checkpoint(self, trainer: L.Trainer, task: GenerativeTask) -> None:
        """Evaluate, update the best bundle and the CSV log, and write ``last.ckpt`` atomically."""
        if trainer.is_global_zero:
            model, validation = task.model, self.validation
            generator = torch.Generator(device=next(model.parameters()).device).manual_seed(self.seed)
            showers = sample_showers(model, validation.energies, validation.conditions, generator=generator)
            result = None
            if np.isfinite(showers).all():
                generated = ShowerSet(validation.energies, showers, validation.geometry, dict(validation.conditions))
                result = validation_chi2(validation, generated)
            chi2 = result.chi2_ndf if result is not None and math.isfinite(result.chi2_ndf) else math.inf
            row = {"iteration": task.iteration, "elapsed_s": round(task.elapsed_s, 3), "chi2_ndf": chi2,
                   **{name: math.nan for name in model.loss_names}, **task.last_losses}
            sel = task.selection
            if sel.record(row, chi2, task.iteration):
                per_energy = [] if result is None else [
                    {"energy": e.energy, "energy_low": e.energy_low, "energy_high": e.energy_high, "chi2": e.chi2,
                     "ndf": e.ndf}
                    for e in result.per_energy]
                meta = {**self.metadata, "history": sel.history,
                        "validation": {"chi2_ndf": chi2, "iteration": task.iteration, "per_energy": per_energy,
                                       "definition": None if result is None else result.definition,
                                       "n_showers": len(self.validation)}}
                save_model(self.run_dir / "bundle", model, self.metadata["family"], self.validation.geometry,
                           {k: v for k, v in meta.items() if k != "family"}, force=True)
            self._write_csv(sel.history)
        if trainer.world_size > 1:
            self._share_rank_zero_state(trainer, task)
        tmp = self.run_dir / ".last.ckpt.tmp"
        try:
            trainer.save_checkpoint(tmp)
            if trainer.is_global_zero:
                tmp.replace(self.run_dir / "last.ckpt")
        except OSError as err:
            tmp.unlink(missing_ok=True)
            reason = "no space left on the device" if err.errno == errno.ENOSPC else (err.strerror or str(err))
            msg = f"could not write the checkpoint {self.run_dir / 'last.ckpt'}: {reason}"
            raise OutputPathError(msg) from None

    @staticmethod
    def _share_rank_zero_state(trainer: L.Trainer, task: GenerativeTask) -> None:
        """Under DDP every rank takes rank 0's selection and buffers (e.g. BatchNorm statistics of its own batches).

        The gradient all-reduce keeps the weights identical; buffers are updated by each rank's batches.
        """
        task.selection = SelectionState.from_dict(trainer.strategy.broadcast(task.selection.to_dict(), src=0))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for buffer in task.model.buffers():
                torch.distributed.broadcast(buffer, src=0)

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


class ProgressBar(L.Callback):
    """Training progress: iterations (or minutes), the latest losses and the running best chi2/NDF.

    A live bar on a terminal; in a log, one line per checkpoint and at least every few seconds.
    """

    def __init__(self, progress: Progress, label: str, max_iterations: int | None, max_seconds: float | None,
                 line_every: int) -> None:
        self.progress = progress
        self.label = label
        self.max_iterations = max_iterations
        self.max_seconds = max_seconds
        self.line_every = line_every
        self._task: contextlib.ExitStack | None = None
        self._bar: ProgressTask | None = None
        self._start = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self._start = time.monotonic()
        by_iterations = self.max_iterations is not None
        total = self.max_iterations if by_iterations else self.max_seconds
        self._task = contextlib.ExitStack()
        self._bar = self._task.enter_context(
            self.progress.task(self.label, total=total, unit="iterations" if by_iterations else "s"))
        task: GenerativeTask = pl_module  # type: ignore[assignment]
        self._bar.update(task.iteration if by_iterations else 0)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._bar is None:
            return
        task: GenerativeTask = pl_module  # type: ignore[assignment]
        losses = " ".join(f"{k}={v:.3g}" for k, v in task.last_losses.items())
        best = task.selection.best_chi2_ndf
        status = f"it {task.iteration}  {losses}  best chi2/NDF={best:.3g}"
        completed = task.iteration if self.max_iterations is not None else time.monotonic() - self._start
        self._bar.update(completed, status=status, line=task.iteration % self.line_every == 0)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._task is not None:
            self._task.close()
            self._task = None
            self._bar = None
