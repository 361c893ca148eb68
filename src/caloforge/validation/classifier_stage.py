"""The classifier stage of a full evaluation: each test on the samples and on the reference split, in one budget.

:func:`classifier_tests` trains the low-level (voxels) and high-level (features) classifiers of
:mod:`caloforge.validation.metrics.classifier`, each on the reference against the generated sample
and on the two halves of the reference (the yardstick). The low-level tests read only the rows the
classifier uses, exactly as it would pick them from whole samples. A wall-clock budget
(``max_seconds`` of the config) is shared among the tests in proportion to their work, reading excluded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from caloforge.data.source import Showers
from caloforge.runtime.progress import Progress
from caloforge.validation.features import low_level_inputs
from caloforge.validation.metrics.classifier import ClassifierConfig, ClassifierResult, classifier_rows, classifier_test
from caloforge.validation.passes import gather

__all__ = ["ClassifierStage", "classifier_tests"]


@dataclass(frozen=True)
class ClassifierStage:
    """The classifier results.

    Attributes:
        results: Reference against generated, by kind (``low``, ``high``).
        split: Half A of the reference against half B, by kind.
        messages: Warnings for the report (a test stopped by its budget).
    """

    results: dict[str, ClassifierResult]
    split: dict[str, ClassifierResult]
    messages: tuple[str, ...]


def classifier_tests(reference: Showers, generated: Showers,
                     high_level: tuple[NDArray[np.float32], NDArray[np.float32]],
                     halves: tuple[NDArray[np.int64], NDArray[np.int64]], kinds: Sequence[str],
                     config: ClassifierConfig, *, seed: int, device: str, threshold: float, chunk_size: int | None,
                     progress: Progress | None, lap: Callable[[str], None], with_split: bool = True) -> ClassifierStage:
    """Run the classifier tests of ``kinds`` (``low``, ``high``), each also on the reference split (``with_split``).

    Args:
        reference: The reference showers.
        generated: The generated showers.
        high_level: The high-level classifier inputs of the reference and the generated sample.
        halves: The rows of the reference's halves A and B.
        kinds: The tests to run.
        config: The classifier settings (``max_seconds``: the stage's budget).
        seed: Seed of the subsets and the trainings.
        device: Torch device of the trainings.
        threshold: The readout threshold (MeV) applied to the voxels read.
        chunk_size: Showers per chunk when reading rows.
        progress: Where each test reports its epochs.
        lap: Called with each test's timing name once it is done.
        with_split: Also train on the reference's halves (``--skip split`` leaves them out: half the time, and each
            AUC is then graded against 0.5).
    """
    hl_r, hl_g = high_level
    half_a, half_b = halves
    results: dict[str, ClassifierResult] = {}
    split: dict[str, ClassifierResult] = {}
    jobs = [(kind, split_half) for kind in kinds for split_half in ((False, True) if with_split else (False,))]
    sizes = {job: min(len(reference) // 2 if job[1] else min(len(reference), len(generated)),
                      config.max_showers or 10**12) for job in jobs}
    widths = {"low": reference.geometry.n_voxels + 1, "high": hl_r.shape[1]}
    work = {job: config.epoch_flops(widths[job[0]], sizes[job]) for job in jobs}
    deadline = None if config.max_seconds is None else time.monotonic() + config.max_seconds
    for i, (kind, split_half) in enumerate(jobs):
        reading = time.monotonic()
        if kind == "high":
            x_r, x_g = (hl_r[half_a], hl_r[half_b]) if split_half else (hl_r, hl_g)
        else:  # only the rows the classifier uses, exactly as it would pick them from whole samples
            sample_g, pool_r, pool_g = (reference, half_a, half_b) if split_half else \
                (generated, np.arange(len(reference)), np.arange(len(generated)))
            rows_r, rows_g = classifier_rows(len(pool_r), len(pool_g), config.max_showers, seed)
            x_r = gather(reference, pool_r[rows_r], threshold, lambda s: low_level_inputs(s, 0.0), chunk_size)
            x_g = gather(sample_g, pool_g[rows_g], threshold, lambda s: low_level_inputs(s, 0.0), chunk_size)
        job_config = config
        if deadline is not None:  # the time left (reading excluded), shared in proportion to each test's work
            deadline += time.monotonic() - reading
            share = work[(kind, split_half)] / sum(work[j] for j in jobs[i:])
            job_config = config.replace(max_seconds=max(1e-3, (deadline - time.monotonic()) * share))
        label = f"classifier {kind}-level" + (" (reference split)" if split_half else "")
        result = classifier_test(x_r, x_g, job_config, seed=seed, device=device, progress=progress, label=label)
        (split if split_half else results)[kind] = result
        del x_r, x_g
        lap(f"classifier_{kind}" + ("_split" if split_half else ""))
    messages = tuple(f"the {kind}-level classifier was stopped by its wall-clock budget after "
                     f"{'/'.join(str(r.epochs_run) for r in result.runs)} epochs: its AUC may be "
                     "understated (give it more time with --classifier-minutes)"
                     for kind, result in results.items() if result.budget_exhausted)
    return ClassifierStage(results, split, messages)
