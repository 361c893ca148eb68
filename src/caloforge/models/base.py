"""The model-family interface: a typed config base and an abstract ``nn.Module``.

Every family (one file in :mod:`caloforge.models`) provides a :class:`FamilyConfig`
subclass and a :class:`GenerativeModel` subclass built as ``Family(config, preprocessing)``.
The base class handles the conditioning (log-scaled incident energy in [0, 1] plus
standardised extra conditions) and the fitted preprocessing; a family implements
:meth:`GenerativeModel.loss` and :meth:`GenerativeModel.sample_features`, and may override
:meth:`GenerativeModel.train_step` (e.g. several critic steps per generator step).

Modules never pick a device: the caller moves them and passes tensors on that device.
"""

from __future__ import annotations

import dataclasses
import math
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import torch
from torch import Tensor, nn

from caloforge.errors import ConfigError
from caloforge.models.preprocess import Preprocessing, TransformKind

__all__ = ["Batch", "FamilyConfig", "GenerativeModel"]

C = TypeVar("C", bound="FamilyConfig")


def _coerce(name: str, hint: Any, value: Any, where: str) -> Any:
    """Check ``value`` against a simple type hint (Literal, int, float, bool, str, tuple, Sequence, Optional)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        if value not in args:
            msg = f"expected {name} in {list(args)} but got {value!r}, in {where}"
            raise ConfigError(msg)
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(name, inner[0], value, where)
    if origin in (tuple, Sequence):
        if not isinstance(value, list | tuple):
            msg = f"expected {name} to be a list but got {value!r}, in {where}"
            raise ConfigError(msg)
        if origin is Sequence or (len(args) == 2 and args[1] is Ellipsis):
            return tuple(_coerce(name, args[0], v, where) for v in value)
        if len(args) != len(value):
            msg = f"expected {name} to have {len(args)} entries but got {value!r}, in {where}"
            raise ConfigError(msg)
        return tuple(_coerce(name, a, v, where) for a, v in zip(args, value, strict=True))
    if hint is bool:
        if not isinstance(value, bool):
            msg = f"expected {name} to be true or false but got {value!r}, in {where}"
            raise ConfigError(msg)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            msg = f"expected {name} to be an integer but got {value!r}, in {where}"
            raise ConfigError(msg)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            msg = f"expected {name} to be a number but got {value!r}, in {where}"
            raise ConfigError(msg)
        return float(value)
    if hint is str and not isinstance(value, str):
        msg = f"expected {name} to be a string but got {value!r}, in {where}"
        raise ConfigError(msg)
    return value


@dataclass(frozen=True)
class FamilyConfig:
    """Base of every family's config: typed fields, validated, exact JSON round trip.

    Args:
        preprocessing: The shower transform, ``"energy"`` (voxels / E_inc, CaloShowerGAN) or
            ``"layer"`` (layer energy fractions plus normalised voxels per layer).
        energy_scale: Fixed scale of the ``"energy"`` transform (> 0); None fits it on the training data.
        batch_size: Showers per optimisation step.
    """

    preprocessing: TransformKind = "energy"
    energy_scale: float | None = None
    batch_size: int = 1024

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _coerce(f.name, hints[f.name], getattr(self, f.name), type(self).__name__)
            object.__setattr__(self, f.name, value)
        if self.batch_size < 1:
            msg = f"expected batch_size >= 1 but got {self.batch_size}, in {type(self).__name__}"
            raise ConfigError(msg)
        if self.energy_scale is not None and not 0 < self.energy_scale < math.inf:
            msg = f"expected energy_scale None or > 0 but got {self.energy_scale}, in {type(self).__name__}"
            raise ConfigError(msg)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); :meth:`from_dict` inverts it exactly."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], base: C | None = None) -> C:
        """Build a config from ``data``; keys not given keep ``base``'s values (or the defaults).

        Raises:
            ConfigError: on unknown keys or values of the wrong type or choice.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = f"expected keys of {cls.__name__} in {sorted(known)} but got unknown {unknown}"
            raise ConfigError(msg)
        start = base if base is not None else cls()
        return dataclasses.replace(start, **data)

    @classmethod
    def for_particle(cls: type[C], particle: str | None) -> C:
        """Defaults for a particle type; the base class has one set of defaults for all."""
        return cls()

    @classmethod
    def for_cpu(cls: type[C], particle: str | None) -> C:
        """Defaults for a CPU budget of minutes to hours; families override it where the paper's differ."""
        return cls.for_particle(particle)


