"""The latent decoder's fused pointwise tail and blocked sampling give the showers of the plain forms.

The tail (:meth:`ConvDecoder.tail`) computes ``out(silu(head([silu(unpatches(unpatch(h))), mask,
layer fraction])))`` on the patches, with the un-patching folded into the weights and the head's
weight split; here the plain form is written out with the same parameters and both are compared
on every voxel (a bundle saved before the fusion has these parameters, so it decodes the same).
Sampling decodes in blocks of ``decode_rows`` showers; a block size must not change a shower.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from caloforge.data.geometry import Geometry, Layer
from caloforge.data.showers import ShowerSet
from caloforge.models.base import Batch
from caloforge.models.cylinder import CylinderGrid, unpatches
from caloforge.models.latent import Latent, LatentConfig
from caloforge.models.latent_networks import ConvDecoder, ConvEncoder
from caloforge.models.preprocess import Preprocessing

pytestmark = pytest.mark.usefixtures("one_thread")

# 5 layers (padded to 6 by the layer patch), r padded 5 -> 6, alpha 8 and 4 bins (a coarser layer is repeated)
UNEVEN = ((8, 5), (8, 5), (4, 3), (8, 5), (8, 4))


def _plain_tail(decoder: ConvDecoder, h: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """The tail as written before the fusion: un-patch, crop, concatenate the mask and the layer fraction."""
    n_layers, n_alpha, n_r = decoder.grid.size
    u = decoder.unpatch(h.permute(0, 2, 3, 4, 1))
    u = F.silu(unpatches(u, decoder.patch)[:, :n_layers, :n_alpha, :n_r])
    mask = decoder.grid.mask.to(u)[None, :, :, :, None].expand(u.shape[0], -1, -1, -1, 1)
    layer = fractions[:, :, None, None, None].expand_as(mask)
    out: torch.Tensor = decoder.out(F.silu(decoder.head(torch.cat([u, mask, layer], dim=4))))[..., 0]
    return out


def _decoder(shapes: tuple[tuple[int, int], ...], channels: tuple[int, ...]) -> ConvDecoder:
    grid = CylinderGrid(shapes)
    encoder = ConvEncoder(grid, 6, channels)
    decoder = ConvDecoder(grid, 6, 1 + len(shapes), channels, encoder.sizes, encoder.patch)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in decoder.parameters():  # the output layer starts at zero: random values everywhere
            p.copy_(0.5 * torch.randn(p.shape, generator=generator))
    return decoder


@pytest.mark.parametrize("channels", [(4, 8), (8, 16), (16, 16)])  # head products on 4, 2 and 1 patch positions
@pytest.mark.parametrize("shapes", [UNEVEN, ((8, 5),) * 5, ((6, 4),) * 3])
def test_the_fused_tail_gives_the_plain_forms_voxels(shapes, channels):
    decoder = _decoder(shapes, channels)
    generator = torch.Generator().manual_seed(1)
    h = torch.randn(5, channels[0], *decoder.sizes[1], generator=generator)
    fractions = torch.rand(5, len(shapes), generator=generator)
    grid = decoder.grid
    with torch.no_grad():
        plain = grid.from_grid(_plain_tail(decoder, h, fractions))
        fused = grid.from_grid(decoder.tail(h, fractions))
    assert fused.shape == (5, grid.n_voxels) and float(plain.std()) > 0.1
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
    # the patch position, alpha and layer order matter: a wrongly folded permutation would not match
    assert not torch.allclose(fused, grid.from_grid(_plain_tail(decoder, h.roll(1, dims=2), fractions).detach()),
                              atol=1e-3)
    # with gradients (training) the same values, and the gradients of the plain form
    h.requires_grad_(True)
    plain_grad = torch.autograd.grad(grid.from_grid(_plain_tail(decoder, h, fractions)).square().sum(), h)[0]
    fused_out = grid.from_grid(decoder.tail(h, fractions))
    fused_grad = torch.autograd.grad(fused_out.square().sum(), h)[0]
    torch.testing.assert_close(fused_out.detach(), plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused_grad, plain_grad, rtol=1e-4, atol=1e-4)


def _latent() -> Latent:
    geometry = Geometry(tuple(Layer(i, (0.0, 1.0, 2.0, 3.0, 4.0, 6.0), a) for i, a in enumerate((8, 8, 4, 8, 8))),
                        name="uneven")
    rng = np.random.default_rng(0)
    energies = rng.choice([1000.0, 4000.0], size=64)
    showers = rng.gamma(0.5, 1.0, size=(64, geometry.n_voxels)).astype(np.float32)
    data = ShowerSet(energies, showers, geometry)
    config = LatentConfig(channels=(8, 16), latent_dim=6, prior_width=16, prior_depth=1, time_dim=8,
                          embedding_dim=8, sampler_steps=2).for_geometry(geometry)
    torch.manual_seed(0)
    model = Latent(config, Preprocessing.fit(data, config.preprocessing))
    with torch.no_grad():  # a fitted-looking space and random weights: showers that differ per row
        model.space.fit(model.encode(_batch(data))[0])
        generator = torch.Generator().manual_seed(2)
        for p in model.decoder.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=generator))
    return model.eval()


def _batch(data: ShowerSet) -> Batch:
    return Batch(torch.tensor(data.energies, dtype=torch.float32), torch.tensor(data.showers))


def test_sampling_in_blocks_gives_the_whole_batch_showers(monkeypatch):
    """Decoding in blocks of decode_rows, and sampling in blocks of sample_block_rows: the same showers."""
    model = _latent()
    energies = torch.as_tensor(np.geomspace(1000.0, 4000.0, 70))
    assert Latent.decode_rows < 70 and Latent.sample_block_rows is not None
    monkeypatch.setattr(Latent, "sample_block_rows", 32)  # 2 full blocks and a partial one
    monkeypatch.setattr(Latent, "decode_rows", 5)  # in each: 6 or 7 decoder calls, the last one partial
    blocked = model.sample(energies, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(Latent, "sample_block_rows", None)
    monkeypatch.setattr(Latent, "decode_rows", 1000)
    whole = model.sample(energies, generator=torch.Generator().manual_seed(3))
    assert blocked.shape == (70, model.n_voxels) and float(whole.std(dim=0).min()) >= 0
    assert float((whole - whole[:1]).abs().max()) > 0  # the rows differ
    torch.testing.assert_close(blocked, whole, rtol=1e-5, atol=1e-6 * float(whole.abs().max()))
    other = model.sample(energies, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(other, whole)  # the seed still matters
