"""Training progress: no ``inf`` before the first checkpoint, and the last line agrees with the run's summary."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest

from caloforge.models import GANConfig
from caloforge.runtime.progress import Progress
from caloforge.training import train
from caloforge.training.callbacks import status_line
from caloforge.training.settings import SelectionState
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
