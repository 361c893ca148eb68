"""Bundles and the ``train``/``generate`` commands: round trips and clear errors on bad inputs."""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from caloforge.cli import app
from caloforge.cli.common import parse_floats
from caloforge.data import io
from caloforge.data.geometry import Geometry, Layer
from caloforge.errors import CheckpointError, ConfigError, OutputExistsError, OutputPathError
from caloforge.models import GAN, GANConfig
from caloforge.models.preprocess import Preprocessing
from caloforge.training.bundle import ExtrapolationWarning, load
from caloforge.training.bundle_format import save_model
from synthetic import make_showers

pytestmark = [pytest.mark.usefixtures("one_thread"),  # see tests/conftest.py
              pytest.mark.filterwarnings("ignore:the validation sample has fewer:UserWarning")]  # tiny test data

runner = CliRunner()
GEOMETRY = Geometry((Layer(0, (0.0, 1.0, 2.0, 4.0), 2), Layer(5, (0.0, 2.0, 5.0), 1)), name="tiny")
CONFIG = """
model:
  noise_dim: 4
  generator_layers: [16, 16, 16]
  critic_layers: [16, 16, 16]
  batch_size: 64
  critic_steps: 2
training:
  checkpoint_every: 2
  validation_fraction: 0.2
  seed: 4
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained through the CLI: (run directory, training file, evaluation file)."""
    root = tmp_path_factory.mktemp("cli")
    train_file = io.write(root / "train.h5", make_showers(GEOMETRY, 400, seed=1, energies=(500.0, 2000.0, 8000.0)))
    ref_file = io.write(root / "ref.h5", make_showers(GEOMETRY, 60, seed=2, energies=(8000.0, 500.0, 2000.0)))
    (root / "cfg.yaml").write_text(CONFIG)
    threads = torch.get_num_threads()
    result = runner.invoke(app, ["train", "--data", str(train_file), "--out", str(root / "run"), "--config",
                                 str(root / "cfg.yaml"), "--max-iterations", "10", "--device", "cpu",
                                 "--no-progress", "--threads", "1", "--checkpoint-every", "5", "--tensorboard"])
    torch.set_num_threads(threads)  # --threads set it for the whole process
    assert result.exit_code == 0, result.output
    assert "validation chi2/NDF" in result.output
    return root / "run", train_file, ref_file


def test_flags_override_the_config_file(trained):
    run_dir, _, _ = trained
    record = json.loads((run_dir / "run.json").read_text())
    assert record["config"]["noise_dim"] == 4  # from the file's model section
    assert record["settings"]["checkpoint_every"] == 5  # the flag (5) wins over the file (2)
    assert record["settings"]["seed"] == 4 and record["settings"]["validation_fraction"] == 0.2  # file over defaults
    assert record["settings"]["max_iterations"] == 10  # flag over the default
    assert len((run_dir / "log.csv").read_text().splitlines()) == 1 + 3  # header + iterations 0 (untrained), 5, 10
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))  # --tensorboard


