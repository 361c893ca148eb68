"""Evaluation streamed from files in small chunks gives the numbers of the evaluation in memory.

The in-memory numbers are also checked against the metrics computed directly on whole arrays
(voxel histograms, mean showers, PRDC, the low-level classifier), so that reading only the rows
a subsampled metric uses is shown to pick exactly the rows it would pick.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from caloforge.data import io
from caloforge.data.geometry import Geometry, Layer
from caloforge.data.source import ShowerFile
from caloforge.errors import ConfigError
from caloforge.refsim import simulate
from caloforge.runtime import resources
from caloforge.validation.evaluate import compute_evaluation
from caloforge.validation.features import apply_threshold, low_level_inputs
from caloforge.validation.metrics.classifier import ClassifierConfig, classifier_test
from caloforge.validation.metrics.prdc import prdc, prdc_inputs
from caloforge.validation.metrics.separation import voxel_histogram

evaluation = importlib.import_module("caloforge.validation.evaluate")  # the module (the package exports the function)
TINY_NET = ClassifierConfig(hidden=(16,), batch_size=32, max_epochs=2, repeats=1, max_showers=50, precision="fp32")
# a W/Si-like binning of no CaloChallenge dataset: data-driven bins, threshold 0 (smallest positive voxel)
CUSTOM = Geometry(tuple(Layer(i, (0.0, 4.65, 9.3, 18.6, 37.2), 3 if i % 2 else 1) for i in range(6)), name="tiny")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("stream")
    energies = np.repeat(2.0 ** np.arange(10, 13), 30)
    skewed = np.repeat(2.0 ** np.arange(10, 13), [40, 30, 20])  # other counts per energy range (no warning yet)
    out = {}
    for name, geometry, particle in (("ds1", "ds1-photons", "photon"), ("custom", CUSTOM, "electron")):
        io.write(base / f"{name}-ref.h5", simulate(geometry, particle, energies, seed=1))
        io.write(base / f"{name}-gen.h5", simulate(geometry, particle, skewed, seed=2))
        out[name] = (base / f"{name}-ref.h5", base / f"{name}-gen.h5", geometry)
    return out


def _evaluations(paths, mode, monkeypatch):
    ref_path, gen_path, geometry = paths
    geometry = CUSTOM if geometry is CUSTOM else None
    monkeypatch.setattr(evaluation, "PRDC_SAMPLES", 40)  # fewer than either sample: PRDC subsamples
    args = {"mode": mode, "seed": 3, "classifier_config": TINY_NET}
    memory = compute_evaluation(io.read(ref_path, geometry), io.read(gen_path, geometry), **args)
    streamed = compute_evaluation(ShowerFile.open(ref_path, geometry), ShowerFile.open(gen_path, geometry),
                                  chunk_size=7, **args)
    return memory, streamed


def _same(a, b, where=""):
    """Equal JSON trees: numbers to 1e-12 relative, NaN where NaN, everything else exactly."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and not isinstance(a, bool):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-300), where
    else:
        assert a == b, where


@pytest.mark.parametrize("mode", ["fast", pytest.param("full", marks=pytest.mark.slow)])
@pytest.mark.parametrize("sample", ["ds1", "custom"])
def test_streamed_files_give_the_numbers_in_memory(files, sample, mode, monkeypatch):
    memory, streamed = _evaluations(files[sample], mode, monkeypatch)
    left, right = memory.to_dict(), streamed.to_dict()
    left.pop("timings_s"), right.pop("timings_s")
    _same(left, right)
    geometry = files[sample][2] if sample == "custom" else None
    assert left["inputs"]["generated"] == io.read(files[sample][1], geometry).fingerprint()  # computed on the way
    for x, y in zip(memory.histograms, streamed.histograms, strict=True):  # counts, not only separations
        assert np.array_equal(x.edges, y.edges) and np.array_equal(x.reference, y.reference), x.name
        assert np.array_equal(x.generated, y.generated), x.name
    np.testing.assert_allclose(streamed.mean_reference, memory.mean_reference, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(streamed.mean_generated, memory.mean_generated, rtol=1e-12, atol=1e-300)
    assert len(memory.energy_means) == len(streamed.energy_means) == 3
    for x, y in zip(memory.energy_means, streamed.energy_means, strict=True):
        np.testing.assert_allclose(y.mean_reference, x.mean_reference, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(y.mean_generated, x.mean_generated, rtol=1e-12, atol=1e-300)
    if mode == "full":
        assert set(memory.classifiers) == {"low", "high"} and memory.prdc is not None
        for kind in ("low", "high"):  # the same seed, the same rows: the same trainings
            assert streamed.classifiers[kind].auc == memory.classifiers[kind].auc
            assert streamed.classifiers_split[kind].auc == memory.classifiers_split[kind].auc


@pytest.mark.slow
def test_the_rows_read_are_those_the_metrics_pick_from_whole_samples(files, monkeypatch):
    ref_path, gen_path, _ = files["ds1"]
    memory, streamed = _evaluations(files["ds1"], "full", monkeypatch)
    ref, gen = io.read(ref_path), io.read(gen_path)
    ref_s, gen_s = apply_threshold(ref, memory.threshold), apply_threshold(gen, memory.threshold)
    voxels = voxel_histogram(ref_s.showers, gen_s.showers, memory.threshold, geometry=ref.geometry)
    assert np.array_equal(streamed.histograms[-1].reference, voxels.reference)
    assert np.array_equal(streamed.histograms[-1].generated, voxels.generated)
    np.testing.assert_allclose(streamed.mean_reference, ref_s.showers.mean(axis=0, dtype=np.float64), rtol=1e-12)
    top = streamed.energy_means[-1]  # 4 GeV: 30 reference and 20 generated showers
    direct = (gen_s.showers[gen.energies == 4096.0] / 4096.0).mean(axis=0, dtype=np.float64)
    assert (top.n_reference, top.n_generated) == (30, 20)
    np.testing.assert_allclose(top.mean_generated, direct, rtol=1e-6, atol=1e-12)
    whole = prdc(prdc_inputs(ref_s.showers), prdc_inputs(gen_s.showers), max_samples=40, seed=3)
    assert streamed.prdc == whole
    low = classifier_test(low_level_inputs(ref_s, 0.0), low_level_inputs(gen_s, 0.0), TINY_NET, seed=3)
    assert streamed.classifiers["low"].auc == low.auc and low.n_per_sample == 50


def test_a_classifier_subset_too_large_is_refused_before_reading(files, monkeypatch):
    ref_path, gen_path, _ = files["ds1"]
    reference, generated = ShowerFile.open(ref_path), ShowerFile.open(gen_path)
    monkeypatch.setattr(resources, "available_memory_bytes", lambda: 10 << 20)  # 10 MiB
    monkeypatch.setattr(io, "iter_rows", None)  # any read of showers would fail differently
    with pytest.raises(ConfigError, match="low-level classifier.*max_showers.*--classifier-showers") as err:
        compute_evaluation(reference, generated, mode="full", classifiers=("low",), with_prdc=False,
                           classifier_config=TINY_NET.replace(hidden=(4096,)))
    assert "\n" not in str(err.value)
