"""The live progress of a campaign: a table of trials on a terminal, one line per event in a log.

:class:`CampaignProgress` is a Ray Tune callback (it runs in the driver). On a terminal it keeps a
rich live table of every trial (slice, family, status, iterations, running best validation
chi2/NDF, objective, hyperparameters); in a log it prints a timestamped line when a trial starts,
finishes, is stopped early or fails, and a summary every minute.
"""

from __future__ import annotations

import sys
import time
from typing import Any, ClassVar, TextIO

from ray.tune import Callback

from caloforge.campaign.search import OBJECTIVE, SELECTION

__all__ = ["CampaignProgress"]

_STYLE = {"running": "cyan", "complete": "green", "stopped": "yellow", "error": "red", "pending": "dim"}


def _short(params: dict[str, Any]) -> str:
    out = []
    for key, value in params.items():
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        out.append(f"{key}={text}")
    return " ".join(out)


class CampaignProgress(Callback):
    """Trials of a campaign as they run (see the module docstring).

    Tune keeps its callbacks with the experiment, so a resumed campaign runs the instance of the
    first run: whether it shows anything is :attr:`active`, set by each run.

    Args:
        total: The number of trials of the campaign.
        stream: Where to write (default standard error).
        live: A live table (default: when ``stream`` is a terminal).
    """

    active: ClassVar[bool] = True
    """Whether this process shows the progress (``--progress/--no-progress`` of the current run)."""

    def __init__(self, total: int, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.total = total
        self.stream = stream
        self.live = live
        self.rows: dict[str, dict[str, Any]] = {}
        self._display: Any = None
        self._start = time.monotonic()
        self._last_summary = self._start

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks with the experiment: the display and the stream stay behind."""
        state = self.__dict__.copy()
        state.update(_display=None, stream=None)
        return state

    def _out(self) -> TextIO:
        return self.stream or sys.stderr

    def _live(self) -> bool:
        return self.live if self.live is not None else self._out().isatty()

    def _row(self, trial: Any) -> dict[str, Any]:
        config = trial.config or {}
        return self.rows.setdefault(trial.trial_id, {"slice": config.get("slice", "?"),
                                                     "family": config.get("family", "?"),
                                                     "params": _short(config.get("params", {})), "status": "pending",
                                                     "iteration": 0, "best": None, "objective": None})

    def _line(self, text: str) -> None:
        if self._live() or not self.active:
            return
        elapsed = int(time.monotonic() - self._start)
        print(f"[campaign +{elapsed // 3600}:{elapsed % 3600 // 60:02d}:{elapsed % 60:02d}] {text}",
              file=self._out(), flush=True)

    def _table(self) -> Any:
        # rich's live display only on a terminal (a log gets plain lines; its import time)
        from rich.table import Table

        done = sum(r["status"] in ("complete", "stopped", "error") for r in self.rows.values())
        table = Table("slice", "family", "trial", "status", "iterations", "best chi2/NDF", OBJECTIVE, "parameters",
                      title=f"campaign: {done}/{self.total} trials done")
        for trial_id, r in self.rows.items():
            best = "–" if r["best"] is None else f"{r['best']:.3g}"
            objective = "–" if r["objective"] is None else f"{r['objective']:.3g}"
            table.add_row(r["slice"], r["family"], trial_id, f"[{_STYLE[r['status']]}]{r['status']}[/]",
                          str(r["iteration"]), best, objective, r["params"])
        return table

    def _refresh(self) -> None:
        if not self.active:
            return
        if not self._live():
            if time.monotonic() - self._last_summary > 60:
                self._last_summary = time.monotonic()
                counts = {s: sum(r["status"] == s for r in self.rows.values()) for s in _STYLE}
                self._line(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" of {self.total} trials")
            return
        if self._display is None:
            # rich's live display only on a terminal (a log gets plain lines; its import time)
            from rich.console import Console
            from rich.live import Live

            self._display = Live(self._table(), console=Console(file=self._out()), refresh_per_second=2)
            self._display.start()
        self._display.update(self._table())

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        row = self._row(trial)
        row["status"] = "running"
        self._line(f"{row['slice']} {row['family']} {trial.trial_id}: started ({row['params']})")
        self._refresh()

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        row = self._row(trial)
        row["iteration"] = result.get("iteration", row["iteration"])
        row["best"] = result.get(SELECTION, row["best"])
        row["objective"] = result.get(OBJECTIVE, row["objective"])
        self._refresh()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        row = self._row(trial)
        row["status"] = "complete" if row["objective"] is not None else "stopped"
        what = f"{OBJECTIVE} {row['objective']:.4g}" if row["objective"] is not None else "stopped early"
        self._line(f"{row['slice']} {row['family']} {trial.trial_id}: {what} after {row['iteration']} iterations")
        self._refresh()

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        row = self._row(trial)
        row["status"] = "error"
        self._line(f"{row['slice']} {row['family']} {trial.trial_id}: failed (see its error.txt under tune/)")
        self._refresh()

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._refresh()

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if self._display is not None:
            self._display.update(self._table())
            self._display.stop()
            self._display = None
