"""GAN at batch 10000 (issue 22): before/after the cache-sized blocks and the int8 fix, one process, interleaved.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gan_batch10000.py RUN/bundle [ROUNDS]

One thread. Each round probes the fp32 and bf16 matmul limits (sizes 128-1024, CPU time) and times
``Bundle.generate`` (fp32), ``precision.generate`` (bf16) and ONNX Runtime int8 at batch 10000, each
"before" (whole-batch passes: ``GAN.sample_block_rows`` None, ``onnx_runtime.BLOCK_ROWS`` = batch; the int8
graph with every MatMul quantised, the inverse preprocessing's included) and "after" (today's code). Times
are the process's CPU time (a loaded machine inflates wall time), with wall beside them; fractions are of
the best probe of the same process. Results and machine: docs/performance.md, "GAN at batch 10000".
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
from onnxruntime.quantization import QuantType, quantize_dynamic

import caloforge.deploy.onnx_runtime as ort_module
from caloforge.deploy.bench import flops_per_shower
from caloforge.deploy.export import export_onnx, quantize_onnx
from caloforge.deploy.onnx_runtime import OnnxGenerator
from caloforge.deploy.precision import generate
from caloforge.models.gan import GAN
from caloforge.runtime.hardware import PEAK_SIZES
from caloforge.training.bundle import load

N = 10_000


def _int8(bundle: Any, work: Path, old: bool) -> OnnxGenerator:
    folder = work / ("old" if old else "new")
    folder.mkdir()
    manifest = export_onnx(bundle, folder / "m.onnx")
    graph, quantised = folder / "m.onnx", folder / "m.q"
    if old:  # every MatMul and Gemm, as before the fix
        quantize_dynamic(str(graph), str(quantised), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm"])
    else:
        quantize_onnx(graph, quantised)
    quantised.replace(graph)
    return OnnxGenerator(manifest, threads=1)


def _probe(dtype: torch.dtype) -> float:
    """The best matmul GFLOP/s over PEAK_SIZES, CPU time."""
    best = 0.0
    for n in PEAK_SIZES:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        reps = max(3, int(2e8 / (2 * n**3)))
        start = time.process_time()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.process_time() - start) / 1e9)
    return best


def main() -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    bundle = load(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    model = bundle.models[0]
    energies = np.exp(np.random.default_rng(0).uniform(np.log(300), np.log(60000), N))
    with tempfile.TemporaryDirectory() as tmp:
        int8 = {False: _int8(bundle, Path(tmp), old=True), True: _int8(bundle, Path(tmp), old=False)}
    calls: dict[str, Callable[[bool], Any]] = {
        "fp32 torch": lambda after: bundle.generate(energies, batch_size=N, device="cpu"),
        "bf16 torch": lambda after: generate(bundle, energies, None, "bf16", batch_size=N),
        "int8 ort": lambda after: int8[after].generate(energies, batch_size=N),
    }

    def mode(after: bool) -> None:
        GAN.sample_block_rows = 512 if after else None
        ort_module.BLOCK_ROWS = 1024 if after else N

    flops = flops_per_shower(model, lambda n: model.sample(torch.full((n,), 1000.0)))
    times: dict[str, list[tuple[float, float]]] = {}
    limits: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for after in (False, True):  # warm-up
        mode(after)
        for call in calls.values():
            call(after)
    for _ in range(rounds):
        limits["fp32"].append(_probe(torch.float32))
        limits["bf16"].append(_probe(torch.bfloat16))
        for after in (False, True):
            mode(after)
            for name, call in calls.items():
                cpu, wall = time.process_time(), time.perf_counter()
                call(after)
                times.setdefault(f"{name} {'after' if after else 'before'}", []).append(
                    ((time.process_time() - cpu) / N * 1e6, (time.perf_counter() - wall) / N * 1e6))
    fp32, bf16 = max(limits["fp32"]), max(limits["bf16"])
    print(f"{flops / 1e6:.4f} MFLOP per shower; limits (CPU time, best of {rounds}): fp32 {fp32:.1f}, "
          f"bf16 {bf16:.1f} GFLOP/s")
    for name, values in times.items():
        cpu_us = np.array([c for c, _ in values])
        wall_us = np.median([w for _, w in values])
        gflops = flops / (np.median(cpu_us) * 1e3)
        print(f"{name:18s} cpu {np.median(cpu_us):6.2f} us/shower ({cpu_us.min():.2f}-{cpu_us.max():.2f}), "
              f"wall {wall_us:6.2f}, {gflops:6.1f} GFLOP/s, {gflops / fp32:5.1%} of fp32, "
              f"{gflops / max(fp32, bf16):5.1%} of the best native limit")


if __name__ == "__main__":
    main()
