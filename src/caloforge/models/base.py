"""The model-family interface: a typed config base and an abstract ``nn.Module``.

Every family (one file in :mod:`caloforge.models`) provides a :class:`FamilyConfig`
subclass and a :class:`GenerativeModel` subclass built as ``Family(config, preprocessing)``.
The base class handles the conditioning (log-scaled incident energy in [0, 1] plus
standardised extra conditions) and the fitted preprocessing; a family implements
:meth:`GenerativeModel.loss` and :meth:`GenerativeModel.sample_features`. The training step is
written once (:meth:`GenerativeModel.train_step`); a family changes it through its hooks
(``prepare``, ``loss_terms``, ``clip_gradients``, ``after_step``), or replaces it when it has
several players (the GAN's critic steps) or no gradients (the parametric baseline).
Trainable families' configs derive from :class:`TrainableConfig`: a learning-rate schedule over the
run's budget (applied by :mod:`caloforge.training.schedule`) and a moving average of the weights
(:mod:`caloforge.models.averaging`) that sampling uses when ``ema_decay > 0``.

Modules never pick a device: the caller moves them and passes tensors on that device.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self, get_args

import torch
from pydantic import Field
from torch import Tensor, nn

from caloforge.config import Config
from caloforge.errors import CaloforgeError, ConfigError
from caloforge.models.averaging import MovingAverage
from caloforge.models.preprocess import Preprocessing, TransformKind
from caloforge.runtime import resources

if TYPE_CHECKING:
    from caloforge.data.geometry import Geometry

__all__ = ["LR_SCHEDULES", "MAX_RUN_BYTES", "PARTICLES", "Batch", "FamilyConfig", "GenerativeModel", "LRSchedule",
           "Preset", "TrainableConfig", "check_model_size", "check_particle", "run_bytes"]

Preset = Literal["auto", "cpu", "paper"]
LRSchedule = Literal["constant", "cosine"]
LR_SCHEDULES: tuple[str, ...] = get_args(LRSchedule)
"""The learning-rate schedules of :class:`TrainableConfig` (see :mod:`caloforge.training.schedule`)."""

MAX_RUN_BYTES = 1_000_000_000
"""The most a training run may write for one model (two checkpoints and a bundle): a toy run never writes a gigabyte."""

PARTICLES: tuple[str | None, ...] = (None, "photon", "electron", "gamma", "pion")
"""The particle names the families' presets know (None: the photon defaults; gamma: a photon)."""


def check_particle(particle: str | None, where: str) -> None:
    """Refuse a particle name no family preset knows, in one line naming ``where``.

    Raises:
        ConfigError: for a name outside :data:`PARTICLES`.
    """
    if particle not in PARTICLES:
        msg = f"expected a particle in {list(PARTICLES[1:])} but got '{particle}', in {where}"
        raise ConfigError(msg)


class FamilyConfig(Config):
    """Base of every family's config: typed, validated, exact JSON round trip (see :class:`caloforge.config.Config`).

    Args:
        preprocessing: The shower transform, ``"energy"`` (voxels / E_inc, CaloShowerGAN),
            ``"layer"`` (layer energy fractions plus normalised voxels per layer) or ``"total"``.
        energy_scale: Fixed scale of the ``"energy"`` transform (> 0); None fits it on the training data.
        batch_size: Showers per optimisation step.
    """

    preprocessing: TransformKind = "energy"
    energy_scale: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=2**24)] = 1024  # bounds here and in the families: typos

    @classmethod
    def for_particle(cls, particle: str | None) -> Self:
        """Defaults for a particle type; the base class has one set of defaults for all."""
        return cls()

    @classmethod
    def for_cpu(cls, particle: str | None) -> Self:
        """Defaults for a CPU budget of minutes to hours; families override it where the paper's differ."""
        return cls.for_particle(particle)

    def for_geometry(self, geometry: Geometry) -> Self:
        """This config with its geometry-dependent settings filled in (e.g. layer shapes left empty).

        ``train`` calls it with the training data's geometry; the base class has no such settings.
        """
        return self

    @classmethod
    def for_preset(cls, preset: Preset, particle: str | None, device: str = "cpu") -> Self:
        """The defaults a user asks for with ``--preset``.

        ``paper``: the published settings (:meth:`for_particle`); ``cpu``: what learns in CPU minutes
        (:meth:`for_cpu`); ``auto``: ``cpu`` on a CPU, ``paper`` on a GPU.

        Raises:
            ConfigError: for another preset name.
        """
        if preset not in get_args(Preset):
            msg = f"expected a preset in {list(get_args(Preset))} but got {preset!r}"
            raise ConfigError(msg)
        if preset == "auto":
            preset = "cpu" if str(device).startswith("cpu") else "paper"
        return cls.for_cpu(particle) if preset == "cpu" else cls.for_particle(particle)


