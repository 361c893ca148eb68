"""caloforge leaderboard: every family the same way; a failing family does not stop the others; resume."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import pytest

from caloforge.campaign import leaderboard as lb
from caloforge.campaign.leaderboard import LeaderboardSettings, pareto_front, run_leaderboard
from caloforge.errors import ConfigError, OutputExistsError
from caloforge.models import FAMILIES, GAN, GANConfig, register_family
from caloforge.runtime.progress import Progress
from caloforge.training.bundle import Bundle
from caloforge.validation.metrics.classifier import ClassifierConfig
from synthetic import make_showers

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:the validation sample has fewer:UserWarning"),
              pytest.mark.filterwarnings("ignore:FPD.*:UserWarning"), pytest.mark.filterwarnings("ignore:KPD.*")]

TINY_NET = ClassifierConfig(hidden=(16,), max_epochs=2, repeats=1, precision="fp32")


class TinyGANConfig(GANConfig):
    """A GAN small enough for seconds-long tests, whatever the preset."""

    @classmethod
    def for_preset(cls, preset, particle, device="cpu"):
        return cls(noise_dim=4, generator_layers=(16, 16, 16), critic_layers=(16, 16, 16), batch_size=64,
                   critic_steps=1)


class TinyGAN(GAN):
    config_class = TinyGANConfig


class Broken(TinyGAN):
    """A family whose training step raises, as a bug in a new family would."""

    def train_step(self, next_batch, optimizers, backward, generator=None):
        raise RuntimeError("a bug in this family")


@pytest.fixture
def families():
    register_family("tiny-gan", TinyGAN)
    register_family("broken", Broken)
    yield
    FAMILIES.pop("tiny-gan")
    FAMILIES.pop("broken")


def test_tiny_leaderboard_reports_a_failing_family_and_resumes_without_retraining(tiny_geometry, tmp_path,
                                                                                 families, monkeypatch):
    data = make_showers(tiny_geometry, 600, seed=1, energies=(1000.0, 4000.0))
    reference = make_showers(tiny_geometry, 300, seed=2, energies=(1000.0, 4000.0))
    settings = LeaderboardSettings(families=("broken", "tiny-gan"), iterations_per_model=20, classifier_minutes=0.2,
                                   timing_batch=200)
    generate = Bundle.generate

    def slow(self, *args, **kwargs):  # each generation one long call, as for a real model and a large sample
        time.sleep(0.2)
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(Bundle, "generate", slow)
    out = io.StringIO()
    board = run_leaderboard(data, reference, tmp_path / "lb", settings, classifier=TINY_NET,
                            progress=Progress(stream=out, live=False, interval_s=0.05))
    log = out.getvalue()  # no silent stretch: lines while the evaluation's sample is generated and while timing
    assert re.search(r"tiny-gan: generating 300 showers for the evaluation: \(\d:\d\d:\d\d so far\)", log), log
    assert re.search(r"tiny-gan: timing generation at batch 200: \d/3 batches .*so far\)", log), log
    assert re.search(r"tiny-gan: timing generation at batch 200: done \(.*3/3 batches", log), log
    entries = {e["family"]: e for e in board.entries}
    assert entries["broken"]["status"] == "failed" and "a bug in this family" in entries["broken"]["error"]
    ok = entries["tiny-gan"]
    assert ok["status"] == "ok" and ok["iterations"] == 20
    assert 0.5 <= ok["auc_low"] <= 1.0 and ok["us_per_shower"] > 0 and ok["parameters"] > 1000
    assert ok["chi2_ndf"] > 0 and (tmp_path / "lb" / "tiny-gan" / "report" / "report.html").is_file()
    saved = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    assert saved["schema"] == "caloforge.leaderboard/1" and saved["settings"]["iterations_per_model"] == 20
    assert saved["classifier"]["hidden"] == [16] and saved["elapsed_s"] > 0 and "GFLOP/s" in saved["machine"]
    markdown = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "| tiny-gan |" in markdown and "failed: RuntimeError" in markdown and "20 iterations" in markdown
    page = (tmp_path / "lb" / "leaderboard.html").read_text()
    assert "Pareto" in page or "data:image/png" in page

    with pytest.raises(OutputExistsError, match="--resume"):
        run_leaderboard(data, reference, tmp_path / "lb", settings, classifier=TINY_NET)
    trained = []
    original = lb.run_training
    monkeypatch.setattr(lb, "run_training", lambda *a, **k: trained.append(a[1].family) or original(*a, **k))
    again = run_leaderboard(data, reference, tmp_path / "lb", settings, classifier=TINY_NET, resume=True)
    assert trained == ["broken"]  # the finished family is not trained again; the failed one is retried
    assert {e["family"]: e for e in again.entries}["tiny-gan"] == ok
    # where the time went, per row and in all; a resume adds its time to the first call's, keeps its machine
    assert set(lb.STAGES) <= set(ok) and all(ok[key] >= 0 for key in lb.STAGES) and ok["machine"] == board.machine
    resumed = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    assert resumed["calls"] == 2 and resumed["total_elapsed_s"] >= saved["total_elapsed_s"] + resumed["elapsed_s"] - 0.2
    assert set(resumed["minutes_by_stage"]) == {"training", "generation", "evaluation", "timing", "other"}
    assert "over 2 calls" in (tmp_path / "lb" / "leaderboard.md").read_text()


def _board(entries, **settings):
    return lb.Leaderboard(tuple(entries), LeaderboardSettings(families=("gan",), **settings), "machine A", 90.0,
                          Path("lb"), earlier_s=30.0, calls=2)


def test_the_table_gives_errors_flags_budget_stopped_classifiers_and_its_time():
    from caloforge.campaign.leaderboard_report import render_markdown

    entry = {"family": "vae", "status": "ok", "chi2_ndf": 1.46, "auc_low": 0.5412, "auc_low_error": 0.0042,
             "auc_high": 0.94, "auc_high_error": float("nan"), "auc_high_budget_stopped": True, "fpd_e3": 12.5,
             "fpd_error_e3": 0.5, "kpd_e3": 0.1, "kpd_error_e3": 0.02, "us_per_shower": 30.0, "parameters": 12345,
             "iterations": 500, "verdict": "fail", "train_minutes": 1.0, "generate_minutes": 0.25,
             "evaluate_minutes": 0.5, "timing_minutes": 0.05, "machine": "machine B"}
    text = render_markdown(_board([entry, {"family": "gan", "status": "failed", "error": "boom"}],
                                  minutes_per_model=1.0))
    row = next(line for line in text.splitlines() if line.startswith("| vae |"))
    assert "| 0.541 ± 0.004 |" in row and "| 0.940 † |" in row and "| 12.5 ± 0.5 |" in row
    assert "† the classifier stopped at its wall-clock budget" in text
    assert "trained for 1 minute (" in text and "1 minutes" not in text
    # 30 s earlier + 90 s now = 2 minutes: training 1, generation 0.25, evaluation 0.5, timing 0.05, other 0.2
    assert "took 2.0 minutes over 2 calls (--resume; this one 1.5) (training 1.0, generation 0.2, evaluation 0.5, " \
           "timing 0.1, other 0.2)" in text
    assert "Machines: vae: machine B; gan: machine A." in text
    board = _board([entry], iterations_per_model=1)
    assert "trained for 1 iteration (" in render_markdown(board) and "Machine: machine B." in render_markdown(board)


def test_bad_leaderboards_fail_before_anything_runs(tiny_geometry, tmp_path):
    data = make_showers(tiny_geometry, 100, seed=1)
    with pytest.raises(ConfigError, match="expected a model family"):
        run_leaderboard(data, data, tmp_path / "a", LeaderboardSettings(families=("gan", "transformer"),
                                                                        iterations_per_model=2))
    with pytest.raises(ConfigError, match="budget"):
        run_leaderboard(data, data, tmp_path / "b", LeaderboardSettings(families=("gan",)))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_pareto_front_keeps_only_undominated_points():
    points = [(2.0, 0.9), (1.0, 0.95), (50.0, 0.6), (10.0, 0.7), (20.0, 0.8), (5.0, float("nan"))]
    assert pareto_front(points) == [1, 0, 3, 2]


def test_the_pareto_figure_shows_both_aucs():
    from caloforge.campaign.leaderboard_report import pareto_figure

    vae = {"family": "vae", "status": "ok", "us_per_shower": 17.0, "auc_low": 0.54, "auc_low_error": 0.01,
           "auc_high": 0.94, "auc_high_error": 0.01, "auc_high_budget_stopped": True}
    baseline = {"family": "parametric", "status": "ok", "us_per_shower": 61.0, "auc_low": 0.59, "auc_high": 0.53}
    fig = pareto_figure(_board([vae, baseline], minutes_per_model=1.0))
    low, high = fig.axes
    assert (low.get_title(), high.get_title()) == ("low-level classifier", "high-level classifier")
    # on the low-level AUC the VAE is on the front alone (faster and lower); on the high-level one both are
    fronts = {ax.get_title(): next(ln for ln in ax.get_lines() if ln.get_label() == "Pareto front")
              for ax in (low, high)}
    front = {title: len(line.get_xdata()) for title, line in fronts.items()}
    assert front == {"low-level classifier": 1, "high-level classifier": 2}
    assert "vae †" in [t.get_text() for t in high.texts] and "vae" in [t.get_text() for t in low.texts]
