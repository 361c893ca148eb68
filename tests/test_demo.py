"""caloforge demo end to end on a tiny budget (the real demo runs with the defaults, see docs/results.md)."""

from __future__ import annotations

import json
import math

import torch
from typer.testing import CliRunner

from caloforge.cli import app

runner = CliRunner()


def test_demo_end_to_end_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "demo"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread is fastest and robust to a loaded machine
    try:
        result = runner.invoke(app, ["demo", "--out", str(out), "--minutes", "0.15", "--n-train", "4000",
                                     "--n-eval", "600", "--device", "cpu"])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    for name in ("train.h5", "eval.h5", "generated.h5", "run/bundle/bundle.json", "run/log.csv",
                 "report/report.html", "report/metrics.json", "report/plots/training.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    training = metrics["training"]
    # the report carries the untrained baseline, and even ten seconds of training beat it: a trained
    # checkpoint (not iteration 0) is selected, with a clearly lower chi2/NDF
    assert math.isfinite(training["untrained_chi2_ndf"])
    assert training["best_iteration"] > 0
    assert training["best_chi2_ndf"] < 0.8 * training["untrained_chi2_ndf"]
    assert training["iterations"] >= training["best_iteration"]
    assert set(metrics["classifiers"]) == {"low", "high"}  # fast mode plus the classifiers
    page = (out / "report" / "report.html").read_text()
    assert "untrained" in page and "Training" in page
    assert "report: " in result.output and "untrained" in result.output

    again = runner.invoke(app, ["demo", "--out", str(out)])
    assert again.exit_code == 2
    assert "already holds a demo" in again.output and "--force" in again.output
