"""The lean batch-1 path (caloforge.deploy.lean): one shower per call equals the batched path's output."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from caloforge.deploy.export import SamplingGraph
from caloforge.deploy.lean import LeanGenerator
from caloforge.errors import ConfigError
from families import one_step_bundle
from synthetic import make_showers
from test_deploy import UNIFORM

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:the validation sample has fewer:UserWarning")]


@pytest.mark.parametrize("family", ["gan", "vae", "flow"])
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_one_shower_per_call_equals_the_batched_path(family, backend, tmp_path):
    data = make_showers(UNIFORM, 64, seed=3, energies=(1000.0, 4000.0))
    bundle = one_step_bundle(tmp_path, family, UNIFORM, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lean = LeanGenerator(bundle, backend, seed=5, threads=1)
    energies = np.array([1000.0, 4000.0, 1500.0, 2500.0, 3900.0, 1100.0])
    noise = torch.randn(len(energies), lean.noise_size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():  # the batched path: every row in one pass, the same noise
        batched = SamplingGraph(bundle.models[0].eval())(noise, torch.as_tensor(energies, dtype=torch.float32)
                                                         .reshape(-1, 1)).numpy()
    rows = np.stack([lean(float(e), noise=noise[i].numpy()).copy() for i, e in enumerate(energies)])
    assert np.abs(batched).max() > 0 and rows.shape == (len(energies), UNIFORM.n_voxels)
    np.testing.assert_allclose(rows, np.maximum(batched, 0), rtol=1e-5, atol=1e-5 * np.abs(batched).max())
    # its own noise: the seeded draws of Bundle.generate at batch size 1, call after call
    lean.reseed(5)
    drawn = np.stack([lean(float(e)).copy() for e in energies])
    expected = bundle.generate(energies, batch_size=1, device="cpu", seed=5).showers
    np.testing.assert_allclose(drawn, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert not np.allclose(drawn[0], drawn[1])  # the noise advances between calls


def test_lean_path_refuses_what_it_cannot_run(tmp_path):
    data = make_showers(UNIFORM, 64, seed=3, energies=(1000.0, 4000.0))
    with pytest.raises(ConfigError, match="lean path"):
        LeanGenerator(one_step_bundle(tmp_path, "parametric", UNIFORM, data))
    gan = one_step_bundle(tmp_path, "gan", UNIFORM, data)
    lean = LeanGenerator(gan)
    for bad in (0.0, -5.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="incident energy"):
            lean(bad)
    with pytest.raises(ConfigError, match="conditions"):
        lean(1000.0, [1.0])
    with pytest.raises(ConfigError, match="backend"):
        LeanGenerator(gan, "tensorrt")
