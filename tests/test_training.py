"""Training: chi2 improves, resume continues exactly, Ctrl-C stops cleanly, energy splits, hold-out energies."""

from __future__ import annotations

import csv
import dataclasses
import errno
import io
import json
import shlex
import signal
import warnings

import lightning as L
import numpy as np
import pytest
import torch

from caloforge.data.showers import ShowerSet
from caloforge.errors import CheckpointError, ConfigError, DataError, OutputExistsError, OutputPathError
from caloforge.models import GAN, GANConfig
from caloforge.models.preprocess import Preprocessing
from caloforge.models.sampling import sample_showers
from caloforge.runtime.progress import Progress
from caloforge.training import split_validation, train, validation_chi2
from caloforge.training.bundle import load
from caloforge.training.fit import accelerator_and_devices
from caloforge.training.settings import read_run
from synthetic import make_showers

pytestmark = [pytest.mark.usefixtures("one_thread"),  # see tests/conftest.py
              pytest.mark.filterwarnings("ignore:the validation sample has fewer:UserWarning")]  # tiny test data

TINY = GANConfig(noise_dim=8, generator_layers=(32, 32, 32), critic_layers=(32, 32, 32), batch_size=128,
                 critic_steps=2, lr=1e-3)
ENERGIES = (500.0, 1000.0, 4000.0, 8000.0)


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
    config = TINY.replace(preprocessing="layer")
    result = train(data, "gan", config, tmp_path / "run", max_iterations=200, checkpoint_every=50, progress=False,
                   validation_fraction=0.2)
    train_set, validation = split_validation(data, 0.2, seed=0)
    torch.manual_seed(0)
    untrained = GAN(config, Preprocessing.fit(train_set, "layer"))
    showers = sample_showers(untrained, validation.energies, generator=torch.Generator().manual_seed(0))
    before = validation_chi2(validation, ShowerSet(validation.energies, showers, tiny_geometry)).chi2_ndf
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
    with pytest.raises(DataError, match="at least 10 training showers"):
        train(data[:1], "gan", TINY, run, max_iterations=2, progress=False)
    with pytest.raises(ConfigError, match="max_minutes > 0"):  # was: one iteration, then an untrained bundle
        train(data, "gan", TINY, run, max_minutes=-1, progress=False)
    with pytest.raises(ConfigError, match="seed"):
        train(data, "gan", TINY, run, max_iterations=2, seed=10**26, progress=False)
    if not torch.cuda.is_available():  # was: a traceback, and run.json left behind
        with pytest.raises(ConfigError, match="CUDA"):
            train(data, "gan", TINY, run, max_iterations=2, device="cuda", progress=False)
    assert not run.exists()
    # the same call with a good energy then runs in that directory
    result = train(data, "gan", TINY, run, max_iterations=2, checkpoint_every=2, hold_out_energy=1000.0,
                   progress=False)
    assert result.run_dir == run and load(result.bundle_dir).info["training"]["held_out_energy"] == 1000.0
    assert json.loads((run / "run.json").read_text())["settings"]["hold_out_energy"] == 1000.0
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
    assert accelerator_and_devices(device, devices) == expected


