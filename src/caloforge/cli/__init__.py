"""The ``caloforge`` command line: a thin typer layer over the library.

Each subcommand parses its options and calls one library function. Errors from
:mod:`caloforge.errors` are printed as one line on stderr with exit code 2; pass
``--debug`` to see the traceback instead.
"""

from __future__ import annotations

import typer
import typer.core

from caloforge._version import __version__
from caloforge.cli import campaign, data, demo, deploy, evaluate, leaderboard, model, simulate
from caloforge.cli.common import Command, install_warning_format, state

__all__ = ["app"]

app = typer.Typer(
    name="caloforge",
    help="Machine-learning fast calorimeter simulation: data, models, training, validation, speed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich ate "[bf16]" as markup and showed flags as taking a <bool>
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"caloforge {__version__}")
        raise typer.Exit


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
) -> None:
    """caloforge: ML fast calorimeter simulation."""
    state.debug = debug
    install_warning_format()


for module in (demo, simulate, model, evaluate, leaderboard, campaign, deploy, data):
    module.register(app)


def _use_command_class(group: typer.Typer) -> None:
    """Every command, in sub-groups too, built as :class:`caloforge.cli.common.Command` (one vocabulary)."""
    for info in group.registered_commands:
        if info.cls in (None, typer.core.TyperCommand):
            info.cls = Command
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _use_command_class(sub.typer_instance)


_use_command_class(app)
