"""The FPD/KPD stage of an evaluation: exact fast estimators, progress, skipping and other settings recorded.

The fast kernel sums (one kernel matrix for all KPD batches, from row weights) and the FPD covariances of the
distinct drawn rows must give the numbers of the direct computation on the drawn subsets (JetNet's loops);
the stage must report while it runs; a skipped metric must be null with its reason and "not computed" in the
verdict table; settings other than the official ones must be named in metrics.json.
"""

from __future__ import annotations

import io
import json
import re
import warnings

import numpy as np
import pytest
import scipy.linalg

from caloforge.data.geometry import Geometry
from caloforge.data.showers import ShowerSet
from caloforge.errors import ConfigError
from caloforge.runtime.progress import Progress
from caloforge.validation.evaluate import DistanceConfig, compute_evaluation, evaluate
from caloforge.validation.metrics.distances import fpd, kpd, subset_sizes
from caloforge.validation.metrics.extrapolation import jetnet_line_fit
from caloforge.validation.metrics.frechet import frechet, weighted_stats
from caloforge.validation.metrics.mmd import mmd_poly_batches
from caloforge.validation.report import render_html


def _direct_mmd(a: np.ndarray, b: np.ndarray) -> float:
    """JetNet's unbiased MMD^2 with (x.y/d + 1)^4, written out on the drawn rows."""
    d = a.shape[1]
    kxx, kyy, kxy = ((a @ a.T) / d + 1) ** 4, ((b @ b.T) / d + 1) ** 4, ((a @ b.T) / d + 1) ** 4
    m, n = len(a), len(b)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * kxy.mean())


@pytest.mark.parametrize("d", [3, 50])
def test_every_kernel_sum_method_equals_the_direct_sums_on_batches_with_repeated_rows(d):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(70, d)) * 0.3, rng.normal(size=(90, d)) * 0.3 + 0.1
    draws = [(rng.choice(70, 120), rng.choice(90, 120)) for _ in range(4)]  # batches larger than the samples
    wx = np.stack([np.bincount(a, minlength=70) for a, _ in draws], axis=1).astype(float)
    wy = np.stack([np.bincount(b, minlength=90) for _, b in draws], axis=1).astype(float)
    direct = [_direct_mmd(x[a], y[b]) for a, b in draws]
    for method in ("gram", "per-batch", "moments"):
        values, used = mmd_poly_batches(x, y, wx, wy, method=method)  # type: ignore[arg-type]
        assert used == method
        np.testing.assert_allclose(values, direct, rtol=1e-9, atol=1e-12)


def test_kpd_on_many_columns_equals_jetnets_loop():
    rng = np.random.default_rng(1)
    ref, gen = rng.normal(size=(300, 60)), rng.normal(size=(200, 60)) * 1.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ours = kpd(ref, gen, seed=3, batch_size=250, n_batches=5)
    scale = np.abs(ref).max(axis=0)
    r, g = ref / scale, gen / scale
    values = []
    for i in range(5):
        batch = np.random.default_rng(3 + 1000 * i)
        values.append(_direct_mmd(r[batch.choice(300, 250)], g[batch.choice(200, 250)]))
    low, high = np.percentile(values, [16.275, 83.725])
    assert ours.value == pytest.approx(np.median(values), rel=1e-9)
    assert ours.error == pytest.approx((high - low) / 2, rel=1e-7)


def test_fpd_on_many_columns_equals_jetnets_loop():
    """Above 40 columns the covariances come from the distinct drawn rows and the square root from eigenvalues."""
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(400, 50))
    gen = ref[rng.permutation(400)[:300]] * 1.05 + 0.02
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ours = fpd(ref, gen, seed=7, min_samples=200, max_samples=800, n_points=3, n_draws=3)
    scale = np.abs(ref).max(axis=0)
    r, g = ref / scale, gen / scale
    draws = np.random.default_rng(7)
    sizes = subset_sizes(200, 800, 3)
    means = []
    for size in sizes:
        total = 0.0
        for _ in range(3):
            a, b = r[draws.choice(400, int(size))], g[draws.choice(300, int(size))]
            s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
            diff = a.mean(0) - b.mean(0)
            total += diff @ diff + np.trace(s1 + s2) - 2 * np.trace(np.real(scipy.linalg.sqrtm(s1 @ s2)))
        means.append(total / 3)
    value, error = jetnet_line_fit(1.0 / sizes, np.array(means))
    assert ours.value == pytest.approx(value, rel=1e-7) and ours.error == pytest.approx(error, rel=1e-5)
    assert "eigenvalues" in dict(ours.settings)["matrix_sqrt"]


