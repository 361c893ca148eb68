"""One model's Lightning fit: the trainer, its callbacks and loggers, resuming from ``last.ckpt``.

:func:`caloforge.training.loop.train` calls :func:`fit_range` once per incident-energy range.
"""

from __future__ import annotations

import errno
import logging
import math
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from caloforge.errors import CheckpointError, OutputPathError
from caloforge.models.preprocess import Preprocessing
from caloforge.training.batches import BatchSource
from caloforge.training.callbacks import BestBundle, Budget, LRScheduler, TrainingProgress, checkpoints
from caloforge.training.data import ValidationTarget
from caloforge.training.shapes import Selection
from caloforge.training.spec import RunSpec
from caloforge.training.split import validation_counts
from caloforge.training.task import GenerativeTask

__all__ = ["RangeData", "RangeResult", "accelerator_and_devices", "ddp_strategy", "fit_range", "read_checkpoint"]

_BIG = 10**12
_WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
_LIGHTNING_NOISE = (  # harmless messages of Lightning for a loop that draws its own batches
    ".*does not have many workers.*",
    ".*You're resuming from a checkpoint.*",
    ".*smaller than the logging interval.*",
    ".*isinstance.treespec, LeafSpec.*",  # torch 2.13 deprecation inside Lightning's pytree helpers
    ".*Checkpoint directory .* exists and is not empty.*",  # it holds run.json (and last.ckpt on resume)
)


@dataclass(frozen=True)
class RangeResult:
    """The training of one model (one incident-energy range).

    Attributes:
        directory: Its run directory (``last.ckpt``, ``log.csv``, ``bundle/``).
        energy_low: Lowest training energy, MeV.
        energy_high: Highest training energy, MeV.
        iterations: Iterations done (over all resumes).
        best_iteration: The iteration of the selected model.
        best_chi2_ndf: Its validation chi2/NDF.
        interrupted: Stopped by Ctrl-C or SIGTERM.
        elapsed_s: Training time over all resumes, s.
        signum: The signal that stopped it (2 SIGINT, 15 SIGTERM), 0 when none did.
    """

    directory: Path
    energy_low: float
    energy_high: float
    iterations: int
    best_iteration: int
    best_chi2_ndf: float
    interrupted: bool
    elapsed_s: float = math.nan
    signum: int = 0


def accelerator_and_devices(device: str, devices: int | str | list[int]) -> tuple[str, int | str | list[int]]:
    """Lightning's ``(accelerator, devices)`` for a torch device name.

    A CUDA index selects that GPU when ``devices`` is left at one device: ``"cuda:1"`` gives
    ``("gpu", [1])``, where ``accelerator="gpu", devices=1`` would train on GPU 0.

    Example:
        >>> accelerator_and_devices("cuda:1", 1), accelerator_and_devices("cuda", 2), accelerator_and_devices("cpu", 1)
        (('gpu', [1]), ('gpu', 2), ('cpu', 1))
    """
    kind, _, index = str(device).partition(":")
    if kind != "cuda":
        return str(device), devices
    if index.isdigit() and devices == 1:
        return "gpu", [int(index)]
    return "gpu", devices


def ddp_strategy(strategy: Any) -> Any:
    """Lightning's DDP strategies with unused-parameter detection: manual optimisation updates one player per backward.

    Example:
        >>> ddp_strategy("ddp"), ddp_strategy("auto")
        ('ddp_find_unused_parameters_true', 'auto')
    """
    plain = ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook")
    return f"{strategy}_find_unused_parameters_true" if strategy in plain else strategy


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """This run's ``last.ckpt`` (None if there is none yet), read with ``weights_only`` before Lightning resumes it."""
    if not path.is_file():
        return None
    try:
        checkpoint: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        int(checkpoint["caloforge"]["iteration"])
    except Exception as err:
        msg = f"expected a readable checkpoint {path} of this run but: {str(err).splitlines()[0]:.200}"
        raise CheckpointError(msg) from None
    return checkpoint


@dataclass(frozen=True)
class RangeData:
    """What one model trains on.

    Attributes:
        preprocessing: Fitted on its training showers.
        batches: Its training batches.
        validation: Its validation target.
        fingerprint: The fingerprint of its training showers (recorded in the bundle).
    """

    preprocessing: Preprocessing
    batches: BatchSource
    validation: ValidationTarget
    fingerprint: dict[str, Any]


