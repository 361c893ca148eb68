"""Families for datasets 2 and 3: cylindrical convolutions, the latent family's autoencoder, the size guard.

Tiny geometries with the ds2/ds3 structure (every layer n_alpha x n_r, alpha periodic) check
that rotating a shower by one alpha bin rotates what the convolutions compute; the size guard
is checked on models built on PyTorch's meta device (nothing of that size is allocated).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caloforge.data.geometry import Geometry, Layer
from caloforge.data.presets import resolve_geometry
from caloforge.data.showers import ShowerSet
from caloforge.errors import ConfigError
from caloforge.models import FAMILIES
from caloforge.models.base import MAX_RUN_BYTES, Batch, check_model_size, run_bytes
from caloforge.models.cylinder import CircularConv3d, CylinderGrid, rotate_alpha
from caloforge.models.diffusion import Diffusion, DiffusionConfig
from caloforge.models.diffusion_unet import CylinderUNet
from caloforge.models.latent import Latent, LatentConfig
from caloforge.models.latent_networks import grid_input
from caloforge.models.preprocess import ConditionScaler, EnergyScaler, Preprocessing, ShowerTransform
from caloforge.training import train

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 40  # autoencoder steps (the error falls well below the 0.3 asserted)
SHAPES = ((6, 4), (6, 4), (6, 4))  # three layers of 6 alpha x 4 r bins: dataset 2's structure, small
CYLINDER = Geometry(tuple(Layer(i, (0.0, 1.0, 2.0, 4.0, 8.0), 6) for i in range(3)), name="cylinder")


def _randomise(module: torch.nn.Module) -> None:
    """Give every parameter random values (the output layers start at zero)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=generator))


def _roll(h: torch.Tensor, shift: int = 1) -> torch.Tensor:
    return h.roll(shift, dims=3)  # (N, C, L, A, R): alpha is dim 3


def _smooth_showers(n: int, seed: int) -> ShowerSet:
    """Showers with a structure a small latent captures: a radial profile of random width, tilted in alpha."""
    rng = np.random.default_rng(seed)
    energies = rng.choice([1000.0, 4000.0, 16000.0], size=n)
    width = rng.uniform(0.5, 2.0, size=(n, 1, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1, 1))
    depth = rng.uniform(0.5, 1.5, size=(n, 1, 1, 1))
    layer = np.arange(3)[None, :, None, None]
    alpha = np.arange(6)[None, None, :, None] * 2 * np.pi / 6
    r = np.array([0.5, 1.5, 3.0, 6.0])[None, None, None, :]
    grid = np.exp(-r / width) * (1 + 0.6 * np.cos(alpha - phase)) * np.exp(-((layer - depth) ** 2))
    grid /= grid.sum(axis=(1, 2, 3), keepdims=True)
    showers = (grid.reshape(n, -1) * energies[:, None] * rng.normal(0.9, 0.02, size=(n, 1))).astype(np.float32)
    return ShowerSet(energies, showers, CYLINDER)