def _sqrtm_frechet(mu1, s1, mu2, s2):
    """The Fréchet distance written out as JetNet does: scipy.linalg.sqrtm of the product."""
    diff = mu1 - mu2
    return diff @ diff + np.trace(s1 + s2) - 2 * np.trace(np.real(scipy.linalg.sqrtm(s1 @ s2)))


@pytest.mark.parametrize("case", ["correlated", "constant column", "fewer rows than columns"])
def test_the_cholesky_trace_of_many_columns_equals_sqrtm(case):
    """Above 40 columns tr (S_1 S_2)^(1/2) comes from a Cholesky factor and one eigenvalue problem (or, for a
    singular S_1, from eigendecompositions); the distance equals the direct sqrtm to 1e-6 relative. Samples like
    datasets 2/3: correlated columns of very different scales, two close distributions (a small distance)."""
    rng = np.random.default_rng(5)
    d, n = 120, (60 if case == "fewer rows than columns" else 2000)
    mix = rng.normal(size=(d, d)) * np.logspace(-3, 0, d)
    x = rng.normal(size=(n, d)) @ mix
    y = (rng.normal(size=(n, d)) @ mix) * 1.02 + 0.001
    if case == "constant column":  # an empty layer: the same value in every shower of both samples
        x[:, 7] = y[:, 7] = -8.0
    rows_x, rows_y = rng.choice(n, 3 * n), rng.choice(n, 3 * n)  # drawn with replacement, as FPD draws
    stats = (*weighted_stats(x, rows_x), *weighted_stats(y, rows_y))
    direct = (x[rows_x].mean(0), np.cov(x[rows_x], rowvar=False), y[rows_y].mean(0), np.cov(y[rows_y], rowvar=False))
    for ours, theirs in zip(stats, direct, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-15)
    if case == "constant column":  # sqrtm's product is singular there (JetNet adds 1e-6 to the diagonals):
        assert stats[1][7].max() == stats[1][7].min() == 0.0  # exactly zero, not a rounding residue
        keep = np.arange(d) != 7  # the column adds nothing to the distance: compare without it
        direct = tuple(m[keep] if m.ndim == 1 else m[np.ix_(keep, keep)] for m in direct)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sqrtm of a singular product (fewer rows than columns) warns
        expected = _sqrtm_frechet(*direct)
    if n > d:  # a small distance: the cancellation a test must survive
        assert 0.0 < expected < 0.1 * np.trace(direct[1])
    assert frechet(*stats) == pytest.approx(expected, rel=1e-6)


def _pair(n: int = 80) -> tuple[ShowerSet, ShowerSet]:
    g = Geometry.preset("ds1-photons")
    rng = np.random.default_rng(4)
    energies = rng.choice([1024.0, 4096.0], n)
    ref = rng.gamma(1.0, 30.0, (n, g.n_voxels)).astype(np.float32) * (rng.random((n, g.n_voxels)) < 0.3)
    gen = rng.gamma(1.0, 33.0, (n, g.n_voxels)).astype(np.float32) * (rng.random((n, g.n_voxels)) < 0.3)
    return ShowerSet(energies, ref, g), ShowerSet(energies, gen, g)


def test_the_distance_stage_reports_at_least_every_ten_seconds():
    """A clock that advances 1 s per reading: the log gets a line of each distance at least every ~10 s."""
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    out = io.StringIO()
    ref, gen = _pair()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        compute_evaluation(ref, gen, mode="fast", progress=Progress(stream=out, live=False, clock=clock))
    lines = out.getvalue().splitlines()
    stage = [ln for ln in lines if re.search(r"\] (FPD|KPD)", ln)]
    assert any(re.search(r"FPD on 30 columns: [\d.]+/200 draws", ln) for ln in stage)  # lines while it runs
    for name in ("FPD on", "KPD on", "FPD (reference split) on", "KPD (reference split) on"):
        assert any(f"] {name} 30 columns: started" in ln for ln in stage)
        assert any(f"] {name} 30 columns: done" in ln for ln in stage)
    seconds = [sum(int(p) * f for p, f in zip(re.search(r"\+(\d+):(\d+):(\d+)", ln).groups(), (3600, 60, 1),
                                               strict=True)) for ln in stage]
    assert max(np.diff(seconds)) <= 13  # the 10 s interval plus the clock readings of one update


