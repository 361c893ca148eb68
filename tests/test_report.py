"""The report: files, stable JSON keys, self-contained HTML, no overwrite, and a real browser opens it."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from caloforge.data.geometry import Geometry
from caloforge.data.showers import ShowerSet
from caloforge.errors import GeometryMismatchError, OutputExistsError
from caloforge.refsim import simulate
from caloforge.runtime.progress import Progress
from caloforge.validation.drawing import draw_figures
from caloforge.validation.evaluate import compute_evaluation, evaluate
from caloforge.validation.metrics import ClassifierConfig
from caloforge.validation.report import render_html, report_figures
from caloforge.validation.shower_plots import plot_mean_images

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def _browser() -> tuple[str | None, str | None]:
    """Chromium and its driver where Debian, Ubuntu, Fedora, Homebrew or a PATH put them."""
    chromium = next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)
    elsewhere = ("/usr/lib/chromium/chromedriver", "/usr/lib64/chromium-browser/chromedriver")
    driver = shutil.which("chromedriver") or next((p for p in elsewhere if os.path.exists(p)), None)
    return chromium, driver
TINY_NET = ClassifierConfig(hidden=(16,), max_epochs=2, repeats=1, max_showers=600, precision="fp32")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    energies = np.repeat(2.0 ** np.arange(10, 14), 300)
    ref = simulate("ds1-photons", "photon", energies, seed=1)
    gen = simulate("ds1-photons", "photon", energies, seed=2)
    out = tmp_path_factory.mktemp("report")
    inputs = {"reference": {"path": "ref.h5", **ref.fingerprint()},
              "generated": {"path": "gen.h5", **gen.fingerprint()},
              "model": {"path": "run/bundle", "family": "gan", "iterations": 1200, "training_minutes": 5.0}}
    result = evaluate(ref, gen, out, mode="full", seed=3, classifier_config=TINY_NET, inputs=inputs)
    return out, result, ref, gen


def test_outputs_written_with_stable_keys(report_dir):
    out, result, _, _ = report_dir
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("schema", "verdict", "verdicts", "response_chi2", "separation_power", "fpd", "kpd", "prdc",
                "classifiers", "response", "layer_correlation", "readout_threshold_mev", "geometry"):
        assert key in metrics
    assert metrics["readout_threshold_mev"] == 1.0
    assert set(metrics["classifiers"]) == {"low", "high"}
    assert {"value_e3", "error_e3", "reference_split"} <= set(metrics["fpd"])
    assert metrics["verdict"] == result.verdict
    assert metrics["inputs"]["reference"]["path"] == "ref.h5" and metrics["timings_s"]["total"] > 0
    assert len(result.energy_means) == 4 and result.energy_means[0].label == "1.02 GeV"


def test_histograms_are_written_for_root(report_dir):
    uproot = pytest.importorskip("uproot")
    out, result, _, _ = report_dir
    with uproot.open(out / "histograms.root") as file:
        hist = file["e_layer_2/generated"]
        counts, edges = hist.to_numpy()
        source = next(h for h in result.histograms if h.name == "e_layer_2")
        np.testing.assert_array_equal(counts, source.generated)
        np.testing.assert_allclose(edges, source.edges)
        response = next(h for h in result.histograms if h.name == "response")
        np.testing.assert_array_equal(file["response/reference"].to_numpy()[0], response.reference)
    for stem in ("response", "e_layer", "width_r", "sparsity", "voxel", "profiles", "mean_images_0",
                 "layer_correlations", "roc", "response_resolution", "response_per_energy",
                 "layer_energies_by_energy", "mean_image_energy_0", "mean_image_energy_3"):
        assert (out / "plots" / f"{stem}.png").stat().st_size > 1000
        assert (out / "plots" / f"{stem}.pdf").read_bytes().startswith(b"%PDF")


def test_html_is_self_contained(report_dir):
    out, result, _, _ = report_dir
    page = (out / "report.html").read_text()
    assert page.count("<img") >= 14 and page.count("src='data:image/png;base64,") == page.count("<img")
    assert "http://" not in page and "https://" not in page
    assert "Verdict" in page and "chi2/NDF" in page and "reference split" in page
    assert f">{result.verdict}<" in page


def test_no_overwrite_without_force_and_geometry_mismatch(report_dir, tmp_path):
    out, _, ref, gen = report_dir
    with pytest.raises(OutputExistsError, match="--force"):
        evaluate(ref, gen, out, mode="fast")
    other = ShowerSet(gen.energies, np.zeros((len(gen), 533), np.float32) + 1.0, Geometry.preset("ds1-pions"))
    with pytest.raises(GeometryMismatchError, match="expected generated showers of the reference geometry"):
        evaluate(ref, other, tmp_path / "x", mode="fast")


def test_energy_distribution_difference_warns(report_dir, tmp_path):
    _, _, ref, _ = report_dir
    gen = simulate("ds1-photons", "photon", np.repeat(2.0 ** np.arange(10, 14), [600, 300, 200, 100]), seed=4)
    with pytest.warns(UserWarning, match="incident-energy distributions .* differ"):
        result = compute_evaluation(ref, gen, mode="fast", with_prdc=False)
    assert any("incident-energy" in w for w in result.warnings)
    assert "incident-energy" in render_html(result, [])


@pytest.mark.browser
def test_report_opens_in_headless_chromium(report_dir, tmp_path):
    chromium, chromedriver = _browser()
    if chromium is None or chromedriver is None:
        if os.environ.get("CI"):
            pytest.fail(f"headless Chromium is required in CI but found chromium={chromium}, "
                        f"chromedriver={chromedriver}")
        pytest.skip("chromium / chromedriver not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    out = report_dir[0]
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver, log_output=subprocess.DEVNULL), options=options)
    try:
        driver.get((out / "report.html").resolve().as_uri())
        widths = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0);")
        assert len(widths) >= 14 and all(w >= 600 for w in widths), widths  # readable without zooming
        header = driver.execute_script("return document.querySelector('ul.inputs').innerText;")
        assert "ref.h5" in header and "gen.h5" in header and "sha256" in header and "family gan" in header
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
        assert "Validation report" in driver.title + driver.page_source
    finally:
        driver.quit()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_figures_drawn_in_two_processes_are_those_drawn_in_one(report_dir, tmp_path):
    """Parallel drawing (``--threads 2``) gives the same PNG bytes in the same order, and reports each figure."""
    _, result, _, _ = report_dir
    drawn = [f for f in report_figures([("generated", result)]) if f[1] in ("response", "e_layer", "mean_images_0")]
    assert len(drawn) == 3
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    serial = draw_figures(drawn, tmp_path / "one", pdf=False, workers=1)
    log = io.StringIO()
    parallel = draw_figures(drawn, tmp_path / "two", pdf=True, workers=2, progress=Progress(stream=log, live=False))
    assert [(s, c) for s, c, _ in parallel] == [(s, c) for s, c, _ in serial]
    assert [png for *_, png in parallel] == [png for *_, png in serial]
    assert sorted(p.name for p in (tmp_path / "two" / "plots").iterdir()) == sorted(
        f"{stem}.{ext}" for _, stem, _, _ in drawn for ext in ("pdf", "png"))
    assert re.search(r"report figures: done \(\d+ s, 3/3 figures", log.getvalue())


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_full_disk_in_a_drawing_process_reaches_the_caller_as_the_same_error(report_dir, tmp_path):
    """A figure written to a full disk in a spawned drawing process raises the parent's OSError with its errno
    (ENOSPC), which `evaluate` turns into its one-line error, as when drawn in-process."""
    import errno

    _, result, _, _ = report_dir
    drawn = [f for f in report_figures([("generated", result)]) if f[1] in ("response", "e_layer")]
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "e_layer.png").symlink_to("/dev/full")  # writing there fails with ENOSPC
    with pytest.raises(OSError) as failed:
        draw_figures(drawn, tmp_path, pdf=False, workers=2)
    assert failed.value.errno == errno.ENOSPC


def test_mean_images_share_one_colour_bar_per_column(report_dir):
    """The colour scales are shared by every layer of a figure: one bar per column, not one per row."""
    _, result, _, _ = report_dir
    g = result.geometry
    fig = plot_mean_images(g, result.mean_reference, [("generated", result.mean_generated)], [0, 1, 2])
    polar = [ax for ax in fig.axes if ax.name == "polar"]
    assert len(polar) == 9 and len(fig.axes) == 9 + 2  # reference / generated / ratio per layer; energy and ratio bars
