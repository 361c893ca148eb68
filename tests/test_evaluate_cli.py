"""``caloforge evaluate``: runs end to end, warns on different energy spectra, errors in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from caloforge.cli import app
from caloforge.data.io import write
from caloforge.refsim import simulate
from caloforge.validation.missing import FALLBACK, format_value


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    energies = np.repeat(2.0 ** np.arange(10, 13), 200)
    write(base / "ref.h5", simulate("ds1-photons", "photon", energies, seed=1))
    write(base / "gen.h5", simulate("ds1-photons", "photon", energies, seed=2))
    skewed = np.repeat(2.0 ** np.arange(10, 13), [500, 50, 50])
    write(base / "skewed.h5", simulate("ds1-photons", "photon", skewed, seed=3))
    write(base / "pions.h5", simulate("ds1-pions", "pion", energies[:50], seed=4))
    write(base / "tiny.h5", simulate("ds1-photons", "photon", energies[:1], seed=5))
    return base


def run(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.mark.slow
def test_full_mode_end_to_end_warns_and_refuses_to_overwrite(files, tmp_path):
    # one report for the whole file keeps the suite fast: full mode with a small high-level classifier,
    # on a generated sample whose energy spectrum differs (the command must warn)
    out = tmp_path / "report"
    result = run("evaluate", "-r", str(files / "ref.h5"), "-i", str(files / "skewed.h5"), "--out", str(out),
                 "--mode", "full", "--classifier", "high", "--classifier-epochs", "2", "--classifier-precision",
                 "fp32", "--device", "cpu", "--seed", "1", "--classifier-minutes", "5", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "incident-energy distributions" in result.output
    assert "verdict" in result.output and "report.html" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == "full" and metrics["seed"] == 1 and set(metrics["classifiers"]) == {"high"}
    high = metrics["classifiers"]["high"]
    # the samples differ only in their energy spectrum (600 vs 500/50/50 showers at 1, 2, 4 GeV), which the
    # high-level classifier sees through its log10(E_inc) input: the best possible AUC is 0.75, and even
    # two epochs (two optimiser steps on 720 rows) see it beyond two standard errors
    assert high["auc"] - 2 * high["auc_error"] > 0.5 and high["auc"] < 0.77
    assert high["epochs_run"] == [2] and high["stopped_by"] == ["max_epochs"] and not high["budget_exhausted"]
    assert high["budget_s"] > 0 and high["precision"] == "fp32" and high["patience"] is None
    assert (out / "report.html").stat().st_size > 10_000
    again = run("evaluate", "-r", str(files / "ref.h5"), "-i", str(files / "gen.h5"), "--out", str(out))
    assert again.exit_code == 2 and "--force" in again.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-i", "pions.h5"], "expected"),
        (["-i", "gen.h5", "--mode", "full", "--classifier", "mid"], "expected --classifier among"),
        (["-i", "tiny.h5"], "expected at least 20 generated showers"),
        (["-i", "gen.h5", "--classifier-minutes", "-1"], "expected --classifier-minutes > 0"),
        (["-i", "gen.h5", "--seed", "-1"], "expected a seed"),
        (["-i", "gen.h5", "--skip", "fpd,cls"], "expected metrics to skip among"),
    ],
    ids=["geometry-mismatch", "bad-classifier", "too-few-showers", "bad-budget", "bad-seed", "bad-skip"],
)
def test_errors_are_one_line(files, tmp_path, extra, message):
    args = ["evaluate", "-r", str(files / "ref.h5"), "--out", str(tmp_path / "e")]
    args += [str(files / a) if a.endswith(".h5") else a for a in extra]
    result = run(*args)
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]  # after at most a progress line saying what is being read
    assert last.startswith("caloforge: error:") and message in last
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 2
    assert not (tmp_path / "e").exists()  # inputs are checked before anything is created


def test_choices_are_listed_and_calochallenge_habits_are_accepted(files, tmp_path, monkeypatch):
    from caloforge.data import io

    monkeypatch.setattr(io, "read", None)  # the files are streamed (ShowerFile), never read whole
    bad = run("evaluate", "-r", str(files / "ref.h5"), "-i", str(files / "gen.h5"), "--mode", "slow")
    assert bad.exit_code == 2 and "fast" in bad.output and "full" in bad.output  # the choices, in the message
    out = tmp_path / "official"
    # the CaloChallenge evaluate.py's own options: --input-file, --reference-file, -d, --output-dir, -m hist
    result = run("evaluate", "--input-file", str(files / "gen.h5"), "--reference-file", str(files / "ref.h5"),
                 "-d", "1-photons", "--output-dir", str(out), "-m", "hist", "--threads", "1")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == "fast" and metrics["geometry"]["name"] == "ds1-photons"
    assert metrics["inputs"]["generated"]["path"].endswith("gen.h5")
    assert len(metrics["inputs"]["reference"]["sha256"]) == 64
    assert_nulls_explained(metrics)
    # the terminal prints the numbers metrics.json holds (n/a where it holds null)
    for row in metrics["verdicts"]:
        shown = format_value(row["value"]) if row["value"] is not None else "n/a"
        assert shown in result.output, (row["key"], shown)


def assert_nulls_explained(metrics) -> None:
    """Every null in metrics.json has its specific reason beside it (never the generic fallback)."""
    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if value is None:
                    reason = node.get(f"{key}_missing")
                    assert reason and reason != FALLBACK, f"{path}/{key} is null without a reason"
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(metrics, "")


@pytest.mark.slow
def test_a_failed_report_leaves_nothing_and_the_rerun_works(files, tmp_path, monkeypatch):
    import errno

    from caloforge.validation import plots

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "report"
    with monkeypatch.context() as patch:
        patch.setattr(plots, "plot_correlations", full_disk)  # a figure late in the report
        # one thread: figures drawn in this process, where the patch applies (--threads N spawns N drawing processes)
        failed = run("evaluate", "-r", str(files / "ref.h5"), "-i", str(files / "gen.h5"), "--out", str(out),
                     "--threads", "1")
    assert failed.exit_code == 2 and "no space left" in failed.output and "Traceback" not in failed.output
    assert not out.exists()  # the directory evaluate created: no partial plots, no temporary, not even empty
    again = run("evaluate", "-r", str(files / "ref.h5"), "-i", str(files / "gen.h5"), "--out", str(out))
    assert again.exit_code == 0, again.output
    assert (out / "plots" / "layer_correlations.png").is_file() and (out / "metrics.json").is_file()
