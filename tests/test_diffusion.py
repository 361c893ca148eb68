"""The diffusion family: probability paths checked analytically, samplers through a common mixin, the model."""

from __future__ import annotations

import math
from typing import ClassVar

import pytest
import torch

from caloforge.errors import ConfigError
from caloforge.models.base import Batch
from caloforge.models.diffusion import SAMPLER_PRESETS, Diffusion, DiffusionConfig, LogitSpace
from caloforge.models.diffusion_networks import ResidualMLP, VoxelConv, time_features
from caloforge.models.diffusion_samplers import SAMPLERS, get_sampler, time_grid
from caloforge.models.diffusion_schedules import SCHEDULES, get_schedule, training_times
from caloforge.models.preprocess import Preprocessing
from caloforge.training.bundle import load
from caloforge.training.bundle_format import save_model
from synthetic import make_showers

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
TINY = DiffusionConfig(width=16, depth=2, time_dim=8, embedding_dim=8, batch_size=32, normalisation_batches=2,
                       sampler_steps=3)


@pytest.fixture(params=sorted(SCHEDULES))
def schedule(request):
    return get_schedule(request.param)


@pytest.fixture
def data(tiny_geometry):
    return make_showers(tiny_geometry, 64, seed=2, energies=(500.0, 2000.0, 8000.0))


def _batch(data):
    return Batch(torch.tensor(data.energies, dtype=torch.float32), torch.tensor(data.showers))


def _model(data, config=TINY):
    torch.manual_seed(0)
    return Diffusion(config, Preprocessing.fit(data, config.preprocessing))


# ----------------------------------------------------------------- schedules
def test_schedule_endpoints_and_monotone_signal(schedule):
    t = torch.linspace(0, 1, 101, dtype=F64)
    assert schedule.alpha(t[:1]).item() == 1.0 and schedule.sigma(t[:1]).item() == 0.0
    assert schedule.alpha(t[-1:]).item() == pytest.approx(0.0, abs=1e-12)
    assert schedule.sigma(t[-1:]).item() == pytest.approx(1.0)
    assert (schedule.alpha_bar(t).diff() < 0).all()  # signal fraction strictly decreasing
    snr = schedule.snr(t)
    assert math.isinf(snr[0]) and snr[-1] < 1e-20 and (snr.diff() < 0).all()


def test_schedule_derivatives_match_autograd(schedule):
    t = torch.linspace(0.01, 0.99, 17, dtype=F64, requires_grad=True)
    for f, df in ((schedule.alpha, schedule.d_alpha), (schedule.sigma, schedule.d_sigma)):
        (grad,) = torch.autograd.grad(f(t).sum(), t)
        torch.testing.assert_close(df(t.detach()), grad)


def test_time_at_inverts_the_half_log_snr(schedule):
    t = torch.linspace(0.001, 0.999, 50, dtype=F64)
    torch.testing.assert_close(schedule.time_at(schedule.half_log_snr(t)), t)


def test_path_interpolates_from_data_to_noise_and_split_inverts_it(schedule):
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 4, generator=g, dtype=F64), torch.randn(6, 4, generator=g, dtype=F64)
    torch.testing.assert_close(schedule.add_noise(x0, noise, torch.zeros(6, dtype=F64)), x0)
    torch.testing.assert_close(schedule.add_noise(x0, noise, torch.ones(6, dtype=F64)), noise, atol=1e-12, rtol=0)
    t = torch.rand(6, generator=g, dtype=F64)
    x_t = schedule.add_noise(x0, noise, t)
    x0_hat, noise_hat = schedule.split(x_t, schedule.velocity(x0, noise, t), t)
    torch.testing.assert_close(x0_hat, x0)
    torch.testing.assert_close(noise_hat, noise)


def test_linear_path_is_the_straight_line_with_velocity_noise_minus_data():
    s = get_schedule("linear")
    x0, noise = torch.tensor([[2.0]], dtype=F64), torch.tensor([[-1.0]], dtype=F64)
    assert s.add_noise(x0, noise, torch.tensor([0.5], dtype=F64)).item() == 0.5
    assert s.velocity(x0, noise, torch.tensor([0.3], dtype=F64)).item() == -3.0


def test_cosine_schedule_preserves_variance():
    s = get_schedule("cosine")
    t = torch.linspace(0, 1, 11, dtype=F64)
    torch.testing.assert_close(s.alpha(t) ** 2 + s.sigma(t) ** 2, torch.ones(11, dtype=F64))


