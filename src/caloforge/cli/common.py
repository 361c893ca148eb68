"""Shared CLI plumbing: one-line errors, the console, geometry options."""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from caloforge.errors import CaloforgeError, ConfigError

if TYPE_CHECKING:
    from caloforge.data.showers import ShowerSet
    from caloforge.runtime.progress import Progress
    from caloforge.validation.result import EvaluationResult

__all__ = ["DEVICE", "FAMILY", "GEOMETRY_HELP", "THREADS_HELP", "Preset", "apply_threads", "cli_progress", "console",
           "device_name", "err_console", "examples", "file_description", "friendly_errors", "parse_floats", "state",
           "verdict_table"]

P = ParamSpec("P")
R = TypeVar("R")

GEOMETRY_HELP = "Geometry: a preset (ds1-photons, ds1-pions, ds2, ds3) or a CaloChallenge binning XML file."
DEVICE = "auto|cpu|cuda|cuda:N"
"""Metavar of every --device option (auto: CUDA when present)."""
FAMILY = "gan|flow|diffusion|latent|vae|parametric"
"""Metavar of the built-in model families, those of ``caloforge.models.FAMILIES`` (a test keeps them equal;
written out so that ``--help`` does not import torch); a registered plugin family is accepted too."""
Preset = Literal["auto", "cpu", "paper"]
_VERDICT_STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "info": "blue", "not computed": "dim"}

# Long lines (paths, commands) are never cut; tables in a log (not a terminal) get 120 columns, not 80.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 120)


@dataclass
class _State:
    debug: bool = False


state = _State()


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """One-line errors and clean interrupts for a command (unless ``--debug``).

    caloforge errors print one line and exit 2; Ctrl-C and SIGTERM stop the work (temporary
    files are removed by the normal clean-up) and exit 130 / 143.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from caloforge.runtime.interrupts import Interrupted, exit_code

        def on_signal(signum: int, frame: object) -> None:
            raise Interrupted(signum)

        main = threading.current_thread() is threading.main_thread()
        # SIGINT too: a command started in the background by a non-interactive shell inherits it ignored
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
        try:
            return func(*args, **kwargs)
        except CaloforgeError as err:
            if state.debug:
                raise
            print(f"caloforge: error: {err}", file=sys.stderr)  # noqa: T201
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt as err:
            if state.debug:
                raise
            print("caloforge: interrupted", file=sys.stderr)  # noqa: T201
            raise typer.Exit(code=exit_code(err)) from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    return wrapper


def examples(*lines: str) -> str:
    """A command's help epilog: its examples, one per line, printed after the options (never re-wrapped)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


THREADS_HELP = "CPU threads for torch (default: the free cores of this machine, see 'caloforge env')."


def apply_threads(threads: int | None) -> int:
    """Set torch's CPU threads to ``threads`` (default :func:`caloforge.runtime.hardware.recommended_threads`).

    Raises:
        ConfigError: for a count below 1.
    """
    import torch

    from caloforge.runtime.hardware import recommended_threads

    if threads is not None and threads < 1:
        msg = f"expected --threads >= 1 but got {threads}"
        raise ConfigError(msg)
    count = threads if threads is not None else recommended_threads()
    torch.set_num_threads(count)
    return count


def file_description(path: Path, showers: ShowerSet) -> dict[str, Any]:
    """A file for a report's header: its path and the fingerprint of its showers (sha256, counts, energies)."""
    return {"path": str(path), **showers.fingerprint()}


def cli_progress() -> Progress:
    """Progress on standard error: a live bar on a terminal, plain timestamped lines in a log."""
    from caloforge.runtime.progress import Progress

    return Progress()


def device_name(device: str) -> str:
    """Resolve ``"auto"`` (CUDA when present) and check a device name; torch is imported only here."""
    from caloforge.runtime.hardware import resolve_device

    return str(resolve_device(device))


def parse_floats(values: str | Sequence[str] | None, what: str) -> list[float] | None:
    """Numbers from a comma list, or from the comma lists of a repeated option; an option not given gives None.

    Example:
        >>> parse_floats(["1024,65536", "2e5"], "--energies")
        [1024.0, 65536.0, 200000.0]

    Raises:
        ConfigError: if an entry is not a number, or no number was given.
    """
    if values is None or (not isinstance(values, str) and not values):
        return None
    items = [values] if isinstance(values, str) else list(values)
    try:
        numbers = [float(v) for item in items for v in item.split(",") if v.strip()]
    except ValueError:
        numbers = []
    if not numbers:
        msg = f"expected {what} as a comma list of numbers (e.g. 1024,65536) but got '{','.join(items)}'"
        raise ConfigError(msg)
    return numbers


def verdict_table(result: EvaluationResult) -> Table:
    """The verdict rows of an evaluation as a rich table (values as the report and metrics.json give them)."""
    from caloforge.validation.missing import format_value  # start-up time: the validation package is heavy

    table = Table("metric", "value", "error", "ref. split", "verdict", title=f"verdict: {result.verdict}")
    for row in result.verdicts:
        table.add_row(row.metric, format_value(row.value), format_value(row.error, 2),
                      format_value(row.reference_split), f"[{_VERDICT_STYLE[row.verdict]}]{row.verdict}[/]")
    return table
