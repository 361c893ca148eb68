"""Drawing the report's figures: each saved as PNG (and PDF), in this process or in several at once.

A dataset-2/3 report has 25 figures, eight of them with 45 histogram panels (90 axes): seconds of CPU each,
so :func:`draw_figures` can draw them in several spawned processes (``caloforge evaluate --threads``,
:func:`set_figure_workers`), and
its progress task prints a line at least every ``interval_s`` in a log, also during one long figure.
"""

from __future__ import annotations

import gc
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from caloforge.runtime.progress import SILENT, Progress, ProgressTask
from caloforge.validation import plots

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["MAX_FIGURE_WORKERS", "draw_figures", "figure_workers", "set_figure_workers"]


MAX_FIGURE_WORKERS = 4
"""The most processes :func:`draw_figures` draws in at once (each holds matplotlib, about 150 MB)."""


_workers = [1]


def set_figure_workers(count: int) -> None:
    """Draw the report's figures in ``count`` processes from now on (``caloforge evaluate --threads``; default 1).

    The library's default stays 1: spawned processes re-import the caller's main script, which a script
    without an ``if __name__ == "__main__":`` guard does not survive.
    """
    _workers[0] = max(1, min(int(count), MAX_FIGURE_WORKERS))


def figure_workers() -> int:
    """Processes for the report's figures: 1 unless :func:`set_figure_workers` said otherwise.

    Example:
        >>> figure_workers() >= 1
        True
    """
    return _workers[0]


def _render(job: tuple[str, Callable[[], Figure], Path, bool]) -> bytes:
    """Draw one figure and save it as ``plots_dir/stem.png`` (and ``.pdf``); its PNG bytes (also in a worker)."""
    # matplotlib's import time (about 0.5 s): only when a figure is drawn
    import matplotlib

    stem, make, plots_dir, pdf = job
    with matplotlib.rc_context(plots.style()):  # type: ignore[arg-type]
        fig = make()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        png = buffer.getvalue()
        (plots_dir / f"{stem}.png").write_bytes(png)
        if pdf:
            fig.savefig(plots_dir / f"{stem}.pdf", format="pdf")
        fig.clear()  # a 45-panel figure is 10^5 objects in reference cycles: freed now, not at the next full gc
    del fig
    gc.collect()
    return png


def draw_figures(drawn: list[tuple[str, str, str, Callable[[], Figure]]], stage: Path, pdf: bool = True,
                 progress: Progress | None = None, workers: int | None = None) -> list[tuple[str, str, bytes]]:
    """Draw each figure into ``stage/plots`` (PNG, and PDF if ``pdf``); returns (section, caption, PNG) in order.

    With ``workers`` > 1 (default :func:`figure_workers`) the figures are drawn by that many processes at
    once (the 25 figures of datasets 2/3: about 2x faster on 2 cores); the files and bytes are the same. The
    progress task prints a line at least every ``interval_s`` in a log, also while one long figure is drawn.
    """
    plots_dir = stage / "plots"
    plots_dir.mkdir(exist_ok=True)
    jobs = [(stem, make, plots_dir, pdf) for _, stem, _, make in drawn]
    count = min(len(jobs), figure_workers() if workers is None else max(1, workers))
    pngs: dict[str, bytes] = {}
    with (progress or SILENT).task("report figures", total=len(drawn), unit="figures", keepalive=True) as task:
        if count <= 1:
            for job in jobs:
                pngs[job[0]] = _render(job)
                task.update(advance=1, status=job[0])
        else:
            _draw_in_processes(jobs, count, pngs, task)
    return [(section, caption, pngs[stem]) for section, stem, caption, _ in drawn]


def _draw_in_processes(jobs: list[tuple[str, Callable[[], Figure], Path, bool]], count: int,
                       pngs: dict[str, bytes], task: ProgressTask) -> None:
    """:func:`_render` each job in ``count`` fresh processes (spawned: no inherited threads), collecting the PNGs."""
    # standard library, only where figures are drawn in parallel
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    pool = ProcessPoolExecutor(max_workers=count, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending = {pool.submit(_render, job): job[0] for job in jobs}
        while pending:
            done, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                stem = pending.pop(future)
                pngs[stem] = future.result()
                task.update(advance=1, status=f"{stem} ({count} processes)")
            if not done:  # Ctrl-C honoured while waiting; the task's keep-alive prints the lines
                task.owner.safe_point()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
