"""The ``leaderboard`` command: every family trained and judged the same way on the same data."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from caloforge.cli.common import (
    DEVICE,
    GEOMETRY_HELP,
    THREADS_HELP,
    Preset,
    apply_threads,
    cli_progress,
    console,
    device_name,
    examples,
    friendly_errors,
)
from caloforge.errors import ConfigError

__all__ = ["register"]


@friendly_errors
def leaderboard(
    data: Path = typer.Option(..., "--data", help="Training showers (CaloChallenge HDF5)."),
    reference: Path = typer.Option(..., "--reference", "-r", help="Independent evaluation showers."),
    validation: Path | None = typer.Option(None, "--validation", help="Independent validation showers for "
                                           "checkpoint selection (default: a split of --data)."),
    families: str = typer.Option("", "--families", help="Comma list of families (default: every registered one)."),
    minutes_per_model: float | None = typer.Option(None, "--max-minutes", help="Training budget per family, "
                                                   "wall-clock minutes."),
    iterations_per_model: int | None = typer.Option(None, "--max-iterations", help="Training budget per "
                                                    "family in iterations (the same work on every machine)."),
    classifier_minutes: float = typer.Option(5.0, "--classifier-minutes", help="Classifier budget per family, "
                                             "wall-clock minutes."),
    classifier_showers: int = typer.Option(10_000, "--classifier-showers", help="Classifier showers per sample."),
    preset: Preset = typer.Option("auto", "--preset", help="Model defaults (see caloforge train --help)."),
    geometry: str | None = typer.Option(None, "--geometry", "-g", help=GEOMETRY_HELP),
    out: Path = typer.Option(Path("leaderboard"), "--out", "-o", help="Output directory."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random step."),
    select_by: str | None = typer.Option(None, "--select-by", metavar="chi2|fpd|combined", help="What selects the "
                                         "checkpoint of every family (default: each family's, see caloforge train "
                                         "--help)."),
    device: str = typer.Option("auto", "--device", metavar=DEVICE, help="Training and classifier device."),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
    resume: bool = typer.Option(False, "--resume", help="Keep finished families; continue interrupted trainings."),
) -> None:
    """Train every family under the same budget, evaluate and time each: leaderboard.json, .md and .html.
    """
    # CLI start-up time: loaded when the command runs, not for --help
    from caloforge.campaign.leaderboard import LeaderboardSettings, run_leaderboard
    from caloforge.campaign.leaderboard_report import COLUMNS, notes, table_rows, time_summary
    from caloforge.data import io
    from caloforge.models import FAMILIES

    names = tuple(f.strip() for f in families.split(",") if f.strip()) or tuple(FAMILIES)
    try:
        settings = LeaderboardSettings.from_dict(
            {"families": names, "minutes_per_model": minutes_per_model,
             "iterations_per_model": iterations_per_model, "classifier_minutes": classifier_minutes,
             "classifier_showers": classifier_showers, "preset": preset, "seed": seed,
             "selection": None if select_by is None else select_by.lower()}, where="the leaderboard options")
    except ConfigError as err:  # the setting's name is not the option's
        raise ConfigError(str(err).replace("expected selection ", "expected --select-by ")) from None
    apply_threads(threads)
    progress = cli_progress()
    progress.message(f"reading {data} and {reference}")
    train_set = io.read(data, geometry)
    reference_set = io.read(reference, geometry if geometry is not None else train_set.geometry)
    held_out = io.read(validation, train_set.geometry) if validation is not None else None
    board = run_leaderboard(train_set, reference_set, out, settings, validation=held_out, device=device_name(device),
                            resume=resume, progress=progress)
    shown = [i for i, (name, _, _) in enumerate(COLUMNS) if name not in ("parameters", "KPD x10^3")]
    table = Table(*(COLUMNS[i][0] for i in shown), title="caloforge leaderboard")
    for row in table_rows(board):
        table.add_row(*(row[i] for i in shown))
    console.print(table)
    for note in notes(board):
        console.print(note)
    console.print(f"leaderboard: {out / 'leaderboard.html'}; it took {time_summary(board)}")


def register(app: typer.Typer) -> None:
    """Add the ``leaderboard`` command to ``app``."""
    app.command(epilog=examples(
        "caloforge leaderboard --data train.h5 -r eval.h5 --max-minutes 15 --out lb/",
        "caloforge leaderboard --data train.h5 -r eval.h5 --families gan,flow --max-iterations 5000 --out lb/"))(
        leaderboard)
