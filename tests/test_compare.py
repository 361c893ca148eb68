"""Several generated samples in one report; ratio panels that adapt; honest small samples; energy labels."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

import caloforge
from caloforge.cli import app
from caloforge.data.io import write
from caloforge.data.showers import ShowerSet
from caloforge.refsim import simulate
from caloforge.runtime.progress import SILENT
from caloforge.validation.compare import Comparison
from caloforge.validation.metrics.separation import FeatureHistogram
from caloforge.validation.metrics.verdict import JUDGE_MIN_SHOWERS, chi2_verdict, judge_sizes, separation_verdict
from caloforge.validation.plots import histogram_grid, histogram_title, style
from caloforge.validation.report import report_figures
from caloforge.validation.shower_plots import layer_list

ENERGIES = np.repeat(2.0 ** np.arange(10, 13), 150)  # 1, 2, 4 GeV: 450 showers


def _scaled(showers: ShowerSet, factor: float) -> ShowerSet:
    return ShowerSet(showers.energies, showers.showers * np.float32(factor), showers.geometry)


@pytest.fixture(scope="module")
def comparison(tmp_path_factory) -> tuple[Comparison, object]:
    ref = simulate("ds1-photons", "photon", ENERGIES, seed=1)
    good = simulate("ds1-photons", "photon", ENERGIES, seed=2)
    bad = _scaled(simulate("ds1-photons", "photon", ENERGIES, seed=3), 1.1)  # 10 % too much energy
    out = tmp_path_factory.mktemp("compare")
    result = caloforge.evaluate(ref, {"good": good, "too hot": bad}, out, seed=4)
    return result, out


def test_one_report_holds_every_sample_with_its_own_verdict(comparison):
    result, out = comparison
    assert isinstance(result, Comparison) and result.labels == ("good", "too hot")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"] == ["good", "too hot"] and set(metrics["samples"]) == {"good", "too hot"}
    good, hot = metrics["samples"]["good"], metrics["samples"]["too hot"]
    # the same reference, the same seed: the same reference split for both
    assert good["response_chi2"]["reference_split_chi2_ndf"] == hot["response_chi2"]["reference_split_chi2_ndf"]
    # a 10 % energy scale fails the response chi2; an independent sample of the same simulator does not
    chi2 = {label: next(r for r in s["verdicts"] if r["key"] == "response_chi2_ndf") for label, s in
            metrics["samples"].items()}
    assert chi2["too hot"]["verdict"] == "fail" and chi2["good"]["verdict"] != "fail"
    assert metrics["verdicts"] == {"good": result.results[0].verdict, "too hot": "fail"}
    page = (out / "report.html").read_text()
    table = page.split("<h2>Metrics per sample</h2>")[1].split("</table>")[0]
    assert "<th colspan='2'>good</th>" in table and "<th colspan='2'>too hot</th>" in table
    assert table.count("response chi2/NDF") == 1 and table.count(" ± ") >= 2 * 4  # errors beside the values
    # one row per metric although the worst feature and energy differ per sample: each cell names its own
    assert table.count("separation power (max over features)") == 1 and table.count("<small>(") >= 4
    assert (out / "plots" / "shapes_by_energy.png").stat().st_size > 1000


def test_each_sample_histograms_are_written_for_root(comparison):
    uproot = pytest.importorskip("uproot")
    result, out = comparison
    for name, (label, sample) in zip(("histograms_1_good.root", "histograms_2_too_hot.root"), result.samples,
                                     strict=True):
        with uproot.open(out / name) as file:
            hist = file["e_layer_2/generated"]
            source = next(h for h in sample.histograms if h.name == "e_layer_2")
            np.testing.assert_array_equal(hist.to_numpy()[0], source.generated)
            assert f"({label})" in hist.member("fTitle")
    assert "histograms_1_good.root" in (out / "report.html").read_text()


def test_every_histogram_overlays_every_sample(comparison):
    import matplotlib

    result, _ = comparison
    with matplotlib.rc_context(style()):
        drawn = {stem: make() for _, stem, _, make in report_figures(result.samples)
                 if stem in ("response", "response_per_energy", "e_layer", "width_r", "voxel", "profiles",
                             "layer_energies_by_energy", "shapes_by_energy", "response_resolution")}
    assert len(drawn) == 9
    for stem, fig in drawn.items():
        texts = {t.get_text() for legend in [*fig.legends, *(a.get_legend() for a in fig.axes)] if legend
                 for t in legend.get_texts()}
        assert {"reference", "good", "too hot"} <= texts, (stem, texts)
    grid = drawn["e_layer"]
    panels = [ax for ax in grid.axes if ax.get_title().startswith("layer ")]
    assert len(panels) == 5  # one per layer of ds1-photons, each with the reference and both samples drawn
    for ax in panels:
        assert len(ax.patches) == 3 and ax.get_title().count("/") == 1  # S of each sample in the title


def _hist(generated: list[float]) -> FeatureHistogram:
    edges = np.linspace(0.0, 5.0, 6)
    return FeatureHistogram("x", "e_total", None, "x [MeV]", edges, np.full(5, 100.0), np.array(generated))


def test_ratio_panel_adapts_and_marks_points_off_its_scale():
    import matplotlib

    with matplotlib.rc_context(style()):
        close = histogram_grid([("generated", [_hist([101.0, 99.0, 102.0, 98.0, 100.0])])], "close")
        far = histogram_grid([("generated", [_hist([100.0, 100.0, 100.0, 100.0, 1000.0])])], "far")
    ratio_close, ratio_far = close.axes[1], far.axes[1]
    assert ratio_close.get_ylim() == pytest.approx((0.9, 1.1))  # a near-perfect sample: a fine scale
    assert not [line for line in ratio_close.lines if line.get_gid() == "off-scale"]
    arrows = [line for line in ratio_far.lines if line.get_gid() == "off-scale"]
    assert len(arrows) == 1 and arrows[0].get_marker() == "^"  # the bin at 10x (after normalisation ~3.6x)
    x, y = arrows[0].get_data()
    low, high = ratio_far.get_ylim()
    assert float(x[0]) == pytest.approx(4.5) and low < float(y[0]) < high  # drawn inside, at the top edge


def test_too_small_samples_are_not_judged_and_say_so_once():
    energies = np.repeat([2048.0, 4096.0], 30)  # 30 showers per energy, 60 in all
    ref = simulate("ds1-photons", "photon", energies, seed=1)
    gen = _scaled(simulate("ds1-photons", "photon", energies, seed=2), 1.5)
    from caloforge.validation.evaluate import compute_evaluation

    with pytest.warns(UserWarning, match="not computed"):  # FPD and KPD skipped: said so
        result = compute_evaluation(ref, gen, seed=1, skip=("fpd", "kpd"))
    rows = {r.key: r for r in result.verdicts}
    for key in ("response_chi2_ndf", "response_tails", "separation_power_max", "layer_correlation_max_diff",
                "ring_ratio_worst"):
        assert rows[key].verdict == "too small", key
    assert f">= {JUDGE_MIN_SHOWERS}" in rows["separation_power_max"].rule and "got 30" in rows[
        "separation_power_max"].rule
    assert ">= 50" in rows["response_chi2_ndf"].rule  # the per-energy threshold named
    assert "fail" in rows["response_chi2_ndf"].rule  # what it would have said, for the curious
    assert result.verdict == "too small"
    notes = [w for w in result.warnings if "too small to judge" in w]
    assert len(notes) == 1 and "5 metric(s)" in notes[0]
    metrics = result.to_dict()
    assert metrics["verdict"] == "too small"


def test_large_samples_stay_graded(tiny_showers):
    from caloforge.validation.metrics.chi2 import response_chi2

    e = np.repeat([1e3, 4e3], 2500)
    rng = np.random.default_rng(0)
    chi2 = response_chi2(e, rng.normal(1, 0.02, e.size), e, rng.normal(1, 0.02, e.size))
    rows = (chi2_verdict(1.0, 100), separation_verdict(0.5, 0.001))
    judged = judge_sizes(rows, chi2, 5000, 5000)
    assert [r.verdict for r in judged] == ["pass", "fail"]
    assert judge_sizes(rows, chi2, 5000, 999)[1].verdict == "too small"


def test_energies_are_labelled_one_way(comparison):
    result, _ = comparison
    first = result.results[0]
    titles = [histogram_title(h) for h in first.energy_histograms]
    assert titles == ["E_inc = 1.02 GeV", "E_inc = 2.05 GeV", "E_inc = 4.1 GeV"]
    assert all("e+" not in h.label and "MeV" not in h.label for h in first.energy_histograms)
    captions = [caption for _, _, caption, _ in report_figures(result.samples)]
    assert "Average shower in the most energetic layer, E_inc = 1.02 GeV" in captions
    assert not [c for c in captions if re.search(r"\d\.\d+e[+-]\d", c)]
    tails = next(r for r in first.verdicts if r.key == "response_tails")
    assert re.search(r"worst at \d+(\.\d+)? GeV\)", tails.metric)
    assert "Average shower, layers 0, 1, 2, 3, 12" in captions  # not "layers 0-4"
    assert layer_list([0, 1, 2]) == "layers 0-2"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("files")
    (base / "other").mkdir()
    write(base / "ref.h5", simulate("ds1-photons", "photon", ENERGIES[::3], seed=1))
    write(base / "gen_a.h5", simulate("ds1-photons", "photon", ENERGIES[::3], seed=2))
    write(base / "other" / "gen_a.h5", _scaled(simulate("ds1-photons", "photon", ENERGIES[::3], seed=3), 1.2))
    return base


def test_cli_compares_two_files_in_one_report(files, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["evaluate", "-r", str(files / "ref.h5"), "-i", str(files / "gen_a.h5"),
                                      "-i", str(files / "other" / "gen_a.h5"), "--label", "model A",
                                      "--label", "hot", "--skip", "figures,fpd,kpd", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "verdicts: model A: " in result.output and "hot" in result.output  # one table, a column per sample
    assert result.output.count("response chi2/NDF") == 1
    assert result.output.count("too small to judge") == 1  # one warning, whatever the number of samples
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"] == ["model A", "hot"]
    paths = {k: s["inputs"]["generated"]["path"] for k, s in metrics["samples"].items()}
    assert paths == {"model A": str(files / "gen_a.h5"), "hot": str(files / "other" / "gen_a.h5")}


@pytest.mark.parametrize(("extra", "message"), [
    ((), "name each with --label"),  # the two files have the same name
    (("--label", "A"), "one --label per generated sample (2) but got 1"),
    (("--label", "A", "--label", "A"), "duplicates ['A']"),
    (("--label", "A", "--label", "B", "--run", "run/"), "--run with one --generated file"),
])
def test_cli_refuses_what_cannot_apply_in_one_line(files, tmp_path, extra, message):
    result = CliRunner().invoke(app, ["evaluate", "-r", str(files / "ref.h5"), "-i", str(files / "gen_a.h5"),
                                      "-i", str(files / "other" / "gen_a.h5"), *extra, "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_cli_refuses_a_label_on_a_single_model_report(files, tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "-r", str(files / "ref.h5"), "-i", str(files / "gen_a.h5"),
                                      "--label", "A", "--run", "run/", "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and "no --label with --run" in result.output, result.output
    assert "but got 1 files" not in result.output and len(result.output.strip().splitlines()) == 1


def test_the_leaderboard_compares_its_families_from_the_evaluations_it_made(tiny_geometry, tmp_path):
    from caloforge.campaign import leaderboard as lb
    from caloforge.campaign.leaderboard_report import render_html
    from caloforge.validation.evaluate import compute_evaluation
    from synthetic import make_showers

    ref = make_showers(tiny_geometry, 120, seed=1)
    with pytest.warns(UserWarning, match="not computed"):
        evaluations = {name: compute_evaluation(ref, make_showers(tiny_geometry, 120, seed=seed), seed=2,
                                                skip=("fpd", "kpd")) for name, seed in (("gan", 2), ("vae", 3))}
    entries = [{"family": name, "status": "ok"} for name in evaluations]
    board = lb.Leaderboard(tuple(entries), lb.LeaderboardSettings(families=("gan", "vae")), "machine", 1.0, tmp_path)
    assert "caloforge evaluate -r eval.h5 -i gen_A.h5" in render_html(board)  # before: how to make it
    lb._write_comparison(tmp_path, dict(list(evaluations.items())[:1]), SILENT)  # one family: nothing to compare
    assert not (tmp_path / "compare").exists()
    lb._write_comparison(tmp_path, evaluations, SILENT)
    metrics = json.loads((tmp_path / "compare" / "metrics.json").read_text())
    assert metrics["labels"] == ["gan", "vae"] and (tmp_path / "compare" / "plots" / "e_layer.png").is_file()
    assert "<a href='compare/report.html'>every family in one report</a>" in render_html(board)
