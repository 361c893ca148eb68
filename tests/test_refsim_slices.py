"""Eta slices of the ATLAS-like reference detector: longer paths and more material in front, with physics sense.

Each comparison uses the same seed and 2000 showers per sample: the mean response then has a
statistical error below 0.002 and a layer fraction one below 0.003, so the required differences
(several times larger) are safe.
"""

from __future__ import annotations

import numpy as np
import pytest

from caloforge.data.presets import PRESETS
from caloforge.errors import ConfigError
from caloforge.refsim import atlas_like, detector_for, simulate, simulate_to_file
from caloforge.refsim.presets import COSH_ETA

N = 2000


def _layers(showers):
    geometry = showers.geometry
    return np.array([(showers.showers[:, geometry.layer_slice(i)].sum(1) / showers.energies).mean()
                     for i in range(geometry.n_layers)])


def test_default_detector_is_unchanged():
    assert atlas_like() == atlas_like(0.2, 0.0) == atlas_like(cosh_eta=COSH_ETA)
    assert atlas_like().name == "ATLAS-barrel-like |eta|~0.2"
    assert detector_for(PRESETS["ds1-photons"]) == atlas_like()
    assert "extra material" not in " ".join(s.name for s in atlas_like().slabs)


def test_more_material_in_front_starts_showers_earlier_and_loses_energy():
    e = np.full(N, 16384.0)
    base = simulate("ds1-photons", "photon", e, seed=3, detector=atlas_like(0.2, 0.0))
    heavy = simulate("ds1-photons", "photon", e, seed=3, detector=atlas_like(0.2, 2.0))
    # Layers of ds1 photons: presampler, EMB1, EMB2, EMB3, TileBar0. 2 X0 more in front: the shower
    # develops earlier, so the presampler and the strips see more, the middle layer less (measured
    # 0.25 -> 0.40 and 0.73 -> 0.53 for EMB1 and EMB2).
    f_base, f_heavy = _layers(base), _layers(heavy)
    assert f_heavy[0] > f_base[0] and f_heavy[1] > f_base[1] + 0.08 and f_heavy[2] < f_base[2] - 0.1
    # Energy lost in the dead material: a lower response of the EM layers (measured 0.99 -> 0.93) ...
    assert f_heavy[1:4].sum() < f_base[1:4].sum() - 0.03
    assert heavy.response.mean() < base.response.mean() - 0.03
    # ... and its shower-to-shower fluctuation worsens the resolution (measured 2.6 % -> 6.5 %).
    rel = [s.response.std() / s.response.mean() for s in (base, heavy)]
    assert rel[1] > 1.5 * rel[0]


def test_a_slice_at_larger_eta_crosses_more_material():
    e = np.full(N, 65536.0)
    central = simulate("ds1-pions", "pion", e, seed=4, detector=atlas_like(0.2))
    forward = simulate("ds1-pions", "pion", e, seed=4, detector=atlas_like(0.8))
    # cosh(0.8) / cosh(0.2) = 1.31: every layer is 31 % deeper, so the strips hold more of the shower
    # (measured 0.06 -> 0.10 for pions) and more energy is lost in front (response 0.80 -> 0.78).
    assert _layers(forward)[1] > _layers(central)[1] + 0.02
    assert forward.response.mean() < central.response.mean() - 0.01
    assert atlas_like(0.8).name == "ATLAS-barrel-like |eta|~0.8"


def test_a_slice_detector_goes_into_the_file(tmp_path):
    path = simulate_to_file(tmp_path / "slice.h5", "ds1-photons", "photon", 20, seed=1, energies=[4096.0],
                            detector=atlas_like(0.7, 1.0))
    import h5py

    with h5py.File(path) as f:
        assert f.attrs["caloforge_refsim_detector"] == "ATLAS-barrel-like |eta|~0.7, +1 X0 in front"


@pytest.mark.parametrize(("eta", "extra", "match"), [(2.0, 0.0, "eta"), (float("nan"), 0.0, "eta"),
                                                    (0.2, -1.0, "extra_material_x0"),
                                                    (0.2, 50.0, "extra_material_x0")])
def test_bad_slices_are_refused(eta, extra, match):
    with pytest.raises(ConfigError, match=match):
        atlas_like(eta, extra)
