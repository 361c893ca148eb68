"""``caloforge bench``: generation time per shower, the CaloChallenge way, next to what the machine allows.

For each model, backend and batch size (CaloChallenge: 1, 100 and 10000) the wall clock of the
whole ``generate`` call is timed (noise, network, inverse preprocessing, MeV output in numpy)
after one warm-up call, at least ``repeats`` times and for at least 0.2 s; the median and the
16th and 84th percentiles are reported per shower; where that range is wider than the median,
the row's ``spread_note`` says why. The lean backends (``torch-lean``,
``onnxruntime-lean``, :mod:`caloforge.deploy.lean`) time one shower per call, as Geant4 calls.
Each model runs in its own process, so its peak memory (RSS, and CUDA's peak allocation on a GPU)
is its own.

The limits: the machine's dense matmul throughput in fp32 and, where the CPU has it natively, in
bf16, each the best over several matrix sizes (:func:`caloforge.runtime.hardware.peak_gflops`),
measured in the parent and again in each model's process with the same threads, so load that comes
and goes is seen by both; and, where ONNX Runtime is installed, its int8 product as an int8 export
runs it (:func:`caloforge.deploy.onnx_runtime.int8_matmul_gflops`), in each model's process. Each
model's dense-layer FLOPs per shower (torch's FlopCounterMode: the GEMMs both runtimes execute;
element-wise work is not counted) give its GFLOP/s and its fraction of the fp32 limit and of the
best native limit. A fraction cannot exceed 1: where a model ran faster than every probe (a probe
slowed by other work), the limit is that model's rate and ``machine["limit_note"]`` says so. The
reference simulator is timed on the same geometry and energies. Ratios measured in one run are what
hold on a noisy shared machine.

Yardsticks: for each CaloChallenge dataset among the bundles' geometries, the published times of the
challenge's submissions with their source and caveat (:mod:`caloforge.deploy.yardsticks`), in
``BenchResult.yardsticks``.
"""

from __future__ import annotations

import functools
import importlib.util
import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from caloforge.deploy.backends import bundle_generator
from caloforge.deploy.lean import LeanGenerator
from caloforge.deploy.onnx_runtime import int8_matmul_gflops
from caloforge.deploy.precision import check_precision, choose_precision
from caloforge.deploy.yardsticks import yardsticks
from caloforge.errors import CaloforgeError, ConfigError
from caloforge.runtime import hardware  # called as hardware.x(): the tests replace the CPU's capabilities
from caloforge.training.bundle import load

__all__ = ["BACKENDS", "BENCH_SCHEMA", "FLOPS_NOTE", "SPREAD_NOTE", "Backend", "BenchResult", "BenchRow",
           "flops_per_shower", "run_bench", "with_fractions"]

BENCH_SCHEMA = "caloforge.bench/3"
Backend = Literal["torch", "onnxruntime", "torch-lean", "onnxruntime-lean"]
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "torch-lean", "onnxruntime-lean")
MIN_SECONDS = 0.2
"""Each batch size is timed for at least this long (and at least ``repeats`` calls): batch-1 calls need hundreds."""
SPREAD_NOTE = ("the 16-84 % range of the calls is wider than their median: other work on the machine (or the "
               "interpreter's pauses) delayed some calls; the median is the figure")
FLOPS_NOTE = ("FLOPs are the dense layers' products (the GEMMs both runtimes execute, counted by torch's "
              "FlopCounterMode); element-wise work is not counted, so GFLOP/s and the fractions are a lower bound "
              "on the arithmetic done, and a small fraction at batch 1 is per-call overhead, not arithmetic")


@dataclass(frozen=True)
class BenchRow:
    """One model, backend and batch size.

    Attributes:
        model: The bundle's path.
        family: Its family.
        backend: One of :data:`BACKENDS`.
        precision: The arithmetic the model ran in (``fp32``).
        device: ``cpu`` or the CUDA device's name.
        batch_size: Showers per call.
        us_per_shower: Median wall-clock microseconds per shower.
        us_p16: 16th percentile of the calls, microseconds per shower.
        us_p84: 84th percentile of the calls, microseconds per shower.
        spread_note: Why the 16-84 % range is wider than the median, when it is (:data:`SPREAD_NOTE`), else "".
        repeats: Timed calls (after one warm-up call).
        flops_per_shower: Dense-layer floating-point operations per shower (torch's FlopCounterMode).
        gflops: Achieved dense-layer GFLOP/s.
        fraction_of_fp32: ``gflops`` over the run's fp32 limit (at most 1).
        fraction_of_best: ``gflops`` over the run's best native-precision limit (bf16 where native; at most 1).
        peak_rss_mb: Peak resident memory of the model's process, MiB.
        peak_cuda_mb: Peak CUDA allocation, MiB (None on a CPU).
        threads: torch (or ONNX Runtime) threads.
        dataset: The CaloChallenge dataset of the bundle's geometry (None for a custom one): its yardsticks.
    """

    model: str
    family: str
    backend: str
    device: str
    precision: str
    batch_size: int
    us_per_shower: float
    us_p16: float
    us_p84: float
    spread_note: str
    repeats: int
    flops_per_shower: float
    gflops: float
    fraction_of_fp32: float
    fraction_of_best: float
    peak_rss_mb: float
    peak_cuda_mb: float | None
    threads: int
    dataset: str | None = None


