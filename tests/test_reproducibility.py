"""Same seeds, same numbers: a tiny training, generation and evaluation against values written down.

The values were computed before the package was reorganised into one folder per stage, and the
log.csv values before training moved onto Lightning's validation loop, ModelCheckpoint, Timer and
resume (commit 8857b28): a refactoring that changes a number, a log row or the selected
checkpoint for the same seed fails here. Tolerances allow for last-bit differences of floating
point between CPUs (vector units sum in different orders), not for a different computation.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from caloforge.models import GANConfig
from caloforge.refsim import simulate
from caloforge.training import train
from caloforge.training.bundle import load
from caloforge.validation.evaluate import compute_evaluation
from synthetic import make_showers

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = GANConfig(noise_dim=8, generator_layers=(32, 32, 32), critic_layers=(32, 32, 32), batch_size=128,
                 critic_steps=2, lr=1e-3)


@pytest.mark.filterwarnings("ignore:the validation sample has fewer:UserWarning")
def test_training_and_generation_give_the_recorded_numbers(tiny_geometry, tmp_path):
    data = make_showers(tiny_geometry, 1200, seed=1, energies=(500.0, 1000.0, 4000.0, 8000.0))
    result = train(data, "gan", TINY, tmp_path / "run", max_iterations=20, checkpoint_every=10, progress=False,
                   seed=3)
    bundle = load(result.bundle_dir)
    history = [(row["iteration"], row["chi2_ndf"]) for row in bundle.info["history"]]
    assert [it for it, _ in history] == [0, 10, 20]
    np.testing.assert_allclose([c for _, c in history], [5.804064266328079, 4.963973942240347, 5.3708528594398155],
                               rtol=1e-4)
    assert result.ranges[0].best_iteration == 10
    with (tmp_path / "run" / "log.csv").open() as f:  # the log a user reads: the same columns and numbers
        log = list(csv.DictReader(f))
    assert list(log[0]) == ["iteration", "elapsed_s", "chi2_ndf", "best_chi2_ndf", "critic", "generator",
                            "w_distance", "gp"]
    assert [float(r["best_chi2_ndf"]) for r in log] == pytest.approx([5.804064266328079, 4.963973942240347,
                                                                      4.963973942240347], rel=1e-4)
    losses = [[float(r[k]) for k in ("critic", "generator", "w_distance", "gp")] for r in log[1:]]
    np.testing.assert_allclose(losses, [[0.5383293628692627, 0.1478606015443802, 0.0950440913438797,
                                         0.2111244797706604],
                                        [-0.1512008160352707, 0.4126831889152527, 0.26084980368614197,
                                         0.03654966130852699]], rtol=1e-3, atol=1e-4)
    assert all(r["critic"] == "nan" for r in log[:1])  # the untrained row has no losses yet
    generated = bundle.generate([500.0, 1000.0, 4000.0, 8000.0] * 2, device="cpu", seed=7)
    np.testing.assert_allclose(
        generated.showers.sum(axis=1),
        [2613.8251953125, 789.8682861328125, 20840.421875, 19892.275390625, 177.18304443359375, 4316.982421875,
         5099.84326171875, 5831.06640625], rtol=1e-3)


def test_evaluation_gives_the_recorded_numbers():
    energies = np.repeat(2.0 ** np.arange(10, 13), 300)
    reference = simulate("ds1-photons", "photon", energies, seed=1)
    other = simulate("ds1-photons", "photon", energies, seed=2)
    result = compute_evaluation(reference, other, mode="fast", seed=0, with_prdc=False)
    assert result.chi2.chi2_ndf == pytest.approx(0.89209488827309, rel=1e-6)
    assert result.fpd.value == pytest.approx(0.011001478192354756, rel=1e-4)
    assert result.kpd.value == pytest.approx(0.0025288361031274853, rel=1e-4)
    assert max(h.separation for h in result.histograms) == pytest.approx(0.4423049636952946, rel=1e-6)
