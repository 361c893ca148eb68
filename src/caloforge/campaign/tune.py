"""Run a campaign on Ray Tune: Optuna search, ASHA early stopping, resumable, local or on a Ray cluster.

:func:`run_campaign` checks the spec, prepares each slice's showers, starts Ray (in-process with
this machine's cores, or connects to a cluster with ``address``), runs every trial
(:func:`caloforge.campaign.trial.run_trial`) and writes, in the campaign directory ``OUT``:

* ``campaign.json``: the checked spec (a resume must use the same);
* ``data/<slice>/``: simulated showers of the refsim slices;
* ``trials/<slice>/<family>/<trial>/``: each trial's caloforge run directory and ``trial.json``;
* ``tune/search/``: Ray Tune's experiment state (Optuna studies, trial table), for ``resume``;
* ``trials.json``: every trial's row; ``model-set/``: the best bundle per slice and ``model_set.json``.

Ray and Optuna are the optional extra ``caloforge[ray]``. Ray never writes outside ``OUT`` and a
short temporary directory of its own (removed at the end).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from caloforge._version import __version__
from caloforge.campaign.spec import CampaignSpec
from caloforge.campaign.spec_checks import load_spec
from caloforge.data.documents import read_json
from caloforge.data.outputs import atomic_path, strict_json
from caloforge.errors import CheckpointError, ConfigError, OutputExistsError
from caloforge.extras import require
from caloforge.runtime.hardware import machine_summary
from caloforge.runtime.interrupts import Interrupted
from caloforge.runtime.progress import Progress, as_progress

__all__ = ["CAMPAIGN_FORMAT", "CampaignResult", "campaign_dir", "run_campaign"]

CAMPAIGN_FORMAT = "caloforge-campaign/1"
_EXPERIMENT = "search"
_STATE_PERIOD_S = "2"  # Tune saves its experiment state at most this often: a kill loses little


@dataclass(frozen=True)
class CampaignResult:
    """A campaign run (or its part until an interruption).

    Attributes:
        out_dir: The campaign directory.
        trials: Every trial's row (``trials.json``).
        model_set: The model-set manifest, or None when no trial is complete.
        finished: Every trial ended (complete, stopped early or failed).
        elapsed_s: Wall-clock time of this call, s.
        signum: The signal that stopped the campaign (2 SIGINT, 15 SIGTERM), 0 when none did.
    """

    out_dir: Path
    trials: tuple[dict[str, Any], ...]
    model_set: Path | None
    finished: bool
    elapsed_s: float
    signum: int = 0


class _NoRestoreHint(logging.Filter):
    """Drops Ray Tune's "resume with Tuner.restore(...)" advice: ``caloforge campaign run --resume`` is ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore" not in record.getMessage()


@contextlib.contextmanager
def _signals_to_tune() -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM stop Tune the way its own Ctrl-C does (state saved, trials resumable); yields the signals.

    Tune's SIGINT handler is replaced by one that records the signal (SIGTERM too) and passes it on
    as SIGUSR1, on which Tune ends the run gracefully; before Tune listens, or on a second
    signal, the run stops at once (:class:`~caloforge.runtime.interrupts.Interrupted`).
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    before_tune = signal.getsignal(signal.SIGUSR1)

    def handler(signum: int, frame: FrameType | None) -> None:
        tune_listens = signal.getsignal(signal.SIGUSR1) is not before_tune  # Tune installs it when fit() starts
        first = not received
        received.append(int(signum))
        if first and tune_listens:
            signal.raise_signal(signal.SIGUSR1)
        else:
            raise Interrupted(signum)

    saved_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGUSR1] = before_tune
    tune_log = logging.getLogger("ray.tune.tune")
    hint = _NoRestoreHint()
    tune_log.addFilter(hint)
    try:
        yield received
    finally:
        tune_log.removeFilter(hint)
        for sig, before in previous.items():
            signal.signal(sig, before)
        if saved_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = saved_env


def campaign_dir(spec: CampaignSpec, spec_path: Path | None, out_dir: str | Path | None) -> Path:
    """``out_dir``, else the spec's ``output`` (relative to the spec file), else ``campaign-<name>`` here."""
    if out_dir is not None:
        return Path(out_dir).resolve()
    if spec.output is not None:
        base = spec_path.resolve().parent if spec_path is not None else Path.cwd()
        return (base / spec.output).resolve()
    return Path(f"campaign-{spec.name or 'campaign'}").resolve()


