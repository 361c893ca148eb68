"""The campaign spec: what a campaign trains, searches and judges, validated before any trial starts.

A campaign trains one model per (particle, |eta| slice) and family, with a hyperparameter
search per family, and keeps the best model of each slice in a model set (AtlFast3 trains one
GAN per particle and eta slice). The spec is a YAML file read by :func:`~caloforge.campaign.spec_checks.load_spec`::

    name: ds1-slices
    metric: chi2_ndf            # or auc (the classifier test of the selected model)
    trials: 8                   # per slice and family; the first evaluates the defaults
    budget: {minutes: 5, checkpoint_every: 100}
    resources: {cpus: 1, gpus: 0}
    slices:
      - {particle: photon, eta: [0.0, 0.4], refsim: {eta: 0.2, n_train: 20000}}
      - {particle: photon, eta: [0.4, 1.0], data: {train: photons-0.7.h5}}
    families:
      gan:
        search:
          lr: {log_uniform: [1.0e-4, 2.0e-3]}
          critic_steps: {choice: [1, 2, 4]}

Every section is a :class:`~caloforge.config.Config`: unknown keys and wrong types are refused
with one line naming the key and the file; :func:`~caloforge.campaign.spec_checks.load_spec` then
checks what spans sections (families that exist, search keys their configs know, values those configs accept, data files
that exist and can be read, one data source per slice, slices that do not overlap).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from caloforge.config import Config
from caloforge.models import get_family
from caloforge.models.base import FamilyConfig, Preset
from caloforge.validation.metrics.classifier import ClassifierConfig

__all__ = ["KINDS", "METRICS", "Budget", "CampaignSpec", "DataFiles", "EarlyStopping", "FamilySpec", "RefsimSource",
           "Resources", "SearchParam", "SliceSpec", "family_config", "same_value"]

METRICS = ("chi2_ndf", "auc")
"""Metrics a campaign can optimise: the validation chi2/NDF of the response (the checkpoint-selection
metric), or the classifier AUC of the selected model against the slice's reference showers."""

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
KINDS = ("uniform", "log_uniform", "integer", "log_integer", "choice")
"""The keys of a :class:`SearchParam`."""


class SearchParam(Config):
    """One hyperparameter's search range: exactly one of the keys.

    Attributes:
        uniform: ``[low, high]``, a float drawn uniformly.
        log_uniform: ``[low, high]``, a float drawn uniformly in log (low > 0).
        integer: ``[low, high]``, an integer (both included).
        log_integer: ``[low, high]``, an integer drawn uniformly in log (low >= 1).
        choice: The values to choose from (numbers, strings, lists).
    """

    uniform: tuple[float, float] | None = None
    log_uniform: tuple[float, float] | None = None
    integer: tuple[int, int] | None = None
    log_integer: tuple[int, int] | None = None
    choice: tuple[Any, ...] | None = None

    @property
    def kind(self) -> str:
        """Which key is given (the first, when several are)."""
        return next((k for k in KINDS if getattr(self, k) is not None), "none")

    def candidates(self) -> list[Any]:
        """The values the config must accept: both bounds of a range, every choice."""
        value = getattr(self, self.kind, None)
        return list(value) if value is not None else []

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is in the range (or among the choices)."""
        if self.choice is not None:
            return any(same_value(value, c) for c in self.choice)
        low, high = self.candidates()
        return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def same_value(a: Any, b: Any) -> bool:
    """Equality that treats lists and tuples alike (YAML lists against config tuples).

    Example:
        >>> same_value([64, 64], (64, 64)), same_value(2, 2.0), same_value("a", ["a"])
        (True, True, False)
    """
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, list | tuple) or isinstance(b, list | tuple):
        return False
    return bool(a == b)


class DataFiles(Config):
    """Showers of a slice from CaloChallenge files (paths relative to the spec file).

    Attributes:
        train: Training showers (a validation split selects checkpoints unless ``validation`` is given).
        validation: Independent validation showers for checkpoint selection.
        reference: Independent showers for the trial's final metrics (default: the validation sample).
        geometry: Preset or binning XML; default: the file's metadata or its unique preset.
    """

    train: str
    validation: str | None = None
    reference: str | None = None
    geometry: str | None = None


class RefsimSource(Config):
    """Showers of a slice simulated by the reference simulator (no data needed).

    Attributes:
        geometry: A dataset-1 (ATLAS-like) geometry; default ``ds1-photons`` (``ds1-pions`` for pions).
        eta: |eta| of the simulated detector slice; default the middle of the slice's range.
        extra_material_x0: Dead material in front, X0 (see :func:`caloforge.refsim.atlas_like`).
        n_train: Training showers (a validation split is taken from them).
        n_reference: Independent showers for the final metrics.
        energies: Incident energies (MeV) shared equally among the showers; default the spectrum.
        spectrum: A spectrum text (``ds1``, ``log-uniform[:EMIN:EMAX]``); default the geometry's.
        seed: Seed of the training showers; the reference showers use ``seed + 1``.
    """

    geometry: str | None = None
    eta: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    extra_material_x0: Annotated[float, Field(ge=0, le=20, allow_inf_nan=False)] = 0.0
    n_train: Annotated[int, Field(ge=50, le=10**8)] = 10_000
    n_reference: Annotated[int, Field(ge=10, le=10**8)] = 2_000
    energies: tuple[Positive, ...] = ()
    spectrum: str | None = None
    seed: Annotated[int, Field(ge=0, lt=2**31)] = 0


class SliceSpec(Config):
    """One (particle, |eta| range): its showers come from ``data`` or ``refsim`` (exactly one).

    Attributes:
        name: Directory-safe label; default ``<particle>-eta<low>-<high>``.
        particle: ``photon``, ``electron`` or ``pion``.
        eta: The |eta| range ``[low, high)`` the slice's model serves.
        data: CaloChallenge files.
        refsim: Reference-simulator settings.
    """

    name: str | None = None
    particle: Literal["photon", "electron", "pion"]
    eta: tuple[Annotated[float, Field(ge=0, allow_inf_nan=False)], Annotated[float, Field(gt=0, allow_inf_nan=False)]]
    data: DataFiles | None = None
    refsim: RefsimSource | None = None

    @property
    def label(self) -> str:
        """The slice's name (given or derived)."""
        return self.name or f"{self.particle}-eta{self.eta[0]:g}-{self.eta[1]:g}"


