"""The latent family's autoencoder: cylindrical convolutions down to a few hundred numbers and back.

The encoder reads the network-space voxels on the (layer, alpha, r) grid of
:class:`~caloforge.models.cylinder.CylinderGrid`, with two more channels (the in-geometry mask
and the layer's energy fraction). A patch embedding (a convolution whose kernel is its stride,
2 in layer and r, and in alpha while it has at least 8 bins and an even count) halves the grid
at the cost of a pointwise map, so nothing of size 3 x 3 x 3 x channels^2 runs at full
resolution; then stages of cylindrical convolutions (circular in alpha) each halve the grid
again and are followed by a residual block; one linear map takes the last grid to
``latent_dim`` numbers, normalised per shower (a LayerNorm without weights, so the prior sees
latents of a fixed scale). The decoder mirrors it from the latent plus the shower's scalars
(response and layer fractions): residual blocks, nearest-neighbour up-sampling and
convolutions, a transposed patch embedding back to full resolution, and a pointwise head that
sees the layer fractions and the mask again.

Every convolution is circular in alpha, so each part is equivariant under rotations by the
product of the alpha strides before it (one bin where alpha is not down-sampled); only the
linear maps to and from the latent are not. Parameters: the convolutions' are independent of
the voxels, the two linear maps' grow as (voxels / 8 to 64) x channels x latent_dim;
activations as voxels x channels / 8.

References:
    O. Amram, K. Pedro, CaloDiffusion (cylindrical convolutions), arXiv:2308.03876.
    L. Favaro, A. Ore, S. Palacios Schweitzer, T. Plehn, CaloDREAM (a latent space for ds2/ds3), arXiv:2405.09629.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from caloforge.models.cylinder import CircularConv3d, CylinderGrid, ResBlock3d, patches

__all__ = ["ConvDecoder", "ConvEncoder", "down_stride", "grid_input"]


def down_stride(size: tuple[int, int, int]) -> tuple[int, int, int]:
    """The stride of a down-sampling stage on a grid of ``size`` (L, A, R): 2 where the grid is large enough.

    Example:
        >>> down_stride((45, 16, 9)), down_stride((12, 25, 5)), down_stride((3, 4, 2))
        ((2, 2, 2), (2, 1, 2), (1, 1, 1))
    """
    n_layers, n_alpha, n_r = size
    return (2 if n_layers >= 4 else 1, 2 if n_alpha >= 8 and n_alpha % 2 == 0 else 1,
            2 if n_r >= 4 else 1)


def grid_input(grid: CylinderGrid, voxels: Tensor, fractions: Tensor) -> Tensor:
    """(N, 3, L, A, R): the voxels on the grid, the mask, and each layer's scalar broadcast over its cells."""
    g = grid.to_grid(voxels)
    return torch.stack([g, grid.mask.to(g).expand_as(g), fractions[:, :, None, None].expand_as(g)], dim=1)


class ConvEncoder(nn.Module):
    """Network-space voxels (N, V) and layer scalars (N, L) -> latent (N, latent_dim).

    Args:
        grid: The geometry's grid.
        latent_dim: Width of the latent vector.
        channels: Channels after the patch embedding, then after each further down-sampling stage.
    """

    def __init__(self, grid: CylinderGrid, latent_dim: int, channels: Sequence[int]) -> None:
        super().__init__()
        self.grid = grid
        self.patch = down_stride(grid.size)
        self.sizes = [grid.size, _ceil_div(grid.size, self.patch)]
        self.stem = nn.Linear(3 * math.prod(self.patch), channels[0])  # a patch embedding, as a matrix product
        self.stem_block = ResBlock3d(channels[0])
        self.downs = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for c_in, c_out in itertools.pairwise(channels):
            stride = down_stride(self.sizes[-1])
            self.downs.append(CircularConv3d(c_in, c_out, stride=stride))
            self.blocks.append(ResBlock3d(c_out))
            self.sizes.append(CircularConv3d.output_size(self.sizes[-1], stride))
        self.proj = nn.Linear(channels[-1] * math.prod(self.sizes[-1]), latent_dim)
        self.norm = nn.LayerNorm(latent_dim, elementwise_affine=False)

    def trunk(self, x: Tensor) -> Tensor:
        """The convolutional part: grid input (N, 3, L, A, R) -> (N, C, L', A', R')."""
        n_layers, _, n_r = self.sizes[1]
        padded = F.pad(x, (0, n_r * self.patch[2] - x.shape[4], 0, 0, 0, n_layers * self.patch[0] - x.shape[2]))
        h: Tensor = self.stem_block(self.stem(patches(padded, self.patch)).permute(0, 4, 1, 2, 3))
        for down, block in zip(self.downs, self.blocks, strict=True):
            h = block(down(h))
        return h

    def forward(self, voxels: Tensor, fractions: Tensor) -> Tensor:
        h = self.trunk(grid_input(self.grid, voxels, fractions))
        out: Tensor = self.norm(self.proj(h.flatten(1)))
        return out


