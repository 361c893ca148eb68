"""Ctrl-C and SIGTERM at safe points: nothing half-written, nothing lost.

A signal that raises in the middle of an HDF5 write can land inside a destructor, where
Python prints "Exception ignored" and carries on: the interrupt is lost, or the file is
left broken. Inside :func:`deferred_interrupts` the first SIGINT or SIGTERM only sets a
flag; the work calls ``check()`` at safe points (e.g. after each chunk is written), which
raises :class:`Interrupted` there, so temporary files are removed by the normal clean-up.
A second signal raises at once.

Example:
    >>> with deferred_interrupts() as check:
    ...     for chunk in range(3):
    ...         check()  # raises Interrupted after a signal, between chunks
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

__all__ = ["Interrupted", "deferred_interrupts", "exit_code"]


class Interrupted(KeyboardInterrupt):
    """Work stopped by SIGINT (Ctrl-C) or SIGTERM at a safe point.

    Attributes:
        signum: The signal received.
    """

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


def exit_code(error: BaseException) -> int:
    """The conventional exit status for an interrupt: 128 + the signal number (130 for Ctrl-C)."""
    return 128 + int(getattr(error, "signum", signal.SIGINT))


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[Callable[[], None]]:
    """Defer SIGINT/SIGTERM to the safe points where the caller calls the yielded ``check()``.

    Outside the main thread (where handlers cannot be installed) ``check`` does nothing and
    signals behave as usual.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    received: list[int] = []
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        if received:  # a second signal: stop now
            raise Interrupted(signum)
        received.append(signum)

    def check() -> None:
        if received:
            raise Interrupted(received[0])

    for signum in _SIGNALS:
        previous[signum] = signal.signal(signum, handler)
    try:
        yield check
        check()
    finally:
        for sig, handler_before in previous.items():
            signal.signal(sig, handler_before)
