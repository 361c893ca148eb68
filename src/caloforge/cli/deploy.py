"""Deployment commands: ``bench`` (generation speed) and ``export`` (ONNX)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer
from rich.table import Table

from caloforge.cli.common import (
    DEVICE,
    THREADS_HELP,
    apply_threads,
    console,
    device_name,
    examples,
    friendly_errors,
    parse_floats,
)
from caloforge.errors import ConfigError

if TYPE_CHECKING:
    from caloforge.deploy.bench import BenchResult

__all__ = ["register"]


@friendly_errors
def bench(
    models: list[Path] = typer.Argument(..., help="Bundle or run directories, benchmarked side by side."),
    batch_sizes: str = typer.Option("1,100,10000", "--batch-sizes", help="Showers per generate call."),
    backend: Literal["torch", "onnxruntime", "torch-lean", "onnxruntime-lean", "all"] = typer.Option(
        "torch", "--backend", help="Runtime(s) to time; the -lean ones time one shower per call (batch 1), as "
        "Geant4 calls; all: every one."),
    device: str = typer.Option("auto", "--device", metavar=DEVICE, help="Device of the torch backend (auto: CUDA "
                               "when present)."),
    repeats: int = typer.Option(5, "--repeats", help="Timed calls per batch size (after one warm-up)."),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
    json_out: Path | None = typer.Option(None, "--out", "-o", help="Also write the results to this JSON file."),
    force: bool = typer.Option(False, "--force", help="Overwrite the JSON file."),
    precision: Literal["auto", "fp32", "bf16", "int8"] = typer.Option(
        "fp32", "--precision", help="bf16: the torch rows (CPUs with native bf16); int8: the onnxruntime rows; "
        "auto: chosen per model by measurement; each row says its precision."),
) -> None:
    """Time generation per shower at each batch size, next to the machine's measured fp32 and best native limits
    and the CaloChallenge's published times for the bundle's dataset.
    """
    # CLI start-up time: loaded when the command runs, not for --help
    from caloforge.data.outputs import atomic_path, check_output, strict_json
    from caloforge.deploy.bench import BACKENDS, FLOPS_NOTE, SPREAD_NOTE, run_bench

    sizes = [float(b) for b in parse_floats(batch_sizes, "--batch-sizes") or []]
    if any(not b.is_integer() or b < 1 for b in sizes):
        msg = f"expected --batch-sizes as whole numbers >= 1 but got '{batch_sizes}'"
        raise ConfigError(msg)
    backends = list(BACKENDS) if backend == "all" else [backend]
    if json_out is not None:
        check_output(json_out, force)
    count = apply_threads(threads)
    result = run_bench(models, [int(b) for b in sizes], backends, device_name(device), repeats, count,
                       precision=precision)
    m = result.machine
    console.print(f"machine: {m['description']}; {m['busy_cpus_at_start']:.1f} CPUs busy with other work at the start")
    console.print(f"limits in this run: fp32 {m['fp32_limit_gflops']:.4g} GFLOP/s, best native "
                  f"({m['best_precision']}) {m['best_limit_gflops']:.4g} GFLOP/s ({m['limit_note']})")
    table = Table("model", "backend", "precision", "batch", "us/shower (median)", "16-84 %", "MFLOP/shower", "GFLOP/s",
                  "of fp32", f"of {m['best_precision']}", "peak RSS MiB", title="generation time per shower")
    for r in result.rows:
        table.add_row(f"{r.family} ({Path(r.model).name})", r.backend, r.precision, str(r.batch_size),
                      f"{r.us_per_shower:.4g}", f"{r.us_p16:.3g}-{r.us_p84:.3g}" + (" *" if r.spread_note else ""),
                      f"{r.flops_per_shower / 1e6:.3g}", f"{r.gflops:.3g}", _percent(r.fraction_of_fp32),
                      f"{r.fraction_of_best:.0%}", f"{r.peak_rss_mb:.0f}")
    console.print(table)
    if any(r.spread_note for r in result.rows):
        console.print(f"* {SPREAD_NOTE}")
    console.print(f"fractions: {FLOPS_NOTE}")
    for note in result.skipped:
        console.print(f"not timed: {note}")
    for geometry, us in result.refsim_us_per_shower.items():
        console.print(f"reference simulator on {geometry}: {us:.4g} us/shower (same energies, one process)")
    _print_yardsticks(result)
    if json_out is not None:
        with atomic_path(json_out, force) as tmp:
            tmp.write_text(strict_json(result.to_dict(), indent=2), encoding="utf-8")
        console.print(f"wrote {json_out}")


@friendly_errors
def export(
    model: Path = typer.Argument(..., help="A bundle or run directory."),
    output: Path = typer.Option(..., "--out", "-o", help="The ONNX file (a manifest .json is written "
                                "beside it)."),
    fmt: Literal["onnx"] = typer.Option("onnx", "--format", help="Export format."),
    order: Literal["calochallenge", "par04"] = typer.Option("calochallenge", "--order", help="calochallenge "
                                                            "(batched) or par04 (one shower per call, Par04's "
                                                            "cell order)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Load a bundle whose bundle.json records no weights "
                                   "sha256 (older or edited bundles), unverified; refused without this flag."),
    precision: Literal["auto", "fp32", "bf16", "int8"] = typer.Option(
        "fp32", "--precision", help="int8: weights quantised by ONNX Runtime; auto: int8 where measured faster "
        "and within the errors of fp32; bf16 is refused (ONNX Runtime's CPU has no bf16 products)."),
) -> None:
    """Export a bundle's generator as ONNX: noise and conditions in, voxel energies in MeV out.
    """
    # CLI start-up time: loaded when the command runs, not for --help
    from caloforge.deploy.export import export_onnx
    from caloforge.deploy.precision import check_precision, choose_precision
    from caloforge.training.bundle import load

    check_precision(precision, "onnxruntime")
    bundle = load(model, trust_unverified=no_verify)
    if precision == "auto":
        choice = choose_precision(bundle)
        int8 = [p for p in choice.parities if p.precision == "int8" and p.accepted]
        fast = choice.us_per_shower.get("int8", float("inf")) < 0.9 * choice.us_per_shower.get("fp32", 0.0)
        precision = "int8" if int8 and fast else "fp32"
        console.print(f"--precision auto: {precision} (us/shower measured here: "
                      + ", ".join(f"{k} {v:.3g}" for k, v in choice.us_per_shower.items()) + ")")
    manifest = export_onnx(bundle, output, order, force, precision)
    console.print(f"wrote {output} and {manifest} ({precision})")


def _print_yardsticks(result: BenchResult) -> None:
    """The published times of each dataset's CaloChallenge submissions, this run's models beside them.

    Rows timed on the CPU stand beside the published CPU times, rows timed on a GPU beside the GPU times.
    """
    from caloforge.deploy.yardsticks import BATCH_SIZES, beside, format_ms, standing  # CLI start-up (as in bench)

    for table in result.yardsticks:
        dataset = table["dataset"]
        for gpu in sorted({r.device != "cpu" for r in result.rows if r.dataset == dataset}):
            where = "GPU" if gpu else "CPU"
            measured = beside(result.rows, dataset, gpu)
            view = Table("model", *(f"batch {b}" for b in BATCH_SIZES),
                         title=f"yardsticks, {dataset}: ms per shower, this run beside the CaloChallenge's {where} "
                               "times")
            for (name, backend, precision), times in measured.items():
                view.add_row(f"[bold]{name}, {backend}, {precision} (this machine)[/bold]",
                             *(format_ms(times.get(b)) for b in BATCH_SIZES))
            for anchor in table["anchors"]:
                values = anchor["gpu_ms" if gpu else "cpu_ms"]
                view.add_row(anchor["submission"], *(format_ms(values[str(b)]) for b in BATCH_SIZES))
            console.print(view)
            for (name, backend, precision), times in measured.items():
                batch = max(times)
                place = standing(times[batch] * 1000, batch, dataset, gpu)
                if place is not None:
                    console.print(f"{name} ({backend}, {precision}) at batch {batch}: no slower than {place[0]} of "
                                  f"the {place[1]} published {where} times")
        console.print(f"source: {table['source']}")
        console.print(f"caveat: {table['caveat']}")
        console.print(table["geant4"])
    if not result.yardsticks:
        console.print("yardsticks: none (no bundle's geometry is a CaloChallenge dataset; docs/performance.md, "
                      "'Anchors')")


def _percent(fraction: float) -> str:
    """A fraction as a percentage; NaN (a bf16 or int8 row against the fp32 limit) as "-"."""
    return "-" if fraction != fraction else f"{fraction:.0%}"


def register(app: typer.Typer) -> None:
    """Add the deployment commands to ``app``."""
    app.command(epilog=examples(
        "caloforge bench run/bundle --batch-sizes 1,100,10000",
        "caloforge bench run/bundle other/bundle --backend all --out bench.json"))(bench)
    app.command(epilog=examples(
        "caloforge export run/bundle --out model.onnx",
        "caloforge export run/bundle --order par04 --out model_par04.onnx"))(export)
