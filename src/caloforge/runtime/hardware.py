"""What this machine can do: CPU model and vector capability, native bfloat16, measured throughput, threads.

Machines differ: on a CPU with AVX-512 BF16 or AMX, bfloat16 autocast doubles the
throughput of dense layers; on an AVX2-only CPU it is emulated and was measured 67x
*slower* than float32. caloforge therefore never uses a precision or a thread count
because it was fast on one machine: it detects the capability and measures.

* :func:`cpu_info` reads the CPU model, its flags and torch's vector capability.
* :func:`matmul_gflops` times a dense matrix product (float32 or bfloat16).
* :func:`use_bf16` is the one place deciding bfloat16 autocast: on CUDA when the device
  supports it, on a CPU only where bf16 is native *and* measured at least
  :data:`BF16_MIN_SPEEDUP` times faster than float32 (measured once per process).
* :func:`recommended_threads` is the one place choosing a thread count: the cores this
  process may use minus those other processes keep busy (a loaded 2-core machine ran 30
  pion training iterations in 92 s with 2 threads and in 16 s with 1).

Example:
    >>> info = cpu_info()
    >>> info.vector in ("AMX", "AVX-512", "AVX2", "AVX", "NEON", "SVE", "baseline")
    True
"""

from __future__ import annotations

import functools
import os
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from caloforge.errors import ConfigError

__all__ = [
    "BF16_MIN_SPEEDUP",
    "CpuInfo",
    "MachineSummary",
    "best_seconds",
    "busy_cpus",
    "cpu_info",
    "machine_summary",
    "matmul_gflops",
    "peak_gflops",
    "recommended_threads",
    "resolve_device",
    "use_bf16",
]

BF16_MIN_SPEEDUP = 1.3
"""bfloat16 autocast is used on a CPU only when it is measured at least this much faster than float32."""

