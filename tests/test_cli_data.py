"""CLI: --version, info, env, one-line errors (run in-process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from caloforge._version import __version__
from caloforge.cli import app
from caloforge.data import io
from caloforge.data.presets import PRESETS
from caloforge.data.showers import ShowerSet
from synthetic import make_showers

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"caloforge {__version__}"


def test_info_prints_the_summary(tmp_path: Path) -> None:
    s = make_showers(PRESETS["ds1-photons"], 30, seed=4, energies=(256.0, 65536.0))
    s = ShowerSet(s.energies, s.showers, s.geometry, {"theta": np.full(30, 1.5)})
    path = io.write(tmp_path / "f.h5", s)
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "showers: 30" in out and "voxels: 368" in out
    assert "presets with 368 voxels: ds1-photons" in out
    assert "2 distinct" in out
    for e in (256.0, 65536.0):
        sel = s.select_energy(e)
        assert f"{e:.6g}" in out
        assert f"{sel.response.mean():.4f}" in out  # mean E_tot/E_inc per energy
        assert str(len(sel)) in out
    sparsity = float((s.showers == 0).mean())
    assert f"{sparsity:.4f}" in out
    assert f"max {s.showers.max():.6g} MeV" in out
    assert "condition theta: 1.5 - 1.5" in out


def test_info_continuous_spectrum(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    s = make_showers(PRESETS["ds2"], 80, seed=1)
    s = ShowerSet(np.exp(rng.uniform(np.log(1e3), np.log(1e6), 80)), s.showers, s.geometry)
    path = io.write(tmp_path / "c.h5", s)
    result = runner.invoke(app, ["info", str(path), "--geometry", "ds2"])
    assert result.exit_code == 0, result.output
    assert "continuous, 10 log bins" in result.output


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    result = runner.invoke(app, ["info", str(bad)])
    assert result.exit_code == 2
    assert "caloforge: error: expected an HDF5 file" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_geometry_mismatch_from_cli(tmp_path: Path) -> None:
    path = io.write(tmp_path / "p.h5", make_showers(PRESETS["ds1-photons"], 3, seed=0))
    result = runner.invoke(app, ["info", str(path), "--geometry", "ds1-pions"])
    assert result.exit_code == 2
    assert "expected 533 voxels" in result.output and "ds1-photons" in result.output


def test_debug_shows_the_exception(tmp_path: Path) -> None:
    from caloforge.errors import FileFormatError

    result = runner.invoke(app, ["--debug", "info", str(tmp_path / "missing.h5")])
    assert result.exit_code != 0
    assert isinstance(result.exception, FileFormatError)


@pytest.mark.parametrize("package", ["torch", "numpy", "h5py", "CUDA available"])
def test_env_lists_versions(package: str) -> None:
    result = runner.invoke(app, ["env"])
    assert result.exit_code == 0
    assert package in result.output


def _forged(path: Path, kind: str) -> Path:
    import h5py

    with h5py.File(path, "w") as f:
        if kind == "billion-rows":  # 1.6 KB on disk, 8 GB of energies declared
            f.create_dataset("incident_energies", shape=(10**9, 1), dtype="f8", chunks=(4096, 1))
            f.create_dataset("showers", shape=(10**9, 368), dtype="f4", chunks=(16, 368))
            return path
        f.create_dataset("incident_energies", data=np.full((3, 1), 1e300 if kind == "energy-1e300" else 1000.0))
        if kind == "dangling-link":
            f["showers"] = h5py.SoftLink("/nowhere")
        elif kind == "compound":
            f.create_dataset("showers", data=np.zeros((3, 368), dtype=[("e", "f4"), ("t", "f4")]))
        else:
            f.create_dataset("showers", data=np.ones((3, 368)))
    return path


@pytest.mark.parametrize(("kind", "message"), [
    ("billion-rows", "but only 0 of its"),
    ("dangling-link", "a soft link to '/nowhere'"),
    ("compound", "compound records"),
    ("energy-1e300", "1 keV"),
])
def test_info_on_forged_files_is_one_line(tmp_path: Path, kind: str, message: str) -> None:
    result = runner.invoke(app, ["info", str(_forged(tmp_path / f"{kind}.h5", kind))])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("caloforge: error: expected") and message in result.output
    assert len(result.output.strip().splitlines()) == 1