def test_a_run_that_fails_before_its_first_checkpoint_is_removed(data, tmp_path, monkeypatch):
    from caloforge.training.task import GenerativeTask

    def broken(self, batch, batch_idx):
        raise RuntimeError("a bug in a family's training step")

    monkeypatch.setattr(GenerativeTask, "training_step", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        train(data, "gan", TINY, tmp_path / "run", max_iterations=5, checkpoint_every=5, progress=False)
    assert not (tmp_path / "run").exists()  # was: run.json left, so the rerun was refused


def test_corrupt_run_json_is_a_clear_error(data, tmp_path):
    train(data, "gan", TINY, tmp_path / "run", max_iterations=2, checkpoint_every=2, progress=False)
    (tmp_path / "run" / "run.json").write_text('{"family": "gan", "conf')
    with pytest.raises(CheckpointError, match="corrupt"):
        train(data, "gan", TINY, tmp_path / "run", max_iterations=4, progress=False, resume=True)


def test_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    from fsspec.implementations.local import LocalFileOpener

    train(data, "gan", TINY, tmp_path / "run", max_iterations=2, checkpoint_every=2, progress=False)
    write = LocalFileOpener.write

    def full(self, data):
        write(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalFileOpener, "write", full)
    with pytest.raises(OutputPathError, match="no space left") as err:
        train(data, "gan", None, tmp_path / "run", max_iterations=4, progress=False, resume=True)
    assert "\n" not in str(err.value)
    monkeypatch.undo()
    assert torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)["caloforge"]["iteration"] == 2
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")) == []


def test_resume_without_a_checkpoint_does_not_repeat_log_rows(data, tmp_path):
    train(data, "gan", TINY, tmp_path / "run", max_iterations=20, checkpoint_every=10, progress=False)
    (tmp_path / "run" / "last.ckpt").unlink()  # e.g. killed before the first checkpoint was written
    train(data, "gan", TINY, tmp_path / "run", max_iterations=20, checkpoint_every=10, progress=False, resume=True)
    assert [int(r["iteration"]) for r in _log(tmp_path / "run")] == [0, 10, 20]


def test_printed_resume_command_continues_with_the_budget_left(data, tmp_path):
    from typer.testing import CliRunner

    from caloforge.cli import app
    from caloforge.cli.model import resume_command
    from caloforge.data import io

    data_file = io.write(tmp_path / "train.h5", data)
    result = train(data, "gan", TINY, tmp_path / "run", max_iterations=100, checkpoint_every=10, progress=False,
                   callbacks=[_CtrlC()])
    assert result.interrupted
    command = resume_command(data_file, tmp_path / "run", None, None, result)
    assert "--resume" in command and "--max-iterations 100" in command
    words = shlex.split(command)
    assert words[:2] == ["caloforge", "train"]
    rerun = CliRunner().invoke(app, [*words[1:], "--no-progress", "--device", "cpu", "--threads", "1"])
    assert rerun.exit_code == 0, rerun.output
    assert [int(r["iteration"]) for r in _log(tmp_path / "run")][-1] == 100
    minutes = dataclasses.replace(result, max_iterations=None, max_minutes=5.0, elapsed_s=90.0)
    assert resume_command(data_file, tmp_path / "run", "ds1-photons", None, minutes).endswith(
        "--resume --geometry ds1-photons --max-minutes 3.5")


def test_resume_without_a_budget_uses_the_runs_own(data, tmp_path):
    train(data, "gan", TINY, tmp_path / "run", max_iterations=30, checkpoint_every=10, progress=False,
          callbacks=[_CtrlC()])
    resumed = train(data, "gan", None, tmp_path / "run", progress=False, resume=True)
    assert resumed.ranges[0].iterations == 30


def test_a_checkpoint_interval_given_on_resume_applies_and_none_keeps_the_runs(data, tmp_path):
    train(data, "gan", TINY, tmp_path / "run", max_iterations=20, checkpoint_every=10, progress=False)
    lines = io.StringIO()
    train(data, "gan", None, tmp_path / "run", max_iterations=30, checkpoint_every=5, resume=True,
          progress=Progress(stream=lines))
    assert "checkpoint every 5 iterations (the run's was 10)" in lines.getvalue()
    train(data, "gan", None, tmp_path / "run", max_iterations=50, progress=False, resume=True)
    assert [int(r["iteration"]) for r in _log(tmp_path / "run")] == [0, 10, 20, 25, 30, 40, 50]
    assert read_run(tmp_path / "run" / "run.json").settings.checkpoint_every == 10


