"""Mean energy per ring (layer, radial bin): the rule that catches a mean shower missing energy where it matters.

Two independent reference-simulator samples pass; a model that puts 40 % of the reference's energy into one
central ring of an EM layer fails and is named; a 10 % change of a ring passes, 35 % warns; a ring that
carries almost nothing is not graded; an empty ring fails.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from caloforge.data.showers import ShowerSet
from caloforge.refsim import simulate
from caloforge.validation.evaluate import compute_evaluation
from caloforge.validation.metrics.rings import RING_MIN_SHARE, RingSums, compare_rings
from caloforge.validation.metrics.verdict import ring_verdict

ENERGIES = np.repeat([1024.0, 8192.0, 65536.0], 700)  # min(N_gen, N_ref / 2) >= 1000: graded


@pytest.fixture(scope="module")
def samples() -> tuple[ShowerSet, ShowerSet]:
    reference = simulate("ds1-photons", "photon", ENERGIES, seed=1)
    other = simulate("ds1-photons", "photon", ENERGIES, seed=2)
    return reference, other


def sums(showers: ShowerSet, chunk: int | None = None) -> RingSums:
    out = RingSums(showers.geometry)
    step = chunk or len(showers)
    for start in range(0, len(showers), step):
        out.update(showers.showers[start:start + step], showers.energies[start:start + step])
    return out


def scale_ring(showers: ShowerSet, layer_index: int, r_bin: int, factor: float) -> ShowerSet:
    g = showers.geometry
    layer = g.layers[layer_index]
    out = showers.showers.copy()
    block = out[:, g.layer_slice(layer_index)].reshape(len(showers), layer.n_alpha, layer.n_r)
    block[:, :, r_bin] *= factor
    out[:, g.layer_slice(layer_index)] = block.reshape(len(showers), -1)
    return ShowerSet(showers.energies, out, g)


def test_ring_sums_do_not_depend_on_chunks_and_match_a_direct_sum(samples):
    reference, _ = samples
    one, chunked = sums(reference), sums(reference, chunk=77)
    np.testing.assert_allclose(chunked.mean, one.mean, rtol=1e-12)
    np.testing.assert_allclose(chunked.error, one.error, rtol=1e-9)
    g = reference.geometry
    layer = g.layers[1]  # ds1-photons' layer 1: its ring 0 by hand
    block = reference.showers[:, g.layer_slice(1)].reshape(len(reference), layer.n_alpha, layer.n_r)
    ring0 = block[:, :, 0].sum(axis=1) / reference.energies
    offset = g.layers[0].n_r
    assert one.mean[offset] == pytest.approx(ring0.mean(), rel=1e-9)
    assert one.error[offset] == pytest.approx(ring0.std(ddof=1) / math.sqrt(len(ring0)), rel=1e-6)


def test_two_reference_samples_pass(samples):
    reference, other = samples
    comparison = compare_rings(sums(reference), sums(other))
    assert comparison.graded.sum() >= 10
    row = ring_verdict(comparison)
    assert row.verdict == "pass", row
    assert 0.8 < row.value < 1.25


@pytest.mark.parametrize(("factor", "verdict"), [(0.9, "pass"), (1.1, "pass"), (0.65, "warn"), (1.5, "warn"),
                                                 (0.4, "fail"), (2.5, "fail"), (0.0, "fail")])
def test_a_scaled_central_ring_is_graded_and_named(samples, factor, verdict):
    reference, other = samples
    comparison = compare_rings(sums(reference), sums(scale_ring(other, 1, 0, factor)))
    row = ring_verdict(comparison)
    assert row.verdict == verdict, row
    if verdict != "pass":
        assert "layer 1, r bin 0" in row.metric
        assert row.value == pytest.approx(factor, rel=0.1, abs=1e-12)


def test_a_ring_with_almost_no_energy_is_not_graded(samples):
    reference, other = samples
    ref_sums = sums(reference)
    share = ref_sums.mean / ref_sums.mean.sum()
    faint = int(np.argmin(np.where(share > 0, share, np.inf)))
    assert share[faint] < RING_MIN_SHARE
    layers = [i for i, layer in enumerate(reference.geometry.layers) for _ in range(layer.n_r)]
    first = {i: sum(layer.n_r for layer in reference.geometry.layers[:i]) for i in set(layers)}
    layer_index = layers[faint]
    changed = scale_ring(other, layer_index, faint - first[layer_index], 0.05)
    assert ring_verdict(compare_rings(ref_sums, sums(changed))).verdict == "pass"


def test_evaluation_reports_rings_in_the_verdicts_and_metrics_json(samples):
    reference, other = samples
    with pytest.warns(UserWarning, match="not computed"):
        result = compute_evaluation(reference, scale_ring(other, 2, 1, 0.3), mode="fast", skip=("fpd", "kpd"))
    row = next(r for r in result.verdicts if r.key == "ring_ratio_worst")
    assert row.verdict == "fail" and "layer 2, r bin 1" in row.metric
    data = json.loads(json.dumps(result.to_dict()))
    assert data["rings"]["worst"] == {"layer": 2, "r_bin": 1, "ratio": pytest.approx(0.3, rel=0.05)}
    assert len(data["rings"]["rings"]) == sum(layer.n_r for layer in reference.geometry.layers)


def test_a_ring_empty_in_the_reference_only_is_null_with_its_reason_in_metrics_json(samples):
    from caloforge.validation.missing import explain_missing

    reference, other = samples
    faint = scale_ring(reference, 0, 0, 0.0)  # layer 0, r bin 0: empty in the "reference"
    data = explain_missing(compare_rings(sums(faint), sums(other)).to_dict())
    ring = data["rings"][0]
    assert (ring["layer"], ring["r_bin"], ring["ratio"]) == (0, 0, None)
    assert ring["ratio_missing"] == "the reference's mean energy in this ring is zero"
