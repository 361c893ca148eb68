"""Distil a one-pass student from a trained flow bundle (``caloforge distill``).

The teacher's noise-to-features map is sampled on pairs ``(z, T(z | c))``: ``z`` standard normal,
``c`` the conditions of an incident energy drawn from the teacher's training energies (its
``bundle.json`` lists them; log-uniform over its energy range when it does not) and, for extra
conditions, standard normal in their standardised units. The teacher costs a full flow pass per
pair, the student a fraction of it, so pairs are kept in a pool (``config.pool``) that is
refreshed by ``config.refresh`` new pairs before each step; a fixed set of ``config.validation``
pairs chooses the weights with the lowest distillation error, checked every ``_CHECK_EVERY``
steps and at the end. The student is written as an ordinary bundle (family ``flow-student``)
that ``generate``, ``export``, ``bench`` and ``evaluate --run`` open like any other, with the
teacher's path and weights' sha256, the pool and the history in its ``bundle.json``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from caloforge.data.outputs import check_output_dir
from caloforge.errors import ConfigError
from caloforge.models.flow import Flow
from caloforge.models.flow_student import FlowStudent, FlowStudentConfig
from caloforge.runtime.progress import Progress, ProgressTask, as_progress
from caloforge.training.bundle import Bundle, load
from caloforge.training.bundle_format import save_model
from caloforge.training.schedule import budget_fraction, lr_factor

__all__ = ["DistillResult", "distill"]

_CHECK_EVERY = 50
_CHUNK = 500
"""Teacher pairs per call while filling the pool: bounds memory, and how long Ctrl-C / SIGTERM and the progress
line wait (a signal is handled between calls: a 2000-pair call of the 42-minute ds1 teacher took 3-4 s)."""


@dataclass(frozen=True)
class DistillResult:
    """What :func:`distill` did: the bundle, the steps, the distillation error and the time spent."""

    bundle: Path
    iterations: int
    validation_mse: float
    identity_mse: float
    teacher_pairs: int
    seconds: float


def _teacher(bundle: Bundle, where: str) -> Flow:
    if bundle.family != "flow" or len(bundle.models) != 1 or not isinstance(bundle.models[0], Flow):
        parts = f"{len(bundle.models)} energy ranges" if len(bundle.models) != 1 else "one model"
        msg = (f"expected a flow bundle with one model as the teacher but got family '{bundle.family}' ({parts}), "
               f"in {where}")
        raise ConfigError(msg)
    teacher = bundle.models[0].averaged_copy().float().cpu()
    teacher.eval()
    return teacher


class _Pairs:
    """Conditions, noise and teacher features drawn with one generator; the energies as the teacher saw them."""

    def __init__(self, student: FlowStudent, bundle: Bundle, generator: torch.Generator) -> None:
        self.student, self.generator = student, generator
        listed = (bundle.info.get("data") or {}).get("energies")
        self.energies = torch.tensor(listed, dtype=torch.float64) if listed and len(listed) <= 10_000 else None
        self.range = bundle.energy_range
        self.count = 0

    def draw(self, n: int, task: ProgressTask | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` pairs; ``task`` is told the pairs drawn so far after each call of the teacher."""
        g = self.generator
        if self.energies is not None:
            e = self.energies[torch.randint(len(self.energies), (n,), generator=g)]
        else:
            lo, hi = (math.log(v) for v in self.range)
            e = torch.exp(lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64))
        model = self.student
        e_hat = model.preprocessing.energy.forward(e.float()).unsqueeze(1)
        extra = torch.randn(n, model.n_conditions - 1, generator=g)
        c = torch.cat([e_hat, extra], dim=1)
        z = torch.randn(n, model.width, generator=g)
        out = []
        for i in range(0, n, _CHUNK):
            out.append(model.teacher_features(c[i:i + _CHUNK], z[i:i + _CHUNK]))
            if task is not None:
                task.update(self.count + i + len(out[-1]))
        self.count += n
        return c, z, torch.cat(out).float()


