"""Reduced-precision generation: bf16 where the CPU has it natively, int8 by dynamic quantisation.

* ``fp32``: :meth:`Bundle.generate <caloforge.training.bundle.Bundle.generate>`, today's path.
* ``bf16``: the family's network under bfloat16 autocast (its matrix products in bf16, fp32
  accumulation); the conditioning and the inverse preprocessing (logarithms, exponentials,
  energies) stay in fp32. Only where :attr:`CpuInfo.bf16_native
  <caloforge.runtime.hardware.CpuInfo.bf16_native>` (AVX-512 BF16, AMX, ARM BF16): emulated bf16
  was measured 67x slower, so it is refused in one line.
* ``int8``: the exported graph (:mod:`caloforge.deploy.export`) with its network's MatMul/Gemm
  weights quantised to int8 by ONNX Runtime's dynamic quantisation (activations quantised per call),
  run by ONNX Runtime (torch's own ``torch.ao.quantization`` is deprecated and leaves torch 2.10).
* ``auto``: the fastest of those this CPU offers, timed on this bundle, among those whose showers
  stay within the tolerances of fp32 (:func:`parity`), as the classifier chooses bf16 by measurement.

The noise is drawn as ``Bundle.generate`` draws it (one ``torch.randn(n, noise_size)`` per batch
from a CPU generator seeded ``seed + range index``), so a reduced precision sees fp32's noise and
the comparison is shower by shower. Families whose sampling is not a fixed function of normal noise
(``noise_size()`` None, e.g. the parametric baseline, which has no matrix products) run in fp32 only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from caloforge.data.showers import ShowerSet
from caloforge.deploy.export import export_onnx, quantize_onnx, read_manifest
from caloforge.deploy.onnx_runtime import OnnxGenerator
from caloforge.errors import ConfigError
from caloforge.generator import Request, check_request, generate_routed
from caloforge.runtime import hardware  # called as hardware.x(): the tests replace the CPU's capabilities
from caloforge.validation.features import compute_features
from caloforge.validation.metrics.chi2 import response_chi2
from caloforge.validation.metrics.separation import feature_histograms, separation_power

__all__ = ["CHI2_TOLERANCE", "PRECISIONS", "SEPARATION_TOLERANCE", "Parity", "Precision", "ReducedGenerator",
           "check_precision",
           "choose_precision", "generate", "int8_generator", "parity", "quantize_onnx"]

Precision = Literal["auto", "fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "int8")
CHI2_TOLERANCE = 1.0
"""Largest response chi2/NDF of a reduced precision against fp32 (two independent fp32 samples give about 1)."""
SEPARATION_TOLERANCE = 0.01
"""Largest separation power of any high-level feature between a reduced precision and fp32 (0: identical)."""
CACHE_ROWS = 512
"""Rows per network pass in the reduced-precision path (the batch's activations stay in cache)."""


def check_precision(precision: str, backend: str = "torch", device: str | torch.device = "cpu") -> None:
    """Refuse, in one line, a precision this CPU, backend or device cannot run natively.

    Raises:
        ConfigError: an unknown precision; bf16 on a CPU without native bf16 or with ONNX Runtime; int8 on a GPU.
    """
    if precision not in PRECISIONS:
        msg = f"expected a precision among {list(PRECISIONS)} but got {precision!r}"
        raise ConfigError(msg)
    dev = torch.device(device)
    if precision == "bf16" and backend != "torch":
        msg = (f"expected --precision bf16 with the torch backend but got {backend}: ONNX Runtime's CPU provider "
               "has no bf16 matrix product; use int8 or fp32 there")
        raise ConfigError(msg)
    if precision == "bf16" and dev.type == "cpu" and not hardware.cpu_info().bf16_native:
        info = hardware.cpu_info()
        msg = (f"expected a CPU with native bf16 (AVX-512 BF16, AMX or ARM BF16) for --precision bf16 but "
               f"'{info.model}' ({info.vector}) has none; use --precision fp32 or auto")
        raise ConfigError(msg)
    if precision == "int8" and dev.type != "cpu":
        msg = f"expected the CPU for --precision int8 (dynamic quantisation) but got device '{device}'"
        raise ConfigError(msg)


def _noise_size(bundle: Any, precision: str) -> int:
    size = bundle.models[0].noise_size()
    if size is None:
        msg = (f"expected a family whose sampling is a fixed function of normal noise for --precision {precision} "
               f"but '{bundle.family}' is not; it runs in fp32 only")
        raise ConfigError(msg)
    return int(size)


def int8_generator(bundle: Any, threads: int | None = None) -> Any:
    """An :class:`~caloforge.deploy.onnx_runtime.OnnxGenerator` on the bundle's graphs quantised to int8."""
    _noise_size(bundle, "int8")
    with tempfile.TemporaryDirectory(prefix="caloforge-int8-") as work:  # the sessions hold the graphs in memory
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's and the quantiser's chatter
            manifest = export_onnx(bundle, Path(work) / "model.onnx")
            for part in read_manifest(manifest)["parts"]:
                graph = Path(work) / part["file"]
                quantize_onnx(graph, graph.with_suffix(".int8"))
                graph.with_suffix(".int8").replace(graph)
        return OnnxGenerator(manifest, threads=threads)


@contextlib.contextmanager
def _fp32_between_layers(enabled: bool) -> Iterator[None]:
    """Under bf16 autocast, hand each Linear's output on in fp32: only the products round to bf16.

    Activations, normalisations and the output transforms then run in fp32 (a module hook for the
    duration of the call: the GAN's folded layers are not submodules, so a per-module hook would miss them).
    """
    if not enabled:
        yield
        return

    def to_fp32(module: torch.nn.Module, args: Any, out: Any) -> Any:
        return out.float() if isinstance(module, torch.nn.Linear) and isinstance(out, torch.Tensor) else out

    handle = torch.nn.modules.module.register_module_forward_hook(to_fp32)
    try:
        yield
    finally:
        handle.remove()


def _sample(model: Any, energies: NDArray[np.float64], conditions: Mapping[str, NDArray[np.float64]],
            out: NDArray[np.float32], noise_size: int, batch_size: int, generator: torch.Generator, bf16: bool
            ) -> None:
    """The noise of each batch is drawn whole (as ``Bundle.generate`` draws it), then the network runs on
    blocks of :data:`CACHE_ROWS` rows: their activations stay in the CPU's cache (a GAN at batch 10000 ran
    at half its batch-100 rate per shower when each layer's 10000 x 400 activations left the cache).
    The model's weight average (if it keeps one) is used, as ``GenerativeModel.sample`` uses it."""
    with torch.inference_mode(), model.averaged_weights():
        for start in range(0, len(energies), batch_size):
            stop = min(start + batch_size, len(energies))
            noise = torch.randn(stop - start, noise_size, generator=generator)
            for first in range(start, stop, CACHE_ROWS):
                rows = slice(first, min(first + CACHE_ROWS, stop))
                e = torch.as_tensor(energies[rows], dtype=torch.float32)
                c = model.preprocessing.condition(e, {k: torch.as_tensor(v[rows]) for k, v in conditions.items()})
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), _fp32_between_layers(bf16):
                    x = model.sample_from_noise(c, noise[first - start : rows.stop - start])
                out[rows] = model.preprocessing.showers.inverse(x.float(), e).numpy()


