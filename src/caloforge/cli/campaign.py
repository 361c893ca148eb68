"""The ``campaign`` commands: ``run`` a spec on Ray Tune (here or on a cluster), ``report`` its results."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from caloforge.cli.common import THREADS_HELP, apply_threads, console, examples, friendly_errors

__all__ = ["app", "register"]

app = typer.Typer(name="campaign", help="Campaigns: one model per particle and eta slice, each with a "
                  "hyperparameter search on Ray Tune (needs the ray extra); see docs/scaling.md.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.command(epilog=examples("caloforge campaign run benchmarks/campaign_ds1.yaml --out runs/ds1",
                            "caloforge campaign run spec.yaml --address auto --resume"))
@friendly_errors
def run(
    spec: Path = typer.Argument(..., help="The campaign spec (YAML), see caloforge.campaign.spec."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Campaign directory (default: the spec's output, "
                                    "else campaign-<name>)."),
    address: str | None = typer.Option(None, "--address", help="A Ray cluster: auto (the cluster of this node) or "
                                       "ray://HOST:PORT; default: Ray on this machine's cores."),
    resume: bool = typer.Option(False, "--resume", help="Continue the campaign in --out: finished trials are "
                                "kept, interrupted ones continue from their last checkpoint."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Live table of trials."),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP + " For this process only: each "
                                       "trial uses resources.cpus threads."),
) -> None:
    """Run every trial of a campaign, then write trials.json and the model set (best bundle per slice)."""
    # CLI start-up time: loaded when the command runs, not for --help
    from caloforge.campaign.tune import run_campaign

    apply_threads(threads)
    result = run_campaign(spec, out, address=address, resume=resume, progress=progress)
    table = Table("slice", "family", "complete", "stopped", "failed", "best objective", title="campaign")
    groups = sorted({(t["slice"], t["family"]) for t in result.trials})
    for slice_label, family in groups:
        rows = [t for t in result.trials if t["slice"] == slice_label and t["family"] == family]
        best = min((t["objective"] for t in rows if "objective" in t), default=None)
        table.add_row(slice_label, family, *(str(sum(t["status"] == s for t in rows))
                                             for s in ("complete", "stopped", "error")),
                      "–" if best is None else f"{best:.4g}")
    console.print(table)
    if result.model_set is not None:
        console.print(f"model set: {result.model_set}")
    if not result.finished:
        console.print(f"not finished; continue with: caloforge campaign run {spec} --out {result.out_dir} --resume")
        raise typer.Exit(code=128 + (result.signum or 2))  # 130 after Ctrl-C (or an unfinished run), 143 SIGTERM
    console.print(f"report: caloforge campaign report {result.out_dir} ({result.elapsed_s / 60:.1f} min)")


@app.command(epilog=examples("caloforge campaign report runs/ds1"))
@friendly_errors
def report(
    campaign: Path = typer.Argument(..., help="A campaign directory (holding trials.json)."),
) -> None:
    """Write CAMPAIGN/report/campaign.html and .md: the chosen model per slice, heat maps, every trial."""
    # CLI start-up time: loaded when the command runs, not for --help
    from caloforge.campaign.report import write_report

    page = write_report(campaign)
    console.print(f"campaign report: {page}")


def register(parent: typer.Typer) -> None:
    """Add the ``campaign`` sub-commands to ``parent``."""
    parent.add_typer(app, name="campaign")
