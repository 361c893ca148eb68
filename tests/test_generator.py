"""One Generator interface (caloforge.generator, caloforge.deploy.backends): the torch bundle, its ONNX graph and
a model set answer the same call with the same showers; checks and energy routing are written once."""

from __future__ import annotations

import re

import numpy as np
import pytest

from caloforge.campaign.model_set import write_model_set
from caloforge.data.geometry import Geometry, Layer
from caloforge.deploy.backends import open_generator
from caloforge.errors import CaloforgeError, ConfigError, GeometryMismatchError
from caloforge.generator import Generator, check_request, generate_like, route
from caloforge.training import load
from caloforge.training.bundle_format import save_split
from families import untrained_gan_bundle
from synthetic import make_showers

pytestmark = pytest.mark.usefixtures("one_thread")

ENERGIES = [1000.0, 3000.0, 1500.0, 4000.0, 2000.0]


@pytest.fixture
def split_bundle(tmp_path, tiny_geometry):
    """A bundle split at 2 GeV: (its directory, the two parts' directories)."""
    parts = [untrained_gan_bundle(tmp_path / f"part{i}", make_showers(tiny_geometry, 40, seed=2 + i, energies=e), 2 + i)
             for i, e in enumerate(((1000.0, 1500.0), (2000.0, 4000.0)))]
    return save_split(tmp_path / "split", parts, [2000.0]), parts


def test_routing_sends_each_energy_to_its_range_and_checks_the_request():
    e = np.array([500.0, 2000.0, 1999.0, 9000.0, 2500.0])
    assert [(k, rows.tolist()) for k, rows in route(e, (2000.0, 5000.0))] == [(0, [0, 2]), (1, [1, 4]), (2, [3])]
    assert [(k, rows.tolist()) for k, rows in route(e, ())] == [(0, [0, 1, 2, 3, 4])]
    request = check_request(np.array([[1000.0], [2000.0]]), {"theta": [0.1, 0.2]}, seed=4, batch_size=2.0,
                            condition_names=("theta",), where="generate (test)")
    assert request.energies.shape == (2,) and request.batch_size == 2 and request.conditions["theta"].dtype == float
    part = request.subset(np.array([1]))
    assert part.energies.tolist() == [2000.0] and part.conditions["theta"].tolist() == [0.2] and part.seed == 4
    for kwargs, words in (({"energies": []}, "at least one incident energy"), ({"batch_size": 0}, "batch_size"),
                          ({"seed": -1}, "seed"), ({"conditions": {}}, "expected conditions ['theta']"),
                          ({"conditions": {"theta": [0.1]}}, "with 2 values each")):
        args = {"energies": [1000.0, 2000.0], "conditions": {"theta": [0.1, 0.2]}, "seed": 0, "batch_size": 5,
                **kwargs}
        with pytest.raises(CaloforgeError, match=re.escape(words)) as err:
            check_request(**args, condition_names=("theta",), where="generate (test)")
        assert "\n" not in str(err.value) and "generate (test)" in str(err.value)


def test_every_backend_is_a_generator_giving_the_same_showers(split_bundle, tiny_geometry):
    pytest.importorskip("onnxruntime")
    split, parts = split_bundle
    torch_gen = open_generator(split, device="cpu")
    onnx_gen = open_generator(split, "onnxruntime")
    assert isinstance(torch_gen, Generator) and isinstance(onnx_gen, Generator)
    ours = torch_gen.generate(ENERGIES, seed=3, batch_size=2)
    theirs = onnx_gen.generate(ENERGIES, seed=3, batch_size=2)
    np.testing.assert_allclose(theirs.showers, ours.showers, rtol=1e-5, atol=1e-5 * np.abs(ours.showers).max())
    # range k of the split bundle draws from seed + k, as its part generates alone
    low = load(parts[0]).generate([1000.0, 1500.0], batch_size=2, device="cpu", seed=3).showers
    high = load(parts[1]).generate([3000.0, 4000.0, 2000.0], batch_size=2, device="cpu", seed=4).showers
    np.testing.assert_array_equal(ours.showers[[0, 2]], low)
    np.testing.assert_array_equal(ours.showers[[1, 3, 4]], high)
    reference = make_showers(tiny_geometry, 6, seed=9, energies=(1000.0, 4000.0))
    for generator in (torch_gen, onnx_gen):
        like = generate_like(generator, reference, seed=5, batch_size=4)
        assert like.energies.tolist() == reference.energies.tolist()
        np.testing.assert_array_equal(like.showers, generator.generate(reference.energies, seed=5,
                                                                       batch_size=4).showers)
    wider = Geometry((*tiny_geometry.layers[:1], Layer(5, (0.0, 2.0, 5.0), 2)), name="wider")
    with pytest.raises(GeometryMismatchError, match="model's geometry 'tiny'"):
        generate_like(torch_gen, make_showers(wider, 4, seed=1))


def test_a_model_set_at_one_point_is_a_generator(split_bundle, tmp_path, tiny_geometry):
    root = tmp_path / "set"
    root.mkdir()
    untrained_gan_bundle(root / "central", make_showers(tiny_geometry, 40, seed=1, energies=(1000.0, 4000.0)), 1)
    write_model_set(root, "test", "chi2_ndf", [{"family": "gan", "slice": "central", "particle": "photon",
                                                "eta": [0.0, 0.4], "bundle": "central", "energy": [1000.0, 4000.0]}])
    generator = open_generator(root, particle="gamma", eta=-0.3, device="cpu")
    assert isinstance(generator, Generator) and generator.geometry == tiny_geometry
    assert generator.condition_names == ()
    got = generator.generate(ENERGIES, seed=2, batch_size=3).showers
    np.testing.assert_array_equal(got, load(root / "central").generate(ENERGIES, batch_size=3, device="cpu",
                                                                       seed=2).showers)
    with pytest.raises(ConfigError, match="particle and eta"):
        open_generator(root, device="cpu")  # a model set needs its point
    with pytest.raises(ConfigError, match="outside every one"):
        _ = open_generator(root, particle="photon", eta=2.0).geometry