def generate(bundle: Any, energies: ArrayLike, conditions: Mapping[str, ArrayLike] | None = None,
             precision: str = "fp32", batch_size: int = 10_000, seed: int = 0,
             device: str | torch.device = "cpu") -> ShowerSet:
    """``bundle.generate`` in the given precision (``auto`` resolved by :func:`choose_precision`).

    Raises:
        ConfigError: a precision this CPU or family cannot run (see :func:`check_precision`).
    """
    check_precision(precision, "torch", device)
    if precision == "auto":
        precision = choose_precision(bundle).precision
    if precision == "fp32":
        result: ShowerSet = bundle.generate(energies, conditions, batch_size=batch_size, device=device, seed=seed)
        return result
    size = _noise_size(bundle, precision)
    request = check_request(energies, conditions, seed=seed, batch_size=batch_size,
                            condition_names=bundle.condition_names, where=f"generate --precision {precision}")
    if precision == "int8":
        result = int8_generator(bundle).generate(request.energies, request.conditions, batch_size=request.batch_size,
                                                 seed=request.seed)
        return result

    def sample(k: int, part: Request) -> NDArray[np.float32]:
        block = np.empty((part.energies.size, bundle.geometry.n_voxels), dtype=np.float32)
        _sample(bundle.models[k].to("cpu").eval(), part.energies, part.conditions, block, size, part.batch_size,
                torch.Generator().manual_seed(part.seed + k), bf16=True)
        return block

    showers = generate_routed(request, bundle.splits, bundle.geometry.n_voxels, sample)
    if not showers.min() >= 0:  # the inverse preprocessing (fp32) clamps already: a read, not a clip's write
        np.maximum(showers, 0.0, out=showers)
    return ShowerSet(request.energies, showers, bundle.geometry, request.conditions)


