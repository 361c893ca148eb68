"""Batch-1 latency (the lean path, Par04's graph) and reduced-precision speed of the GAN and the VAE.

Builds untrained CPU-preset bundles (timing does not depend on the weights) on ds1-photons and
ds2, then measures, one thread, in one process so the ratios hold on a loaded machine:

* one shower per call: ``Bundle.generate``, ``LeanGenerator`` (torch, onnxruntime), Par04's graph
  through ONNX Runtime with and without I/O binding (ds2 mesh);
* batch 10000: torch fp32 and bf16 (where native), ONNX Runtime fp32 and int8, interleaved.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/precision_latency.py

Targets (issue 22): <= 50 us per call for the GAN and the VAE through the lean path; the GAN at
batch 10000 >= 50 % of the machine's best native limit (see ``caloforge bench --precision``).
Results and the machine: docs/performance.md.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from caloforge.data.geometry import Geometry
from caloforge.deploy.export import export_onnx
from caloforge.deploy.lean import LeanGenerator
from caloforge.deploy.onnx_runtime import OnnxGenerator
from caloforge.deploy.precision import generate, int8_generator
from caloforge.models import FAMILIES
from caloforge.models.preprocess import Preprocessing
from caloforge.runtime.hardware import cpu_info
from caloforge.training.bundle import load
from caloforge.training.bundle_format import save_model
from synthetic import make_showers


def _bundle(work: Path, family: str, geometry: Geometry, particle: str) -> Any:
    cls = FAMILIES[family].config_class
    config = cls.for_cpu(particle) if hasattr(cls, "for_cpu") else cls()
    data = make_showers(geometry, 500, seed=2, energies=(1000.0, 8000.0, 64000.0))
    torch.manual_seed(0)
    model = FAMILIES[family](config, Preprocessing.fit(data, config.preprocessing))
    return load(save_model(work / f"{family}-{geometry.name}", model, family, geometry))


def _per_call(call: Callable[[], Any], n: int) -> str:
    for _ in range(50):
        call()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    p16, p50, p84 = np.percentile(times, [16, 50, 84]) * 1e6
    return f"{p50:.1f} us ({p16:.1f}-{p84:.1f})"


def _family(work: Path, family: str) -> None:
    import onnxruntime as ort

    bundle = _bundle(work, family, Geometry.preset("ds1-photons"), "photon")
    print(f"\n{family}, ds1-photons, one shower per call (median, 16-84 %):")
    print("  Bundle.generate        ", _per_call(lambda: bundle.generate([4096.0], device="cpu"), 300))
    for backend in ("torch", "onnxruntime"):
        lean = LeanGenerator(bundle, backend, threads=1)  # type: ignore[arg-type]
        print(f"  lean {backend:<18}", _per_call(lambda g=lean: g(4096.0), 3000))
    energies = np.exp(np.random.default_rng(0).uniform(np.log(300), np.log(60000), 10_000))
    int8 = int8_generator(bundle, 1)
    ort32 = OnnxGenerator(export_onnx(bundle, work / f"{family}.onnx"), threads=1)
    calls = {"torch fp32": lambda: bundle.generate(energies, batch_size=10_000, device="cpu"),
             "ort fp32": lambda: ort32.generate(energies, batch_size=10_000),
             "ort int8": lambda: int8.generate(energies, batch_size=10_000)}
    if cpu_info().bf16_native:
        calls["torch bf16"] = lambda: generate(bundle, energies, None, "bf16", batch_size=10_000)
    times: dict[str, list[float]] = {k: [] for k in calls}
    for call in calls.values():
        call()
    for _ in range(7):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) / 10_000 * 1e6)
    print(f"{family}, batch 10000, us per shower (median of 7, interleaved):",
          {k: round(float(np.median(v)), 2) for k, v in times.items()})
    ds2 = _bundle(work, family, Geometry.preset("ds2"), "electron")
    export_onnx(ds2, work / f"{family}-par04.onnx", order="par04")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(work / f"{family}-par04.onnx"), options, providers=["CPUExecutionProvider"])
    k = ds2.models[0].noise_size()
    row = np.zeros((1, k + 1), np.float32)
    row[0, k] = 10_000.0
    out = np.zeros((1, ds2.geometry.n_voxels), np.float32)
    binding = session.io_binding()
    binding.bind_ortvalue_input("input", ort.OrtValue.ortvalue_from_numpy(row))
    binding.bind_ortvalue_output("showers", ort.OrtValue.ortvalue_from_numpy(out))
    print(f"{family}, Par04 graph on ds2 ({ds2.geometry.n_voxels} cells): session.run",
          _per_call(lambda: session.run(None, {"input": row}), 1000), "| I/O binding",
          _per_call(lambda: session.run_with_iobinding(binding), 1000))


def main() -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    info = cpu_info()
    print(f"{info.model} ({info.vector}, bf16 native: {info.bf16_native}), 1 thread")
    with tempfile.TemporaryDirectory() as tmp:
        for family in ("gan", "vae"):
            _family(Path(tmp), family)


if __name__ == "__main__":
    main()
