"""The cascade mode as users call it: seeds, jobs and chunking, files, the CLI, and bad arguments."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from caloforge.cli import app
from caloforge.data.geometry import Geometry, Layer
from caloforge.data.presets import resolve_geometry
from caloforge.errors import ConfigError, GeometryError
from caloforge.refsim import simulate, simulate_to_file
from caloforge.refsim.cascade import CascadeConfig, check_physics
from caloforge.refsim.simulate import CASCADE_CHUNK_CPU_S, CASCADE_CPU_S_PER_GEV, chunk_starts, default_chunk_size


def test_same_seed_same_showers_other_seed_other_showers() -> None:
    # GFLASH hand-offs: the library's own seed and jobs tests are in test_refsim_cascade_library.py, and a
    # full-size W/Si library costs a minute of CPU to build on a cold cache
    kw = {"physics": "cascade", "cascade": CascadeConfig(handoff="gflash")}
    a = simulate("ds2", "electron", [5000.0, 20000.0], seed=7, **kw)  # type: ignore[arg-type]
    b = simulate("ds2", "electron", [5000.0, 20000.0], seed=7, **kw)  # type: ignore[arg-type]
    c = simulate("ds2", "electron", [5000.0, 20000.0], seed=8, **kw)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a.showers, b.showers)
    assert not np.array_equal(a.showers, c.showers)
    assert a.showers.dtype == np.float32 and np.all(a.showers >= 0)


def test_chunking_does_not_change_the_showers() -> None:
    energies = [2000.0, 50000.0, 800.0, 12000.0, 3000.0]
    whole = simulate("ds1-photons", "photon", energies, seed=3, physics="cascade")
    parts = simulate("ds1-photons", "photon", energies, seed=3, physics="cascade", chunk_size=2)
    np.testing.assert_array_equal(whole.showers, parts.showers)
    # a shower's numbers depend on its index in the run, not on the other showers of its chunk
    alone = simulate("ds1-photons", "photon", energies[:2], seed=3, physics="cascade")
    np.testing.assert_array_equal(whole.showers[:2], alone.showers)


def test_cascade_chunks_end_at_their_expected_cpu() -> None:
    """TeV showers are chunked by their expected CPU, not by count (120 full-transport 1 TeV showers in one chunk
    of 647 ran 21 minutes without progress on one job); the GFLASH mode's chunks (seeded by their index) keep
    their size."""
    size = default_chunk_size(resolve_geometry("ds2"))

    def sizes(energies: np.ndarray, cascade: CascadeConfig | None) -> list[int]:
        starts = chunk_starts(energies, size, cascade)
        assert starts[0] == 0 and starts[-1] == energies.size
        return np.diff(starts).tolist()

    tev = np.full(1000, 1e6)
    per_chunk = int(CASCADE_CHUNK_CPU_S / CASCADE_CPU_S_PER_GEV[True] / 1e3)  # hybrid: TeV showers per chunk
    assert 1 < per_chunk < size
    hybrid = sizes(tev, CascadeConfig())
    assert set(hybrid[:-1]) == {per_chunk} and 0 < hybrid[-1] <= per_chunk
    assert sizes(tev[:120], CascadeConfig(hybrid_split_mev=0.0)) == [1] * 120  # ~20 CPU s each
    assert sizes(np.full(1000, 1e3), CascadeConfig()) == [size, 1000 - size]  # cheap showers: by count
    assert sizes(tev, None) == [size, 1000 - size]
    assert chunk_starts(np.zeros(0), size, CascadeConfig()) == chunk_starts(np.zeros(0), size) == [0]


def test_jobs_do_not_change_the_file(tmp_path: Path) -> None:
    kw = {"n": 12, "seed": 5, "energies": [1000.0, 8000.0], "physics": "cascade",
          "cascade": CascadeConfig(handoff="gflash")}  # the library's jobs test: test_refsim_cascade_library.py
    one = simulate_to_file(tmp_path / "one.h5", "ds2", "electron", chunk_size=5, jobs=1, **kw)  # type: ignore[arg-type]
    two = simulate_to_file(tmp_path / "two.h5", "ds2", "electron", chunk_size=3, jobs=2, **kw)  # type: ignore[arg-type]
    with h5py.File(one) as f, h5py.File(two) as g:
        np.testing.assert_array_equal(f["showers"][:], g["showers"][:])
        np.testing.assert_array_equal(f["incident_energies"][:], g["incident_energies"][:])
        assert f.attrs["caloforge_refsim_physics"] == "cascade"
        assert CascadeConfig.from_dict(__import__("json").loads(f.attrs["caloforge_refsim_cascade"])) == kw["cascade"]


def test_file_energy_scale_matches_the_gflash_mode() -> None:
    """Both modes put ds1 at the EM scale and ds2 at Si energy / 0.033: their totals agree within ~15 %."""
    for geo, particle, e in (("ds1-photons", "photon", 20000.0), ("ds2", "electron", 20000.0)):
        cascade = simulate(geo, particle, [e] * 20, seed=1, physics="cascade").showers.sum(axis=1).mean()
        gflash = simulate(geo, particle, [e] * 20, seed=1).showers.sum(axis=1).mean()
        assert cascade / gflash == pytest.approx(1.0, abs=0.15), geo


def test_bad_arguments_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="expected physics in"):
        simulate("ds2", "electron", [1000.0], seed=0, physics="geant4")
    with pytest.raises(ConfigError, match="brems_cut_mev > 0"):
        CascadeConfig(brems_cut_mev=-1.0)
    with pytest.raises(ConfigError, match="electron_cut_mev"):
        CascadeConfig.from_dict({"electron_cut_mev": "low"})
    with pytest.raises(ConfigError, match="unknown"):
        CascadeConfig.from_dict({"cut": 1.0})
    with pytest.raises(ConfigError, match="no cascade settings"):
        check_physics("gflash", CascadeConfig())
    odd = Geometry((Layer(5, (0.0, 10.0)), Layer(9, (0.0, 10.0))), "odd")
    with pytest.raises(GeometryError, match="detector"):
        simulate(odd, "photon", [1000.0], seed=0, physics="cascade")
    with pytest.raises(ConfigError, match="incidence angle"):
        simulate("ds2", "electron", [1000.0], seed=0, conditions={"theta": 60.0}, physics="cascade")
    for err in (ConfigError, GeometryError):
        assert "\n" not in str(err("x"))


def test_cli_simulates_with_cascade_physics(tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    runner = CliRunner()
    res = runner.invoke(app, ["simulate", "-g", "ds2", "-p", "electron", "-n", "3", "--energies", "2000",
                              "--physics", "cascade", "--split", "500", "--handoff", "gflash", "--out", str(out)])
    assert res.exit_code == 0, res.output
    with h5py.File(out) as f:
        assert f["showers"].shape == (3, 6480) and f.attrs["caloforge_refsim_physics"] == "cascade"
    bad = runner.invoke(app, ["simulate", "-g", "ds2", "-p", "electron", "-n", "3", "--physics", "fluka",
                              "--out", str(tmp_path / "d.h5")])
    assert bad.exit_code == 2 and "expected physics in" in bad.output


def test_spot_batching_does_not_change_the_showers(monkeypatch: pytest.MonkeyPatch) -> None:
    from caloforge.refsim.cascade import handoff

    energies = [30000.0, 5000.0, 60000.0]
    whole = simulate("ds1-photons", "photon", energies, seed=4, physics="cascade")
    monkeypatch.setattr(handoff, "SPOT_BATCH", 500)
    batched = simulate("ds1-photons", "photon", energies, seed=4, physics="cascade")
    np.testing.assert_array_equal(whole.showers, batched.showers)