class FamilySpec(Config):
    """A family's starting point and search space.

    Attributes:
        preset: The family defaults: ``cpu``, ``paper`` or ``auto`` (cpu on a CPU, paper on a GPU).
        config: Fixed keys of the family's config, applied over the preset.
        search: The searched keys of the family's config and their ranges (at least one).
    """

    preset: Preset = "cpu"
    config: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, SearchParam] = Field(default_factory=dict)


class Budget(Config):
    """Training budget of each trial (and each energy range); at least one of iterations and minutes.

    Attributes:
        iterations: Iterations per model.
        minutes: Wall-clock minutes per trial.
        checkpoint_every: Iterations between checkpoints (selection, reports to the scheduler).
    """

    iterations: Annotated[int, Field(ge=1, le=10**9)] | None = None  # bounds: a typo, not a plan
    minutes: Annotated[float, Field(gt=0, le=10**6, allow_inf_nan=False)] | None = None  # two years
    checkpoint_every: Annotated[int, Field(ge=1, le=10**9)] = 100


class Resources(Config):
    """What each trial reserves on the Ray cluster (threads = cpus; a GPU trains on CUDA)."""

    cpus: Annotated[float, Field(gt=0, le=4096, allow_inf_nan=False)] = 1.0
    gpus: Annotated[float, Field(ge=0, le=1024, allow_inf_nan=False)] = 0.0


class EarlyStopping(Config):
    """Asynchronous successive halving (ASHA) within each slice and family, on the running best chi2/NDF.

    Attributes:
        enabled: Stop unpromising trials early.
        grace_fraction: Fraction of the budget every trial gets before it can be stopped.
        reduction_factor: At each rung only the best 1/reduction_factor of the trials continue.
    """

    enabled: bool = True
    grace_fraction: Annotated[float, Field(gt=0, le=1)] = 0.25
    reduction_factor: Annotated[float, Field(gt=1, allow_inf_nan=False)] = 3.0


def _default_classifier() -> ClassifierConfig:
    return ClassifierConfig(max_showers=10_000, repeats=1, precision="auto", max_seconds=60.0)


class CampaignSpec(Config):
    """A whole campaign (see the module docstring), read and checked by
    :func:`~caloforge.campaign.spec_checks.load_spec`."""

    name: str | None = None
    output: str | None = None
    seed: Annotated[int, Field(ge=0, lt=2**31)] = 0
    metric: Literal["chi2_ndf", "auc"] = "chi2_ndf"
    trials: Annotated[int, Field(ge=1, le=10_000)] = 8  # per slice and family
    include_defaults: bool = True
    energy_split: tuple[Positive, ...] = ()
    budget: Budget
    resources: Resources = Field(default_factory=Resources)
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    classifier: ClassifierConfig = Field(default_factory=_default_classifier)
    classifier_inputs: Literal["low", "high"] = "low"
    slices: Annotated[tuple[SliceSpec, ...], Field(min_length=1)]
    families: dict[str, FamilySpec]

    def slice(self, label: str) -> SliceSpec:
        """The slice named ``label``."""
        return next(s for s in self.slices if s.label == label)

    def groups(self) -> list[tuple[str, str]]:
        """The (slice, family) pairs, each searched with its own study and early stopping."""
        return [(s.label, f) for s in self.slices for f in self.families]


def family_config(spec: CampaignSpec, family: str, particle: str, params: dict[str, Any] | None = None,
                  device: str = "cpu", where: str = "the campaign spec") -> FamilyConfig:
    """The family's config of a trial: its preset for the particle, the spec's fixed keys, then ``params``.

    Raises:
        ConfigError: for keys the family's config does not have or values it refuses, naming ``where``.
    """
    fam = spec.families[family]
    config_class = get_family(family).config_class
    base = config_class.for_preset(fam.preset, particle, device)
    base = config_class.from_dict(fam.config, base, where=f"families.{family}.config of {where}")
    return config_class.from_dict(params or {}, base, where=f"families.{family}.search of {where}")
