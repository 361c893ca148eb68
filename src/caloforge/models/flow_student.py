"""A one-pass student of the coupling flow: the teacher's noise-to-shower map learned by one network.

The flow (:mod:`caloforge.models.flow`) samples by running the inverse of every coupling block
in turn: flow I's blocks, then flow II's, each a wide conditioner and a spline. The student
learns the same map, base noise ``z`` and conditions ``c`` to the teacher's standardised
features ``x = T(z | c)``, with one residual network

    ``x = z + MLP([z, c])``

whose last layer starts at zero (the student starts as the identity map), and keeps the
teacher's exact post-processing: its standardisation (copied), its readout threshold, logit
squeeze and the reconstruction of layer energies and pattern
(:func:`caloforge.models.flow.features_to_network`), so every sample is a valid shower.

Training is distillation, CaloFlow's teacher-student idea with the simplest loss that reached
the fidelity target by measurement (docs/performance.md, "One-pass flow student"): the mean
squared error between student and teacher features on pairs ``(z, T(z | c))`` drawn from the
teacher (:mod:`caloforge.training.distill` keeps a pool of such pairs and refreshes it as it
trains). CaloFlow's student is an inverse-autoregressive flow that also matches each block's
intermediate latent; a plain MLP needs neither the structure nor the extra terms here.

Sampling draws ``z`` exactly as the teacher does (``torch.randn(N, noise_size)`` from the
caller's generator), so for the same seed student and teacher see the same noise; it is one
call of the network per batch, and it exports to ONNX as one graph.

The student cannot be trained from showers alone: :meth:`FlowStudent.loss` needs a teacher
(:meth:`FlowStudent.attach_teacher`); the teacher is held outside the module tree, so it is
neither saved in the student's bundle nor trained.

References:
    C. Krause, D. Shih, Accelerating accurate simulations of calorimeter showers with normalizing flows
        and probability density distillation (CaloFlow teacher-student), arXiv:2110.11377.
    A. van den Oord et al., Parallel WaveNet: fast high-fidelity speech synthesis (probability density
        distillation), arXiv:1711.10433.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from caloforge.data.datasets import readout_threshold_mev
from caloforge.errors import ConfigError
from caloforge.models.base import Batch, GenerativeModel, LRSchedule, TrainableConfig
from caloforge.models.flow import Z_CLAMP, Flow, FlowConfig, features_to_network
from caloforge.models.flow_transforms import ShowerFeatures, Standardiser
from caloforge.models.preprocess import Preprocessing

__all__ = ["FlowStudent", "FlowStudentConfig", "StudentNetwork"]

Width = Annotated[int, Field(ge=1, le=2**20)]


class FlowStudentConfig(TrainableConfig):
    """Hyperparameters of :class:`FlowStudent`; :meth:`from_teacher` copies the teacher's feature settings.

    Args:
        threshold, noise, alpha, knots: The teacher's (:class:`~caloforge.models.flow.FlowConfig`): its readout
            threshold (MeV; None: 1 MeV), dequantisation noise, logit squeeze and standardisation knots.
        hidden: Hidden widths of the residual MLP.
        basis: Curves of each noise coordinate whose weights the MLP gives (:class:`StudentNetwork`; 0: none).
        pool: Teacher pairs ``(z, T(z | c))`` kept for training (:mod:`caloforge.training.distill`).
        refresh: Pool pairs replaced by new teacher pairs before each step (0: a fixed pool).
        validation: Teacher pairs held out to choose the best weights.
        lr: Adam learning rate (with ``lr_schedule``, default cosine over the budget).
        grad_clip: Largest gradient norm.
        batch_size: Pairs per step.

    Example:
        >>> c = FlowStudentConfig.from_teacher(FlowConfig.for_cpu("photon"))
        >>> c.knots, c.hidden
        (15, (1024, 1024, 1024))
    """

    threshold: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    noise: Annotated[float, Field(gt=0, le=1)] = 1.0
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 1e-6
    knots: Annotated[int, Field(ge=1, le=10_000)] = 15
    hidden: tuple[Width, ...] = (1024, 1024, 1024)
    basis: Annotated[int, Field(ge=0, le=64)] = 4
    pool: Annotated[int, Field(ge=1, le=2**24)] = 20_000
    refresh: Annotated[int, Field(ge=0, le=2**20)] = 64
    validation: Annotated[int, Field(ge=1, le=2**20)] = 2_000
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1e-3
    lr_schedule: LRSchedule = "cosine"
    grad_clip: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 10.0
    batch_size: Annotated[int, Field(ge=1, le=2**24)] = 512

    @classmethod
    def from_teacher(cls, teacher: FlowConfig, **changes: Any) -> FlowStudentConfig:
        """The student config of a flow teacher: its feature settings, this class's network defaults, ``changes``."""
        return cls(preprocessing=teacher.preprocessing, energy_scale=teacher.energy_scale, threshold=teacher.threshold,
                   noise=teacher.noise, alpha=teacher.alpha, knots=teacher.knots).replace(**changes)


