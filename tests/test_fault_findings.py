"""The fault findings of issue 18: hostile or absurd inputs give one line, fast, and touch nothing else.

Each test feeds what a hostile or careless user could: deeply nested JSON, a YAML alias bomb,
duplicate keys, absurd sizes, paths outside a manifest's folder, a bundle without its
checksum, an empty shower file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import yaml

from caloforge.campaign.model_set import ModelSet
from caloforge.campaign.spec_checks import load_spec
from caloforge.data.geometry import Geometry
from caloforge.deploy.export import read_manifest
from caloforge.errors import CaloforgeError, CheckpointError, ConfigError
from caloforge.models import GAN, GANConfig
from caloforge.models.preprocess import Preprocessing
from caloforge.training.bundle import load
from caloforge.training.bundle_format import save_model
from synthetic import make_showers

TINY = GANConfig(noise_dim=4, generator_layers=(8,), critic_layers=(8,), batch_size=16)
SPEC = {"name": "tiny", "trials": 2, "budget": {"iterations": 200},
        "slices": [{"particle": "photon", "eta": [0.0, 0.4], "refsim": {"n_train": 600, "n_reference": 200}}],
        "families": {"gan": {"search": {"lr": {"log_uniform": [1.0e-4, 1.0e-3]}}}}}


@pytest.fixture
def bundle(tmp_path: Path, tiny_geometry: Geometry) -> Path:
    data = make_showers(tiny_geometry, 40, seed=2, energies=(500.0, 2000.0))
    torch.manual_seed(0)
    return save_model(tmp_path / "bundle", GAN(TINY, Preprocessing.fit(data, TINY.preprocessing)), "gan", tiny_geometry)


def _one_line(err: pytest.ExceptionInfo[BaseException], *words: str) -> str:
    message = str(err.value)
    assert isinstance(err.value, CaloforgeError) and "\n" not in message, message
    assert all(w in message for w in words), message
    return message


# ------------------------------------------------------------------------------- 1. deeply nested JSON
def test_deeply_nested_json_is_refused_in_one_line_by_every_reader(tmp_path: Path, bundle: Path) -> None:
    deep = "[" * 200_000
    (bundle / "bundle.json").write_text(deep)
    with pytest.raises(CheckpointError) as err:
        load(bundle)
    _one_line(err, "nested", "bundle.json")
    (tmp_path / "model_set.json").write_text(deep)
    with pytest.raises(CheckpointError) as err:
        ModelSet.load(tmp_path)
    _one_line(err, "nested", "model_set.json")
    (tmp_path / "g.json").write_text('{"format": ' + deep)
    with pytest.raises(ConfigError) as err:
        read_manifest(tmp_path / "g.onnx")
    _one_line(err, "nested", "g.json")


def test_a_deeply_nested_campaign_record_is_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from caloforge.cli import app

    (tmp_path / "trials.json").write_text('{"trials": ' + "[" * 200_000)
    result = CliRunner().invoke(app, ["campaign", "report", str(tmp_path)])
    assert result.exit_code == 2 and "nested" in result.output and "Traceback" not in result.output, result.output


def test_nan_in_a_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "g.json").write_text('{"format": "caloforge-onnx/1", "noise_size": NaN}')
    with pytest.raises(ConfigError) as err:
        read_manifest(tmp_path / "g.onnx")
    _one_line(err, "finite", "g.json")


# ------------------------------------------------------------------------------- 2. hostile YAML specs
def _spec_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_a_deeply_nested_spec_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_spec(_spec_file(tmp_path, "trials: " + "[" * 200_000))
    _one_line(err, "nested", "spec.yaml")


@pytest.mark.parametrize("budget", [False, True], ids=["bomb", "bomb-and-budget"])
def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path, budget: bool) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i, name in enumerate("bcdefghij"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{'abcdefghij'[i]}"] * 10) + "]")
    if budget:
        lines.append("budget: *j")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_spec(_spec_file(tmp_path, "\n".join(lines) + "\n"))
    assert time.perf_counter() - start < 5  # the bomb expands to 10^10 values; it must never be expanded
    _one_line(err, "alias", "spec.yaml")


def test_a_huge_spec_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    with path.open("w") as handle:
        handle.write("name: huge\nnotes: [")
        handle.write("1, " * 3_000_000)  # 9 MB
        handle.write("1]\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    assert time.perf_counter() - start < 5
    _one_line(err, "MiB", "spec.yaml")


def test_a_duplicate_key_in_a_spec_is_refused_naming_it(tmp_path: Path) -> None:
    text = yaml.safe_dump(SPEC) + "trials: 5\n"
    with pytest.raises(ConfigError) as err:
        load_spec(_spec_file(tmp_path, text))
    _one_line(err, "'trials'", "repeated", "spec.yaml")


def test_a_duplicate_key_in_a_training_config_is_refused(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from caloforge.cli import app

    config = tmp_path / "cfg.yaml"
    config.write_text("training:\n  seed: 1\n  seed: 2\n")
    result = CliRunner().invoke(app, ["train", "--data", "nothere.h5", "--out", str(tmp_path / "b"),
                                      "--config", str(config)])
    assert result.exit_code == 2 and "'seed' is repeated" in result.output, result.output


def test_harmless_aliases_still_work(tmp_path: Path) -> None:
    text = """name: tiny
