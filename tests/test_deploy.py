"""Deployment: ONNX export (parity per family, Par04 order, energy-split manifests) and caloforge bench."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from caloforge.cli import app
from caloforge.data import io
from caloforge.data.geometry import Geometry, Layer
from caloforge.deploy.export import export_onnx, par04_order
from caloforge.deploy.onnx_runtime import OnnxGenerator
from caloforge.deploy.yardsticks import ANCHORS
from caloforge.errors import ConfigError, OutputExistsError
from caloforge.models import FAMILIES, GANConfig
from caloforge.training import load, train
from families import one_step_bundle
from synthetic import make_showers

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:the validation sample has fewer:UserWarning")]

runner = CliRunner()
UNIFORM = Geometry(tuple(Layer(i, (0.0, 1.0, 2.0, 4.0), 2) for i in range(3)), name="uniform")  # 3 x 2 x 3 voxels
TINY = GANConfig(noise_dim=4, generator_layers=(16, 16, 16), critic_layers=(16, 16, 16), batch_size=64,
                 critic_steps=1, preprocessing="total")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_onnx_export_gives_the_pytorch_showers(family, tiny_geometry, tmp_path):
    data = make_showers(tiny_geometry, 64, seed=2, energies=(500.0, 2000.0, 8000.0))
    bundle = one_step_bundle(tmp_path, family, tiny_geometry, data)
    if bundle.models[0].noise_size() is None:  # sampling is not a fixed function of noise: refused, in one line
        with pytest.raises(ConfigError, match="cannot be exported"):
            export_onnx(bundle, tmp_path / "model.onnx")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        manifest = export_onnx(bundle, tmp_path / "model.onnx")
    energies = np.array([500.0, 2000.0, 8000.0, 1000.0] * 5)
    expected = bundle.generate(energies, device="cpu", seed=7, batch_size=8).showers
    got = OnnxGenerator(manifest).generate(energies, seed=7, batch_size=8).showers
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_par04_variant_is_the_calochallenge_output_reordered(tmp_path):
    import onnxruntime

    data = make_showers(UNIFORM, 64, seed=3, energies=(1000.0, 4000.0))
    bundle = one_step_bundle(tmp_path, "gan", UNIFORM, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(bundle, tmp_path / "cc.onnx")
        manifest = export_onnx(bundle, tmp_path / "par04.onnx", order="par04")
    assert json.loads(manifest.read_text())["order"] == "par04"
    noise = np.random.default_rng(0).normal(size=(1, bundle.models[0].noise_size())).astype(np.float32)
    energy = np.array([[2000.0]], np.float32)
    cc = onnxruntime.InferenceSession(str(tmp_path / "cc.onnx")).run(None, {"noise": noise, "energy": energy})[0]
    row = np.concatenate([noise, energy], axis=1)
    par04 = onnxruntime.InferenceSession(str(tmp_path / "par04.onnx")).run(None, {"input": row})[0]
    np.testing.assert_allclose(par04, cc[:, par04_order(UNIFORM)], rtol=1e-6)
    # Par04's loop: r outermost, then phi, then z innermost: the first cells are r=0, phi=0, z=0,1,2
    assert par04_order(UNIFORM)[:4].tolist() == [0, 6, 12, 3]
    with pytest.raises(ConfigError, match="share one binning"):
        par04_order(Geometry.preset("ds1-photons"))


def test_energy_split_bundle_exports_one_graph_per_range(tmp_path):
    data = make_showers(UNIFORM, 800, seed=4, energies=(500.0, 1000.0, 4000.0, 8000.0))
    result = train(data, "gan", TINY, tmp_path / "run", max_iterations=10, checkpoint_every=10, progress=False,
                   split_energies=(2000.0,))
    bundle = load(result.bundle_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        manifest_path = export_onnx(bundle, tmp_path / "split.onnx")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["splits"] == [2000.0] and [p["file"] for p in manifest["parts"]] == ["split.range-0.onnx",
                                                                                         "split.range-1.onnx"]
    energies = np.array([500.0, 8000.0, 1000.0, 4000.0] * 3)
    expected = bundle.generate(energies, device="cpu", seed=5).showers
    got = OnnxGenerator(manifest_path).generate(energies, seed=5).showers
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    manifest_path.unlink()  # a range graph left alone is still a user's file: not replaced without force
    before = (tmp_path / "split.range-1.onnx").read_bytes()
    with pytest.raises(OutputExistsError, match="range-0"):
        export_onnx(bundle, tmp_path / "split.onnx")
    assert (tmp_path / "split.range-1.onnx").read_bytes() == before


def test_bench_writes_every_field_and_refuses_bad_inputs(tmp_path):
    ds1 = Geometry.preset("ds1-photons")  # a CaloChallenge dataset: bench prints its published yardsticks
    bundle = one_step_bundle(tmp_path, "gan", ds1, make_showers(ds1, 64, seed=3, energies=(1000.0, 4000.0)))
    data = make_showers(UNIFORM, 64, seed=3, energies=(1000.0, 4000.0))
    baseline = one_step_bundle(tmp_path, "parametric", UNIFORM, data)  # does not export: timed with torch only
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", str(bundle.path), str(baseline.path), "--batch-sizes", "1,10",
                                 "--backend", "all", "--repeats", "2", "--out", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "GFLOP/s" in result.output and "us/shower" in result.output and "not timed" in result.output
    assert "best native" in result.output and "16-84 %" in result.output
    # the yardsticks of the GAN's dataset, its rows beside them, with the source and the caveat on units/hardware
    assert "yardsticks, ds1-photons" in result.output and "BoloGAN" in result.output
    assert "(this machine)" in result.output and "published CPU times" in result.output
    assert "91f715d" in result.output and "neither the unit nor the hardware" in result.output
    assert "Geant4" in result.output
    saved = json.loads(out.read_text())
    assert saved["schema"] == "caloforge.bench/3"
    assert [t["dataset"] for t in saved["yardsticks"]] == ["ds1-photons"]  # the custom geometry has none
    table = saved["yardsticks"][0]
    assert table["anchors"] == [a.to_dict() for a in ANCHORS["ds1-photons"]] and "91f715d" in table["source"]
    assert "unit" in table["caveat"] and "NaN" in table["geant4"]
    machine = saved["machine"]
    assert {"cpu_model", "vector", "bf16_native", "threads", "fp32_gflops", "description", "fp32_limit_gflops",
            "best_limit_gflops", "best_precision", "limit_note", "busy_cpus_at_start"} <= set(machine)
    assert len(machine["fp32_limits"]) == 3  # the parent and each model's process probe the limit
    assert machine["best_limit_gflops"] >= machine["fp32_limit_gflops"] >= max(machine["fp32_limits"])
    assert len(machine["int8_limits"]) == 2  # ONNX Runtime's int8 matmul, probed in each model's process
    native = {"fp32": machine["fp32_limit_gflops"], "int8": max(machine["int8_limits"])}
    native |= {"bf16": max(machine["bf16_limits"])} if machine["bf16_limits"] else {}
    assert machine["best_precision"] == max(native, key=native.__getitem__)
    rows = saved["rows"]
    expected = {("gan", backend, n) for backend in ("torch", "onnxruntime") for n in (1, 10)}
    expected |= {("gan", "torch-lean", 1), ("gan", "onnxruntime-lean", 1)}  # one shower per call: batch 1 only
    expected |= {("parametric", "torch", n) for n in (1, 10)}
    assert {(r["family"], r["backend"], r["batch_size"]) for r in rows} == expected
    assert len(saved["skipped"]) == 1 and "parametric" in saved["skipped"][0]
    fields = {"model", "family", "backend", "precision", "device", "batch_size", "us_per_shower", "us_p16", "us_p84",
              "spread_note", "repeats", "flops_per_shower", "gflops", "fraction_of_fp32", "fraction_of_best",
              "peak_rss_mb", "peak_cuda_mb", "threads", "dataset"}
    for row in rows:
        assert set(row) == fields
        assert row["dataset"] == ("ds1-photons" if row["family"] == "gan" else None)
        assert 0 < row["us_p16"] <= row["us_per_shower"] <= row["us_p84"] and row["peak_rss_mb"] > 50
        assert row["repeats"] >= 2 and row["precision"] == "fp32"
        # never a 16-84 % range wider than the median without the reason beside it
        assert bool(row["spread_note"]) == (row["us_p84"] - row["us_p16"] > row["us_per_shower"])
        assert 0 <= row["fraction_of_best"] <= row["fraction_of_fp32"] <= 1  # never above the run's limits
        assert row["fraction_of_fp32"] == pytest.approx(row["gflops"] / machine["fp32_limit_gflops"])
        assert row["flops_per_shower"] > 1000 or row["family"] == "parametric"  # counted: matmuls only
    for args, needle in ((["--batch-sizes", "0"], "--batch-sizes"), (["--backend", "tensorrt"], "--backend"),
                         (["--repeats", "0"], "repeats")):
        bad = runner.invoke(app, ["bench", str(bundle.path), *args])
        assert bad.exit_code == 2 and needle in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(app, ["bench", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "bundle" in missing.output


def test_bench_fractions_never_exceed_the_limit_and_say_why_the_limit_moved():
    from dataclasses import replace

    from caloforge.deploy.bench import BenchRow, with_fractions

    row = BenchRow("m", "gan", "onnxruntime", "cpu", "fp32", 100, 8.0, 7.5, 9.0, "", 25, 0.5e6, 0.0, float("nan"),
                   float("nan"), 600.0, None, 1)
    slow, fast = replace(row, gflops=40.0), replace(row, gflops=150.0, batch_size=1000)  # faster than the probes
    machine = {"fp32_limits": [100.0, 90.0], "bf16_limits": [200.0]}
    rows = with_fractions([slow, fast], machine)
    assert machine["fp32_limit_gflops"] == 150.0 and "slowed" in machine["limit_note"]  # a probe slowed by load
    assert machine["best_limit_gflops"] == 200.0 and machine["best_precision"] == "bf16"
    assert [r.fraction_of_fp32 for r in rows] == pytest.approx([40 / 150, 1.0])
    assert [r.fraction_of_best for r in rows] == pytest.approx([0.2, 0.75])
    machine = {"fp32_limits": [100.0], "bf16_limits": []}  # no native bf16: the best native limit is fp32's
    rows = with_fractions([slow], machine)
    assert machine["best_precision"] == "fp32" and rows[0].fraction_of_best == rows[0].fraction_of_fp32 == 0.4
    assert "faster" not in machine["limit_note"]
    int8 = replace(row, precision="int8", gflops=260.0)  # int8 products beat bf16's limit: the best limit is theirs
    machine = {"fp32_limits": [100.0], "bf16_limits": [200.0]}
    rows = with_fractions([slow, int8], machine)
    assert machine["fp32_limit_gflops"] == 100.0 and machine["best_limit_gflops"] == 260.0  # fp32's limit unmoved
    assert machine["best_precision"] == "int8" and "int8" in machine["limit_note"]
    assert rows[0].fraction_of_fp32 == 0.4 and np.isnan(rows[1].fraction_of_fp32) and rows[1].fraction_of_best == 1
    machine = {"fp32_limits": [100.0], "bf16_limits": [200.0], "int8_limits": [380.0, 400.0]}  # VNNI's int8 probed
    rows = with_fractions([slow, int8], machine)
    assert machine["best_limit_gflops"] == 400.0 and machine["best_precision"] == "int8"
    assert [r.fraction_of_best for r in rows] == pytest.approx([0.1, 0.65]) and "faster" not in machine["limit_note"]


def test_the_int8_probe_runs_a_quantised_product_as_an_int8_export_does(tmp_path):
    import onnx
    import onnxruntime

    from caloforge.deploy.onnx_runtime import int8_matmul_gflops, int8_probe_graph

    graph, weight = int8_probe_graph(64, tmp_path)
    ops = {node.op_type for node in onnx.load(str(graph)).graph.node}
    assert "MatMul" not in ops and ops & {"MatMulInteger", "DynamicQuantizeMatMul"}  # the product is int8
    x = np.random.default_rng(3).standard_normal((64, 64), dtype=np.float32)
    y = onnxruntime.InferenceSession(str(graph)).run(None, {"x": x})[0]
    exact = x @ weight
    error = np.abs(y - exact).mean() / np.abs(exact).mean()
    # int8 rounding: visible, small (1.1 % with AVX-512 VNNI; CPUs without VNNI multiply with VPMADDUBSW, whose
    # int16 pair sums can saturate, ONNX Runtime's quantisation notes, so the bound only separates a product from
    # a broken graph, whose error is of order 1)
    assert 1e-4 < error < 0.1
    assert int8_matmul_gflops(sizes=(32, 64), min_seconds=0.005) > 0


def test_yardsticks_are_the_docs_anchors_and_place_a_time_among_them():
    import re
    from dataclasses import replace
    from pathlib import Path

    from caloforge.deploy.yardsticks import format_ms, standing, yardsticks

    docs = (Path(__file__).parents[1] / "docs" / "performance.md").read_text(encoding="utf-8")
    section = docs[docs.index("## Anchors"):].split("\n## ", 1)[0]
    tables = dict(re.findall(r"^### (\S+)\n\n((?:\|.*\n)+)", section, flags=re.M))
    assert set(tables) == set(ANCHORS)  # every dataset of the data is in the docs, and no other
    for dataset, anchors in ANCHORS.items():
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in tables[dataset].splitlines()[2:]]
        assert rows == [[a.submission, *map(format_ms, a.cpu_ms), *map(format_ms, a.gpu_ms)] for a in anchors]
        assert all(len(a.cpu_ms) == len(a.gpu_ms) == 3 for a in anchors)
    assert yardsticks(None) is None and yardsticks("ds2")["anchors"][0]["submission"] == ANCHORS["ds2"][0].submission
    published = sum(a.cpu_ms[2] is not None for a in ANCHORS["ds1-photons"])
    fastest = min(a.cpu_ms[2] for a in ANCHORS["ds1-photons"] if a.cpu_ms[2] is not None)
    assert standing(1.0, 10_000, "ds1-photons") == (published, published)  # 1 us beats every anchor (ms)
    assert standing(fastest * 1000, 10_000, "ds1-photons") == (published, published)  # equal counts as no slower
    assert standing(fastest * 1001, 5000, "ds1-photons") == (published - 1, published)  # nearest column: 10000
    assert standing(1e12, 3, "ds1-photons") == (0, sum(a.cpu_ms[0] is not None for a in ANCHORS["ds1-photons"]))
    gpu = sum(a.gpu_ms[2] is not None for a in ANCHORS["ds1-photons"])
    assert standing(1.0, 10_000, "ds1-photons", gpu=True) == (gpu, gpu) and gpu < published  # CaloForest: no GPU
    assert standing(1.0, 1, "uniform") is None and standing(float("nan"), 1, "ds2") is None
    # a run's rows beside the anchors: ms per shower, CPU rows with the CPU times, GPU rows with the GPU times
    from caloforge.deploy.bench import BenchRow
    from caloforge.deploy.yardsticks import beside

    cpu_row = BenchRow("run/bundle", "gan", "onnxruntime", "cpu", "fp32", 100, 8.0, 7.5, 9.0, "", 25, 0.5e6, 60.0,
                       0.6, 0.3, 600.0, None, 1, "ds1-photons")
    rows = [cpu_row, replace(cpu_row, batch_size=10_000, us_per_shower=20.0),
            replace(cpu_row, backend="torch", device="NVIDIA H100", us_per_shower=0.5),
            replace(cpu_row, model="other/bundle", dataset=None)]  # a custom geometry: no yardsticks
    assert beside(rows, "ds1-photons", gpu=False) == {("gan (bundle)", "onnxruntime", "fp32"): {100: 0.008,
                                                                                                10_000: 0.02}}
    assert beside(rows, "ds1-photons", gpu=True) == {("gan (bundle)", "torch", "fp32"): {100: 0.0005}}


def test_generate_with_onnxruntime_matches_torch(tmp_path):
    data = make_showers(UNIFORM, 64, seed=3, energies=(1000.0, 4000.0))
    bundle = one_step_bundle(tmp_path, "gan", UNIFORM, data)
    outputs = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / f"{backend}.h5"
        result = runner.invoke(app, ["generate", "--model", str(bundle.path), "--energies", "1000,4000",
                                     "--n-per-energy", "5", "-o", str(out), "--backend", backend, "--seed", "2",
                                     "--device", "cpu"])
        assert result.exit_code == 0, result.output
        outputs[backend] = io.read(out).showers
    np.testing.assert_allclose(outputs["onnxruntime"], outputs["torch"], rtol=1e-5,
                               atol=1e-5 * np.abs(outputs["torch"]).max())


def test_onnx_showers_are_the_graphs_output_and_a_graph_giving_negatives_is_clipped(tmp_path):
    """The graph's inverse preprocessing clamps at 0, so ``generate`` returns its output as it is, without a clipping
    pass over the showers; a graph that does give negative energies (another exporter's) is still clipped at 0."""
    import onnx
    import onnxruntime
    import torch
    from onnx import helper, numpy_helper

    data = make_showers(UNIFORM, 64, seed=3, energies=(1000.0, 4000.0))
    bundle = one_step_bundle(tmp_path, "gan", UNIFORM, data)
    graph = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        manifest = export_onnx(bundle, graph)
    energies = np.geomspace(300.0, 3e6, 60)
    got = OnnxGenerator(manifest).generate(energies, seed=4).showers
    noise = torch.randn(60, 4, generator=torch.Generator().manual_seed(4)).numpy()  # the noise generate draws
    feeds = {"noise": noise, "energy": energies.astype(np.float32).reshape(-1, 1)}
    raw = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert raw.min() >= 0 and (raw > 0).mean() > 0.5
    np.testing.assert_array_equal(got, raw)
    model = onnx.load(str(graph))  # the same graph minus a constant: showers below 0 in part
    for node in model.graph.node:
        node.output[:] = ["unshifted" if name == "showers" else name for name in node.output]
    offset = np.float32(np.median(raw))
    model.graph.initializer.append(numpy_helper.from_array(offset, "offset"))
    model.graph.node.append(helper.make_node("Sub", ["unshifted", "offset"], ["showers"]))
    onnx.save(model, str(graph))
    shifted = OnnxGenerator(manifest).generate(energies, seed=4).showers
    assert (raw - offset < 0).mean() > 0.2
    np.testing.assert_array_equal(shifted, np.maximum(raw - offset, 0))
