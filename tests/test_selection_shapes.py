"""Checkpoint selection that sees shapes (issue 21): the normalised Fréchet distance, the selection setting, resume."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from caloforge.data.showers import ShowerSet
from caloforge.errors import ConfigError
from caloforge.models import GANConfig
from caloforge.refsim import simulate
from caloforge.training import train, validation_chi2
from caloforge.training.bundle import load
from caloforge.training.settings import SelectionState, TrainingSettings
from caloforge.training.shapes import ShapeReference, selection_score, shower_columns
from caloforge.validation.features import readout_threshold
from synthetic import make_showers

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:the validation sample has fewer:UserWarning")]

TINY = GANConfig(noise_dim=8, generator_layers=(32, 32, 32), critic_layers=(32, 32, 32), batch_size=128,
                 critic_steps=2, lr=1e-3)
ENERGIES = (500.0, 1000.0, 4000.0, 8000.0)


def _outside_in(showers: ShowerSet) -> ShowerSet:
    """The same voxel values with every layer's radial bins in reverse order: wide showers, the same response."""
    out = showers.showers.copy()
    for i, layer in enumerate(showers.geometry.layers):
        cut = showers.geometry.layer_slice(i)
        block = out[:, cut].reshape(len(out), layer.n_alpha, layer.n_r)
        out[:, cut] = block[:, :, ::-1].reshape(len(out), -1)
    return ShowerSet(showers.energies, out, showers.geometry)


@pytest.fixture(scope="module")
def photons():
    energies = np.repeat(2.0 ** np.arange(10, 14), 300)
    return simulate("ds1-photons", "photon", energies, seed=1), simulate("ds1-photons", "photon", energies, seed=2)


def test_right_response_wrong_shapes_is_ranked_worse_by_the_shape_scores_only(photons):
    validation, generated = photons
    threshold = readout_threshold(validation.geometry)
    reference = ShapeReference.from_columns(shower_columns(validation, threshold), threshold)
    assert reference.distance(reference.accumulator().add_showers(validation)).fd == pytest.approx(0, abs=1e-9)
    wide = _outside_in(generated)
    assert shower_columns(wide, threshold)[:, -5:].mean() > shower_columns(generated, threshold)[:, -5:].mean()
    good = reference.distance(reference.accumulator().add_showers(generated))
    bad = reference.distance(reference.accumulator().add_showers(wide))
    assert 0.1 < good.fd_norm < 3  # an independent sample of the same physics: the halves' distance, about
    assert bad.fd_norm > 100 * good.fd_norm
    chi2_good, chi2_bad = (validation_chi2(validation, s).chi2_ndf for s in (generated, wide))
    assert chi2_good == chi2_bad  # the same voxel values: the response cannot tell them apart
    assert selection_score("chi2", chi2_bad, bad.fd_norm) == selection_score("chi2", chi2_good, good.fd_norm)
    for selection in ("fpd", "combined"):
        assert selection_score(selection, chi2_bad, bad.fd_norm) > selection_score(selection, chi2_good, good.fd_norm)


def test_a_better_response_with_worse_shapes_loses_under_combined(photons):
    """The constructed two-checkpoint case: checkpoint 2 improves the response but ruins the shapes."""
    validation, generated = photons
    threshold = readout_threshold(validation.geometry)
    reference = ShapeReference.from_columns(shower_columns(validation, threshold), threshold)
    first = ShowerSet(generated.energies, generated.showers * np.float32(1.15), generated.geometry)  # response off
    second = _outside_in(generated)  # the right response, wrong shapes
    chi2 = [validation_chi2(validation, s).chi2_ndf for s in (first, second)]
    fd = [reference.distance(reference.accumulator().add_showers(s)).fd_norm for s in (first, second)]
    assert chi2[1] < chi2[0]  # chi2 prefers the second
    for selection, chosen in (("chi2", 1), ("fpd", 0), ("combined", 0)):
        state = SelectionState()
        for k in range(2):
            score = selection_score(selection, chi2[k], fd[k])
            state.record({"iteration": k + 1, "chi2_ndf": chi2[k], "score": score}, chi2[k], k + 1,
                         candidate=score < state.best_score, score=score, fd_norm=fd[k])
        assert state.best_iteration == chosen + 1, selection
        assert state.best_chi2_ndf == chi2[chosen]  # the selected checkpoint's chi2, not the lowest


def test_streamed_chunks_give_the_distance_of_the_whole_sample(photons):
    validation, generated = photons
    threshold = readout_threshold(validation.geometry)
    reference = ShapeReference.from_columns(shower_columns(validation, threshold), threshold)
    whole = reference.distance(reference.accumulator().add_showers(generated))
    chunks = reference.accumulator()
    for start in range(0, len(generated), 250):
        chunks.add_showers(generated[start:start + 250])
    assert reference.distance(chunks).fd == pytest.approx(whole.fd, rel=1e-9)
    assert reference.distance(reference.accumulator().add_showers(generated[:1])).fd_norm == math.inf


def _log(run_dir):
    with (run_dir / "log.csv").open() as f:
        return list(csv.DictReader(f))