@dataclass(frozen=True)
class BenchResult:
    """A benchmark run: the machine, the reference simulator, one row per model, backend and batch size, and the
    published yardsticks of the bundles' datasets (:func:`caloforge.deploy.yardsticks.yardsticks`)."""

    machine: dict[str, Any]
    refsim_us_per_shower: dict[str, float]
    rows: tuple[BenchRow, ...]
    skipped: tuple[str, ...] = ()
    yardsticks: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with stable keys (``schema: caloforge.bench/3``); ``skipped`` says what was not timed and why."""
        return {"schema": BENCH_SCHEMA, "machine": self.machine, "refsim_us_per_shower": self.refsim_us_per_shower,
                "rows": [asdict(r) for r in self.rows], "skipped": list(self.skipped),
                "yardsticks": list(self.yardsticks)}


def flops_per_shower(model: torch.nn.Module, sample: Any, n: int = 64) -> float:
    """Floating-point operations of ``sample(n)`` per shower, as torch's FlopCounterMode counts them (dense layers)."""
    with FlopCounterMode(display=False) as counter:
        sample(n)
    return float(counter.get_total_flops()) / n


def _energies(bundle: Any, n: int, seed: int) -> np.ndarray:
    """Energies within the trained range, log-uniform (seeded): the same for every backend and batch size."""
    lo, hi = bundle.energy_range
    return np.exp(np.random.default_rng(seed).uniform(np.log(lo), np.log(hi), n))


def _timed(call: Callable[[int], Any], repeats: int) -> list[float]:
    """Seconds per call: one warm-up, then at least ``repeats`` calls and :data:`MIN_SECONDS` (at most 5000 calls)."""
    call(0)  # warm-up: first-call allocations, lazy initialisation
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats or (spent < MIN_SECONDS and len(times) < 5000):
        start = time.perf_counter()
        call(len(times) + 1)
        took = time.perf_counter() - start
        times.append(took)
        spent += took
    return times


