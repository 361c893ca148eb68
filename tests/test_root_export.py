"""ROOT export: every TH1D has a title and axis titles with units, and holds the report's counts."""

from __future__ import annotations

import numpy as np
import pytest

from caloforge.validation.features import compute_features
from caloforge.validation.metrics import feature_histograms
from caloforge.validation.root_export import histogram_titles, latex, write_root
from synthetic import make_showers

uproot = pytest.importorskip("uproot")


def test_every_histogram_is_titled_with_units(tiny_geometry, tmp_path):
    ref = compute_features(make_showers(tiny_geometry, 300, seed=1))
    gen = compute_features(make_showers(tiny_geometry, 300, seed=2))
    hists = feature_histograms(ref, gen)
    path = tmp_path / "h.root"
    assert write_root(path, hists, {"generated": "gan"})
    with uproot.open(path) as file:
        names = {key.split(";")[0] for key in file.keys(recursive=True, cycle=True) if "/" in key}
        assert names == {f"{h.name}/{s}" for h in hists for s in ("reference", "generated")}
        for h in hists:
            for sample, counts in (("reference", h.reference), ("generated", h.generated)):
                th1 = file[f"{h.name}/{sample}"]
                assert th1.classname == "TH1D"
                got, edges = th1.to_numpy()
                np.testing.assert_array_equal(got, counts)
                np.testing.assert_allclose(edges, h.edges)  # log bins too (variable-width axis)
                title, x_title = th1.member("fTitle"), th1.member("fXaxis").member("fTitle")
                assert title.endswith("(gan)" if sample == "generated" else "(reference)"), title
                assert len(title) > len(sample) + 5  # says the feature, not only the sample
                assert "$" not in x_title and "\\" not in x_title  # TLatex, not matplotlib's mathtext
                assert x_title.endswith(("[MeV]", "[mm]", "[1]")), (h.name, x_title)  # a unit on every x axis
                assert th1.member("fYaxis").member("fTitle") in ("showers", "voxels")
                assert th1.member("fEntries") == counts.sum()
        layer = next(h for h in hists if h.family == "e_layer")
        assert file[f"{layer.name}/reference"].member("fTitle") == f"energy in layer {layer.layer} (reference)"
        assert file[f"{layer.name}/reference"].member("fXaxis").member("fTitle") == "E_{layer} [MeV]"


def test_titles_of_the_per_energy_response_and_greek_letters():
    assert latex(r"width in $\eta$ [mm]") == "width in #eta [mm]"
    hist = next(iter(feature_histograms(*[compute_features(make_showers(_geometry(), 50, seed=s)) for s in (1, 2)])))
    per_energy = type(hist)("response_E1.638e+04", "response_per_energy", None, hist.label, hist.edges,
                            hist.reference, hist.generated)
    assert histogram_titles(per_energy, "vae") == ("total-energy response at E_{inc} = 16.4 GeV (vae)",
                                                   "E_{tot}/E_{inc} [1]", "showers")


def _geometry():
    from caloforge.data.geometry import Geometry, Layer

    return Geometry((Layer(0, (0.0, 1.0, 2.0), 2), Layer(1, (0.0, 2.0, 4.0), 2)), name="two-layers")
