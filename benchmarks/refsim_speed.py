"""Speed and memory of the reference simulator (caloforge.refsim).

Measures showers per second on one core (one process) for the dataset-1 photon and
pion spectra and for ds2/ds3 electrons (log-uniform 1 GeV - 1 TeV), and the peak
resident memory of a chunked file write of many showers, run in a fresh process.

    .venv/bin/python benchmarks/refsim_speed.py            # full (≈1-2 min)
    .venv/bin/python benchmarks/refsim_speed.py --quick    # smaller samples

Targets (issue 3): ≥ 2000 showers/s/core for ds1 photons, ≥ 50 showers/s/core for ds3.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from caloforge.data.geometry import Geometry
from caloforge.refsim import Spectrum, simulate, simulate_to_file
from caloforge.refsim.spectra import default_spectrum


def _rate(geometry: str, particle: str, n: int, seed: int = 0) -> float:
    g = Geometry.preset(geometry)
    energies = default_spectrum(g).sample(n, np.random.default_rng(seed))
    simulate(g, particle, energies[: min(n, 64)], seed=seed)  # warm-up: imports, caches
    start = time.perf_counter()
    simulate(g, particle, energies, seed=seed)
    return n / (time.perf_counter() - start)


def _peak_rss_mib() -> float:
    """Peak resident memory of this process, MiB: VmHWM on Linux (ru_maxrss survives exec there)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write_child(path: str, n: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    simulate("ds1-photons", "photon", [1e3], seed=0)  # imports and caches, as before any write
    before = _peak_rss_mib()
    start = time.perf_counter()
    simulate_to_file(path, "ds1-photons", "photon", n, seed=1, spectrum=Spectrum("ds1"))
    elapsed = time.perf_counter() - start
    queue.put((before, _peak_rss_mib(), elapsed))


def _peak_memory(n: int) -> tuple[float, float, float, float]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "large.h5")
        proc = ctx.Process(target=_write_child, args=(path, n, queue))
        proc.start()
        before, peak, elapsed = queue.get()
        proc.join()
        size = Path(path).stat().st_size / 2**20 if Path(path).exists() else float("nan")
    return before, peak, elapsed, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller samples")
    parser.add_argument("--large", type=int, default=None, help="showers in the memory test (default 200000)")
    args = parser.parse_args()
    scale = 0.25 if args.quick else 1.0
    cases = [
        ("ds1-photons", "photon", "ds1 spectrum", int(20000 * scale)),
        ("ds1-pions", "pion", "ds1 spectrum", int(10000 * scale)),
        ("ds2", "electron", "1 GeV-1 TeV", int(2000 * scale)),
        ("ds3", "electron", "1 GeV-1 TeV", int(400 * scale)),
    ]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print("| geometry | particle | spectrum | showers | showers/s/core |")
    print("|---|---|---|---|---|")
    for geometry, particle, spectrum, n in cases:
        print(f"| {geometry} | {particle} | {spectrum} | {n} | {_rate(geometry, particle, n):.0f} |", flush=True)
    n_large = args.large or (50_000 if args.quick else 200_000)
    before, peak, elapsed, size = _peak_memory(n_large)
    in_ram = n_large * Geometry.preset("ds1-photons").n_voxels * 4 / 2**20
    print(
        f"\nchunked write of {n_large} ds1-photon showers: {elapsed:.1f} s ({n_large / elapsed:.0f}/s incl. gzip), "
        f"file {size:.0f} MiB; peak RSS {peak:.0f} MiB (after imports {before:.0f} MiB); "
        f"the showers alone would need {in_ram:.0f} MiB in RAM"
    )


if __name__ == "__main__":
    main()
