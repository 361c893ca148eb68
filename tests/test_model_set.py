"""Model sets: each shower goes to the bundle of its particle, |eta| and incident energy; points outside every
slice and damaged manifests are one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from caloforge.campaign.model_set import ModelSet, write_model_set
from caloforge.cli import app
from caloforge.errors import CheckpointError, ConfigError
from caloforge.training import load
from caloforge.training.bundle_format import save_split
from families import untrained_gan_bundle
from synthetic import make_showers

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model_set(tmp_path, tiny_geometry):
    """Photons in |eta| 0-0.4 (one bundle, 1-4 GeV) and 0.4-1.0 (split at 2 GeV); pions in 0-1.0."""
    root = tmp_path / "set"
    root.mkdir()
    low = make_showers(tiny_geometry, 40, seed=1, energies=(1000.0, 4000.0))
    untrained_gan_bundle(root / "photon-central", low, 1)
    parts = [untrained_gan_bundle(tmp_path / f"part{i}", make_showers(tiny_geometry, 40, seed=2 + i, energies=e), 2 + i)
             for i, e in enumerate(((1000.0, 1500.0), (2000.0, 4000.0)))]
    save_split(root / "photon-forward", parts, [2000.0])
    untrained_gan_bundle(root / "pion-all", low, 4)
    common = {"family": "gan", "trial": "t", "params": {}, "metrics": {"objective": 1.5}}
    write_model_set(root, "test", "chi2_ndf", [
        {**common, "slice": "photon-central", "particle": "photon", "eta": [0.0, 0.4], "bundle": "photon-central",
         "energy": [1000.0, 4000.0]},
        {**common, "slice": "photon-forward", "particle": "photon", "eta": [0.4, 1.0], "bundle": "photon-forward",
         "energy": [1000.0, 4000.0], "splits": [2000.0]},
        {**common, "slice": "pion-all", "particle": "pion", "eta": [0.0, 1.0], "bundle": "pion-all",
         "energy": [1000.0, 4000.0]},
    ])
    return root


def test_dispatch_by_particle_eta_and_energy(model_set):
    models = ModelSet.load(model_set)
    assert len(models.entries) == 4  # the split slice has one entry per energy range
    name = lambda *point: models.lookup(*point).bundle.relative_to(model_set).as_posix()  # noqa: E731
    assert name("photon", 0.2, 1000.0) == "photon-central"
    assert name("gamma", -0.39, 4000.0) == "photon-central"  # aliases, the sign of eta, the top energy included
    assert name("photon", 0.4, 1000.0) == "photon-forward/range-0"  # |eta| ranges are [low, high)
    assert name("photon", 0.7, 1999.0) == "photon-forward/range-0"
    assert name("photon", 0.7, 2000.0) == "photon-forward/range-1"  # a split energy starts the upper range
    assert name("photon", 0.99, 4000.0) == "photon-forward/range-1"
    assert name("pi+", 0.7, 3000.0) == "pion-all"
    assert models.lookup("photon", 0.2, 1000.0).metrics == {"objective": 1.5}


@pytest.mark.parametrize(("particle", "eta", "energy"), [("electron", 0.2, 1000.0), ("photon", 1.0, 1000.0),
                                                         ("photon", 2.5, 1000.0), ("photon", 0.2, 5000.0),
                                                         ("pion", 0.2, 500.0)])
def test_a_point_outside_every_slice_is_one_clear_error(model_set, particle, eta, energy):
    with pytest.raises(ConfigError) as err:
        ModelSet.load(model_set).lookup(particle, eta, energy)
    assert "outside every one" in str(err.value) and "photon |eta| 0-0.4, 1000-4000 MeV" in str(err.value)
    assert "\n" not in str(err.value)


def test_generation_sends_each_shower_to_its_bundle(model_set):
    models = ModelSet.load(model_set)
    energies = np.array([1000.0, 3000.0, 1200.0, 4000.0])
    showers = models.generate("photon", 0.8, energies, seed=5, device="cpu")
    assert showers.showers.shape == (4, 8) and np.array_equal(showers.energies, energies)
    low, high = load(model_set / "photon-forward" / "range-0"), load(model_set / "photon-forward" / "range-1")
    # entry k of the call (in order of first use) is seeded with seed + k
    np.testing.assert_array_equal(showers.showers[[0, 2]], low.generate([1000.0, 1200.0], seed=5).showers)
    np.testing.assert_array_equal(showers.showers[[1, 3]], high.generate([3000.0, 4000.0], seed=6).showers)
    again = models.generate("photon", -0.8, energies, seed=5, device="cpu")
    np.testing.assert_array_equal(again.showers, showers.showers)
    with pytest.raises(ConfigError, match="outside every one"):
        models.generate("photon", 0.8, [1000.0, 9000.0], seed=5)


def test_damaged_manifests_are_refused(model_set):
    manifest = model_set / "model_set.json"
    info = json.loads(manifest.read_text())
    for change, words in (({"format": "other"}, "format"),
                          ({"entries": [{**info["entries"][0], "bundle": "../elsewhere"}]}, "inside the model set"),
                          ({"entries": [{"slice": "x"}]}, "entry 0"), ({"entries": []}, "at least one entry")):
        manifest.write_text(json.dumps({**info, **change}))
        with pytest.raises(CheckpointError, match=words):
            ModelSet.load(model_set)
    with pytest.raises(CheckpointError, match="could not read"):
        ModelSet.load(model_set / "missing")


def test_caloforge_generate_with_a_model_set(model_set, tmp_path):
    runner = CliRunner()
    out = tmp_path / "gen.h5"
    result = runner.invoke(app, ["generate", "--model-set", str(model_set / "model_set.json"), "--particle", "photon",
                                 "--eta", "0.22", "--energies", "1000,4000", "--n-per-energy", "3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    import h5py

    with h5py.File(out) as f:
        assert f["showers"].shape == (6, 8)
    for args, words in ((["--eta", "0.22", "--energies", "1000"], "--particle and --eta"),
                        (["--particle", "photon", "--eta", "3", "--energies", "1000"], "outside every one"),
                        (["--particle", "photon", "--eta", "0.2", "--energies", "1000", "--model", str(model_set)],
                         "exactly one of --model")):
        result = runner.invoke(app, ["generate", "--model-set", str(model_set), "-o", str(tmp_path / "x.h5"), *args])
        assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output
