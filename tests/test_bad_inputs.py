"""Bad input gets a one-line caloforge error and nothing is allocated, written or lost.

Forged and odd HDF5 files (huge declared shapes, records, text, complex numbers, broken
links), unphysical incident energies, invalid seeds, and the memory/disk budget helpers.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from caloforge.data import checks, io
from caloforge.data.geometry import Geometry
from caloforge.data.presets import PRESETS
from caloforge.data.showers import ShowerSet
from caloforge.data.summary import summarize
from caloforge.errors import ConfigError, DataError, FileFormatError, OutputPathError
from caloforge.runtime import resources
from synthetic import make_showers

GIB = 1 << 30


def _file(path: Path, energies: np.ndarray, showers: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("incident_energies", data=energies)
        f.create_dataset("showers", data=showers)
    return path


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(err.value)
    assert "\n" not in text and text.startswith("expected"), text
    return text


# ------------------------------------------------------------------ sizes and memory
def test_forged_billion_row_file_is_refused_without_allocating(tmp_path: Path) -> None:
    path = tmp_path / "forged.h5"
    with h5py.File(path, "w") as f:  # declares 10^9 showers, stores none: a few KB on disk
        f.create_dataset("incident_energies", shape=(10**9, 1), dtype="f8", chunks=(4096, 1), compression="gzip")
        f.create_dataset("showers", shape=(10**9, 368), dtype="f4", chunks=(64, 368), compression="gzip")
    assert path.stat().st_size < 10_000
    for call in (io.inspect, io.read, summarize):
        with pytest.raises(FileFormatError, match="declares to be stored but only 0 of its 244141 chunks") as err:
            call(path)
        _one_line(err)


def test_file_larger_than_memory_is_refused_with_a_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = make_showers(PRESETS["ds1-photons"], 200, seed=1)
    path = io.write(tmp_path / "big.h5", s)
    monkeypatch.setattr(resources, "available_memory_bytes", lambda: 100_000)  # 200 x 368 x 4 B needs ~0.4 MB
    with pytest.raises(DataError, match=r"reading all showers \(200 x 368 voxels\).*read_subset.*iter_chunks") as err:
        io.read(path)
    assert "MiB" in _one_line(err) or "KiB" in str(err.value)
    with pytest.raises(DataError, match="smaller chunk_size"):
        next(io.iter_chunks(path, chunk_size=200))
    assert sum(len(c) for c in io.iter_chunks(path, chunk_size=10)) == 200  # small chunks still stream
    with pytest.raises(DataError, match="smaller n"):
        io.read_subset(path, 200, seed=1, chunk_size=10)
    assert len(io.read_subset(path, 20, seed=1, chunk_size=10)) == 20


def test_energy_and_shower_lengths_are_compared_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "mismatch.h5"
    with h5py.File(path, "w") as f:  # 10^9 energies declared against 3 showers: nothing is read
        f.create_dataset("incident_energies", shape=(10**9, 1), dtype="f8", chunks=(4096, 1))
        f.create_dataset("showers", data=np.ones((3, 368)))
    with pytest.raises(DataError, match=r"shape \(3, 1\) to match 3 showers but got \(1000000000, 1\)"):
        io.inspect(path)


def test_check_memory_and_disk_say_what_is_needed_and_available(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    assert resources.available_memory_bytes() > 0
    resources.check_memory(1024, "a small buffer")
    monkeypatch.setattr(resources, "available_memory_bytes", lambda: 2 * GIB)
    with pytest.raises(ConfigError, match=r"expected the model to fit in memory but it needs 3.0 GiB and only "
                                          r"2.0 GiB is available.*; reduce it") as err:
        resources.check_memory(3 * GIB, "the model", "reduce it", ConfigError)
    _one_line(err)
    assert resources.free_disk_bytes(tmp_path / "not" / "yet" / "there.h5") > 0
    monkeypatch.setattr(resources, "free_disk_bytes", lambda path: 1000)
    with pytest.raises(OutputPathError, match=r"free disk space to write x.*only 1000 B free.*no space left"):
        resources.check_disk(tmp_path / "x.h5", 5000, "x")


def test_cgroup_limit_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "_meminfo_available", lambda: 8 * GIB)
    monkeypatch.setattr(resources, "_cgroup_available", lambda: 1 * GIB)
    assert resources.available_memory_bytes() == GIB
    monkeypatch.setattr(resources, "_cgroup_available", lambda: None)
    assert resources.available_memory_bytes() == 8 * GIB


# ------------------------------------------------------------- dtypes of the datasets
@pytest.mark.parametrize(("showers", "match"), [
    (np.zeros((3, 368), dtype=[("e", "f4"), ("t", "f4")]), "compound records"),
    (np.array([[b"1.0"] * 368] * 3), "text or objects"),
    (np.ones((3, 368), dtype=np.complex64) * (1 + 1j), "complex64.*imaginary part"),
], ids=["compound", "bytes", "complex"])
def test_non_numeric_showers_are_refused(tmp_path: Path, showers: np.ndarray, match: str) -> None:
    path = _file(tmp_path / "odd.h5", np.full((3, 1), 1000.0), showers)
    with pytest.raises(FileFormatError, match=f"expected real numbers.*{match}") as err:
        io.read(path)
    assert "'showers'" in _one_line(err)


def test_text_incident_energies_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "str.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("incident_energies", data=["1000"] * 3, dtype=h5py.string_dtype())
        f.create_dataset("showers", data=np.ones((3, 368)))
    with pytest.raises(FileFormatError, match="expected real numbers.*text.*'incident_energies'"):
        io.read(path)


def test_integer_and_bool_data_are_converted_explicitly(tmp_path: Path) -> None:
    path = _file(tmp_path / "int.h5", np.full((3, 1), 1000, dtype=np.int32), np.ones((3, 368), dtype=np.uint16))
    s = io.read(path)
    assert s.energies.dtype == np.float64 and s.showers.dtype == np.float32
    assert s.total_energy.tolist() == [368.0] * 3
    g = Geometry.preset("ds1-photons")
    assert ShowerSet([1000], np.ones((1, 368), dtype=bool), g).total_energy[0] == 368.0
    with pytest.raises(DataError, match="complex128.*imaginary"):
        ShowerSet([1000.0], np.ones((1, 368)) * 1j, g)
    with pytest.raises(DataError, match="text"):
        ShowerSet(["1000"], np.ones((1, 368)), g)


def test_text_dataset_of_length_n_is_not_a_condition(tmp_path: Path) -> None:
    path = _file(tmp_path / "labels.h5", np.full((3, 1), 1000.0), np.ones((3, 368)))
    with h5py.File(path, "a") as f:
        f.create_dataset("label", data=["a", "b", "c"], dtype=h5py.string_dtype())
        f.create_dataset("theta", data=np.arange(3.0))
    assert sorted(io.read(path).conditions) == ["theta"]


# -------------------------------------------------------------------------- links
@pytest.mark.parametrize("kind", ["missing-file", "not-hdf5", "dangling-soft"])
def test_broken_links_are_one_line_errors(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "links.h5"
    (tmp_path / "notes.txt").write_text("not HDF5")
    with h5py.File(path, "w") as f:
        f.create_dataset("incident_energies", data=np.full((3, 1), 1000.0))
        if kind == "missing-file":
            f["showers"] = h5py.ExternalLink(str(tmp_path / "gone.h5"), "/showers")
        elif kind == "not-hdf5":
            f["showers"] = h5py.ExternalLink(str(tmp_path / "notes.txt"), "/showers")
        else:
            f["showers"] = h5py.SoftLink("/nowhere")
    what = "a soft link to '/nowhere'" if kind == "dangling-soft" else "an external link to '/showers'"
    with pytest.raises(FileFormatError, match=f"expected 'showers' to be readable but it is {what}") as err:
        io.read(path)
    _one_line(err)


def test_broken_link_among_the_extra_datasets_is_named(tmp_path: Path) -> None:
    path = _file(tmp_path / "x.h5", np.full((3, 1), 1000.0), np.ones((3, 368)))
    with h5py.File(path, "a") as f:
        f["theta"] = h5py.ExternalLink("elsewhere.h5", "/theta")
    with pytest.raises(FileFormatError, match="'theta' to be readable.*elsewhere.h5"):
        io.inspect(path)


def test_working_external_link_is_followed(tmp_path: Path) -> None:
    target = _file(tmp_path / "data.h5", np.full((3, 1), 1000.0), np.ones((3, 368)))
    path = tmp_path / "index.h5"
    with h5py.File(path, "w") as f:
        f["incident_energies"] = h5py.ExternalLink(str(target), "/incident_energies")
        f["showers"] = h5py.ExternalLink(str(target), "/showers")
    assert len(io.read(path)) == 3


# ------------------------------------------------------------- incident energies
@pytest.mark.parametrize("energy", [1e300, 1e-300, 1e-4, 2e8])
def test_unphysical_incident_energies_are_refused_everywhere(tmp_path: Path, energy: float) -> None:
    g = Geometry.preset("ds1-photons")
    with pytest.raises(DataError, match=r"from 0.001 MeV \(1 keV\) to 1e\+08 MeV \(100 TeV\)") as err:
        ShowerSet([1000.0, energy], np.ones((2, 368)), g)
    assert "first at shower 1" in _one_line(err)
    path = _file(tmp_path / "e.h5", np.array([[1000.0], [energy]]), np.ones((2, 368)))
    with pytest.raises(DataError, match=r"1 keV.*e.h5"):
        io.inspect(path)


def test_incident_energy_bounds_are_inclusive() -> None:
    e = checks.check_incident_energies([checks.E_MIN_MEV, checks.E_MAX_MEV], "in the test")
    assert e.tolist() == [1e-3, 1e8]
    assert checks.check_incident_energies(1000.0, "in the test").shape == (1,)
    with pytest.raises(DataError, match="at least one incident energy"):
        checks.check_incident_energies([], "in the test", allow_empty=False)
    with pytest.raises(DataError, match=r"shape \(N,\) or \(N, 1\)"):
        checks.check_incident_energies(np.ones((2, 2)), "in the test")


def test_check_finite_is_still_importable_from_showers() -> None:
    from caloforge.data.showers import check_finite

    assert check_finite is checks.check_finite


# ------------------------------------------------------------------------- seeds
@pytest.mark.parametrize("seed", [-1, 10**26, 2**63, 1.5, "3", True, None])
def test_bad_seeds_are_refused(seed: object) -> None:
    with pytest.raises(ConfigError, match=r"expected a seed that is an integer from 0 to 2\*\*63 - 1") as err:
        checks.check_seed(seed, "in the test")
    _one_line(err)


def test_good_seeds_pass() -> None:
    assert checks.check_seed(np.int64(7), "in the test") == 7
    assert checks.check_seed(2**63 - 1, "in the test") == 2**63 - 1


def test_read_subset_checks_its_seed_and_count(tmp_path: Path, tiny_showers: ShowerSet) -> None:
    path = io.write(tmp_path / "s.h5", tiny_showers)
    with pytest.raises(ConfigError, match="seed"):
        io.read_subset(path, 5, seed=10**26)
    with pytest.raises(DataError, match="expected n to be an integer from 0"):
        io.read_subset(path, -1, seed=1)