_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX-512 BF16, Intel AMX, aarch64 BF16


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as this process sees it.

    Attributes:
        model: The model name (``lscpu``'s "Model name"), or the platform's processor string.
        cpus: Logical CPUs this process may run on.
        flags: The CPU feature flags (``/proc/cpuinfo``; empty where unavailable).
        torch_capability: The vector code path torch uses (``torch.backends.cpu.get_cpu_capability()``).
    """

    model: str
    cpus: int
    flags: frozenset[str]
    torch_capability: str

    @property
    def vector(self) -> str:
        """The widest vector unit: ``AMX``, ``AVX-512``, ``AVX2``, ``AVX``, ``SVE``, ``NEON`` or ``baseline``."""
        f = self.flags
        if "amx_tile" in f or "amx_bf16" in f:
            return "AMX"
        if "avx512f" in f or self.torch_capability.startswith("AVX512"):
            return "AVX-512"
        if "avx2" in f or self.torch_capability == "AVX2":
            return "AVX2"
        if "avx" in f:
            return "AVX"
        if "sve" in f or self.torch_capability.startswith("SVE"):
            return "SVE"
        if "asimd" in f or platform.machine() in ("arm64", "aarch64"):
            return "NEON"
        return "baseline"

    @property
    def bf16_native(self) -> bool:
        """Whether the CPU executes bfloat16 arithmetic in hardware (AVX-512 BF16, AMX or ARM BF16)."""
        return any(flag in self.flags for flag in _BF16_FLAGS)


def _cpuinfo_fields() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty off Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@functools.cache
def cpu_info() -> CpuInfo:
    """Model, usable CPUs, feature flags and torch's vector capability of this machine (cached)."""
    fields = _cpuinfo_fields()
    model = fields.get("model name") or fields.get("cpu model") or platform.processor() or platform.machine()
    flags = frozenset((fields.get("flags") or fields.get("features") or "").split())
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        capability = "unknown"
    return CpuInfo(re.sub(r"\s+", " ", model).strip() or "unknown", _available_cpus(), flags, capability)


def matmul_gflops(dtype: torch.dtype = torch.float32, size: int = 1024, min_seconds: float = 0.15,
                  device: str | torch.device = "cpu") -> float:
    """Measured dense matrix-product throughput, GFLOP/s (best of repeated products of ``size`` x ``size``).

    bfloat16 is timed under autocast, as the classifier and models use it. The first
    product is a warm-up; products repeat until ``min_seconds`` have passed.

    Example:
        >>> matmul_gflops(size=64, min_seconds=0.01) > 0
        True
    """
    dev = torch.device(device)
    generator = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(size, size, generator=generator, device=dev)
    b = torch.randn(size, size, generator=generator, device=dev)
    autocast = dtype == torch.bfloat16

    def product() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
            torch.mm(a, b)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    with torch.inference_mode():
        return 2.0 * size**3 / best_seconds(product, min_seconds) / 1e9


def best_seconds(call: Callable[[], object], min_seconds: float) -> float:
    """The fastest of repeated calls of ``call``, s: one warm-up call, then calls until ``min_seconds`` have passed.

    Example:
        >>> best_seconds(lambda: sum(range(100)), 0.001) > 0
        True
    """
    call()
    best, spent = float("inf"), 0.0
    while spent < min_seconds:
        start = time.perf_counter()
        call()
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return best


PEAK_SIZES = (128, 256, 384, 512, 1024)
"""Square matmul sizes probed by :func:`peak_gflops`: small ones stay in cache, as a small model's layers do."""


def peak_gflops(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                min_seconds: float = 0.05, sizes: tuple[int, ...] = PEAK_SIZES) -> float:
    """The machine's dense matmul limit, GFLOP/s: the best :func:`matmul_gflops` over several sizes.

    One 1024 x 1024 float32 product (12 MiB of operands) spills the L2 cache of most CPUs and was
    measured at 40 GFLOP/s on one AMD EPYC thread where 256-384 reached 100: a small model's
    cache-resident layers then ran at "104 %" of that limit. The best over sizes is the limit.

    Example:
        >>> peak_gflops(sizes=(32, 64), min_seconds=0.005) > 0
        True
    """
    return max(matmul_gflops(dtype, size=n, min_seconds=min_seconds, device=device) for n in sizes)


@functools.cache
def _cpu_bf16_speedup() -> float:
    """bfloat16 over float32 matmul throughput on this CPU; 0 where bf16 is not native (never timed there)."""
    if not cpu_info().bf16_native:
        return 0.0
    return matmul_gflops(torch.bfloat16) / matmul_gflops(torch.float32)


def use_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether bfloat16 autocast pays on ``device``: the one rule every caller follows.

    CUDA: when the GPU supports bfloat16. CPU: only when bf16 is native (see
    :attr:`CpuInfo.bf16_native`) and a short calibration (measured once per process)
    shows it at least :data:`BF16_MIN_SPEEDUP` times faster than float32; never on an
    emulating CPU, where it can be 67x slower.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if dev.type != "cpu":
        return False
    return _cpu_bf16_speedup() >= BF16_MIN_SPEEDUP


def _cpu_times() -> dict[int, tuple[int, int]]:
    """(busy, total) jiffies per logical CPU from ``/proc/stat`` (empty off Linux)."""
    try:
        lines = Path("/proc/stat").read_text(encoding="ascii").splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            values = [int(v) for v in fields]
            idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
            out[int(name[3:])] = (sum(values) - idle, sum(values))
    return out


def busy_cpus(interval_s: float = 0.2) -> float:
    """How many of this process's CPUs other work keeps busy now, measured over ``interval_s``.

    Read from ``/proc/stat`` (per CPU, so a container sees its own CPUs); where that is
    unavailable, the 1-minute load average, which lags by about a minute.
    """
    allowed = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    before = _cpu_times()
    if before:
        time.sleep(interval_s)
        after = _cpu_times()
        busy = 0.0
        for cpu, (b0, t0) in before.items():
            if (allowed is None or cpu in allowed) and cpu in after and after[cpu][1] > t0:
                busy += (after[cpu][0] - b0) / (after[cpu][1] - t0)
        return busy
    try:
        return float(os.getloadavg()[0])
    except OSError:
        return 0.0


def recommended_threads() -> int:
    """Threads for torch: the usable CPUs minus those other work keeps busy now, at least 1.

    An explicit ``OMP_NUM_THREADS`` wins. The free capacity is rounded to the nearest whole
    core: oversubscribing a loaded machine costs far more than leaving a core idle.

    Example:
        >>> recommended_threads() >= 1
        True
    """
    explicit = os.environ.get("OMP_NUM_THREADS", "")
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    cpus = cpu_info().cpus
    return max(1, min(cpus, round(cpus - busy_cpus())))


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` when present.

    Raises:
        ConfigError: for another name, or a device this machine does not have (no GPU, or N >= the GPU count).
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        msg = f"expected a device 'auto', 'cpu' or 'cuda[:N]' but got {device!r}"
        raise ConfigError(msg) from err
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            msg = f"expected a CUDA device but none is available, for device '{device}'; use --device cpu (or auto)"
            raise ConfigError(msg)
        if dev.index is not None and dev.index >= count:
            msg = f"expected a CUDA device index from 0 to {count - 1} but got '{device}'; this machine has {count}"
            raise ConfigError(msg)
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        msg = f"expected an Apple MPS device but none is available, for device '{device}'; use --device cpu"
        raise ConfigError(msg)
    elif dev.type not in ("cpu", "cuda", "mps"):
        msg = f"expected a device 'auto', 'cpu' or 'cuda[:N]' but got {device!r}"
        raise ConfigError(msg)
    return dev


@dataclass(frozen=True)
class MachineSummary:
    """What a timing depends on: recorded with every speed figure caloforge reports."""

    cpu_model: str
    vector: str
    bf16_native: bool
    cpus: int
    threads: int
    fp32_gflops: float
    bf16_gflops: float | None
    device: str

    def describe(self) -> str:
        """One line, e.g. ``AMD EPYC (AVX-512, bf16 native), 2 CPUs, 2 threads, fp32 150 GFLOP/s``."""
        bf16 = "bf16 native" if self.bf16_native else "bf16 emulated"
        speed = f"fp32 {self.fp32_gflops:.0f} GFLOP/s"
        if self.bf16_gflops is not None:
            speed += f", bf16 {self.bf16_gflops:.0f} GFLOP/s"
        return f"{self.cpu_model} ({self.vector}, {bf16}), {self.cpus} CPUs, {self.threads} threads, {speed}"


def machine_summary(device: str | torch.device = "cpu", min_seconds: float = 0.05) -> MachineSummary:
    """Describe and measure this machine (about half a second): CPU, capability, threads, matmul limits.

    The limits are :func:`peak_gflops` (the best over matmul sizes), fp32 and, where native, bf16.

    bfloat16 is timed only where it is native (timing an emulated bf16 could take minutes).
    """
    info = cpu_info()
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    bf16 = info.bf16_native if dev.type == "cpu" else use_bf16(dev)
    return MachineSummary(
        cpu_model=info.model, vector=info.vector, bf16_native=info.bf16_native, cpus=info.cpus,
        threads=torch.get_num_threads(), fp32_gflops=peak_gflops(torch.float32, dev, min_seconds),
        bf16_gflops=peak_gflops(torch.bfloat16, dev, min_seconds) if bf16 else None,
        device=name,
    )
