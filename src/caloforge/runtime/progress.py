"""Progress of long stages: a live bar on a terminal, plain lines in a log.

Every stage that can take more than a few seconds reports through a :class:`Progress`.
On a terminal it draws a rich live bar (with status text and time remaining); when the
output is not a terminal (a log file, CI) it prints one plain, timestamped line when a
task starts, at most every ``interval_s`` seconds while it runs (always when the caller
marks a step such as an epoch as worth a line) and when it ends, so a log is never
silent for minutes and never cut at 80 columns. A task opened with ``keepalive=True`` (one
long call with no steps to report, such as a generation pass) and a :meth:`Progress.heartbeat`
(a step inside a task, such as a validation) also get a line from a background thread whenever
the log was silent for ``interval_s`` while the call runs. A task with a wall-clock
budget (``max_seconds``) never shows an ETA beyond what is left of it. Library functions take
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
import threading
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

    def __init__(self, owner: Progress, name: str, total: float | None, unit: str,
                 max_seconds: float | None = None) -> None:
        self.owner = owner
        self.name = name
        self.total = total
        self.unit = unit
        self.max_seconds = max_seconds
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
        """Seconds left at the average rate so far, at most what is left of ``max_seconds`` (None: no estimate).

        Example:
            >>> clock = iter([0.0, 0.0, 100.0]).__next__
            >>> task = ProgressTask(Progress(enabled=False, clock=clock), "classifier", total=50, unit="epochs",
            ...                     max_seconds=120.0)
            >>> task.completed = 10  # 10 s per epoch: 400 s to go by the rate, 20 s by the budget
            >>> task.eta()
            20.0
        """
        now = self.owner.now()
        left = None if self.max_seconds is None else max(0.0, self.start + self.max_seconds - now)
        if not self.total or self.completed <= 0:
            return left
        by_rate = max(0.0, (self.total - self.completed) * (now - self.start) / self.completed)
        return by_rate if left is None else min(by_rate, left)

    def describe(self) -> str:
        """``name: done/total unit  status  ETA``."""
        parts = [f"{self.name}:"]
        if self.total:
            done = f"{self.completed:.0f}" if float(self.completed).is_integer() else f"{self.completed:.1f}"
            parts.append(f"{done}/{self.total:.0f} {self.unit}".rstrip())
        if self.status:
            parts.append(self.status)
        eta = self.eta()
        if eta is not None and (self.completed < (self.total or 0) or not self.total):
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
        self._lock = threading.Lock()  # a keep-alive thread and the caller print lines
        self._last_message = self._origin
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
            with self._lock:
                self._last_message = self.now()
                print(f"[caloforge +{format_seconds(self.now() - self._origin)}] {text}", file=self._out, flush=True)

    @contextlib.contextmanager
    def task(self, name: str, total: float | None = None, unit: str = "", *, max_seconds: float | None = None,
             keepalive: bool = False) -> Iterator[ProgressTask]:
        """A task from start to end; its last line (or bar) says how long it took.

        Args:
            name: Shown at the start of each line.
            total: The amount of work (None: unknown).
            unit: Of ``total``.
            max_seconds: The task's wall-clock budget: its ETA never exceeds what is left of it.
            keepalive: In a log, a line every ``interval_s`` even without updates (for one long call).
        """
        task = ProgressTask(self, name, total, unit, max_seconds)
        self.safe_point()
        if not self.enabled:
            yield task
            return
        if self.live:
            self._start_bar(task)
        else:
            self.message(f"{name}: started")
        ended = "done"
        stop = threading.Event()
        if keepalive and not self.live:
            self._start_keep_alive(task.describe, task.start, stop)
        try:
            yield task
        except BaseException:
            ended = "stopped"
            raise
        finally:
            stop.set()
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

    @contextlib.contextmanager
    def heartbeat(self, text: str) -> Iterator[None]:
        """While the block runs, in a log, ``text (H:MM:SS so far)`` whenever nothing was printed for ``interval_s``.

        No line while other lines keep coming (e.g. a fast model's validation every second between its lines).
        On a terminal the live bar's elapsed time shows that work goes on.
        """
        stop = threading.Event()
        if self.enabled and not self.live:
            self._start_keep_alive(lambda: text, self.now(), stop)
        try:
            yield
        finally:
            stop.set()

    def _start_keep_alive(self, describe: Callable[[], str], start: float, stop: threading.Event) -> None:
        def run() -> None:  # silence is counted from the last line of any task (not from this call's start)
            while not stop.wait(max(0.05, min(self.interval_s, self._last_message + self.interval_s - self.now()))):
                if self.now() >= self._last_message + self.interval_s and not stop.is_set():
                    self.message(f"{describe()} ({format_seconds(self.now() - start)} so far)")

        threading.Thread(target=run, daemon=True, name="caloforge keep-alive").start()

    # ------------------------------------------------------------------ output
    def _show(self, task: ProgressTask, line: bool) -> None:
        if not self.enabled:
            return
        if self.live and self._bar is not None:
            self._bar.update(task._bar_id, completed=task.completed, total=task.total, status=task.status,
                             eta=_eta_text(task))
            return
        now = self.now()
        if line or now - task._last_line >= self.interval_s:
            task._last_line = now
            self.message(task.describe())

    def _start_bar(self, task: ProgressTask) -> None:
        # rich's import time: only for a live bar on a terminal (a log gets plain lines)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        if self._bar is None:
            console = Console(file=self._out, highlight=False)
            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                                     TextColumn("{task.fields[eta]}"),  # ours: capped by the task's budget
                                     console=console, transient=False)
            self._bar.start()
        task._bar_id = self._bar.add_task(task.name, total=task.total, status="", eta=_eta_text(task))

    def _stop_bar(self, task: ProgressTask) -> None:
        if self._bar is None:
            return
        self._bar.update(task._bar_id, completed=task.completed, status=task.status, refresh=True)
        if all(t.finished or t.id == task._bar_id for t in self._bar.tasks):
            self._bar.stop()
            self._bar = None


def _eta_text(task: ProgressTask) -> str:
    eta = task.eta()
    return "" if eta is None else f"ETA {format_seconds(eta)}"


SILENT = Progress(enabled=False)
"""Reports nothing."""


def as_progress(progress: Progress | bool | None) -> Progress:
    """A :class:`Progress` from a flag: True = detect the terminal, False/None = :data:`SILENT`."""
    if isinstance(progress, Progress):
        return progress
    return Progress() if progress else SILENT
