"""Training: chi2 improves, resume continues exactly, Ctrl-C stops cleanly, energy splits, hold-out energies."""

from __future__ import annotations

import csv
import dataclasses
import json
import signal

import lightning as L
import numpy as np
import pytest
import torch

from caloforge.bundle import load
from caloforge.callbacks import _generate_like
from caloforge.errors import CheckpointError, ConfigError, DataError, OutputExistsError, OutputPathError
from caloforge.models import GAN, GANConfig
from caloforge.preprocess import Preprocessing
from caloforge.showers import ShowerSet
from caloforge.training import _accelerator, split_validation, train, validation_chi2
from synthetic import make_showers

TINY = GANConfig(noise_dim=8, generator_layers=(32, 32, 32), critic_layers=(32, 32, 32), batch_size=128,
                 critic_steps=2, lr=1e-3)
ENERGIES = (500.0, 1000.0, 4000.0, 8000.0)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run fastest on one thread, and do not slow down when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def data(tiny_geometry):
    return make_showers(tiny_geometry, 1600, seed=1, energies=ENERGIES)


def _log(run_dir):
    with (run_dir / "log.csv").open() as f:
        return list(csv.DictReader(f))


def test_training_improves_chi2_over_initialisation(tiny_geometry, tmp_path):
    raw = make_showers(tiny_geometry, 3000, seed=1, energies=(1000.0, 8000.0))
    spread = np.random.default_rng(0).uniform(0.5, 1.0, (len(raw), 1)).astype(np.float32)  # a wide response
    data = ShowerSet(raw.energies, raw.showers * spread, tiny_geometry)
    config = dataclasses.replace(TINY, preprocessing="layer")
    result = train(data, "gan", config, tmp_path / "run", max_iterations=200, checkpoint_every=50, progress=False,
                   validation_fraction=0.2)
    train_set, validation = split_validation(data, 0.2, seed=0)
    torch.manual_seed(0)
    untrained = GAN(config, Preprocessing.fit(train_set, "layer"))
    before = validation_chi2(validation, _generate_like(untrained, validation, seed=0)).chi2_ndf
    assert result.chi2_ndf < 0.6 * before
    assert result.bundle_dir == tmp_path / "run" / "bundle"
    rows = _log(tmp_path / "run")
    assert [int(r["iteration"]) for r in rows] == [0, 50, 100, 150, 200]
    assert float(rows[0]["chi2_ndf"]) == pytest.approx(before)  # the log starts with the untrained model
    assert {"chi2_ndf", "best_chi2_ndf", "critic", "generator", "gp"} <= set(rows[0])
    info = load(result.bundle_dir).info
    assert info["validation"]["iteration"] == result.ranges[0].best_iteration
    assert info["data"]["n_showers"] == len(train_set)
    # the bundle's history runs to the end of training, past the selected checkpoint
    assert [int(r["iteration"]) for r in info["history"]] == [0, 50, 100, 150, 200]