def distill(
    teacher: str | Path,
    out: str | Path,
    *,
    config: FlowStudentConfig | None = None,
    changes: Mapping[str, Any] | None = None,
    max_minutes: float | None = 10.0,
    max_iterations: int | None = None,
    seed: int = 0,
    force: bool = False,
    progress: Progress | bool | None = None,
) -> DistillResult:
    """Train a one-pass :class:`~caloforge.models.flow_student.FlowStudent` on a flow bundle's samples.

    Args:
        teacher: The flow's bundle (or run) directory.
        out: The student's bundle directory (must be new unless ``force``).
        config: The student's settings; None: :meth:`FlowStudentConfig.from_teacher` of the teacher's.
        changes: Student settings over those defaults (keys of :class:`FlowStudentConfig`, e.g.
            ``{"hidden": [512, 512, 512]}``; a config file's ``model`` section); not with ``config``.
        max_minutes: Wall-clock budget, pool filling included (None: no time limit).
        max_iterations: Step budget (None: no step limit); at least one of the two is needed.
        seed: Seed of the network's initialisation, the pairs and the batches.
        force: Replace an existing bundle at ``out``.
        progress: Where to report (True/None: standard error; False: nothing).

    Raises:
        ConfigError: no budget, a teacher that is not a one-model flow bundle, a config that does not fit it, an
            unknown key or bad value in ``changes``, or both ``config`` and ``changes``.
        CheckpointError: a missing or damaged teacher bundle.
        OutputExistsError, OutputPathError: an existing ``out`` without ``force``, or an unwritable directory.
    """
    if max_minutes is None and max_iterations is None:
        msg = "expected a budget (max_minutes or max_iterations) but got neither, in distill"
        raise ConfigError(msg)
    if config is not None and changes:
        msg = f"expected a config or changes to the teacher's defaults but got both ({sorted(changes)}), in distill"
        raise ConfigError(msg)
    check_output_dir(out, force)  # before any work
    start = time.monotonic()
    bundle = load(teacher)
    flow = _teacher(bundle, f"distill --teacher {teacher}")
    torch.manual_seed(seed)
    if config is None:
        where = "the student's settings (distill's changes, --config's 'model' section)"
        config = FlowStudentConfig.from_dict(changes or {}, FlowStudentConfig.from_teacher(flow.config), where=where)
    student = FlowStudent(config, flow.preprocessing)
    student.attach_teacher(flow)
    cfg, reports = student.config, as_progress(progress)
    pairs = _Pairs(student, bundle, torch.Generator().manual_seed(seed))
    with reports.task("teacher pairs", total=cfg.pool + cfg.validation, unit="pairs") as drawing:
        held_c, held_z, held_x = pairs.draw(cfg.validation, drawing)
        pool_c, pool_z, pool_x = pairs.draw(cfg.pool, drawing)
    identity_mse = float((held_z - held_x).square().mean())
    (optimizer,) = student.configure_optimizers()
    batches = torch.Generator().manual_seed(seed + 1)
    best, best_state, history, step, cursor = math.inf, copy.deepcopy(student.state_dict()), [], 0, 0
    seconds = None if max_minutes is None else max_minutes * 60
    student.train()
    with reports.task("distillation", total=max_iterations, unit="steps", max_seconds=seconds) as task:
        while True:
            used = budget_fraction(step, max_iterations, time.monotonic() - start, seconds)
            done = used >= 1.0
            if step % _CHECK_EVERY == 0 or done:
                with torch.no_grad():
                    mse = float(student.distillation_loss(held_c, held_z, held_x))
                history.append({"iteration": step, "elapsed_s": round(time.monotonic() - start, 3),
                                "validation_mse": mse, "teacher_pairs": pairs.count})
                if mse < best:
                    best, best_state = mse, copy.deepcopy(student.state_dict())
                task.update(step, status=f"validation mse {mse:.4g}")
            if done:
                break
            if cfg.refresh:
                rows = torch.arange(cursor, cursor + cfg.refresh) % cfg.pool
                pool_c[rows], pool_z[rows], pool_x[rows] = pairs.draw(cfg.refresh)
                cursor = int(rows[-1]) + 1
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(used, cfg.lr_schedule, cfg.warmup_fraction, cfg.min_lr_ratio)
            index = torch.randint(cfg.pool, (min(cfg.batch_size, cfg.pool),), generator=batches)
            optimizer.zero_grad()
            loss = student.distillation_loss(pool_c[index], pool_z[index], pool_x[index])
            torch.autograd.backward(loss)
            if student.clip_gradients({}):
                optimizer.step()
            student.after_step()
            step += 1
    student.load_state_dict(best_state)
    student.eval()
    metadata: dict[str, Any] = {
        "teacher": {"path": str(bundle.path), "weights_sha256": bundle.info.get("weights_sha256")},
        "distillation": {"iterations": step, "validation_mse": best, "identity_mse": identity_mse,
                         "teacher_pairs": pairs.count, "seed": seed, "max_minutes": max_minutes,
                         "max_iterations": max_iterations},
        "history": history,
        **{k: bundle.info[k] for k in ("data", "validation_data") if k in bundle.info},
    }
    path = save_model(out, student, "flow-student", bundle.geometry, metadata, force=force)
    return DistillResult(path, step, best, identity_mse, pairs.count, time.monotonic() - start)