def test_validation_split_is_sized_for_the_chi2_and_small_ones_warn(tiny_geometry, tmp_path):
    for n, rule in ((12_000, lambda k: round(0.1 * k)), (4_400, lambda k: 500), (2_400, lambda k: round(0.25 * k))):
        showers = make_showers(tiny_geometry, n, seed=3, energies=(1000.0, 4000.0))  # 10 %, 500 or 25 % per energy
        _, validation = split_validation(showers, None, seed=0)
        per_energy = np.unique(showers.energies, return_counts=True)[1]
        assert np.unique(validation.energies, return_counts=True)[1].tolist() == [rule(k) for k in per_energy]
    small = make_showers(tiny_geometry, 800, seed=3, energies=(1000.0, 4000.0))  # 400 per energy: 25 % = 100
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(small, "gan", TINY, tmp_path / "run", max_iterations=2, checkpoint_every=2, progress=False)
    assert any("fewer than 200 showers at 2 of 2" in str(w.message) for w in caught)
    assert load(result.bundle_dir).info["n_validation_per_energy"] == {"1000": 100, "4000": 100}


def test_independent_validation_sample_is_used_for_selection(data, tiny_geometry, tmp_path):
    validation = make_showers(tiny_geometry, 400, seed=7, energies=ENERGIES)
    result = train(data, "gan", TINY, tmp_path / "run", max_iterations=4, checkpoint_every=2, progress=False,
                   validation=validation)
    info = load(result.bundle_dir).info
    assert info["data"]["n_showers"] == len(data)  # every training shower trains
    assert info["n_validation"] == len(validation)
    assert sum(e.n_reference for e in result.validation.per_energy) == len(validation)


def test_selected_chi2_predicts_an_independent_sample_of_the_same_size(tiny_geometry, tmp_path):
    # chi2/NDF of an imperfect model grows with the sample size, so the prediction is checked at the
    # validation split's size (500 per energy by default), on independent showers, over 7 draws
    def sample(n, seed):
        raw = make_showers(tiny_geometry, n, seed=seed, energies=(1000.0, 8000.0))
        spread = np.random.default_rng(seed).uniform(0.5, 1.0, (len(raw), 1)).astype(np.float32)
        return ShowerSet(raw.energies, raw.showers * spread, tiny_geometry)

    config = TINY.replace(preprocessing="layer")
    result = train(sample(8000, 1), "gan", config, tmp_path / "run", max_iterations=150, checkpoint_every=10,
                   progress=False)
    bundle, independent = load(result.bundle_dir), sample(8000, 2)
    values = []
    for k in range(7):
        rows = np.concatenate([np.flatnonzero(independent.energies == e)[500 * k : 500 * (k + 1)]
                               for e in (1000.0, 8000.0)])
        part = independent[rows]
        values.append(validation_chi2(part, bundle.generate(part.energies, device="cpu", seed=k)).chi2_ndf)
    assert result.ranges[0].best_chi2_ndf > 5  # a model the chi2 can tell from the reference
    assert result.ranges[0].best_chi2_ndf == pytest.approx(np.mean(values), rel=0.2)


def test_lightning_checkpoints_and_loggers_agree_with_the_bundle(data, tmp_path):
    pytest.importorskip("tensorboard")
    result = train(data, "gan", TINY, tmp_path / "run", max_iterations=25, checkpoint_every=10, progress=False,
                   tensorboard=True, selection="chi2")
    run = tmp_path / "run"
    rows = _log(run)
    assert [int(r["iteration"]) for r in rows] == [0, 10, 20, 25]  # the stop is validated too
    best = torch.load(run / "best.ckpt", weights_only=True)
    bundle = load(result.bundle_dir)
    assert best["caloforge"]["iteration"] == result.ranges[0].best_iteration == bundle.info["validation"]["iteration"]
    trained = [float(r["chi2_ndf"]) for r in rows[1:]]
    assert result.ranges[0].best_chi2_ndf == pytest.approx(min(trained), rel=1e-6)
    for key, value in best["state_dict"].items():  # best.ckpt and the bundle hold the same weights
        torch.testing.assert_close(bundle.models[0].state_dict()[key.removeprefix("model.")], value)
    with (run / "lightning_logs" / "version_0" / "metrics.csv").open() as f:
        logged = [r for r in csv.DictReader(f) if r["val/chi2_ndf"]]
    assert [int(r["step"]) for r in logged] == [0, 10, 20, 25]  # the step is the iteration
    assert [float(r["val/chi2_ndf"]) for r in logged] == pytest.approx([float(r["chi2_ndf"]) for r in rows])
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))