def test_resume_continues_from_the_saved_step_exactly(data, tmp_path):
    train(data, "gan", TINY, tmp_path / "a", max_iterations=40, checkpoint_every=10, progress=False)
    train(data, "gan", TINY, tmp_path / "b", max_iterations=20, checkpoint_every=10, progress=False)
    result = train(data, "gan", None, tmp_path / "b", max_iterations=40, checkpoint_every=10, progress=False,
                   resume=True)
    assert result.ranges[0].iterations == 40
    assert [int(r["iteration"]) for r in _log(tmp_path / "b")] == [0, 10, 20, 30, 40]
    a = torch.load(tmp_path / "a" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "last.ckpt", weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


class _CtrlC(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.iteration == 15:
            signal.raise_signal(signal.SIGINT)


def test_ctrl_c_stops_cleanly_and_keeps_the_last_checkpoint(data, tmp_path):
    handler = signal.getsignal(signal.SIGINT)
    result = train(data, "gan", TINY, tmp_path / "run", max_iterations=100, checkpoint_every=10, progress=False,
                   callbacks=[_CtrlC()])
    assert signal.getsignal(signal.SIGINT) is handler
    assert result.interrupted and result.ranges[0].iterations == 15
    ckpt = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)
    assert ckpt["caloforge"]["iteration"] == 15
    resumed = train(data, "gan", TINY, tmp_path / "run", max_iterations=30, checkpoint_every=10, progress=False,
                    resume=True)
    assert not resumed.interrupted and resumed.ranges[0].iterations == 30


def test_split_bundle_dispatches_each_energy_to_its_model(data, tmp_path):
    result = train(data, "gan", TINY, tmp_path / "run", max_iterations=10, checkpoint_every=10, progress=False,
                   split_energies=(2000.0,))
    bundle = load(result.run_dir)
    assert len(bundle.models) == 2 and bundle.splits == (2000.0,)
    assert [m.preprocessing.energy.e_max for m in bundle.models] == [1000.0, 8000.0]
    assert bundle.energy_range == (500.0, 8000.0)
    low, high = load(tmp_path / "run" / "range-0" / "bundle"), load(tmp_path / "run" / "range-1" / "bundle")
    mixed = bundle.generate([8000.0, 500.0, 8000.0], device="cpu", seed=4)
    torch.testing.assert_close(mixed.showers[[0, 2]], high.generate([8000.0, 8000.0], device="cpu", seed=5).showers)
    torch.testing.assert_close(mixed.showers[[1]], low.generate([500.0], device="cpu", seed=4).showers)
    assert {e.energy_low < 2000.0 for e in result.validation.per_energy} == {True, False}


def test_hold_out_energy_is_absent_from_training(data, tmp_path):
    result = train(data, "gan", TINY, tmp_path / "run", max_iterations=5, checkpoint_every=5, progress=False,
                   hold_out_energy=1000.0)
    info = load(result.bundle_dir).info
    assert info["data"]["energies"] == [500.0, 4000.0, 8000.0]
    assert info["training"]["held_out_energy"] == 1000.0
    assert len(result.validation.per_energy) == 3
    with pytest.raises(ConfigError, match="hold-out energy"):
        train(data, "gan", TINY, tmp_path / "other", max_iterations=5, hold_out_energy=2000.0, progress=False)


def test_bad_runs_are_clear_errors(data, tiny_geometry, tmp_path):
    with pytest.raises(ConfigError, match="budget"):
        train(data, "gan", TINY, tmp_path / "a")
    with pytest.raises(ConfigError, match="gan"):
        train(data, "vae-transformer", None, tmp_path / "a", max_iterations=5)
    with pytest.raises(CheckpointError, match="resume"):
        train(data, "gan", TINY, tmp_path / "a", max_iterations=5, resume=True)
    train(data, "gan", TINY, tmp_path / "b", max_iterations=2, checkpoint_every=2, progress=False)
    with pytest.raises(OutputExistsError, match="--resume"):
        train(data, "gan", TINY, tmp_path / "b", max_iterations=2, progress=False)
    other = make_showers(tiny_geometry, 400, seed=9, energies=ENERGIES)
    with pytest.raises(DataError, match="same --data"):
        train(other, "gan", TINY, tmp_path / "b", max_iterations=4, progress=False, resume=True)
    with pytest.raises(ConfigError, match="energy range"):
        train(data, "gan", TINY, tmp_path / "c", max_iterations=2, split_energies=(1e6,), progress=False)


def test_refused_runs_leave_nothing_behind(data, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="hold-out energy"):
        train(data, "gan", TINY, run, max_iterations=2, checkpoint_every=2, hold_out_energy=2000.0, progress=False)
    with pytest.raises(ConfigError, match="energy range"):
        train(data, "gan", TINY, run, max_iterations=2, split_energies=(1e6,), progress=False)
    with pytest.raises(DataError, match="validation split"):
        train(data[:1], "gan", TINY, run, max_iterations=2, progress=False)
    assert not run.exists()
    # the same call with a good energy then runs in that directory
    result = train(data, "gan", TINY, run, max_iterations=2, checkpoint_every=2, hold_out_energy=1000.0,
                   progress=False)
    assert result.run_dir == run and load(result.bundle_dir).info["training"]["held_out_energy"] == 1000.0
    assert json.loads((run / "run.json").read_text())["hold_out_energy"] == 1000.0
    assert not [p for p in run.iterdir() if p.name.startswith(".run.json")]  # written atomically, no temporary left


def test_out_dir_that_is_a_file_is_refused(data, tmp_path):
    (tmp_path / "run").write_text("precious")
    for resume in (False, True):
        with pytest.raises(OutputPathError, match="is a file"):
            train(data, "gan", TINY, tmp_path / "run", max_iterations=2, progress=False, resume=resume)
    assert (tmp_path / "run").read_text() == "precious"


@pytest.mark.parametrize(("device", "devices", "expected"), [
    ("cuda:1", 1, ("gpu", [1])),  # was ("gpu", 1): Lightning then trains on GPU 0
    ("cuda:0", 1, ("gpu", [0])),
    ("cuda", 1, ("gpu", 1)),
    ("cuda:1", [0, 1], ("gpu", [0, 1])),  # an explicit device list wins
    ("cuda", "auto", ("gpu", "auto")),
    ("cpu", 1, ("cpu", 1)),
])
def test_cuda_index_selects_that_gpu(device, devices, expected):
    assert _accelerator(device, devices) == expected
