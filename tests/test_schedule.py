"""Learning-rate schedules over the budget (iterations and wall clock), their resume, and weight averaging (EMA)."""

from __future__ import annotations

import copy
import math
import signal
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch

from caloforge.deploy.export import SamplingGraph
from caloforge.errors import ConfigError
from caloforge.models import GANConfig
from caloforge.models.vae import VAEConfig
from caloforge.training import callbacks as callbacks_module
from caloforge.training import train
from caloforge.training.bundle import load
from caloforge.training.callbacks import LRScheduler
from caloforge.training.schedule import budget_fraction, lr_factor
from synthetic import make_showers

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:the validation sample has fewer:UserWarning")]

TINY = GANConfig(noise_dim=8, generator_layers=(32, 32, 32), critic_layers=(32, 32, 32), batch_size=128,
                 critic_steps=2, lr=1e-3)
COSINE = TINY.replace(lr_schedule="cosine", warmup_fraction=0.2, min_lr_ratio=0.05, ema_decay=0.9)
ENERGIES = (500.0, 1000.0, 4000.0, 8000.0)


@pytest.fixture
def data(tiny_geometry):
    return make_showers(tiny_geometry, 1200, seed=1, energies=ENERGIES)


def test_lr_factor_warms_up_linearly_then_follows_a_half_cosine_to_the_floor():
    warm, floor = 0.2, 0.05
    assert [lr_factor(f, "cosine", warm, floor) for f in (0.0, 0.05, 0.1, 0.2)] == pytest.approx([0, 0.25, 0.5, 1])
    for f in np.linspace(0.2, 1.0, 9):
        p = (f - warm) / (1 - warm)
        cosine = floor + (1 - floor) * (1 + math.cos(math.pi * p)) / 2
        assert lr_factor(f, "cosine", warm, floor) == pytest.approx(cosine)
    assert lr_factor(0.6, "cosine", warm, floor) == pytest.approx((1 + floor) / 2)  # half way down the cosine
    assert lr_factor(1.0, "cosine", warm, floor) == pytest.approx(floor)
    assert lr_factor(7.0, "cosine", warm, floor) == pytest.approx(floor)  # past the budget: stays at the floor
    assert [lr_factor(f, "constant", 0.1) for f in (0.05, 0.1, 0.9)] == [0.5, 1.0, 1.0]
    assert lr_factor(0.0, "constant") == 1.0  # no warm-up: today's constant learning rate


def test_the_budget_fraction_is_the_larger_of_the_iteration_and_time_fractions():
    assert budget_fraction(25, 100, 90.0, 100.0) == pytest.approx(0.9)  # the clock runs out first
    assert budget_fraction(80, 100, 10.0, 100.0) == pytest.approx(0.8)  # the iterations run out first
    assert budget_fraction(80, None, 10.0, 100.0) == pytest.approx(0.1)
    assert budget_fraction(80, 100, 500.0, None) == pytest.approx(0.8)
    assert budget_fraction(300, 100, 0.0, None) == 1.0


class _RecordLR(L.Callback):
    """The learning rates each iteration trained with (read after the step, before the next change)."""

    def __init__(self):
        self.lrs: dict[int, list[float]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.lrs[pl_module.iteration] = [group["lr"] for opt in trainer.optimizers for group in opt.param_groups]


def test_an_iteration_budget_drives_the_schedule_and_resumes_exactly(data, tmp_path):
    whole = _RecordLR()
    train(data, "gan", COSINE, tmp_path / "a", max_iterations=20, checkpoint_every=5, progress=False,
          callbacks=[whole])
    expected = {it: COSINE.lr * lr_factor(it / 20, "cosine", 0.2, 0.05) for it in range(1, 21)}
    assert sorted(whole.lrs) == list(range(1, 21))
    for it, lrs in whole.lrs.items():  # both players (critic, generator) follow the same schedule
        assert lrs == pytest.approx([expected[it]] * 2, rel=1e-12)
    assert whole.lrs[4][0] == pytest.approx(1e-3)  # the warm-up ends at 20 % of the budget
    assert whole.lrs[20][0] == pytest.approx(0.05e-3)  # the floor at the end of the budget
    # stopped half way (Ctrl-C) and resumed: the same schedule, the same weights, averages and optimiser moments
    first, second = _RecordLR(), _RecordLR()
    stopped = train(data, "gan", COSINE, tmp_path / "b", max_iterations=20, checkpoint_every=5, progress=False,
                    callbacks=[first, _CtrlC(10)])
    assert stopped.interrupted and stopped.ranges[0].iterations == 10
    saved = torch.load(tmp_path / "b" / "last.ckpt", weights_only=True)
    assert [g["initial_lr"] for g in saved["optimizer_states"][0]["param_groups"]] == [1e-3]  # in the checkpoint
    train(data, "gan", None, tmp_path / "b", max_iterations=20, checkpoint_every=5, progress=False, resume=True,
          callbacks=[second])
    assert {**first.lrs, **second.lrs} == whole.lrs
    a = torch.load(tmp_path / "a" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.ckpt", weights_only=True)
    assert any(key.startswith("model.ema.") for key in a["state_dict"])
    for key in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], rtol=0, atol=0)


