"""Shared CLI plumbing: one-line errors and warnings, the console, the option vocabulary.

The vocabulary (:data:`VOCABULARY`) gives every option name one meaning across all commands;
``tests/test_cli_help.py`` checks every command's options against it. Renamed options keep their
old spelling as a hidden alias (:data:`DEPRECATED`) that prints one line naming the new one.
"""

from __future__ import annotations

import functools
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

import typer
import typer.core
from rich.console import Console
from rich.table import Table

from caloforge.errors import CaloforgeError, ConfigError
from caloforge.runtime.interrupts import Interrupted, exit_code
from caloforge.runtime.progress import Progress

if TYPE_CHECKING:
    from caloforge.data.showers import ShowerSet
    from caloforge.validation.result import EvaluationResult

__all__ = ["DEPRECATED", "DEVICE", "FAMILY", "GEOMETRY_HELP", "LIBRARY_NAMES", "THREADS_HELP", "VOCABULARY", "Command",
           "Preset", "apply_threads", "cli_names", "cli_progress", "comparison_table", "console", "device_name",
           "err_console", "examples", "file_description", "friendly_errors", "install_warning_format", "parse_floats",
           "state", "verdict_table"]

P = ParamSpec("P")
R = TypeVar("R")

GEOMETRY_HELP = "Geometry: a preset (ds1-photons, ds1-pions, ds2, ds3) or a CaloChallenge binning XML file."
DEVICE = "auto|cpu|cuda|cuda:N"
"""Metavar of every --device option (auto: CUDA when present)."""
FAMILY = "gan|flow|diffusion|latent|vae|parametric"
"""Metavar of the built-in model families, those of ``caloforge.models.FAMILIES`` (a test keeps them equal;
written out so that ``--help`` does not import torch); a registered plugin family is accepted too."""
Preset = Literal["auto", "cpu", "paper"]
_VERDICT_STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "info": "blue", "not computed": "dim",
                  "too small": "magenta"}

# Long lines (paths, commands) are never cut; tables in a log (not a terminal) get 120 columns, not 80.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 120)


VOCABULARY: dict[str, tuple[str, tuple[str, ...]]] = {
    # option: (its one meaning, words of which its help must contain at least one, in every command)
    "--out": ("where the command writes its output (file or directory)", ("output", "directory", "file", "write")),
    "--data": ("training showers", ("training showers",)),
    "--reference": ("reference showers the others are judged against", ("reference", "evaluation showers")),
    "--generated": ("generated showers to judge", ("generated",)),
    "--label": ("names of the generated samples in the report", ("label", "name")),
    "--validation": ("independent validation showers for checkpoint selection", ("validation",)),
    "--geometry": ("the binning: a preset or a CaloChallenge XML", ("geometry",)),
    "--dataset": ("the CaloChallenge's dataset names instead of --geometry", ("dataset",)),
    "--particle": ("the particle", ("particle",)),
    "--eta": ("pseudorapidity of a model set", ("pseudorapidity",)),
    "--family": ("one model family", ("family",)),
    "--families": ("several model families", ("families",)),
    "--model": ("a trained bundle or run directory", ("bundle",)),
    "--model-set": ("a campaign's model set", ("model set",)),
    "--teacher": ("the trained flow bundle a one-pass student is distilled from", ("teacher",)),
    "--preset": ("model defaults", ("model defaults",)),
    "--config": ("a YAML config file", ("yaml",)),
    "--max-iterations": ("training budget in iterations", ("training budget", "iterations")),
    "--max-minutes": ("training budget in wall-clock minutes", ("training budget", "wall-clock")),
    "--checkpoint-every": ("iterations between checkpoints", ("checkpoints",)),
    "--split-energies": ("energies splitting training into one model per range", ("split energies",)),
    "--hold-out-energy": ("an energy left out of training", ("without this energy",)),
    "--validation-fraction": ("held-out fraction of the training showers", ("held-out",)),
    "--select-by": ("what selects the checkpoint", ("selects the checkpoint",)),
    "--classifier": ("which classifier tests run", ("classifier tests",)),
    "--classifier-minutes": ("classifier budget in wall-clock minutes", ("classifier",)),
    "--classifier-showers": ("classifier showers per sample", ("classifier showers",)),
    "--classifier-epochs": ("maximum classifier epochs", ("classifier epochs",)),
    "--classifier-repeats": ("classifier trainings to average", ("classifier trainings",)),
    "--classifier-patience": ("classifier early-stopping patience", ("early-stopping",)),
    "--classifier-precision": ("classifier arithmetic", ("classifier arithmetic",)),
    "--seed": ("random seed", ("seed",)),
    "--device": ("compute device (default auto: CUDA when present)", ("device",)),
    "--devices": ("Lightning's devices", ("lightning",)),
    "--strategy": ("Lightning's strategy", ("lightning",)),
    "--num-nodes": ("machines of a multi-node run", ("machines",)),
    "--threads": ("CPU threads", ("threads",)),
    "--jobs": ("worker processes", ("worker processes",)),
    "--resume": ("continue an interrupted run in --out", ("continue", "keep finished")),
    "--progress": ("show progress", ("progress", "live")),
    "--tensorboard": ("also log training to TensorBoard", ("tensorboard",)),
    "--force": ("overwrite existing outputs", ("overwrite", "replace")),
    "--no-verify": ("load a bundle without a recorded weights hash", ("unverified",)),
    "--precision": ("generation arithmetic", ("bf16", "int8")),
    "--backend": ("generation runtime", ("onnxruntime", "runtime")),
    "--batch-size": ("showers per forward pass", ("showers per forward pass",)),
    "--batch-sizes": ("showers per generate call, timed", ("showers per generate call",)),
    "--repeats": ("timed calls per batch size", ("timed calls",)),
    "--like": ("generate at a reference file's energies", ("energies",)),
    "--energies": ("incident energies in MeV", ("energies",)),
    "--n-per-energy": ("showers per energy", ("per energy",)),
    "--n": ("number of showers in all", ("number of showers",)),
    "--spectrum": ("incident-energy spectrum", ("log-uniform",)),
    "--theta": ("incidence angle", ("angle",)),
    "--physics": ("simulator physics", ("gflash",)),
    "--split": ("cascade hybrid split energy", ("split",)),
    "--handoff": ("cascade hybrid hand-off deposit", ("hand-off",)),
    "--mode": ("evaluation mode", ("fast",)),
    "--run": ("the training run of the generated showers", ("training run",)),
    "--prdc": ("precision/recall/density/coverage", ("precision/recall",)),
    "--skip": ("expensive evaluation parts not to compute", ("not to compute",)),
    "--fpd-draws": ("FPD subsets per size", ("fpd",)),
    "--kpd-batches": ("KPD batches", ("kpd",)),
    "--threshold": ("readout threshold in MeV", ("threshold",)),
    "--n-train": ("training showers to simulate", ("training showers",)),
    "--n-validation": ("validation showers to simulate", ("validation showers",)),
    "--n-eval": ("evaluation showers to simulate", ("evaluation showers",)),
    "--format": ("export format", ("format",)),
    "--order": ("voxel order and call convention of an export", ("par04",)),
    "--address": ("a Ray cluster", ("ray",)),
    "--version": ("print the version", ("version",)),
    "--debug": ("full tracebacks", ("traceback",)),
}
"""Every option name of the command line and its one meaning: a name is never reused for another
meaning, a meaning never gets a second name (``tests/test_cli_help.py`` checks every command)."""