def test_fpd_selection_picks_the_lowest_distance_and_keeps_the_chi2_of_that_checkpoint(tiny_geometry, tmp_path):
    data = make_showers(tiny_geometry, 1600, seed=1, energies=ENERGIES)
    result = train(data, "gan", TINY, tmp_path / "run", max_iterations=60, checkpoint_every=10, progress=False,
                   selection="fpd")
    rows = _log(tmp_path / "run")
    assert list(rows[0])[:8] == ["iteration", "elapsed_s", "chi2_ndf", "best_chi2_ndf", "fd", "fd_norm", "score",
                                 "best_score"]
    trained = rows[1:]
    assert all(float(r["score"]) == float(r["fd_norm"]) > 0 for r in rows)
    best = min(trained, key=lambda r: float(r["fd_norm"]))
    selected = result.ranges[0]
    assert selected.best_iteration == int(best["iteration"])
    assert selected.best_chi2_ndf == pytest.approx(float(best["chi2_ndf"]))  # its chi2, not the lowest chi2
    assert float(rows[-1]["best_score"]) == pytest.approx(float(best["fd_norm"]))
    info = load(result.bundle_dir).info
    assert info["validation"]["selection"] == "fpd"
    assert info["validation"]["iteration"] == selected.best_iteration
    assert json.loads((tmp_path / "run" / "run.json").read_text())["settings"]["selection"] == "fpd"


def test_selection_round_trips_through_resume(tiny_geometry, tmp_path):
    data = make_showers(tiny_geometry, 1600, seed=1, energies=ENERGIES)
    whole = train(data, "gan", TINY, tmp_path / "a", max_iterations=40, checkpoint_every=10, progress=False,
                  selection="combined")
    train(data, "gan", TINY, tmp_path / "b", max_iterations=20, checkpoint_every=10, progress=False,
          selection="combined")
    with pytest.raises(ConfigError, match=r"expected the selection of the run in .* \('combined'\) but got 'chi2'"):
        train(data, "gan", None, tmp_path / "b", max_iterations=40, progress=False, resume=True, selection="chi2")
    resumed = train(data, "gan", None, tmp_path / "b", max_iterations=40, progress=False, resume=True)
    drop = ("elapsed_s",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in _log(tmp_path / "a")] == \
        [{k: v for k, v in r.items() if k not in drop} for r in _log(tmp_path / "b")]
    assert resumed.ranges[0].best_iteration == whole.ranges[0].best_iteration
    assert resumed.ranges[0].best_chi2_ndf == whole.ranges[0].best_chi2_ndf
    for row in _log(tmp_path / "b"):
        assert float(row["score"]) == pytest.approx(math.sqrt(float(row["chi2_ndf"]) * float(row["fd_norm"])))


def test_bad_selection_values_are_one_line_errors(tiny_geometry, tmp_path):
    data = make_showers(tiny_geometry, 200, seed=1, energies=ENERGIES)
    with pytest.raises(ConfigError) as err:
        train(data, "gan", TINY, tmp_path / "run", max_iterations=10, progress=False, selection="fdp")  # type: ignore[arg-type]
    assert str(err.value) == "expected selection in ['chi2', 'fpd', 'combined'] but got 'fdp', in TrainingSettings"
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=r"^expected selection in \['chi2', 'fpd', 'combined'\] but got 3, in cfg$"):
        TrainingSettings.from_dict({"selection": 3}, where="cfg")


@pytest.mark.filterwarnings("ignore:[FK]PD not computed:UserWarning")
def test_the_evaluation_names_the_selected_checkpoint_not_the_lowest_chi2(photons):
    import dataclasses

    from caloforge.validation.distance_stage import DistanceConfig
    from caloforge.validation.evaluate import compute_evaluation

    validation, generated = photons
    result = compute_evaluation(validation, generated, mode="fast", with_prdc=False,
                                distances=DistanceConfig(skip=frozenset({"fpd", "kpd"})))
    history = ({"iteration": 0, "chi2_ndf": 9.0, "score": 1.0}, {"iteration": 10, "chi2_ndf": 2.0, "score": 8.0},
               {"iteration": 20, "chi2_ndf": 3.0, "score": 4.0})
    training = dataclasses.replace(result, training_history=history).training
    assert training is not None
    assert (training["best_iteration"], training["best_chi2_ndf"], training["untrained_chi2_ndf"]) == (20, 3.0, 9.0)
    old = tuple({k: v for k, v in row.items() if k != "score"} for row in history)  # a log without scores
    assert dataclasses.replace(result, training_history=old).training["best_iteration"] == 10  # type: ignore[index]


def test_the_leaderboard_passes_the_selection_on():
    from caloforge.campaign.leaderboard import LeaderboardSettings

    assert LeaderboardSettings(families=("gan",)).selection is None  # each family's default
    assert LeaderboardSettings.from_dict({"families": ["gan"], "selection": "fpd"}).selection == "fpd"
    with pytest.raises(ConfigError, match=r"^expected selection in \['chi2', 'fpd', 'combined'\] but got 'x'"):
        LeaderboardSettings.from_dict({"families": ["gan"], "selection": "x"})
