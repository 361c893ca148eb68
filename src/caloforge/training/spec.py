"""What a training run is asked to do, typed once where the user's intent is read and passed on unchanged.

A :class:`RunSpec` holds the family (its registered name and class, looked up once), the family's
typed config, the :class:`~caloforge.training.settings.TrainingSettings` and the :class:`Runtime`
(device, Lightning's devices and strategy, progress, callbacks). The CLI (``caloforge train``), the
campaign trial and the Python API (:func:`caloforge.training.train`) build one; :func:`run_training
<caloforge.training.loop.run_training>` and :func:`~caloforge.training.fit.fit_range` read it.

Example:
    >>> from caloforge.models import GANConfig
    >>> spec = RunSpec.of(GANConfig(), TrainingSettings(max_iterations=10))
    >>> spec.family, spec.family_class.__name__, spec.settings.checkpoint_every
    ('gan', 'GAN', 100)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass, field, replace
from typing import Any

from caloforge.errors import ConfigError
from caloforge.models import FAMILIES, get_family
from caloforge.models.base import FamilyConfig, GenerativeModel, Preset
from caloforge.runtime.progress import SILENT, Progress
from caloforge.training.settings import RunRecord, TrainingSettings, default_selection

__all__ = ["RunSpec", "Runtime"]


@dataclass(frozen=True)
class Runtime:
    """Where and how a run executes; none of it changes the numbers a run trains to on one device.

    Attributes:
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (resolved: never ``"auto"``).
        devices: Passed to ``lightning.Trainer(devices=...)``.
        strategy: Passed to ``lightning.Trainer(strategy=...)``.
        num_nodes: Passed to ``lightning.Trainer(num_nodes=...)``.
        progress: Where progress is reported.
        callbacks: Extra Lightning callbacks.
        tensorboard: Also log to TensorBoard.
    """

    device: str = "cpu"
    devices: int | str | list[int] = 1
    strategy: str = "auto"
    num_nodes: int = 1
    progress: Progress = SILENT
    callbacks: tuple[Any, ...] = ()
    tensorboard: bool = False


@dataclass(frozen=True)
class RunSpec:
    """A training run's family, config, settings and runtime.

    Attributes:
        family: The registered family name.
        config: The family's config (an instance of its ``config_class``).
        settings: The training settings.
        runtime: Where and how it runs.
        family_class: The model class registered as ``family`` (looked up once, here, unless the caller
            that just looked it up passes it as ``registered``).

    Raises:
        ConfigError: an unknown family, or a config of another family.
    """

    family: str
    config: FamilyConfig
    settings: TrainingSettings
    runtime: Runtime = field(default_factory=Runtime)
    registered: InitVar[type[GenerativeModel] | None] = None
    family_class: type[GenerativeModel] = field(init=False, repr=False, compare=False)

    def __post_init__(self, registered: type[GenerativeModel] | None) -> None:
        family_class = registered if registered is not None else get_family(self.family)
        if not isinstance(self.config, family_class.config_class):
            msg = (f"expected a {family_class.config_class.__name__} for the family '{self.family}' but got "
                   f"{type(self.config).__name__}")
            raise ConfigError(msg)
        object.__setattr__(self, "family_class", family_class)

    @classmethod
    def of(cls, config: FamilyConfig, settings: TrainingSettings, runtime: Runtime | None = None) -> RunSpec:
        """The spec whose family is the one registered with the config's class.

        Raises:
            ConfigError: when no family, or several, have that config class (then name the family).
        """
        names = [name for name, family in FAMILIES.items() if family.config_class is type(config)]
        if len(names) != 1:
            msg = f"expected one family with the config class {type(config).__name__} but got {names}; name the family"
            raise ConfigError(msg)
        return cls(names[0], config, settings, runtime or Runtime())

    @classmethod
    def from_section(cls, family: str, section: Mapping[str, Any], settings: TrainingSettings, runtime: Runtime, *,
                     preset: Preset, particle: str | None, where: str) -> RunSpec:
        """The spec of a config file's ``model`` section over the family's ``preset`` defaults for ``particle``
        (on the runtime's device: ``auto`` is ``cpu`` there, ``paper`` on a GPU).

        Raises:
            ConfigError: an unknown family, preset or key, or a value of the wrong type (naming ``where``).
        """
        family_class = get_family(family)
        defaults = family_class.config_class.for_preset(preset, particle, runtime.device)
        config = family_class.config_class.from_dict(dict(section), defaults, where=where)
        return cls(family, config, settings, runtime, registered=family_class)

    @classmethod
    def from_arguments(cls, family: str, config: FamilyConfig | None, settings: TrainingSettings,
                       particle: str | None, runtime: Runtime) -> RunSpec:
        """The spec of :func:`caloforge.training.train`'s arguments: a missing config is the family's defaults
        for ``particle``. A selection left open stays open here: a new run takes the family's default, a
        resumed one its own (``_settle`` in :mod:`caloforge.training.loop`)."""
        family_class = get_family(family)
        config = config if config is not None else family_class.config_class.for_particle(particle)
        return cls(family, config, settings, runtime, registered=family_class)

    def with_default_selection(self) -> RunSpec:
        """This spec with the family's default checkpoint selection where the settings leave it open."""
        if self.settings.selection is not None:
            return self
        return replace(self, settings=self.settings.replace(selection=default_selection(self.family)),
                       registered=self.family_class)

    def record(self, data: dict[str, Any], validation_data: dict[str, Any] | None) -> RunRecord:
        """The run's ``run.json`` for training (and validation) data of these fingerprints."""
        return RunRecord(family=self.family, config=self.config.to_dict(), settings=self.settings, data=data,
                         validation_data=validation_data)

    def stored(self, record: RunRecord, where: str) -> RunSpec:
        """The spec of a resumed run: the family and config of its ``run.json``, this spec's settings (settled
        from the stored ones, :func:`~caloforge.training.loop.run_training`) and runtime."""
        config = get_family(record.family).config_class.from_dict(record.config, where=where)
        return RunSpec(record.family, config, self.settings, self.runtime)

    def with_callbacks(self, callbacks: Sequence[Any]) -> RunSpec:
        """This spec with extra Lightning callbacks."""
        return replace(self, runtime=replace(self.runtime, callbacks=(*self.runtime.callbacks, *callbacks)),
                       registered=self.family_class)