DEPRECATED: dict[str, dict[str, str]] = {
    # command: {old spelling: the option that replaced it}; hidden, each use prints one line
    "evaluate": {"--max-minutes": "--classifier-minutes", "--max-showers": "--classifier-showers",
                 "--max-epochs": "--classifier-epochs", "--repeats": "--classifier-repeats",
                 "--patience": "--classifier-patience", "--precision": "--classifier-precision"},
    "leaderboard": {"--minutes-per-model": "--max-minutes", "--iterations-per-model": "--max-iterations"},
    "bench": {"--json": "--out"},
    "simulate": {"--output": "--out"},
    "generate": {"--output": "--out", "--n": "--n-per-energy"},
    "export": {"--output": "--out"},
    "train": {"--model": "--family"},  # the 0.1 spellings
    "demo": {"--minutes": "--max-minutes"},
}
"""Renamed options: the old spelling still works (hidden from ``--help``) and says the new name."""

LIBRARY_NAMES: dict[str, str] = {
    # parameter names of the library that appear in its error messages, and the option that sets them
    "max_iterations": "--max-iterations", "max_minutes": "--max-minutes", "minutes_per_model": "--max-minutes",
    "iterations_per_model": "--max-iterations", "classifier_minutes": "--classifier-minutes",
    "classifier_showers": "--classifier-showers", "max_showers": "--classifier-showers",
    "max_epochs": "--classifier-epochs", "checkpoint_every": "--checkpoint-every",
    "split_energies": "--split-energies", "hold_out_energy": "--hold-out-energy",
    "validation_fraction": "--validation-fraction", "n_per_energy": "--n-per-energy", "batch_size": "--batch-size",
    "fpd_draws": "--fpd-draws", "kpd_batches": "--kpd-batches",
}
"""Library errors name parameters (``max_minutes``); the CLI prints the option (``--max-minutes``)."""

_FILE_CONTEXT = re.compile(r"\.(ya?ml|json)\b|\bsection\b")
"""Messages about a file's content: its keys are the names to show, not the options."""
_LOWERCASE = ("family", "families", "particle", "device", "physics", "classifier", "skip", "dataset")
"""Free-text options whose values are names compared in lower case (``--family GAN`` is ``gan``)."""


