"""The VAE family: KL warm-up, its survival across checkpoints and resumes, generation with the decoder alone."""

from __future__ import annotations

import pytest
import torch

from caloforge.errors import ConfigError
from caloforge.models.base import Batch
from caloforge.models.preprocess import Preprocessing
from caloforge.models.vae import VAE, VAEConfig
from caloforge.training import train
from synthetic import make_showers

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:the validation sample has fewer:UserWarning")]  # tiny test data

TINY = VAEConfig(encoder_layers=(16, 8), latent_dim=3, batch_size=32, kl_weight=0.5, kl_warmup_iterations=10)


@pytest.fixture
def data(tiny_geometry):
    return make_showers(tiny_geometry, 200, seed=2, energies=(500.0, 2000.0, 8000.0))


def _batch(data):
    return Batch(torch.tensor(data.energies, dtype=torch.float32), torch.tensor(data.showers))


def _model(data, config=TINY):
    torch.manual_seed(0)
    return VAE(config, Preprocessing.fit(data, config.preprocessing))


def _step(model, data, optimizers):
    return model.train_step(lambda: _batch(data), optimizers, lambda loss: loss.backward(),
                            torch.Generator().manual_seed(0))


def test_kl_weight_warms_up_linearly_then_stays(data):
    model = _model(data)
    optimizers = model.configure_optimizers()
    betas = [_step(model, data, optimizers)["beta"] for _ in range(14)]
    expected = [0.5 * min(1.0, i / 10) for i in range(14)]  # beta of the loss at iteration i (0, 1, ...)
    assert betas == pytest.approx(expected)
    assert int(model.iteration) == 14 and model.beta() == 0.5


def test_kl_weight_defaults_and_no_warm_up(data):
    par04 = _model(data, TINY.replace(kl_weight=None, kl_warmup_iterations=0))
    assert par04.beta() == pytest.approx(1 / par04.n_features)  # Par04's weighting
    assert _model(data, TINY.replace(kl_warmup_iterations=0)).beta() == 0.5


def test_loss_parts_add_up_and_reach_every_parameter(data):
    model = _model(data)
    model.iteration.fill_(5)
    parts = model.losses(_batch(data), torch.Generator().manual_seed(0))
    torch.testing.assert_close(parts["loss"], parts["reconstruction"] + 0.25 * parts["kl"])
    assert parts["kl"] > 0 and parts["reconstruction"] > 0
    parts["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.config = model.config.replace(reconstruction="mse")  # same weights, same latent draw (seed 0)
    mse = model.losses(_batch(data), torch.Generator().manual_seed(0))["reconstruction"]
    x, c = model.encode(_batch(data))
    mean, log_var = model.encode_latent(x, c)
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(0))
    decoded = torch.sigmoid(model._decode_logits(mean + torch.exp(0.5 * log_var) * eps, c))
    torch.testing.assert_close(mse, ((decoded - x.clamp(0, 1)) ** 2).sum(dim=1).mean())


def test_state_dict_round_trip_keeps_the_warm_up(data):
    model = _model(data)
    optimizers = model.configure_optimizers()
    for _ in range(4):
        _step(model, data, optimizers)
    restored = _model(data)
    assert restored.beta() == 0.0
    restored.load_state_dict(model.state_dict())
    assert int(restored.iteration) == 4 and restored.beta() == model.beta() == pytest.approx(0.2)


def test_resumed_training_continues_the_warm_up(data, tmp_path):
    config = TINY.replace(kl_warmup_iterations=20)
    train(data, "vae", config, tmp_path / "run", max_iterations=6, checkpoint_every=3, progress=False)
    train(data, "vae", None, tmp_path / "run", max_iterations=10, checkpoint_every=3, progress=False, resume=True)
    state = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)["state_dict"]
    assert int(state["model.iteration"]) == 10
    resumed = _model(data, config)
    resumed.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    assert resumed.beta() == pytest.approx(0.5 * 10 / 20)


def test_sampling_uses_the_decoder_alone(data):
    model = _model(data)
    _step(model, data, model.configure_optimizers())
    e = torch.tensor([500.0, 2000.0, 8000.0])
    before = model.sample(e, None, torch.Generator().manual_seed(3))

    def refuse(*args, **kwargs):
        raise AssertionError("the encoder ran during generation")

    model.encoder.forward = refuse  # type: ignore[method-assign]
    model.to_mean.forward = refuse  # type: ignore[method-assign]
    model.to_log_var.forward = refuse  # type: ignore[method-assign]
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    torch.testing.assert_close(model.sample(e, None, torch.Generator().manual_seed(3)), before)
    assert before.shape == (3, data.geometry.n_voxels) and (before >= 0).all()


def test_config_defaults_are_par04_and_bad_values_are_refused():
    config = VAEConfig.for_particle("photon")
    assert (config.encoder_layers, config.latent_dim, config.batch_size, config.lr) == ((100, 50, 20, 14), 10, 100,
                                                                                         1e-3)
    for bad in ({"latent_dim": 0}, {"kl_warmup_iterations": -1}, {"reconstruction": "l1"}, {"encoder_layers": []},
                {"kl_weight": -1.0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            VAEConfig.from_dict(bad)
    with pytest.raises(ConfigError, match="particle"):
        VAEConfig.for_particle("muon")
