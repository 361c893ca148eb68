"""Stage 4, training: the Lightning loop, checkpoint selection by chi2/NDF, resume, and bundles on disk.

* :mod:`~caloforge.training.spec`: :class:`RunSpec`, a run's family, config, settings and runtime, typed once.
* :mod:`~caloforge.training.loop`: :func:`run_training` (a :class:`RunSpec`: CLI ``caloforge train``, campaign
  trials) and :func:`train` (the Python API's keyword arguments, made a :class:`RunSpec`).
* :mod:`~caloforge.training.settings`: the typed run state (settings, ``run.json``, selection).
* :mod:`~caloforge.training.split`: the validation sample that selects checkpoints.
* :mod:`~caloforge.training.fit`: one model's Lightning fit (trainer, checkpoints, loggers, resume).
* :mod:`~caloforge.training.task`, :mod:`~caloforge.training.callbacks`: Lightning module and callbacks.
* :mod:`~caloforge.training.bundle`, :mod:`~caloforge.training.bundle_format`: trained models on disk.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from caloforge.training.bundle import Bundle, ExtrapolationWarning, load
    from caloforge.training.data import validation_chi2
    from caloforge.training.loop import RangeResult, TrainResult, run_training, train
    from caloforge.training.settings import TrainingSettings
    from caloforge.training.spec import RunSpec, Runtime
    from caloforge.training.split import split_validation

_HOMES = {"Bundle": "bundle", "ExtrapolationWarning": "bundle", "load": "bundle", "validation_chi2": "data",
          "RangeResult": "loop", "TrainResult": "loop", "run_training": "loop", "train": "loop",
          "TrainingSettings": "settings", "RunSpec": "spec", "Runtime": "spec", "split_validation": "split"}


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use: loading a bundle (generate, bench, evaluate) then never
    imports Lightning and the training loop (about 2 s of start-up and 1-2 s of exit on a 2-core machine)."""
    if name not in _HOMES:
        msg = f"module 'caloforge.training' has no attribute '{name}'"
        raise AttributeError(msg)
    return getattr(importlib.import_module(f"caloforge.training.{_HOMES[name]}"), name)


__all__ = ["Bundle", "ExtrapolationWarning", "RangeResult", "RunSpec", "Runtime", "TrainResult", "TrainingSettings",
           "load", "run_training", "split_validation", "train", "validation_chi2"]
