"""Peak memory and wall time of caloforge commands on dataset-3-sized files (issue "Real files at full size").

What it measures: a CaloChallenge dataset-3 shower is 40500 voxels, 162 kB as float32, so 20000
showers are 3.2 GB and 50000 are 8 GB. The benchmark makes (or reuses) a reference and an
independent "generated" file of N showers with the reference simulator (``caloforge simulate -g ds3
-p electron``, which writes chunk by chunk), then runs each measured command as a child process and
reports its peak resident memory (``ru_maxrss`` of that child, from ``os.wait4`` after it exits) and
its wall time, next to the file size, the float32 size of the showers, the machine's CPU model
(``lscpu``) and its load. The commands measured:

* ``simulate``: writing one file (only when it is made, not when reused);
* ``evaluate-fast``: ``caloforge evaluate --mode fast`` (the files are streamed: the peak must not
  grow with N x 40500);
* ``evaluate-full``: ``--mode full`` with a small classifier budget (``--classifier-minutes``,
  ``--classifier-showers``; PRDC on its 5000-shower subsample);
* ``train``: ``caloforge train`` of the GAN on the reference file for ``--train-iterations``
  iterations (streamed batches, the validation split, two checkpoint selections).

The result is written as JSON (atomically; an existing file is kept unless ``--force``) and printed
as a table. How to run (2 threads, the size of the issue; generating 2 x 20000 showers takes minutes)::

    python benchmarks/memory_ds3.py --workdir /tmp/ds3 --out ds3_memory.json
    python benchmarks/memory_ds3.py --n 5000 --workdir /tmp/ds3-5k --out ds3_memory_5k.json
    python benchmarks/memory_ds3.py --workdir /tmp/ds3 --reuse --commands evaluate-fast --out again.json

Add a command by writing a function ``(args, files) -> argv`` and listing it in :data:`COMMANDS`
(``train`` is one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from caloforge.runtime.hardware import cpu_info

CALOFORGE = [sys.executable, "-c", "from caloforge.cli import app; app()"]
VOXELS = 40500  # the ds3 preset


@dataclass(frozen=True)
class Measurement:
    """One command: peak resident memory of its process (bytes) and wall time (s)."""

    command: str
    peak_rss_bytes: int
    wall_s: float
    exit_code: int
    load_1min_at_start: float
    argv: list[str]


def measure(argv: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> tuple[int, float, int]:
    """Run ``argv`` to its end; (peak RSS in bytes, wall seconds, exit code) of that child alone.

    ``os.wait4`` reports the child's own ``ru_maxrss`` (kB on Linux), so measurements taken one after
    another do not mix (``RUSAGE_CHILDREN`` would keep the largest of all children so far).
    """
    out = log.open("w") if log is not None else subprocess.DEVNULL
    try:
        start = time.perf_counter()
        child = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]
    return int(usage.ru_maxrss) * 1024, wall, child.returncode


def simulate_command(path: Path, n: int, seed: int, jobs: int) -> list[str]:
    """``caloforge simulate`` of n dataset-3 electrons (log-uniform 1 GeV - 1 TeV) into ``path``, chunk by chunk."""
    return [*CALOFORGE, "simulate", "-g", "ds3", "-p", "electron", "-n", str(n), "-o", str(path),
            "--seed", str(seed), "--jobs", str(jobs), "--force"]


def evaluate_fast(args: argparse.Namespace, files: dict[str, Path]) -> list[str]:
    """``caloforge evaluate --mode fast`` of the generated file against the reference file."""
    return [*CALOFORGE, "evaluate", "-r", str(files["reference"]), "-i", str(files["generated"]),
            "--out", str(args.workdir / "report-fast"), "--mode", "fast", "--threads", str(args.threads), "--force"]


def evaluate_full(args: argparse.Namespace, files: dict[str, Path]) -> list[str]:
    """``caloforge evaluate --mode full`` with a small classifier budget and subset (PRDC on 5000 showers)."""
    return [*CALOFORGE, "evaluate", "-r", str(files["reference"]), "-i", str(files["generated"]),
            "--out", str(args.workdir / "report-full"), "--mode", "full", "--threads", str(args.threads),
            "--classifier-minutes", str(args.classifier_minutes), "--classifier-showers", str(args.classifier_showers),
            "--device", "cpu", "--force"]


def train(args: argparse.Namespace, files: dict[str, Path]) -> list[str]:
    """``caloforge train`` of the GAN (CPU preset) on the reference file: the showers are streamed (the
    file is larger than the 1 GiB that is kept resident), the validation split is read once, and the
    checkpoint selection generates its validation sample; ``--train-iterations`` bounds the time."""
    run = args.workdir / f"train-run-{int(time.time())}"
    return [*CALOFORGE, "train", "--data", str(files["reference"]), "--family", "gan", "--geometry", "ds3",
            "--out", str(run), "--max-iterations", str(args.train_iterations),
            "--checkpoint-every", str(max(args.train_iterations // 2, 1)), "--threads", str(args.threads),
            "--device", "cpu", "--no-progress"]


COMMANDS: dict[str, Callable[[argparse.Namespace, dict[str, Path]], list[str]]] = {
    "evaluate-fast": evaluate_fast,
    "evaluate-full": evaluate_full,
    "train": train,
}


def make_files(args: argparse.Namespace, env: dict[str, str]) -> tuple[dict[str, Path], list[Measurement]]:
    """The reference (seed 1) and generated (seed 2) files: made with ``caloforge simulate``, or reused."""
    files, made = {}, []
    for name, seed in (("reference", 1), ("generated", 2)):
        path = args.workdir / f"ds3-{name}-{args.n}.h5"
        files[name] = path
        if args.reuse and path.exists():
            print(f"reusing {path}")
            continue
        if path.exists() and not args.force:
            sys.exit(f"{path} exists: pass --reuse to measure with it or --force to make it again")
        argv = simulate_command(path, args.n, seed, args.jobs)
        print(f"simulating {args.n} showers into {path} ...", flush=True)
        load = os.getloadavg()[0]
        rss, wall, code = measure(argv, env, args.workdir / f"simulate-{name}.log")
        if code != 0:
            sys.exit(f"simulate failed (exit {code}); see {args.workdir / f'simulate-{name}.log'}")
        made.append(Measurement(f"simulate-{name}", rss, wall, code, load, argv))
    return files, made


def write_json(path: Path, payload: dict[str, object], force: bool) -> None:
    """Write ``payload`` atomically (a temporary file renamed into place); never overwrite without ``force``."""
    if path.exists() and not force:
        sys.exit(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        json.dump(payload, tmp, indent=2)
        tmp.write("\n")
    Path(tmp.name).replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="showers per file (default 20000)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "caloforge-ds3",
                        help="where the files and reports go")
    parser.add_argument("--reuse", action="store_true", help="measure with existing files of this size")
    parser.add_argument("--commands", default="evaluate-fast,evaluate-full,train",
                        help=f"comma list among {', '.join(COMMANDS)}")
    parser.add_argument("--threads", type=int, default=2, help="torch / BLAS threads of the measured commands")
    parser.add_argument("--jobs", type=int, default=2, help="simulation worker processes")
    parser.add_argument("--classifier-minutes", type=float, default=2.0, help="full mode: --classifier-minutes")
    parser.add_argument("--classifier-showers", type=int, default=2000, help="full mode: --classifier-showers")
    parser.add_argument("--train-iterations", type=int, default=200, help="train: --max-iterations")
    parser.add_argument("--out", type=Path, default=None, help="JSON result (default: WORKDIR/memory_ds3-N.json)")
    parser.add_argument("--force", action="store_true", help="overwrite the result and remake files")
    args = parser.parse_args()
    names = [c.strip() for c in args.commands.split(",") if c.strip()]
    unknown = sorted(set(names) - set(COMMANDS))
    if unknown:
        sys.exit(f"unknown commands {unknown}; expected among {sorted(COMMANDS)}")
    out = args.out or args.workdir / f"memory_ds3-{args.n}.json"
    if out.exists() and not args.force:
        sys.exit(f"{out} exists; pass --force to overwrite it")
    args.workdir.mkdir(parents=True, exist_ok=True)
    threads = str(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads,
               MPLCONFIGDIR=str(args.workdir / "mpl"))

    files, rows = make_files(args, env)
    for name in names:
        argv = COMMANDS[name](args, files)
        print(f"running {name} ...", flush=True)
        load = os.getloadavg()[0]
        rss, wall, code = measure(argv, env, args.workdir / f"{name}.log")
        rows.append(Measurement(name, rss, wall, code, load, argv))
        if code != 0:
            print(f"{name} failed (exit {code}); see {args.workdir / f'{name}.log'}")

    showers_bytes = args.n * VOXELS * 4
    payload = {
        "benchmark": "memory_ds3", "n_showers": args.n, "n_voxels": VOXELS,
        "showers_float32_bytes": showers_bytes,
        "file_bytes": {name: path.stat().st_size for name, path in files.items()},
        "cpu": cpu_info().model, "cpus_visible": os.cpu_count(), "threads": args.threads,
        "load_average_1min": os.getloadavg()[0], "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "measurements": [asdict(m) for m in rows],
    }
    write_json(out, payload, args.force)
    print(f"\n{args.n} showers x {VOXELS} voxels: {showers_bytes / 2**30:.2f} GiB as float32 per file; files "
          + ", ".join(f"{name} {path.stat().st_size / 2**20:.0f} MiB" for name, path in files.items()))
    print(f"CPU: {payload['cpu']} ({os.cpu_count()} visible, {args.threads} threads), load {os.getloadavg()[0]:.1f}")
    print(f"{'command':<20} {'peak RSS':>10} {'RSS / 1 file':>14} {'wall':>9} {'load':>5} {'exit':>5}")
    for m in rows:
        print(f"{m.command:<20} {m.peak_rss_bytes / 2**30:6.2f} GiB {m.peak_rss_bytes / showers_bytes:13.1%} "
              f"{m.wall_s:8.1f}s {m.load_1min_at_start:5.1f} {m.exit_code:>5}")
    print(f"result: {out}")


if __name__ == "__main__":
    main()
