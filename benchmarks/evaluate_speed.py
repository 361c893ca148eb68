"""Speed of ``caloforge evaluate`` on 2 x N showers of a dataset (targets: ds1 photons fast <= 1 min, full <= 10 min;
10k vs 10k fast: ds2 <= 3 min, ds3 <= 10 min, on 2 cores).

Simulates a reference and an independent "generated" sample with the reference simulator (ds2/ds3:
``caloforge simulate -p electron``, the GFLASH mode), prints the time of each stage from metrics.json,
writes them as CaloChallenge files, then times the ``caloforge evaluate`` command end to end
(reading the files, every metric, the plots and the report) in each requested mode.

    python benchmarks/evaluate_speed.py --n 100000 --modes fast,full --threads 2
    python benchmarks/evaluate_speed.py --dataset ds2 --n 10000 --modes fast --threads 2

Timings depend on the machine and on its load: run it on an otherwise idle machine (on a loaded one, compare
the CPU seconds it prints). ``--threads`` sets ``OMP_NUM_THREADS``: torch's threads, numpy's BLAS threads and
the processes that draw the report's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from caloforge.runtime.hardware import cpu_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="showers per sample")
    parser.add_argument("--dataset", default="ds1-photons", choices=["ds1-photons", "ds2", "ds3"])
    parser.add_argument("--modes", default="fast,full", help="comma-separated: fast, full")
    parser.add_argument("--threads", type=int, default=2, help="torch / BLAS threads (the target is 2 cores)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to put the files (default: a temp dir)")
    parser.add_argument("--extra", default="", help="extra arguments for caloforge evaluate, e.g. '--fp32'")
    args = parser.parse_args()

    from caloforge.data.io import write
    from caloforge.refsim import simulate

    work = args.workdir or Path(tempfile.mkdtemp(prefix="caloforge-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    energies = 2.0 ** np.arange(8, 23)  # the 15 dataset-1 photon energies, 256 MeV - 4.2 TeV
    rng = np.random.default_rng(0)
    files = {}
    for name, seed in (("reference", 1), ("generated", 2)):
        path = work / f"{name}.h5"
        if not path.exists():
            start = time.perf_counter()
            if args.dataset == "ds1-photons":
                write(path, simulate("ds1-photons", "photon", rng.choice(energies, args.n), seed=seed))
            else:
                subprocess.run([sys.executable, "-c", "from caloforge.cli import app; app()", "simulate", "-g",
                                args.dataset, "-p", "electron", "--n", str(args.n), "-o", str(path), "--seed",
                                str(seed)], check=True, stdout=subprocess.DEVNULL)
            print(f"simulated {name}: {args.n} showers in {time.perf_counter() - start:.1f} s")
        files[name] = path
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               MPLCONFIGDIR=str(work / "mpl"))
    print(f"machine: {platform.node()} ({cpu_info().model}, {os.cpu_count()} CPUs visible, "
          f"{args.threads} threads used), "
          f"python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}")
    for mode in args.modes.split(","):
        out = work / f"report-{mode}"
        command = [sys.executable, "-c", "from caloforge.cli import app; app()", "evaluate",
                   "--reference", str(files["reference"]),
                   "--generated", str(files["generated"]), "--out", str(out), "--mode", mode, "--force",
                   *args.extra.split()]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command and its figure processes
        cpu_s = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        print(f"caloforge evaluate --mode {mode} on 2 x {args.n} {args.dataset} showers: {elapsed:.1f} s wall, "
              f"{cpu_s:.1f} s CPU (user + sys; what a loaded machine distorts least) "
              f"(load average now {os.getloadavg()[0]:.2f}); report in {out}")
        timings = json.loads((out / "metrics.json").read_text())["timings_s"]
        print("  stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


if __name__ == "__main__":
    main()
