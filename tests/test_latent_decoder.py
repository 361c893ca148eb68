"""The latent decoder's fused pointwise tail and blocked sampling give the showers of the plain forms.

The tail (:meth:`ConvDecoder.tail`) computes ``out(silu(head([silu(unpatches(unpatch(h))), mask,
layer fraction])))`` on the patches, with the un-patching folded into the weights and the head's
weight split; here the plain form is written out with the same parameters and both are compared
on every voxel (a bundle saved before the fusion has these parameters, so it decodes the same).
Sampling decodes in blocks of ``decode_rows`` showers; a block size must not change a shower. The
``zero_inflated`` voxel model's draws follow the distribution its likelihood scores.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from caloforge.data.geometry import Geometry, Layer
from caloforge.data.showers import ShowerSet
from caloforge.models.base import Batch
from caloforge.models.cylinder import CylinderGrid, unpatches
from caloforge.models.latent import Latent, LatentConfig, zero_inflated_nll
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
    out: torch.Tensor = decoder.out(F.silu(decoder.head(torch.cat([u, mask, layer], dim=4))))
    return out[..., 0] if decoder.outputs == 1 else out.permute(0, 4, 1, 2, 3)


def _stacked(grid: torch.Tensor) -> torch.Tensor:
    """(N, k, L, A, R) -> (N, k * L, A, R); a one-channel (N, L, A, R) as it is."""
    return grid.flatten(1, 2) if grid.dim() == 5 else grid


def _decoder(shapes: tuple[tuple[int, int], ...], channels: tuple[int, ...], outputs: int = 1) -> ConvDecoder:
    grid = CylinderGrid(shapes)
    encoder = ConvEncoder(grid, 6, channels)
    decoder = ConvDecoder(grid, 6, 1 + len(shapes), channels, encoder.sizes, encoder.patch, outputs)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in decoder.parameters():  # the output layer starts at zero: random values everywhere
            p.copy_(0.5 * torch.randn(p.shape, generator=generator))
    return decoder


@pytest.mark.parametrize("outputs", [1, 3])  # one value, or a distribution's three parameters, per voxel
@pytest.mark.parametrize("channels", [(4, 8), (8, 16), (16, 16)])  # head products on 4, 2 and 1 patch positions
@pytest.mark.parametrize("shapes", [UNEVEN, ((8, 5),) * 5, ((6, 4),) * 3])
def test_the_fused_tail_gives_the_plain_forms_voxels(shapes, channels, outputs):
    decoder = _decoder(shapes, channels, outputs)
    generator = torch.Generator().manual_seed(1)
    h = torch.randn(5, channels[0], *decoder.sizes[1], generator=generator)
    fractions = torch.rand(5, len(shapes), generator=generator)
    grid = CylinderGrid(shapes * outputs)  # the k channels side by side as layers: the checks read all of them
    with torch.no_grad():
        plain = grid.from_grid(_stacked(_plain_tail(decoder, h, fractions)))
        fused = grid.from_grid(_stacked(decoder.tail(h, fractions)))
    assert fused.shape == (5, grid.n_voxels) and float(plain.std()) > 0.1
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
    # the patch position, alpha and layer order matter: a wrongly folded permutation would not match
    rolled = _stacked(_plain_tail(decoder, h.roll(1, dims=2), fractions).detach())
    assert not torch.allclose(fused, grid.from_grid(rolled), atol=1e-3)
    # with gradients (training) the same values, and the gradients of the plain form
    h.requires_grad_(True)
    plain_out = grid.from_grid(_stacked(_plain_tail(decoder, h, fractions)))
    plain_grad = torch.autograd.grad(plain_out.square().sum(), h)[0]
    fused_out = grid.from_grid(_stacked(decoder.tail(h, fractions)))
    fused_grad = torch.autograd.grad(fused_out.square().sum(), h)[0]
    torch.testing.assert_close(fused_out.detach(), plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused_grad, plain_grad, rtol=1e-4, atol=1e-4)


def _latent(voxel_model: str = "mean", alphas: tuple[int, ...] = (8, 8, 4, 8, 8)) -> Latent:
    geometry = Geometry(tuple(Layer(i, (0.0, 1.0, 2.0, 3.0, 4.0, 6.0), a) for i, a in enumerate(alphas)),
                        name="uneven")
    rng = np.random.default_rng(0)
    energies = rng.choice([1000.0, 4000.0], size=64)
    showers = rng.gamma(0.5, 1.0, size=(64, geometry.n_voxels)).astype(np.float32)
    data = ShowerSet(energies, showers, geometry)
    config = LatentConfig(channels=(8, 16), latent_dim=6, prior_width=16, prior_depth=1, time_dim=8,
                          embedding_dim=8, sampler_steps=2, voxel_model=voxel_model).for_geometry(geometry)
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


@pytest.mark.parametrize("voxel_model", ["mean", "zero_inflated"])
def test_sampling_in_blocks_gives_the_whole_batch_showers(monkeypatch, voxel_model):
    """Decoding in blocks of decode_rows, and sampling in blocks of sample_block_rows: the same showers."""
    model = _latent(voxel_model)
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


def test_zero_inflated_draws_follow_the_distribution_its_likelihood_scores():
    """Hits at rate p, logistic amplitudes; the mean negative log-likelihood of the draws is their entropy."""
    model = _latent("zero_inflated")
    n, v = 4000, model.n_voxels
    p, loc, scale = 0.3, 1.5, 0.7
    params = torch.stack([torch.full((n, v), math.log(p / (1 - p))), torch.full((n, v), loc),
                          torch.full((n, v), math.log(scale))], dim=1)
    y = model.draw_voxels(params, torch.randn(n, v, generator=torch.Generator().manual_seed(5)))
    hit = y > -100  # empty voxels are set far below any amplitude
    rate = float(hit.float().mean())
    assert rate == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / hit.numel()))
    amplitudes = y[hit].double().numpy()
    assert stats.kstest(amplitudes[:20_000], stats.logistic(loc, scale).cdf).pvalue > 1e-3
    entropy = -(p * math.log(p) + (1 - p) * math.log(1 - p)) + p * (math.log(scale) + 2)  # per voxel, nats
    nll = float(zero_inflated_nll(params, y, hit))
    assert nll == pytest.approx(entropy, abs=0.01)
    for wrong in ((0, 0.4), (1, 0.4), (2, 0.4)):  # any other parameters score the draws worse (Gibbs)
        shifted = params.clone()
        shifted[:, wrong[0]] += wrong[1]
        assert float(zero_inflated_nll(shifted, y, hit)) > nll + 0.005


@pytest.mark.parametrize("alphas", [(8, 8, 4, 8, 8), (8, 8, 8)])  # layers of two sizes; of one (a reshape)
def test_zero_inflated_samples_have_empty_voxels_and_a_hit_in_every_layer(alphas):
    model = _latent("zero_inflated", alphas)
    n, v = 50, model.n_voxels
    params = torch.stack([torch.full((n, v), -30.0), torch.zeros(n, v), torch.zeros(n, v)], dim=1)
    params[:, 0] += torch.linspace(0, 1, v)  # the last voxel of each layer is its most probable
    y = model.draw_voxels(params, torch.randn(n, v, generator=torch.Generator().manual_seed(6)))
    hit = y > -100
    ends = np.cumsum(model.preprocessing.showers.layer_sizes) - 1
    assert hit.sum(dim=1).tolist() == [len(ends)] * n and bool(hit[:, ends].all())  # one hit per layer, the top one
    showers = model.sample(torch.full((30,), 2000.0), generator=torch.Generator().manual_seed(7))
    assert float((showers == 0).float().mean()) > 0.05  # exact zeros, as in data (the mean model has none)
