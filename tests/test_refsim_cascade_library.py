"""The frozen-shower library of the cascade's hybrid: replay physics, ledger, seeds, jobs, cache, bad settings.

A tiny library (split 200 MeV, few entries per bin) keeps each test at a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numba
import numpy as np
import pytest
from typer.testing import CliRunner

from caloforge.cli import app
from caloforge.data.geometry import Geometry
from caloforge.errors import ConfigError
from caloforge.refsim import simulate, simulate_to_file
from caloforge.refsim.cascade import CascadeConfig, cascade_chunk
from caloforge.refsim.cascade import library as library_module
from caloforge.refsim.cascade import library_cache as cache_module
from caloforge.refsim.cascade import replay as replay_module
from caloforge.refsim.cascade.kernel import ACTIVE, ELECTRON, GAMMA, LEDGER, transport_from
from caloforge.refsim.cascade.library import (
    BUILD_PARTS,
    ENERGY_MATCH,
    MATCH_ENTRIES,
    R_EDGES_MM,
    ShowerLibrary,
    build_library,
    entries_per_bin,
    uses_library,
)
from caloforge.refsim.cascade.library_cache import library_for, library_path, prepare_library
from caloforge.refsim.cascade.replay import ReplayMap, replay_handoffs, replay_map
from caloforge.refsim.cascade.run import calibrated_layout
from caloforge.refsim.cascade.streams import config_array, shower_seeds
from caloforge.refsim.cascade.tables import Layout
from caloforge.refsim.materials import ELEMENTS, Material
from caloforge.refsim.presets import detector_for

TINY = CascadeConfig(handoff="library", hybrid_split_mev=200.0, library_entries=2, library_precision=0.1)
"""A tiny library: 2 entries per (particle, energy, phase) bin up to 200 MeV (the precision asks no more)."""


def _ds2() -> tuple[Geometry, object]:
    geometry = Geometry.preset("ds2")
    return geometry, detector_for(geometry)


def test_replay_closes_the_ledger_and_replaces_the_handoffs() -> None:
    geometry, detector = _ds2()
    energies = np.array([3000.0, 20000.0, 800.0])
    res = cascade_chunk(geometry, "electron", energies, 4, 0, detector, TINY)  # type: ignore[arg-type]
    parts = res.ledger[:, [LEDGER.index(c) for c in ("active", "passive", "leaked", "handoff", "mass", "invisible")]]
    np.testing.assert_allclose(parts.sum(axis=1), energies, rtol=1e-6)
    # every hand-off is replayed and nothing is read at the mean response: with library hand-offs the soft particles
    # (below handoff_min_mev) are transported, where GFLASH hand-offs read them where they are
    gflash = cascade_chunk(geometry, "electron", energies, 4, 0, detector, TINY.replace(handoff="gflash"))  # type: ignore[arg-type]
    np.testing.assert_allclose(res.column("handoff"), 0.0, atol=1e-9 * energies.max())
    assert np.all(gflash.column("handoff") > 0.0)
    # the replayed active energy is read at the stack's scale: the file total follows the active energy
    ratio = res.voxels.sum(axis=1) / res.column("active")
    assert np.all((ratio > 25.0) & (ratio < 31.0))  # 1/0.033 = 30.3, less what falls outside the binning


def test_seed_reproduces_and_jobs_do_not_change_the_file(tmp_path: Path) -> None:
    a = simulate("ds2", "electron", [5000.0, 20000.0], seed=7, physics="cascade", cascade=TINY)
    b = simulate("ds2", "electron", [5000.0, 20000.0], seed=7, physics="cascade", cascade=TINY)
    c = simulate("ds2", "electron", [5000.0, 20000.0], seed=8, physics="cascade", cascade=TINY)
    np.testing.assert_array_equal(a.showers, b.showers)
    assert not np.array_equal(a.showers, c.showers)
    kw = {"n": 8, "seed": 5, "energies": [1000.0, 6000.0], "physics": "cascade", "cascade": TINY}
    one = simulate_to_file(tmp_path / "one.h5", "ds2", "electron", chunk_size=5, jobs=1, **kw)  # type: ignore[arg-type]
    two = simulate_to_file(tmp_path / "two.h5", "ds2", "electron", chunk_size=3, jobs=2, **kw)  # type: ignore[arg-type]
    with h5py.File(one) as f, h5py.File(two) as g:
        np.testing.assert_array_equal(f["showers"][:], g["showers"][:])


@pytest.mark.parametrize(("kind", "energy", "first"),
                         [(ELECTRON, 100.0, 10), (GAMMA, 100.0, 10), (ELECTRON, 100.0, 44)])
def test_replayed_handoff_matches_direct_transport(kind: int, energy: float, first: int) -> None:
    """Hand-offs replayed vs the same particles transported from the same points (the four start phases of the
    first cell of layer ``first``): mean active energy and mean depth agree within 3 standard errors, the library's
    own (its entries are few) included. A wrong calibration or energy scale fails; the cell mapping is checked
    exactly below. In ds2's last layer, the library's stack goes on behind the detector's back: a replay that kept
    the albedo of that stack (whose lineage went deeper than the detector) had twice the active energy."""
    geometry, detector = _ds2()
    config = CascadeConfig(handoff="library", hybrid_split_mev=150.0, library_entries=16, library_precision=0.1)
    layout = calibrated_layout(detector, geometry, config)  # type: ignore[arg-type]
    n = 400
    z0 = first * 3.4 + (np.arange(n) % 4 + 0.5) / 4 * 1.7  # the four phase bins of the layer's first cell
    isub = np.searchsorted(layout.z_edges, z0, side="right") - 1
    out, ledger = np.zeros((n, geometry.n_voxels)), np.zeros((n, len(LEDGER)))
    start = np.stack([z0, np.zeros(n), np.zeros(n), np.ones(n), isub], axis=1)
    transport_from(np.full(n, kind), np.full(n, energy), shower_seeds(3, 0, n), config_array(config, hybrid=False),
                   layout.z_edges, layout.material, layout.active, layout.layer, layout.calibration,
                   layout.tables.data, layout.tables.props, layout.r_edges, layout.r_offset, layout.n_r,
                   layout.n_alpha, layout.voxel_offset, out, ledger, np.empty((1, 12)), layout.local_scale,
                   layout.slab_layer, layout.hadron_visible, layout.hadron_scale, start, np.empty((0, 4)),
                   np.zeros(1, dtype=np.int64))
    rows = np.zeros((n, 12))
    rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 5], rows[:, 8] = np.arange(n), kind, energy, z0, 1.0
    rep, rep_ledger = np.zeros_like(out), np.zeros_like(ledger)
    lib = library_for(detector.em_medium, config)  # type: ignore[attr-defined]
    rmap = replay_map(detector, layout, detector.em_medium)  # type: ignore[arg-type, attr-defined]
    replay_handoffs(rows, np.ones(n, dtype=np.int64), shower_seeds(4, 0, n), lib, rmap, layout, rep, rep_ledger,
                    lib.reach())
    _, sorted_e, _ = lib.by_energy()
    near = sorted_e[0 if kind == GAMMA else 1, 0]  # the entries the replays drew from: within ENERGY_MATCH
    n_entries = int(((near >= energy / ENERGY_MATCH) & (near < energy * ENERGY_MATCH)).sum())
    assert n_entries >= 4 * MATCH_ENTRIES

    def agree(direct: np.ndarray, replayed: np.ndarray) -> None:
        error = np.sqrt(direct.var() / direct.size + replayed.var() / n_entries)
        assert abs(replayed.mean() - direct.mean()) < 3.0 * error, (direct.mean(), replayed.mean(), error)

    def depth(v: np.ndarray) -> np.ndarray:
        layers = v.reshape(n, geometry.n_layers, -1).sum(axis=2)
        keep = layers.sum(axis=1) > 0
        return (layers[keep] * np.arange(geometry.n_layers)).sum(axis=1) / layers[keep].sum(axis=1)

    agree(ledger[:, ACTIVE], rep_ledger[:, ACTIVE])
    agree(depth(out), depth(rep))
    # the backscatter: what the sub-showers put in the layers before their start (a library that kept no active
    # point behind its entries' start cell put nothing there); from the last layer, too little to measure
    back = out.reshape(n, geometry.n_layers, -1)[:, :first].sum(axis=(1, 2))
    back_rep = rep.reshape(n, geometry.n_layers, -1)[:, :first].sum(axis=(1, 2))
    assert back.mean() > 0.0 or first == geometry.n_layers - 1
    agree(back, back_rep)
    assert rep.sum() / rep_ledger[:, ACTIVE].sum() == pytest.approx(out.sum() / ledger[:, ACTIVE].sum(), rel=0.05)


def test_albedo_list_moves_deposits_without_changing_the_transport() -> None:
    """The build's albedo list: the same showers (seeds) with and without it; the list holds exactly the
    deposits missing from the grid, each of a lineage that reached deeper than the deposit's sub-layer, and the
    ledger does not change. 1 GeV electrons at layer 10 of ds2 do send energy back from deeper cells."""
    geometry, detector = _ds2()
    layout = calibrated_layout(detector, geometry, TINY)  # type: ignore[arg-type]
    n = 20
    z0 = np.full(n, 10 * 3.4 + 0.5)
    start = np.stack([z0, np.zeros(n), np.zeros(n), np.ones(n), np.searchsorted(layout.z_edges, z0) - 1.0], axis=1)
    results = []
    for back in (np.empty((0, 4)), np.empty((1 << 16, 4))):
        out, ledger, n_back = np.zeros((n, geometry.n_voxels)), np.zeros((n, len(LEDGER))), np.zeros(1, np.int64)
        transport_from(np.full(n, ELECTRON), np.full(n, 1000.0), shower_seeds(5, 0, n),
                       config_array(TINY, hybrid=False), layout.z_edges, layout.material, layout.active, layout.layer,
                       layout.calibration, layout.tables.data, layout.tables.props, layout.r_edges, layout.r_offset,
                       layout.n_r, layout.n_alpha, layout.voxel_offset, out, ledger, np.empty((1, 12)),
                       layout.local_scale, layout.slab_layer, layout.hadron_visible, layout.hadron_scale, start, back,
                       n_back)
        results.append((out, ledger, back[:n_back[0]]))
    (plain, plain_ledger, none), (grid, ledger, listed) = results
    assert none.shape[0] == 0
    assert 0 < listed.shape[0] <= 1 << 16
    np.testing.assert_array_equal(ledger, plain_ledger)
    np.add.at(grid, (listed[:, 0].astype(int), listed[:, 1].astype(int)), listed[:, 3])
    np.testing.assert_allclose(grid, plain, rtol=1e-12, atol=1e-12)
    layer = np.searchsorted(layout.voxel_offset, listed[:, 1], side="right") - 1  # each listed deposit's layer
    act_sub = np.flatnonzero(layout.layer >= 0)
    first_sub = np.array([act_sub[layout.layer[act_sub] == li].min() for li in range(geometry.n_layers)])
    assert np.all(listed[:, 2] > first_sub[layer])  # its lineage went deeper than the layer's first active sub-layer
    assert listed[:, 3].sum() > 1e-3 * plain.sum()


def _one_entry_replay(monkeypatch: pytest.MonkeyPatch) -> tuple[Geometry, Layout, ShowerLibrary, ReplayMap]:
    """ds2 with the tiny one-entry-per-bin library, the energy match narrowed so that a hand-off at exactly an
    entry's energy replays that entry."""
    geometry, detector = _ds2()
    config = TINY.replace(library_entries=1)
    layout = calibrated_layout(detector, geometry, config)  # type: ignore[arg-type]
    lib = library_for(detector.em_medium, config)  # type: ignore[attr-defined]
    rmap = replay_map(detector, layout, detector.em_medium)  # type: ignore[arg-type, attr-defined]
    monkeypatch.setattr(replay_module, "ENERGY_MATCH", 1.0)
    monkeypatch.setattr(replay_module, "MATCH_ENTRIES", 1)
    return geometry, layout, lib, rmap


