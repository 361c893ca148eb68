"""Building blocks for networks over the calorimeter's cylinder: a (layer, alpha, r) grid, periodic in alpha.

A CaloChallenge shower is a list of layers, each ``n_alpha`` azimuthal by ``n_r`` radial bins.
:class:`CylinderGrid` places the flat voxel vector on a dense (L, A, R) grid (A, R the largest
counts; a layer with fewer alpha bins is repeated over the alpha cells, shorter radial binnings
are padded with zeros) and back. :class:`CircularConv3d` convolves it with zero padding in layer
and r and *circular* padding in alpha (alpha = -pi and +pi are neighbours), so that rotating a
shower by one alpha bin rotates the output of a stride-1 convolution by one bin (by ``s`` bins
for an alpha stride ``s``). :class:`ResBlock3d` is a residual pair of such convolutions, optionally
scaled and shifted by an embedding (FiLM). The parameters of all three are independent of the
number of voxels; their activations grow linearly with voxels x channels.

Used by the latent family's autoencoder (:mod:`caloforge.models.latent_networks`) and the
diffusion family's U-Net (:mod:`caloforge.models.diffusion_unet`).

References:
    O. Amram, K. Pedro, CaloDiffusion (cylindrical convolutions), arXiv:2308.03876.
    E. Perez et al., FiLM, arXiv:1709.07871.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import BeforeValidator, Field
from torch import Tensor, nn

from caloforge.errors import ConfigError

__all__ = ["CircularConv3d", "CylinderGrid", "LayerShapes", "ResBlock3d", "layer_shapes_of", "patches", "rotate_alpha",
           "unpatches"]

Shape3 = tuple[int, int, int]



def _pairs_from_lists(value: Any) -> Any:
    """JSON and YAML give the pairs as lists: accept them as tuples (their items are still checked)."""
    if isinstance(value, list | tuple):
        return tuple(tuple(pair) if isinstance(pair, list) else pair for pair in value)
    return value


_Count = Annotated[int, Field(ge=1, le=2**24)]
LayerShapes = Annotated[tuple[tuple[_Count, _Count], ...], BeforeValidator(_pairs_from_lists)]
"""A config field of ``(n_alpha, n_r)`` per layer, in order (the latent and diffusion families)."""

def layer_shapes_of(layer_sizes: Sequence[int], layer_shapes: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """The ``(n_alpha, n_r)`` of each layer: ``layer_shapes`` checked against the voxel counts, or ``(1, size)``.

    Raises:
        ConfigError: if ``layer_shapes`` is given and its products are not ``layer_sizes``.

    Example:
        >>> layer_shapes_of([6, 2], [])
        ((1, 6), (1, 2))
    """
    if not layer_shapes:
        return tuple((1, int(n)) for n in layer_sizes)
    shapes = tuple((int(a), int(r)) for a, r in layer_shapes)
    if [a * r for a, r in shapes] != [int(n) for n in layer_sizes]:
        msg = (f"expected layer_shapes (n_alpha, n_r) with {list(layer_sizes)} voxels per layer but got "
               f"{list(shapes)}")
        raise ConfigError(msg)
    return shapes


def rotate_alpha(voxels: Tensor, layer_shapes: Sequence[tuple[int, int]], shift: int = 1) -> Tensor:
    """Rotate flat showers (N, V) by ``shift`` alpha bins in every layer (one with a single alpha bin is unchanged).

    Used to check rotation equivariance.

    Example:
        >>> rotate_alpha(torch.arange(6.0)[None], [(3, 2)]).tolist()
        [[4.0, 5.0, 0.0, 1.0, 2.0, 3.0]]
    """
    parts = torch.split(voxels, [a * r for a, r in layer_shapes], dim=-1)
    out = [p.reshape(*p.shape[:-1], a, r).roll(shift, dims=-2).reshape(p.shape)
           for p, (a, r) in zip(parts, layer_shapes, strict=True)]
    return torch.cat(out, dim=-1)


class CylinderGrid(nn.Module):
    """Flat voxels (N, V) <-> a dense (N, L, A, R) grid; ``mask`` (L, A, R) marks the cells of real voxels.

    Args:
        layer_shapes: ``(n_alpha, n_r)`` of each layer, in order.

    Example:
        >>> grid = CylinderGrid([(2, 3), (1, 2)])
        >>> x = torch.arange(8.0)[None]
        >>> g = grid.to_grid(x)
        >>> g.shape, g[0, 1].tolist()
        (torch.Size([1, 2, 2, 3]), [[6.0, 7.0, 0.0], [6.0, 7.0, 0.0]])
        >>> torch.equal(grid.from_grid(g), x)
        True
    """

    source: Tensor
    mask: Tensor

    def __init__(self, layer_shapes: Sequence[tuple[int, int]]) -> None:
        super().__init__()
        self.shapes = tuple((int(a), int(r)) for a, r in layer_shapes)
        if not self.shapes or any(a < 1 or r < 1 for a, r in self.shapes):
            msg = f"expected at least one layer of positive (n_alpha, n_r) but got {list(self.shapes)}, in CylinderGrid"
            raise ConfigError(msg)
        self.n_layers, self.n_alpha, self.n_r = len(self.shapes), max(a for a, _ in self.shapes), \
            max(r for _, r in self.shapes)
        self.n_voxels = sum(a * r for a, r in self.shapes)
        self.uniform = len(set(self.shapes)) == 1
        source: list[int] = []
        mask: list[float] = []
        offset = 0
        for a, r in self.shapes:  # the voxel each grid cell shows (n_voxels: a zero cell)
            for j in range(self.n_alpha):
                b = j * a // self.n_alpha
                source.extend(offset + b * r + k if k < r else self.n_voxels for k in range(self.n_r))
                mask.extend(1.0 if k < r else 0.0 for k in range(self.n_r))
            offset += a * r
        self.register_buffer("source", torch.tensor(source), persistent=False)
        self.register_buffer("mask", torch.tensor(mask).reshape(self.size), persistent=False)
        for i, (a, _) in enumerate(self.shapes):  # averaging over the cells each bin was copied to
            if a != self.n_alpha:
                owner = torch.arange(self.n_alpha) * a // self.n_alpha
                average = (owner[None] == torch.arange(a)[:, None]).float()
                self.register_buffer(f"average_{i}", average / average.sum(dim=1, keepdim=True), persistent=False)

    @property
    def size(self) -> Shape3:
        """(L, A, R)."""
        return self.n_layers, self.n_alpha, self.n_r

    def to_grid(self, voxels: Tensor) -> Tensor:
        """(N, V) -> (N, L, A, R)."""
        n = voxels.shape[0]
        if self.uniform:
            return voxels.reshape(n, *self.size)
        padded = torch.cat([voxels, voxels.new_zeros(n, 1)], dim=1)
        return padded.index_select(1, self.source).reshape(n, *self.size)

    def from_grid(self, grid: Tensor) -> Tensor:
        """(N, L, A, R) -> (N, V): a bin repeated over several alpha cells gets their mean."""
        n = grid.shape[0]
        if self.uniform:
            return grid.reshape(n, self.n_voxels)
        out = []
        for i, (a, r) in enumerate(self.shapes):
            layer = grid[:, i, :, :r]
            if a != self.n_alpha:
                layer = torch.matmul(getattr(self, f"average_{i}"), layer)
            out.append(layer.reshape(n, a * r))
        return torch.cat(out, dim=1)

    def extra_repr(self) -> str:
        return f"size={self.size}, uniform={self.uniform}"


class CircularConv3d(nn.Module):
    """A 3-d convolution over (N, C, L, A, R): zero padding in layer and r, circular in alpha.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel: Odd kernel size (the same in the three directions).
        stride: Strides in (layer, alpha, r).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: Shape3 = (1, 1, 1)) -> None:
        super().__init__()
        if kernel % 2 != 1:
            msg = f"expected an odd kernel size but got {kernel}, in CircularConv3d"
            raise ConfigError(msg)
        self.padding = kernel // 2
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride=stride)

    def forward(self, h: Tensor) -> Tensor:
        p = self.padding
        if not p:
            out: Tensor = self.conv(h)
            return out
        n_alpha = h.shape[3]
        wrap = [h[:, :, :, n_alpha - p :], h, h[:, :, :, :p]] if n_alpha >= p else [h] * (2 * p + 1)
        # alpha wrapped by hand, layer and r zero-padded by the convolution itself: one copy of the input, not two
        # (a ds2 latent decoder: 2.5 -> 2.0 ms of CPU per shower, the same numbers)
        conv = self.conv
        out = F.conv3d(torch.cat(wrap, dim=3), conv.weight, conv.bias, conv.stride, (p, 0, p))
        return out

    @staticmethod
    def output_size(size: Shape3, stride: Shape3, kernel: int = 3) -> Shape3:
        """The grid size after a convolution with this padding and ``stride``."""
        return tuple((n + 2 * (kernel // 2) - kernel) // s + 1 for n, s in zip(size, stride, strict=True))  # type: ignore[return-value]


class ResBlock3d(nn.Module):
    """``h + conv(silu(conv(silu(norm(h) * (1 + scale) + shift))))``, (scale, shift) from an embedding if any.

    Args:
        channels: Channels in and out.
        embedding_dim: Width of the conditioning embedding (0: none, no FiLM).
    """

    def __init__(self, channels: int, embedding_dim: int = 0) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(min(8, channels), channels, affine=embedding_dim == 0)
        self.film = nn.Linear(embedding_dim, 2 * channels) if embedding_dim else None
        self.conv1 = CircularConv3d(channels, channels)
        self.conv2 = CircularConv3d(channels, channels)

    def forward(self, h: Tensor, e: Tensor | None = None) -> Tensor:
        y = self.norm(h)
        if self.film is not None and e is not None:
            scale, shift = self.film(e)[:, :, None, None, None].chunk(2, dim=1)
            y = y * (1 + scale) + shift
        out: Tensor = h + self.conv2(F.silu(self.conv1(F.silu(y))))
        return out


def patches(x: Tensor, patch: tuple[int, int, int]) -> Tensor:
    """(N, C, L, A, R), dimensions multiples of ``patch`` -> (N, L/p, A/p, R/p, C * prod(patch)), channels last.

    Example:
        >>> patches(torch.arange(8.0).reshape(1, 1, 2, 2, 2), (2, 1, 2)).shape
        torch.Size([1, 1, 2, 1, 4])
    """
    n, c, n_layers, n_alpha, n_r = x.shape
    sl, sa, sr = patch
    x = x.reshape(n, c, n_layers // sl, sl, n_alpha // sa, sa, n_r // sr, sr)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(n, n_layers // sl, n_alpha // sa, n_r // sr, c * sl * sa * sr)


def unpatches(h: Tensor, patch: tuple[int, int, int]) -> Tensor:
    """(N, L', A', R', prod(patch) * C) -> (N, L' pl, A' pa, R' pr, C), channels last: :func:`patches` undone.

    Example:
        >>> x = torch.arange(8.0).reshape(1, 1, 2, 2, 2)
        >>> torch.equal(unpatches(patches(x, (2, 1, 2)), (2, 1, 2)).permute(0, 4, 1, 2, 3), x)
        True
    """
    n, n_layers, n_alpha, n_r, _ = h.shape
    sl, sa, sr = patch
    h = h.reshape(n, n_layers, n_alpha, n_r, -1, sl, sa, sr).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return h.reshape(n, n_layers * sl, n_alpha * sa, n_r * sr, -1)