def test_generate_like_reproduces_the_reference_energies(trained, tmp_path):
    run_dir, _, ref_file = trained
    out = tmp_path / "gen.h5"
    result = runner.invoke(app, ["generate", "--model", str(run_dir), "--like", str(ref_file), "-o", str(out),
                                 "--seed", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    generated, reference = io.read(out), io.read(ref_file)
    np.testing.assert_array_equal(generated.energies, reference.energies)
    assert generated.geometry == GEOMETRY
    again = load(run_dir / "bundle").generate(reference.energies, device="cpu", seed=3)
    np.testing.assert_array_equal(again.showers, generated.showers)


def test_generate_at_given_energies_and_refuse_overwrite(trained, tmp_path):
    run_dir, _, _ = trained
    out = tmp_path / "gen.h5"
    args = ["generate", "--model", str(run_dir / "bundle"), "--energies", "500,2000", "--n-per-energy", "3",
            "-o", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    assert io.read(out).energies.tolist() == [500.0] * 3 + [2000.0] * 3
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--force" in result.output
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


def test_missing_bundle_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["generate", "--model", str(tmp_path / "nope"), "--energies", "500",
                                 "-o", str(tmp_path / "g.h5")])
    assert result.exit_code == 2
    assert "bundle.json" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("damage", ["weights", "missing-weights", "json", "format"])
def test_damaged_bundles_are_clear_errors(trained, tmp_path, damage):
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(trained[0] / "bundle", bundle)
    if damage == "weights":
        (bundle / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    elif damage == "missing-weights":
        (bundle / "model.safetensors").unlink()
    elif damage == "json":
        (bundle / "bundle.json").write_text("{not json")
    else:
        (bundle / "bundle.json").write_text(json.dumps({"format": "something-else"}))
    expected = {"weights": "sha256", "missing-weights": "weights file .* is missing", "json": "valid JSON",
                "format": "expected bundle format"}[damage]
    with pytest.raises(CheckpointError, match=expected):
        load(bundle)
    args = ["generate", "--model", str(bundle), "--energies", "500", "-o", str(tmp_path / "g.h5")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "caloforge: error:" in result.output


def test_geometry_mismatch_between_model_and_data(trained, tmp_path):
    run_dir, _, _ = trained
    other = Geometry((Layer(0, (0.0, 1.0, 2.0), 2),), name="other")
    ref = io.write(tmp_path / "other.h5", make_showers(other, 5, seed=3))
    result = runner.invoke(app, ["generate", "--model", str(run_dir), "--like", str(ref), "-o", str(tmp_path / "g.h5")])
    assert result.exit_code == 2 and "voxels" in result.output
    # the mismatch is the model's, not a missing --geometry (generate has none)
    assert "trained on" in result.output and "pass the geometry" not in result.output
    same_size = Geometry((Layer(0, (0.0, 1.0, 3.0, 4.0), 2), Layer(5, (0.0, 2.0, 5.0), 1)), name="same-size")
    ref2 = io.write(tmp_path / "other2.h5", make_showers(same_size, 5, seed=3))
    args = ["generate", "--model", str(run_dir), "--like", str(ref2), "-o", str(tmp_path / "g.h5")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "geometry" in result.output


def test_energies_outside_the_trained_range_warn(trained, tmp_path):
    bundle = load(trained[0])
    with pytest.warns(ExtrapolationWarning, match="outside the trained range 500-8000 MeV"):
        showers = bundle.generate([100.0, 1000.0], device="cpu")
    assert len(showers) == 2
    with pytest.warns(ExtrapolationWarning):
        result = runner.invoke(app, ["generate", "--model", str(trained[0]), "--energies", "1e6", "--n-per-energy", "2",
                                     "-o", str(tmp_path / "g.h5")])
    assert result.exit_code == 0


def test_bad_cli_inputs_are_clear_errors(trained, tmp_path):
    run_dir, train_file, _ = trained
    cases = [
        (["generate", "--model", str(run_dir), "-o", str(tmp_path / "g.h5")], "--like"),
        (["train", "--data", str(train_file), "--out", str(tmp_path / "r"), "--family", "nope",
          "--max-iterations", "1"], "gan"),
        (["train", "--data", str(train_file), "--out", str(run_dir), "--max-iterations", "1"], "--resume"),
        (["train", "--data", str(train_file), "--out", str(tmp_path / "r"), "--particle", "muon",
          "--max-iterations", "1"], "particle"),
    ]
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("training:\n  max_iteration: 3\n")
    cases.append((["train", "--data", str(train_file), "--out", str(tmp_path / "r"), "--config", str(bad_yaml)],
                  "max_iteration"))
    for args, needle in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.output and "Traceback" not in result.output


def test_bundle_repr_and_metadata(trained):
    bundle = load(trained[0])
    assert "family='gan'" in repr(bundle)
    info = bundle.info
    assert info["geometry"]["hash"] == GEOMETRY.hash and info["conditions"] == []
    assert {"sha256", "n_showers"} <= set(info["data"]) and "caloforge_version" in info


def _one_line_error(result, needle):
    """Exit code 2 and a single line 'caloforge: error: ...' naming ``needle``, no traceback."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("caloforge: error:") and needle in lines[0], result.output


@pytest.mark.parametrize(("training", "needle"), [
    ("split_energies: 4100", "split_energies to be a list"),
    ("split_energies: [4100, x]", "split_energies to be a number"),
    ("max_iterations: '10'", "max_iterations to be an integer"),
    ("max_minutes: '5'", "max_minutes to be a number"),
    ("checkpoint_every: 2.5", "checkpoint_every to be an integer"),
    ("seed: true", "seed to be an integer"),
    ("hold_out_energy: [500]", "hold_out_energy to be a number"),
    ("max_iteration: 3", "max_iteration"),
], ids=["scalar-splits", "text-split", "text-iterations", "text-minutes", "float-every", "bool-seed", "list-hold-out",
        "unknown-key"])
def test_config_training_values_are_checked(trained, tmp_path, training, needle):
    _, train_file, _ = trained
    (tmp_path / "cfg.yaml").write_text(f"training:\n  {training}\n")
    result = runner.invoke(app, ["train", "--data", str(train_file), "--out", str(tmp_path / "r"), "--config",
                                 str(tmp_path / "cfg.yaml"), "--max-iterations", "1", "--device", "cpu"])
    _one_line_error(result, needle)
    assert "'training' section" in result.output or needle == "max_iteration"
    assert not (tmp_path / "r").exists()


def test_bad_devices_list_is_a_clear_error(trained, tmp_path):
    _, train_file, _ = trained
    result = runner.invoke(app, ["train", "--data", str(train_file), "--out", str(tmp_path / "r"),
                                 "--max-iterations", "1", "--device", "cpu", "--devices", "1,a"])
    _one_line_error(result, "--devices")


def test_parse_floats_is_shared_by_the_commands(trained, tmp_path):
    assert parse_floats("1024, 65536", "--energies") == [1024.0, 65536.0]
    assert parse_floats(["500", "2e3,8e3"], "--split-energies") == [500.0, 2000.0, 8000.0]
    assert parse_floats(None, "--energies") is None and parse_floats([], "--energies") is None
    for bad in ("1,x", "", ","):
        with pytest.raises(ConfigError, match="expected --energies as a comma list of numbers"):
            parse_floats(bad, "--energies")
    generate = runner.invoke(app, ["generate", "--model", str(trained[0]), "--energies", "500,x",
                                   "-o", str(tmp_path / "g.h5")])
    _one_line_error(generate, "--energies")
    train = runner.invoke(app, ["train", "--data", str(trained[1]), "--out", str(tmp_path / "r"),
                                "--split-energies", "2000,x", "--max-iterations", "1"])
    _one_line_error(train, "--split-energies")
    simulate = runner.invoke(app, ["simulate", "-g", "ds2", "-p", "e-", "--n", "5", "-o", str(tmp_path / "s.h5"),
                                   "--energies", "1,x"])
    _one_line_error(simulate, "--energies")


def _tiny_model():
    showers = make_showers(GEOMETRY, 40, seed=5, energies=(500.0, 2000.0))
    config = GANConfig(noise_dim=4, generator_layers=(8, 8, 8), critic_layers=(8, 8, 8), batch_size=16)
    return GAN(config, Preprocessing.fit(showers, config.preprocessing))


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_bundle_directory_follows_the_umask_and_is_never_overwritten_without_force(tmp_path, umask_022):
    model = _tiny_model()
    path = save_model(tmp_path / "b", model, "gan", GEOMETRY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755  # readable by colleagues (mkdtemp alone gives 0o700)
    assert {stat.S_IMODE(f.stat().st_mode) for f in path.iterdir()} == {0o644}
    before = (path / "bundle.json").read_text()
    with pytest.raises(OutputExistsError, match="--force"):
        save_model(path, model, "gan", GEOMETRY, {"note": "second"})
    assert (path / "bundle.json").read_text() == before
    save_model(path, model, "gan", GEOMETRY, {"note": "second"}, force=True)
    assert load(path).info["note"] == "second" and stat.S_IMODE(path.stat().st_mode) == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temporary or old directory left behind
    with pytest.raises(OutputPathError, match="does not exist"):
        save_model(tmp_path / "missing" / "b", model, "gan", GEOMETRY)
    assert not (tmp_path / "missing").exists()


def test_bundle_json_is_strict_json_with_non_finite_values(tmp_path):
    def no_constants(name):
        raise ValueError(name)

    history = [{"iteration": 0, "chi2_ndf": math.inf}, {"iteration": 5, "chi2_ndf": 3.5}]
    path = save_model(tmp_path / "b", _tiny_model(), "gan", GEOMETRY,
                      {"history": history, "validation": {"chi2_ndf": math.nan, "per_energy": [(1.0, -math.inf)]}})
    info = json.loads((path / "bundle.json").read_text(), parse_constant=no_constants)  # no Infinity/NaN tokens
    assert info["history"] == [{"iteration": 0, "chi2_ndf": None}, {"iteration": 5, "chi2_ndf": 3.5}]
    assert info["validation"] == {"chi2_ndf": None, "per_energy": [[1.0, None]]}
    assert load(path).info["history"][0]["chi2_ndf"] is None


@pytest.mark.parametrize(("preset", "batch_size", "preprocessing"), [("cpu", 256, "total"), ("paper", 1024, "energy")])
def test_preset_chooses_the_model_defaults(trained, tmp_path, preset, batch_size, preprocessing):
    _, train_file, _ = trained
    out = tmp_path / preset
    (tmp_path / "small.yaml").write_text("model:\n  generator_layers: [8, 8, 8]\n  critic_layers: [8, 8, 8]\n"
                                         "  noise_dim: 4\n")
    result = runner.invoke(app, ["train", "--data", str(train_file), "--out", str(out), "--preset", preset,
                                 "--config", str(tmp_path / "small.yaml"), "--max-iterations", "1",
                                 "--checkpoint-every", "1", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "run.json").read_text())["config"]
    # the preset sets the defaults; the config file still overrides the networks
    assert config["batch_size"] == batch_size and config["preprocessing"] == preprocessing
    assert config["noise_dim"] == 4
    bad = runner.invoke(app, ["train", "--data", str(train_file), "--out", str(tmp_path / "x"), "--preset", "gpu",
                              "--max-iterations", "1"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output  # the command line's own usage error
    assert "'--preset'" in bad.output and "'auto', 'cpu', 'paper'" in bad.output
    assert not (tmp_path / "x").exists()
