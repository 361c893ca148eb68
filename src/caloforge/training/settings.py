"""The typed state of a training run: its settings, its record on disk (``run.json``), checkpoint selection.

* :class:`TrainingSettings`: budgets, checkpoints, energy splits, hold-out energy, validation
  fraction and seed, validated like every caloforge config (the ``training:`` section of a
  config file, or :func:`caloforge.training.train`'s keyword arguments).
* :class:`RunRecord`: what ``run.json`` holds: the family, its config, the settings and the
  fingerprints of the training (and validation) data, so that a resumed run is the same run.
* :class:`SelectionState`: the best checkpoint so far and the history of evaluated checkpoints,
  saved in every Lightning checkpoint.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Self

import torch
from pydantic import Field, ValidationError, field_validator

from caloforge.config import Config
from caloforge.data.checks import SEED_LIMIT
from caloforge.data.documents import read_json
from caloforge.data.outputs import atomic_path, strict_json
from caloforge.errors import CheckpointError, ConfigError, DataError, OutputExistsError, OutputPathError
from caloforge.training.shapes import Selection

__all__ = ["DEFAULT_SELECTION", "RUN_FORMAT", "RunRecord", "SelectionState", "TrainingSettings", "check_run_dir",
           "create_run", "default_selection", "discard_failed_run", "read_run"]

RUN_FORMAT = "caloforge-run/2"
Energy = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class TrainingSettings(Config):
    """How a run trains; see :func:`caloforge.training.train` for the meaning of each setting.

    Example:
        >>> TrainingSettings(max_iterations=100).checkpoint_every
        100
        >>> TrainingSettings.from_dict({"max_minutes": "5"}, where="the 'training' section of cfg.yaml")
        Traceback (most recent call last):
        ...
        caloforge.errors.ConfigError: expected max_minutes to be a number but got '5', in the 'training' section \
of cfg.yaml
    """

    max_iterations: Annotated[int, Field(ge=1, le=10**9)] | None = None  # bounds: a typo, not a plan
    max_minutes: Annotated[float, Field(gt=0, le=10**6, allow_inf_nan=False)] | None = None  # two years
    checkpoint_every: Annotated[int, Field(ge=1, le=10**9)] = 100
    split_energies: tuple[Energy, ...] = ()
    hold_out_energy: Energy | None = None
    validation_fraction: Annotated[float, Field(gt=0, lt=1)] | None = None
    seed: Annotated[int, Field(ge=0, lt=SEED_LIMIT)] = 0
    selection: Selection | None = None  # None: the family's default (DEFAULT_SELECTION), resolved by train

    @field_validator("split_energies")
    @classmethod
    def _increasing(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if list(value) != sorted(set(value)):
            msg = "to be strictly increasing"
            raise ValueError(msg)
        return value

    def check_budget(self) -> None:
        """Refuse settings without a budget.

        Raises:
            ConfigError: when neither ``max_iterations`` nor ``max_minutes`` is set.
        """
        if self.max_iterations is None and self.max_minutes is None:
            msg = "expected a budget (max_iterations or max_minutes) but got neither"
            raise ConfigError(msg)


DEFAULT_SELECTION: dict[str, Selection] = {}
"""Each family's checkpoint selection where measurement chose other than ``"chi2"`` (docs/training.md)."""


def default_selection(family: str) -> Selection:
    """The checkpoint selection of ``family`` when none is given: measured per family, ``"chi2"`` where not measured.

    Example:
        >>> default_selection("no-such-family")
        'chi2'
    """
    return DEFAULT_SELECTION.get(family, "chi2")


class RunRecord(Config):
    """The content of ``run.json``: what a resumed run must match.

    Attributes:
        format: ``caloforge-run/2``.
        family: The registered family name.
        config: The family's config as a dict (the family's config class validates it).
        settings: The training settings (their budget is reused by a resume without one).
        data: Fingerprint of the training data (:meth:`caloforge.data.showers.ShowerSet.fingerprint`).
        validation_data: Fingerprint of an independent validation sample, if one was given.
    """

    format: str = RUN_FORMAT
    family: str
    config: dict[str, Any]
    settings: TrainingSettings
    data: dict[str, Any]
    validation_data: dict[str, Any] | None = None


