"""A model family as a Lightning module: manual optimisation, batches drawn on the device, a chi2 validation step.

The validation step is the checkpoint-selection metric: it generates one shower per validation
shower (seeded, so every checkpoint is judged on the same noise) and logs the chi2/NDF of the
total-energy response per incident energy as ``val_chi2_ndf`` and, from the same showers, the
shape distance (:mod:`caloforge.training.shapes`) and the selection score as ``val_score``.
Lightning's ``ModelCheckpoint`` monitors :func:`monitor` of the run's selection (see
:mod:`caloforge.training.callbacks`): ``val_chi2_ndf`` when selecting by chi2, as before.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from caloforge.models.base import Batch, GenerativeModel
from caloforge.training.batches import BatchSource
from caloforge.training.data import ValidationTarget, generated_response
from caloforge.training.settings import SelectionState
from caloforge.training.shapes import Selection, ShapeDistance, selection_score
from caloforge.validation.metrics.chi2 import Chi2Result

__all__ = ["MONITOR", "SCORE", "GenerativeTask", "monitor"]

MONITOR = "val_chi2_ndf"
"""The logged validation chi2/NDF (lower is better); it selects checkpoints when selecting by chi2."""
SCORE = "val_score"
"""The logged selection score (:func:`~caloforge.training.shapes.selection_score`)."""


def monitor(selection: Selection) -> str:
    """The logged metric ``ModelCheckpoint`` minimises for ``selection``."""
    return MONITOR if selection == "chi2" else SCORE


class GenerativeTask(L.LightningModule):
    """A model family as a LightningModule with manual optimisation and on-device batch sampling.

    Args:
        model: The family's model.
        batches: Where the training batches come from (:mod:`caloforge.training.batches`).
        seed: Seed of the batch sampling and noise (offset by the process rank) and of the validation noise.
        validation: The held-out showers of the validation step (their responses).
        log_every: Iterations between loss entries in Lightning's loggers.
        selection: What selects checkpoints (:data:`~caloforge.training.shapes.SELECTIONS`).
    """

    def __init__(self, model: GenerativeModel, batches: BatchSource, seed: int, validation: ValidationTarget,
                 log_every: int = 50, selection: Selection = "chi2") -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.seed = seed
        self.validation = validation
        self.log_every = log_every
        self.batches = batches
        self.iteration = 0
        self.elapsed_s = 0.0
        self.selection = SelectionState()
        self.last_losses: dict[str, float] = {}
        self.validation_result: Chi2Result | None = None
        self.last_chi2_ndf = math.inf
        self.selection_by: Selection = selection
        self.last_shape = ShapeDistance(math.nan, math.nan)
        self.last_score = math.inf
        self._rng: torch.Generator | None = None
        self._restored_rng: torch.Tensor | None = None

    def configure_optimizers(self) -> Any:
        return self.model.configure_optimizers()

    def on_fit_start(self) -> None:
        self.batches.to(self.device)

    def on_train_start(self) -> None:  # after Lightning restored a checkpoint (weights, optimisers, loops)
        self._rng = torch.Generator(device=self.device).manual_seed(self.seed + 7919 * self.global_rank)
        if self._restored_rng is not None and self.global_rank == 0:
            self._rng.set_state(self._restored_rng)
        self._restored_rng = None

    def next_batch(self) -> Batch:
        """A random batch (with replacement) of ``config.batch_size`` training showers."""
        assert self._rng is not None  # made in on_train_start
        return self.batches.sample(self.model.config.batch_size, self._rng, self.iteration)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        self.last_losses = self.model.train_step(self.next_batch, optimizers, self.manual_backward, self._rng)
        if not optimizers:  # a family fitted without gradients (parametric) still takes steps: ModelCheckpoint
            # saves only after a new global step, so without this no best.ckpt or last.ckpt would ever be written
            steps = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
            steps.increment_ready()
            steps.increment_completed()
        self.iteration += 1
        if self.iteration % self.log_every == 0:
            self.log_to_loggers({f"train/{name}": value for name, value in self.last_losses.items()})

    def evaluate_validation(self) -> float:
        """The chi2/NDF of the validation sample (inf when the model generates NaN or nothing comparable).

        The same showers give the shape distance (``last_shape``; NaN without a shape reference) and
        the selection score (``last_score``).
        """
        shapes = self.validation.shapes
        accumulator = None if shapes is None else shapes.accumulator()
        response = generated_response(self.model, self.validation, self.seed, accumulator)
        self.validation_result = None if response is None else self.validation.chi2(response)
        result = self.validation_result
        chi2 = result.chi2_ndf if result is not None and math.isfinite(result.chi2_ndf) else math.inf
        if shapes is None or accumulator is None:
            self.last_shape = ShapeDistance(math.nan, math.nan)
        else:
            self.last_shape = shapes.distance(accumulator) if response is not None else ShapeDistance(math.inf,
                                                                                                        math.inf)
        self.last_score = selection_score(self.selection_by, chi2, self.last_shape.fd_norm)
        return chi2

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        if self.trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            for buffer in self.model.buffers():  # e.g. BatchNorm statistics of each rank's own batches
                torch.distributed.broadcast(buffer, src=0)
        chi2 = self.last_chi2_ndf = self.evaluate_validation()
        # for ModelCheckpoint; every rank computed the same value (rank 0's buffers), so averaging changes nothing
        self.log(MONITOR, chi2, batch_size=len(self.validation), logger=False, sync_dist=True)
        self.log(SCORE, self.last_score, batch_size=len(self.validation), logger=False, sync_dist=True)
        self.log_to_loggers(self.validation_metrics())

    def validation_metrics(self) -> dict[str, float]:
        """The latest validation for Lightning's loggers."""
        return {"val/chi2_ndf": self.last_chi2_ndf, "val/fd": self.last_shape.fd,
                "val/fd_norm": self.last_shape.fd_norm, "val/score": self.last_score}

    def log_to_loggers(self, metrics: dict[str, float]) -> None:
        """Write to Lightning's loggers with the iteration as the step (optimiser steps differ between families)."""
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.iteration)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = self._rng.get_state() if self._rng is not None else torch.empty(0, dtype=torch.uint8)
        checkpoint["caloforge"] = {"iteration": self.iteration, "elapsed_s": self.elapsed_s,
                                   "selection": self.selection.to_dict(), "rng_state": rng}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.restore_counters(checkpoint)
        # The wall-clock budget is per call (``--resume --max-minutes M`` trains M more minutes):
        # Lightning's Timer would otherwise continue from the time already spent.
        checkpoint.get("callbacks", {}).pop("Timer", None)

    def restore_counters(self, checkpoint: dict[str, Any]) -> None:
        """Take the iteration, training time, selection and noise state from a checkpoint."""
        state = checkpoint["caloforge"]
        self.iteration, self.elapsed_s = int(state["iteration"]), float(state["elapsed_s"])
        self.selection = SelectionState.from_dict(state["selection"])
        self._restored_rng = state["rng_state"] if len(state["rng_state"]) else None
