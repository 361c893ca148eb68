"""Bundles that were damaged or tampered with are refused at load, in one line; devices and inputs are checked.

Each test edits a freshly saved tiny bundle the way a bad disk, a bad copy or a hand edit
would, and expects a :class:`CheckpointError` from :func:`caloforge.training.bundle.load`.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save

from caloforge.data.geometry import Geometry, Layer
from caloforge.data.showers import ShowerSet
from caloforge.errors import CheckpointError, ConfigError, DataError
from caloforge.models import GAN, GANConfig
from caloforge.models.base import check_model_size
from caloforge.models.preprocess import Preprocessing
from caloforge.runtime import resources
from caloforge.runtime.hardware import resolve_device
from caloforge.training.bundle import load
from caloforge.training.bundle_format import save_model, save_split
from synthetic import make_showers

TINY = GANConfig(noise_dim=4, generator_layers=(8,), critic_layers=(8,), batch_size=16)


def _save(path: Path, data: ShowerSet) -> Path:
    torch.manual_seed(0)
    model = GAN(TINY, Preprocessing.fit(data, TINY.preprocessing))
    return save_model(path, model, "gan", data.geometry)


@pytest.fixture
def data(tiny_geometry: Geometry) -> ShowerSet:
    return make_showers(tiny_geometry, 40, seed=2, energies=(500.0, 2000.0))


@pytest.fixture
def bundle(tmp_path: Path, data: ShowerSet) -> Path:
    return _save(tmp_path / "bundle", data)


def _info(bundle: Path) -> dict[str, Any]:
    info: dict[str, Any] = json.loads((bundle / "bundle.json").read_text())
    return info


def _write_info(bundle: Path, info: dict[str, Any]) -> None:
    (bundle / "bundle.json").write_text(json.dumps(info))  # json.dumps writes NaN when asked to


def _refused(bundle: Path, match: str) -> str:
    with pytest.raises(CheckpointError, match=match) as err:
        load(bundle)
    text = str(err.value)
    assert "\n" not in text
    return text


# ------------------------------------------------------------------ weights hash
def test_the_weights_hash_is_recorded_and_checked(bundle: Path) -> None:
    weights = (bundle / "model.safetensors").read_bytes()
    assert _info(bundle)["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert len(load(bundle).generate([1000.0], device="cpu")) == 1


def test_a_flipped_byte_in_the_weights_is_refused(bundle: Path) -> None:
    weights = bytearray((bundle / "model.safetensors").read_bytes())
    weights[-5] ^= 0x40  # inside the last tensor's data: safetensors still parses it
    (bundle / "model.safetensors").write_bytes(bytes(weights))
    load_file(bundle / "model.safetensors")  # still a readable file: only the hash can tell
    _refused(bundle, "sha256 .* recorded in bundle.json but it has .*corrupt or were replaced")


def test_a_bundle_without_hash_is_refused_unless_trusted_explicitly(bundle: Path) -> None:
    info = _info(bundle)
    del info["weights_sha256"]  # deleting the entry must not turn the check off
    _write_info(bundle, info)
    _refused(bundle, "weights_sha256.* is missing.*trust_unverified=True")
    assert load(bundle, trust_unverified=True).geometry.n_voxels == 8


def test_a_missing_tensor_is_refused_even_with_a_matching_hash(bundle: Path) -> None:
    # guards load_state_dict(strict=True): a missing tensor must never load as a random initialisation
    state = load_file(bundle / "model.safetensors")
    del state[sorted(state)[0]]
    weights = save(state, metadata={"format": "pt"})
    (bundle / "model.safetensors").write_bytes(weights)
    info = _info(bundle)
    info["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    _write_info(bundle, info)
    _refused(bundle, "expected weights matching the model .*Missing key")


# -------------------------------------------------------------------- bundle.json
@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_bundle_json_are_refused(bundle: Path, bad: str) -> None:
    text = (bundle / "bundle.json").read_text()
    text = text.replace('"e_min": ', f'"e_min": {bad}, "was": ', 1)
    (bundle / "bundle.json").write_text(text)
    _refused(bundle, "expected valid JSON .*expected finite numbers")


def test_non_finite_numbers_anywhere_are_refused(bundle: Path) -> None:
    info = _info(bundle)
    info["history"] = [{"chi2": math.nan}]  # loaded fine before: nothing read the history
    _write_info(bundle, info)
    _refused(bundle, "finite numbers but got NaN")


def test_a_geometry_that_does_not_match_the_preprocessing_is_refused(bundle: Path) -> None:
    info = _info(bundle)
    other = Geometry((Layer(0, (0.0, 1.0, 2.0, 4.0, 8.0), 2),), name="other")  # 8 voxels in one layer, not 6 + 2
    info["geometry"] = other.to_dict()
    _write_info(bundle, info)
    _refused(bundle, r"voxels per layer \[8\] to match the preprocessing's \[6, 2\]")


def test_an_absurd_config_is_refused_before_allocating(bundle: Path) -> None:
    info = _info(bundle)
    info["config"]["noise_dim"] = 10**6
    info["config"]["generator_layers"] = [10**6]  # a 10^6 x 10^6 layer: 4 TB of float32
    _write_info(bundle, info)
    text = _refused(bundle, r"expected a GAN with 1,000,0\d\d,\d{3},\d{3} parameters \(loading\) to fit in memory")
    assert "reduce the layer sizes" in text and "bundle.json" in text


def test_check_model_size_for_training(data: ShowerSet, monkeypatch: pytest.MonkeyPatch) -> None:
    prep = Preprocessing.fit(data, TINY.preprocessing)
    n = check_model_size(GAN, TINY, prep)
    assert n == sum(p.numel() for p in GAN(TINY, prep).parameters())
    monkeypatch.setattr(resources, "available_memory_bytes", lambda: 16 * n)  # needs 16 B per parameter, + buffers
    with pytest.raises(ConfigError, match=f"a GAN with {n:,} parameters \\(training\\)"):
        check_model_size(GAN, TINY, prep)
    assert check_model_size(GAN, TINY, prep, training=False) == n  # loading needs 8 B per parameter


# ------------------------------------------------------------------ split bundles
@pytest.fixture
def split(tmp_path: Path, bundle: Path, data: ShowerSet) -> Path:
    high = _save(tmp_path / "high", data)
    return save_split(tmp_path / "split", [bundle, high], [1000.0])


@pytest.mark.parametrize("part", ["ABSOLUTE", "../bundle", "range-0/../../bundle", "./range-0", "", ".", 3, None])
def test_split_parts_outside_the_bundle_are_refused(split: Path, part: object) -> None:
    assert len(load(split).models) == 2
    info = _info(split)
    info["parts"][0] = str(split.parent / "bundle") if part == "ABSOLUTE" else part
    _write_info(split, info)
    _refused(split, "expected the parts of a split bundle to be sub-directories such as 'range-0'")


def test_split_part_that_is_a_symlink_is_refused(split: Path) -> None:
    info = _info(split)
    (split / "link").symlink_to(split.parent / "bundle")
    info["parts"][0] = "link"
    _write_info(split, info)
    _refused(split, "sub-directories such as 'range-0' but got 'link'")


@pytest.mark.parametrize("splits", [[], [1000.0, 2000.0], ["1000"], "1000"])
def test_split_energies_must_match_the_parts(split: Path, splits: object) -> None:
    info = _info(split)
    info["splits"] = splits
    _write_info(split, info)
    _refused(split, "expected 1 increasing split energies")


# ------------------------------------------------------------------------ devices
def test_cuda_without_a_gpu_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match="expected a CUDA device but none is available"):
            resolve_device(name)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_a_cuda_index_beyond_the_gpus_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match="expected a CUDA device index from 0 to 1 but got 'cuda:2'"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("name", ["meta", "gpu", "cuda:-1"])
def test_other_device_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="expected a device 'auto', 'cpu' or 'cuda"):
        resolve_device(name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_real_gpus_are_counted() -> None:
    n = torch.cuda.device_count()
    assert resolve_device(f"cuda:{n - 1}").index == n - 1
    with pytest.raises(ConfigError, match=f"from 0 to {n - 1}"):
        resolve_device(f"cuda:{n}")


# ----------------------------------------------------------------- generate inputs
@pytest.mark.parametrize("energy", [1e300, 1e-300, math.inf, -5.0])
def test_generate_refuses_unphysical_energies(bundle: Path, energy: float) -> None:
    with pytest.raises(DataError, match="incident energies") as err:
        load(bundle).generate([1000.0, energy], device="cpu")
    assert "in generate" in str(err.value)


@pytest.mark.parametrize("seed", [-1, 10**26, 2**64])
def test_generate_refuses_bad_seeds(bundle: Path, seed: int) -> None:
    with pytest.raises(ConfigError, match="expected a seed that is an integer from 0 to 2\\*\\*63 - 1"):
        load(bundle).generate([1000.0], device="cpu", seed=seed)


def test_generate_checks_batch_size_and_conditions(bundle: Path) -> None:
    b = load(bundle)
    with pytest.raises(ConfigError, match="batch_size"):
        b.generate([1000.0], device="cpu", batch_size=0)
    with pytest.raises(ConfigError, match=r"expected conditions \[\] with 1 values each but got \{'theta': 1\}"):
        b.generate([1000.0], {"theta": [0.1]}, device="cpu")
    with pytest.raises(DataError, match="at least one incident energy"):
        b.generate([], device="cpu")
    assert b.generate(np.array([[1000.0], [2000.0]]), device="cpu", seed=2**63 - 1).energies.tolist() == [1000, 2000]