def _check_out(out: Path, spec: CampaignSpec, resume: bool, where: str) -> None:
    record = out / "campaign.json"
    if not resume:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            msg = f"{out} already holds files; pass --resume to continue that campaign or choose another --out"
            raise OutputExistsError(msg)
        return
    if not record.is_file():
        msg = f"expected a campaign to resume in {out} but it has no campaign.json; start it without --resume"
        raise CheckpointError(msg)
    stored = read_json(record, "a campaign record", CheckpointError)
    if not isinstance(stored, dict) or not isinstance(stored.get("spec"), dict):
        msg = f"expected a campaign record with its spec in {record} but it has another form; start a new campaign"
        raise CheckpointError(msg)
    stored = stored["spec"]
    current = json.loads(strict_json(spec.to_dict()))
    changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    if changed:
        msg = (f"expected the spec of the campaign in {out} but {where} differs in {changed}; resume with the "
               f"spec it started with, or start a new campaign in another directory")
        raise ConfigError(msg)


def _check_local_resources(spec: CampaignSpec, cpus: int, gpus: int, where: str) -> None:
    r = spec.resources
    if r.cpus > cpus or r.gpus > gpus:
        msg = (f"expected resources per trial within this machine ({cpus} CPUs, {gpus} GPUs) but got "
               f"{r.cpus:g} CPUs and {r.gpus:g} GPUs, in resources of {where}; lower them or run on a cluster "
               f"with --address")
        raise ConfigError(msg)