trials: 2
budget: {iterations: 200}
slices:
  - {particle: photon, eta: [0.0, 0.4], refsim: &r {n_train: 600, n_reference: 200}}
  - {particle: photon, eta: [0.4, 1.0], refsim: *r}
families: {gan: {search: {lr: {log_uniform: [1e-4, 1e-3]}}}}
"""
    spec = load_spec(_spec_file(tmp_path, text))
    assert [s.refsim.n_train for s in spec.slices if s.refsim is not None] == [600, 600]


# ------------------------------------------------------------------------------- 5. bundles without a hash
def test_a_bundle_without_its_weights_hash_needs_no_verify(tmp_path: Path, bundle: Path) -> None:
    from typer.testing import CliRunner

    from caloforge.cli import app

    info = json.loads((bundle / "bundle.json").read_text())
    del info["weights_sha256"]
    (bundle / "bundle.json").write_text(json.dumps(info))
    args = ["generate", "--model", str(bundle), "--energies", "1000", "--n-per-energy", "3"]
    refused = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a.h5")])
    assert refused.exit_code == 2 and "weights_sha256" in refused.output and "--no-verify" in refused.output
    assert not (tmp_path / "a.h5").exists()
    trusted = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b.h5"), "--no-verify"])
    assert trusted.exit_code == 0, trusted.output
    assert (tmp_path / "b.h5").is_file()


# ------------------------------------------------------------------------------- 7. a file without showers
def test_every_command_that_reads_showers_says_a_file_has_none(tmp_path: Path, bundle: Path) -> None:
    import h5py
    import numpy as np
    from typer.testing import CliRunner

    from caloforge.cli import app

    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as file:
        file["incident_energies"] = np.zeros((0, 1))
        file["showers"] = np.zeros((0, 368), np.float32)  # a ds1-photons file, emptied
    commands = {
        "train": ["train", "--data", str(empty), "--out", str(tmp_path / "run"),
                  "--max-iterations", "5"],
        "evaluate": ["evaluate", "--reference", str(empty), "--generated", str(empty), "--out", str(tmp_path / "ev")],
        "generate": ["generate", "--model", str(bundle), "--like", str(empty), "--out", str(tmp_path / "g.h5")],
        "leaderboard": ["leaderboard", "--data", str(empty), "--reference", str(empty), "--max-minutes", "1",
                        "--out", str(tmp_path / "lb")],
    }
    for name, args in commands.items():
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (name, result.output)
        assert "holds none" in result.output and "iter_rows" not in result.output, (name, result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "empty.h5"]  # nothing was created


# ------------------------------------------------------------------------------- 4. ONNX graphs, model-set paths
@pytest.fixture
def exported(tmp_path: Path, bundle: Path) -> Path:
    import warnings

    pytest.importorskip("onnxruntime")
    from caloforge.deploy.export import export_onnx

    (tmp_path / "export").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_onnx(load(bundle), tmp_path / "export" / "g.onnx")


def test_a_truncated_onnx_graph_is_one_line(tmp_path: Path, exported: Path) -> None:
    from typer.testing import CliRunner

    from caloforge.cli import app

    graph = exported.with_suffix(".onnx")
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    result = CliRunner().invoke(app, ["generate", "--model", str(exported), "--backend", "onnxruntime",
                                      "--energies", "1000", "--n-per-energy", "2", "--out", str(tmp_path / "g.h5")])
    assert result.exit_code == 2 and "ONNX Runtime refused" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "g.h5").exists()


def test_manifest_graphs_outside_its_folder_are_refused(tmp_path: Path, exported: Path) -> None:
    from caloforge.deploy.onnx_runtime import OnnxGenerator

    graph = exported.with_suffix(".onnx")
    outside = tmp_path / "x.onnx"
    outside.write_bytes(graph.read_bytes())  # a valid graph, but not the manifest's
    (exported.parent / "link.onnx").symlink_to(outside)
    info = json.loads(exported.read_text())
    assert len(OnnxGenerator(exported).sessions) == 1  # the untouched export loads
    for name in ("/etc/passwd", "../x.onnx", "../../x.onnx", "link.onnx", "sub/../../x.onnx"):
        exported.write_text(json.dumps({**info, "parts": [{**info["parts"][0], "file": name}]}))
        with pytest.raises(ConfigError) as err:
            OnnxGenerator(exported)
        _one_line(err, "in its folder", repr(name))


def test_a_model_set_bundle_that_links_outside_is_refused(tmp_path: Path, bundle: Path) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    entry = {"slice": "s0", "particle": "photon", "eta": [0.0, 1.0], "energy": [100.0, 1e6], "family": "gan"}
    manifest = {"format": "caloforge-model-set/1", "entries": [{**entry, "bundle": "s0"}]}
    (folder / "model_set.json").write_text(json.dumps(manifest))
    (folder / "s0").symlink_to(bundle, target_is_directory=True)  # a bundle outside the model set
    with pytest.raises(CheckpointError) as err:
        ModelSet.load(folder)
    _one_line(err, "inside the model set", "'s0'")
    (folder / "s0").unlink()
    (folder / "s0").mkdir()
    assert len(ModelSet.load(folder).entries) == 1  # a real sub-directory is fine


# ------------------------------------------------------------------------------- 3. absurd values
@pytest.mark.parametrize(("changes", "words"), [
    pytest.param({"trials": 10**12}, ["trials <= 10000", "10000000000"], id="trials"),
    pytest.param({"families": {"parametric": {"config": {"reservoir": 10**12},
                                              "search": {"knots": {"integer": [5, 20]}}}}},
                 ["reservoir <= 10000000"], id="reservoir"),
    pytest.param({"budget": {"iterations": 10**30}}, ["iterations <= 1000000000"], id="iterations"),
], )
def test_absurd_campaign_values_are_refused_before_anything_runs(tmp_path: Path, changes: dict[str, object],
                                                                  words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_spec(_spec_file(tmp_path, yaml.safe_dump({**SPEC, **changes})))
    _one_line(err, *words)


def test_absurd_training_and_generation_sizes_name_the_option(tmp_path: Path, bundle: Path) -> None:
    import h5py
    import numpy as np
    from typer.testing import CliRunner

    from caloforge.cli import app

    data = tmp_path / "ds1.h5"
    with h5py.File(data, "w") as file:
        file["incident_energies"] = np.full((50, 1), 1024.0)
        file["showers"] = np.random.default_rng(0).random((50, 368)).astype(np.float32)
    trained = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "run"),
                                       "--max-iterations", str(10**30)])
    assert trained.exit_code == 2 and "expected --max-iterations <= 1000000000" in trained.output, trained.output
    assert not (tmp_path / "run").exists()
    generated = CliRunner().invoke(app, ["generate", "--model", str(bundle), "--energies", "1000,2000",
                                         "--n-per-energy", str(10**12), "--out", str(tmp_path / "g.h5")])
    assert generated.exit_code == 2, generated.output
    assert "--n-per-energy 1000000000000" in generated.output and "fit in memory" in generated.output
    assert "Traceback" not in generated.output and not (tmp_path / "g.h5").exists()


# ------------------------------------------------------------------------------- 6. signals leave nothing behind
@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np

    from caloforge.data.io import write
    from caloforge.refsim import simulate

    base = tmp_path_factory.mktemp("pair")
    energies = np.repeat(2.0 ** np.arange(10, 13), 150)
    write(base / "ref.h5", simulate("ds1-photons", "photon", energies, seed=1))
    write(base / "gen.h5", simulate("ds1-photons", "photon", energies, seed=2))
    return base


def _signal_at(task: str, sig: int, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Raise ``sig`` in this process at the first progress update of the task named ``task`` (prefix)."""
    import signal

    from caloforge.runtime.progress import ProgressTask

    original = ProgressTask.update
    sent: list[str] = []

    def signalled(self: ProgressTask, *args: object, **kwargs: object) -> None:
        if self.name.startswith(task) and not sent:
            sent.append(self.name)
            signal.raise_signal(sig)  # as if Ctrl-C or kill arrived here
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ProgressTask, "update", signalled)
    return sent


