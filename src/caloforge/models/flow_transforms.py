"""The flow family's own invertible shower transforms (CaloFlow / CaloINN preprocessing).

A shower in MeV is turned into two feature vectors that a normalizing flow can model:

* **energies** (one per layer): ``log(E_tot / E_inc)`` followed by the stick-breaking fractions
  ``u_k = E_k / (E_k + ... + E_{L-1})`` for ``k < L - 1`` (``logit_alpha`` of each), where
  ``E_k`` is the layer energy after the readout threshold;
* **pattern** (one per voxel of every layer with more than one voxel): ``logit_alpha`` of the
  voxel energy divided by the layer's sum. A one-voxel layer holds its whole layer energy, so
  it has no pattern feature.

Here ``logit_alpha(p) = logit(alpha + (1 - 2 alpha) p)``. Sparse showers have many empty voxels
and empty layers, point masses a density cannot describe. During training the voxels below the
readout threshold are set to zero, then every empty voxel, and every empty layer's energy, gets
uniform noise in ``[0, noise * threshold)`` (dequantisation). After sampling, a layer energy
below the threshold is zero, and the pattern is scaled so that exactly the voxels above the
threshold hold the layer energy, the others being zero: this removes the noise exactly, so
``showers(pattern_features(v), readout_layers(layer_sums(v)))`` is the shower ``v`` after the
readout, whatever the noise level, and the layer energies are those of the energy features.

All computations run in float64 on the caller's device; nothing here is fitted, except the
:class:`Standardiser` (per-feature mean and spread as functions of the incident energy, set from
the first training batch).

References:
    C. Krause, D. Shih, CaloFlow, arXiv:2106.05285.
    C. Krause, I. Pang, D. Shih, CaloFlow for CaloChallenge Dataset 1, arXiv:2210.14245.
    F. Ernst et al., Normalizing Flows for High-Dimensional Detector Simulations (CaloINN), arXiv:2312.09290.
    D. P. Kingma, P. Dhariwal, Glow (data-dependent initialisation of ActNorm), arXiv:1807.03039.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from caloforge.errors import ConfigError
from caloforge.models.knots import fill_empty_knots

__all__ = ["ShowerFeatures", "Standardiser", "logit_alpha", "logit_alpha_ladj", "sigmoid_alpha"]

_TINY = 1e-300  # guards divisions by exactly empty sums (float64)


def logit_alpha(p: Tensor, alpha: float) -> Tensor:
    """``logit(alpha + (1 - 2 alpha) p)``: [0, 1] -> the real line, finite at 0 and 1."""
    q = alpha + (1 - 2 * alpha) * p
    return torch.log(q) - torch.log1p(-q)


def sigmoid_alpha(x: Tensor, alpha: float) -> Tensor:
    """The inverse of :func:`logit_alpha`, clipped to [0, 1]."""
    return ((torch.sigmoid(x) - alpha) / (1 - 2 * alpha)).clamp(0, 1)


def logit_alpha_ladj(p: Tensor, alpha: float) -> Tensor:
    """``log |d logit_alpha / dp|`` element-wise."""
    q = alpha + (1 - 2 * alpha) * p
    return torch.log(torch.as_tensor(1 - 2 * alpha, dtype=p.dtype)) - torch.log(q) - torch.log1p(-q)


@dataclass(frozen=True)
class ShowerFeatures:
    """Shower (MeV) <-> (energy features, pattern features), see the module docstring.

    Args:
        layer_sizes: Voxels per layer, in voxel order.
        threshold: Readout threshold, MeV (> 0).
        noise: Upper end of the uniform noise added to empty voxels, as a fraction of ``threshold``, in (0, 1].
        alpha: Squeeze of the logit, in (0, 0.5).

    Example:
        >>> f = ShowerFeatures((2, 1), threshold=1.0, noise=0.1, alpha=1e-6)
        >>> s = torch.tensor([[3.0, 0.5, 4.0]], dtype=torch.float64)
        >>> e = torch.tensor([10.0], dtype=torch.float64)
        >>> g = torch.Generator().manual_seed(0)
        >>> noisy = f.dequantise(s, g)
        >>> y = f.energy_features(f.dequantise_layers(f.layer_sums(f.readout(s)), g), e)
        >>> x = f.pattern_features(noisy)
        >>> (y.shape, x.shape)
        (torch.Size([1, 2]), torch.Size([1, 2]))
        >>> [round(v, 9) for v in f.showers(x, f.readout_layers(f.layer_energies(y, e)))[0].tolist()]
        [3.0, 0.0, 4.0]
    """

    layer_sizes: tuple[int, ...]
    threshold: float
    noise: float
    alpha: float

    def __post_init__(self) -> None:
        if not self.layer_sizes or any(n < 1 for n in self.layer_sizes):
            msg = f"expected at least one layer of at least one voxel but got {self.layer_sizes}, in ShowerFeatures"
            raise ConfigError(msg)
        if not (self.threshold > 0 and 0 < self.noise <= 1 and 0 < self.alpha < 0.5):
            msg = (f"expected threshold > 0, 0 < noise <= 1 and 0 < alpha < 0.5 but got {self.threshold}, "
                   f"{self.noise}, {self.alpha}, in ShowerFeatures")
            raise ConfigError(msg)

    @property
    def n_layers(self) -> int:
        """Number of energy features (one per layer)."""
        return len(self.layer_sizes)

    @property
    def pattern_layers(self) -> tuple[int, ...]:
        """Indices of the layers with more than one voxel (those with pattern features)."""
        return tuple(i for i, n in enumerate(self.layer_sizes) if n > 1)

    @property
    def n_pattern(self) -> int:
        """Number of pattern features (voxels of the layers with more than one voxel)."""
        return sum(self.layer_sizes[i] for i in self.pattern_layers)

    # ------------------------------------------------------------------ voxels
    def readout(self, showers: Tensor) -> Tensor:
        """Voxels below the readout threshold set to zero."""
        return torch.where(showers >= self.threshold, showers, torch.zeros_like(showers))

    def dequantise(self, showers: Tensor, generator: torch.Generator | None) -> Tensor:
        """Readout, then uniform noise in ``[0, noise * threshold)`` on every empty voxel (float64)."""
        s = self.readout(showers.double())
        u = torch.rand(s.shape, generator=generator, device=s.device, dtype=s.dtype)
        return torch.where(s > 0, s, u * (self.noise * self.threshold))

    def layer_sums(self, showers: Tensor) -> Tensor:
        """Energy of each layer, (N, L), float64."""
        parts = torch.split(showers.double(), list(self.layer_sizes), dim=1)
        return torch.stack([part.sum(dim=1) for part in parts], dim=1)

    # ---------------------------------------------------------------- energies
    def dequantise_layers(self, layers: Tensor, generator: torch.Generator | None) -> Tensor:
        """Layer energies (N, L) after the readout; each empty one gets uniform noise in ``[0, noise * threshold)``."""
        e = layers.double()
        u = torch.rand(e.shape, generator=generator, device=e.device, dtype=e.dtype)
        return torch.where(e > 0, e, u * (self.noise * self.threshold))

    def readout_layers(self, layers: Tensor) -> Tensor:
        """Layer energies below the threshold set to zero (a non-empty layer holds a voxel above it)."""
        return torch.where(layers >= self.threshold, layers, torch.zeros_like(layers))

    def energy_features(self, layers: Tensor, energies: Tensor) -> Tensor:
        """Dequantised layer energies (N, L) and incident energies (N,) MeV -> energy features (N, L)."""
        sums = layers.double()
        total = sums.sum(dim=1)
        response = torch.log(total.clamp_min(_TINY) / energies.double())
        remaining = sums.flip(1).cumsum(1).flip(1)  # E_k + ... + E_{L-1}
        fractions = sums[:, :-1] / remaining[:, :-1].clamp_min(_TINY)
        return torch.cat([response.unsqueeze(1), logit_alpha(fractions, self.alpha)], dim=1)

    def layer_energies(self, features: Tensor, energies: Tensor) -> Tensor:
        """Energy features (N, L) and incident energies (N,) MeV -> (dequantised) layer energies (N, L) MeV."""
        y = features.double()
        total = energies.double() * torch.exp(y[:, 0])
        fractions = sigmoid_alpha(y[:, 1:], self.alpha)
        sticks = [torch.ones_like(total)]  # the stick left before each layer: a running product, written out
        for k in range(fractions.shape[1]):  # (ONNX has no cumulative product; a few layers, so a few products)
            sticks.append(sticks[-1] * (1 - fractions[:, k]))
        shares = torch.cat([fractions, torch.ones_like(total).unsqueeze(1)], dim=1) * torch.stack(sticks, dim=1)
        return shares * total.unsqueeze(1)

    # ----------------------------------------------------------------- pattern
    def pattern_features(self, showers: Tensor) -> Tensor:
        """Dequantised showers (N, V) -> pattern features (N, n_pattern): voxels normalised in their layer."""
        parts = torch.split(showers.double(), list(self.layer_sizes), dim=1)
        normalised = [parts[i] / parts[i].sum(dim=1, keepdim=True).clamp_min(_TINY) for i in self.pattern_layers]
        if not normalised:
            return showers.new_zeros((showers.shape[0], 0), dtype=torch.float64)
        return logit_alpha(torch.cat(normalised, dim=1), self.alpha)

    def showers(self, pattern: Tensor, layer_energies: Tensor) -> Tensor:
        """Pattern features and layer energies (N, L) MeV after the readout -> showers (N, V) MeV after the readout.

        In each layer, with the shares ``p`` sorted in decreasing order and ``c_k`` their cumulative
        sums, the ``k`` largest voxels are kept for the largest ``k`` with ``p_k E / c_k >= threshold``,
        and scaled to hold the layer energy ``E``: ``v = p E / c_k``. For the features of a
        dequantised shower this gives back the shower exactly (the kept voxels are those above the
        threshold, the noise sits below it).
        """
        p = sigmoid_alpha(pattern.double(), self.alpha)
        pieces = dict(zip(self.pattern_layers, torch.split(p, [self.layer_sizes[i] for i in self.pattern_layers],
                                                           dim=1), strict=True))
        out = []
        for i, n in enumerate(self.layer_sizes):
            e = layer_energies[:, i : i + 1].double()
            if i not in pieces:
                out.append(e.expand(-1, n))
                continue
            share = pieces[i]
            ordered, order = share.sort(dim=1, descending=True)
            cumulative = ordered.cumsum(dim=1)
            kept = (ordered * e >= self.threshold * cumulative).sum(dim=1, keepdim=True)  # a prefix: p_k / c_k falls
            scale = e / cumulative.gather(1, (kept - 1).clamp_min(0)).clamp_min(_TINY)
            rank = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=order.device).expand_as(order))
            out.append(torch.where(rank < kept, share * scale, torch.zeros_like(share)))
        return torch.cat(out, dim=1)


class Standardiser(nn.Module):
    """Per-feature ``(x - mean(E)) / std(E)``, mean and std interpolated in the conditioning energy.

    The statistics are taken at ``knots`` equally spaced values of ``E_hat`` in [0, 1] (the
    log-scaled incident energy of :class:`~caloforge.models.preprocess.EnergyScaler`), each from
    the showers weighted by linear-interpolation (tent) weights, and interpolated linearly in
    between, so a resolution of 0.5 % at 4 TeV is as wide as one of 25 % at 256 MeV after it. They
    are set once, from the first batch seen in training mode; until then (and for an untrained
    model) the transform is the identity. They are buffers, so bundles and checkpoints keep them;
    they are not trained. A knot without showers (an energy held out of training, a gap in the spectrum)
    takes the statistics interpolated linearly between the nearest knots that have showers (those of the
    nearest one beyond the last); only if no knot has showers, those of all showers.

    Args:
        n_features: Width of the feature vector.
        knots: Number of energy knots (1: one mean and std for all energies).

    Example:
        >>> s = Standardiser(1, knots=2)
        >>> x, e = torch.tensor([[1.0], [3.0], [10.0], [30.0]]), torch.tensor([0.0, 0.0, 1.0, 1.0])
        >>> s.fit_once(x, e)
        >>> s(x, e).squeeze(1).tolist()
        [-1.0, 1.0, -1.0, 1.0]
    """

    mean: Tensor
    std: Tensor
    initialised: Tensor

    def __init__(self, n_features: int, knots: int = 1) -> None:
        super().__init__()
        self.knots = knots
        self.register_buffer("mean", torch.zeros(knots, n_features))
        self.register_buffer("std", torch.ones(knots, n_features))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def weights(self, e_hat: Tensor) -> Tensor:
        """Interpolation weights (N, knots) of log-scaled energies ``e_hat`` (N,), clipped to [0, 1]."""
        if self.knots == 1:
            return torch.ones_like(e_hat).unsqueeze(1)
        t = e_hat.clamp(0, 1) * (self.knots - 1)
        low = t.floor().clamp(max=self.knots - 2)
        upper = (t - low).unsqueeze(1)
        w = torch.zeros(e_hat.shape[0], self.knots, dtype=e_hat.dtype, device=e_hat.device)
        w.scatter_(1, low.long().unsqueeze(1), 1 - upper)
        w.scatter_add_(1, low.long().unsqueeze(1) + 1, upper)
        return w

    def fit_once(self, x: Tensor, e_hat: Tensor) -> None:
        """Take the statistics from ``x`` (N, F) at energies ``e_hat`` (N,) unless already set."""
        if bool(self.initialised) or x.shape[0] < 2:
            return
        with torch.no_grad():
            x, w = x.double(), self.weights(e_hat.double())
            total = w.sum(dim=0).unsqueeze(1)  # (K, 1)
            mean = (w.T @ x) / total.clamp_min(1e-12)
            var = (w.T @ x.square()) / total.clamp_min(1e-12) - mean.square()
            enough = (total >= 2).squeeze(1)
            if bool(enough.any()):
                mean, std = fill_empty_knots(mean, enough), fill_empty_knots(var.clamp_min(0).sqrt(), enough)
            else:
                mean, std = x.mean(dim=0).expand_as(mean), x.std(dim=0).expand_as(mean)
            self.mean.copy_(mean)
            self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
            self.initialised.fill_(True)

    def _moments(self, e_hat: Tensor) -> tuple[Tensor, Tensor]:
        w = self.weights(e_hat.to(self.mean))
        return w @ self.mean, w @ self.std

    def forward(self, x: Tensor, e_hat: Tensor) -> Tensor:
        """Standardise ``x`` (N, F) at energies ``e_hat`` (N,); the result has the buffers' dtype."""
        mean, std = self._moments(e_hat)
        return (x.to(self.mean) - mean) / std

    def inverse(self, z: Tensor, e_hat: Tensor) -> Tensor:
        """Undo :meth:`forward`."""
        mean, std = self._moments(e_hat)
        return z.to(self.mean) * std + mean

    def log_abs_det_jacobian(self, e_hat: Tensor) -> Tensor:
        """``log |det d forward / dx|`` per shower (N,): it depends on the energy only."""
        return -torch.log(self._moments(e_hat)[1]).sum(dim=1)

    def extra_repr(self) -> str:
        return f"n_features={self.mean.shape[1]}, knots={self.knots}"