class StudentNetwork(nn.Module):
    """``x_i = z_i + u_i + sum_k w_ik tanh(z_i - t_k)``, ``(u, w) = MLP([z, c])``; the MLP's last layer starts at zero.

    A coupling flow bends every feature through its own monotonic spline of ``z_i``; an MLP alone
    must spend hidden units on each of these one-dimensional curves. Here the MLP gives, for every
    feature, a shift and the weights of ``basis`` fixed curves of ``z_i`` (knots ``t_k`` evenly in
    [-2, 2]), so the curves cost one product per knot. ``basis = 0``: ``x = z + MLP([z, c])``.

    Args:
        features: Width of ``z`` and ``x``.
        context: Width of the conditions ``c``.
        hidden: Hidden widths (SiLU activations).
        basis: Curves of ``z_i`` per feature.
    """

    knots: Tensor

    def __init__(self, features: int, context: int, hidden: Sequence[int], basis: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = features + context
        for h in hidden:
            layers += [nn.Linear(width, h), nn.SiLU()]
            width = h
        self.features, self.basis = features, basis
        last = nn.Linear(width, features * (1 + basis))
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(*layers, last)
        self.register_buffer("knots", torch.linspace(-2.0, 2.0, basis) if basis > 1 else torch.zeros(basis),
                             persistent=False)

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        """Standardised features (N, features) from noise ``z`` (N, features) and conditions ``c`` (N, context)."""
        out: Tensor = self.mlp(torch.cat([z, c], dim=1))
        if not self.basis:
            return z + out
        shift, weights = out[:, : self.features], out[:, self.features :].reshape(-1, self.features, self.basis)
        curves = torch.tanh(z.unsqueeze(2) - self.knots)
        result: Tensor = z + shift + (weights * curves).sum(dim=2)
        return result


class FlowStudent(GenerativeModel):
    """One-pass student of a :class:`~caloforge.models.flow.Flow`, see the module docstring.

    Args:
        config: The hyperparameters (:meth:`FlowStudentConfig.from_teacher`).
        preprocessing: The teacher's fitted preprocessing.
    """

    config_class = FlowStudentConfig
    loss_names: ClassVar[tuple[str, ...]] = ("loss", "grad_norm")
    # CPU sampling in 1024-row blocks: at batch 10000 on one thread 10-20 % less CPU, the same showers
    # (docs/performance.md, "One-pass flow student")
    sample_block_rows: ClassVar[int | None] = 1024
    config: FlowStudentConfig

    def __init__(self, config: FlowStudentConfig, preprocessing: Preprocessing) -> None:
        super().__init__(config, preprocessing)
        threshold = readout_threshold_mev(None) if config.threshold is None else config.threshold
        self.shower_features = ShowerFeatures(preprocessing.showers.layer_sizes, threshold, config.noise, config.alpha)
        self.width = self.shower_features.n_layers + self.shower_features.n_pattern
        self.standardise = Standardiser(self.width, config.knots)
        self.network = StudentNetwork(self.width, self.n_conditions, config.hidden, config.basis)
        self._teacher: list[Flow] = []  # a list keeps the teacher outside the module tree: not saved, not trained
        self.keep_average(self.network)

    # ----------------------------------------------------------------- teacher
    @property
    def teacher(self) -> Flow | None:
        """The attached teacher, None for a loaded student."""
        return self._teacher[0] if self._teacher else None

    def attach_teacher(self, teacher: Flow) -> None:
        """Distil from ``teacher``: check that its features match, copy its standardisation, keep it (not as a module).

        Raises:
            ConfigError: for a teacher that is not a flow, or whose features, conditions or standardisation differ.
        """
        if not isinstance(teacher, Flow):
            msg = f"expected a flow as the teacher but got {type(teacher).__name__}, in FlowStudent.attach_teacher"
            raise ConfigError(msg)
        ours, theirs = (self.width, self.n_conditions, self.shower_features, self.config.knots), (
            teacher.noise_size(), teacher.n_conditions, teacher.shower_features, teacher.config.knots)
        if ours != theirs:
            msg = (f"expected a teacher with (features, conditions, feature transform, knots) {ours} but got {theirs}, "
                   f"in FlowStudent.attach_teacher")
            raise ConfigError(msg)
        with torch.no_grad():
            self.standardise.load_state_dict(teacher.standardise.state_dict())
        self._teacher = [teacher]

    def teacher_features(self, conditions: Tensor, noise: Tensor) -> Tensor:
        """The teacher's standardised features for ``noise`` (N, noise_size) and ``conditions``, without gradients.

        Raises:
            ConfigError: without a teacher.
        """
        teacher = self.teacher
        if teacher is None:
            msg = ("expected a flow teacher (attach_teacher) but got none, in FlowStudent.teacher_features: a "
                   "one-pass student is trained by distillation, `caloforge distill --teacher RUN/bundle`, not from "
                   "showers alone")
            raise ConfigError(msg)
        with torch.no_grad(), teacher.averaged_weights():
            return teacher.standardised_from_noise(conditions, noise)

    # --------------------------------------------------------------- interface
    def standardised_from_noise(self, conditions: Tensor, noise: Tensor) -> Tensor:
        """The student's standardised features (N, noise_size): one call of the network."""
        c = conditions.to(self.standardise.mean)
        out: Tensor = self.network(noise.to(c), c).clamp(-Z_CLAMP, Z_CLAMP)  # as the teacher
        return out

    def distillation_loss(self, conditions: Tensor, noise: Tensor, target: Tensor) -> Tensor:
        """Mean squared error between the student's and the teacher's (``target``) standardised features."""
        c = conditions.to(self.standardise.mean)
        out: Tensor = (self.network(noise.to(c), c) - target.to(c)).square().mean()
        return out

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """Distillation on fresh teacher pairs at the batch's energies and conditions (the showers are unused)."""
        c = self.preprocessing.condition(batch.energies.to(self.standardise.mean), batch.conditions)
        noise = torch.randn(c.shape[0], self.width, generator=generator, device=c.device, dtype=c.dtype)
        return self.distillation_loss(c, noise, self.teacher_features(c, noise))

    def noise_size(self) -> int:
        """The teacher's base dimension: the student maps the same noise."""
        return self.width

    def sample_from_noise(self, conditions: Tensor, noise: Tensor) -> Tensor:
        """Network-space showers from conditions and standard-normal noise (N, :meth:`noise_size`)."""
        z = self.standardised_from_noise(conditions, noise)
        return features_to_network(z, conditions, self.standardise, self.shower_features, self.preprocessing)

    def sample_features(self, conditions: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Network-space showers (N, n_features) for conditioning vectors (N, n_conditions), as the teacher draws."""
        noise = torch.randn(conditions.shape[0], self.width, generator=generator, device=conditions.device,
                            dtype=self.standardise.mean.dtype)
        return self.sample_from_noise(conditions, noise)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """One Adam over the network."""
        return [torch.optim.Adam(self.network.parameters(), lr=self.config.lr)]

    def clip_gradients(self, logged: dict[str, float]) -> bool:
        """The gradient norm clipped at ``grad_clip`` (logged); a non-finite gradient skips the step."""
        norm = nn.utils.clip_grad_norm_(self.network.parameters(), self.config.grad_clip)
        logged["grad_norm"] = float(norm)
        return bool(torch.isfinite(norm))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, hidden={self.config.hidden}"
