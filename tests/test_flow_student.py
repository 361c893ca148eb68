"""The one-pass flow student (models/flow_student.py) and its distillation (training/distill.py, caloforge distill)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from caloforge.cli import app
from caloforge.data.geometry import Geometry, Layer
from caloforge.deploy.backends import open_generator
from caloforge.deploy.export import export_onnx
from caloforge.deploy.onnx_runtime import OnnxGenerator
from caloforge.errors import CheckpointError, ConfigError, OutputExistsError, OutputPathError
from caloforge.models import DISTILLED, FAMILIES, get_family
from caloforge.models.flow import Flow
from caloforge.models.flow_student import FlowStudent, FlowStudentConfig
from caloforge.models.preprocess import Preprocessing
from caloforge.training.bundle import load
from caloforge.training.bundle_format import save_model
from caloforge.training.distill import distill
from families import batch_of, one_step_bundle, tiny_config
from synthetic import make_showers

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

STUDENT = {"hidden": (64, 64), "pool": 512, "refresh": 16, "validation": 256, "batch_size": 128, "lr": 3e-3}


GEOMETRY = Geometry((Layer(0, (0.0, 1.0, 2.0, 4.0), 2), Layer(5, (0.0, 2.0, 5.0), 1)), name="tiny")


@pytest.fixture(scope="module")
def data():
    return make_showers(GEOMETRY, 64, seed=2, energies=(500.0, 2000.0, 8000.0))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data):
    """A tiny split flow whose blocks are far from the identity (random last layers), its standardisation fitted."""
    config = tiny_config("flow")
    torch.manual_seed(0)
    flow = Flow(config, Preprocessing.fit(data, config.preprocessing))
    flow.prepare(lambda: batch_of(data), torch.Generator().manual_seed(0))
    with torch.no_grad():
        for block in [*flow.energy_flow.blocks, *flow.shower_flow.blocks]:  # each starts as the identity
            torch.nn.init.normal_(block.hyper[-1].weight, std=0.3, generator=torch.Generator().manual_seed(1))
    return save_model(tmp_path_factory.mktemp("teacher") / "teacher", flow, "flow", GEOMETRY)


def _config(path):
    return FlowStudentConfig.from_teacher(load(path).models[0].config, **STUDENT)


@pytest.fixture(scope="module")
def student(tmp_path_factory, teacher):
    threads = torch.get_num_threads()  # one thread, as the one_thread fixture (conftest.py) gives each test
    torch.set_num_threads(1)
    try:
        yield distill(teacher, tmp_path_factory.mktemp("student") / "student", config=_config(teacher),
                      max_iterations=150, max_minutes=None, seed=0, progress=False)
    finally:
        torch.set_num_threads(threads)


def _mse_to_teacher(model, flow, seed=5, n=400):
    g = torch.Generator().manual_seed(seed)
    c = torch.cat([torch.rand(n, 1, generator=g), torch.zeros(n, 0)], dim=1)
    z = torch.randn(n, model.noise_size(), generator=g)
    with torch.no_grad():
        return float((model.standardised_from_noise(c, z) - flow.standardised_from_noise(c, z)).square().mean())


def test_distilled_student_reproduces_its_teacher(teacher, student):
    flow = load(teacher).models[0]
    trained = load(student.bundle).models[0]
    torch.manual_seed(0)
    untrained = FlowStudent(_config(teacher), flow.preprocessing)
    untrained.attach_teacher(flow)  # the teacher's standardisation, no distillation
    distilled, undistilled = _mse_to_teacher(trained, flow), _mse_to_teacher(untrained, flow)
    assert undistilled > 0.05  # the teacher is far from the identity map the student starts as
    assert distilled < 0.35 * undistilled
    assert student.validation_mse < 0.35 * student.identity_mse
    # the same noise makes nearly the same showers: compare the generated energies shower by shower
    e = np.full(200, 2000.0)
    a = load(teacher).generate(e, seed=3).showers.sum(axis=1)
    b = load(student.bundle).generate(e, seed=3).showers.sum(axis=1)
    assert np.median(np.abs(a - b)) < 0.5 * np.median(np.abs(a - np.roll(a, 1)))


def test_one_network_call_per_batch(student):
    bundle = load(student.bundle)
    calls = []
    bundle.models[0].network.register_forward_hook(lambda *_: calls.append(1))
    showers = bundle.generate(np.full(50, 1000.0), seed=0, batch_size=50)
    assert len(calls) == 1
    assert showers.showers.shape == (50, 8) and np.isfinite(showers.showers).all() and (showers.showers >= 0).all()
    bundle.generate(np.full(50, 1000.0), seed=0, batch_size=20)
    assert len(calls) == 1 + 3


def test_seed_reproducibility_and_bundle_round_trip(tmp_path, teacher, student):
    bundle = load(student.bundle)
    assert bundle.family == "flow-student" and get_family("flow-student") is FlowStudent
    e = np.array([500.0, 2000.0, 8000.0] * 10)
    one, two = bundle.generate(e, seed=4).showers, bundle.generate(e, seed=4).showers
    np.testing.assert_array_equal(one, two)
    assert not np.array_equal(one, bundle.generate(e, seed=5).showers)
    again = load(save_model(tmp_path / "copy", bundle.models[0], "flow-student", GEOMETRY))
    np.testing.assert_array_equal(one, again.generate(e, seed=4).showers)
    assert bundle.info["teacher"]["weights_sha256"] == load(teacher).info["weights_sha256"]
    # the Generator protocol and the command line open it like any bundle
    generator = open_generator(student.bundle, "torch")
    np.testing.assert_array_equal(one, generator.generate(e, seed=4).showers)


def test_student_exports_to_onnx_with_the_same_showers(tmp_path, student):
    bundle = load(student.bundle)
    manifest = export_onnx(bundle, tmp_path / "student.onnx")
    energies = np.array([500.0, 2000.0, 8000.0, 1000.0] * 5)
    expected = bundle.generate(energies, seed=7, batch_size=8).showers
    got = OnnxGenerator(manifest).generate(energies, seed=7, batch_size=8).showers
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_distil_is_reproducible_with_its_seed(tmp_path, teacher):
    runs = [distill(teacher, tmp_path / f"s{i}", config=_config(teacher), max_iterations=5, max_minutes=None,
                    seed=1, progress=False) for i in range(2)]
    a, b = (load(r.bundle).models[0].state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_student_is_not_trainable_from_showers_alone(teacher, data):
    flow = load(teacher).models[0]
    model = FlowStudent(_config(teacher), flow.preprocessing)
    with pytest.raises(ConfigError, match="caloforge distill"):
        model.loss(batch_of(data))
    assert "flow-student" in DISTILLED and "flow-student" not in FAMILIES  # train and the leaderboard skip it
    model.attach_teacher(flow)
    loss = model.loss(batch_of(data), torch.Generator().manual_seed(0))  # fresh teacher pairs at the batch's energies
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.network.parameters())


def test_bad_teachers_and_outputs_fail_in_one_line(tmp_path, teacher, data):
    gan = one_step_bundle(tmp_path, "gan", GEOMETRY, data).path
    cases = [(gan, tmp_path / "a", ConfigError, "expected a flow bundle"),
             (tmp_path / "missing", tmp_path / "b", CheckpointError, "missing"),
             (teacher, tmp_path / "no" / "dir", OutputPathError, "does not exist"),
             (teacher, teacher, OutputExistsError, "already exists")]
    for source, out, error, words in cases:
        with pytest.raises(error, match=words) as caught:
            distill(source, out, max_iterations=1, progress=False)
        assert "\n" not in str(caught.value)


def test_distill_command(tmp_path, teacher):
    out = tmp_path / "cli-student"
    result = CliRunner().invoke(app, ["distill", "--teacher", str(teacher), "--out", str(out), "--max-iterations",
                                      "3", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert load(out).family == "flow-student"
    again = CliRunner().invoke(app, ["distill", "--teacher", str(teacher), "--out", str(out), "--max-iterations", "3"])
    assert again.exit_code == 2 and "already exists" in again.output


def test_student_width_and_depth_are_settings(tmp_path, teacher):
    """The network's hidden widths (and curves) come from distill's changes or distill --config's model section."""
    narrow = distill(teacher, tmp_path / "narrow", changes={"hidden": [16, 8], "basis": 0}, max_iterations=3,
                     max_minutes=None, progress=False)
    model = load(narrow.bundle).models[0]
    linears = [m for m in model.network.mlp if isinstance(m, torch.nn.Linear)]
    assert model.config.hidden == (16, 8) and model.config.basis == 0
    assert [(m.in_features, m.out_features) for m in linears] == [(model.width + 1, 16), (16, 8), (8, model.width)]
    assert model.config.knots == load(teacher).models[0].config.knots  # the teacher's feature settings stay
    with pytest.raises(ConfigError, match="both"):
        distill(teacher, tmp_path / "both", config=_config(teacher), changes={"hidden": [8]}, max_iterations=1)
    yaml = tmp_path / "narrow.yaml"
    yaml.write_text("model:\n  hidden: [12]\n  basis: 2\n")
    out = tmp_path / "cli-narrow"
    result = CliRunner().invoke(app, ["distill", "--teacher", str(teacher), "--out", str(out), "--config", str(yaml),
                                      "--max-iterations", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (load(out).models[0].config.hidden, load(out).models[0].config.basis) == ((12,), 2)
    for text, words in [("model:\n  hiden: [12]\n", "hiden"), ("model:\n  hidden: [0]\n", "hidden"),
                        ("model: {}\ntraining:\n  max_minutes: 1\n", "only a 'model' section")]:
        yaml.write_text(text)
        bad = CliRunner().invoke(app, ["distill", "--teacher", str(teacher), "--out", str(tmp_path / "bad"),
                                       "--config", str(yaml), "--max-iterations", "1", "--no-progress"])
        assert bad.exit_code == 2 and words in bad.output and len(bad.output.strip().splitlines()) == 1, bad.output


def test_blocked_sampling_gives_the_whole_batch_showers(student, monkeypatch):
    """CPU sampling in blocks of rows (sample_block_rows) draws the noise whole: the same showers as one pass."""
    model = load(student.bundle).models[0]
    energies = torch.tensor([500.0, 2000.0, 8000.0] * 40, dtype=torch.float64)
    monkeypatch.setattr(FlowStudent, "sample_block_rows", 16)  # 120 rows: 7 full blocks and a partial one
    blocked = model.sample(energies, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(FlowStudent, "sample_block_rows", None)
    whole = model.sample(energies, generator=torch.Generator().manual_seed(3))
    assert blocked.shape == (120, 8) and float(whole.abs().max()) > 0
    torch.testing.assert_close(blocked, whole, rtol=1e-5, atol=1e-6 * float(whole.abs().max()))
    monkeypatch.setattr(FlowStudent, "sample_block_rows", 16)
    other = model.sample(energies, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(other, blocked)  # the seed still matters


def test_teacher_pairs_report_progress_per_call_of_the_teacher(tmp_path, teacher, monkeypatch):
    """The pool is drawn in calls of _CHUNK pairs and each call is reported: a long draw shows progress, and a
    signal (handled between calls) stops it within one call."""
    import io
    import re

    import caloforge.training.distill as distill_module
    from caloforge.runtime.progress import Progress

    monkeypatch.setattr(distill_module, "_CHUNK", 64)
    config = _config(teacher)
    out = io.StringIO()
    distill(teacher, tmp_path / "s", config=config, max_iterations=1, max_minutes=None, seed=0,
            progress=Progress(stream=out, live=False, interval_s=0.0))
    counts = [int(m) for m in re.findall(r"teacher pairs: (\d+)/\d+ pairs", out.getvalue())]
    total = config.pool + config.validation
    assert len(counts) >= total // 64 - 1 and counts == sorted(counts) and counts[-1] == total
