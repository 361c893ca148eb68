"""Model commands: ``train``, ``distill`` (a one-pass student of a flow) and ``generate``.

Precedence of settings: the defaults, then ``--config cfg.yaml``, then flags. A config
file has two optional sections::

    model:        # keys of the family's config, e.g. GANConfig
      batch_size: 256
      critic_steps: 5
    training:     # keys of caloforge.training.loop.train
      max_minutes: 5
      checkpoint_every: 50
      split_energies: [4100, 262000]
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import typer

from caloforge.cli.common import (
    DEVICE,
    FAMILY,
    GEOMETRY_HELP,
    THREADS_HELP,
    Preset,
    apply_threads,
    cli_progress,
    console,
    device_name,
    examples,
    friendly_errors,
    parse_floats,
)
from caloforge.errors import ConfigError

if TYPE_CHECKING:
    from caloforge.training.settings import TrainingSettings

__all__ = ["register", "resume_command"]

def _read_config(path: Path | None) -> tuple[dict[str, Any], TrainingSettings]:
    """The ``model`` section (checked later by the family's config) and the validated ``training`` section."""
    # CLI start-up time: loaded when the command runs, not for --help
    from caloforge.data.documents import read_yaml
    from caloforge.training.settings import TrainingSettings

    if path is None:
        return {}, TrainingSettings()
    data = read_yaml(path, "a YAML config file") or {}  # safe, bounded, no duplicate keys
    if not isinstance(data, dict) or set(data) - {"model", "training"}:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        msg = f"expected sections 'model' and/or 'training' but got {got}, in {path}"
        raise ConfigError(msg)
    model = data.get("model") or {}
    if not isinstance(model, dict):
        msg = f"expected the 'model' section to be a mapping but got {type(model).__name__}, in {path}"
        raise ConfigError(msg)
    return model, TrainingSettings.from_dict(data.get("training") or {}, where=f"the 'training' section of {path}")


def _devices(value: str) -> int | str | list[int]:
    """``--devices``: a count, a comma list of GPU indices, or a Lightning keyword such as ``auto``."""
    if value.isdigit():
        return int(value)
    if "," in value:
        try:
            indices = [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            indices = []
        if not indices:
            msg = f"expected --devices as a count, a comma list of GPU indices (e.g. 0,1) or 'auto' but got '{value}'"
            raise ConfigError(msg)
        return indices
    return value


def resume_command(data: Path, out: Path, geometry: str | None, validation: Path | None, result: Any) -> str:
    """The command that continues an interrupted run with the budget it has left."""
    words = ["caloforge", "train", "--data", str(data), "--out", str(out), "--resume"]
    if geometry is not None:
        words += ["--geometry", geometry]
    if validation is not None:
        words += ["--validation", str(validation)]
    if result.max_iterations is not None:
        words += ["--max-iterations", str(result.max_iterations)]
    if result.remaining_minutes is not None:
        words += ["--max-minutes", f"{max(result.remaining_minutes, 0.1):.1f}"]
    return shlex.join(words)


@friendly_errors
def train(
    data: Path = typer.Option(..., "--data", help="Training showers (CaloChallenge HDF5)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (checkpoints, log.csv, bundle/)."),
    family: str = typer.Option("gan", "--family", metavar=FAMILY, help="Model family."),
    geometry: str | None = typer.Option(None, "--geometry", "-g", help=GEOMETRY_HELP),
    particle: str | None = typer.Option(None, "--particle", metavar="photon|electron|pion",
                                        help="Defaults for this particle; default: the geometry's particle."),
    preset: Preset = typer.Option("auto", "--preset", help="Model defaults: paper (the published settings), cpu "
                               "(fast per CPU-minute), auto (cpu on a CPU, paper on a GPU)."),
    config: Path | None = typer.Option(None, "--config", help="YAML file with 'model' and 'training' sections."),
    max_iterations: int | None = typer.Option(None, "--max-iterations", help="Training budget in iterations "
                                              "(per model of --split-energies)."),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="Training budget, wall-clock minutes."),
    checkpoint_every: int | None = typer.Option(None, "--checkpoint-every", help="Iterations between checkpoints."),
    split_energies: list[str] | None = typer.Option(
        None, "--split-energies", help="Split energies in MeV, e.g. 4100,262000: one model per range."),
    hold_out_energy: float | None = typer.Option(None, "--hold-out-energy", help="Train without this energy (MeV)."),
    validation_fraction: float | None = typer.Option(None, "--validation-fraction", help="Held-out fraction "
                                                     "(default: about 500 showers per energy, 10-25 %)."),
    validation: Path | None = typer.Option(None, "--validation", help="An independent validation file for "
                                           "checkpoint selection (instead of a split)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default 0)."),
    select_by: str | None = typer.Option(None, "--select-by", metavar="chi2|fpd|combined", help="What selects "
                                         "the checkpoint: the response chi2/NDF, the shower shapes' Frechet "
                                         "distance (normalised), or their geometric mean; default: the family's "
                                         "(docs/training.md)."),
    device: str = typer.Option("auto", "--device", metavar=DEVICE, help="Training device (auto: CUDA when present)."),
    devices: str = typer.Option("1", "--devices", help="Passed to lightning.Trainer(devices=...)."),
    strategy: str = typer.Option("auto", "--strategy", help="Passed to lightning.Trainer(strategy=...), e.g. ddp."),
    num_nodes: int = typer.Option(1, "--num-nodes", min=1, help="Machines of a multi-node DDP run "
                                   "(docs/scaling.md)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress (a bar on a terminal, "
                                  "lines in a log)."),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log to TensorBoard (RUN_DIR/tensorboard; "
                                     "needs the tensorboard package)."),
) -> None:
    """Train a model on showers; the best checkpoint (validation chi2/NDF) is saved as RUN_DIR/bundle.

    A budget is required: --max-iterations N and/or --max-minutes M (training stops at the first reached).
    """
    # CLI start-up time: loaded when the command runs, not for --help
    from caloforge.data.source import ShowerFile
    from caloforge.runtime.progress import as_progress
    from caloforge.training.loop import run_training
    from caloforge.training.spec import RunSpec, Runtime

    model_section, settings = _read_config(config)
    flags = {"max_iterations": max_iterations, "max_minutes": max_minutes, "checkpoint_every": checkpoint_every,
             "split_energies": parse_floats(split_energies, "--split-energies"), "hold_out_energy": hold_out_energy,
             "validation_fraction": validation_fraction, "seed": seed,
             "selection": None if select_by is None else select_by.lower()}
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        settings = settings.from_dict(given, base=settings, where="the command line")  # flags win over the file
    except ConfigError as err:  # name the flag, not the setting
        text = str(err)
        for key in given:
            flag = "--select-by" if key == "selection" else f"--{key.replace('_', '-')}"
            text = text.replace(f"expected {key} ", f"expected {flag} ")
        raise ConfigError(text) from None
    apply_threads(threads)
    showers = ShowerFile.open(data, geometry)  # streamed: see caloforge.training.batches
    held_out = ShowerFile.open(validation, geometry if geometry is not None else showers.geometry) \
        if validation else None
    runtime = Runtime(device_name(device), _devices(devices), strategy, num_nodes,
                      as_progress(cli_progress() if progress else False), tensorboard=tensorboard)
    spec = RunSpec.from_section(family, model_section, settings, runtime, preset=preset,
                                particle=particle or showers.geometry.particle,
                                where=f"the 'model' section of {config}")
    result = run_training(showers, spec, out, validation=held_out, resume=resume)
    for r in result.ranges:
        console.print(f"  {r.energy_low:g}-{r.energy_high:g} MeV: {r.iterations} iterations, best chi2/NDF "
                      f"{r.best_chi2_ndf:.3f} at iteration {r.best_iteration}")
    if result.interrupted:
        console.print(f"interrupted; continue with: {resume_command(data, out, geometry, validation, result)}")
        raise typer.Exit(code=128 + (result.signum or 2))  # 130 after Ctrl-C, 143 after SIGTERM
    if result.validation is None:  # a DDP rank other than 0: rank 0 evaluates and reports
        return
    console.print(f"validation chi2/NDF {result.chi2_ndf:.3f} in {result.elapsed_s:.0f} s; bundle: {result.bundle_dir}")


@friendly_errors
def generate(
    model: Path | None = typer.Option(None, "--model", help="A bundle directory or a training run directory."),
    output: Path = typer.Option(..., "--out", "-o", help="Output HDF5 file."),
    model_set: Path | None = typer.Option(None, "--model-set", help="A campaign's model set (model_set.json or its "
                                          "directory) instead of --model: each shower goes to the bundle of its "
                                          "particle, |eta| and energy."),
    particle: str | None = typer.Option(None, "--particle", metavar="photon|electron|pion",
                                        help="With --model-set: the particle."),
    eta: float | None = typer.Option(None, "--eta", help="With --model-set: the pseudorapidity (its sign is "
                                     "ignored)."),
    like: Path | None = typer.Option(None, "--like", help="Generate at the incident energies (and conditions) "
                                     "of this reference file."),
    energies: list[str] | None = typer.Option(None, "--energies", help="Incident energies in MeV, e.g. 1024,65536."),
    n_per_energy: int = typer.Option(1000, "--n-per-energy", help="Showers per energy given with --energies."),
    batch_size: int = typer.Option(10_000, "--batch-size", help="Showers per forward pass."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    device: str = typer.Option("auto", "--device", metavar=DEVICE, help="Generation device (the torch backend)."),
    backend: Literal["torch", "onnxruntime"] = typer.Option(
        "torch", "--backend", help="onnxruntime runs the exported graph (--model is then a bundle, exported on the "
        "fly, or an export manifest .json)."),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
    no_verify: bool = typer.Option(False, "--no-verify", help="Load a bundle whose bundle.json records no weights "
                                   "sha256 (older or edited bundles), unverified; refused without this flag."),
    force: bool = typer.Option(False, "--force", help="Overwrite the output file."),
    precision: Literal["auto", "fp32", "bf16", "int8"] = typer.Option(
        "fp32", "--precision", help="bf16 (torch, CPUs with native bf16) or int8 (ONNX Runtime quantisation); auto: "
        "the fastest measured here within the errors of fp32 (docs/performance.md)."),
) -> None:
    """Generate showers with a trained bundle (or a model set), at a reference file's energies or at given energies."""
    # CLI start-up time: loaded when the command runs, not for --help
    import numpy as np

    # CLI start-up time: the generation stack (torch) loads when the command runs
    from caloforge.data import io
    from caloforge.data.outputs import check_output
    from caloforge.deploy.backends import open_generator
    from caloforge.generator import generate_like

    values = parse_floats(energies, "--energies")
    if (like is None) == (values is None):
        msg = "expected exactly one of --like FILE or --energies E1,E2,... but got " + (
            "both" if like is not None else "neither")
        raise ConfigError(msg)
    if (model is None) == (model_set is None):
        msg = "expected exactly one of --model BUNDLE or --model-set MANIFEST but got " + (
            "both" if model is not None else "neither")
        raise ConfigError(msg)
    check_output(output, force)
    n = n_per_energy
    if n < 1:
        msg = f"expected --n-per-energy >= 1 but got {n}"
        raise ConfigError(msg)
    count = apply_threads(threads)
    if values is not None:  # before np.repeat: 10^12 showers must be one line, not a 7 TiB allocation
        _check_count(n, len(values), 1)
    if model_set is not None and (particle is None or eta is None or backend != "torch"):
        msg = ("expected --particle and --eta (and the torch backend) with --model-set but got "
               f"--particle {particle}, --eta {eta}, --backend {backend}")
        raise ConfigError(msg)
    if model_set is not None and precision != "fp32":
        msg = f"expected --precision fp32 with --model-set but got {precision}; generate per bundle with --model"
        raise ConfigError(msg)
    source = model if model is not None else model_set
    assert source is not None  # one of --model and --model-set was checked above
    generator = open_generator(source, backend, device=device, precision=precision, threads=count,
                               trust_unverified=no_verify, particle=particle if model_set else None,
                               eta=eta if model_set else None, report=console.print)
    if like is not None:
        showers = generate_like(generator, like, seed=seed, batch_size=batch_size)
    else:
        _check_count(n, len(values or ()), generator.geometry.n_voxels)
        showers = generator.generate(np.repeat(np.asarray(values, dtype=np.float64), n), seed=seed,
                                     batch_size=batch_size)
    used = str(getattr(generator, "precision", "fp32"))  # a reduced-precision generator says which it runs
    metadata: dict[str, str | int | float] = {"generator": str(source), "seed": seed,
                                              "backend": "onnxruntime" if used == "int8" else backend}
    metadata |= {"particle": str(particle), "eta": float(eta or 0.0)} if model_set else {"precision": used}
    io.write(output, showers, force=force, metadata=metadata)
    console.print(f"wrote {len(showers)} showers to {output}")


@friendly_errors
def distill(
    teacher: Path = typer.Option(..., "--teacher", help="The teacher: a trained flow's bundle or run directory."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory: the student's bundle."),
    max_minutes: float | None = typer.Option(10.0, "--max-minutes", help="Training budget, wall-clock minutes "
                                             "(drawing the teacher's pairs included)."),
    max_iterations: int | None = typer.Option(None, "--max-iterations", help="Training budget in iterations "
                                              "(steps)."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the student and its teacher pairs."),
    config: Path | None = typer.Option(None, "--config", help="YAML file whose 'model' section sets the student "
                                       "(keys of FlowStudentConfig, e.g. hidden: [512, 512, 512])."),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing bundle at --out."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress on standard error."),
) -> None:
    """Distil a one-pass student from a trained flow: one network call per batch instead of one per block.

    The student (family flow-student) maps the teacher's noise and conditions to its features, trained on the
    teacher's samples; its bundle opens in generate, export, bench and evaluate --run like any other.
    """
    # CLI start-up time: the training stack (torch) loads when the command runs
    from caloforge.training.distill import distill as run_distill

    changes = _student_section(config)
    apply_threads(threads)
    result = run_distill(teacher, out, changes=changes, max_minutes=max_minutes, max_iterations=max_iterations,
                         seed=seed, force=force, progress=cli_progress() if progress else False)
    console.print(f"distilled in {result.iterations} steps, {result.seconds:.0f} s: validation mse "
                  f"{result.validation_mse:.4g} (identity {result.identity_mse:.4g}); bundle: {result.bundle}")


def _student_section(path: Path | None) -> dict[str, Any]:
    """``distill --config``: the file's ``model`` section, the student's settings (checked by distill)."""
    # CLI start-up time: loaded when the command runs, not for --help
    from caloforge.data.documents import read_yaml

    data = read_yaml(path, "a YAML config file") if path is not None else None  # safe, bounded
    if data is None:
        return {}
    model = data.get("model") if isinstance(data, dict) and set(data) <= {"model"} else None
    if not isinstance(model, dict):
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        msg = f"expected only a 'model' section (the student's settings, e.g. hidden) but got {got}, in {path}"
        raise ConfigError(msg)
    return model


def _check_count(n: int, energies: int, n_voxels: int) -> None:
    """Refuse ``--n-per-energy`` when the energies and showers it asks for cannot fit in memory."""
    # CLI start-up time: loaded when the command runs, not for --help
    from caloforge.runtime import resources

    total = n * energies
    resources.check_memory(total * (8 + 4 * n_voxels), f"{total:,} showers (--n-per-energy {n} x {energies} "
                           f"energies)", "lower --n-per-energy or generate in several files", ConfigError)


def register(app: typer.Typer) -> None:
    """Add the model commands to ``app``."""
    app.command(epilog=examples(
        "caloforge train --data train.h5 --family gan --max-minutes 30 --out run/",
        "caloforge train --data train.h5 --validation val.h5 --family flow --max-iterations 20000 --out run/",
        "caloforge train --data train.h5 --out run/ --resume --max-minutes 10"))(train)
    app.command(epilog=examples(
        "caloforge distill --teacher flow-run/bundle --out student/ --max-minutes 15",
        "caloforge distill --teacher flow-run/bundle --out narrow/ --config narrow.yaml --max-minutes 15"))(distill)
    app.command(epilog=examples(
        "caloforge generate --model run/ --like eval.h5 --out gen.h5",
        "caloforge generate --model run/bundle --energies 1024,65536 --n-per-energy 5000 --out gen.h5",
        "caloforge generate --model-set campaign/model_set.json --particle photon --eta 0.7 --like eval.h5 "
        "--out gen.h5"))(generate)
