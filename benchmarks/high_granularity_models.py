"""Sizes and CPU cost of the model families at high granularity (datasets 2 and 3), without training a run.

For each family and preset: the parameter count, the bytes a run would write (two checkpoints
with Adam's moments and a bundle, :func:`caloforge.models.base.run_bytes`; refused above
``MAX_RUN_BYTES``), the size of a real bundle and of a real checkpoint-like file (weights plus
Adam state, ``torch.save``), the seconds per training iteration (after two warm-up iterations)
and the milliseconds per generated shower. Showers from the reference simulator (GFLASH mode).

    OMP_NUM_THREADS=1 python benchmarks/high_granularity_models.py --dataset ds2 --families latent,diffusion
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from caloforge.errors import ConfigError
from caloforge.models import FAMILIES
from caloforge.models.base import Batch, check_model_size, run_bytes
from caloforge.models.preprocess import Preprocessing
from caloforge.refsim import simulate
from caloforge.training.bundle_format import save_model


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def measure(family: str, preset: str, data, iterations: int, n_generate: int) -> str:
    model_class = FAMILIES[family]
    config = model_class.config_class.for_preset(preset, "electron").for_geometry(data.geometry)  # type: ignore[arg-type]
    preprocessing = Preprocessing.fit(data, config.preprocessing)
    try:
        check_model_size(model_class, config, preprocessing)
    except ConfigError as err:
        return f"{family:10s} {preset:5s} refused: {err}"
    torch.manual_seed(0)
    model = model_class(config, preprocessing)
    n_params = sum(p.numel() for p in model.parameters())
    n_buffers = sum(b.numel() for b in model.buffers())
    rng = np.random.default_rng(0)

    def batch() -> Batch:
        rows = rng.integers(0, len(data), config.batch_size)
        return Batch(torch.tensor(data.energies[rows], dtype=torch.float32), torch.tensor(data.showers[rows]))

    optimizers = model.configure_optimizers()
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(iterations + 2 if iterations else 1):  # 0: one step (the Adam state exists), not timed
        start = time.perf_counter()
        model.train_step(batch, optimizers, lambda loss: loss.backward(), generator)
        times.append(time.perf_counter() - start)
    per_iteration = float(np.median(times[2:])) if iterations else float("nan")
    per_shower_ms = float("nan")
    if n_generate:
        start = time.perf_counter()
        model.sample(torch.tensor(data.energies[:n_generate]), None, torch.Generator().manual_seed(1))
        per_shower_ms = 1e3 * (time.perf_counter() - start) / n_generate
    with tempfile.TemporaryDirectory() as tmp:
        bundle = _size(save_model(Path(tmp) / "bundle", model, family, data.geometry))
        state = {"model": model.state_dict(), "optimizers": [o.state_dict() for o in optimizers]}
        torch.save(state, Path(tmp) / "state.pt")
        checkpoint = _size(Path(tmp) / "state.pt")
    written = run_bytes(n_params, n_buffers) / 1e6
    return (f"{family:10s} {preset:5s} params={n_params / 1e6:.2f}M  run<={written:.0f}MB  "
            f"bundle={bundle / 1e6:.1f}MB  checkpoint={checkpoint / 1e6:.1f}MB  batch={config.batch_size}  "
            f"s/iteration={per_iteration:.2f}  ms/shower(generate {n_generate})={per_shower_ms:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ds2", choices=["ds2", "ds3"])
    parser.add_argument("--families", default="latent,diffusion")
    parser.add_argument("--presets", default="cpu,paper")
    parser.add_argument("--n-showers", type=int, default=2000)
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations (0: sizes only)")
    parser.add_argument("--generate", type=int, default=1000, help="showers generated for the timing (0: none)")
    args = parser.parse_args()
    energies = np.exp(np.random.default_rng(0).uniform(np.log(1e3), np.log(1e6), args.n_showers))
    data = simulate(args.dataset, "electron", energies, seed=0)
    print(f"{args.dataset}: {data.geometry.n_voxels} voxels, {len(data)} showers, {torch.get_num_threads()} threads")
    for family in args.families.split(","):
        for preset in args.presets.split(","):
            print(measure(family, preset, data, args.iterations, args.generate), flush=True)


if __name__ == "__main__":
    main()
