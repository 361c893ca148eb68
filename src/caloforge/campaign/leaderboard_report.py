"""The leaderboard's Markdown table and HTML page (the validation report's style)."""

from __future__ import annotations

import html
import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeGuard

from caloforge.validation.plots import new_figure
from caloforge.validation.report import html_page, png_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from caloforge.campaign.leaderboard import Leaderboard

__all__ = ["BUDGET_MARK", "BUDGET_NOTE", "COLUMNS", "notes", "pareto_figure", "pareto_front", "plural", "render_html",
           "render_markdown", "table_rows", "time_summary"]

COLUMNS = (
    ("family", "family", "{}"), ("chi2/NDF", "chi2_ndf", "{:.3g}"), ("AUC low", "auc_low", "{:.3f}"),
    ("AUC high", "auc_high", "{:.3f}"), ("FPD x10^3", "fpd_e3", "{:.3g}"), ("KPD x10^3", "kpd_e3", "{:.3g}"),
    ("us/shower", "us_per_shower", "{:.3g}"), ("parameters", "parameters", "{:,}"), ("iterations", "iterations", "{}"),
    ("verdict", "verdict", "{}"),
)
_ERRORS = {"auc_low": "auc_low_error", "auc_high": "auc_high_error", "fpd_e3": "fpd_error_e3",
           "kpd_e3": "kpd_error_e3"}
"""The columns shown with their error (``value ± error``, as leaderboard.json has them)."""
BUDGET_MARK = "†"
BUDGET_NOTE = (f"{BUDGET_MARK} the classifier stopped at its wall-clock budget (--classifier-minutes) before its "
               "epochs: the AUC may be understated, so the model may look better than it is.")


