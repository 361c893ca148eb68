"""A model family as a Lightning module: manual optimisation, batches drawn on the device, resumable state."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from caloforge.data.showers import ShowerSet
from caloforge.models.base import Batch, GenerativeModel
from caloforge.training.settings import SelectionState

__all__ = ["GenerativeTask"]


class GenerativeTask(L.LightningModule):
    """A model family as a LightningModule with manual optimisation and on-device batch sampling.

    Args:
        model: The family's model.
        data: The training showers (kept on the training device).
        seed: Seed of the batch sampling and noise (offset by the process rank).
    """

    def __init__(self, model: GenerativeModel, data: ShowerSet, seed: int) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.seed = seed
        self._energies = torch.as_tensor(data.energies, dtype=torch.float32)
        self._showers = torch.as_tensor(data.showers)
        self._conditions = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in data.conditions.items()}
        self.iteration = 0
        self.elapsed_s = 0.0
        self.selection = SelectionState()
        self.last_losses: dict[str, float] = {}
        self._rng: torch.Generator | None = None
        self._restored: dict[str, Any] | None = None

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Take weights, optimiser states, counters and RNG state from a checkpoint loaded with ``weights_only``."""
        prefix = "model."
        self.model.load_state_dict({k[len(prefix):]: v for k, v in checkpoint["state_dict"].items()
                                    if k.startswith(prefix)})
        state = checkpoint["caloforge"]
        self.iteration, self.elapsed_s = int(state["iteration"]), float(state["elapsed_s"])
        self.selection = SelectionState.from_dict(state["selection"])
        self._restored = {"optimizers": checkpoint["optimizer_states"], "rng": state["rng_state"]}

    def configure_optimizers(self) -> Any:
        return self.model.configure_optimizers()

    def on_fit_start(self) -> None:
        self._energies = self._energies.to(self.device)
        self._showers = self._showers.to(self.device)
        self._conditions = {k: v.to(self.device) for k, v in self._conditions.items()}
        self._rng = torch.Generator(device=self.device).manual_seed(self.seed + 7919 * self.global_rank)
        if self._restored is not None:
            for optimizer, state in zip(self.trainer.optimizers, self._restored["optimizers"], strict=True):
                optimizer.load_state_dict(state)
            if self.global_rank == 0:
                self._rng.set_state(self._restored["rng"])
            self._restored = None

    def next_batch(self) -> Batch:
        """A random batch (with replacement) of ``config.batch_size`` training showers."""
        n = self._energies.shape[0]
        idx = torch.randint(n, (min(self.model.config.batch_size, n),), generator=self._rng, device=self.device)
        return Batch(self._energies[idx], self._showers[idx], {k: v[idx] for k, v in self._conditions.items()})

    def training_step(self, batch: Any, batch_idx: int) -> None:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        self.last_losses = self.model.train_step(self.next_batch, optimizers, self.manual_backward, self._rng)
        self.iteration += 1

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = self._rng.get_state() if self._rng is not None else torch.empty(0, dtype=torch.uint8)
        checkpoint["caloforge"] = {"iteration": self.iteration, "elapsed_s": self.elapsed_s,
                                   "selection": self.selection.to_dict(), "rng_state": rng}