def test_a_skipped_metric_is_null_with_its_reason_and_not_computed():
    ref, gen = _pair()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = compute_evaluation(ref, gen, mode="fast", skip=("fpd", "split"))
    metrics = json.loads(json.dumps(result.to_dict()))  # as written to metrics.json
    assert metrics["fpd"]["value_e3"] is None and "skipped" in metrics["fpd"]["value_e3_missing"]
    assert "--skip fpd" in metrics["fpd"]["value_e3_missing"]
    assert metrics["definitions"]["fpd"]["computed"] is False
    rows = {r["key"]: r for r in metrics["verdicts"]}
    assert rows["fpd_e3"]["verdict"] == "not computed" and rows["fpd_e3"]["value"] is None
    assert "--skip fpd" in rows["fpd_e3"]["value_missing"]
    # KPD is computed, but without its reference split there is nothing to grade it against
    assert metrics["kpd"]["value_e3"] > 0 and metrics["kpd"]["reference_split"]["value_e3"] is None
    assert rows["kpd_e3"]["verdict"] == "info" and "split" in rows["kpd_e3"]["rule"]
    assert result.verdict == metrics["verdict"] and result.verdict in ("pass", "warn", "fail", "too small")
    html = render_html(result, [])  # the report's page, without drawing the figures
    assert "not computed" in html and "FPD not computed (--skip fpd)" in html
    with pytest.raises(ConfigError, match="expected metrics to skip among"):
        compute_evaluation(ref, gen, skip=("fdp",))


def test_skip_split_also_leaves_out_the_classifiers_reference_split(monkeypatch):
    """The reference-split classifier doubles a full evaluation's cost; --skip split leaves it out, and each AUC is
    then graded against 0.5 (pass <= 0.6) instead of against the split's AUC."""
    from caloforge.validation import classifier_stage
    from caloforge.validation.metrics.classifier import ClassifierConfig

    trained = []
    real = classifier_stage.classifier_test
    monkeypatch.setattr(classifier_stage, "classifier_test",
                        lambda *a, **k: trained.append(k["label"]) or real(*a, **k))
    ref, gen = _pair()
    config = ClassifierConfig(hidden=(16,), batch_size=32, max_epochs=2, repeats=1, precision="fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = compute_evaluation(ref, gen, mode="full", classifiers=("low",), with_prdc=False,
                                    classifier_config=config, skip=("split",))
    assert trained == ["classifier low-level"] and result.classifiers_split == {}
    metrics = json.loads(json.dumps(result.to_dict()))
    assert metrics["classifiers"]["low"]["reference_split"] is None
    row = {r["key"]: r for r in metrics["verdicts"]}["auc_low"]
    assert row["reference_split"] is None and "pass <= 0.600" in row["rule"] and "--skip split" in row["rule"]
    trained.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        compute_evaluation(ref, gen, mode="full", classifiers=("low",), with_prdc=False, classifier_config=config)
    assert trained == ["classifier low-level", "classifier low-level (reference split)"]


def test_other_settings_than_the_official_ones_are_named():
    ref, gen = _pair()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        official = compute_evaluation(ref, gen, mode="fast").to_dict()
        fewer = compute_evaluation(ref, gen, mode="fast", distances=DistanceConfig(fpd_draws=4, kpd_batches=3))
    assert official["definitions"]["fpd"]["official_settings"] is True
    assert official["definitions"]["kpd"]["official_settings"] is True
    d = fewer.to_dict()["definitions"]
    assert d["fpd"]["official_settings"] is False and d["fpd"]["differs_from_official"] == {
        "n_draws": {"used": 4, "official": 20}}
    assert d["kpd"]["differs_from_official"] == {"n_batches": {"used": 3, "official": 10}}
    assert any("FPD with 4 draws per subset size instead of the official 20" in w for w in fewer.warnings)
    # KPD's batch i is the official batch i: fewer batches are the first ones
    assert fewer.kpd.definition["n_batches"] == 3 and fewer.kpd.value != official["kpd"]["value_e3"] / 1e3
    with pytest.raises(ConfigError, match="expected kpd_batches an integer >= 1"):
        DistanceConfig(kpd_batches=0)


def test_skipping_the_figures_writes_metrics_and_the_page_without_plots(tmp_path):
    ref, gen = _pair()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = evaluate(ref, gen, tmp_path / "r", mode="fast", skip=("kpd",),
                          distances=DistanceConfig(skip=frozenset({"figures"})))  # as the command passes it
    assert not list((tmp_path / "r" / "plots").glob("*.png"))
    assert "figures not drawn (caloforge evaluate --skip figures)" in (tmp_path / "r" / "report.html").read_text()
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["kpd"]["value_e3"] is None and metrics["fpd"]["value_e3"] == pytest.approx(result.fpd.value * 1e3)