@dataclass(frozen=True)
class Parity:
    """A reduced precision's showers against fp32's on the same noise, and the statistical yardstick.

    Attributes:
        precision: The reduced precision.
        chi2_ndf: Response (E_tot/E_inc) chi2/NDF against fp32, per incident energy, combined.
        max_separation: Largest separation power over the high-level features.
        feature: The feature with that separation.
        baseline_chi2_ndf: The same chi2/NDF between fp32 and fp32 on other noise (another seed); NaN without one.
        baseline_separation: The largest separation power between those two fp32 samples; NaN without one.
        accepted: chi2/NDF within max(:data:`CHI2_TOLERANCE`, baseline) and the separation within
            max(:data:`SEPARATION_TOLERANCE`, baseline): no further from fp32 than fp32 is from itself.
    """

    precision: str
    chi2_ndf: float
    max_separation: float
    feature: str
    baseline_chi2_ndf: float
    baseline_separation: float
    accepted: bool


def _distance(reference: ShowerSet, other: ShowerSet) -> tuple[float, float, str]:
    """(response chi2/NDF, largest separation power over the high-level features, that feature)."""
    ref, oth = compute_features(reference), compute_features(other)
    chi2 = response_chi2(reference.energies, ref.response, other.energies, oth.response)
    worst, feature = 0.0, ""
    for hist in feature_histograms(ref, oth):
        s = separation_power(hist.reference, hist.generated)
        if np.isfinite(s) and s > worst:
            worst, feature = float(s), hist.name
    return (chi2.chi2 / chi2.ndf if chi2.ndf > 0 else 0.0), worst, feature


def parity(reference: ShowerSet, reduced: ShowerSet, precision: str, baseline: ShowerSet | None = None) -> Parity:
    """Compare a reduced-precision sample with the fp32 one (same energies, same noise).

    Args:
        reference: The fp32 sample.
        reduced: The reduced-precision sample (same energies and noise).
        precision: Its name.
        baseline: An fp32 sample of the same energies on other noise: the statistical yardstick ("within errors").

    Uses :func:`caloforge.validation.metrics.chi2.response_chi2` and the separation power of
    every high-level feature (:func:`caloforge.validation.metrics.separation.feature_histograms`).
    """
    chi2_ndf, worst, feature = _distance(reference, reduced)
    base_chi2, base_sep = (float("nan"), float("nan"))
    if baseline is not None:
        base_chi2, base_sep, _ = _distance(reference, baseline)
    chi2_limit = max(CHI2_TOLERANCE, base_chi2) if baseline is not None else CHI2_TOLERANCE
    sep_limit = max(SEPARATION_TOLERANCE, base_sep) if baseline is not None else SEPARATION_TOLERANCE
    return Parity(precision, float(chi2_ndf), worst, feature, float(base_chi2), float(base_sep),
                  bool(chi2_ndf <= chi2_limit and worst <= sep_limit))