def fit_range(directory: Path, spec: RunSpec, data: RangeData, *, index: int = 0,
              energies: tuple[float, float] = (-math.inf, math.inf), max_seconds: float | None = None) -> RangeResult:
    """Train model ``index`` of the run ``spec`` (energy range ``energies``, MeV) in ``directory``, resuming its
    ``last.ckpt`` if there is one; ``max_seconds`` is its share of the run's wall-clock budget, from this call on,
    which the fit, its final validation and (for the last range) the final bundle's evaluation end within."""
    # Lightning's import counts too; 2 % (at most 5 s) are kept for the files written after the last validation
    deadline = None if max_seconds is None else time.monotonic() + max_seconds - min(5.0, 0.02 * max_seconds)
    import lightning as L  # Lightning takes seconds to import: only when a model trains
    from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger  # with Lightning itself (start-up time)

    settings, runtime = spec.settings, spec.runtime
    seed, max_iterations, checkpoint_every = settings.seed + index, settings.max_iterations, settings.checkpoint_every
    selection: Selection = settings.selection or "chi2"
    lo, hi = energies  # the range's edges; its data's own energies are in the preprocessing
    label = f"train {spec.family} {lo:g}-{hi:g} MeV" if settings.split_energies else f"train {spec.family}"
    extra = {"held_out_energy": settings.hold_out_energy, "energy_range": [lo, hi]}
    progress, device, devices = runtime.progress, runtime.device, runtime.devices
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's global RNG
        torch.manual_seed(seed)
        model = spec.family_class(spec.config, data.preprocessing)
    log_every = min(50, checkpoint_every)
    task = GenerativeTask(model, data.batches, seed, data.validation, log_every, selection)
    last = directory / "last.ckpt"
    checkpoint = read_checkpoint(last)
    if checkpoint is not None:
        task.restore_counters(checkpoint)
    trained = data.preprocessing.energy
    counts = validation_counts(data.validation.energies)  # also recorded in the bundle
    meta = {"family": spec.family, "data": data.fingerprint, "training": {"seed": seed, **extra},
            "n_validation": len(data.validation),
            "n_validation_per_energy": {f"{e:g}": n for e, n in counts.items()}}
    last_range = index == len(settings.split_energies)  # after it, the final bundle's evaluation: every range's
    budget = Budget(max_iterations, deadline, checkpoint_every, float(index + 1) if last_range else 0.0)
    if max_iterations is None or task.iteration < max_iterations:
        directory.mkdir(parents=True, exist_ok=True)
        best, last_checkpoint = checkpoints(directory, selection)
        schedule = LRScheduler(spec.config, max_iterations, max_seconds)  # the learning rate over the budget
        cbs = [*runtime.callbacks, schedule, budget, BestBundle(directory, best, meta), best, last_checkpoint]
        if progress.enabled:
            cbs.append(TrainingProgress(progress, label, max_iterations, max_seconds, checkpoint_every))
        loggers: list[Logger] = [CSVLogger(directory, name="lightning_logs")]
        if runtime.tensorboard:
            loggers.append(TensorBoardLogger(directory, name="tensorboard", default_hp_metric=False))
        accelerator, devices = accelerator_and_devices(device, devices)
        own_rng = torch.Generator()  # the loaders draw their worker seed from it, not from the global RNG
        ticks: DataLoader[int] = DataLoader(range(_BIG), batch_size=None, generator=own_rng)  # type: ignore[arg-type]
        one_validation: DataLoader[int] = DataLoader([0], batch_size=None, generator=own_rng)  # type: ignore[arg-type]
        lightning_log = logging.getLogger("lightning.pytorch")
        level = lightning_log.level
        lightning_log.setLevel(logging.WARNING)  # Lightning's start-up banner; restored below
        try:
            with warnings.catch_warnings():
                for message in _LIGHTNING_NOISE:
                    warnings.filterwarnings("ignore", message=message)
                trainer = L.Trainer(accelerator=accelerator, devices=devices,
                                    strategy=ddp_strategy(runtime.strategy), num_nodes=runtime.num_nodes, max_epochs=1,
                                    logger=loggers,
                                    log_every_n_steps=log_every,
                                    val_check_interval=checkpoint_every, check_val_every_n_epoch=None,
                                    num_sanity_val_steps=0,
                                    max_time=None if max_seconds is None else timedelta(seconds=max_seconds),
                                    enable_progress_bar=progress.enabled, enable_model_summary=False,
                                    default_root_dir=directory, callbacks=cbs,
                                    use_distributed_sampler=False)  # every rank takes every tick
                trainer.fit(task, train_dataloaders=ticks, val_dataloaders=one_validation,
                            ckpt_path=None if checkpoint is None else last, weights_only=True)
        except OSError as err:
            if err.errno not in _WRITE_ERRORS:
                raise
            reason = "no space left on the device" if err.errno == errno.ENOSPC else (err.strerror or str(err))
            msg = f"could not write the checkpoints in {directory}: {reason}"
            raise OutputPathError(msg) from None
        finally:
            lightning_log.setLevel(level)
            data.batches.close()
        if trainer.world_size > 1 and last.is_file():  # ddp_spawn trains in other processes: take rank 0's state
            state = torch.load(last, map_location="cpu", weights_only=True)
            if int(state["caloforge"]["iteration"]) > task.iteration:
                task.restore_counters(state)
    sel = task.selection
    if sel.best_iteration < 0:
        msg = f"expected at least one evaluated checkpoint in {directory} but found none"
        raise CheckpointError(msg)
    return RangeResult(directory, trained.e_min, trained.e_max, task.iteration, sel.best_iteration,
                       sel.best_chi2_ndf, budget.interrupted, task.elapsed_s, budget.signum)