class _CtrlC(L.Callback):
    def __init__(self, at):
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.iteration == self.at:
            signal.raise_signal(signal.SIGINT)


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _driven(scheduler, optimizer, clock, times):
    """Run the callback at the given seconds after its start; the learning rates it set."""
    trainer, task = SimpleNamespace(optimizers=[optimizer]), SimpleNamespace(iteration=0)
    scheduler.on_train_start(trainer, task)
    start, lrs = clock.now, []
    for t in times:
        clock.now = start + t
        scheduler.on_train_batch_start(trainer, task, None, 0)
        lrs.append(optimizer.param_groups[0]["lr"])
        task.iteration += 1
    return lrs


def test_a_time_budget_drives_the_schedule_and_a_resumed_call_restarts_it_over_its_own_minutes(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(callbacks_module.time, "monotonic", clock)
    config = COSINE.replace(warmup_fraction=0.1, min_lr_ratio=0.0)
    weights = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.Adam([weights], lr=2e-3)
    times = [3.0, 6.0, 30.0, 60.0, 90.0, 120.0]  # of a 2-minute budget, no iteration budget
    lrs = _driven(LRScheduler(config, None, 120.0), optimizer, clock, times)
    assert lrs == pytest.approx([2e-3 * lr_factor(t / 120, "cosine", 0.1, 0.0) for t in times])
    assert lrs[1] == pytest.approx(1e-3)  # half the warm-up
    assert lrs[-1] == pytest.approx(0.0, abs=1e-15)
    # the optimiser as a checkpoint restores it: its learning rate at the floor, the initial one kept
    restored = torch.optim.Adam([weights], lr=123.0)
    restored.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    assert restored.param_groups[0]["initial_lr"] == 2e-3
    again = _driven(LRScheduler(config, None, 60.0), restored, clock, [3.0, 6.0, 30.0])  # --resume --max-minutes 1
    assert again == pytest.approx([2e-3 * lr_factor(t / 60, "cosine", 0.1, 0.0) for t in (3.0, 6.0, 30.0)])
    assert again[1] == pytest.approx(2e-3)  # warm restart: back at the initial learning rate after the warm-up


def test_a_constant_schedule_without_warm_up_never_touches_the_learning_rate(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(callbacks_module.time, "monotonic", clock)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
    assert _driven(LRScheduler(TINY, 10, 60.0), optimizer, clock, [10.0, 59.0]) == [3e-4, 3e-4]
    warm = _driven(LRScheduler(TINY.replace(warmup_fraction=0.5), 10, None),
                   torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=3e-4), clock, [0.0] * 6)
    assert warm == pytest.approx([3e-4 * f for f in (0.2, 0.4, 0.6, 0.8, 1.0, 1.0)])


@pytest.mark.parametrize(("family", "config"), [("gan", TINY.replace(ema_decay=0.8)),
                                                ("vae", VAEConfig(encoder_layers=(32, 16), latent_dim=4,
                                                                  batch_size=128, ema_decay=0.8))])
def test_generation_and_the_bundle_use_the_averaged_weights(data, tmp_path, family, config):
    result = train(data, family, config, tmp_path / "run", max_iterations=12, checkpoint_every=6, progress=False)
    model = load(result.bundle_dir).models[0]
    assert model.ema is not None and int(model.ema.updates) == result.ranges[0].best_iteration
    raw = copy.deepcopy(model)
    raw.ema = None
    averaged = model.averaged_copy()
    averaged.ema = None
    params = {k: v.clone() for k, v in model.named_parameters()}
    energies = torch.tensor(ENERGIES * 4)
    showers = model.sample(energies, generator=torch.Generator().manual_seed(5))
    for name, p in model.named_parameters():  # sampling swaps the average in and the raw weights back exactly
        assert torch.equal(p, params[name]), name
    torch.testing.assert_close(showers, averaged.sample(energies, generator=torch.Generator().manual_seed(5)),
                               rtol=0, atol=0)
    from_raw = raw.sample(energies, generator=torch.Generator().manual_seed(5))
    assert not torch.allclose(showers, from_raw, rtol=1e-3)  # the average is not the last step's weights
    # the exported graph samples the average too
    noise = torch.randn(len(energies), model.noise_size(), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        exported = SamplingGraph(model)(noise, energies[:, None])
        torch.testing.assert_close(exported, SamplingGraph(averaged)(noise, energies[:, None]), rtol=0, atol=0)
        assert not torch.allclose(exported, SamplingGraph(raw)(noise, energies[:, None]), rtol=1e-3)

@pytest.mark.parametrize(("key", "value", "expected"), [
    ("lr_schedule", "linear", "lr_schedule"), ("warmup_fraction", 1.0, "warmup_fraction"),
    ("min_lr_ratio", -0.1, "min_lr_ratio"), ("ema_decay", 1.0, "ema_decay"), ("warmup_fraction", "nan", "warmup")])
def test_bad_schedule_settings_are_one_line_errors(key, value, expected):
    with pytest.raises(ConfigError, match=expected) as err:
        GANConfig.from_dict({key: value}, where="model in run.toml")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="schedule"):
        lr_factor(0.5, "cosin")
