"""Shared CLI plumbing: one-line errors, the console, geometry options."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from caloforge.errors import CaloforgeError

__all__ = ["console", "err_console", "friendly_errors", "state"]

P = ParamSpec("P")
R = TypeVar("R")

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


@dataclass
class _State:
    debug: bool = False


state = _State()


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn caloforge errors and Ctrl-C into a one-line message and a non-zero exit (unless ``--debug``)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except CaloforgeError as err:
            if state.debug:
                raise
            print(f"caloforge: error: {err}", file=sys.stderr)  # noqa: T201
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            if state.debug:
                raise
            print("caloforge: interrupted", file=sys.stderr)  # noqa: T201
            raise typer.Exit(code=130) from None

    return wrapper