def cli_names(text: str, command: typer.core.TyperCommand | None = None) -> str:
    """``text`` with the library's parameter names replaced by the options of the command line.

    A message about a file the user wrote (a YAML config's section, a campaign spec, a JSON record) keeps
    its names: they are the file's keys.

    Example:
        >>> cli_names("expected a budget (max_iterations or max_minutes) but got neither")
        'expected a budget (--max-iterations or --max-minutes) but got neither'
        >>> cli_names("expected max_minutes to be a number but got 'x', in the 'training' section of cfg.yaml")
        "expected max_minutes to be a number but got 'x', in the 'training' section of cfg.yaml"
    """
    if _FILE_CONTEXT.search(text):
        return text
    names = dict(LIBRARY_NAMES)
    for param in command.params if command is not None else ():
        longs = [o for o in param.opts if o.startswith("--")]
        if param.name and "_" in param.name and longs and not getattr(param, "hidden", False):
            names[param.name] = longs[0]
    for name in sorted(names, key=len, reverse=True):
        text = re.sub(rf"(?<![\w./-]){re.escape(name)}(?![\w/])", names[name], text)
    return text


class Command(typer.core.TyperCommand):
    """Every caloforge command: choices case-insensitive, names lower-cased, deprecated spellings renamed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            descriptor = getattr(param, "type_descriptor", None)
            if descriptor is not None and descriptor.is_choice:
                descriptor.parameter_info.case_sensitive = False  # --preset CPU, --mode FULL

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        renamed = DEPRECATED.get(self.name or "", {})
        words: list[str] = []
        for i, word in enumerate(args):
            if word == "--":
                words += args[i:]
                break
            old, sep, value = word.partition("=")
            if old in renamed:
                print(f"caloforge: {old} is deprecated, use {renamed[old]}", file=sys.stderr)  # noqa: T201
                word = renamed[old] + sep + value
            words.append(word)
        return super().parse_args(ctx, words)

    def invoke(self, ctx: Any) -> Any:
        for name in _LOWERCASE:  # --family GAN
            if isinstance(ctx.params.get(name), str):
                ctx.params[name] = ctx.params[name].lower()
        state.command = self  # for the option names in its error messages
        return super().invoke(ctx)


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    """One line per warning, without the file path and the source line Python adds."""
    text = " ".join(str(message).split())
    kind = "" if category is UserWarning else f" ({category.__name__})"
    return f"caloforge: warning{kind}: {text}\n"


def install_warning_format() -> None:
    """Show Python warnings as one clean line each on standard error (the command line's entry point calls it).

    The format, not the display, is replaced: ``warnings.catch_warnings(record=True)`` (the evaluation's
    collection of its warnings, ``pytest.warns``) still records them.
    """
    warnings.formatwarning = _format_warning


@dataclass
class _State:
    debug: bool = False
    command: typer.core.TyperCommand | None = None


state = _State()


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """One-line errors and clean interrupts for a command (unless ``--debug``).

    caloforge errors print one line and exit 2; Ctrl-C and SIGTERM stop the work (temporary
    files are removed by the normal clean-up) and exit 130 / 143.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
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
            text = cli_names(str(err), state.command)
            print(f"caloforge: error: {text}", file=sys.stderr)  # noqa: T201
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
    # torch's import time (about 2 s): only when a command sets threads
    import torch

    # runtime.hardware imports torch (its import time)
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
    return Progress()


def device_name(device: str) -> str:
    """Resolve ``"auto"`` (CUDA when present) and check a device name; torch is imported only here."""
    # torch's import time (through runtime.hardware): only when a command resolves a device
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


def comparison_table(samples: Sequence[tuple[str, EvaluationResult]]) -> Table:
    """Several samples' verdict rows side by side: a row per metric, per sample its value ± error and verdict."""
    # CLI start-up time: loaded when the command runs, not for --help
    from caloforge.validation.compare_report import shared_name
    from caloforge.validation.missing import format_value

    verdicts = ", ".join(f"{label}: {r.verdict}" for label, r in samples)
    table = Table("metric", "ref. split", *(label for label, _ in samples), title=f"verdicts: {verdicts}")
    by_key = [{row.key: row for row in r.verdicts} for _, r in samples]
    for key in dict.fromkeys(row.key for _, r in samples for row in r.verdicts):
        first = next(found[key] for found in by_key if key in found)
        cells = []
        for found in by_key:
            row = found.get(key)
            error = f" ± {format_value(row.error, 2)}" if row is not None and row.error == row.error else ""
            cells.append("–" if row is None else
                         f"{format_value(row.value)}{error} [{_VERDICT_STYLE[row.verdict]}]{row.verdict}[/]")
        table.add_row(shared_name(first.metric), format_value(first.reference_split), *cells)
    return table
