"""Networks of the diffusion family: ``network(x_t, t, c)`` -> the velocity ``dx_t/dt``, shape of ``x_t``.

A network knows nothing of the noise schedule or the sampler (:mod:`caloforge.models.diffusion`
puts them together). Both take the noisy network-space shower ``x_t`` (N, D), the times ``t``
(N,) in [0, 1] and the conditioning vector ``c`` (N, C); the time enters through sinusoidal
features, the time and conditions together through a learned embedding that scales and
shifts every block (FiLM).

* :class:`ResidualMLP`: dense residual blocks over the whole shower vector; the default.
* :class:`VoxelConv`: 3-d convolutions over (layer, alpha, r) on a padded grid, circular in
  alpha; layers with one alpha bin are repeated over the alpha bins on the way in and averaged
  on the way out. It needs each layer's ``(n_alpha, n_r)``.

References:
    A. Vaswani et al., Attention Is All You Need (sinusoidal features), arXiv:1706.03762.
    E. Perez et al., FiLM: Visual Reasoning with a General Conditioning Layer, arXiv:1709.07871.
    O. Amram, K. Pedro, CaloDiffusion (geometry-aware convolutions), arXiv:2308.03876.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from caloforge.errors import ConfigError

__all__ = ["ResidualMLP", "VoxelConv", "time_features"]


def time_features(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of times ``t`` (N,) in [0, 1]: (N, dim), frequencies from 1 to 1000 per unit time.

    Example:
        >>> time_features(torch.zeros(2), 4).tolist()
        [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]
    """
    half = dim // 2
    freqs = torch.exp(torch.linspace(math.log(1000.0), 0.0, half, device=t.device, dtype=t.dtype))
    arg = t.reshape(-1, 1) * freqs
    out = torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)
    return F.pad(out, (0, dim - 2 * half))