def test_training_times_are_seeded_and_inside_the_path():
    like = torch.zeros(1)
    for kind in ("uniform", "logit_normal"):
        a = training_times(1000, kind, torch.Generator().manual_seed(1), like)
        b = training_times(1000, kind, torch.Generator().manual_seed(1), like)
        assert torch.equal(a, b) and a.shape == (1000,) and ((a >= 0) & (a <= 1)).all()
    logit_normal = training_times(20000, "logit_normal", torch.Generator().manual_seed(1), like)
    assert abs(logit_normal.mean().item() - 0.5) < 0.01 and logit_normal.std().item() < 0.25  # peaked in the middle
    with pytest.raises(ConfigError, match="time sampling"):
        training_times(4, "beta", None, like)  # type: ignore[arg-type]


def test_unknown_schedule_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="cosine"):
        get_schedule("sigmoid")


# ------------------------------------------------------------------ samplers
def _gaussian_velocity(schedule, mean, std):
    """The exact velocity E[u | x_t] for data N(mean, std^2): the probability flow maps x_1 to mean + std * x_1."""
    def velocity(x, t):
        t = torch.as_tensor(t, dtype=x.dtype)
        a, s, da, ds = schedule.alpha(t), schedule.sigma(t), schedule.d_alpha(t), schedule.d_sigma(t)
        var = a**2 * std**2 + s**2
        return da * (mean + a * std**2 / var * (x - a * mean)) + ds * s * (x - a * mean) / var
    return velocity


def _solve(sampler, velocity, n, seed=0):
    sampler.set_timesteps(n)
    x1 = sampler.initial_sample((500, 3), torch.Generator().manual_seed(seed), torch.device("cpu"), F64)
    x, calls = x1, 0
    for t in sampler.timesteps:
        calls += 1
        x = sampler.step(velocity(x, t), t, x).prev_sample
    return x1, x, calls


class SamplerCommonTest:
    """Checks every sampler must pass (diffusers' SchedulerCommonTest idea); a sampler enrols by its config.

    Subclasses set ``config``: ``name`` (in SAMPLERS), ``evaluations`` (network evaluations for n
    steps), ``order`` (of convergence), ``steps`` and ``tolerance`` (largest error on Gaussian data).
    """

    config: ClassVar[dict] = {}
    mean = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    std = torch.tensor([0.5, 1.0, 2.0], dtype=F64)

    def sampler(self, schedule, spacing="logsnr"):
        return get_sampler(self.config["name"], schedule, spacing)

    @pytest.mark.parametrize("n", [1, 2, 7, 10])
    def test_evaluations_are_exactly_the_declared_number(self, schedule, n):
        sampler = self.sampler(schedule)
        _, _, calls = _solve(sampler, _gaussian_velocity(schedule, self.mean, self.std), n)
        assert calls == sampler.n_evaluations == len(sampler.timesteps) == self.config["evaluations"](n)
        assert (sampler.timesteps.diff() <= 0).all() and 0 < sampler.timesteps.min() <= sampler.timesteps.max() <= 1

    @pytest.mark.parametrize("spacing", ["uniform", "logsnr", "karras"])
    def test_solves_the_probability_flow_of_gaussian_data(self, schedule, spacing):
        sampler = self.sampler(schedule, spacing)
        velocity = _gaussian_velocity(schedule, self.mean, self.std)
        x1, x, _ = _solve(sampler, velocity, self.config["steps"])
        assert (x - (self.mean + self.std * x1)).abs().max() < self.config["tolerance"]

    def test_converges_at_its_order(self, schedule):
        velocity = _gaussian_velocity(schedule, self.mean, self.std)
        errors = []
        for n in (20, 40):
            x1, x, _ = _solve(self.sampler(schedule, "uniform"), velocity, n)
            errors.append(float((x - (self.mean + self.std * x1)).abs().max()))
        assert errors[1] < (0.5 ** self.config["order"] + 0.2) * errors[0]

    def test_same_noise_same_samples_and_set_timesteps_resets(self, schedule):
        sampler = self.sampler(schedule)
        velocity = _gaussian_velocity(schedule, self.mean, self.std)
        _, a, _ = _solve(sampler, velocity, 5, seed=3)
        _, b, _ = _solve(sampler, velocity, 5, seed=3)  # the same object again: no state left from the first run
        _, c, _ = _solve(self.sampler(schedule), velocity, 5, seed=4)
        assert torch.equal(a, b) and not torch.equal(a, c)

    def test_step_refuses_a_wrong_time_or_a_step_too_many(self, schedule):
        sampler = self.sampler(schedule)
        sampler.set_timesteps(2)
        x = torch.zeros(2, 3, dtype=F64)
        with pytest.raises(ConfigError, match="expected t="):
            sampler.step(x, 0.123, x)
        for t in sampler.timesteps:
            x = sampler.step(torch.zeros_like(x), t, x).prev_sample
        with pytest.raises(ConfigError, match="at most"):
            sampler.step(x, 0.0, x)

    def test_output_is_a_dataclass_with_the_denoised_sample(self, schedule):
        sampler = self.sampler(schedule)
        sampler.set_timesteps(3)
        x = torch.ones(2, 3, dtype=F64)
        out = sampler.step(torch.zeros_like(x), sampler.timesteps[0], x)
        assert out.prev_sample.shape == out.denoised.shape == x.shape
        torch.testing.assert_close(out.denoised, schedule.split(x, torch.zeros_like(x), 1.0)[0])

    def test_repr_and_bad_steps(self, schedule):
        sampler = self.sampler(schedule)
        assert self.config["name"] in type(sampler).name and "spacing" in repr(sampler)
        for bad in (0, -1, 2.5, True):
            with pytest.raises(ConfigError, match="steps"):
                sampler.set_timesteps(bad)


