"""The small public API of the top-level package, and install hints for optional extras."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import caloforge
from caloforge.errors import MissingDependencyError


def test_the_public_api_works_from_the_top_level(tmp_path):
    assert {"load", "io", "evaluate", "simulate", "Geometry", "ShowerSet", "CaloforgeError"} <= set(dir(caloforge))
    geometry = caloforge.Geometry.preset("ds1-photons")
    showers = caloforge.simulate(geometry, "photon", [1024.0] * 40, seed=1)
    assert isinstance(showers, caloforge.ShowerSet) and showers.geometry == geometry
    path = caloforge.io.write(tmp_path / "x.h5", showers)
    np.testing.assert_array_equal(caloforge.io.read(path).showers, showers.showers)
    assert callable(caloforge.load) and callable(caloforge.evaluate)
    assert caloforge.__version__
    assert "caloforge.simulate" in (caloforge.__doc__ or "")  # help(caloforge) shows an example
    with pytest.raises(AttributeError, match="no attribute 'train_everything'"):
        caloforge.train_everything  # noqa: B018


def test_a_missing_plot_extra_is_an_install_hint_before_any_work(tmp_path, monkeypatch):
    showers = caloforge.simulate("ds1-photons", "photon", [1024.0] * 40, seed=1)
    monkeypatch.setitem(sys.modules, "mplhep", None)  # as if caloforge[plot] were not installed
    with pytest.raises(MissingDependencyError, match=r'pip install "caloforge\[plot\]"'):
        caloforge.evaluate(showers, showers, tmp_path / "report")
    assert not (tmp_path / "report").exists()


def test_a_shower_set_converts_to_arrays_and_tensors_and_gives_its_layers():
    import torch

    showers = caloforge.simulate("ds1-photons", "photon", [4096.0] * 5, seed=2)
    assert np.asarray(showers) is showers.showers and showers.to_numpy() is showers.showers
    tensor = showers.to_torch()
    assert tensor.shape == (5, 368) and tensor.dtype == torch.float32
    np.testing.assert_array_equal(torch.as_tensor(np.asarray(showers)).numpy(), showers.showers)
    layer = showers.layer(2)  # EMB2: 10 alpha x 19 r bins
    assert layer.shape == (5, 10, 19)
    np.testing.assert_array_equal(layer.reshape(5, -1), showers.showers[:, showers.geometry.layer_slice(2)])


def test_lazy_attributes_import_in_a_fresh_interpreter():
    """``from caloforge import io`` (the README's second line) in a process that imported nothing else."""
    import subprocess

    code = ("from caloforge import io, load, evaluate, simulate; import caloforge; "
            "print(io.read, caloforge.io.iter_chunks)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
