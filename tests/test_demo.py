"""caloforge demo end to end on an iteration budget (the real demo runs with the defaults, see docs/results.md)."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from caloforge.cli import app

runner = CliRunner()


@pytest.mark.slow
def test_demo_end_to_end_prints_its_plan_and_refuses_to_overwrite(tmp_path, one_thread):
    out = tmp_path / "demo"
    # An iteration budget (not minutes): the same training on every machine, however fast or loaded.
    result = runner.invoke(app, ["demo", "--out", str(out), "--max-iterations", "120", "--max-minutes", "30",
                                 "--classifier-minutes", "0.1", "--n-train", "4000", "--n-validation", "3000",
                                 "--n-eval", "600", "--device", "cpu", "--threads", "1",
                                 "--physics", "gflash", "--family", "GAN"])  # the fast simulator; any case
    assert result.exit_code == 0, result.output
    for name in ("train.h5", "validation.h5", "eval.h5", "generated.h5", "run/bundle/bundle.json", "run/log.csv",
                 "report/report.html", "report/metrics.json", "report/plots/training.png"):
        assert (out / name).is_file(), name
    # the plan comes first, with the machine and a time for every stage, then the stages report progress
    plan = result.output.index("plan on ")
    assert plan < result.output.index("simulate: started") < result.output.index("train gan: started")
    for stage in ("simulate (reference simulator, gflash)", "train the gan model", "validate: classifiers",
                  "report figures", "total"):
        assert stage in result.output[plan:]
    assert "GFLOP/s" in result.output and "120 iterations" in result.output
    assert "classifier low-level: 1/50 epochs" in result.output  # one plain line per epoch in a log
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    training = metrics["training"]
    # the report carries the untrained baseline, and 120 iterations beat it clearly: a trained
    # checkpoint (not iteration 0) is selected, with a clearly lower chi2/NDF
    assert math.isfinite(training["untrained_chi2_ndf"])
    assert training["best_iteration"] > 0 and training["iterations"] == 120
    assert training["best_chi2_ndf"] < 0.8 * training["untrained_chi2_ndf"]
    assert metrics["inputs"]["model"]["family"] == "gan" and metrics["inputs"]["model"]["chosen_by"] == "--family"
    assert "ring_ratio_worst" in {row["key"] for row in metrics["verdicts"]}  # the mean shower's rings are graded
    assert set(metrics["classifiers"]) == {"low", "high"}  # fast mode plus the classifiers
    for clf in metrics["classifiers"].values():  # the classifiers report how their training ended
        assert clf["budget_s"] > 0 and clf["epochs_run"][0] >= 1 and clf["stopped_by"][0] in ("budget", "max_epochs")
    page = (out / "report" / "report.html").read_text()
    assert "untrained" in page and "Training" in page and "classifier trainings" in page
    assert "report: " in result.output and "untrained" in result.output
    explained = result.output[result.output.index("in plain words:"):]  # the verdict explained
    assert "passed: " in explained or "failed: " in explained or "too small to judge: " in explained

    again = runner.invoke(app, ["demo", "--out", str(out)])
    assert again.exit_code == 2
    assert "already holds a demo" in again.output and "--force" in again.output


def test_demo_refuses_an_unknown_family_or_physics_before_writing_anything(tmp_path):
    for option, value, expected in (("--family", "gann", "model family"), ("--physics", "geant4", "physics")):
        result = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), "--max-iterations", "1", option, value])
        assert result.exit_code == 2, result.output
        assert expected in result.output and value in result.output
        assert not (tmp_path / "d").exists()
