"""A U-Net over (layer, alpha, r), circular in alpha, for the diffusion family at high granularity.

:class:`~caloforge.models.diffusion_networks.VoxelConv` convolves every block at full
resolution: on dataset 3 (45 x 50 x 18 = 40 500 voxels) each block costs 27 x channels^2
multiply-adds per voxel. :class:`CylinderUNet` only has pointwise maps at full resolution (in,
out and a skip connection); patches of 2 x 2 in (layer, r) take it to the first level, and
strided convolutions halve layer and r again at each further level, with skip connections
(CaloDiffusion's layout, arXiv:2308.03876). Alpha keeps its bins throughout, so every part is
equivariant under a rotation by one alpha bin. Its parameters are independent of the voxels;
its activations grow as voxels x channels.

Input and output are the ``total``/``layer`` network space of the diffusion family: the scalars
(response, layer fractions) then the voxels. The voxels go on the grid with two more channels,
the in-geometry mask and the layer's fraction; the scalars' velocity comes from an MLP that
reads them, the time-condition embedding and the mean of the deepest features.

References:
    O. Amram, K. Pedro, CaloDiffusion, arXiv:2308.03876.
    O. Ronneberger, P. Fischer, T. Brox, U-Net, arXiv:1505.04597.
    V. Mikuni, B. Nachman, CaloScore v2, arXiv:2308.03847.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from caloforge.errors import ConfigError
from caloforge.models.cylinder import CircularConv3d, CylinderGrid, ResBlock3d, patches, unpatches
from caloforge.models.diffusion_networks import time_features

__all__ = ["CylinderUNet"]


def _stride(size: tuple[int, int, int]) -> tuple[int, int, int]:
    """Halve layer and r where at least 4 bins remain; never alpha (keeps one-bin rotation equivariance)."""
    return 2 if size[0] >= 4 else 1, 1, 2 if size[2] >= 4 else 1


class CylinderUNet(nn.Module):
    """Velocity network ``(x_t, t, c) -> v`` with a cylindrical U-Net for the voxels.

    Args:
        n_features: Width D of the network-space shower: ``n_scalars`` scalars, then the voxels.
        n_conditions: Width C of the conditioning vector.
        layer_shapes: ``(n_alpha, n_r)`` of each layer, in order.
        n_scalars: Scalars before the voxels (1 + L for ``total``, L for ``layer``).
        channels: Channels at full resolution (pointwise maps only); level i >= 1 has ``channels * 2**i``.
        levels: Levels below full resolution (the first reached by patches of 2 in layer and r,
            the others by strided convolutions), each with a residual block down and up.
        time_dim: Number of sinusoidal time features.
        embedding_dim: Width of the (time, condition) embedding.

    Raises:
        ConfigError: if the layer shapes do not add up to the voxels of ``n_features``.

    Example:
        >>> net = CylinderUNet(3 + 12, 1, [(2, 3), (2, 3)], 3, channels=4, levels=1, time_dim=4, embedding_dim=8)
        >>> net(torch.zeros(5, 15), torch.rand(5), torch.rand(5, 1)).shape
        torch.Size([5, 15])
    """

    def __init__(self, n_features: int, n_conditions: int, layer_shapes: Sequence[tuple[int, int]], n_scalars: int,
                 channels: int = 32, levels: int = 2, time_dim: int = 64, embedding_dim: int = 128) -> None:
        super().__init__()
        self.grid = CylinderGrid(layer_shapes)
        if self.grid.n_voxels + n_scalars != n_features or n_scalars < self.grid.n_layers:
            msg = (f"expected layer shapes (n_alpha, n_r) whose voxels and {n_scalars} scalars make {n_features} "
                   f"features but got {list(self.grid.shapes)}, in CylinderUNet")
            raise ConfigError(msg)
        self.n_scalars = n_scalars
        self.time_dim = time_dim
        self.embedding = nn.Sequential(nn.Linear(time_dim + n_conditions, embedding_dim), nn.SiLU(),
                                       nn.Linear(embedding_dim, embedding_dim), nn.SiLU())
        widths = [channels * 2**i for i in range(levels + 1)]
        self.patch = _stride(self.grid.size)
        n_layers, n_alpha, n_r = self.grid.size
        self.sizes = [(-(-n_layers // self.patch[0]), n_alpha, -(-n_r // self.patch[2]))]
        cells = self.patch[0] * self.patch[2]
        self.inp = nn.Linear(3, widths[0])  # full resolution: pointwise, channels last
        self.embed_patches = nn.Linear(widths[0] * cells, widths[1])
        self.down_blocks = nn.ModuleList([ResBlock3d(widths[1], embedding_dim)])
        self.downs = nn.ModuleList()
        for i in range(1, levels):
            stride = _stride(self.sizes[-1])
            self.downs.append(CircularConv3d(widths[i], widths[i + 1], stride=stride))
            self.down_blocks.append(ResBlock3d(widths[i + 1], embedding_dim))
            self.sizes.append(CircularConv3d.output_size(self.sizes[-1], stride))
        self.middle = ResBlock3d(widths[-1], embedding_dim)
        self.ups = nn.ModuleList(CircularConv3d(widths[i + 1] + widths[i], widths[i])
                                 for i in reversed(range(1, levels)))
        self.up_blocks = nn.ModuleList(ResBlock3d(widths[i], embedding_dim) for i in reversed(range(1, levels)))
        self.unembed_patches = nn.Linear(widths[1], widths[0] * cells)
        self.out = nn.Linear(widths[0], 1)
        scalar_out = nn.Linear(256, n_scalars)
        self.scalars = nn.Sequential(nn.Linear(n_scalars + widths[-1] + embedding_dim, 256), nn.SiLU(), scalar_out)
        for p in (*self.out.parameters(), *scalar_out.parameters()):
            nn.init.zeros_(p)

    def voxel_field(self, x: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
        """The grid part: input (N, L, A, R, 3), channels last, and embedding -> (voxel grid, deepest features)."""
        mask = self.grid.mask.to(x)[..., None]
        full = F.silu(self.inp(x)) * mask  # (N, L, A, R, C0)
        n_layers, _, n_r = self.grid.size
        padded = F.pad(full, (0, 0, 0, self.sizes[0][2] * self.patch[2] - n_r, 0, 0,
                              0, self.sizes[0][0] * self.patch[0] - n_layers))
        h = self.embed_patches(patches(padded.permute(0, 4, 1, 2, 3), self.patch)).permute(0, 4, 1, 2, 3)
        h = self.down_blocks[0](h, e)
        skips = [h]
        for down, block in zip(self.downs, self.down_blocks[1:], strict=True):
            h = block(down(h), e)
            skips.append(h)
        deepest = self.middle(skips.pop(), e)
        h = deepest
        for up, block in zip(self.ups, self.up_blocks, strict=True):
            skip = skips.pop()
            h = block(F.silu(up(torch.cat([F.interpolate(h, size=skip.shape[2:], mode="nearest"), skip], dim=1))), e)
        h = unpatches(self.unembed_patches(h.permute(0, 2, 3, 4, 1)), self.patch)[:, :n_layers, :, :n_r]
        return self.out(F.silu(h + full) * mask)[..., 0], deepest

    def forward(self, x: Tensor, t: Tensor, c: Tensor) -> Tensor:
        e = self.embedding(torch.cat([time_features(t.to(c), self.time_dim), c], dim=1))
        scalars, voxels = x[:, : self.n_scalars], x[:, self.n_scalars :]
        grid = self.grid.to_grid(voxels)
        fractions = scalars[:, -self.grid.n_layers :, None, None].expand_as(grid)
        inputs = torch.stack([grid, self.grid.mask.to(grid).expand_as(grid), fractions], dim=-1)
        field, deepest = self.voxel_field(inputs, e)
        scalar_out = self.scalars(torch.cat([scalars, deepest.mean(dim=(2, 3, 4)), e], dim=1))
        return torch.cat([scalar_out, self.grid.from_grid(field)], dim=1)