class TrainableConfig(FamilyConfig):
    """Base of the configs of families trained by gradient descent: the learning-rate schedule and weight averaging.

    The schedule multiplies each optimiser's learning rate by a factor of the fraction of the run's
    budget used (:func:`caloforge.training.schedule.lr_factor`): a linear warm-up over
    ``warmup_fraction``, then constant (``"constant"``) or a half cosine down to ``min_lr_ratio``
    (``"cosine"``; with a long warm-up, e.g. 0.3, this is the one-cycle policy's shape).

    Args:
        lr_schedule: ``"constant"`` (the default: the learning rate never changes without a warm-up) or ``"cosine"``.
        warmup_fraction: Fraction of the budget over which the learning rate rises linearly to its value, in [0, 1).
        min_lr_ratio: The cosine's final learning rate over the initial one, in [0, 1].
        ema_decay: Decay of the moving average of the weights that generation uses (0: the raw weights), in [0, 1).
    """

    lr_schedule: LRSchedule = "constant"
    warmup_fraction: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.0
    min_lr_ratio: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.01
    ema_decay: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.0

    @property
    def schedules_lr(self) -> bool:
        """Whether the learning rate changes during training (the schedule is not a constant without warm-up)."""
        return self.lr_schedule != "constant" or self.warmup_fraction > 0


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
    averages_in_sampling: ClassVar[bool] = False  # True: sample_from_noise evaluates ``ema`` itself (diffusion)
    sample_block_rows: ClassVar[int | None] = None  # CPU sampling in blocks of this many rows (:meth:`_sample_blocks`)
    ema: MovingAverage | None

    def __init__(self, config: FamilyConfig, preprocessing: Preprocessing) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            msg = f"expected a {self.config_class.__name__} but got {type(config).__name__}, in {type(self).__name__}"
            raise ConfigError(msg)
        self.config = config
        self.preprocessing = preprocessing
        self.ema = None
        self._averaged_name = ""

    def keep_average(self, network: nn.Module) -> None:
        """Keep a moving average of ``network`` (a submodule, or the model) when the config's ``ema_decay`` > 0.

        Families call it at the end of their constructor, once the networks exist.
        """
        if getattr(self.config, "ema_decay", 0.0) <= 0:
            self.ema = None
            return
        self._averaged_name = next(name for name, module in self.named_modules() if module is network)
        self.ema = MovingAverage(network)

    def averaged_weights(self) -> contextlib.AbstractContextManager[None]:
        """A context in which the averaged network holds the moving average (nothing without one)."""
        if self.ema is None or self.averages_in_sampling:
            return contextlib.nullcontext()
        return self.ema.swapped(self.get_submodule(self._averaged_name))

    def averaged_copy(self) -> Self:
        """A copy whose parameters are the moving average (itself without one): for tracing and export."""
        if self.ema is None or self.averages_in_sampling:
            return self
        other = copy.deepcopy(self)
        with torch.no_grad():
            for name, p in other.get_submodule(self._averaged_name).named_parameters():
                p.copy_(self.ema.averaged()[name])
        return other

    @property
    def n_features(self) -> int:
        """Width of the network-space shower vector."""
        return self.preprocessing.n_features

    @property
    def n_voxels(self) -> int:
        """Voxels of a generated shower."""
        return sum(self.preprocessing.showers.layer_sizes)

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

    def noise_size(self) -> int | None:
        """Standard-normal numbers one shower's sampling draws when sampling is a fixed function of them.

        Such families implement :meth:`sample_from_noise`, and :meth:`sample_features` draws
        ``torch.randn(N, noise_size)`` and calls it: their sampler exports as one graph
        (:mod:`caloforge.deploy.export`). None (the default) means sampling is not such a function
        (e.g. gamma-distributed fluctuations, or an adaptive solver), so the family does not export.
        """
        return None

    def sample_from_noise(self, conditions: Tensor, noise: Tensor) -> Tensor:
        """Network-space showers (N, n_features) from conditions and standard-normal ``noise`` (N, noise_size).

        Raises:
            ConfigError: for a family whose sampling is not a fixed function of its noise.
        """
        msg = f"expected a family whose sampling is a fixed function of its noise but {type(self).__name__} is not"
        raise ConfigError(msg)

    def sample(
        self,
        energies: Tensor,
        conditions: dict[str, Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Generate showers in MeV, shape (N, V), for incident energies (N,) in MeV.

        Runs in evaluation mode without gradients, with the moving average of the weights when the
        model keeps one, on the device of ``energies``; the same ``generator`` state gives the same
        showers. The output is finite and non-negative.
        """
        was_training = self.training
        if was_training:  # eval() and train() walk every submodule: only when the mode changes
            self.eval()
        try:
            with self.averaged_weights(), torch.inference_mode():
                block, size = self.sample_block_rows, self.noise_size()
                if block is not None and size is not None and energies.device.type == "cpu" and len(energies) > block:
                    return self._sample_blocks(energies, conditions or {}, generator, size, block)
                c = self.preprocessing.condition(energies.to(self._dtype()), conditions)
                x = self.sample_features(c, generator)
                return self.preprocessing.showers.inverse(x, energies.to(x))
        finally:
            if was_training:
                self.train()

    def _sample_blocks(self, energies: Tensor, conditions: dict[str, Tensor], generator: torch.Generator | None,
                       size: int, block: int) -> Tensor:
        """:meth:`sample` in ``block``-row blocks, each in cache; the noise drawn whole, as :meth:`sample_features`."""
        dtype, n = self._dtype(), len(energies)  # GAN, batch 10000: network 7.5, not 10.4 us (docs/performance.md)
        noise = torch.randn(n, size, generator=generator, device=energies.device, dtype=dtype)
        out = torch.empty(n, self.n_voxels, dtype=dtype, device=energies.device)
        for rows in (slice(first, first + block) for first in range(0, n, block)):
            e = energies[rows].to(dtype)
            c = self.preprocessing.condition(e, {name: value[rows] for name, value in conditions.items()})
            out[rows] = self.preprocessing.showers.inverse(self.sample_from_noise(c, noise[rows]), e)
        return out

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
        """One training iteration, the same for every family with one optimiser; returns named loss values.

        The steps, each a hook a family overrides for what differs: :meth:`prepare` (fit what is fitted
        once from data), :meth:`loss_terms` on a new batch (``"loss"`` is minimised, the others logged),
        back-propagation, :meth:`clip_gradients` (whether to take the step), the optimiser's step, then
        :meth:`after_step` (e.g. a moving average of the weights). Families with several players or no
        gradients (the GAN, the parametric baseline) override the whole step.

        Args:
            next_batch: Draws a new training batch on the model's device.
            optimizers: The optimisers of :meth:`configure_optimizers` (possibly wrapped by Lightning).
            backward: Back-propagates a loss (Lightning's ``manual_backward``).
            generator: Random numbers for noise.
        """
        self.prepare(next_batch, generator)
        (optimizer,) = optimizers
        optimizer.zero_grad()
        terms = self.loss_terms(next_batch(), generator)
        backward(terms["loss"])
        logged = {name: float(value.detach()) for name, value in terms.items()}
        if self.clip_gradients(logged):
            optimizer.step()
        else:
            optimizer.zero_grad()
        self.after_step()
        return logged

    def prepare(self, next_batch: Callable[[], Batch], generator: torch.Generator | None = None) -> None:
        """Hook before each training step: fit, once, what is fitted from training batches (none by default)."""

    def loss_terms(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Hook: the named loss terms of one batch; ``"loss"`` is minimised (default: :meth:`loss` alone)."""
        return {"loss": self.loss(batch, generator)}

    def clip_gradients(self, logged: dict[str, float]) -> bool:
        """Hook after back-propagation: clip the gradients (adding what to log to ``logged``); whether to step."""
        return True

    def after_step(self) -> None:
        """Hook after the optimiser's step: the moving average of the weights follows it (when kept)."""
        if self.ema is not None:
            self.ema.update(self.get_submodule(self._averaged_name), float(getattr(self.config, "ema_decay", 0.0)))

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}, n_conditions={self.n_conditions}"


def check_model_size(
    family: type[GenerativeModel],
    config: FamilyConfig,
    preprocessing: Preprocessing,
    training: bool = True,
    error: type[CaloforgeError] = ConfigError,
    max_run_bytes: int | None = MAX_RUN_BYTES,
) -> int:
    """Refuse a model too large for the available memory or for the disk of a run, before allocating it.

    The model is built on PyTorch's ``meta`` device, which allocates nothing, to count its
    parameters and buffers. Training needs about 16 bytes per parameter (float32 weights,
    gradients and Adam's two moments), loading 8 (the weights file's tensors and the model).

    Args:
        family: The model class, e.g. ``get_family("gan")``.
        config: Its config.
        preprocessing: The fitted preprocessing (sets the input and output widths).
        training: Whether the model is about to be trained (else loaded for generation).
        error: The error to raise: ConfigError when training, CheckpointError when loading a bundle.
        max_run_bytes: When training, refuse a model whose run would write more (:func:`run_bytes`):
            e.g. the coupling flow, whose conditioners grow as voxels x width x spline bins, on
            dataset 2 (2.3 GB) or 3. None: no limit.

    Returns:
        The number of parameters.

    Raises:
        CaloforgeError: of type ``error``, naming the parameter count, the memory needed and available, or
            the bytes the run would write and the families to use instead.
    """
    with torch.device("meta"):
        model = family(config, preprocessing)
    n_params = sum(p.numel() for p in model.parameters())
    n_buffers = sum(b.numel() for b in model.buffers())
    if training and max_run_bytes is not None:
        written = run_bytes(n_params, n_buffers)
        if written > max_run_bytes:
            name = family.__name__.lower()
            msg = (f"expected a model whose checkpoints and bundle stay under {max_run_bytes / 1e9:.1f} GB but "
                   f"{name} with {n_params:,} parameters on {model.n_voxels} voxels writes ~{written / 1e9:.1f} GB "
                   f"per run (two checkpoints with Adam's moments and a bundle); use the family 'latent' or "
                   f"'diffusion' with network='unet' for high granularity, or reduce its layer sizes")
            raise error(msg)
    nbytes = 4 * (n_params * (4 if training else 2) + n_buffers * (1 if training else 2))
    what = f"a {family.__name__} with {n_params:,} parameters ({'training' if training else 'loading'})"
    resources.check_memory(nbytes, what, "reduce the layer sizes in its config", error)
    return n_params


def run_bytes(n_params: int, n_buffers: int) -> int:
    """Bytes a training run writes for a model of float32 ``n_params`` parameters and ``n_buffers`` buffer numbers.

    Each Lightning checkpoint holds the weights, the buffers and Adam's two moments (3 x the
    weights); a run keeps two (``best.ckpt``, ``last.ckpt``) and exports one bundle (weights and
    buffers): ``4 (7 n_params + 3 n_buffers)`` bytes.

    Example:
        >>> run_bytes(80_640_000, 250_000) / 1e9  # the CPU flow preset on dataset 2
        2.26092
    """
    return 4 * (7 * n_params + 3 * n_buffers)
