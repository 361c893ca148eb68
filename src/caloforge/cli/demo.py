"""The ``demo`` command: the project's main job on embedded data."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from caloforge.cli.common import (
    DEVICE,
    FAMILY,
    THREADS_HELP,
    apply_threads,
    cli_progress,
    console,
    device_name,
    examples,
    friendly_errors,
)

__all__ = ["register"]


@friendly_errors
def demo(
    out: Path = typer.Option(Path("caloforge-demo"), "--out", "-o", help="Directory for data, run and report."),
    max_minutes: float = typer.Option(5.0, "--max-minutes", min=0.01, help="Training budget, wall-clock minutes."),
    max_iterations: int | None = typer.Option(None, "--max-iterations", min=1, help="Training budget in "
                                              "iterations (stops at whichever budget comes first)."),
    classifier_minutes: float = typer.Option(1.5, "--classifier-minutes", min=0.01, help="Wall-clock budget of "
                                             "the classifier trainings, minutes."),
    n_train: int = typer.Option(30_000, "--n-train", min=100, help="Training showers to simulate."),
    n_validation: int = typer.Option(7_500, "--n-validation", min=100, help="Validation showers to simulate "
                                     "(checkpoint selection; equal shares of the 15 energies)."),
    n_eval: int = typer.Option(10_000, "--n-eval", min=100, help="Evaluation showers to simulate."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random step."),
    device: str = typer.Option("auto", "--device", metavar=DEVICE, help="Training and classifier device."),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
    force: bool = typer.Option(False, "--force", help="Replace an earlier demo's outputs in --out."),
    family: str | None = typer.Option(None, "--family", metavar=FAMILY, help="Model family (its CPU preset); "
                                      "default: the "
                                      "measured best in the demo's budget (docs/results.md)."),
    physics: str = typer.Option("cascade", "--physics", metavar="cascade|gflash", help="Reference simulator: "
                                "cascade (particle "
                                "transport) or gflash (parameterisation, 20x faster)."),
) -> None:
    """Simulate dataset-1 photons, train a model, generate, validate: prints a summary and the report's path."""
    # CLI start-up time: loaded when the command runs, not for --help
    from caloforge.demo import FAMILY as DEFAULT_FAMILY
    from caloforge.demo import run_demo

    apply_threads(threads)
    result = run_demo(out, minutes=max_minutes, max_iterations=max_iterations,
                      n_train=n_train, n_validation=n_validation,
                      n_eval=n_eval,
                      seed=seed, device=device_name(device), classifier_minutes=classifier_minutes, force=force,
                      progress=cli_progress(), family=(family or DEFAULT_FAMILY).lower(), physics=physics.lower())
    table = Table("", "value", title=f"caloforge demo: ds1 photons ({result.physics}), {result.family}")
    table.add_row("validation chi2/NDF of E_tot/E_inc, untrained", f"{result.untrained_chi2_ndf:.3g}")
    table.add_row("validation chi2/NDF, selected checkpoint", f"{result.trained_chi2_ndf:.3g}")
    table.add_row("evaluation chi2/NDF (independent sample)", f"{result.evaluation_chi2_ndf:.3g}")
    table.add_row("training iterations", str(result.iterations))
    table.add_row("generation time per shower (batch 10000)", f"{result.generation_us_per_shower:.1f} us")
    for name, summary in result.classifiers.items():
        table.add_row(f"{name}-level classifier", summary)
    table.add_row("report verdict", result.verdict)
    for step, seconds in result.timings.items():
        table.add_row(f"time: {step}", f"{seconds:.0f} s")
    table.add_row("time: total (planned)", f"{sum(result.timings.values()):.0f} s ({result.plan.total_s:.0f} s)")
    console.print(table)
    console.print(f"verdict {result.verdict}, in plain words:")
    for line in result.explanation:
        console.print(f"  {line}", highlight=False)
    console.print(f"report: {result.report}")
    console.print(f"model bundle: {result.bundle}")


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to ``app``."""
    app.command(epilog=examples(
        "caloforge demo --out demo/",
        "caloforge demo --out demo/ --max-minutes 30 --classifier-minutes 5 --n-train 100000 --force"))(demo)
