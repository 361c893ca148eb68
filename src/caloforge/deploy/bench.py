"""``caloforge bench``: generation time per shower, the CaloChallenge way, next to what the machine allows.

For each model, backend and batch size (CaloChallenge: 1, 100 and 10000) the wall clock of the
whole ``generate`` call is timed (noise, network, inverse preprocessing, MeV output in numpy)
after one warm-up call, ``repeats`` times; the median and half the inter-quartile range are
reported per shower. Each model runs in its own process, so its peak memory (RSS, and CUDA's
peak allocation on a GPU) is its own. The machine is described and measured in the same run (CPU
model and vector unit, threads, fp32 matmul throughput, bf16 where native), and each model's
dense-layer FLOPs per shower give the fraction of the fp32 limit it reaches. The reference
simulator is timed on the same geometry and energies. Ratios measured in one run are what hold
on a noisy shared machine.
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from caloforge.errors import CaloforgeError, ConfigError

__all__ = ["BENCH_SCHEMA", "Backend", "BenchResult", "BenchRow", "flops_per_shower", "run_bench"]

BENCH_SCHEMA = "caloforge.bench/1"
Backend = Literal["torch", "onnxruntime"]


@dataclass(frozen=True)
class BenchRow:
    """One model, backend and batch size.

    Attributes:
        model: The bundle's path.
        family: Its family.
        backend: ``torch`` or ``onnxruntime``.
        device: ``cpu`` or the CUDA device's name.
        batch_size: Showers per ``generate`` call.
        us_per_shower: Median wall-clock microseconds per shower.
        us_spread: Half the inter-quartile range of the repeats, microseconds per shower.
        repeats: Timed calls (after one warm-up call).
        flops_per_shower: Dense-layer floating-point operations per shower (torch's FlopCounterMode).
        gflops: Achieved dense-layer GFLOP/s.
        fraction_of_limit: ``gflops`` over the fp32 matmul throughput measured in the same run.
        peak_rss_mb: Peak resident memory of the model's process, MiB.
        peak_cuda_mb: Peak CUDA allocation, MiB (None on a CPU).
        threads: torch (or ONNX Runtime) threads.
    """

    model: str
    family: str
    backend: str
    device: str
    batch_size: int
    us_per_shower: float
    us_spread: float
    repeats: int
    flops_per_shower: float
    gflops: float
    fraction_of_limit: float
    peak_rss_mb: float
    peak_cuda_mb: float | None
    threads: int


@dataclass(frozen=True)
class BenchResult:
    """A benchmark run: the machine, the reference simulator, and one row per model, backend and batch size."""

    machine: dict[str, Any]
    refsim_us_per_shower: dict[str, float]
    rows: tuple[BenchRow, ...]
    skipped: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with stable keys (``schema: caloforge.bench/1``); ``skipped`` says what was not timed and why."""
        return {"schema": BENCH_SCHEMA, "machine": self.machine, "refsim_us_per_shower": self.refsim_us_per_shower,
                "rows": [asdict(r) for r in self.rows], "skipped": list(self.skipped)}


def flops_per_shower(model: torch.nn.Module, sample: Any, n: int = 64) -> float:
    """Floating-point operations of ``sample(n)`` per shower, as torch's FlopCounterMode counts them (dense layers)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        sample(n)
    return float(counter.get_total_flops()) / n


def _energies(bundle: Any, n: int, seed: int) -> np.ndarray:
    """Energies within the trained range, log-uniform (seeded): the same for every backend and batch size."""
    lo, hi = bundle.energy_range
    return np.exp(np.random.default_rng(seed).uniform(np.log(lo), np.log(hi), n))


def _bench_model(path: str, batch_sizes: Sequence[int], backends: Sequence[str], device: str, repeats: int,
                 threads: int, limit_gflops: float) -> list[BenchRow]:
    """Runs in a child process: load one bundle, time every backend and batch size."""
    torch.set_num_threads(threads)
    from caloforge.runtime.hardware import resolve_device
    from caloforge.training.bundle import load

    bundle = load(path)
    dev = resolve_device(device)
    energies = _energies(bundle, max(batch_sizes), seed=0)
    model = bundle.models[0].to(dev)
    e_t = torch.as_tensor(_energies(bundle, 64, seed=0), device=dev)
    flops = flops_per_shower(model, lambda n: model.sample(e_t[:n], None, torch.Generator(device=dev).manual_seed(0)))
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    rows = []
    for backend in backends:
        call = _onnx_call(bundle, threads) if backend == "onnxruntime" else _torch_call(bundle, dev)
        for batch in batch_sizes:
            e = energies[:batch]
            call(e, batch, 0)  # warm-up: first-call allocations, lazy initialisation
            times = []
            for k in range(repeats):
                start = time.perf_counter()
                call(e, batch, k + 1)
                times.append(time.perf_counter() - start)
            median = statistics.median(times)
            q = np.percentile(times, [25, 75])
            gflops = flops * batch / median / 1e9
            rows.append(BenchRow(path, bundle.family, backend, device_name if backend == "torch" else "cpu", batch,
                                 median / batch * 1e6, float(q[1] - q[0]) / 2 / batch * 1e6, repeats, flops, gflops,
                                 gflops / limit_gflops if limit_gflops > 0 else float("nan"),
                                 resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                 torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None, threads))
    return rows


def _torch_call(bundle: Any, dev: torch.device) -> Callable[[np.ndarray, int, int], Any]:
    return lambda e, batch, seed: bundle.generate(e, batch_size=batch, device=dev, seed=seed)


def _onnx_call(bundle: Any, threads: int) -> Callable[[np.ndarray, int, int], Any]:
    import tempfile

    from caloforge.deploy.export import export_onnx
    from caloforge.deploy.onnx_runtime import OnnxGenerator

    with tempfile.TemporaryDirectory(prefix="caloforge-bench-") as work:  # the sessions hold the graphs in memory
        runner = OnnxGenerator(export_onnx(bundle, Path(work) / "model.onnx"), threads=threads)
    return lambda e, batch, seed: runner.generate(e, batch_size=batch, seed=seed)


def _refsim_time(geometry: Any, particle: str | None, energies: np.ndarray) -> float:
    from caloforge.refsim import simulate

    particle = particle or "photon"
    simulate(geometry, particle, energies[:10], seed=0)  # warm-up (caches of the detector description)
    start = time.perf_counter()
    simulate(geometry, particle, energies, seed=1)
    return (time.perf_counter() - start) / len(energies) * 1e6


def run_bench(models: Sequence[str | Path], batch_sizes: Sequence[int] = (1, 100, 10_000),
              backends: Sequence[str] = ("torch",), device: str = "cpu", repeats: int = 5, threads: int | None = None,
              refsim: bool = True) -> BenchResult:
    """Benchmark generation of several bundles side by side (see the module docstring).

    Args:
        models: Bundle (or run) directories.
        batch_sizes: Showers per ``generate`` call.
        backends: ``torch`` and/or ``onnxruntime`` (CPU).
        device: ``cpu`` or ``cuda[:N]`` for the torch backend (resolved by the caller).
        repeats: Timed calls per batch size.
        threads: torch threads (default: the current setting).
        refsim: Also time the reference simulator on the first model's geometry and energies.

    Raises:
        ConfigError: for an empty model list, a batch size < 1, an unknown backend or repeats < 1.
        CheckpointError: for a missing or damaged bundle (before anything is timed).
    """
    from caloforge.runtime.hardware import machine_summary
    from caloforge.training.bundle import load

    if not models:
        msg = "expected at least one model to benchmark but got none"
        raise ConfigError(msg)
    if not batch_sizes or any(int(b) != b or b < 1 for b in batch_sizes):
        msg = f"expected batch sizes >= 1 but got {list(batch_sizes)}"
        raise ConfigError(msg)
    unknown = sorted(set(backends) - {"torch", "onnxruntime"})
    if unknown or not backends:
        msg = f"expected backends among ['torch', 'onnxruntime'] but got {list(backends)}"
        raise ConfigError(msg)
    if repeats < 1:
        msg = f"expected repeats >= 1 but got {repeats}"
        raise ConfigError(msg)
    bundles = [load(m) for m in models]  # damaged bundles fail here, in one line, before any timing
    threads = threads or torch.get_num_threads()
    machine = machine_summary(device)
    rows: list[BenchRow] = []
    skipped = [f"{path} ({bundle.family}): onnxruntime, the family does not export (docs/performance.md)"
               for path, bundle in zip(models, bundles, strict=True)
               if "onnxruntime" in backends and bundle.models[0].noise_size() is None]
    context = multiprocessing.get_context("spawn")
    for path, bundle in zip(models, bundles, strict=True):
        usable = [b for b in backends if b == "torch" or bundle.models[0].noise_size() is not None]
        if not usable:
            continue
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            rows += pool.submit(_bench_model, str(path), list(batch_sizes), usable, device, repeats, threads,
                                machine.fp32_gflops).result()
    refsim_times = {}
    if refsim:
        first = bundles[0]
        energies = _energies(first, 2000, seed=0)
        try:
            refsim_times[first.geometry.name] = _refsim_time(first.geometry, first.geometry.particle, energies)
        except CaloforgeError:
            pass  # a geometry without a detector description: nothing to compare
    return BenchResult(asdict(machine) | {"description": machine.describe()}, refsim_times, tuple(rows),
                       tuple(skipped))
