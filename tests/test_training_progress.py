"""Training progress: no ``inf`` before the first checkpoint, the last line agrees with the run's summary, keep-alive
lines, and a wall-clock budget that holds (the last validation fits in it)."""

from __future__ import annotations

import io
import re
import time
from types import SimpleNamespace

import pytest
import torch

from caloforge.models import GANConfig
from caloforge.runtime.progress import Progress
from caloforge.training import train
from caloforge.training.callbacks import Budget, out_of_time, status_line
from caloforge.training.settings import SelectionState
from caloforge.training.task import GenerativeTask
from synthetic import make_showers

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:the validation sample has fewer:UserWarning")]


def test_status_before_and_after_the_first_checkpoint():
    selection = SelectionState()
    task = SimpleNamespace(iteration=3, last_losses={"g": 0.5}, selection=selection)
    selection.record({"iteration": 0, "chi2_ndf": 7.0}, 7.0, 0, candidate=False)  # the untrained baseline
    assert status_line(task).endswith("best chi2/NDF not yet measured")  # type: ignore[arg-type]
    selection.record({"iteration": 10, "chi2_ndf": 3.8554}, 3.8554, 10, candidate=True)
    assert status_line(task) == "it 3  g=0.5  best chi2/NDF 3.855"  # type: ignore[arg-type]


def test_the_last_progress_line_gives_the_summary_best(tiny_geometry, tmp_path):
    data = make_showers(tiny_geometry, 1600, seed=1, energies=(500.0, 1000.0, 4000.0, 8000.0))
    config = GANConfig(noise_dim=8, generator_layers=(32, 32, 32), critic_layers=(32, 32, 32), batch_size=128,
                       critic_steps=2, lr=1e-3)
    out = io.StringIO()
    result = train(data, "gan", config, tmp_path / "run", max_iterations=25, checkpoint_every=10,
                   progress=Progress(stream=out, live=False))
    text = out.getvalue()
    assert not re.search(r"\binf\b", text), text
    bests = re.findall(r"best chi2/NDF ([0-9.]+|not yet measured)", text)
    assert bests, text
    # the final validation (iteration 25) came after the last batch: its line is there, with the summary's value
    assert bests[-1] == f"{result.ranges[0].best_chi2_ndf:.3f}", text


def test_a_fast_family_does_not_write_a_line_per_checkpoint(tiny_geometry, tmp_path):
    data = make_showers(tiny_geometry, 800, seed=1, energies=(1000.0, 4000.0))
    config = GANConfig(noise_dim=4, generator_layers=(16, 16, 16), critic_layers=(16, 16, 16), batch_size=64,
                       critic_steps=1)
    lines = {}
    for interval in (3600.0, 1e-9):
        out = io.StringIO()
        train(data, "gan", config, tmp_path / f"run{interval}", max_iterations=20, checkpoint_every=2,
              progress=Progress(stream=out, live=False, interval_s=interval))
        lines[interval] = re.findall(r"train gan: \d+/20 iterations", out.getvalue())
    assert len(lines[3600.0]) == 1  # the first checkpoint's line; then the "done" line
    assert len(lines[1e-9]) >= 10  # every checkpoint (and every update) when lines are wanted that often


def test_a_long_call_gets_keep_alive_lines_and_a_short_step_none():
    out = io.StringIO()
    progress = Progress(stream=out, live=False, interval_s=0.05)
    with progress.task("generate", keepalive=True):
        time.sleep(0.4)  # one long call: no update of its own
    with progress.heartbeat("validating"):
        time.sleep(0.4)
    text = out.getvalue()
    assert re.search(r"generate: \(\d:\d\d:\d\d so far\)", text), text
    assert re.search(r"validating \(\d:\d\d:\d\d so far\)", text), text
    quiet = io.StringIO()  # a step shorter than the interval prints nothing (a fast model validating every second)
    with Progress(stream=quiet, live=False, interval_s=3600).heartbeat("validating"):
        time.sleep(0.1)
    assert quiet.getvalue() == ""
    live = io.StringIO()  # on a terminal: the bar, its ETA capped by the budget
    with Progress(stream=live, live=True).task("clf", total=1000, unit="epochs", max_seconds=5) as task:
        task.update(1)
    assert "ETA 0:00:0" in live.getvalue(), live.getvalue()


