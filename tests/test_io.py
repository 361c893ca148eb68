"""CaloChallenge HDF5 I/O: bit-exact round trip, streaming, subsets, bad files, safe writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import h5py
import numpy as np
import pytest

from caloforge.data import io
from caloforge.data.geometry import Geometry
from caloforge.data.outputs import atomic_dir
from caloforge.data.presets import PRESETS
from caloforge.data.showers import ShowerSet
from caloforge.errors import (
    DataError,
    FileFormatError,
    GeometryError,
    GeometryMismatchError,
    OutputExistsError,
    OutputPathError,
)
from synthetic import make_showers


def _challenge_file(path: Path, energies: np.ndarray, showers: np.ndarray, **extra: np.ndarray) -> Path:
    """A file laid out exactly as the CaloChallenge ships it, with no caloforge metadata."""
    with h5py.File(path, "w") as f:
        f.create_dataset("incident_energies", data=energies.reshape(-1, 1), compression="gzip")
        f.create_dataset("showers", data=showers, compression="gzip")
        for key, value in extra.items():
            f.create_dataset(key, data=value)
    return path


def test_round_trip_is_bit_exact(tmp_path: Path, tiny_showers: ShowerSet) -> None:
    s = ShowerSet(tiny_showers.energies, tiny_showers.showers, tiny_showers.geometry, {"theta": np.linspace(0, 1, 50)})
    path = io.write(tmp_path / "a.h5", s)
    back = io.read(path)  # the geometry comes back from caloforge's metadata
    assert back.geometry == s.geometry
    np.testing.assert_array_equal(back.energies, s.energies)
    np.testing.assert_array_equal(back.showers, s.showers)
    np.testing.assert_array_equal(back.conditions["theta"], s.conditions["theta"])
    with h5py.File(path) as f:  # the challenge layout
        assert f["incident_energies"].shape == (50, 1)
        assert f["showers"].shape == (50, 8)
        assert f["showers"].compression == "gzip"
        assert f.attrs["caloforge_geometry_hash"] == s.geometry.hash


def test_reads_official_layout_without_metadata(tmp_path: Path) -> None:
    s = make_showers(PRESETS["ds1-photons"], 20, seed=3)
    path = _challenge_file(tmp_path / "cc.h5", s.energies, s.showers)
    back = io.read(path)  # geometry inferred from the voxel count
    assert back.geometry.name == "ds1-photons"
    np.testing.assert_array_equal(back.showers, s.showers)
    assert io.read(path, geometry="ds1-photons").geometry.name == "ds1-photons"


def test_chunked_write_and_read(tmp_path: Path, tiny_geometry: Geometry) -> None:
    parts = [make_showers(tiny_geometry, n, seed=i) for i, n in enumerate((7, 30, 1, 12))]
    with io.ShowerWriter(tmp_path / "c.h5", tiny_geometry) as writer:
        for part in parts:
            writer.append(part)
    whole = ShowerSet.concatenate(parts)
    chunks = list(io.iter_chunks(tmp_path / "c.h5", chunk_size=8))
    assert [len(c) for c in chunks] == [8, 8, 8, 8, 8, 8, 2]
    np.testing.assert_array_equal(ShowerSet.concatenate(chunks).showers, whole.showers)


def test_random_and_stratified_subsets(tmp_path: Path, tiny_geometry: Geometry) -> None:
    s = make_showers(tiny_geometry, 400, seed=5, energies=(1000.0, 2000.0, 8000.0))
    path = io.write(tmp_path / "s.h5", s)
    sub = io.read_subset(path, 60, seed=1, chunk_size=37)
    assert len(sub) == 60
    again = io.read_subset(path, 60, seed=1, chunk_size=100)
    np.testing.assert_array_equal(sub.showers, again.showers)  # same seed, any chunking: same subset
    strat = io.read_subset(path, 90, seed=2, stratify=True)
    counts_full = np.unique(s.energies, return_counts=True)[1]
    counts_sub = np.unique(strat.energies, return_counts=True)[1]
    np.testing.assert_allclose(counts_sub, counts_full * 90 / 400, atol=1)  # proportional, within rounding
    # every chosen shower is a real row of the file
    rows = {r.tobytes() for r in s.showers}
    assert all(r.tobytes() in rows for r in strat.showers)


def test_not_hdf5_and_truncated(tmp_path: Path, tiny_showers: ShowerSet) -> None:
    text = tmp_path / "x.h5"
    text.write_text("hello")
    with pytest.raises(FileFormatError, match="expected an HDF5 file"):
        io.read(text)
    good = io.write(tmp_path / "g.h5", tiny_showers)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(FileFormatError, match="truncated"):
        io.read(cut)
    with pytest.raises(FileFormatError, match="not found"):
        io.read(tmp_path / "missing.h5")


def test_missing_dataset_and_length_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("showers", data=np.ones((3, 368)))
    with pytest.raises(FileFormatError, match="dataset 'incident_energies'"):
        io.read(path)
    bad = _challenge_file(tmp_path / "l.h5", np.ones(4) * 1000, np.ones((3, 368)))
    with pytest.raises(DataError, match="match 3 showers"):
        io.read(bad)


def test_bad_values_in_file_name_the_file(tmp_path: Path) -> None:
    showers = np.ones((3, 368))
    showers[2, 100] = np.nan
    path = _challenge_file(tmp_path / "nan.h5", np.ones(3) * 1000, showers)
    with pytest.raises(DataError, match=r"NaN or inf \(first at index \(2, 100\)\).*nan.h5"):
        io.read(path)
    showers[2, 100] = -1.0
    path = _challenge_file(tmp_path / "neg.h5", np.ones(3) * 1000, showers)
    with pytest.raises(DataError, match="negative.*neg.h5"):
        io.read(path)
    path = _challenge_file(tmp_path / "zero.h5", np.array([1000.0, 0.0, 5.0]), np.ones((3, 368)))
    with pytest.raises(DataError, match="positive incident energies.*zero.h5"):
        io.read(path)


def test_geometry_mismatch(tmp_path: Path, tiny_showers: ShowerSet) -> None:
    path = _challenge_file(tmp_path / "p.h5", np.ones(2) * 1000, np.ones((2, 533)))
    with pytest.raises(GeometryMismatchError, match="expected 368 voxels .* got 533.*ds1-pions"):
        io.read(path, geometry="ds1-photons")
    unknown = _challenge_file(tmp_path / "u.h5", np.ones(2) * 1000, np.ones((2, 77)))
    with pytest.raises(GeometryError, match="pass --geometry"):
        io.read(unknown)
    # a caloforge file knows its geometry; asking for another with the same voxel count is refused
    tagged = io.write(tmp_path / "t.h5", tiny_showers)
    from caloforge.data.geometry import Layer

    other = Geometry((Layer(0, (0.0, 1.0, 2.0, 3.0), 2), Layer(5, (0.0, 2.0, 5.0), 1)))
    with pytest.raises(GeometryMismatchError, match="was written for geometry 'tiny'"):
        io.read(tagged, geometry=other)


def test_writes_never_overwrite_without_force(tmp_path: Path, tiny_showers: ShowerSet) -> None:
    target = tmp_path / "out.h5"
    target.write_text("precious")
    with pytest.raises(OutputExistsError, match="--force"):
        io.write(target, tiny_showers)
    assert target.read_text() == "precious"
    io.write(target, tiny_showers, force=True)
    assert len(io.read(target)) == 50
    assert [p.name for p in tmp_path.iterdir()] == ["out.h5"]  # no temporary file left behind


def test_failed_write_leaves_nothing(tmp_path: Path, tiny_showers: ShowerSet) -> None:
    target = tmp_path / "half.h5"
    with pytest.raises(RuntimeError, match="boom"), io.ShowerWriter(target, tiny_showers.geometry) as writer:
        writer.append(tiny_showers)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_directory(tmp_path: Path, tiny_showers: ShowerSet, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:  # root ignores permission bits: make the access check see what a user would
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == locked else real_access(p, m))
    try:
        with pytest.raises(OutputPathError, match="not writable"):
            io.write(locked / "x.h5", tiny_showers)
    finally:
        locked.chmod(0o700)
    assert list(locked.iterdir()) == []


def test_missing_output_directory(tmp_path: Path, tiny_showers: ShowerSet) -> None:
    with pytest.raises(OutputPathError, match="does not exist"):
        io.write(tmp_path / "no" / "x.h5", tiny_showers)


def test_unrelated_2d_datasets_are_not_conditions(tmp_path: Path) -> None:
    s = make_showers(PRESETS["ds1-photons"], 4, seed=0)
    path = _challenge_file(tmp_path / "x.h5", s.energies, s.showers, theta=np.ones((4, 1)), images=np.ones((4, 3)))
    back = io.read(path)
    assert sorted(back.conditions) == ["theta"]


def test_writer_that_cannot_create_its_file_leaves_nothing(tmp_path: Path, tiny_showers: ShowerSet,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(h5py, "File", broken)
    with pytest.raises(OSError, match="disk full"), io.ShowerWriter(tmp_path / "x.h5", tiny_showers.geometry):
        pass
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_follows_the_umask_and_refuses_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    old = os.umask(0o027)
    try:
        with atomic_dir(target) as tmp:
            assert tmp.parent == tmp_path and not target.exists()
            (tmp / "a.txt").write_text("first")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o750  # not mkdtemp's 0o700
    with pytest.raises(OutputExistsError, match="--force"), atomic_dir(target):
        pass
    with pytest.raises(RuntimeError, match="boom"), atomic_dir(target, force=True) as tmp:
        (tmp / "b.txt").write_text("half")
        raise RuntimeError("boom")
    assert [p.name for p in target.iterdir()] == ["a.txt"]  # the old directory is untouched
    with atomic_dir(target, force=True) as tmp:
        (tmp / "b.txt").write_text("second")
    assert [p.name for p in target.iterdir()] == ["b.txt"]  # replaced whole
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no temporary or old directory left behind


def test_atomic_dir_refuses_missing_parent_and_files(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="does not exist"), atomic_dir(tmp_path / "no" / "bundle"):
        pass
    assert not (tmp_path / "no").exists()  # parents are not created silently
    (tmp_path / "file").write_text("precious")
    with pytest.raises(OutputPathError, match="is a file"), atomic_dir(tmp_path / "file", force=True):
        pass
    assert (tmp_path / "file").read_text() == "precious"


def test_atomic_dir_refuses_a_target_that_appeared_while_writing(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    with pytest.raises(OutputExistsError, match="appeared"), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("ours")
        target.mkdir()
        (target / "theirs.txt").write_text("theirs")
    assert [p.name for p in target.iterdir()] == ["theirs.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_full_disk_is_refused_before_each_append(tmp_path: Path, tiny_showers: ShowerSet,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from caloforge.runtime import resources

    free = {"bytes": 10**9}
    monkeypatch.setattr(resources, "free_disk_bytes", lambda path: free["bytes"])
    target = tmp_path / "x.h5"
    with pytest.raises(OutputPathError) as err, io.ShowerWriter(target, tiny_showers.geometry) as writer:
        writer.append(tiny_showers)
        free["bytes"] = 1000  # the disk fills up between two chunks
        writer.append(tiny_showers)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("expected 1.0 MiB of free disk space to write showers 50..99 of x.h5 but got only 1000 B")
    assert "no space left" in message
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary file


@pytest.mark.parametrize("failing_flush", [1, 2, 3], ids=["header", "append", "close"])
def test_write_errors_become_one_line_errors_and_leave_nothing(tmp_path: Path, tiny_showers: ShowerSet,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               failing_flush: int) -> None:
    import errno

    calls = {"n": 0}
    real_flush = h5py.File.flush

    def flush(self: h5py.File) -> None:
        calls["n"] += 1
        if calls["n"] == failing_flush:
            raise OSError(errno.ENOSPC, "Can't write data (file write failed: errno = 28, No space left on device)")
        real_flush(self)

    monkeypatch.setattr(h5py.File, "flush", flush)
    target = tmp_path / "x.h5"
    with pytest.raises(OutputPathError, match=r"expected to write .* to .*x.h5 but the disk is full") as err:
        io.write(target, tiny_showers)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


_FSIZE_SCRIPT = """
import resource, signal, sys
import numpy as np
from caloforge.data import io
from caloforge.data.presets import PRESETS
from caloforge.data.showers import ShowerSet
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit, write() fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
rng = np.random.default_rng(0)
chunk = ShowerSet(np.full(2000, 1000.0), rng.random((2000, 368)).astype(np.float32), PRESETS["ds1-photons"])
try:
    with io.ShowerWriter(sys.argv[1], chunk.geometry) as writer:
        for _ in range(5):
            writer.append(chunk)
