"""Bundles and the ``train``/``generate`` commands: round trips and clear errors on bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from caloforge import io
from caloforge.bundle import ExtrapolationWarning, load
from caloforge.cli import app
from caloforge.errors import CheckpointError
from caloforge.geometry import Geometry, Layer
from synthetic import make_showers

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
  checkpoint_every: 5
  validation_fraction: 0.2
"""


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained through the CLI: (run directory, training file, evaluation file)."""
    root = tmp_path_factory.mktemp("cli")
    train_file = io.write(root / "train.h5", make_showers(GEOMETRY, 400, seed=1, energies=(500.0, 2000.0, 8000.0)))
    ref_file = io.write(root / "ref.h5", make_showers(GEOMETRY, 60, seed=2, energies=(8000.0, 500.0, 2000.0)))
    (root / "cfg.yaml").write_text(CONFIG)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    result = runner.invoke(app, ["train", "--data", str(train_file), "--out", str(root / "run"), "--config",
                                 str(root / "cfg.yaml"), "--max-iterations", "10", "--device", "cpu",
                                 "--no-progress"])
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    assert "validation chi2/NDF" in result.output
    return root / "run", train_file, ref_file


def test_flags_override_the_config_file(trained):
    run_dir, _, _ = trained
    settings = json.loads((run_dir / "run.json").read_text())
    assert settings["config"]["noise_dim"] == 4 and settings["checkpoint_every"] == 5
    assert len((run_dir / "log.csv").read_text().splitlines()) == 1 + 3  # header + iterations 0 (untrained), 5, 10


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
    args = ["generate", "--model", str(run_dir / "bundle"), "--energies", "500,2000", "--n", "3", "-o", str(out)]
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
    with pytest.raises(CheckpointError, match=r"weights|JSON|format"):
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
        result = runner.invoke(app, ["generate", "--model", str(trained[0]), "--energies", "1e6", "--n", "2",
                                     "-o", str(tmp_path / "g.h5")])
    assert result.exit_code == 0


def test_bad_cli_inputs_are_clear_errors(trained, tmp_path):
    run_dir, train_file, _ = trained
    cases = [
        (["generate", "--model", str(run_dir), "-o", str(tmp_path / "g.h5")], "--like"),
        (["train", "--data", str(train_file), "--out", str(tmp_path / "r"), "--model", "nope",
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
