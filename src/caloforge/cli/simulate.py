"""The ``simulate`` command: reference showers from :mod:`caloforge.refsim`."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from caloforge.cli.common import (
    GEOMETRY_HELP,
    THREADS_HELP,
    apply_threads,
    cli_progress,
    console,
    examples,
    friendly_errors,
    parse_floats,
)
from caloforge.errors import ConfigError

if TYPE_CHECKING:
    from caloforge.runtime.progress import ProgressTask

__all__ = ["register"]


def _parse_theta(text: str | None) -> float | tuple[float, float] | None:
    if text is None:
        return None
    try:
        parts = [float(v) for v in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    msg = f"expected --theta DEG or LOW:HIGH in degrees (90 = normal incidence) but got '{text}'"
    raise ConfigError(msg)


@friendly_errors
def simulate(
    geometry: str = typer.Option(..., "--geometry", "-g", help=GEOMETRY_HELP),
    particle: str = typer.Option(
        ..., "--particle", "-p", metavar="photon|electron|pion", help="The particle (aliases: gamma, e-, pi+, ...)."
    ),
    n: int = typer.Option(..., "--n", "-n", help="Number of showers in all (shared by the energies)."),
    output: Path = typer.Option(..., "--out", "-o", help="Output CaloChallenge HDF5 file."),
    energies: str | None = typer.Option(
        None, "--energies", help="Comma list of incident energies in MeV, shared equally."
    ),
    spectrum: str | None = typer.Option(
        None, "--spectrum", help="ds1 | log-uniform | log-uniform:EMIN:EMAX (MeV); default by geometry."
    ),
    theta: str | None = typer.Option(None, "--theta", help="Incidence angle in degrees, DEG or LOW:HIGH (W/Si only)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the file depends on it, not on --jobs."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Worker processes."),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
    force: bool = typer.Option(False, "--force", help="Overwrite the output file if it exists."),
    physics: str = typer.Option(
        "gflash", "--physics", metavar="gflash|cascade",
        help="gflash: parameterised showers; cascade: particle transport through the detector's sub-layers.",
    ),
    split: float | None = typer.Option(
        None, "--split", help="Cascade only: hybrid split in MeV (below it, hand-offs, see --handoff; 0: full "
                             "transport)."
    ),
    handoff: str | None = typer.Option(
        None, "--handoff", metavar="auto|gflash|library",
        help="Cascade only: what a hybrid hand-off deposits: a GFLASH sub-shower or a frozen transported one "
             "(default auto: library for W/Si, gflash for ds1).",
    ),
) -> None:
    """Simulate reference showers (GFLASH parameterisation or particle cascade) into a CaloChallenge file."""
    # CLI start-up time: loaded when the command runs, not for --help
    from caloforge.refsim import simulate_to_file
    from caloforge.refsim.cascade import CascadeConfig

    if (split is not None or handoff is not None) and physics != "cascade":
        msg = f"expected --split and --handoff only with --physics cascade but got --physics {physics}"
        raise ConfigError(msg)
    settings = {"hybrid_split_mev": split, "handoff": handoff and handoff.lower()}
    given = {name: value for name, value in settings.items() if value is not None}
    cascade = CascadeConfig.from_dict(given) if given else None

    apply_threads(threads)

    values, angles = parse_floats(energies, "--energies"), _parse_theta(theta)
    with contextlib.ExitStack() as stack:
        tasks: list[ProgressTask] = []

        def report(done: int, total: int) -> None:
            if not tasks:  # only once the inputs were accepted and the first chunk is written
                tasks.append(stack.enter_context(cli_progress().task("simulate", total=total, unit="showers")))
            tasks[0].update(done, total=total)

        def building(done: int, total: int) -> None:  # the frozen-shower library, once per machine and settings
            if not library:
                library.append(stack.enter_context(cli_progress().task("shower library (built once, cached)",
                                                                       total=total, unit="parts")))
            library[0].update(done, total=total)

        library: list[ProgressTask] = []
        path = simulate_to_file(output, geometry, particle, n, seed, energies=values, spectrum=spectrum, jobs=jobs,
                                force=force, progress=report, theta=angles, physics=physics, cascade=cascade,
                                library_progress=building)
    console.print(f"wrote {n} {particle} showers to {path}")


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command to ``app``."""
    app.command(epilog=examples(
        "caloforge simulate -g ds1-photons -p photon -n 120000 --out train.h5 --jobs 2",
        "caloforge simulate -g ds3 -p electron -n 20000 --spectrum log-uniform:1000:1000000 --out ds3.h5",
        "caloforge simulate -g ds1-photons -p photon -n 47500 --physics cascade --out cascade.h5 --jobs 2"))(simulate)
