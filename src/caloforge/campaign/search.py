"""The search of a campaign on Ray Tune: one Optuna study and one ASHA early stopping per slice and family.

A campaign is one Tune experiment (one trial table, one resume, every trial schedulable on any
node of the cluster), but its slices and families must not be compared with each other: a pion
GAN's chi2/NDF says nothing about a photon flow's. :class:`GroupedOptunaSearch` therefore keeps one
:class:`~ray.tune.search.optuna.OptunaSearch` (TPE) per (slice, family) group and hands out each
group's trials in turn; :class:`GroupedASHA` keeps one :class:`~ray.tune.schedulers.ASHAScheduler`
per group. A trial's config is ``{"group", "slice", "family", "params"}``.

Ray and Optuna are optional (``caloforge[ray]``); this module imports them, so import it only
where a campaign runs (:mod:`caloforge.campaign.tune` does, after :func:`caloforge.extras.require`).
"""

from __future__ import annotations

import contextlib
import math
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from caloforge.campaign.spec import CampaignSpec, SearchParam, family_config

__all__ = ["OBJECTIVE", "GroupedASHA", "GroupedOptunaSearch", "decode_params", "distributions", "group_key",
           "make_scheduler", "make_searcher"]

OBJECTIVE = "objective"
"""The key of a trial's final result that the search minimises (the spec's metric)."""
SELECTION = "best_chi2_ndf"
"""The key of every checkpoint's report that early stopping compares: the running best validation chi2/NDF."""


def group_key(slice_label: str, family: str) -> str:
    """The name of a (slice, family) group, e.g. ``photon-eta0-0.4/gan``."""
    return f"{slice_label}/{family}"


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def distributions(search: Mapping[str, SearchParam]) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna distributions of a family's search space (a choice of lists is drawn as an index).

    Example:
        >>> d = distributions({"lr": SearchParam(log_uniform=(1e-4, 1e-2))})
        >>> d["lr"].log, d["lr"].low
        (True, 0.0001)
    """
    dist = optuna.distributions
    out: dict[str, dist.BaseDistribution] = {}
    for key, p in search.items():
        if p.uniform is not None or p.log_uniform is not None:
            low, high = p.candidates()
            out[key] = dist.FloatDistribution(float(low), float(high), log=p.log_uniform is not None)
        elif p.integer is not None or p.log_integer is not None:
            low, high = p.candidates()
            out[key] = dist.IntDistribution(int(low), int(high), log=p.log_integer is not None)
        else:
            choices = p.candidates()
            out[key] = dist.CategoricalDistribution(choices if all(map(_scalar, choices)) else range(len(choices)))
    return out


def decode_params(search: Mapping[str, SearchParam], params: Mapping[str, Any]) -> dict[str, Any]:
    """The config values of a trial's drawn ``params`` (indices of a choice of lists become the lists).

    Example:
        >>> decode_params({"layers": SearchParam(choice=([8], [16, 16]))}, {"layers": 1})
        {'layers': [16, 16]}
    """
    out = {}
    for key, value in params.items():
        choices = search[key].choice
        out[key] = choices[value] if choices is not None and not all(map(_scalar, choices)) else value
    return out


def _encode_default(param: SearchParam, value: Any) -> Any:
    """The drawn value that stands for a config's current ``value`` (an index for a choice of lists)."""
    choices = param.choice
    if choices is None or all(map(_scalar, choices)):
        return value
    return next(i for i, c in enumerate(choices) if list(c) == list(value))