class _Embedding(nn.Module):
    """(t, c) -> an embedding that conditions every block."""

    def __init__(self, n_conditions: int, time_dim: int, dim: int) -> None:
        super().__init__()
        self.time_dim = time_dim
        self.net = nn.Sequential(nn.Linear(time_dim + n_conditions, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU())

    def forward(self, t: Tensor, c: Tensor) -> Tensor:
        out: Tensor = self.net(torch.cat([time_features(t.to(c), self.time_dim), c], dim=1))
        return out


class _ResidualBlock(nn.Module):
    """``h + W2 silu(W1 silu(norm(h) * (1 + scale) + shift))`` with (scale, shift) from the embedding."""

    def __init__(self, width: int, embedding_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.film = nn.Linear(embedding_dim, 2 * width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: Tensor, e: Tensor) -> Tensor:
        scale, shift = self.film(e).chunk(2, dim=1)
        y = self.norm(h) * (1 + scale) + shift
        out: Tensor = h + self.fc2(F.silu(self.fc1(F.silu(y))))
        return out


class ResidualMLP(nn.Module):
    """Residual MLP denoiser: input projection, ``depth`` FiLM-conditioned blocks of ``width``, output projection.

    The output projection starts at zero, so the untrained network predicts zero velocity.

    Args:
        n_features: Width D of the network-space shower.
        n_conditions: Width C of the conditioning vector.
        width: Width of the hidden blocks.
        depth: Number of residual blocks.
        time_dim: Number of sinusoidal time features.
        embedding_dim: Width of the (time, condition) embedding.

    Example:
        >>> net = ResidualMLP(10, 1, width=32, depth=2)
        >>> net(torch.zeros(3, 10), torch.rand(3), torch.rand(3, 1)).shape
        torch.Size([3, 10])
    """

    def __init__(self, n_features: int, n_conditions: int, width: int = 512, depth: int = 4, time_dim: int = 64,
                 embedding_dim: int = 128) -> None:
        super().__init__()
        self.embedding = _Embedding(n_conditions, time_dim, embedding_dim)
        self.inp = nn.Linear(n_features, width)
        self.blocks = nn.ModuleList(_ResidualBlock(width, embedding_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, n_features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, t: Tensor, c: Tensor) -> Tensor:
        e = self.embedding(t, c)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, e)
        out: Tensor = self.out(F.silu(self.norm(h)))
        return out


class _ConvBlock(nn.Module):
    def __init__(self, channels: int, embedding_dim: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(min(8, channels), channels, affine=False)
        self.film = nn.Linear(embedding_dim, 2 * channels)
        self.conv1 = nn.Conv3d(channels, channels, 3)
        self.conv2 = nn.Conv3d(channels, channels, 3)

    @staticmethod
    def _pad(h: Tensor) -> Tensor:
        """Circular in alpha (dim 3), zeros in layer (dim 2) and r (dim 4)."""
        h = torch.cat([h[:, :, :, -1:], h, h[:, :, :, :1]], dim=3)
        return F.pad(h, (1, 1, 0, 0, 1, 1))

    def forward(self, h: Tensor, e: Tensor) -> Tensor:
        scale, shift = self.film(e)[:, :, None, None, None].chunk(2, dim=1)
        y = self.norm(h) * (1 + scale) + shift
        y = self.conv1(self._pad(F.silu(y)))
        out: Tensor = h + self.conv2(self._pad(F.silu(y)))
        return out


class VoxelConv(nn.Module):
    """3-d convolutional denoiser over (layer, alpha, r) for the ``total``/``layer`` network space.

    The voxels of each layer are placed on a (L, A, R) grid (A, R the largest alpha and r
    counts), with channels: the value, an in-geometry mask and the layer's scalar
    feature (its energy fraction); the scalar features (response, fractions) also go through an
    MLP branch that reads the pooled grid.

    Args:
        n_features: Width D of the network-space shower: ``n_scalars`` scalars, then the voxels.
        n_conditions: Width C of the conditioning vector.
        layer_shapes: ``(n_alpha, n_r)`` of each layer, in order.
        n_scalars: Scalars before the voxels (1 + L for ``total``, L for ``layer``).
        channels: Channels of the convolutions.
        blocks: Number of residual convolution blocks.
        time_dim: Number of sinusoidal time features.
        embedding_dim: Width of the (time, condition) embedding.

    Raises:
        ConfigError: if the layer shapes do not add up to the voxels of ``n_features``.
    """

    def __init__(self, n_features: int, n_conditions: int, layer_shapes: Sequence[tuple[int, int]], n_scalars: int,
                 channels: int = 32, blocks: int = 3, time_dim: int = 64, embedding_dim: int = 128) -> None:
        super().__init__()
        self.shapes = tuple((int(a), int(r)) for a, r in layer_shapes)
        n_voxels = sum(a * r for a, r in self.shapes)
        if not self.shapes or n_voxels + n_scalars != n_features or n_scalars < len(self.shapes):
            msg = (f"expected layer shapes (n_alpha, n_r) whose voxels and {n_scalars} scalars make {n_features} "
                   f"features but got {list(self.shapes)}, in VoxelConv")
            raise ConfigError(msg)
        self.n_scalars = n_scalars
        self.n_alpha = max(a for a, _ in self.shapes)
        self.n_r = max(r for _, r in self.shapes)
        self.embedding = _Embedding(n_conditions, time_dim, embedding_dim)
        self.inp = nn.Conv3d(3, channels, 1)
        self.blocks = nn.ModuleList(_ConvBlock(channels, embedding_dim) for _ in range(blocks))
        self.out = nn.Conv3d(channels, 1, 1)
        scalar_out = nn.Linear(256, n_scalars)
        self.scalars = nn.Sequential(nn.Linear(n_scalars + channels + embedding_dim, 256), nn.SiLU(), scalar_out)
        for p in (*self.out.parameters(), *scalar_out.parameters()):
            nn.init.zeros_(p)

    def _to_grid(self, voxels: Tensor) -> tuple[Tensor, Tensor]:
        n = voxels.shape[0]
        grid, mask = [], []
        for part, (a, r) in zip(torch.split(voxels, [a * r for a, r in self.shapes], dim=1), self.shapes,
                                strict=True):
            index = torch.arange(self.n_alpha, device=voxels.device) * a // self.n_alpha
            layer = part.reshape(n, a, r)[:, index]
            grid.append(F.pad(layer, (0, self.n_r - r)))
            mask.append(F.pad(torch.ones(self.n_alpha, r, device=voxels.device, dtype=voxels.dtype),
                              (0, self.n_r - r)))
        return torch.stack(grid, dim=1), torch.stack(mask)

    def _from_grid(self, grid: Tensor) -> Tensor:
        out = []
        n = grid.shape[0]
        for i, (a, r) in enumerate(self.shapes):
            if self.n_alpha % a == 0:  # each bin was copied to n_alpha / a neighbouring cells: average them
                layer = grid[:, i, :, :r].reshape(n, a, self.n_alpha // a, r).mean(dim=2)
            else:  # uneven alpha counts: the first cell each bin was copied to, ceil(j n_alpha / a)
                index = (torch.arange(a, device=grid.device) * self.n_alpha + a - 1) // a
                layer = grid[:, i, index, :r]
            out.append(layer.reshape(n, a * r))
        return torch.cat(out, dim=1)

    def forward(self, x: Tensor, t: Tensor, c: Tensor) -> Tensor:
        e = self.embedding(t, c)
        scalars, voxels = x[:, : self.n_scalars], x[:, self.n_scalars :]
        grid, mask = self._to_grid(voxels)
        fractions = scalars[:, -len(self.shapes) :, None, None].expand_as(grid)
        h = self.inp(torch.stack([grid, mask.expand_as(grid), fractions], dim=1))
        for block in self.blocks:
            h = block(h, e) * mask
        voxel_out = self._from_grid(self.out(h)[:, 0])
        pooled = h.sum(dim=(2, 3, 4)) / mask.sum()
        scalar_out = self.scalars(torch.cat([scalars, pooled, e], dim=1))
        return torch.cat([scalar_out, voxel_out], dim=1)
