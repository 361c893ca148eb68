"""The classifier test of the CaloChallenge: can a network tell generated from reference showers?

Recipe (arXiv:2410.21611), all of it configurable through :class:`ClassifierConfig`:
a fully connected network input -> 2048 -> 2048 -> 2048 -> 1 logit with LeakyReLU,
no dropout, binary cross-entropy on the logits, Adam with learning rate 2e-4,
batches of 1000, up to 50 epochs keeping the epoch with the best accuracy on the
test split. Each sample is split 60/20/20 into train/test/validation (seeded).
An isotonic regression fitted on the test-split outputs calibrates the
validation-split outputs (kept in [1e-6, 1 - 1e-6], as the official code does), on
which the AUC and

    JSD = (log 2 - BCE) / log 2

are reported (JSD = 0: indistinguishable, 1: perfectly separated). The training is
repeated ``repeats`` times with different seeds (the paper used 10); the results
are the mean and standard deviation over the repeats.

Both samples are cut to the same size (the smaller one, at most ``max_showers``).
The caller chooses the device; the metric never does. Training runs in float32 unless
``precision`` asks for bfloat16 autocast (``"auto"``: only where the hardware does it
natively and faster, see :func:`caloforge.runtime.hardware.use_bf16`). A wall-clock budget
(``max_seconds``) stops training at once; the result records the epochs run and that
the budget cut them short, because an AUC from a cut training may be understated.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from pydantic import Field
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score, roc_curve

from caloforge.config import Config
from caloforge.errors import DataError
from caloforge.runtime.progress import SILENT, Progress

__all__ = ["ClassifierConfig", "ClassifierResult", "ClassifierRun", "Precision", "classifier_rows", "classifier_test"]

Precision = Literal["auto", "fp32", "bf16"]
StopReason = Literal["max_epochs", "patience", "budget"]


class ClassifierConfig(Config):
    """Settings of the classifier test; the defaults are the CaloChallenge recipe.

    Args:
        hidden: Widths of the hidden layers.
        dropout: Dropout probability after each hidden layer.
        lr: Adam learning rate.
        batch_size: Training batch size.
        max_epochs: Maximum number of epochs.
        patience: Stop after this many epochs without a better test accuracy (None: run all epochs).
        max_showers: Use at most this many showers from each sample (None: all).
        repeats: Number of independent trainings (different seeds) averaged.
        precision: ``"fp32"``, ``"bf16"`` (autocast) or ``"auto"``: bf16 only where
            :func:`caloforge.runtime.hardware.use_bf16` finds it native and measured faster.
        max_seconds: Wall-clock budget of the whole test (all repeats), None for none. Training
            stops at the budget, keeps the best epoch so far and records that it was cut short.
    """

    hidden: Annotated[tuple[Annotated[int, Field(ge=1)], ...], Field(min_length=1)] = (2048, 2048, 2048)
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 2e-4
    batch_size: Annotated[int, Field(ge=1)] = 1000
    max_epochs: Annotated[int, Field(ge=1)] = 50
    patience: Annotated[int, Field(ge=1)] | None = None
    max_showers: Annotated[int, Field(ge=10)] | None = None
    repeats: Annotated[int, Field(ge=1)] = 10
    precision: Precision = "fp32"
    max_seconds: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None

    @classmethod
    def cpu_budget(cls, max_seconds: float | None = None) -> ClassifierConfig:
        """The default of ``caloforge evaluate --mode full``: the recipe's network within a wall-clock budget.

        At most 20k showers per sample (12k each for training), up to the recipe's 50 epochs
        with no early stopping (a patience of 3 stopped a separable pair on a plateau at AUC
        0.73 where training on reached 0.98), one training, bfloat16 only where it is native
        and measured faster. ``ClassifierConfig()`` is the paper's protocol (use ``repeats=10``).
        """
        return cls(max_showers=20_000, repeats=1, precision="auto", max_seconds=max_seconds)

    def epoch_flops(self, n_inputs: int, n_per_sample: int) -> float:
        """Floating-point operations of one training epoch (forward and backward, about 3x the forward pass).

        Used to share a wall-clock budget between classifier tests of different sizes.
        """
        widths = (n_inputs, *self.hidden, 1)
        per_row = 2.0 * sum(a * b for a, b in itertools.pairwise(widths))
        training_rows = 2 * round(0.6 * min(n_per_sample, self.max_showers or n_per_sample))  # both samples
        return 3.0 * per_row * training_rows

    def memory_bytes(self, n_inputs: int, n_per_sample: int) -> float:
        """Peak bytes of one test: both samples' inputs twice (as given and split for training), the
        network with its gradients, Adam moments and best state, and the activations of a batch."""
        widths = (n_inputs, *self.hidden, 1)
        parameters = sum((a + 1) * b for a, b in itertools.pairwise(widths))
        n = min(n_per_sample, self.max_showers or n_per_sample)
        activations = 4 * max(self.batch_size, 10_000) * sum(self.hidden)  # training batch or prediction block
        return 2 * 2 * n * n_inputs * 4 + 5 * parameters * 4 + activations


@dataclass(frozen=True)
class ClassifierRun:
    """One training: validation AUC and JSD (bootstrap errors), how training went, the calibrated ROC curve.

    Attributes:
        auc: Validation AUC of the calibrated outputs.
        jsd: Validation JSD = (log 2 - BCE) / log 2.
        auc_bootstrap_error: Bootstrap standard deviation of the AUC.
        jsd_bootstrap_error: Bootstrap standard deviation of the JSD.
        best_epoch: The epoch with the best test accuracy (the model used).
        epochs_run: Epochs started (the last one may be partial when the budget ran out).
        stopped_by: ``max_epochs``, ``patience`` or ``budget`` (the wall-clock budget cut training short).
        precision: ``fp32`` or ``bf16``, as resolved on this machine.
        elapsed_s: Wall-clock seconds of the training and evaluation.
        fpr: False-positive rates of the ROC curve.
        tpr: True-positive rates of the ROC curve.
    """

    auc: float
    jsd: float
    auc_bootstrap_error: float
    jsd_bootstrap_error: float
    best_epoch: int
    epochs_run: int
    stopped_by: StopReason
    precision: str
    elapsed_s: float
    fpr: NDArray[np.float64] = field(repr=False)
    tpr: NDArray[np.float64] = field(repr=False)


@dataclass(frozen=True)
class ClassifierResult:
    """Classifier test over repeated trainings; AUC 0.5 and JSD 0 mean indistinguishable.

    Attributes:
        auc: Mean validation AUC.
        auc_error: Standard deviation of the AUC over repeats; for a single training, the
            bootstrap standard deviation over resamples of its validation split.
        jsd: Mean validation JSD.
        jsd_error: Its standard deviation (bootstrap for a single training).
        runs: The individual trainings.
        n_per_sample: Showers used from each sample.
        seed: The seed.
        config: The settings used.
    """

    auc: float
    auc_error: float
    jsd: float
    jsd_error: float
    runs: tuple[ClassifierRun, ...]
    n_per_sample: int
    seed: int
    config: ClassifierConfig
    higher_is_better = False

    @property
    def optimiser_steps(self) -> int:
        """The fewest optimiser steps of any training: epochs run x batches per epoch (60 % of both samples)."""
        rows = 2 * round(0.6 * self.n_per_sample)
        return min(run.epochs_run for run in self.runs) * math.ceil(rows / self.config.batch_size)

    @property
    def budget_exhausted(self) -> bool:
        """Whether the wall-clock budget cut any training short (the AUC may then be understated)."""
        return any(run.stopped_by == "budget" for run in self.runs)

    def summary(self) -> str:
        """How the training went, in words, e.g. ``1 training, 12 epochs (best 9), fp32, stopped by the budget``."""
        epochs = "/".join(str(r.epochs_run) for r in self.runs)
        best = "/".join(str(r.best_epoch) for r in self.runs)
        reasons = sorted({r.stopped_by for r in self.runs})
        words = {"max_epochs": f"all {self.config.max_epochs} epochs", "patience": "early stopping",
                 "budget": "stopped by the wall-clock budget"}
        runs = f"{len(self.runs)} training" + ("s" if len(self.runs) > 1 else "")
        return (f"{runs}, {epochs} epochs (best {best}), {self.runs[0].precision}, {self.n_per_sample} showers "
                f"per sample; " + ", ".join(words[r] for r in reasons))


_N_BOOTSTRAP = 50
CALIBRATION_BOUNDS = (1e-6, 1.0 - 1e-6)
"""Calibrated probabilities are kept in these bounds, as the CaloChallenge evaluation does."""


def _jsd(bce: float) -> float:
    return (math.log(2.0) - bce) / math.log(2.0)


def _network(n_inputs: int, config: ClassifierConfig) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    width = n_inputs
    for h in config.hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.LeakyReLU()]
        if config.dropout > 0:
            layers.append(torch.nn.Dropout(config.dropout))
        width = h
    layers.append(torch.nn.Linear(width, 1))
    return torch.nn.Sequential(*layers)


def _predict(model: torch.nn.Module, x: torch.Tensor, bf16: bool, batch: int = 10_000) -> torch.Tensor:
    model.eval()
    out = []
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(x), batch):
            out.append(model(x[start : start + batch]).float().squeeze(-1))
    return torch.sigmoid(torch.cat(out))


def _split(n: int, rng: np.random.Generator) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    order = rng.permutation(n)
    a, b = round(0.6 * n), round(0.8 * n)
    return order[:a], order[a:b], order[b:]


def calibrate(test_scores: NDArray[np.float64], test_labels: NDArray[np.floating],
              scores: NDArray[np.float64]) -> NDArray[np.float64]:
    """Calibrate classifier outputs: isotonic regression fitted on the test split, applied to ``scores``.

    The results lie in :data:`CALIBRATION_BOUNDS`, so a log-loss is always finite.

    Example:
        >>> s = np.array([0.1, 0.2, 0.8, 0.9])
        >>> calibrate(s, np.array([0, 0, 1, 1]), np.array([0.15, 0.85])).round(6).tolist()
        [1e-06, 0.999999]
    """
    lo, hi = CALIBRATION_BOUNDS
    calibrator = IsotonicRegression(y_min=lo, y_max=hi, out_of_bounds="clip").fit(test_scores, test_labels)
    return np.asarray(calibrator.predict(scores), dtype=np.float64)


def _score(p_cal: NDArray[np.float64], labels: NDArray[np.floating], rng: np.random.Generator
           ) -> tuple[float, float, float, float, NDArray[np.float64], NDArray[np.float64]]:
    """AUC, JSD, their bootstrap errors and the ROC curve of calibrated probabilities."""
    losses = -(labels * np.log(p_cal) + (1.0 - labels) * np.log1p(-p_cal))
    fpr, tpr, _ = roc_curve(labels, p_cal)
    boot_auc, boot_jsd = [], []
    for _ in range(_N_BOOTSTRAP):
        pick = rng.integers(0, len(labels), len(labels))
        if labels[pick].min() != labels[pick].max():
            boot_auc.append(roc_auc_score(labels[pick], p_cal[pick]))
            boot_jsd.append(_jsd(float(losses[pick].mean())))
    auc_error = float(np.std(boot_auc, ddof=1)) if len(boot_auc) > 1 else float("nan")
    jsd_error = float(np.std(boot_jsd, ddof=1)) if len(boot_jsd) > 1 else float("nan")
    return float(roc_auc_score(labels, p_cal)), _jsd(float(losses.mean())), auc_error, jsd_error, fpr, tpr


def _one_run(ref: NDArray[np.float32], gen: NDArray[np.float32], config: ClassifierConfig, seed: int,
             device: torch.device, bf16: bool, deadline: float, progress: Progress, label: str) -> ClassifierRun:
    start_time = time.monotonic()
    rng = np.random.default_rng(seed)
    parts_r, parts_g = _split(len(ref), rng), _split(len(gen), rng)

    def stack(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.concatenate([ref[parts_r[k]], gen[parts_g[k]]])
        y = np.concatenate([np.zeros(len(parts_r[k])), np.ones(len(parts_g[k]))]).astype(np.float32)
        return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)

    (x_train, y_train), (x_test, y_test), (x_val, y_val) = stack(0), stack(1), stack(2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _network(ref.shape[1], config).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(seed)
    best_acc, best_epoch, best_state, stale, epoch = -1.0, 0, copy.deepcopy(model.state_dict()), 0, 0
    stopped_by: StopReason = "max_epochs"
    budget = None if math.isinf(deadline) else max(0.0, deadline - time.monotonic())  # caps the ETA shown
    with progress.task(label, total=config.max_epochs, unit="epochs", max_seconds=budget) as task:
        for epoch in range(1, config.max_epochs + 1):
            model.train()
            order = torch.randperm(len(x_train), generator=generator).to(device)
            losses = []
            for begin in range(0, len(order), config.batch_size):
                idx = order[begin : begin + config.batch_size]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    logits = model(x_train[idx]).squeeze(-1)
                loss = loss_fn(logits.float(), y_train[idx])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                losses.append(float(loss.detach()))
                if time.monotonic() >= deadline:
                    stopped_by = "budget"
                    break
            acc = float(((_predict(model, x_test, bf16) > 0.5).float() == y_test).float().mean())
            task.update(epoch, status=f"loss {np.mean(losses):.4f} test acc {acc:.4f}", line=True)
            if acc > best_acc:
                best_acc, best_epoch, stale = acc, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
            if stopped_by == "budget" or time.monotonic() >= deadline:
                stopped_by = "budget"
                break
            if config.patience is not None and stale >= config.patience:
                stopped_by = "patience"
                break
        task.update(status=f"best test acc {best_acc:.4f} at epoch {best_epoch}, stopped by {stopped_by}")
    model.load_state_dict(best_state)
    p_test = _predict(model, x_test, bf16).cpu().numpy().astype(np.float64)
    p_val = _predict(model, x_val, bf16).cpu().numpy().astype(np.float64)
    labels = y_val.cpu().numpy()
    auc, jsd, auc_err, jsd_err, fpr, tpr = _score(calibrate(p_test, y_test.cpu().numpy(), p_val), labels, rng)
    return ClassifierRun(auc=auc, jsd=jsd, auc_bootstrap_error=auc_err, jsd_bootstrap_error=jsd_err,
                         best_epoch=best_epoch, epochs_run=epoch, stopped_by=stopped_by,
                         precision="bf16" if bf16 else "fp32", elapsed_s=time.monotonic() - start_time,
                         fpr=fpr, tpr=tpr)


def classifier_rows(n_reference: int, n_generated: int, max_showers: int | None = None, seed: int = 0
                    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The rows of each sample that :func:`classifier_test` uses (sorted), so a caller can read only those.

    Both samples are cut to ``n = min(n_reference, n_generated, max_showers)`` rows drawn without
    replacement; inputs made of exactly these rows give the same result as the whole samples.

    Example:
        >>> r, g = classifier_rows(100, 30, max_showers=20, seed=0)
        >>> len(r), len(g), bool((np.diff(r) > 0).all())
        (20, 20, True)
    """
    n = min(n_reference, n_generated, max_showers or n_reference)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_reference, n, replace=False)), np.sort(rng.choice(n_generated, n, replace=False))