class GroupedOptunaSearch(Searcher):
    """One Optuna study per (slice, family) group, each asked for ``trials_per_group`` trials in turn.

    Args:
        studies: The searcher of each group (metric :data:`OBJECTIVE`, mode ``min``).
        trials_per_group: Trials each group gets.
        groups: ``{group: (slice, family)}``.
    """

    def __init__(self, studies: dict[str, OptunaSearch], trials_per_group: int,
                 groups: Mapping[str, tuple[str, str]]) -> None:
        # Tune checks that every report holds the searcher's metric: the checkpoint reports have the selection
        # metric, the final report also the objective, which the studies read (a trial without it was stopped)
        super().__init__(metric=SELECTION, mode="min")
        self._studies = studies
        self._per_group = trials_per_group
        self._groups = dict(groups)
        self._issued = dict.fromkeys(studies, 0)
        self._trial_group: dict[str, str] = {}
        self._turn = 0

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict[str, Any],
                              **spec: Any) -> bool:
        """The studies have their spaces, metric and mode already; accept only an empty Tune param space."""
        return not config

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """The next group's next trial, or :attr:`Searcher.FINISHED` when every group has all its trials."""
        names = list(self._studies)
        for step in range(len(names)):
            group = names[(self._turn + step) % len(names)]
            if self._issued[group] < self._per_group:
                self._turn = (self._turn + step + 1) % len(names)
                params = self._studies[group].suggest(trial_id)
                if params is None:
                    continue
                self._issued[group] += 1
                self._trial_group[trial_id] = group
                slice_label, family = self._groups[group]
                return {"group": group, "slice": slice_label, "family": family, "params": dict(params)}
        return Searcher.FINISHED  # type: ignore[return-value]  # Tune's marker string

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Intermediate reports go to the scheduler only (the studies have no pruner)."""

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        """Tell the trial's study its objective; a trial stopped early (no objective) is pruned there."""
        group = self._trial_group.get(trial_id)
        if group is not None:
            self._studies[group].on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        """Pickle the studies and the bookkeeping (Tune calls this with the experiment state)."""
        with open(checkpoint_path, "wb") as out:  # noqa: PTH123 (Tune's API passes a str path)
            pickle.dump(self.__dict__.copy(), out)

    def restore(self, checkpoint_path: str) -> None:
        """Restore what :meth:`save` wrote (only ever the campaign's own experiment directory)."""
        with open(checkpoint_path, "rb") as source:  # noqa: PTH123
            self.__dict__.update(pickle.load(source))


class GroupedASHA(FIFOScheduler):
    """Asynchronous successive halving within each (slice, family) group, on :data:`SELECTION`.

    Args:
        schedulers: The ASHA scheduler of each group.
    """

    def __init__(self, schedulers: dict[str, ASHAScheduler]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._schedulers = schedulers
        self._metric = SELECTION

    def _of(self, trial: Trial) -> ASHAScheduler:
        return self._schedulers[trial.config["group"]]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """The per-group schedulers have their metric and mode already."""
        return True

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        return str(self._of(trial).on_trial_result(tune_controller, trial, result))

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        with contextlib.suppress(KeyError):  # a trial that ASHA no longer tracks (restored as finished)
            self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        with contextlib.suppress(KeyError):
            self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "ASHA per slice and family: " + "; ".join(f"{g}: {s.debug_string()}" for g, s in
                                                         self._schedulers.items())


def _max_t(spec: CampaignSpec) -> tuple[str, int]:
    """ASHA's time attribute and its maximum: iterations over all energy ranges, or seconds."""
    ranges = len(spec.energy_split) + 1
    if spec.budget.iterations is not None:
        return "iteration", spec.budget.iterations * ranges
    return "elapsed_s", math.ceil(60 * (spec.budget.minutes or 1.0))  # load_spec refuses a spec without a budget


def make_scheduler(spec: CampaignSpec) -> TrialScheduler:
    """The campaign's scheduler: ASHA per group when early stopping is on, else first-in first-out."""
    if not spec.early_stopping.enabled:
        return FIFOScheduler()  # type: ignore[no-untyped-call]
    attr, max_t = _max_t(spec)
    grace = max(1, round(spec.early_stopping.grace_fraction * max_t))
    return GroupedASHA({group_key(s, f): ASHAScheduler(time_attr=attr, metric=SELECTION, mode="min", max_t=max_t,
                                                       grace_period=min(grace, max_t),
                                                       reduction_factor=spec.early_stopping.reduction_factor,
                                                       stop_last_trials=False)
                        for s, f in spec.groups()})


def make_searcher(spec: CampaignSpec, device: str = "cpu") -> GroupedOptunaSearch:
    """One seeded TPE study per group; with ``include_defaults`` each group's first trial is the defaults."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies, groups = {}, {}
    for k, (slice_label, family) in enumerate(spec.groups()):
        search = spec.families[family].search
        points: Sequence[dict[str, Any]] = ()
        if spec.include_defaults:
            default = family_config(spec, family, spec.slice(slice_label).particle, device=device)
            points = [{key: _encode_default(p, getattr(default, key)) for key, p in search.items()}]
        startup = max(2, spec.trials // 3)
        sampler = optuna.samplers.TPESampler(seed=spec.seed + k, n_startup_trials=startup)
        group = group_key(slice_label, family)
        studies[group] = OptunaSearch(distributions(search), metric=OBJECTIVE, mode="min",
                                      points_to_evaluate=list(points) or None, sampler=sampler)
        groups[group] = (slice_label, family)
    return GroupedOptunaSearch(studies, spec.trials, groups)