def _finite(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and math.isfinite(value)


def _cell(entry: dict[str, Any], key: str, fmt: str) -> str:
    value = entry.get(key)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    text = fmt.format(value)
    error = entry.get(_ERRORS.get(key, ""))
    if _finite(error):
        text += " ± " + fmt.format(error)
    if entry.get(f"{key}_budget_stopped"):
        text += " " + BUDGET_MARK
    return text


def plural(count: float, unit: str) -> str:
    """``1 minute``, ``2.5 minutes``, ``1 iteration``.

    Example:
        >>> plural(1.0, "minute"), plural(15, "minute"), plural(1, "iteration")
        ('1 minute', '15 minutes', '1 iteration')
    """
    return f"{count:g} {unit}" if count == 1 else f"{count:g} {unit}s"


def time_summary(board: Leaderboard) -> str:
    """Where the leaderboard's wall-clock time went, over every call of a resumed one.

    Example: ``8.4 minutes (training 2.0, generation 1.5, evaluation 3.3, timing 1.5, other 0.1)``.
    """
    split = board.minutes_by_stage()
    parts = ", ".join(f"{name} {minutes:.1f}" for name, minutes in split.items())
    calls = f" over {board.calls} calls (--resume; this one {board.elapsed_s / 60:.1f})" if board.calls > 1 else ""
    return f"{board.total_s / 60:.1f} minutes{calls} ({parts})"


def _machines(board: Leaderboard) -> str:
    machines = board.machines()
    if len(machines) == 1:
        return f"Machine: {next(iter(machines))}."
    return "Machines: " + "; ".join(f"{', '.join(families)}: {m}" for m, families in machines.items()) + "."


def table_rows(board: Leaderboard) -> list[list[str]]:
    """The table's cells, one row per family (values with their errors, budget-stopped classifiers marked)."""
    rows = []
    for entry in board.entries:
        if entry.get("status") == "ok":
            rows.append([_cell(entry, key, fmt) for _, key, fmt in COLUMNS])
        else:
            rows.append([entry["family"], *(["–"] * (len(COLUMNS) - 2)), f"failed: {entry.get('error', '')[:80]}"])
    return rows


def _caption(board: Leaderboard) -> str:
    s = board.settings
    budget = (plural(s.minutes_per_model, "minute") if s.minutes_per_model is not None
              else plural(s.iterations_per_model or 0, "iteration"))
    return (f"Each family trained for {budget} (seed {s.seed}, preset {s.preset}); classifier AUC from the full "
            f"evaluation with the same settings for every family ({s.classifier_showers} showers per sample, "
            f"{s.classifier_minutes:g}-minute budget); errors as the evaluation gives them (± one standard "
            f"deviation); generation timed at batch {s.timing_batch}. {_machines(board)} "
            f"The leaderboard took {time_summary(board)}.")


def notes(board: Leaderboard) -> list[str]:
    """The notes under the table (a classifier stopped by its budget)."""
    stopped = any(e.get(f"{k}_budget_stopped") for e in board.entries for k in ("auc_low", "auc_high"))
    return [BUDGET_NOTE] if stopped else []


def render_markdown(board: Leaderboard) -> str:
    """The leaderboard as a Markdown table with its settings underneath."""
    lines = ["| " + " | ".join(name for name, _, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(board)]
    under = [line for note in notes(board) for line in ("", note)]
    return "\n".join([*lines, *under, "", _caption(board), ""])


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both coordinates (lower is better in both), by x.

    Example:
        >>> pareto_front([(1.0, 0.9), (10.0, 0.6), (5.0, 0.95), (100.0, 0.6)])
        [0, 1]
    """
    order = sorted((i for i, p in enumerate(points) if all(math.isfinite(v) for v in p)), key=lambda i: points[i])
    front, best = [], math.inf
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_figure(board: Leaderboard) -> Figure | None:
    """Both classifier AUCs against generation time per shower, each with its Pareto front; None without rows.

    A model can pass one test and fail the other (a VAE at 0.54 low-level and 0.94 high-level looks as good as
    the baseline on the low-level AUC alone): one panel per AUC. Open markers and a dagger: the classifier
    stopped at its budget (its AUC may be understated).
    """
    ok = [e for e in board.entries if e.get("status") == "ok" and e.get("auc_low") is not None]
    if not ok:
        return None
    fig = new_figure(11.0, 4.5, "constrained")
    for ax, key, name in zip(fig.subplots(1, 2, sharey=True), ("auc_low", "auc_high"), ("low-level", "high-level"),
                             strict=True):
        points = [(float(e["us_per_shower"]), float(e[key]) if _finite(e.get(key)) else math.nan) for e in ok]
        for entry, (x, y) in zip(ok, points, strict=True):
            stopped = bool(entry.get(f"{key}_budget_stopped"))
            error = entry.get(f"{key}_error")
            ax.errorbar(x, y, yerr=float(error) if _finite(error) else 0.0, marker="o", linestyle="none",
                        markerfacecolor="none" if stopped else None)
            ax.annotate(entry["family"] + (f" {BUDGET_MARK}" if stopped else ""), (x, y),
                        textcoords="offset points", xytext=(5, 5))
        front = pareto_front(points)
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="grey", linestyle="--",
                label="Pareto front")
        ax.axhline(0.5, color="grey", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(f"generation time per shower at batch {board.settings.timing_batch} [us]")
        ax.set_title(f"{name} classifier")
        ax.legend(frameon=False)
    fig.axes[0].set_ylabel("classifier AUC (0.5: indistinguishable)")
    return fig


def render_html(board: Leaderboard) -> str:
    """The leaderboard page: the table, the settings, and both AUCs versus time with their Pareto fronts."""
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _, _ in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table_rows(board))
    parts = ["<h1>caloforge leaderboard</h1>", f"<table><tr>{head}</tr>{body}</table>",
             *(f"<p>{html.escape(note)}</p>" for note in notes(board)), f"<p>{html.escape(_caption(board))}</p>"]
    fig = pareto_figure(board)
    if fig is not None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        parts.append(png_figure(buffer.getvalue(), "Low- and high-level classifier AUC versus generation time per "
                                "shower, each with its Pareto front"))
    links = [f"<li>{html.escape(e['family'])}: <a href='{html.escape(e['family'])}/report/report.html'>report</a></li>"
             for e in board.entries if e.get("status") == "ok"]
    if (board.out_dir / "compare" / "report.html").is_file():
        links.insert(0, "<li><a href='compare/report.html'>every family in one report</a> (all samples overlaid "
                        "on the reference, every metric per family)</li>")
    elif len(links) > 1:
        links.append("<li>every family in one report: generate each family's showers (caloforge generate --model "
                     "FAMILY/run --like eval.h5 -o gen_FAMILY.h5), then caloforge evaluate -r eval.h5 -i gen_A.h5 "
                     "-i gen_B.h5 ... (docs/validation.md)</li>")
    if links:
        parts += ["<h2>Reports</h2><ul>", *links, "</ul>"]
    return html_page("caloforge leaderboard", parts)