def _active_points(lib: ShowerLibrary, rmap: ReplayMap, layout: Layout, entry: int,
                   z0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The entry's points replayed at depth ``z0`` that land in an active sub-layer: that sub-layer, their energy
    (MeV, before calibration) and their radial bin's edges."""
    sl = slice(lib.offset[entry], lib.offset[entry + 1])
    j = rmap.cell_ord[int(np.searchsorted(layout.z_edges, z0, side="right") - 1)] + lib.k[sl]
    act = (lib.ir[sl] >= 0) & (j >= 0) & (j < rmap.act_sub.size)
    e = lib.frac[sl][act].astype(np.float64) * lib.energy[entry]
    return rmap.act_sub[j[act]], e, R_EDGES_MM[lib.ir[sl][act]], R_EDGES_MM[lib.ir[sl][act] + 1]


def test_replay_puts_each_entry_point_in_its_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hand-off at exactly an entry's energy, with the energy match narrowed to that one entry, replays that entry:
    its active energy exactly (less its points before the detector's first active layer), and its points in the
    layers of the active sub-layers as many cells after (or before) the hand-off's as they were after the entry's
    start (a cell's offset moves the mean depth by half a layer)."""
    geometry, layout, lib, rmap = _one_entry_replay(monkeypatch)
    n = 4
    b = int(np.searchsorted(lib.e_edges, 100.0) - 1)
    entries = lib.index[1, b, 0, :n, 0]
    z0 = 10 * 3.4 + (np.arange(n) + 0.5) / 4 * 1.7  # one hand-off in each phase bin
    rows = np.zeros((n, 12))
    rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 5], rows[:, 8] = np.arange(n), ELECTRON, lib.energy[entries], z0, 1.0
    rep, rep_ledger = np.zeros((n, geometry.n_voxels)), np.zeros((n, len(LEDGER)))
    replay_handoffs(rows, np.ones(n, dtype=np.int64), shower_seeds(4, 0, n), lib, rmap, layout, rep, rep_ledger,
                    lib.reach())
    assert (lib.k[lib.ir >= 0] < 0).any()  # the library keeps its entries' backscatter
    for p in range(n):
        sub, e, lo, hi = _active_points(lib, rmap, layout, entries[p], z0[p])
        assert rep_ledger[p, ACTIVE] == pytest.approx(e.sum(), rel=1e-9)

        def per_layer(keep: np.ndarray, sub: np.ndarray = sub, e: np.ndarray = e) -> np.ndarray:
            return np.bincount(layout.layer[sub][keep], weights=(e * layout.calibration[sub])[keep],
                               minlength=geometry.n_layers)

        # inside ds2's binning (r < 41.85 mm): the points of bins wholly inside, and of the bin across the edge
        # those the entry's radial shift puts inside
        got = rep[p].reshape(geometry.n_layers, -1).sum(axis=1)
        assert np.all(got >= per_layer(hi <= 41.85) * (1 - 1e-9) - 1e-9)
        assert np.all(got <= per_layer(lo < 41.85) * (1 + 1e-9) + 1e-9)


def test_replay_spreads_each_point_over_its_radial_bin(monkeypatch: pytest.MonkeyPatch) -> None:
    """One entry replayed many times on the axis: the mean energy inside each of ds2's ring edges is the stored
    energy of the bins inside plus the area share inside of the bin across the edge (a uniform density in each
    bin). Points put at their bin's centre would move a whole bin's energy across each edge: 41 % of the 4.5-4.75 mm
    bin at 4.65 mm, 20 % of the 9.25-9.5 mm bin at 9.3 mm, at least 10 % at every ds2 edge (the noise of 600 draws:
    2 %)."""
    geometry, layout, lib, rmap = _one_entry_replay(monkeypatch)
    edges = np.asarray(geometry.layers[0].r_edges[1:])

    def points(entry: int, z0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The entry's active points replayed at depth ``z0``: file energy, radial bin edges, energy across."""
        sub, e, lo, hi = _active_points(lib, rmap, layout, entry, z0)
        e = e * layout.calibration[sub]
        across = (((lo < edges[:-1, None]) & (hi > edges[:-1, None])) * e).sum(axis=1)  # energy of the bins across
        return e, lo, hi, across

    # the electron entry at normal incidence with the most energy in bins across an edge, in its phase bin
    phase_of = {int(i): p for p in range(lib.index.shape[3]) for i in lib.index[1, :, 0, p].ravel() if i >= 0}
    depth = {i: 10 * 3.4 + (p + 0.5) / 4 * 1.7 for i, p in phase_of.items()}

    def score(i: int) -> float:
        e, _, _, across = points(i, depth[i])
        return float(across.sum() / max(e.sum(), 1e-300))

    entry = max(phase_of, key=score)
    e, lo, hi, across = points(entry, depth[entry])
    assert across.sum() > 0.01 * e.sum()
    n = 600
    rows = np.zeros((n, 12))
    rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 5], rows[:, 8] = (np.arange(n), ELECTRON, lib.energy[entry],
                                                                  depth[entry], 1.0)
    rep, rep_ledger = np.zeros((n, geometry.n_voxels)), np.zeros((n, len(LEDGER)))
    replay_handoffs(rows, np.ones(n, dtype=np.int64), shower_seeds(4, 0, n), lib, rmap, layout, rep, rep_ledger,
                    lib.reach())
    rings = rep.reshape(n, geometry.n_layers, -1, edges.size).sum(axis=(1, 2)).mean(axis=0)
    got = np.cumsum(rings)[:-1]
    share = np.clip((edges[:-1, None] ** 2 - lo**2) / (hi**2 - lo**2), 0.0, 1.0)  # area share inside each edge
    expected = (share * e).sum(axis=1)
    assert np.all(np.abs(got - expected) <= 0.08 * across + 1e-9 * e.sum()), (got - expected, across)


def test_library_cache_is_written_once_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, detector = _ds2()
    medium = detector.em_medium  # type: ignore[attr-defined]
    monkeypatch.setenv("NUMBA_CACHE_DIR", numba.config.CACHE_DIR)  # the build's workers: the compiled kernels
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    config = TINY.replace(library_entries=1)
    library_for.cache_clear()
    calls: list[tuple[int, int]] = []
    prepare_library(medium, config, 2, lambda done, total: calls.append((done, total)))  # two worker processes
    assert calls == [(i, 2 * BUILD_PARTS) for i in range(1, 2 * BUILD_PARTS + 1)]  # progress per part, in order
    path = library_path(medium, config)
    assert path.is_file() and path.is_relative_to(tmp_path)
    prepare_library(medium, config, 2, lambda done, total: calls.append((done, total)))
    assert len(calls) == 2 * BUILD_PARTS  # cached: neither built nor reported again
    built = library_for(medium, config, 2)
    assert built.build_seconds == 0.0 and built.n_points > 0 and built.nbytes < 1e7
    alone = build_library(medium, config)  # one process, other parts: the same library
    assert alone.build_seconds > 0
    for name in ("frac", "k", "ir", "ia", "offset", "leaked", "mass", "energy"):
        np.testing.assert_array_equal(getattr(alone, name), getattr(built, name))

    def no_build(*_: object) -> None:
        raise AssertionError("rebuilt instead of loaded")

    library_for.cache_clear()
    monkeypatch.setattr(cache_module, "build_library", no_build)
    loaded = library_for(medium, config)
    np.testing.assert_array_equal(loaded.frac, built.frac)
    np.testing.assert_array_equal(loaded.index, built.index)
    assert loaded.period_mm == built.period_mm and loaded.build_seconds == 0.0
    library_for.cache_clear()


def test_library_size_follows_the_precision() -> None:
    """Entries per bin: c_s² / precision² GeV of sub-showers per particle, at least ``library_entries``."""
    _, detector = _ds2()
    medium = detector.em_medium  # type: ignore[attr-defined]
    coarse = CascadeConfig(handoff="library", library_precision=0.02, library_entries=1)
    fine = coarse.replace(library_precision=0.01)
    assert entries_per_bin(medium, fine) == pytest.approx(4 * entries_per_bin(medium, coarse), abs=4)
    assert entries_per_bin(medium, coarse.replace(library_entries=500)) == 500


def test_auto_handoff_uses_the_library_where_the_em_stack_is_all_that_is_read() -> None:
    auto = CascadeConfig(handoff="auto")
    assert uses_library(detector_for(Geometry.preset("ds2")), auto)  # W/Si only
    assert not uses_library(detector_for(Geometry.preset("ds1-photons")), auto)  # the Tile follows the EMB
    assert not uses_library(detector_for(Geometry.preset("ds2")), auto.replace(hybrid_split_mev=0.0))
    assert uses_library(detector_for(Geometry.preset("ds1-photons")), TINY)


@pytest.mark.parametrize("name", ["ds2", "ds3"])
def test_library_entries_reach_through_the_whole_detector(name: str) -> None:
    """A sub-shower handed off at the front feeds the last layers: the build's stack after an entry's start is
    deeper than the detector (with 32 X0 against Par04's 36.3, 100 GeV electrons lost 3-10 % of the hits of
    ds2's last nine layers)."""
    detector = detector_for(Geometry.preset(name))
    medium = detector.em_medium  # type: ignore[attr-defined]
    z, _, act, cell, _ = library_module._block(medium)
    depth_mm = sum(s.thickness_mm for s in detector.slabs if s.material == medium)  # type: ignore[attr-defined]
    assert depth_mm / medium.x0_mm > 36.0
    period = sum(p.thickness_mm for p in medium.components)
    assert z[-1] > depth_mm and act[cell >= 0].sum() > depth_mm / period


def test_bad_library_settings_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="handoff") as err:
        CascadeConfig.from_dict({"handoff": "frozen"})
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="library_entries"):
        CascadeConfig(library_entries=0)
    with pytest.raises(ConfigError, match="library_precision"):
        CascadeConfig(library_precision=0.0)
    with pytest.raises(ConfigError, match="sampling stack"):
        library_for(Material.homogeneous(ELEMENTS["W"]), TINY)
    runner = CliRunner()
    res = runner.invoke(app, ["simulate", "-g", "ds2", "-p", "electron", "-n", "2", "--handoff", "library",
                              "--out", str(tmp_path / "a.h5")])
    assert res.exit_code == 2 and "--physics cascade" in res.output
    res = runner.invoke(app, ["simulate", "-g", "ds2", "-p", "electron", "-n", "2", "--physics", "cascade",
                              "--handoff", "frozen", "--out", str(tmp_path / "b.h5")])
    assert res.exit_code == 2 and "handoff" in res.output and len(res.output.strip().splitlines()) == 1


def test_a_corrupt_library_file_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, detector = _ds2()
    medium = detector.em_medium  # type: ignore[attr-defined]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    config = TINY.replace(library_entries=1)  # (the calibration of this config is in memory already)
    path = library_path(medium, config)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a zip file")
    library_for.cache_clear()
    lib = library_for(medium, config)
    library_for.cache_clear()
    assert lib.build_seconds > 0 and library_for(medium, config).n_points == lib.n_points
    library_for.cache_clear()
