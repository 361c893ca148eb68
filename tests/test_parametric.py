"""The parametric baseline: its statistics are right, and it reproduces what it was fitted to."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caloforge.data.presets import resolve_geometry
from caloforge.data.showers import ShowerSet
from caloforge.errors import ConfigError
from caloforge.models.base import Batch
from caloforge.models.parametric import Parametric, ParametricConfig
from caloforge.models.parametric_stats import fit_copula, interpolate_quantiles, reservoir_slots, standard_gamma
from caloforge.models.preprocess import Preprocessing
from caloforge.refsim import simulate
from caloforge.validation.features import readout_threshold
from synthetic import make_showers

ENERGIES = (1024.0, 8192.0, 65536.0)  # three knots of the dataset-1 ladder


def test_reservoir_fills_in_order_then_samples_the_stream_uniformly():
    g = torch.Generator().manual_seed(0)
    capacity, seen = 500, torch.zeros(1, dtype=torch.long)
    store = torch.zeros(capacity)
    for start in range(0, 20_000, 500):
        values = torch.arange(start, start + 500, dtype=torch.float32)
        items, _, rows = reservoir_slots(torch.zeros(500, dtype=torch.long), seen, capacity, g)
        if start == 0:  # the first items fill the rows in order
            assert rows.tolist() == list(range(capacity)) and items.tolist() == list(range(capacity))
        store[rows] = values[items]
        seen += 500
    # a uniform sample of 0..19999: mean 10000 +- 5774 / sqrt(500)
    assert abs(float(store.mean()) - 9999.5) < 4 * 5774 / capacity**0.5
    assert store.unique().numel() == capacity


def test_reservoir_keeps_the_last_of_items_that_pick_the_same_row():
    """Capacity 1 after one item: item i of 50 replaces with probability 1/(i + 2), and of those that
    do, the last stays. The kept item is then uniform over all 51 (index 24.5 on average, given one
    is kept); were the first to stay, item 0 (probability 1/2) would dominate (mean index about 4)."""
    kept = []
    for seed in range(300):
        items, _, rows = reservoir_slots(torch.zeros(50, dtype=torch.long), torch.tensor([1]), 1,
                                         torch.Generator().manual_seed(seed))
        assert items.numel() <= 1 and (rows == 0).all()
        kept += items.tolist()
    assert 200 < len(kept) and abs(np.mean(kept) - 24.5) < 4 * 14.4 / len(kept) ** 0.5
    items, _, _ = reservoir_slots(torch.zeros(3, dtype=torch.long), torch.tensor([10**9]), 5,
                                  torch.Generator().manual_seed(0))
    assert items.numel() == 0  # 10^9 seen: a replacement is (almost) never drawn


def test_copula_reproduces_marginals_and_normal_score_correlation():
    rng = np.random.default_rng(0)
    z = rng.multivariate_normal([0, 0, 0], [[1, 0.8, 0.8], [0.8, 1, 0.8], [0.8, 0.8, 1]], size=20_000)
    x = np.stack([np.exp(z[:, 0]), z[:, 1] ** 3, np.where(z[:, 2] > 0, z[:, 2], 0.0)], axis=1)  # half zeros
    quantiles, chol = fit_copula(torch.tensor(x), 101)
    np.testing.assert_allclose(quantiles[0].numpy(), np.quantile(x[:, 0], np.linspace(0, 1, 101)), rtol=1e-9)
    corr = chol @ chol.T
    assert float(corr[0, 1]) == pytest.approx(0.8, abs=0.02)  # monotonic marginals do not change it
    assert 0.65 < float(corr[0, 2]) < 0.8  # ties share their mid-rank: a point mass weakens it somewhat
    g = torch.Generator().manual_seed(1)
    u = torch.special.ndtr((chol @ torch.randn(3, 20_000, generator=g, dtype=torch.float64)).T)
    sample = interpolate_quantiles(quantiles.unsqueeze(0), torch.zeros(20_000, dtype=torch.long), u).numpy()
    assert (sample[:, 2] == 0).mean() == pytest.approx(0.5, abs=0.02)
    assert np.median(sample[:, 0]) == pytest.approx(1.0, rel=0.05)
    both_low = lambda a: ((a[:, 0] < np.median(a[:, 0])) & (a[:, 2] == 0)).mean()  # noqa: E731
    assert both_low(sample) == pytest.approx(both_low(x), abs=0.03)


def test_copula_of_a_constant_column_is_independent():
    x = torch.stack([torch.arange(10.0), torch.zeros(10)], dim=1)
    quantiles, chol = fit_copula(x, 5)
    assert torch.equal(quantiles[1], torch.zeros(5, dtype=torch.float64))
    torch.testing.assert_close(chol, torch.eye(2, dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", [0.05, 0.7, 3.0, 40.0])
def test_standard_gamma_moments_and_seed(shape):
    a = torch.full((40_000,), shape, dtype=torch.float64)
    x = standard_gamma(a, torch.Generator().manual_seed(0))
    assert (x >= 0).all() and torch.isfinite(x).all()
    assert float(x.mean()) == pytest.approx(shape, rel=0.05)
    assert float(x.var()) == pytest.approx(shape, rel=0.1)
    torch.testing.assert_close(x, standard_gamma(a, torch.Generator().manual_seed(0)))


@pytest.fixture(scope="module")
def fitted():
    """A baseline fitted on reference-simulator photons at three ladder energies, and those showers."""
    torch.manual_seed(0)
    data = simulate("ds1-photons", "photon", np.repeat(ENERGIES, 1500), seed=11)
    config = ParametricConfig(knots=3, reservoir=4000, batch_size=1500)
    model = Parametric(config, Preprocessing.fit(data, "energy"))
    energies, showers = torch.tensor(data.energies, dtype=torch.float32), torch.tensor(data.showers)
    g = torch.Generator().manual_seed(0)
    for start in range(0, len(data), 1500):  # each shower once, in a random order
        rows = torch.randperm(len(data), generator=torch.Generator().manual_seed(5))[start : start + 1500]
        model.train_step(lambda rows=rows: Batch(energies[rows], showers[rows]), [], lambda loss: None, g)
    return model, data


def _layer_fractions(showers, geometry, threshold=1.0):
    s = np.where(showers >= threshold, showers, 0.0)
    layers = np.stack([s[:, geometry.layer_slice(i)].sum(axis=1) for i in range(geometry.n_layers)], axis=1)
    return layers.sum(axis=1), layers


def test_reproduces_response_and_layer_energies_within_statistical_errors(fitted):
    model, data = fitted
    n = 3000
    for energy in ENERGIES:
        gen = model.sample(torch.full((n,), energy, dtype=torch.float64), None, torch.Generator().manual_seed(2))
        gen = gen.double().numpy()
        ref = data.showers[data.energies == energy]
        for sample in (ref, gen):
            assert np.isfinite(sample).all()
        (t_ref, l_ref), (t_gen, l_gen) = _layer_fractions(ref, data.geometry), _layer_fractions(gen, data.geometry)
        r_ref, r_gen = t_ref / energy, t_gen / energy
        error = np.hypot(r_ref.std() / np.sqrt(len(r_ref)), r_gen.std() / np.sqrt(n))
        assert abs(r_gen.mean() - r_ref.mean()) < 4 * error, energy
        assert r_gen.std() == pytest.approx(r_ref.std(), rel=0.1), energy
        for i in range(data.geometry.n_layers):
            f_ref, f_gen = l_ref[:, i] / energy, l_gen[:, i] / energy
            error = np.hypot(f_ref.std() / np.sqrt(len(f_ref)), f_gen.std() / np.sqrt(n)) + 1e-9
            assert abs(f_gen.mean() - f_ref.mean()) < 4 * error, (energy, i)
            empty_ref, empty_gen = (l_ref[:, i] == 0).mean(), (l_gen[:, i] == 0).mean()
            assert abs(empty_gen - empty_ref) < 4 * np.sqrt(0.25 / len(f_ref)) + 0.01, (energy, i)


def test_mean_lateral_shapes_and_threshold(fitted):
    model, data = fitted
    energy = ENERGIES[1]
    gen = model.sample(torch.full((3000,), energy, dtype=torch.float64), None, torch.Generator().manual_seed(3))
    gen = gen.double().numpy()
    assert ((gen == 0) | (gen >= 1.0 * (1 - 1e-5))).all()  # the readout threshold holds
    ref = np.where(data.showers[data.energies == energy] >= 1.0, data.showers[data.energies == energy], 0.0)
    for i in (1, 2):  # the two large layers: mean normalised pattern
        cut = data.geometry.layer_slice(i)
        mean_ref = ref[:, cut].sum(axis=0) / ref[:, cut].sum()
        mean_gen = gen[:, cut].sum(axis=0) / gen[:, cut].sum()
        # total variation distance of the mean shapes: 0.025 between two halves of the reference; the
        # normalisation within the layer and the readout move about 5 % of the energy towards the core
        assert np.abs(mean_gen - mean_ref).sum() < 0.1, i
        occupancy_ref, occupancy_gen = (ref[:, cut] > 0).mean(), (gen[:, cut] > 0).mean()
        assert occupancy_gen == pytest.approx(occupancy_ref, rel=0.05), i


def test_energies_between_knots_interpolate(fitted):
    model, _ = fitted
    means = []
    for energy in (ENERGIES[0], np.sqrt(ENERGIES[0] * ENERGIES[1]), ENERGIES[1]):
        gen = model.sample(torch.full((4000,), energy, dtype=torch.float64), None, torch.Generator().manual_seed(4))
        means.append(float(gen.double().sum(dim=1).mean()) / energy)
    assert min(means[0], means[2]) - 0.01 < means[1] < max(means[0], means[2]) + 0.01


def test_statistics_converge_and_steps_report_them(tiny_geometry):
    data = make_showers(tiny_geometry, 64, seed=2, energies=(500.0, 2000.0, 8000.0))
    model = Parametric(ParametricConfig(knots=3, reservoir=50, levels=9, batch_size=64), Preprocessing.fit(data))
    batch = Batch(torch.tensor(data.energies, dtype=torch.float32), torch.tensor(data.showers))
    logs = [model.train_step(lambda: batch, [], lambda loss: None, torch.Generator().manual_seed(i)) for i in range(6)]
    assert [log["showers"] for log in logs] == [64.0 * (i + 1) for i in range(6)]
    assert logs[-1]["change"] < logs[0]["change"]
    assert logs[-1]["loss"] < logs[0]["loss"]  # the fitted mean shapes explain the showers better than the prior
    assert int(model.seen.sum()) == 6 * 64 and (model.seen > 0).all()


def test_empty_knots_take_their_neighbours(tiny_geometry):
    data = make_showers(tiny_geometry, 60, seed=2, energies=(500.0, 8000.0))
    model = Parametric(ParametricConfig(knots=5, reservoir=50, levels=9), Preprocessing.fit(data))
    batch = Batch(torch.tensor(data.energies, dtype=torch.float32), torch.tensor(data.showers))
    model.train_step(lambda: batch, [], lambda loss: None, torch.Generator().manual_seed(0))
    assert model.seen.tolist()[1:4] == [0, 0, 0]
    torch.testing.assert_close(model.quantiles[2], 0.5 * (model.quantiles[0] + model.quantiles[4]))


def test_refuses_extra_conditions_and_unknown_particles(tiny_geometry):
    data = make_showers(tiny_geometry, 20, seed=1)
    with_theta = ShowerSet(data.energies, data.showers, data.geometry, {"theta": np.linspace(80, 90, 20)})
    with pytest.raises(ConfigError, match="extra conditions"):
        Parametric(ParametricConfig(), Preprocessing.fit(with_theta))
    with pytest.raises(ConfigError, match="particle"):
        ParametricConfig.for_particle("neutrino")


def test_readout_threshold_is_the_geometrys(tiny_geometry):
    for preset in ("ds1-pions", "ds2"):
        geometry = resolve_geometry(preset)
        config = ParametricConfig.for_particle(geometry.particle)
        assert config.threshold is None  # not decided by the particle
        assert config.for_geometry(geometry).threshold == readout_threshold(geometry)  # the evaluation's
    assert ParametricConfig(threshold=0.0).for_geometry(geometry).threshold == 0.0  # a value given is kept
    assert ParametricConfig().for_geometry(tiny_geometry).threshold == 1.0  # a custom geometry: 1 MeV
    data = make_showers(tiny_geometry, 20, seed=1)
    assert Parametric(ParametricConfig(), Preprocessing.fit(data)).threshold == 1.0  # built directly: 1 MeV


@pytest.mark.filterwarnings("ignore:the validation sample has fewer:UserWarning")
def test_selects_its_best_checkpoint_and_resumes_like_the_other_families(tiny_geometry, tmp_path, one_thread):
    """The parametric family has no optimiser; it still gets best.ckpt and last.ckpt, the bundle of its best
    validation chi2/NDF (not its last state), and a resume that continues where it stopped, number for number."""
    import csv

    from caloforge.training import train
    from caloforge.training.bundle import load

    data = make_showers(tiny_geometry, 1600, seed=1, energies=(500.0, 1000.0, 4000.0, 8000.0))
    config = ParametricConfig(batch_size=64, reservoir=200, knots=4)
    result = train(data, "parametric", config, tmp_path / "run", max_iterations=60, checkpoint_every=10,
                   progress=False)
    assert (tmp_path / "run" / "best.ckpt").is_file() and (tmp_path / "run" / "last.ckpt").is_file()
    with (tmp_path / "run" / "log.csv").open() as f:
        rows = [(int(r["iteration"]), float(r["chi2_ndf"]), float(r["best_chi2_ndf"])) for r in csv.DictReader(f)]
    trained = [(it, chi2) for it, chi2, _ in rows if it > 0]
    best_it, best = min(trained, key=lambda r: (r[1], r[0]))
    assert best < trained[-1][1], rows  # the data make the last state worse than the best: the choice matters
    assert [b for _, _, b in rows[1:]] == [min(c for _, c in trained[:k + 1]) for k in range(len(trained))]
    assert (result.ranges[0].best_iteration, result.ranges[0].best_chi2_ndf) == (best_it, best)
    assert load(result.bundle_dir).info["validation"]["iteration"] == best_it

    train(data, "parametric", config, tmp_path / "halves", max_iterations=30, checkpoint_every=10, progress=False)
    resumed = train(data, "parametric", None, tmp_path / "halves", max_iterations=60, checkpoint_every=10,
                    progress=False, resume=True)
    with (tmp_path / "halves" / "log.csv").open() as f:
        again = [(int(r["iteration"]), float(r["chi2_ndf"]), float(r["best_chi2_ndf"])) for r in csv.DictReader(f)]
    assert again == rows  # the statistics, reservoir and noise continue exactly
    assert resumed.ranges[0].best_iteration == best_it
