"""Data commands: ``info`` and ``env``."""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import typer
from rich.table import Table

from caloforge._version import __version__
from caloforge.cli.common import GEOMETRY_HELP, console, examples, friendly_errors

__all__ = ["register"]



@friendly_errors
def info(
    file: Path = typer.Argument(..., help="A CaloChallenge HDF5 file."),
    geometry: str | None = typer.Option(None, "--geometry", "-g", help=GEOMETRY_HELP),
) -> None:
    """Summarise a shower file: counts, energies, response per energy, sparsity, conditions."""
    # CLI start-up time: loaded when the command runs, not for --help
    from caloforge.data.summary import summarize

    s = summarize(file, geometry)
    presets = ", ".join(s.matching_presets) or "none"
    console.print(f"[bold]{s.path}[/bold]")
    geometry_label = f"{s.geometry.name} (hash {s.geometry.hash})"
    console.print(f"  showers: {s.n_showers}   voxels: {s.n_voxels}   geometry: {geometry_label}")
    console.print(f"  presets with {s.n_voxels} voxels: {presets}")
    kind = f"{len(s.groups)} distinct" if s.discrete else f"continuous, {len(s.groups)} log bins"
    console.print(f"  incident energies: {s.energy_min:.6g} - {s.energy_max:.6g} MeV ({kind})")
    table = Table("E_inc [MeV]" if s.discrete else "E_inc bin [MeV]", "showers", "<E_tot/E_inc>", "RMS(E_tot/E_inc)")
    for g in s.groups:
        label = f"{g.low:.6g}" if s.discrete else f"{g.low:.4g} - {g.high:.4g}"
        table.add_row(label, str(g.count), f"{g.response_mean:.4f}", f"{g.response_rms:.4f}")
    console.print(table)
    console.print(f"  mean sparsity (fraction of empty voxels): {s.mean_sparsity:.4f}")
    console.print(f"  voxel energy: min {s.voxel_min:.6g} MeV, max {s.voxel_max:.6g} MeV")
    if s.conditions:
        for name, (lo, hi) in s.conditions.items():
            console.print(f"  condition {name}: {lo:.6g} - {hi:.6g}")
    else:
        console.print("  extra conditions: none")


def _version_of(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def env() -> None:
    """Print the machine (CPU, vector unit, bf16, measured speed, threads) and library versions, for bug reports."""
    # torch's import time (about 2 s): only `caloforge env` needs it
    import torch

    # runtime.hardware imports torch (its import time)
    from caloforge.runtime.hardware import cpu_info, machine_summary, recommended_threads, use_bf16

    info = cpu_info()
    measured = machine_summary("cpu")
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    rows = [
        ("caloforge", __version__),
        ("python", sys.version.split()[0]),
        ("platform", platform.platform()),
        ("CPU model", info.model),
        ("CPU vector unit", f"{info.vector} (torch code path: {info.torch_capability})"),
        ("bfloat16", "native" if info.bf16_native else "not native (emulated: caloforge uses float32)"),
        ("fp32 matmul", f"{measured.fp32_gflops:.0f} GFLOP/s ({measured.threads} threads)"),
        ("bf16 matmul", f"{measured.bf16_gflops:.0f} GFLOP/s" if measured.bf16_gflops else "not measured (not native)"),
        ("bf16 autocast used on CPU", "yes" if use_bf16("cpu") else "no"),
        ("usable CPUs / load average", f"{info.cpus} / {load}"),
        ("threads caloforge uses", f"{recommended_threads()} (override with --threads)"),
        ("torch", torch.__version__),
        ("CUDA available", str(torch.cuda.is_available())),
    ]
    if torch.cuda.is_available():
        rows += [(f"cuda:{i}", torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count())]
        rows.append(("CUDA version", str(torch.version.cuda)))
    for package in ("numpy", "scipy", "h5py", "lightning", "safetensors", "scikit-learn", "matplotlib", "mplhep",
                    "zuko", "onnx", "onnxruntime", "ray", "optuna", "typer", "rich"):
        rows.append((package, _version_of(package)))
    table = Table("component", "version", title="caloforge environment")
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the data commands to ``app``."""
    app.command(epilog=examples("caloforge info train.h5", "caloforge info showers.h5 -g binning_dataset_2.xml"))(info)
    app.command(epilog=examples("caloforge env"))(env)