@dataclass
class SelectionState:
    """Checkpoint selection so far: the selected checkpoint's score, chi2/NDF and iteration, every evaluated checkpoint.

    ``best_score`` is what selection minimises (:func:`~caloforge.training.shapes.selection_score`);
    ``best_chi2_ndf`` stays the validation chi2/NDF of the selected checkpoint (the lowest only
    when selecting by chi2), ``best_fd_norm`` its normalised shape distance (NaN when not measured).
    Saved in every Lightning checkpoint (:meth:`to_dict`, plain types that
    ``torch.load(weights_only=True)`` accepts) and restored on resume.
    """

    best_chi2_ndf: float = math.inf
    best_iteration: int = -1
    history: list[dict[str, float]] = field(default_factory=list)
    best_score: float = math.inf
    best_fd_norm: float = math.nan

    def record(self, row: dict[str, float], chi2_ndf: float, iteration: int, *, candidate: bool,
               score: float | None = None, fd_norm: float = math.nan) -> None:
        """Append a checkpoint's row; a ``candidate`` is the new selected model (``score`` defaults to ``chi2_ndf``).

        The untrained baseline is no candidate; its row shows its own values as the best so far.
        """
        score = chi2_ndf if score is None else score
        if candidate:
            self.best_chi2_ndf, self.best_iteration = chi2_ndf, iteration
            self.best_score, self.best_fd_norm = score, fd_norm
        selected = self.best_iteration >= 0
        best = {"chi2_ndf": self.best_chi2_ndf if selected else chi2_ndf,
                "score": self.best_score if selected else score}
        entry: dict[str, float] = {}
        for key, value in row.items():  # the log's columns: ..., chi2_ndf, best_chi2_ndf, ..., score, best_score, ...
            entry[key] = value
            if key in best:
                entry[f"best_{key}"] = best[key]
        self.history.append(entry)

    def to_dict(self) -> dict[str, Any]:
        """Plain types for a checkpoint."""
        return {"best_chi2_ndf": self.best_chi2_ndf, "best_iteration": self.best_iteration,
                "history": list(self.history), "best_score": self.best_score, "best_fd_norm": self.best_fd_norm}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild from :meth:`to_dict` (a checkpoint from before shape selection: the score is the chi2/NDF)."""
        chi2 = float(data["best_chi2_ndf"])
        return cls(chi2, int(data["best_iteration"]), list(data["history"]), float(data.get("best_score", chi2)),
                   float(data.get("best_fd_norm", math.nan)))


def read_run(run_json: Path) -> RunRecord:
    """The record of an existing run.

    Raises:
        CheckpointError: if ``run.json`` is missing, not JSON, or not a run record (corrupt or
            written by a caloforge before 0.2).
    """
    try:
        stored = read_json(run_json, "a run description")
        return RunRecord.model_validate(stored)
    except (OSError, ValueError, ConfigError, ValidationError) as err:
        problem = f"{type(err).__name__}: {' '.join(str(err).split())}"
    msg = f"expected a readable run description in {run_json} but it is corrupt ({problem:.120}); start a new run"
    raise CheckpointError(msg)


def check_run_dir(run_dir: Path, record: RunRecord, resume: bool) -> RunRecord:
    """Check that ``run_dir`` may hold a new run, or that a resumed run used the same data; creates nothing.

    Returns:
        The record to train with: ``record`` for a new run, the stored one on resume.

    Raises:
        OutputPathError: ``run_dir`` is a file.
        OutputExistsError: it holds files and ``resume`` is false.
        CheckpointError: ``resume`` without a run there, or a corrupt ``run.json``.
        DataError: on resume, other training or validation data than the run's.
    """
    run_json = run_dir / "run.json"
    if run_dir.exists() and not run_dir.is_dir():
        msg = f"expected a run directory but {run_dir} is a file; choose another --out"
        raise OutputPathError(msg)
    if not resume:
        if run_dir.exists() and any(run_dir.iterdir()):
            msg = f"{run_dir} already holds files; pass --resume to continue that run or choose another --out"
            raise OutputExistsError(msg)
        return record
    if not run_json.is_file():
        msg = f"expected a training run to resume in {run_dir} but it has no run.json"
        raise CheckpointError(msg)
    stored = read_run(run_json)
    for key, flag in (("data", "--data"), ("validation_data", "--validation")):
        old, new = getattr(stored, key), getattr(record, key)
        if (old or {}).get("sha256") != (new or {}).get("sha256"):
            had = f"sha256 {old['sha256'][:12]}" if old else "none"
            got = f"sha256 {new['sha256'][:12]}" if new else "none"
            msg = (f"expected the {key.replace('_', ' ')} of the run in {run_dir} ({had}) but got other data "
                   f"({got}); resume with the same {flag}")
            raise DataError(msg)
    return stored


def create_run(run_dir: Path, record: RunRecord) -> None:
    """Create the run directory and write its ``run.json`` (atomically).

    Raises:
        OutputPathError: if the directory cannot be created or written.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        msg = f"could not create the run directory {run_dir} ({err.strerror}); choose another --out"
        raise OutputPathError(msg) from None
    with atomic_path(run_dir / "run.json") as tmp:
        tmp.write_text(strict_json(record.to_dict()), encoding="utf-8")


def _trained_iterations(checkpoint: Path) -> int:
    try:
        return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["caloforge"]["iteration"])
    except Exception:  # an unreadable checkpoint holds nothing to resume either
        return 0


def discard_failed_run(run_dir: Path, created: bool) -> None:
    """Remove what a new run wrote when it failed before training anything (there is nothing to resume)."""
    if not run_dir.is_dir() or any(_trained_iterations(c) > 0 for c in run_dir.rglob("last.ckpt")):
        return
    if created:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for path in run_dir.iterdir():  # the directory existed empty: empty it again
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