@dataclass(frozen=True)
class Choice:
    """What ``auto`` chose: the precision, the time per shower of each candidate, and their parity with fp32."""

    precision: str
    us_per_shower: dict[str, float]
    parities: tuple[Parity, ...]


def choose_precision(bundle: Any, n: int = 2000, seed: int = 0,
                     allowed: tuple[str, ...] = ("fp32", "bf16", "int8")) -> Choice:
    """The fastest precision this CPU runs natively whose showers stay within the tolerances of fp32.

    Candidates, among ``allowed``: fp32; bf16 where :func:`caloforge.runtime.hardware.use_bf16` finds it
    native and faster; int8 where ONNX Runtime is installed (``caloforge[onnx]``). Each is timed on ``n``
    showers of this bundle (log-uniform energies, fixed seed) and compared with fp32 by :func:`parity`
    (yardstick: fp32 on another seed); fp32 is chosen unless another is at least 10 % faster.
    """
    if bundle.models[0].noise_size() is None:
        return Choice("fp32", {}, ())
    lo, hi = bundle.energy_range
    energies = np.exp(np.random.default_rng(seed).uniform(np.log(lo), np.log(hi), n))
    conditions = {k: np.zeros(n) for k in bundle.condition_names}
    has_ort = importlib.util.find_spec("onnxruntime") is not None
    candidates = ["fp32", *(["bf16"] if "bf16" in allowed and hardware.use_bf16("cpu") else []),
                  *(["int8"] if "int8" in allowed and has_ort else [])]
    times, samples = {}, {}
    int8 = int8_generator(bundle, threads=torch.get_num_threads()) if "int8" in candidates else None
    for precision in candidates:
        def run(m: int, precision: str = precision) -> ShowerSet:
            c = {k: v[:m] for k, v in conditions.items()}
            if precision == "int8" and int8 is not None:
                out: ShowerSet = int8.generate(energies[:m], c, batch_size=n, seed=seed)
                return out
            return generate(bundle, energies[:m], c, precision, batch_size=n, seed=seed)

        run(64)  # warm-up
        start = time.perf_counter()
        samples[precision] = run(n)
        times[precision] = (time.perf_counter() - start) / n * 1e6
    baseline = generate(bundle, energies, conditions, "fp32", batch_size=n, seed=seed + 1)
    parities = tuple(parity(samples["fp32"], samples[p], p, baseline) for p in candidates if p != "fp32")
    accepted = ["fp32", *(p.precision for p in parities if p.accepted)]
    best = min(accepted, key=lambda p: times[p])
    return Choice(best if times[best] < 0.9 * times["fp32"] else "fp32", times, parities)


class ReducedGenerator:
    """A bundle generating in a reduced precision, called as :class:`~caloforge.deploy.onnx_runtime.OnnxGenerator` is.

    Args:
        bundle: The loaded bundle.
        precision: ``bf16`` or ``int8`` (resolve ``auto`` first with :func:`choose_precision`).
        threads: ONNX Runtime threads for int8.
    """

    def __init__(self, bundle: Any, precision: str, threads: int | None = None) -> None:
        check_precision(precision)
        _noise_size(bundle, precision)
        self.bundle, self.precision = bundle, precision
        self.geometry, self.condition_names = bundle.geometry, tuple(bundle.condition_names)
        self._int8 = int8_generator(bundle, threads) if precision == "int8" else None

    def generate(self, energies: ArrayLike, conditions: Mapping[str, ArrayLike] | None = None,
                 batch_size: int = 10_000, seed: int = 0) -> ShowerSet:
        """One shower per incident energy (MeV), in this generator's precision."""
        if self._int8 is not None:
            out: ShowerSet = self._int8.generate(energies, conditions, batch_size=batch_size, seed=seed)
            return out
        return generate(self.bundle, energies, conditions, self.precision, batch_size=batch_size, seed=seed)
