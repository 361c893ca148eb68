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

from caloforge.training.bundle import Bundle, ExtrapolationWarning, load
from caloforge.training.data import validation_chi2
from caloforge.training.loop import RangeResult, TrainResult, run_training, train
from caloforge.training.settings import TrainingSettings
from caloforge.training.spec import RunSpec, Runtime
from caloforge.training.split import split_validation

__all__ = ["Bundle", "ExtrapolationWarning", "RangeResult", "RunSpec", "Runtime", "TrainResult", "TrainingSettings",
           "load", "run_training", "split_validation", "train", "validation_chi2"]
