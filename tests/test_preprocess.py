"""Preprocessing: exact inverses, JSON round trips, energy conditioning."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from caloforge.data.showers import ShowerSet
from caloforge.errors import ConfigError
from caloforge.models.preprocess import EnergyScaler, Preprocessing, ShowerTransform
from synthetic import make_showers


@pytest.fixture
def showers_with_condition(tiny_geometry):
    data = make_showers(tiny_geometry, 200, seed=3, energies=(300.0, 1000.0, 5000.0))
    theta = np.random.default_rng(0).uniform(0.2, 1.0, len(data))
    return ShowerSet(data.energies, data.showers, data.geometry, {"theta": theta})


@pytest.mark.parametrize("kind", ["energy", "layer", "total"])
def test_inverse_of_forward_is_identity(showers_with_condition, kind):
    data = showers_with_condition
    p = Preprocessing.fit(data, kind)
    x = torch.tensor(data.showers, dtype=torch.float64)
    e = torch.tensor(data.energies)
    z = p.showers.forward(x, e)
    assert z.shape == (len(data), p.n_features)
    torch.testing.assert_close(p.showers.inverse(z, e), x, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["layer", "total"])
def test_inverse_handles_empty_layers(tiny_geometry, kind):
    showers = np.zeros((2, tiny_geometry.n_voxels), np.float32)
    showers[0, :6] = 1.0  # second layer empty; second shower empty
    data = ShowerSet(np.array([10.0, 10.0]), showers, tiny_geometry)
    p = Preprocessing.fit(data, kind)
    x, e = torch.tensor(data.showers), torch.tensor(data.energies)
    torch.testing.assert_close(p.showers.inverse(p.showers.forward(x, e), e), x)


@pytest.mark.parametrize("kind", ["energy", "layer", "total"])
def test_json_round_trip(showers_with_condition, kind):
    p = Preprocessing.fit(showers_with_condition, kind)
    again = Preprocessing.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p


def test_layer_fractions_are_at_most_one(showers_with_condition):
    data = showers_with_condition
    p = Preprocessing.fit(data, "layer")
    z = p.showers.forward(torch.tensor(data.showers), torch.tensor(data.energies))
    assert float(z[:, : data.geometry.n_layers].max()) == pytest.approx(1.0)


def test_total_response_is_standardised_per_energy(tiny_geometry):
    # a response whose mean and width change with energy, as in a calorimeter
    raw = make_showers(tiny_geometry, 3000, seed=4, energies=(300.0, 3000.0, 30000.0))
    rng = np.random.default_rng(1)
    width = np.where(raw.energies < 1000, 0.2, 0.01)
    response = 0.9 + width * rng.standard_normal(len(raw))
    showers = raw.showers / raw.response[:, None].astype(np.float32) * response[:, None].astype(np.float32)
    data = ShowerSet(raw.energies, showers.clip(min=0), tiny_geometry)
    p = Preprocessing.fit(data, "total")
    z = p.showers.forward(torch.tensor(data.showers, dtype=torch.float64), torch.tensor(data.energies))[:, 0]
    z = (z.numpy() * 12) - 6  # back from the [0, 1] mapping to standard units
    for energy in (300.0, 3000.0, 30000.0):
        at = z[data.energies == energy]
        # fitted on these very showers: mean 0 and unit RMS to float precision
        assert abs(at.mean()) < 1e-6 and at.std() == pytest.approx(1.0, rel=1e-6)
    # between training energies the moments are interpolated linearly in log E
    mean, std = p.showers._response_moments(torch.tensor([[np.sqrt(300.0 * 3000.0)]], dtype=torch.float64))
    lo, hi = data.response[data.energies == 300.0], data.response[data.energies == 3000.0]
    assert float(std) == pytest.approx((lo.std() + hi.std()) / 2, rel=1e-6)
    assert float(mean) == pytest.approx((lo.mean() + hi.mean()) / 2, rel=1e-6)


def test_energy_conditioning_spans_unit_interval(showers_with_condition):
    p = Preprocessing.fit(showers_with_condition, "energy")
    c = p.condition(torch.tensor([300.0, 5000.0]), {"theta": torch.tensor([0.6, 0.6])})
    assert c.shape == (2, 2)
    assert c[:, 0].tolist() == pytest.approx([0.0, 1.0])
    assert EnergyScaler(100.0, 100.0).forward(torch.tensor([100.0])).item() == 0.0


def test_missing_condition_is_a_clear_error(showers_with_condition):
    p = Preprocessing.fit(showers_with_condition, "energy")
    with pytest.raises(ConfigError, match="expected conditions"):
        p.condition(torch.tensor([300.0]))


def test_bad_descriptions_are_config_errors():
    with pytest.raises(ConfigError, match="shower transform"):
        ShowerTransform("log", (8,), (1.0,))
    with pytest.raises(ConfigError, match="preprocessing"):
        Preprocessing.from_dict({"showers": {}})
