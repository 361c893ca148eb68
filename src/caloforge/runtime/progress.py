"""Progress of long stages: a live bar on a terminal, plain lines in a log.

Every stage that can take more than a few seconds reports through a :class:`Progress`.
On a terminal it draws a rich live bar (with status text and time remaining); when the
output is not a terminal (a log file, CI) it prints one plain, timestamped line when a
task starts, at most every ``interval_s`` seconds while it runs (always when the caller
marks a step such as an epoch as worth a line) and when it ends, so a log is never
silent for minutes and never cut at 80 columns. Library functions take
``progress: Progress | None``; None (or :data:`SILENT`) reports nothing.

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> p = Progress(stream=out, live=False)
    >>> with p.task("classifier", total=2, unit="epochs") as t:
    ...     t.update(1, status="acc 0.61", line=True)
    >>> print(out.getvalue().strip())  # doctest: +ELLIPSIS
    [caloforge +0:00:00] classifier: started
    [caloforge +0:00:00] classifier: 1/2 epochs acc 0.61 ETA 0:00:00
    [caloforge +0:00:00] classifier: done (0 s, 1/2 epochs, acc 0.61)
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

__all__ = ["SILENT", "Progress", "ProgressTask", "as_progress", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """``H:MM:SS`` for a duration in seconds.

    Example:
        >>> format_seconds(3725.4)
        '1:02:05'
    """
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ProgressTask:
    """One running task of a :class:`Progress`; created by :meth:`Progress.task`."""

    def __init__(self, owner: Progress, name: str, total: float | None, unit: str) -> None:
        self.owner = owner
        self.name = name
        self.total = total
        self.unit = unit
        self.completed = 0.0
        self.status = ""
        self.start = owner.now()
        self._last_line = self.start
        self._bar_id: Any = None

    def update(self, completed: float | None = None, *, advance: float | None = None, total: float | None = None,
               status: str | None = None, line: bool = False) -> None:
        """Record progress; ``line=True`` forces a plain line (e.g. once per epoch) in log mode."""
        if total is not None:
            self.total = total
        if completed is not None:
            self.completed = float(completed)
        if advance is not None:
            self.completed += advance
        if status is not None:
            self.status = status
        self.owner.safe_point()
        self.owner._show(self, line)

    def eta(self) -> float | None:
        """Seconds left at the average rate so far (None without a total or any progress)."""
        if not self.total or self.completed <= 0:
            return None
        rate = (self.owner.now() - self.start) / self.completed
        return max(0.0, (self.total - self.completed) * rate)

    def describe(self) -> str:
        """``name: done/total unit  status  ETA``."""
        parts = [f"{self.name}:"]
        if self.total:
            done = f"{self.completed:.0f}" if float(self.completed).is_integer() else f"{self.completed:.1f}"
            parts.append(f"{done}/{self.total:.0f} {self.unit}".rstrip())
        if self.status:
            parts.append(self.status)
        eta = self.eta()
        if eta is not None and self.completed < (self.total or 0):
            parts.append(f"ETA {format_seconds(eta)}")
        return " ".join(parts)


class Progress:
    """Reports tasks on a stream: a live rich bar on a terminal, plain lines otherwise.

    Args:
        stream: Where to write (default: standard error).
        live: Force the live bar (True) or plain lines (False); None detects a terminal.
        interval_s: In plain mode, the least time between two routine lines of a task.
        enabled: False reports nothing.
        clock: Time source in seconds (tests pass a fake one).
    """

    def __init__(self, stream: TextIO | None = None, live: bool | None = None, interval_s: float = 10.0,
                 enabled: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.enabled = enabled
        self.interval_s = interval_s
        self.now = clock
        self._origin = clock()
        target = stream if stream is not None else sys.stderr
        self.live = bool(target.isatty()) if live is None else live
        self._bar: Any = None
        self.check: Callable[[], None] | None = None  # e.g. deferred_interrupts' check: updates are safe points

    def safe_point(self) -> None:
        """Call :attr:`check` (if set): every task start and update is a point where the work may stop."""
        if self.check is not None:
            self.check()

    @property
    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def message(self, text: str) -> None:
        """Print one line (above a live bar on a terminal)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(text, soft_wrap=True, highlight=False, markup=False)
        else:
            print(f"[caloforge +{format_seconds(self.now() - self._origin)}] {text}", file=self._out, flush=True)

    @contextlib.contextmanager
    def task(self, name: str, total: float | None = None, unit: str = "") -> Iterator[ProgressTask]:
        """A task from start to end; its last line (or bar) says how long it took."""
        task = ProgressTask(self, name, total, unit)
        self.safe_point()
        if not self.enabled:
            yield task
            return
        if self.live:
            self._start_bar(task)
        else:
            self.message(f"{name}: started")
        ended = "done"
        try:
            yield task
        except BaseException:
            ended = "stopped"
            raise
        finally:
            if self.live:
                self._stop_bar(task)
            else:
                seconds = self.now() - task.start
                details = [f"{seconds:.0f} s" if seconds < 60 else format_seconds(seconds)]
                if task.total:
                    details.append(f"{task.completed:.0f}/{task.total:.0f} {task.unit}".rstrip())
                if task.status:
                    details.append(task.status)
                self.message(f"{name}: {ended} ({', '.join(details)})")

    # ------------------------------------------------------------------ output
    def _show(self, task: ProgressTask, line: bool) -> None:
        if not self.enabled:
            return
        if self.live and self._bar is not None:
            self._bar.update(task._bar_id, completed=task.completed, total=task.total, status=task.status)
            return
        now = self.now()
        if line or now - task._last_line >= self.interval_s:
            task._last_line = now
            self.message(task.describe())

    def _start_bar(self, task: ProgressTask) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        if self._bar is None:
            console = Console(file=self._out, highlight=False)
            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                     console=console, transient=False)
            self._bar.start()
        task._bar_id = self._bar.add_task(task.name, total=task.total, status="")

    def _stop_bar(self, task: ProgressTask) -> None:
        if self._bar is None:
            return
        self._bar.update(task._bar_id, completed=task.completed, status=task.status, refresh=True)
        if all(t.finished or t.id == task._bar_id for t in self._bar.tasks):
            self._bar.stop()
            self._bar = None


SILENT = Progress(enabled=False)
"""Reports nothing."""


def as_progress(progress: Progress | bool | None) -> Progress:
    """A :class:`Progress` from a flag: True = detect the terminal, False/None = :data:`SILENT`."""
    if isinstance(progress, Progress):
        return progress
    return Progress() if progress else SILENT