def _ceil_div(size: tuple[int, int, int], stride: tuple[int, int, int]) -> tuple[int, int, int]:
    return (-(-size[0] // stride[0]), -(-size[1] // stride[1]), -(-size[2] // stride[2]))


class ConvDecoder(nn.Module):
    """Latent (N, latent_dim) and the shower's scalars (N, n_scalars) -> network-space voxels (N, V).

    With ``outputs`` k > 1 it gives k numbers per voxel, (N, k, V) (e.g. a distribution's parameters).

    Args:
        grid: The geometry's grid.
        latent_dim: Width of the latent vector.
        n_scalars: Scalars given with it (response and layer fractions); the last L are the layers'.
        channels: The encoder's channels.
        sizes: The encoder's grid sizes (:attr:`ConvEncoder.sizes`: full, after the patches, after each stage).
        patch: The encoder's patch size (:attr:`ConvEncoder.patch`).
        outputs: Numbers per voxel.
    """

    def __init__(self, grid: CylinderGrid, latent_dim: int, n_scalars: int, channels: Sequence[int],
                 sizes: Sequence[tuple[int, int, int]], patch: tuple[int, int, int], outputs: int = 1) -> None:
        super().__init__()
        self.grid = grid
        self.sizes = list(sizes)
        self.channels = list(channels)
        self.inp = nn.Linear(latent_dim + n_scalars, channels[-1] * math.prod(sizes[-1]))
        self.blocks = nn.ModuleList(ResBlock3d(c) for c in reversed(channels[1:]))
        self.ups = nn.ModuleList(CircularConv3d(c_out, c_in) for c_in, c_out in reversed(list(
            itertools.pairwise(channels))))
        self.last_block = ResBlock3d(channels[0])
        self.patch = patch
        self.unpatch = nn.Linear(channels[0], channels[0] * math.prod(patch))  # pointwise maps, channels last
        self.head = nn.Linear(channels[0] + 2, channels[0])
        self.outputs = outputs
        self.out = nn.Linear(channels[0], outputs)
        for p in self.out.parameters():
            nn.init.zeros_(p)

    def expand(self, h: Tensor, fractions: Tensor) -> Tensor:
        """The convolutional part: (N, C, L', A', R') and layer scalars (N, L) -> voxel grid (N, L, A, R)
        (or (N, k, L, A, R) for k ``outputs``)."""
        for i, (block, up) in enumerate(zip(self.blocks, self.ups, strict=True)):
            size = self.sizes[len(self.sizes) - 2 - i]
            h = F.silu(up(F.interpolate(block(h), size=size, mode="nearest")))
        return self.tail(self.last_block(h), fractions)

    def tail(self, h: Tensor, fractions: Tensor) -> Tensor:
        """The pointwise part: (N, C, L', A', R') -> voxel grid (N, L, A, R) (or (N, k, L, A, R)), valid on the
        mask's cells.

        ``out(silu(head([silu(unpatches(unpatch(h))), mask, layer fraction])))``, computed on the
        patches: the un-patching is folded into the order of ``unpatch``'s output rows (patch position
        major, channel minor), and ``head``'s weight is split into its channels' part (a matrix
        product) and its mask and layer-fraction columns, added as one per-layer bias; only the
        k-channel output is un-patched and cropped. No concatenation and no full-resolution copy of
        the channels. The mask is 1 on every cell :meth:`CylinderGrid.from_grid` reads (it is 0 only
        on the zero-padded radial cells of a layer with fewer r bins, which it drops), so its column
        is a constant there. The same parameters as the plain form and the same voxels up to float
        rounding (tested); the ds2 CPU preset's pointwise tail was ~40 % of its generation before.
        """
        n, c = h.shape[0], self.channels[0]
        sl, sa, sr = self.patch
        size, cells = h.shape[2:], sa * sr * c  # cells: the values of one patch layer (alpha, r, channel)
        grad = torch.is_grad_enabled()
        dtype = self.unpatch.weight.dtype  # under bf16 autocast each product is handed on in fp32, as Linear's hook
        weight = self.unpatch.weight.reshape(c, sl * sa * sr, c).transpose(0, 1).reshape(-1, c)
        bias = self.unpatch.bias.reshape(c, sl * sa * sr).t().reshape(-1)
        u = F.silu(F.linear(h.permute(0, 2, 3, 4, 1).contiguous(), weight, bias).to(dtype), inplace=not grad)
        # the head's product on groups of patch positions: a block-diagonal matrix of 16 or more rows
        group = math.gcd(sl * sa * sr, max(1, 16 // c))
        head = self.head.weight
        blocks = torch.kron(torch.eye(group, dtype=head.dtype, device=head.device), head[:, :c])
        v = F.linear(u.reshape(-1, group * c), blocks).to(dtype).reshape(n, size[0], size[1] * size[2], sl, cells)
        full = F.pad(fractions, (0, size[0] * sl - fractions.shape[1])).reshape(n, size[0], 1, sl, 1, 1)
        layer = (full * head[:, c + 1] + (head[:, c] + self.head.bias)).expand(-1, -1, -1, -1, sa * sr, -1)
        layer = layer.reshape(n, size[0], 1, sl, cells)
        v = F.silu(v + layer if grad else v.add_(layer), inplace=not grad)
        k = self.outputs
        out = torch.kron(torch.eye(sl * sa * sr, dtype=head.dtype, device=head.device), self.out.weight)
        o = F.linear(v.reshape(*u.shape), out, self.out.bias.repeat(sl * sa * sr)).to(dtype)
        n_layers, n_alpha, n_r = self.grid.size
        grid = o.reshape(n, size[0], size[1], size[2], sl, sa, sr, k).permute(0, 7, 1, 4, 2, 5, 3, 6)
        grid = grid.reshape(n, k, size[0] * sl, size[1] * sa, size[2] * sr)[:, :, :n_layers, :n_alpha, :n_r]
        return grid[:, 0] if k == 1 else grid

    def forward(self, z: Tensor, scalars: Tensor) -> Tensor:
        n_layers = self.grid.n_layers
        n = z.shape[0]
        h = self.inp(torch.cat([z, scalars], dim=1)).reshape(n, self.channels[-1], *self.sizes[-1])
        grid = self.expand(h, scalars[:, -n_layers:])
        if self.outputs == 1:
            return self.grid.from_grid(grid)
        return self.grid.from_grid(grid.reshape(n * self.outputs, *grid.shape[2:])).reshape(n, self.outputs, -1)