def _gpu_count() -> int:
    # torch's import time (about 2 s): only to count GPUs when a campaign runs
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@contextlib.contextmanager
def _ray_session(address: str | None, cpus: int, gpus: int) -> Iterator[Any]:
    """Ray, started here (in-process, its files in a short temporary directory) or connected to ``address``."""
    ray = require("ray", "ray", "campaigns")
    if ray.is_initialized():  # the caller's own Ray session
        yield ray
        return
    temp = None
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED", "TUNE_GLOBAL_CHECKPOINT_S",
                                             "RAY_AIR_NEW_OUTPUT")}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", _STATE_PERIOD_S)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's own tables off: the campaign shows its own
    try:
        if address is None:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            base = tempfile.gettempdir()  # Ray's socket paths under it must stay short (107 characters)
            temp = tempfile.mkdtemp(prefix="cfray-", dir=base if len(base) <= 40 else "/tmp")
            ray.init(num_cpus=cpus, num_gpus=gpus, _temp_dir=temp, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        yield ray
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def _trial_name(trial: Any) -> str:
    config = trial.config or {}
    return f"{config.get('slice', '?')}/{config.get('family', '?')}/{trial.trial_id}"


def _trial_dirname(trial: Any) -> str:
    return str(trial.trial_id)


def _slots(ray: Any, spec: CampaignSpec) -> int:
    """Trials that fit on the cluster at once (Tune then keeps that many started)."""
    available = ray.cluster_resources()
    slots = int(available.get("CPU", 1) // spec.resources.cpus)
    if spec.resources.gpus > 0:
        slots = min(slots, int(available.get("GPU", 0) // spec.resources.gpus))
    return max(1, slots)


def _tuner(spec: CampaignSpec, out: Path, trainable: Any, resume: bool, progress: bool, device: str,
           slots: int) -> Any:
    # optional dependency: Ray Tune and Optuna (caloforge[campaign])
    from ray import tune

    # these import Ray Tune and Optuna too (optional dependencies)
    from caloforge.campaign.progress import CampaignProgress
    from caloforge.campaign.search import make_scheduler, make_searcher

    experiment = out / "tune" / _EXPERIMENT
    CampaignProgress.active = progress  # also for the instance a resumed experiment restores
    if resume and tune.Tuner.can_restore(str(experiment)):
        return tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True, resume_errored=True)
    total = len(spec.groups()) * spec.trials
    callbacks: list[tune.Callback] = [CampaignProgress(total)]
    return tune.Tuner(
        trainable, param_space={},
        tune_config=tune.TuneConfig(search_alg=make_searcher(spec, device), scheduler=make_scheduler(spec),
                                    num_samples=total, max_concurrent_trials=slots, reuse_actors=True,
                                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(storage_path=str(out / "tune"), name=_EXPERIMENT, verbose=0, callbacks=callbacks,
                                  failure_config=tune.FailureConfig(max_failures=0)))


def run_campaign(
    spec: CampaignSpec | str | Path,
    out_dir: str | Path | None = None,
    *,
    address: str | None = None,
    resume: bool = False,
    progress: Progress | bool = True,
) -> CampaignResult:
    """Run (or resume) a campaign: every trial on Ray Tune, then ``trials.json`` and the model set.

    Args:
        spec: A checked spec, or the path of a spec file (checked by :func:`load_spec`).
        out_dir: The campaign directory (default: :func:`campaign_dir`).
        address: A Ray cluster (``auto``, ``ray://HOST:PORT``); None starts Ray here with this machine's cores.
            On a cluster the campaign directory and the data files must be on a filesystem every node sees.
        resume: Continue the campaign in ``out_dir``: finished trials are kept, interrupted ones continue
            from their last checkpoint, failed ones are tried again.
        progress: A live table of trials (a Progress or True: on the terminal; False: silent).

    Returns:
        The trials and the model set; ``finished`` is false after an interruption (resume to continue).

    Raises:
        ConfigError: any problem of the spec (before any trial starts), a spec that differs from the
            resumed campaign's, or resources beyond this machine's without ``address``.
        OutputExistsError: ``out_dir`` holds files and ``resume`` is false.
        CheckpointError: ``resume`` without a campaign in ``out_dir``.
        MissingDependencyError: Ray or Optuna is not installed (``pip install "caloforge[ray]"``).
    """
    start = time.monotonic()
    spec_path = None if isinstance(spec, CampaignSpec) else Path(spec)
    checked = spec if isinstance(spec, CampaignSpec) else load_spec(spec)
    where = "the campaign spec" if spec_path is None else f"the campaign spec {spec_path}"
    checked = checked.replace(name=checked.name or (spec_path.stem if spec_path is not None else "campaign"))
    out = campaign_dir(checked, spec_path, out_dir)
    require("ray.tune", "ray", "campaigns")
    require("optuna", "ray", "campaigns")
    cpus, gpus = os.cpu_count() or 1, _gpu_count()
    if address is None:
        _check_local_resources(checked, cpus, gpus, where)
    _check_out(out, checked, resume, where)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    prog = as_progress(progress)
    try:
        if not resume:
            with atomic_path(out / "campaign.json") as tmp:
                tmp.write_text(strict_json({"format": CAMPAIGN_FORMAT, "spec": checked.to_dict(),
                                            "caloforge_version": __version__}, indent=2), encoding="utf-8")
        # the training stack's import time (Lightning, about 5 s): only once a campaign runs
        from caloforge.campaign.slices import prepare_slices

        files = prepare_slices(checked, out, prog, where)
    except BaseException:
        if created and not resume:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return _search(checked, out, files, address, resume, progress is not False, cpus, gpus, start)


def _search(spec: CampaignSpec, out: Path, files: dict[str, Any], address: str | None, resume: bool,
            progress: bool, cpus: int, gpus: int, start: float) -> CampaignResult:
    # the training stack's import time (Lightning, about 5 s): only once a campaign runs
    from caloforge.campaign.results import build_model_set, collect_trials, write_trials
    from caloforge.campaign.trial import TrialContext, run_trial

    device = "cuda" if spec.resources.gpus > 0 else "cpu"
    with _ray_session(address, cpus, gpus) as ray:
        # optional dependency: Ray (caloforge[campaign])
        from ray import tune

        context = TrialContext(spec, str(out), files)
        resources = {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus}
        trainable = tune.with_resources(tune.with_parameters(run_trial, context=context), resources)
        with _signals_to_tune() as signals:
            grid = _tuner(spec, out, trainable, resume, progress, device, _slots(ray, spec)).fit()
        total = len(spec.groups()) * spec.trials
        finished = not signals and len(grid) == total and grid.num_terminated + grid.num_errors == total
        results = [grid[i] for i in range(len(grid))]
    rows = collect_trials(spec, out, results, finished)
    machine = machine_summary("cpu", min_seconds=0.05).describe()
    write_trials(out, spec, rows, finished, time.monotonic() - start, machine)
    manifest = build_model_set(spec, out, rows, files, finished)
    return CampaignResult(out, tuple(rows), manifest, finished, time.monotonic() - start, signals[0] if signals else 0)