# ------------------------------------------------------------------ circular convolutions
def test_circular_convolution_rotates_with_the_shower():
    conv = CircularConv3d(2, 3)
    h = torch.randn(2, 2, 3, 6, 4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(conv(_roll(h)), _roll(conv(h)))
    # zero padding in layer and r: a shift in r is not a symmetry (the cells at the edge differ)
    assert not torch.allclose(conv(h.roll(1, dims=4)), conv(h).roll(1, dims=4))
    strided = CircularConv3d(2, 3, stride=(1, 2, 1))  # an alpha stride s: rotations by s bins
    assert strided(h).shape == (2, 3, 3, 3, 4)
    torch.testing.assert_close(strided(_roll(h, 2)), _roll(strided(h), 1))


def test_alpha_minus_pi_and_plus_pi_are_neighbours():
    conv = CircularConv3d(1, 1)
    with torch.no_grad():
        conv.conv.weight.zero_()
        conv.conv.weight[0, 0, 1, 0, 1] = 1.0  # output(alpha) = input(alpha - 1)
        conv.conv.bias.zero_()
    h = torch.zeros(1, 1, 1, 6, 1)
    h[0, 0, 0, 5, 0] = 1.0  # the last alpha bin
    assert conv(h)[0, 0, 0, :, 0].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_cylinder_grid_round_trip_and_rotation():
    mixed = CylinderGrid([(2, 3), (1, 2), (4, 1)])  # dataset 1's kind: layers of different shapes
    x = torch.randn(3, 2 * 3 + 2 + 4)
    torch.testing.assert_close(mixed.from_grid(mixed.to_grid(x)), x)
    assert mixed.mask.sum() == 4 * 3 + 4 * 2 + 4 * 1  # cells of real voxels (repeats included)
    uniform = CylinderGrid(SHAPES)
    x = torch.randn(2, 72)
    torch.testing.assert_close(uniform.to_grid(rotate_alpha(x, SHAPES)), uniform.to_grid(x).roll(1, dims=2))


# ------------------------------------------------------------------ latent family
def _latent(data: ShowerSet, **overrides) -> Latent:
    config = LatentConfig(channels=(8, 16), latent_dim=6, prior_width=32, prior_depth=2, time_dim=8,
                          embedding_dim=16, batch_size=64, normalisation_batches=4, sampler_steps=4,
                          lr=3e-3).for_geometry(data.geometry).replace(**overrides)
    torch.manual_seed(0)
    return Latent(config, Preprocessing.fit(data, config.preprocessing))


def test_latent_config_takes_the_layer_shapes_of_the_geometry():
    assert LatentConfig().for_geometry(CYLINDER).layer_shapes == SHAPES
    with pytest.raises(ConfigError, match="layer_shapes"):
        _latent(_smooth_showers(8, 0), layer_shapes=((4, 5), (6, 4), (6, 4)))


def test_latent_encoder_and_decoder_convolutions_rotate_with_the_shower():
    model = _latent(_smooth_showers(8, 0))
    _randomise(model)
    voxels, fractions = torch.randn(4, 72), torch.rand(4, 3)
    encoder, decoder = model.encoder, model.decoder
    h = encoder.trunk(grid_input(encoder.grid, voxels, fractions))
    h_rotated = encoder.trunk(grid_input(encoder.grid, rotate_alpha(voxels, SHAPES), fractions))
    torch.testing.assert_close(h_rotated, _roll(h), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(decoder.expand(_roll(h), fractions), decoder.expand(h, fractions).roll(1, dims=2),
                               rtol=1e-4, atol=1e-4)


def test_latent_autoencoder_learns_to_reconstruct_better_than_the_mean():
    train_set, test_set = _smooth_showers(512, 1), _smooth_showers(128, 2)
    model = _latent(train_set)
    rng = np.random.default_rng(0)

    def batch(data: ShowerSet = train_set, size: int = 64) -> Batch:
        rows = rng.integers(0, len(data), size)
        return Batch(torch.tensor(data.energies[rows], dtype=torch.float32), torch.tensor(data.showers[rows]))

    optimizers = model.configure_optimizers()
    generator = torch.Generator().manual_seed(0)
    first = model.train_step(batch, optimizers, lambda loss: loss.backward(), generator)
    for _ in range(STEPS):
        last = model.train_step(batch, optimizers, lambda loss: loss.backward(), generator)
    assert last["reconstruction"] < 0.5 * first["reconstruction"]
    test = Batch(torch.tensor(test_set.energies, dtype=torch.float32), torch.tensor(test_set.showers))
    x, _ = model.encode(test)
    y = model.space(x)[:, model.n_scalars :]
    train_y = model.space(model.encode(Batch(torch.tensor(train_set.energies, dtype=torch.float32),
                                             torch.tensor(train_set.showers)))[0])[:, model.n_scalars :]
    baseline = float(((y - train_y.mean(dim=0)) ** 2).mean())  # the best shower-independent guess
    reconstructed = model.reconstruct(test)
    x_hat, _ = model.encode(Batch(test.energies, reconstructed))
    error = float(((model.space(x_hat)[:, model.n_scalars :] - y) ** 2).mean())
    assert error < 0.3 * baseline, (error, baseline)
    # the layer energies are not compressed: they come back exactly
    sums = reconstructed.reshape(-1, 3, 24).sum(dim=2)
    torch.testing.assert_close(sums, test.showers.reshape(-1, 3, 24).sum(dim=2), rtol=1e-4, atol=1e-3)
    samples = model.sample(torch.tensor([1000.0, 16000.0]), None, torch.Generator().manual_seed(0))
    assert samples.shape == (2, 72) and torch.isfinite(samples).all() and (samples >= 0).all()


# ------------------------------------------------------------------ diffusion U-Net
def test_unet_velocity_rotates_with_the_shower_and_keeps_the_scalars():
    net = CylinderUNet(4 + 72, 1, SHAPES, 4, channels=4, levels=2, time_dim=8, embedding_dim=8)
    _randomise(net)
    x, t, c = torch.randn(3, 76), torch.rand(3), torch.rand(3, 1)
    rotated = torch.cat([x[:, :4], rotate_alpha(x[:, 4:], SHAPES)], dim=1)
    out, out_rotated = net(x, t, c), net(rotated, t, c)
    torch.testing.assert_close(out_rotated[:, :4], out[:, :4], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out_rotated[:, 4:], rotate_alpha(out[:, 4:], SHAPES), rtol=1e-4, atol=1e-4)


def test_diffusion_picks_the_unet_at_high_granularity(tiny_showers):
    assert DiffusionConfig().network_for(6480) == "unet" and DiffusionConfig().network_for(368) == "mlp"
    assert DiffusionConfig().for_geometry(resolve_geometry("ds2")).layer_shapes == ((16, 9),) * 45
    assert DiffusionConfig().for_geometry(resolve_geometry("ds1-photons")).layer_shapes == ()
    config = DiffusionConfig(network="unet", channels=4, levels=1, time_dim=8, embedding_dim=8, batch_size=16,
                             normalisation_batches=1, sampler_steps=2, layer_shapes=((2, 3), (1, 2)))
    model = Diffusion(config, Preprocessing.fit(tiny_showers, config.preprocessing))
    assert isinstance(model.network, CylinderUNet)
    energies = torch.tensor(tiny_showers.energies[:4], dtype=torch.float32)
    loss = model.loss(Batch(energies, torch.tensor(tiny_showers.showers[:4])))
    assert torch.isfinite(loss)
    assert (model.sample(energies, None, torch.Generator().manual_seed(0)) >= 0).all()


# ------------------------------------------------------------------ size guard
def _preprocessing(geometry: Geometry, kind: str) -> Preprocessing:
    sizes = tuple(layer.n_voxels for layer in geometry.layers)
    scales = {"energy": (1.0,), "layer": (1.0,) * len(sizes), "total": (0.0, 1.0, 0.1)}[kind]
    return Preprocessing(ShowerTransform(kind, sizes, scales), EnergyScaler(1e3, 1e6), ConditionScaler())  # type: ignore[arg-type]


def test_run_bytes_counts_two_checkpoints_with_adam_and_a_bundle():
    assert run_bytes(1000, 10) == 4 * (2 * (3 * 1000 + 10) + 1000 + 10)


@pytest.mark.parametrize("dataset", ["ds2", "ds3"])
def test_flow_at_high_granularity_is_refused_in_one_line_naming_the_family_to_use(dataset):
    geometry = resolve_geometry(dataset)
    flow = FAMILIES["flow"]
    config = flow.config_class.for_cpu("electron")
    with pytest.raises(ConfigError, match="use the family 'latent'") as info:
        check_model_size(flow, config, _preprocessing(geometry, config.preprocessing))
    assert "\n" not in str(info.value) and f"{geometry.n_voxels} voxels" in str(info.value)
    # the same flow on dataset 1 is fine, and loading a bundle is never refused for its disk size
    check_model_size(flow, config, _preprocessing(resolve_geometry("ds1-pions"), config.preprocessing))
    check_model_size(flow, config, _preprocessing(geometry, config.preprocessing), training=False,
                     max_run_bytes=None)


@pytest.mark.parametrize("dataset", ["ds2", "ds3"])
@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_high_granularity_families_fit_the_run_budget(dataset, preset):
    geometry = resolve_geometry(dataset)
    for name in ("latent", "diffusion"):
        config = FAMILIES[name].config_class.for_preset(preset, "electron").for_geometry(geometry)
        n_params = check_model_size(FAMILIES[name], config, _preprocessing(geometry, config.preprocessing))
        assert 4 * 7 * n_params < MAX_RUN_BYTES, (name, n_params)


def test_train_refuses_the_flow_on_dataset_2_before_writing(tmp_path):
    geometry = resolve_geometry("ds2")
    rng = np.random.default_rng(0)
    data = ShowerSet(rng.choice([1e3, 1e4], size=20), rng.gamma(0.3, size=(20, geometry.n_voxels)).astype(np.float32),
                     geometry)
    with pytest.raises(ConfigError, match="latent"):
        train(data, "flow", out_dir=tmp_path / "run", max_iterations=1, progress=False)
    assert not (tmp_path / "run").exists()


def test_cli_names_every_registered_family():
    from caloforge.cli.common import FAMILY

    assert set(FAMILY.split("|")) == set(FAMILIES)
