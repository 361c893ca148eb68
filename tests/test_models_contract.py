"""One contract over every registered model family (STYLE.md rule 13).

Each family provides a tiny config in ``TINY_CONFIGS`` of tests/families.py (a family without an entry uses
its defaults); registering a family in caloforge.models.FAMILIES enrols it here. A family fitted
without gradients (class attribute ``trained_by_gradient = False``, e.g. the parametric
baseline) is checked for what it does instead: no parameter asks for a gradient, no optimiser,
and a training step changes its fitted statistics (buffers) and parameters.
"""

from __future__ import annotations

import math

import pytest
import torch

from caloforge.errors import ConfigError
from caloforge.models import DISTILLED, FAMILIES, GAN, GANConfig, get_family, register_family
from caloforge.models.preprocess import Preprocessing
from caloforge.training.bundle import load
from caloforge.training.bundle_format import save_model
from families import batch_of, tiny_config
from synthetic import make_showers


@pytest.fixture(params=sorted(FAMILIES))
def family_name(request):
    return request.param


@pytest.fixture
def data(tiny_geometry):
    return make_showers(tiny_geometry, 64, seed=2, energies=(500.0, 2000.0, 8000.0))


@pytest.fixture
def model(family_name, data):
    config = tiny_config(family_name)
    torch.manual_seed(0)
    return FAMILIES[family_name](config, Preprocessing.fit(data, config.preprocessing))


def _trained_by_gradient(model):
    return getattr(type(model), "trained_by_gradient", True)


def test_training_step_gives_finite_loss_and_gradients(model, data):
    loss = model.loss(batch_of(data), torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    if not _trained_by_gradient(model):  # fitted, not trained: and it must not pretend otherwise
        assert not any(p.requires_grad for p in model.parameters())
        assert model.configure_optimizers() == []
        return
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


def test_train_step_updates_parameters(model, data):
    before = [p.detach().clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    logs = model.train_step(lambda: batch_of(data), model.configure_optimizers(), lambda loss: loss.backward(),
                            torch.Generator().manual_seed(0))
    assert logs and all(isinstance(v, float) for v in logs.values())
    assert set(logs) == set(model.loss_names)  # the CSV log's columns are declared up front
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    if not _trained_by_gradient(model):  # the step accumulated statistics
        assert any(not torch.equal(a, b) for a, b in zip(buffers, model.buffers(), strict=True))


def test_samples_shape_finite_non_negative(model, data):
    e = torch.tensor([500.0, 2000.0, 8000.0, 1000.0])
    x = model.sample(e, None, torch.Generator().manual_seed(1))
    assert x.shape == (4, data.geometry.n_voxels)
    assert torch.isfinite(x).all() and (x >= 0).all()


def test_same_seed_same_samples(model):
    e = torch.tensor([500.0, 8000.0])
    a = model.sample(e, None, torch.Generator().manual_seed(5))
    b = model.sample(e, None, torch.Generator().manual_seed(5))
    c = model.sample(e, None, torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)


def test_bundle_round_trip_gives_same_samples(family_name, model, data, tmp_path):
    model.train_step(lambda: batch_of(data), model.configure_optimizers(), lambda loss: loss.backward())
    save_model(tmp_path / "b", model, family_name, data.geometry)
    bundle = load(tmp_path / "b")
    energies = [500.0, 2000.0, 8000.0]
    ours = model.sample(torch.tensor(energies, dtype=torch.float64), None, torch.Generator().manual_seed(3))
    theirs = bundle.generate(energies, device="cpu", seed=3)
    torch.testing.assert_close(torch.tensor(theirs.showers), ours.float())
    assert bundle.models[0].config == model.config


def test_config_round_trips_and_rejects_unknown_keys(family_name):
    config = tiny_config(family_name)
    assert type(config).from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown"):
        type(config).from_dict({"no_such_key": 1})


def test_repr(model, family_name):
    text = repr(model)
    assert type(model).__name__ in text and "n_features" in text


def test_unknown_family_lists_valid_names():
    with pytest.raises(ConfigError, match="gan"):
        get_family("diffusion-transformer")


def test_register_family_enrols_and_rejects_non_models():
    class Tiny(GAN):
        pass

    register_family("tiny-gan", Tiny)
    try:
        assert get_family("tiny-gan") is Tiny
        with pytest.raises(ConfigError, match="already registered"):
            register_family("tiny-gan", Tiny)
    finally:
        del FAMILIES["tiny-gan"]
    with pytest.raises(ConfigError, match="GenerativeModel"):
        register_family("bad", dict)  # type: ignore[arg-type]


@pytest.mark.parametrize(("particle", "n_voxels", "expected"),
                         [("photon", 368, (261e3, 408e3)), ("pion", 533, (871e3, 829e3))])
def test_caloshowergan_parameter_counts(particle, n_voxels, expected):
    from caloforge.models.preprocess import ConditionScaler, EnergyScaler, ShowerTransform

    p = Preprocessing(ShowerTransform("energy", (n_voxels,), (1.0,)), EnergyScaler(256.0, 4194304.0),
                      ConditionScaler())
    gan = GAN(GANConfig.for_particle(particle), p)
    n_gen = sum(q.numel() for q in gan.generator.parameters())
    n_critic = sum(q.numel() for q in gan.critic.parameters())
    assert n_gen == pytest.approx(expected[0], rel=0.005)
    assert n_critic == pytest.approx(expected[1], rel=0.005)


def test_gan_config_validation():
    with pytest.raises(ConfigError, match="activation"):
        GANConfig(activation="tanh")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="critic_steps"):
        GANConfig(critic_steps=0)
    with pytest.raises(ConfigError, match="particle"):
        GANConfig.for_particle("neutrino")
    assert GANConfig().replace(batch_size=64).batch_size == 64


@pytest.mark.parametrize("scale", [0.0, -1.0, math.nan, math.inf])
def test_energy_scale_must_be_positive(family_name, data, scale):
    config = tiny_config(family_name)
    with pytest.raises(ConfigError, match="energy_scale"):
        config.replace(energy_scale=scale)
    with pytest.raises(ConfigError, match="energy_scale"):
        type(config).from_dict({"energy_scale": scale})
    if not math.isinf(scale):
        with pytest.raises(ConfigError, match="positive scale"):  # no silent fallback to 1.0
            Preprocessing.fit(data, "energy", scale)
    assert config.replace(energy_scale=2).energy_scale == 2.0
    assert Preprocessing.fit(data, "energy", 2.0).showers.scales == (2.0,)


def test_distilled_families_are_excluded_with_their_own_tests():
    """The families of DISTILLED (the one-pass flow student) are made from a trained model, not from showers alone,
    so this contract, which trains each family on data, leaves them out; tests/test_flow_student.py checks their
    training (distillation), one-pass sampling, seeds, bundles and the generate path."""
    assert DISTILLED and set(DISTILLED).isdisjoint(FAMILIES)
    assert all(get_family(name) is family for name, family in DISTILLED.items())