def _row(path: str, bundle: Any, backend: str, device: str, batch: int, times: list[float], flops: float,
         threads: int, dev: torch.device, precision: str = "fp32") -> BenchRow:
    median = statistics.median(times)
    p16, p84 = (float(v) for v in np.percentile(times, [16, 84]))
    note = SPREAD_NOTE if p84 - p16 > median else ""
    return BenchRow(path, bundle.family, backend, device, precision, batch, median / batch * 1e6, p16 / batch * 1e6,
                    p84 / batch * 1e6, note, len(times), flops, flops * batch / median / 1e9, float("nan"),
                    float("nan"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None, threads,
                    bundle.geometry.dataset)


def _bench_model(path: str, batch_sizes: Sequence[int], backends: Sequence[str], device: str, repeats: int,
                 threads: int, precision: str = "fp32", bf16: bool = False) -> tuple[list[BenchRow], dict[str, float]]:
    """Runs in a child process: probe the limits, load one bundle, time every backend and batch size.

    ``bf16``: the parent's view of the CPU (native bf16 or not), so a child never decides otherwise.
    """
    torch.set_num_threads(threads)

    dev = hardware.resolve_device(device)
    limits = {"fp32": hardware.peak_gflops(torch.float32, dev)}
    if dev.type == "cpu" and bf16:
        limits["bf16"] = hardware.peak_gflops(torch.bfloat16, dev)
    if dev.type == "cpu" and importlib.util.find_spec("onnxruntime") is not None:
        limits["int8"] = int8_matmul_gflops(threads)
    bundle = load(path)
    energies = _energies(bundle, max(batch_sizes), seed=0)
    model = bundle.models[0].to(dev)
    e_t = torch.as_tensor(_energies(bundle, 64, seed=0), device=dev)
    flops = flops_per_shower(model, lambda n: model.sample(e_t[:n], None, torch.Generator(device=dev).manual_seed(0)))
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    if precision == "auto":
        precision = choose_precision(bundle, allowed=("fp32", "bf16", "int8") if bf16 else ("fp32", "int8")).precision
    rows = []
    for backend in backends:
        if backend.endswith("-lean"):
            if 1 in batch_sizes:
                lean = _lean_call(bundle, backend, threads, energies)
                rows.append(_row(path, bundle, backend, "cpu", 1, _timed(lean, repeats), flops, threads, dev))
            continue
        # bf16 runs with torch, int8 with ONNX Runtime (precision.py); the other backend stays fp32
        used = precision if (precision, backend) in (("bf16", "torch"), ("int8", "onnxruntime")) else "fp32"
        used = used if model.noise_size() is not None else "fp32"  # e.g. the parametric baseline: fp32 only
        call = _call(bundle, backend, dev, used, threads)
        for batch in batch_sizes:
            times = _timed(functools.partial(_batch_call, call, energies[:batch], batch), repeats)
            rows.append(_row(path, bundle, backend, device_name if backend == "torch" else "cpu", batch, times, flops,
                             threads, dev, used))
    return rows, limits


def _batch_call(call: Callable[[np.ndarray, int, int], Any], energies: np.ndarray, batch: int, seed: int) -> Any:
    return call(energies, batch, seed)


def _lean_call(bundle: Any, backend: str, threads: int, energies: np.ndarray) -> Callable[[int], Any]:

    lean = LeanGenerator(bundle, "torch" if backend == "torch-lean" else "onnxruntime", threads=threads)
    values = [float(v) for v in energies[:64]]
    conditions = [0.0] * len(lean.condition_names)
    return lambda k: lean(values[k % len(values)], conditions)


def _call(bundle: Any, backend: str, dev: torch.device, precision: str, threads: int
          ) -> Callable[[np.ndarray, int, int], Any]:
    """Generation of ``bundle`` on ``backend`` in ``precision``: ``call(energies, batch, seed)``."""
    generator = bundle_generator(bundle, "onnxruntime" if backend == "onnxruntime" else "torch", device=dev,
                                 precision=precision, threads=threads)
    return lambda e, batch, seed: generator.generate(e, batch_size=batch, seed=seed)


def with_fractions(rows: list[BenchRow], machine: dict[str, Any]) -> list[BenchRow]:
    """Set the run's limits in ``machine`` and each row's fractions of them (never above 1, see the module).

    An fp32 row is a fraction of the fp32 limit and of the best native one; a bf16 or int8 row only of the
    best native one (its fraction of fp32 is NaN, JSON null: int8 and bf16 products are not bound by fp32's).
    """
    fp32 = max(machine["fp32_limits"])
    native = {p: max(machine[f"{p}_limits"]) for p in ("bf16", "int8") if machine.get(f"{p}_limits")}
    notes = ["the best matmul over sizes 128-1024, in the parent and in each model's process (int8: ONNX Runtime's "
             "dynamically quantised MatMul, in each model's process)"]

    def faster(candidates: list[BenchRow], limit: float, what: str) -> float:
        fastest = max(candidates, key=lambda r: r.gflops, default=None)
        if fastest is None or fastest.gflops <= limit:
            return limit
        notes.append(f"{fastest.family} ({fastest.backend}, {fastest.precision}, batch {fastest.batch_size}) ran its "
                     f"dense layers faster ({fastest.gflops:.3g} GFLOP/s) than the {what} limit ({limit:.3g}), so "
                     f"that limit is its rate{': other work slowed the probes' if what == 'fp32' else ''}")
        return fastest.gflops

    fp32 = faster([r for r in rows if r.precision == "fp32"], fp32, "fp32")
    best, precision = max([(fp32, "fp32")] + [(limit, p) for p, limit in native.items()])
    reduced = [r for r in rows if r.precision != "fp32"]
    raised = faster(reduced, best, "best native")
    if raised > best:
        best, precision = raised, max(reduced, key=lambda r: r.gflops).precision
    machine |= {"fp32_limit_gflops": fp32, "best_limit_gflops": best, "best_precision": precision,
                "limit_note": "; ".join(notes), "flops_note": FLOPS_NOTE}
    return [replace(r, fraction_of_fp32=r.gflops / fp32 if fp32 > 0 and r.precision == "fp32" else float("nan"),
                    fraction_of_best=r.gflops / best if best > 0 else float("nan")) for r in rows]


def _refsim_time(geometry: Any, particle: str | None, energies: np.ndarray) -> float:
    from caloforge.refsim import simulate  # numba compiles the simulator: only when it is timed (start-up time)

    particle = particle or "photon"
    simulate(geometry, particle, energies[:10], seed=0)  # warm-up (caches of the detector description)
    start = time.perf_counter()
    simulate(geometry, particle, energies, seed=1)
    return (time.perf_counter() - start) / len(energies) * 1e6


def run_bench(models: Sequence[str | Path], batch_sizes: Sequence[int] = (1, 100, 10_000),
              backends: Sequence[str] = ("torch",), device: str = "cpu", repeats: int = 5, threads: int | None = None,
              refsim: bool = True, precision: str = "fp32") -> BenchResult:
    """Benchmark generation of several bundles side by side (see the module docstring).

    Args:
        models: Bundle (or run) directories.
        batch_sizes: Showers per ``generate`` call.
        backends: Among :data:`BACKENDS` (``onnxruntime`` and the lean ones on the CPU; lean ones at batch 1).
        device: ``cpu`` or ``cuda[:N]`` for the torch backend (resolved by the caller).
        repeats: Timed calls per batch size.
        threads: torch threads (default: the current setting).
        refsim: Also time the reference simulator on the first model's geometry and energies.
        precision: ``fp32``; ``bf16`` (the torch rows, where native), ``int8`` (the onnxruntime rows), or ``auto``
            (chosen per model by :func:`caloforge.deploy.precision.choose_precision`); each row says its precision.

    Raises:
        ConfigError: for an empty model list, a batch size < 1, an unknown backend, repeats < 1 or a precision
            this CPU lacks (one line, before anything is timed).
        CheckpointError: for a missing or damaged bundle (before anything is timed).
    """
    if not models:
        msg = "expected at least one model to benchmark but got none"
        raise ConfigError(msg)
    if not batch_sizes or any(int(b) != b or b < 1 for b in batch_sizes):
        msg = f"expected batch sizes >= 1 but got {list(batch_sizes)}"
        raise ConfigError(msg)
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown or not backends:
        msg = f"expected backends among {list(BACKENDS)} but got {list(backends)}"
        raise ConfigError(msg)
    if repeats < 1:
        msg = f"expected repeats >= 1 but got {repeats}"
        raise ConfigError(msg)

    check_precision(precision, "torch", device)
    bundles = [load(m) for m in models]  # damaged bundles fail here, in one line, before any timing
    threads = threads or torch.get_num_threads()
    busy = hardware.busy_cpus()
    summary = hardware.machine_summary(device)
    machine: dict[str, Any] = asdict(summary) | {
        "description": summary.describe(), "busy_cpus_at_start": busy,
        "fp32_limits": [summary.fp32_gflops], "bf16_limits": [summary.bf16_gflops] if summary.bf16_gflops else [],
        "int8_limits": []}
    rows: list[BenchRow] = []
    skipped = [f"{path} ({bundle.family}): {', '.join(b for b in backends if b != 'torch')}, the family does not "
               "export (docs/performance.md)" for path, bundle in zip(models, bundles, strict=True)
               if set(backends) - {"torch"} and bundle.models[0].noise_size() is None]
    lean = [b for b in backends if b.endswith("-lean")]
    if lean and 1 not in batch_sizes:
        skipped.append(f"{', '.join(lean)}: one shower per call, timed only when the batch sizes include 1")
    context = multiprocessing.get_context("spawn")
    for path, bundle in zip(models, bundles, strict=True):
        usable = [b for b in backends if b == "torch" or bundle.models[0].noise_size() is not None]
        if not usable:
            continue
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            model_rows, limits = pool.submit(_bench_model, str(path), list(batch_sizes), usable, device, repeats,
                                             threads, precision, summary.bf16_native).result()
        rows += model_rows
        for precision_name, limit in limits.items():
            machine[f"{precision_name}_limits"].append(limit)
    rows = with_fractions(rows, machine)
    refsim_times = {}
    if refsim:
        first = bundles[0]
        energies = _energies(first, 2000, seed=0)
        try:
            refsim_times[first.geometry.name] = _refsim_time(first.geometry, first.geometry.particle, energies)
        except CaloforgeError:
            pass  # a geometry without a detector description: nothing to compare
    datasets = dict.fromkeys(b.geometry.dataset for b in bundles)  # each once, in the models' order
    tables = tuple(t for t in (yardsticks(d) for d in datasets) if t is not None)
    return BenchResult(machine, refsim_times, tuple(rows), tuple(skipped), tables)