except Exception as err:
    print(type(err).__name__, err)
else:
    print("no error")
"""


def test_real_write_failure_is_one_line_without_crash_or_leftovers(tmp_path: Path) -> None:
    import subprocess
    import sys

    target = tmp_path / "out.h5"
    run = subprocess.run([sys.executable, "-c", _FSIZE_SCRIPT, str(target)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]  # no segfault (was: exit 139)
    assert run.stdout.startswith("OutputPathError expected to write showers 0..1999 to"), run.stdout
    assert "largest file this process may write" in run.stdout
    assert "Exception ignored" not in run.stderr and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


def test_a_file_streams_the_same_showers_and_fingerprint_as_memory(tmp_path):
    from caloforge.data.source import ShowerFile, fingerprint, iter_showers, read_rows
    from caloforge.refsim import simulate

    energies = np.repeat([1000.0, 8000.0, 64000.0], 40)
    data = simulate("ds1-photons", "photon", energies, seed=5)
    f = ShowerFile.open(io.write(tmp_path / "a.h5", data))
    assert len(f) == 120 and f.geometry == data.geometry and f.nbytes == 120 * 368 * 4
    rows = np.sort(np.random.default_rng(0).choice(120, 37, replace=False))
    chunks = list(iter_showers(f, rows, chunk_size=10))
    assert [len(c) for c in chunks] == [10, 10, 10, 7]
    np.testing.assert_array_equal(np.concatenate([c.showers for c in chunks]), data.showers[rows])
    np.testing.assert_array_equal(read_rows(f, rows).energies, energies[rows])
    assert fingerprint(f) == data.fingerprint()
    assert fingerprint(f, rows) == data[rows].fingerprint() == fingerprint(data, rows)
    with pytest.raises(DataError, match="strictly increasing"):
        next(iter_showers(f, rows[::-1]))