def classifier_test(
    reference: NDArray[np.floating],
    generated: NDArray[np.floating],
    config: ClassifierConfig | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    label: str = "classifier",
) -> ClassifierResult:
    """Train the CaloChallenge classifier to separate reference (label 0) from generated (label 1) inputs.

    Args:
        reference: Reference inputs, (N_r, D) (see :func:`caloforge.validation.features.low_level_inputs`
            and :func:`caloforge.validation.features.high_level_inputs`).
        generated: Generated inputs, (N_g, D).
        config: Network and training settings (default: the CaloChallenge recipe).
        seed: Seed of the subsampling, splits, initialisation and batch order; repeat k uses ``seed + k``.
        device: Where to train (the caller's choice; CPU by default).
        progress: Reports each epoch (loss, test accuracy, time left); None is silent.
        label: The name shown in the progress report.

    Returns:
        AUC and JSD on the validation split, mean and spread over repeats, and how training went.

    Raises:
        DataError: if the inputs differ in width, are not finite, or have fewer than 10 rows.

    References:
        C. Krause et al., arXiv:2410.21611, section on the classifier metric.
    """
    # looked up when called: tests replace the CPU's capabilities in runtime.hardware
    from caloforge.runtime.hardware import use_bf16

    start = time.monotonic()
    config = config or ClassifierConfig()
    ref = np.asarray(reference, dtype=np.float32)
    gen = np.asarray(generated, dtype=np.float32)
    if ref.ndim != 2 or gen.ndim != 2 or ref.shape[1] != gen.shape[1]:
        msg = f"expected two (N, D) inputs with the same D but got {ref.shape} and {gen.shape}, in classifier_test"
        raise DataError(msg)
    if not (np.isfinite(ref).all() and np.isfinite(gen).all()):
        msg = "expected finite classifier inputs but got NaN or inf, in classifier_test"
        raise DataError(msg)
    n = min(len(ref), len(gen), config.max_showers or len(ref))
    if n < 10:
        msg = f"expected at least 10 showers per sample but got {n}, in classifier_test"
        raise DataError(msg)
    if not len(ref) == len(gen) == n:  # inputs of exactly n rows are used whole (classifier_rows picks all)
        rows_r, rows_g = classifier_rows(len(ref), len(gen), config.max_showers, seed)
        ref, gen = ref[rows_r], gen[rows_g]
    dev = torch.device(device)
    bf16 = config.precision == "bf16" or (config.precision == "auto" and use_bf16(dev))
    runs = []
    for k in range(config.repeats):
        deadline = math.inf
        if config.max_seconds is not None:  # the time left, shared by the remaining repeats
            deadline = time.monotonic() + (start + config.max_seconds - time.monotonic()) / (config.repeats - k)
        name = label if config.repeats == 1 else f"{label} ({k + 1}/{config.repeats})"
        runs.append(_one_run(ref, gen, config, seed + k, dev, bf16, deadline, progress or SILENT, name))
    aucs = np.array([r.auc for r in runs])
    jsds = np.array([r.jsd for r in runs])
    return ClassifierResult(
        auc=float(aucs.mean()),
        auc_error=float(aucs.std(ddof=1)) if len(runs) > 1 else runs[0].auc_bootstrap_error,
        jsd=float(jsds.mean()),
        jsd_error=float(jsds.std(ddof=1)) if len(runs) > 1 else runs[0].jsd_bootstrap_error,
        runs=tuple(runs),
        n_per_sample=n,
        seed=seed,
        config=config,
    )