def _evaluate_with_a_signal(pair: Path, out: Path, sig: int, task: str, monkeypatch: pytest.MonkeyPatch,
                            disposition: object = None) -> tuple[int, str]:
    """``caloforge evaluate`` that receives ``sig`` at the first progress of ``task``; (exit code, output)."""
    import signal

    from typer.testing import CliRunner

    from caloforge.cli import app

    sent = _signal_at(task, sig, monkeypatch)
    previous = signal.signal(sig, disposition) if disposition is not None else None  # type: ignore[arg-type]
    try:
        result = CliRunner().invoke(app, ["evaluate", "-r", str(pair / "ref.h5"), "-i", str(pair / "gen.h5"),
                                          "--out", str(out)])
    finally:
        if previous is not None:
            signal.signal(sig, previous)
    assert sent, result.output
    return result.exit_code, result.output


def test_ctrl_c_stops_evaluate_even_when_the_shell_ignores_it(pair: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    # a command started in the background by a non-interactive shell inherits SIGINT ignored: kill -INT must
    # still stop it, at the next safe point
    out = tmp_path / "report"
    code, output = _evaluate_with_a_signal(pair, out, signal.SIGINT, "reference: features", monkeypatch,
                                           signal.SIG_IGN)
    assert code == 130 and "interrupted" in output and "reference: features: stopped" in output, output
    assert not out.exists()


@pytest.mark.slow
def test_sigterm_while_evaluate_writes_its_report_exits_143_and_leaves_no_empty_directory(
        pair: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    out = tmp_path / "new" / "report"
    code, output = _evaluate_with_a_signal(pair, out, signal.SIGTERM, "report figures", monkeypatch)
    assert code == 143 and "interrupted" in output and "report figures: stopped" in output, output
    assert not (tmp_path / "new").exists()  # the directories evaluate created are gone, no half-written report


def test_the_directory_guard_removes_only_what_it_created_empty(tmp_path: Path) -> None:
    from caloforge.data.outputs import new_directory_guard

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for out in (mine, tmp_path / "empty-before"):
        out.mkdir(exist_ok=True)
        with pytest.raises(KeyboardInterrupt), new_directory_guard(out):
            raise KeyboardInterrupt
        assert out.is_dir()  # existed before: kept, even empty
    assert (mine / "notes.txt").read_text() == "keep me"
    created = tmp_path / "a" / "b"
    with pytest.raises(OSError), new_directory_guard(created):
        created.mkdir(parents=True)
        (tmp_path / "a" / "partial").write_text("x")  # not empty: kept
        raise OSError(28, "No space left on device")
    assert not created.exists() and (tmp_path / "a" / "partial").is_file()
    with new_directory_guard(tmp_path / "ok"):  # success keeps everything
        (tmp_path / "ok").mkdir()
    assert (tmp_path / "ok").is_dir()


@pytest.mark.parametrize(("sig", "code"), [(2, 130), (15, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_train_exits_128_plus_its_number_with_the_resume_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None, sig: int, code: int) -> None:
    import h5py
    import numpy as np
    from typer.testing import CliRunner

    from caloforge.cli import app

    data = tmp_path / "ds1.h5"
    with h5py.File(data, "w") as file:
        file["incident_energies"] = np.full((60, 1), 1024.0)
        file["showers"] = np.random.default_rng(0).random((60, 368)).astype(np.float32)
    sent = _signal_at("train gan", sig, monkeypatch)
    with pytest.warns(UserWarning, match="fewer than 200 showers"):
        result = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "run"),
                                          "--max-iterations", "100000", "--checkpoint-every", "5"])
    assert sent and result.exit_code == code, result.output
    assert "--resume" in result.output and (tmp_path / "run" / "bundle" / "bundle.json").is_file()


def test_every_command_stops_on_ctrl_c_even_when_started_with_it_ignored(pair: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    from typer.testing import CliRunner

    from caloforge.cli import app
    from caloforge.data import summary

    original = summary.summarize

    def interrupted(*args: object, **kwargs: object) -> object:
        signal.raise_signal(signal.SIGINT)  # kill -INT while the command works
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(summary, "summarize", interrupted)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a background job of a non-interactive shell
    try:
        result = CliRunner().invoke(app, ["info", str(pair / "ref.h5")])
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # the command restores what it found
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.exit_code == 130 and "interrupted" in result.output, result.output


def test_a_deeply_nested_geometry_attribute_in_a_shower_file_is_ignored(tmp_path: Path) -> None:
    import h5py
    import numpy as np

    from caloforge.data import io

    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as file:
        file["incident_energies"] = np.full((3, 1), 1024.0)
        file["showers"] = np.ones((3, 368), np.float32)
        file.attrs["caloforge_geometry"] = "[" * 200_000  # metadata is a convenience: a hostile one is ignored
    assert io.inspect(path).geometry is None and io.read(path).geometry.name == "ds1-photons"