@pytest.mark.parametrize(("now", "due", "final", "stop"), [
    (900.0, False, 1.0, False),  # 100 s left: a batch (1 s) then a validation and the final bundle (2 x 30 s) fit
    (945.0, False, 1.0, True),  # 55 s left: they no longer do
    (945.0, False, 0.0, False),  # ... unless no final evaluation follows (a range before the last)
    (920.0, False, 1.0, False),  # 80 s left: going on fits ...
    (920.0, True, 1.0, True),  # ... but not when a checkpoint is due first (30 s more): stop now, it is the last one
])
def test_the_wall_clock_stop_leaves_time_for_the_measured_validation(now, due, final, stop):
    assert out_of_time(now, 1000.0, batch_s=1.0, checkpoint_s=30.0, checkpoint_due=due,
                       final_checkpoints=final) is stop


def test_train_ends_within_its_wall_clock_budget_when_validations_are_slow(tiny_geometry, tmp_path, monkeypatch):
    # every validation takes 1 s more than the tiny model's: Lightning's max_time alone stopped the clock only
    # after the untrained model's validation and then validated once more (and the final bundle), past the budget
    evaluate = GenerativeTask.evaluate_validation

    def slow(self: GenerativeTask) -> float:
        time.sleep(1.0)
        return evaluate(self)

    monkeypatch.setattr(GenerativeTask, "evaluate_validation", slow)
    data = make_showers(tiny_geometry, 400, seed=1, energies=(1000.0, 4000.0))
    config = GANConfig(noise_dim=4, generator_layers=(16, 16, 16), critic_layers=(16, 16, 16), batch_size=32,
                       critic_steps=1)
    budget_s = 6.0
    start = time.monotonic()
    result = train(data, "gan", config, tmp_path / "run", max_minutes=budget_s / 60, checkpoint_every=25,
                   progress=False)
    wall = time.monotonic() - start
    assert not result.interrupted and result.ranges[0].iterations > 0
    # the stop came early enough for the last validation; the margin is for writing files after it and for a
    # loaded CI machine (the code before this check overran by 2.9 s here: two slow validations after the budget)
    assert wall <= budget_s + 2.5, wall
    assert wall >= budget_s - 3.5, wall  # and not long before the budget: it stops at most ~2 validations early


def test_a_resumed_run_keeps_the_measured_validation_time(tiny_geometry, tmp_path):
    # a resumed call has no untrained validation to time: the stop rule would take validations as free
    data = make_showers(tiny_geometry, 300, seed=1, energies=(1000.0, 4000.0))
    config = GANConfig(noise_dim=4, generator_layers=(16, 16, 16), critic_layers=(16, 16, 16), batch_size=32,
                       critic_steps=1)
    train(data, "gan", config, tmp_path / "run", max_iterations=10, checkpoint_every=5, progress=False)
    saved = torch.load(tmp_path / "run" / "last.ckpt", weights_only=False)["callbacks"]
    (state,) = (v for k, v in saved.items() if k.startswith("Budget"))
    assert state["checkpoint_s"] > 0
    budget = Budget(None, deadline=None)
    budget.load_state_dict(state)
    budget.on_train_start(SimpleNamespace(), SimpleNamespace(elapsed_s=1.0))  # type: ignore[arg-type]
    budget.on_train_batch_start(SimpleNamespace(), SimpleNamespace(), None, 0)  # type: ignore[arg-type]
    budget.on_train_end(SimpleNamespace(), SimpleNamespace())  # type: ignore[arg-type]  # its signal handlers back
    assert budget.checkpoint_s == state["checkpoint_s"]  # not the ~0 s between the start and the first batch
    fresh = Budget(None, deadline=None)
    fresh.on_train_start(SimpleNamespace(), SimpleNamespace(elapsed_s=0.0))  # type: ignore[arg-type]
    time.sleep(0.01)
    fresh.on_train_batch_start(SimpleNamespace(), SimpleNamespace(), None, 0)  # type: ignore[arg-type]
    fresh.on_train_end(SimpleNamespace(), SimpleNamespace())  # type: ignore[arg-type]
    assert fresh.checkpoint_s >= 0.01  # a new run measures its baseline validation
