"""Geometry: presets against the official XML files, voxel order, centres, XML errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from caloforge.data.geometry import Geometry, Layer
from caloforge.data.presets import PRESETS, matching_presets, resolve_geometry
from caloforge.errors import GeometryError, GeometryMismatchError

OFFICIAL = {
    "ds1-photons": ("binning_dataset_1_photons.xml", 368),
    "ds1-pions": ("binning_dataset_1_pions.xml", 533),
    "ds2": ("binning_dataset_2.xml", 6480),
    "ds3": ("binning_dataset_3.xml", 40500),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_preset_equals_official_xml(name: str, official_xml_dir: Path) -> None:
    filename, n_voxels = OFFICIAL[name]
    from_file = Geometry.from_xml(official_xml_dir / filename)
    preset = Geometry.preset(name)
    assert preset.n_voxels == n_voxels
    assert from_file == preset
    assert from_file.hash == preset.hash
    assert from_file.name == name  # an official file is recognised as its preset
    # edges equal to the last bit, not just approximately
    for a, b in zip(from_file.layers, preset.layers, strict=True):
        assert a.r_edges == b.r_edges and a.n_alpha == b.n_alpha and a.id == b.id


def test_official_binning_files_live_in_the_repository(official_xml_dir: Path) -> None:
    # CI checks out only this repository: the files must be inside it, never skipped for lack of them
    tests_dir = Path(__file__).resolve().parent
    assert official_xml_dir.resolve().is_relative_to(tests_dir)
    assert sorted(p.name for p in official_xml_dir.glob("*.xml")) == sorted(f for f, _ in OFFICIAL.values())


def test_ds1_layer_ids_skip_empty_layers(official_xml_dir: Path) -> None:
    g = Geometry.from_xml(official_xml_dir / "binning_dataset_1_pions.xml", particle="pion")
    assert g.layer_ids == (0, 1, 2, 3, 12, 13, 14)
    assert g.alpha_layers == (1, 2, 4, 5)
    assert g.particle == "pion"


def test_voxel_order_round_trip(tiny_geometry: Geometry) -> None:
    flat = np.arange(2 * tiny_geometry.n_voxels, dtype=np.float32).reshape(2, -1)
    layers = tiny_geometry.split_layers(flat)
    assert [a.shape for a in layers] == [(2, 2, 3), (2, 1, 2)]
    # r is fastest, then alpha, then layer: voxel 4 of layer 0 is alpha bin 1, r bin 1
    assert layers[0][0, 1, 1] == flat[0, 4]
    assert layers[1][1, 0, 1] == flat[1, 7]
    np.testing.assert_array_equal(tiny_geometry.join_layers(layers), flat)


def test_voxel_centres_follow_the_calochallenge_helper(tiny_geometry: Geometry) -> None:
    # layer 0: r mid-points 0.5, 1.5, 3; alpha centres -pi/2, +pi/2 (bins over [-pi, pi])
    np.testing.assert_allclose(tiny_geometry.voxel_r[:6], [0.5, 1.5, 3.0] * 2)
    np.testing.assert_allclose(tiny_geometry.voxel_alpha[:6], [-math.pi / 2] * 3 + [math.pi / 2] * 3)
    np.testing.assert_allclose(tiny_geometry.voxel_eta[:6], 0.0, atol=1e-12)
    np.testing.assert_allclose(tiny_geometry.voxel_phi[:6], [-0.5, -1.5, -3.0, 0.5, 1.5, 3.0])
    # a layer with one alpha bin is one bin centred at alpha = 0: eta = r, phi = 0
    np.testing.assert_allclose(tiny_geometry.voxel_eta[6:], [1.0, 3.5])
    np.testing.assert_allclose(tiny_geometry.voxel_phi[6:], 0.0)
    assert tiny_geometry.voxel_layer.tolist() == [0] * 6 + [1] * 2


def test_ds2_alpha_centres() -> None:
    g = PRESETS["ds2"]
    alphas = np.unique(g.voxel_alpha[g.layer_slice(0)])
    np.testing.assert_allclose(alphas, -math.pi + (np.arange(16) + 0.5) * 2 * math.pi / 16)


def test_hash_is_stable_and_name_independent(tiny_geometry: Geometry) -> None:
    renamed = Geometry(tiny_geometry.layers, name="other")
    assert renamed == tiny_geometry and renamed.hash == tiny_geometry.hash
    moved = Geometry((Layer(0, (0.0, 1.0, 2.0, 4.5), 2), tiny_geometry.layers[1]))
    assert moved != tiny_geometry and moved.hash != tiny_geometry.hash
    assert Geometry.from_dict(tiny_geometry.to_dict()) == tiny_geometry
    # the hash of a preset is fixed: bundles and files written today must match tomorrow
    assert PRESETS["ds1-photons"].hash == "a1959a3a73409473"


def test_custom_xml_geometry(tmp_path: Path) -> None:
    xml = tmp_path / "mine.xml"
    xml.write_text(
        '<Bins><Bin pid="11" name="electron">'
        '<Layer id="0" r_edges="0,1,3" n_bin_alpha="4"/><Layer id="1" r_edges="0" n_bin_alpha="1"/>'
        '<Layer id="2" r_edges="0,2,4,8" n_bin_alpha="1"/></Bin></Bins>'
    )
    g = Geometry.from_xml(xml)
    assert g.name == "mine" and g.n_voxels == 8 + 3 and g.layer_ids == (0, 2)
    assert resolve_geometry(str(xml), n_voxels=11) == g


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("this is not xml <", "could not parse"),
        ("<Geometry><Layer/></Geometry>", "CaloChallenge binning file"),
        ('<Bins><Bin name="x"><Layer id="0" r_edges="0,a" n_bin_alpha="1"/></Bin></Bins>', "expected <Layer"),
        ('<Bins><Bin name="x"><Layer id="0" r_edges="0,2,1" n_bin_alpha="1"/></Bin></Bins>', "strictly increasing"),
        ('<Bins><Bin name="x"><Layer id="0" r_edges="0" n_bin_alpha="1"/></Bin></Bins>', "at least one layer"),
    ],
)
def test_bad_xml_is_a_clear_error(tmp_path: Path, content: str, match: str) -> None:
    xml = tmp_path / "bad.xml"
    xml.write_text(content)
    with pytest.raises(GeometryError, match=match):
        Geometry.from_xml(xml)


def test_particle_choice_in_multi_bin_xml(tmp_path: Path) -> None:
    xml = tmp_path / "two.xml"
    layer = '<Layer id="0" r_edges="0,1" n_bin_alpha="1"/>'
    pion = layer + layer.replace("0", "1", 1)
    xml.write_text(f'<Bins><Bin name="photon">{layer}</Bin><Bin name="pion">{pion}</Bin></Bins>')
    with pytest.raises(GeometryError, match="choose one with particle"):
        Geometry.from_xml(xml)
    assert Geometry.from_xml(xml, particle="pion").n_voxels == 2
    with pytest.raises(GeometryError, match="has only"):
        Geometry.from_xml(xml, particle="kaon")


def test_unknown_preset_and_mismatch_messages() -> None:
    with pytest.raises(GeometryError, match="ds1-photons"):
        Geometry.preset("ds4")
    assert matching_presets(533) == ["ds1-pions"]
    with pytest.raises(GeometryMismatchError, match="presets with 533 voxels: ds1-pions"):
        resolve_geometry("ds1-photons", n_voxels=533)
    assert resolve_geometry(None, n_voxels=6480).name == "ds2"
    with pytest.raises(GeometryError, match="no preset matches"):
        resolve_geometry(None, n_voxels=7)


def test_missing_xml_file(tmp_path: Path) -> None:
    with pytest.raises(GeometryError, match="not found"):
        Geometry.from_xml(tmp_path / "nope.xml")


def test_multi_bin_xml_from_a_geometry_string(tmp_path: Path) -> None:
    xml = tmp_path / "two.xml"
    layer = '<Layer id="0" r_edges="0,1,2" n_bin_alpha="1"/>'
    xml.write_text(f'<Bins><Bin name="photon">{layer}</Bin><Bin name="pion">{layer}</Bin></Bins>')
    with pytest.raises(GeometryError, match="--geometry FILE.xml:NAME"):
        resolve_geometry(str(xml))
    assert resolve_geometry(f"{xml}:pion").particle == "pion"


def _xml(tmp_path: Path, *layers: str) -> Path:
    xml = tmp_path / "b.xml"
    xml.write_text('<Bins><Bin name="x">' + "".join(layers) + "</Bin></Bins>")
    return xml


@pytest.mark.parametrize(
    ("layer", "match"),
    [
        ('<Layer id="0" r_edges="0,nan,2" n_bin_alpha="1"/>', "finite radial edges"),
        ('<Layer id="0" r_edges="0,1,inf" n_bin_alpha="1"/>', "finite radial edges"),
        ('<Layer id="0" r_edges="0,1" n_bin_alpha="1000000000000"/>', "n_alpha to be an integer from 1 to 10000000"),
        ('<Layer id="0" r_edges="0,1" n_bin_alpha="0"/>', "n_alpha to be an integer from 1"),
        ('<Layer id="0" r_edges="0,1" n_bin_alpha="nan"/>', "expected <Layer"),
        ('<Layer id="99999999999" r_edges="0,1" n_bin_alpha="1"/>', "layer id to be an integer"),
        ('<Layer id="0" r_edges="0,1,2" n_bin_alpha="6000000"/>', "at most 10000000 voxels but got 6000000 x 2"),
        ('<Layer id="0" r_edges="' + ",".join(map(str, range(10**6))) + '" n_bin_alpha="1"/>',
         "at most 4194304 bytes but got 6888"),
    ],
    ids=["nan-edge", "inf-edge", "alpha-1e12", "alpha-0", "alpha-nan", "huge-id", "layer-voxels", "edges-1e6"],
)
def test_absurd_binnings_are_refused_at_read_time(tmp_path: Path, layer: str, match: str) -> None:
    with pytest.raises(GeometryError, match=match) as err:
        Geometry.from_xml(_xml(tmp_path, layer))
    assert "\n" not in str(err.value) and "b.xml" in str(err.value)


def test_total_voxels_are_bounded(tmp_path: Path) -> None:
    layer = '<Layer id="{}" r_edges="0,1,2,3,4,5,6,7,8,9,10" n_bin_alpha="400000"/>'  # 4M voxels per layer
    with pytest.raises(GeometryError, match="at most 10000000 voxels but got 12000000 in 3 layers.*b.xml"):
        Geometry.from_xml(_xml(tmp_path, *(layer.format(i) for i in range(3))))
    assert Geometry.from_xml(_xml(tmp_path, *(layer.format(i) for i in range(2)))).n_voxels == 8_000_000


@pytest.mark.parametrize(
    "change",
    [
        {"n_alpha": 10**12},
        {"n_alpha": float("nan")},
        {"n_alpha": 2.5},
        {"n_alpha": "10"},
        {"id": "zero"},
        {"id": float("inf")},
        {"r_edges": [0.0, float("nan")]},
        {"r_edges": "0,1"},
        {"r_edges": 5},
    ],
)
def test_from_dict_refuses_bad_values_in_one_line(change: dict[str, object]) -> None:
    data = Geometry.preset("ds1-photons").to_dict()
    data.pop("hash")
    data["layers"][0].update(change)
    with pytest.raises(GeometryError, match="expected") as err:
        Geometry.from_dict(data)
    assert "\n" not in str(err.value)


def test_from_dict_refuses_odd_shapes() -> None:
    for data in ({"layers": 5}, {"layers": [[0, 1]]}, {"layers": [{"id": 0, "r_edges": [0, 1], "n_alpha": 1}],
                                                        "particle": ["photon"]}):
        with pytest.raises(GeometryError, match="expected"):
            Geometry.from_dict(data)  # type: ignore[arg-type]


def test_layers_built_in_python_are_bounded_too() -> None:
    with pytest.raises(GeometryError, match="at most 10000000 voxels but got 5 x 3000000 bins"):
        Layer(0, range(3_000_001), 5)  # type: ignore[arg-type]
    with pytest.raises(GeometryError, match="finite radial edges"):
        Layer(0, (0.0, float("inf")))


def test_integral_floats_are_accepted_as_counts() -> None:
    layer = Layer(2.0, (0, 1, 2), 3.0)  # type: ignore[arg-type]
    assert (layer.id, layer.n_alpha, layer.n_voxels) == (2, 3, 6)
    assert isinstance(layer.n_alpha, int)
