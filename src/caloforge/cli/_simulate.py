"""The ``simulate`` command: reference showers from :mod:`caloforge.refsim`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from caloforge.cli._common import GEOMETRY_HELP, console, friendly_errors, parse_floats
from caloforge.errors import ConfigError

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
        ..., "--particle", "-p", help="photon, electron or pion (aliases: gamma, e-, pi+, ...)."
    ),
    n: int = typer.Option(..., "--n", "-n", help="Number of showers."),
    output: Path = typer.Option(..., "--output", "-o", help="Output CaloChallenge HDF5 file."),
    energies: str | None = typer.Option(
        None, "--energies", help="Comma list of incident energies in MeV, shared equally."
    ),
    spectrum: str | None = typer.Option(
        None, "--spectrum", help="ds1 | log-uniform | log-uniform:EMIN:EMAX (MeV); default by geometry."
    ),
    theta: str | None = typer.Option(None, "--theta", help="Incidence angle in degrees, DEG or LOW:HIGH (W/Si only)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the file depends on it, not on --jobs."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Worker processes."),
    force: bool = typer.Option(False, "--force", help="Overwrite the output file if it exists."),
) -> None:
    """Simulate reference showers (GFLASH EM / two-component pion model) into a CaloChallenge file."""
    from caloforge.refsim import simulate_to_file

    bar = Progress(
        TextColumn("[bold]simulate[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    task = bar.add_task("showers", total=n)

    def report(done: int, total: int) -> None:
        if not bar.live.is_started:
            bar.start()  # only once the inputs were accepted and the first chunk is done
        bar.update(task, completed=done, total=total)

    try:
        path = simulate_to_file(
            output,
            geometry,
            particle,
            n,
            seed,
            energies=parse_floats(energies, "--energies"),
            spectrum=spectrum,
            jobs=jobs,
            force=force,
            progress=report,
            theta=_parse_theta(theta),
        )
    finally:
        if bar.live.is_started:
            bar.stop()
    console.print(f"wrote {n} {particle} showers to {path}")


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command to ``app``."""
    app.command()(simulate)
