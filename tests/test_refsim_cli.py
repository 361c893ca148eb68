"""The ``caloforge simulate`` command and ``simulate_to_file``, run in-process."""

from __future__ import annotations

import h5py
import numpy as np
from typer.testing import CliRunner

from caloforge.cli import app
from caloforge.data.io import read
from caloforge.refsim import simulate, simulate_to_file

runner = CliRunner()


def test_simulate_writes_a_calochallenge_file(tmp_path):
    out = tmp_path / "ref.h5"
    result = runner.invoke(
        app,
        ["simulate", "--geometry", "ds1-photons", "--particle", "photon", "--n", "300", "-o", str(out), "--seed", "1"],
    )
    assert result.exit_code == 0, result.output
    showers = read(out)
    assert showers.showers.shape == (300, 368)
    assert set(np.unique(showers.energies)) <= {2.0**k for k in range(8, 23)}
    with h5py.File(out) as f:
        assert f["incident_energies"].shape == (300, 1)
        assert f.attrs["caloforge_producer"] == "caloforge.refsim"


def test_jobs_do_not_change_the_file(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    common = ["simulate", "-g", "ds1-pions", "-p", "pi+", "--n", "700", "--seed", "5"]
    assert runner.invoke(app, [*common, "-o", str(a), "--jobs", "1"]).exit_code == 0
    assert runner.invoke(app, [*common, "-o", str(b), "--jobs", "2"]).exit_code == 0
    with h5py.File(a) as fa, h5py.File(b) as fb:
        np.testing.assert_array_equal(fa["showers"][:], fb["showers"][:])
        np.testing.assert_array_equal(fa["incident_energies"][:], fb["incident_energies"][:])


def test_chunked_file_equals_in_memory_simulation(tmp_path):
    out = simulate_to_file(tmp_path / "x.h5", "ds2", "electron", 90, seed=3, energies=[2e3, 4e4], chunk_size=32)
    on_disk = read(out)
    in_memory = simulate("ds2", "electron", on_disk.energies, seed=3, chunk_size=32)
    np.testing.assert_array_equal(on_disk.showers, in_memory.showers)
    assert sorted(np.unique(on_disk.energies)) == [2e3, 4e4]
    assert np.sum(on_disk.energies == 2e3) == 45


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "ref.h5"
    args = ["simulate", "-g", "ds2", "-p", "e-", "--n", "20", "-o", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2
    assert "already exists" in refused.output and "--force" in refused.output
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


def test_energies_spectrum_and_theta_options(tmp_path):
    out = tmp_path / "t.h5"
    result = runner.invoke(
        app,
        [
            "simulate",
            "-g",
            "ds2",
            "-p",
            "electron",
            "--n",
            "40",
            "-o",
            str(out),
            "--energies",
            "1024,65536",
            "--theta",
            "50:90",
        ],
    )
    assert result.exit_code == 0, result.output
    s = read(out)
    assert sorted(np.unique(s.energies)) == [1024.0, 65536.0]
    assert "theta" in s.conditions and 50 <= s.conditions["theta"].min() <= s.conditions["theta"].max() <= 90
    out2 = tmp_path / "lu.h5"
    result = runner.invoke(
        app,
        ["simulate", "-g", "ds2", "-p", "gamma", "--n", "30", "-o", str(out2), "--spectrum", "log-uniform:2000:3000"],
    )
    assert result.exit_code == 0, result.output
    e = read(out2).energies
    assert e.min() >= 2000 and e.max() <= 3000


def test_bad_particle_and_spectrum_give_one_line_errors(tmp_path):
    out = tmp_path / "x.h5"
    bad = runner.invoke(app, ["simulate", "-g", "ds2", "-p", "kaon", "--n", "5", "-o", str(out)])
    assert bad.exit_code == 2
    assert "expected a particle" in bad.output and "pion" in bad.output
    assert not out.exists()
    bad = runner.invoke(app, ["simulate", "-g", "ds2", "-p", "e-", "--n", "5", "-o", str(out), "--energies", "1,x"])
    assert bad.exit_code == 2 and "--energies" in bad.output
    bad = runner.invoke(app, ["simulate", "-g", "nope", "-p", "e-", "--n", "5", "-o", str(out)])
    assert bad.exit_code == 2 and "preset" in bad.output


def test_parallel_chunks_match_serial(tmp_path):
    kwargs = {"n": 500, "seed": 9, "chunk_size": 64}
    a = simulate_to_file(tmp_path / "a.h5", "ds1-photons", "photon", jobs=1, **kwargs)
    b = simulate_to_file(tmp_path / "b.h5", "ds1-photons", "photon", jobs=2, **kwargs)
    np.testing.assert_array_equal(read(a).showers, read(b).showers)