class TestDDIM(SamplerCommonTest):
    config: ClassVar[dict] = {"name": "ddim", "evaluations": lambda n: n, "order": 1, "steps": 400, "tolerance": 0.08}


class TestHeun(SamplerCommonTest):
    config: ClassVar[dict] = {"name": "heun", "evaluations": lambda n: 2 * n - 1, "order": 2, "steps": 100,
                              "tolerance": 0.01}


class TestDPMSolver2M(SamplerCommonTest):
    config: ClassVar[dict] = {"name": "dpm2m", "evaluations": lambda n: n, "order": 2, "steps": 100, "tolerance": 0.01}


def test_every_registered_sampler_is_in_the_common_test():
    tested = {cls.config["name"] for cls in SamplerCommonTest.__subclasses__()}
    assert tested == set(SAMPLERS)


def test_time_grid_spacings_and_errors():
    linear = get_schedule("linear")
    assert time_grid(linear, 2, "uniform").tolist() == [1.0, 0.5, 0.0]
    for spacing in ("logsnr", "karras"):
        grid = time_grid(linear, 10, spacing)
        assert grid[0] == 1 and grid[-1] == 0 and (grid.diff() < 0).all()
        assert grid[-2] < 0.01  # small steps next to the data
    logsnr = time_grid(linear, 10, "logsnr")  # log(alpha / sigma) evenly spaced: symmetric for the linear path
    torch.testing.assert_close(logsnr[1:-1], 1 - logsnr[1:-1].flip(0))
    karras = time_grid(linear, 3, "karras")  # EDM: sigma / alpha from 80 to 0.002 with rho = 7
    assert karras[1].item() == pytest.approx((80 ** (1 / 7) / 2 + 0.002 ** (1 / 7) / 2) ** 7 /
                                             (1 + (80 ** (1 / 7) / 2 + 0.002 ** (1 / 7) / 2) ** 7))
    with pytest.raises(ConfigError, match="spacing"):
        time_grid(linear, 4, "quadratic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="sampler in"):
        get_sampler("euler", linear)


# ------------------------------------------------------------------ networks
def test_time_features_and_networks_shapes():
    assert time_features(torch.rand(5), 7).shape == (5, 7)
    x, t, c = torch.randn(4, 10), torch.rand(4), torch.rand(4, 2)
    assert ResidualMLP(10, 2, width=16, depth=1)(x, t, c).shape == (4, 10)
    conv = VoxelConv(10, 2, ((2, 2), (1, 3)), n_scalars=3, channels=4, blocks=1)
    out = conv(x, t, c)
    assert out.shape == (4, 10)
    out.square().sum().backward()
    assert all(p.grad is not None for p in conv.parameters())
    with pytest.raises(ConfigError, match="layer shapes"):
        VoxelConv(10, 2, ((2, 2), (1, 2)), n_scalars=3)


def test_conv_network_needs_matching_layer_shapes(data, tmp_path):
    config = TINY.replace(network="conv", layer_shapes=((2, 3), (1, 2)), channels=4, depth=1)
    assert DiffusionConfig.from_dict(config.to_dict()) == config  # the pairs come back from JSON lists
    with pytest.raises(ConfigError, match="layer_shapes"):
        DiffusionConfig.from_dict({"layer_shapes": [[2, 0]]})
    model = _model(data, config)
    save_model(tmp_path / "b", model, "diffusion", data.geometry)
    assert load(tmp_path / "b").models[0].config == config
    assert isinstance(model.network, VoxelConv)
    assert model.sample(torch.tensor([500.0, 2000.0]), None, torch.Generator().manual_seed(0)).shape == (2, 8)
    with pytest.raises(ConfigError, match="layer_shapes"):
        _model(data, config.replace(layer_shapes=((3, 2), (2, 1), (1, 1))))
    with pytest.raises(ConfigError, match="'total' or 'layer'"):
        _model(data, config.replace(preprocessing="energy"))


# --------------------------------------------------------------------- model
class _Counter:
    def __init__(self, module):
        self.calls = 0
        module.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.calls += 1


@pytest.mark.parametrize(("name", "steps", "evaluations"),
                         [("ddim", 4, 4), ("heun", 4, 7), ("dpm2m", 4, 4), ("fast", None, 10), ("accurate", None, 199)])
def test_each_sampler_evaluates_the_network_exactly_its_number_of_times(data, name, steps, evaluations):
    model = _model(data).with_sampler(name, steps)
    counter = _Counter(model.network)
    e = torch.tensor([500.0, 8000.0])
    a = model.sample(e, None, torch.Generator().manual_seed(1))
    assert counter.calls == evaluations
    b = model.sample(e, None, torch.Generator().manual_seed(1))
    c = model.sample(e, None, torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)


def test_with_sampler_is_a_copy_and_presets_are_named(data):
    model = _model(data)
    fast = model.with_sampler("fast")
    assert (fast.config.sampler, fast.config.sampler_steps) == SAMPLER_PRESETS["fast"]
    assert model.with_sampler("heun", 5, "uniform").config.spacing == "uniform"
    assert model.config == TINY and fast is not model
    for p, q in zip(model.parameters(), fast.parameters(), strict=True):
        assert torch.equal(p, q) and p.data_ptr() != q.data_ptr()
    with pytest.raises(ConfigError, match="sampler"):
        model.with_sampler("euler_ancestral")
    with pytest.raises(ConfigError, match="sampler_steps"):
        model.with_sampler("ddim", 0)


def test_first_train_step_fits_the_network_space_once(data):
    model = _model(data)
    drawn = []

    def next_batch():
        drawn.append(1)
        return _batch(data)

    optimizers = model.configure_optimizers()
    assert not bool(model.space.fitted)
    model.train_step(next_batch, optimizers, lambda loss: loss.backward(), torch.Generator().manual_seed(0))
    assert bool(model.space.fitted) and len(drawn) == TINY.normalisation_batches + 1
    mean = model.space.mean.clone()
    model.train_step(next_batch, optimizers, lambda loss: loss.backward(), torch.Generator().manual_seed(0))
    assert len(drawn) == TINY.normalisation_batches + 2 and torch.equal(model.space.mean, mean)
    restored = _model(data)
    restored.load_state_dict(model.state_dict())
    assert bool(restored.space.fitted) and torch.equal(restored.space.std, model.space.std)


def test_logit_space_round_trip_keeps_zeros_exact():
    space = LogitSpace(4, 1, 1e-6)
    x = torch.tensor([[0.4, 0.0, 0.3, 1.0], [0.6, 0.2, 0.0, 0.5], [0.5, 0.0, 1e-9, 0.25]])
    space.fit(x)
    y = space(x)
    torch.testing.assert_close(y.mean(dim=0), torch.zeros(4), atol=1e-6, rtol=0)
    back = space.inverse(y)
    torch.testing.assert_close(back, x, atol=1e-5, rtol=1e-4)
    assert back[0, 1] == 0 and back[1, 2] == 0


def test_moving_average_is_saved_but_never_trained(data):
    model = _model(data)
    names = {name for name, _ in model.named_parameters()}
    assert not any(name.startswith("ema.") for name in names)
    assert any(key.startswith("ema.") for key in model.state_dict())
    before = {k: v.clone() for k, v in model.ema.averaged().items()}
    model.train_step(lambda: _batch(data), model.configure_optimizers(), lambda loss: loss.backward())
    after = model.ema.averaged()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    raw = _model(data, TINY.replace(ema_decay=0.0))
    assert raw.ema is None


def test_config_rejects_bad_values():
    for bad in ({"sampler": "euler"}, {"sampler_steps": 0}, {"schedule": "sigmoid"}, {"logit_alpha": 0.5},
                {"ema_decay": 1.0}, {"network": "transformer"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            DiffusionConfig.from_dict(bad)
    with pytest.raises(ConfigError, match="particle"):
        DiffusionConfig.for_particle("neutrino")
    assert DiffusionConfig.for_preset("cpu", "photon").width < DiffusionConfig.for_preset("paper", "photon").width


def test_conv_grid_gives_back_every_voxel_for_uneven_alpha_counts():
    """Layers with 10, 3, 4 and 1 alpha bins on one 10-cell grid: grid and back is the identity."""
    shapes = ((10, 2), (3, 2), (4, 1), (1, 3))
    n_voxels = sum(a * r for a, r in shapes)
    net = VoxelConv(n_voxels + 5, 1, shapes, n_scalars=5, channels=4, blocks=1)
    voxels = torch.randn(3, n_voxels, generator=torch.Generator().manual_seed(0))
    grid, _ = net._to_grid(voxels)
    torch.testing.assert_close(net._from_grid(grid), voxels, rtol=1e-6, atol=1e-6)  # means of equal copies
