"""The flow family: its transforms invert exactly, its densities are normalised, sampling is one pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from caloforge.data.datasets import DATASETS
from caloforge.data.geometry import Geometry, Layer
from caloforge.data.presets import resolve_geometry
from caloforge.data.showers import ShowerSet
from caloforge.errors import ConfigError
from caloforge.models.base import Batch
from caloforge.models.flow import CouplingFlow, Flow, FlowConfig
from caloforge.models.flow_transforms import (
    ShowerFeatures,
    Standardiser,
    logit_alpha,
    logit_alpha_ladj,
    sigmoid_alpha,
)
from caloforge.models.preprocess import Preprocessing
from caloforge.validation.features import readout_threshold
from synthetic import make_showers

TINY = FlowConfig(coupling="affine", blocks=2, hidden=(16,), energy_blocks=2, energy_hidden=(8,), knots=3,
                  batch_size=32, init_batches=2)


def _sparse_showers(n=200, sizes=(6, 2, 1), seed=0):
    """Voxels that are empty, below the 1 MeV threshold, or well above it."""
    rng = np.random.default_rng(seed)
    values = rng.exponential(20.0, size=(n, sum(sizes)))
    kind = rng.random((n, sum(sizes)))
    values[kind < 0.4] = 0.0
    values[(kind >= 0.4) & (kind < 0.5)] = 0.3  # below the threshold: removed by the readout
    return torch.tensor(values, dtype=torch.float64)


def test_dequantise_then_readout_is_exact():
    f = ShowerFeatures((6, 2, 1), threshold=1.0, noise=0.5, alpha=1e-6)
    s = _sparse_showers()
    noisy = f.dequantise(s, torch.Generator().manual_seed(0))
    clean = f.readout(s)
    assert torch.equal(f.readout(noisy), clean)
    empty = clean == 0
    assert (noisy[empty] > 0).all() and (noisy[empty] < 0.5).all()  # noise only on empty voxels, below 0.5 MeV
    assert torch.equal(noisy[~empty], clean[~empty])


@pytest.mark.parametrize("noise", [0.01, 1.0])
def test_features_invert_to_the_same_showers(noise):
    f = ShowerFeatures((6, 2, 1), threshold=1.0, noise=noise, alpha=1e-6)
    s = _sparse_showers()
    e = torch.full((s.shape[0],), 500.0, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    noisy = f.dequantise(s, g)
    clean_layers = f.layer_sums(f.readout(s))
    layers = f.dequantise_layers(clean_layers, g)
    assert (clean_layers == 0).any() and (layers > 0).all()
    y, x = f.energy_features(layers, e), f.pattern_features(noisy)
    assert y.shape == (200, 3) and x.shape == (200, 8)  # the one-voxel layer has no pattern feature
    assert torch.isfinite(y).all() and torch.isfinite(x).all()
    torch.testing.assert_close(f.layer_energies(y, e), layers, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(f.readout_layers(f.layer_energies(y, e)), clean_layers, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(f.showers(x, clean_layers), f.readout(s), rtol=1e-9, atol=1e-12)


def test_showers_hold_the_layer_energies_of_flow_one():
    f = ShowerFeatures((6, 2), threshold=1.0, noise=0.5, alpha=1e-6)
    g = torch.Generator().manual_seed(2)
    pattern = torch.randn(500, 8, generator=g, dtype=torch.float64) * 3 - 4
    layers = torch.rand(500, 2, generator=g, dtype=torch.float64) * 40
    layers[layers < 1.0] = 0.0
    showers = f.showers(pattern, layers)
    assert ((showers == 0) | (showers >= 1.0 - 1e-9)).all()
    torch.testing.assert_close(f.layer_sums(showers), layers, rtol=1e-9, atol=1e-9)


def test_logit_alpha_inverse_and_log_determinant():
    p = torch.linspace(0, 1, 101, dtype=torch.float64)
    alpha = 1e-6
    torch.testing.assert_close(sigmoid_alpha(logit_alpha(p, alpha), alpha), p, rtol=0, atol=1e-12)
    q = p.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(logit_alpha(q, alpha).sum(), q)
    torch.testing.assert_close(logit_alpha_ladj(p, alpha), grad.log())


def test_standardiser_interpolates_in_energy_and_inverts():
    s = Standardiser(2, knots=3)
    x = torch.tensor([[0.0, 0.0]])
    torch.testing.assert_close(s(x, torch.tensor([0.3])), x)  # the identity before it has seen data
    g = torch.Generator().manual_seed(0)
    e_hat = torch.tensor([0.0, 0.5, 1.0]).repeat(400)
    data = torch.randn(1200, 2, generator=g) * (1 + 9 * e_hat[:, None]) + 100 * e_hat[:, None]
    s.fit_once(data, e_hat)
    z = s(data, e_hat)
    for knot in (0.0, 0.5, 1.0):  # standardised at every knot energy
        rows = z[e_hat == knot]
        assert rows.mean(dim=0).abs().max() < 1e-5 and (rows.std(dim=0) - 1).abs().max() < 1e-2
    torch.testing.assert_close(s.inverse(z, e_hat), data, rtol=1e-5, atol=1e-4)
    e = torch.tensor([0.25, 0.9])
    torch.testing.assert_close(s.mean[0] * 0.5 + s.mean[1] * 0.5, s.inverse(torch.zeros(2, 2), e)[0])
    jac = torch.autograd.functional.jacobian(lambda v: s(v.unsqueeze(0), e[:1]).squeeze(0), torch.zeros(2))
    torch.testing.assert_close(s.log_abs_det_jacobian(e[:1])[0], torch.logdet(jac))
    before = s.mean.clone()
    s.fit_once(data + 5, e_hat)  # fitted once only
    assert torch.equal(s.mean, before)


def test_a_knot_without_showers_is_interpolated_from_its_neighbours_not_from_all_energies():
    """An energy held out of training (dataset 1's 65.5 GeV, at a knot of its own): its mean and spread come
    from the knots either side, not from every energy at once (which made the flow's response there 10x too
    wide, docs/results.md "The flow on cascade data: it does not interpolate")."""
    s = Standardiser(1, knots=5)
    g = torch.Generator().manual_seed(1)
    e_hat = torch.tensor([0.0, 0.25, 0.75, 1.0]).repeat(500)  # no showers at the middle knot (0.5)
    spread = torch.tensor([8.0, 4.0, 0.0, 2.0, 1.0])[(e_hat * 4).round().long()]
    s.fit_once(100 * e_hat[:, None] + spread[:, None] * torch.randn(2000, 1, generator=g), e_hat)
    assert s.mean[2, 0] == pytest.approx(50.0, abs=0.5)  # between 25 and 75; all energies also give 50
    assert s.std[2, 0] == pytest.approx(3.0, rel=0.05)  # between 4 and 2; all energies together: about 38
    edge = Standardiser(1, knots=3)
    edge.fit_once(torch.tensor([[1.0], [3.0]]), torch.tensor([0.5, 0.5]))  # showers at the middle knot only
    assert edge.mean[:, 0].tolist() == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("coupling", ["affine", "spline"])
@pytest.mark.parametrize("features", [1, 3])
def test_coupling_flow_density_is_the_change_of_variables(coupling, features):
    torch.manual_seed(0)
    flow = CouplingFlow(features, 2, blocks=3, hidden=(8,), coupling=coupling, bins=4, bound=5.0, seed=0).double()
    for block in flow.blocks:  # leave the identity start: random last layers
        torch.nn.init.normal_(block.hyper[-1].weight, std=0.3)
    x = torch.randn(features, dtype=torch.float64)
    c = torch.randn(1, 2, dtype=torch.float64)
    to_base = lambda v: flow.transform(c)(v.unsqueeze(0)).squeeze(0)  # noqa: E731
    z = to_base(x)
    jac = torch.autograd.functional.jacobian(to_base, x)
    expected = -0.5 * (z.square().sum() + features * math.log(2 * math.pi)) + torch.linalg.slogdet(jac)[1]
    torch.testing.assert_close(flow.log_prob(x.unsqueeze(0), c)[0], expected)
    torch.testing.assert_close(flow.sample(z.unsqueeze(0), c)[0], x)  # the sampling direction inverts it


def test_coupling_flow_integrates_to_one():
    torch.manual_seed(1)
    flow = CouplingFlow(1, 1, blocks=2, hidden=(8,), coupling="spline", bins=4, bound=5.0, seed=0).double()
    for block in flow.blocks:
        torch.nn.init.normal_(block.hyper[-1].weight, std=0.5)
    x = torch.linspace(-12, 12, 20001, dtype=torch.float64).unsqueeze(1)
    with torch.no_grad():
        density = flow.log_prob(x, torch.full((x.shape[0], 1), 0.3, dtype=torch.float64)).exp()
    assert float(torch.trapezoid(density, x.squeeze(1))) == pytest.approx(1.0, abs=1e-3)


def _preprocessing(geometry, n=48):
    data = make_showers(geometry, n, seed=3, energies=(500.0, 2000.0, 8000.0))
    return data, Preprocessing.fit(data, "energy")


@pytest.mark.parametrize("design", ["split", "joint"])
def test_sampling_is_one_pass_per_block(tiny_geometry, design):
    _, p = _preprocessing(tiny_geometry)
    model = Flow(TINY.replace(design=design), p)
    calls = []
    for module in model.modules():
        if hasattr(module, "hyper"):
            module.hyper.register_forward_hook(lambda *_: calls.append(1))
    blocks = sum(len(f.blocks) for f in (model.energy_flow, model.shower_flow) if f is not None)
    for n in (3, 40):
        calls.clear()
        model.sample(torch.full((n,), 1000.0), None, torch.Generator().manual_seed(0))
        assert len(calls) == blocks  # whatever the number of showers or voxels
    assert blocks == (4 if design == "split" else 2)


def test_samples_respect_the_readout_threshold(tiny_geometry):
    data, p = _preprocessing(tiny_geometry)
    model = Flow(TINY.replace(threshold=5.0), p)
    batch = Batch(torch.tensor(data.energies, dtype=torch.float32), torch.tensor(data.showers))
    opt = model.configure_optimizers()
    for _ in range(3):
        model.train_step(lambda: batch, opt, lambda loss: loss.backward(), torch.Generator().manual_seed(0))
    x = model.sample(torch.full((200,), 2000.0), None, torch.Generator().manual_seed(2))
    assert ((x == 0) | (x >= 5.0 * (1 - 1e-5))).all()
    assert (x > 0).any()


def test_first_step_sets_the_standardisation_from_several_batches(tiny_geometry):
    data, p = _preprocessing(tiny_geometry)
    model = Flow(TINY.replace(init_batches=3), p)
    drawn = []

    def next_batch():
        drawn.append(1)
        return Batch(torch.tensor(data.energies, dtype=torch.float32), torch.tensor(data.showers))

    assert not bool(model.standardise.initialised)
    logs = model.train_step(next_batch, model.configure_optimizers(), lambda loss: loss.backward(),
                            torch.Generator().manual_seed(0))
    assert bool(model.standardise.initialised) and len(drawn) == 4 and math.isfinite(logs["loss"])
    model.train_step(next_batch, model.configure_optimizers(), lambda loss: loss.backward())
    assert len(drawn) == 5


def test_one_layer_and_one_voxel_layers():
    geometry = Geometry((Layer(0, (0.0, 1.0, 2.0), 1), Layer(1, (0.0, 3.0), 1)), name="odd")
    data = make_showers(geometry, 40, seed=4)
    for design in ("split", "joint"):
        model = Flow(TINY.replace(design=design), Preprocessing.fit(data, "energy"))
        assert model.n_pattern == 2  # the one-voxel layer has no pattern feature
        loss = model.loss(Batch(torch.tensor(data.energies, dtype=torch.float32), torch.tensor(data.showers)))
        assert torch.isfinite(loss)
    single = Geometry((Layer(0, (0.0, 2.0), 1),), name="single")
    one = ShowerSet(np.array([100.0, 200.0]), np.array([[50.0], [80.0]]), single)
    model = Flow(TINY.replace(design="split"), Preprocessing.fit(one, "energy"))
    assert model.shower_flow is None
    x = model.sample(torch.tensor([100.0, 200.0]), None, torch.Generator().manual_seed(0))
    assert x.shape == (2, 1) and torch.isfinite(x).all()


@pytest.mark.parametrize("preset", ["ds1-photons", "ds1-pions", "ds2", "ds3"])
def test_readout_threshold_is_the_geometrys(preset):
    geometry = resolve_geometry(preset)
    config = FlowConfig.for_particle(geometry.particle)
    assert config.threshold is None  # not decided by the particle
    assert config.for_geometry(geometry).threshold == DATASETS[preset].readout_threshold_mev \
        == readout_threshold(geometry)  # the evaluation's readout, from one table
    assert config.replace(threshold=0.5).for_geometry(geometry).threshold == 0.5  # a value given is kept


def test_readout_threshold_of_a_custom_geometry_or_a_flow_built_directly(tiny_geometry):
    assert FlowConfig().for_geometry(tiny_geometry).threshold == 1.0
    _, p = _preprocessing(tiny_geometry)
    assert Flow(TINY.replace(threshold=None), p).shower_features.threshold == 1.0


def test_config_presets_and_validation():
    assert FlowConfig.for_cpu("pion").design == "split" and FlowConfig.for_cpu("pion").coupling == "spline"
    with pytest.raises(ConfigError, match="particle"):
        FlowConfig.for_particle("neutrino")
    with pytest.raises(ConfigError, match="noise"):
        FlowConfig(noise=0.0)
    with pytest.raises(ConfigError, match="design"):
        FlowConfig(design="three")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="threshold"):
        ShowerFeatures((2,), threshold=0.0, noise=0.1, alpha=1e-6)