@dataclass(frozen=True)
class Batch:
    """A batch of showers in physical units, all tensors on one device.

    Attributes:
        energies: Incident energies, MeV, shape (N,).
        showers: Voxel energies, MeV, shape (N, V).
        conditions: Extra conditions by name, each of shape (N,).
    """

    energies: Tensor
    showers: Tensor
    conditions: dict[str, Tensor] = dataclasses.field(default_factory=dict)


class GenerativeModel(nn.Module, ABC):
    """Base of every model family: conditioning, preprocessing and the training/sampling interface.

    Args:
        config: The family's config.
        preprocessing: The transforms fitted on the training data.
    """

    config_class: ClassVar[type[FamilyConfig]] = FamilyConfig
    loss_names: ClassVar[tuple[str, ...]] = ("loss",)  # the keys of train_step's result, logged per checkpoint

    def __init__(self, config: FamilyConfig, preprocessing: Preprocessing) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            msg = f"expected a {self.config_class.__name__} but got {type(config).__name__}, in {type(self).__name__}"
            raise ConfigError(msg)
        self.config = config
        self.preprocessing = preprocessing

    @property
    def n_features(self) -> int:
        """Width of the network-space shower vector."""
        return self.preprocessing.n_features

    @property
    def n_conditions(self) -> int:
        """Width of the conditioning vector (E_hat plus extra conditions)."""
        return self.preprocessing.n_conditions

    def encode(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Physical batch -> (network-space showers (N, n_features), conditions (N, n_conditions))."""
        x = self.preprocessing.showers.forward(batch.showers, batch.energies)
        return x, self.preprocessing.condition(batch.energies.to(x), batch.conditions)

    @abstractmethod
    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """The family's training objective on one batch, a scalar.

        Adversarial families return the sum of their players' losses, so that one backward
        pass reaches every parameter; their :meth:`train_step` optimises the players apart.
        """

    @abstractmethod
    def sample_features(self, conditions: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw network-space showers (N, n_features) for conditioning vectors (N, n_conditions)."""

    def sample(
        self,
        energies: Tensor,
        conditions: dict[str, Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Generate showers in MeV, shape (N, V), for incident energies (N,) in MeV.

        Runs in evaluation mode without gradients, on the device of ``energies``; the same
        ``generator`` state gives the same showers. The output is finite and non-negative.
        """
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                c = self.preprocessing.condition(energies.to(self._dtype()), conditions)
                x = self.sample_features(c, generator)
                return self.preprocessing.showers.inverse(x, energies.to(x))
        finally:
            self.train(was_training)

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimisers used by :meth:`train_step`; one Adam by default."""
        return [torch.optim.Adam(self.parameters(), lr=1e-4)]

    def train_step(
        self,
        next_batch: Callable[[], Batch],
        optimizers: Sequence[Any],
        backward: Callable[[Tensor], None],
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        """One training iteration; returns named loss values for logging.

        Args:
            next_batch: Draws a new training batch on the model's device.
            optimizers: The optimisers of :meth:`configure_optimizers` (possibly wrapped by Lightning).
            backward: Back-propagates a loss (Lightning's ``manual_backward``).
            generator: Random numbers for noise.
        """
        (optimizer,) = optimizers
        optimizer.zero_grad()
        loss = self.loss(next_batch(), generator)
        backward(loss)
        optimizer.step()
        return {"loss": float(loss.detach())}

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}, n_conditions={self.n_conditions}"