def test_a_file_trains_like_memory_and_a_streamed_file_resumes_exactly(data, tmp_path, monkeypatch):
    from caloforge.data import io
    from caloforge.data.source import ShowerFile
    from caloforge.training import batches

    path = io.write(tmp_path / "train.h5", data)
    train(data, "gan", TINY, tmp_path / "memory", max_iterations=20, checkpoint_every=10, progress=False)
    train(ShowerFile.open(path), "gan", TINY, tmp_path / "file", max_iterations=20, checkpoint_every=10,
          progress=False)
    logs = _log(tmp_path / "file"), _log(tmp_path / "memory")
    assert logs[1] == [{**r, "elapsed_s": m["elapsed_s"]} for r, m in zip(*logs, strict=True)]
    runs = [json.loads((tmp_path / d / "run.json").read_text()) for d in ("memory", "file")]
    assert runs[0]["data"] == runs[1]["data"]  # the streamed fingerprint is the in-memory one

    monkeypatch.setattr(batches, "RESIDENT_BYTES", 0)  # stream: a buffer of 4 batches, refilled every 4 iterations
    monkeypatch.setattr(batches, "BUFFER_BYTES", 0)
    read = []
    original = batches.StreamedBatches.buffer_rows
    monkeypatch.setattr(batches.StreamedBatches, "buffer_rows", lambda self, i: read.append(i) or original(self, i))
    streamed = ShowerFile.open(path)
    train(streamed, "gan", TINY, tmp_path / "a", max_iterations=24, checkpoint_every=8, progress=False)
    assert {0, 1, 2, 3, 4, 5} <= set(read)  # the buffer was replaced as training went on
    train(streamed, "gan", TINY, tmp_path / "b", max_iterations=12, checkpoint_every=8, progress=False)
    train(streamed, "gan", None, tmp_path / "b", max_iterations=24, checkpoint_every=8, progress=False, resume=True)
    a = torch.load(tmp_path / "a" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "last.ckpt", weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_bundle_response_generates_large_geometries_in_bounded_slices():
    """The final check of a dataset-3 bundle generates 64 MiB slices (414 showers), not 10000 at once (1.6 GB)."""
    from types import SimpleNamespace

    from caloforge.data.geometry import Geometry
    from caloforge.data.source import chunk_rows
    from caloforge.training.data import ValidationTarget, bundle_response

    geometry = Geometry.preset("ds3")
    calls = []

    def generate(energies, conditions, device, seed):
        calls.append((len(energies), seed))
        showers = np.zeros((len(energies), geometry.n_voxels), np.float32)
        showers[:, 0] = 0.5 * energies  # response 0.5 after the threshold
        return SimpleNamespace(showers=showers, energies=energies)

    energies = np.linspace(1e3, 1e6, 1000)
    target = ValidationTarget(energies, {}, np.full(1000, 0.5), geometry, 0.0)
    response = bundle_response(SimpleNamespace(generate=generate, condition_names=()), target, seed=3, device="cpu")
    size = chunk_rows(geometry.n_voxels)
    assert [n for n, _ in calls] == [size, size, 1000 - 2 * size]
    assert [s for _, s in calls] == [3, 4, 5]
    np.testing.assert_allclose(response, 0.5)
