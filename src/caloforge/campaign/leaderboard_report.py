"""The leaderboard's Markdown table and HTML page (the validation report's style)."""

from __future__ import annotations

import html
import io
import math
from typing import TYPE_CHECKING, Any

from caloforge.validation.report import html_page, png_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from caloforge.campaign.leaderboard import Leaderboard

__all__ = ["pareto_figure", "render_html", "render_markdown"]

_COLUMNS = (
    ("family", "family", "{}"), ("chi2/NDF", "chi2_ndf", "{:.3g}"), ("AUC low", "auc_low", "{:.3f}"),
    ("AUC high", "auc_high", "{:.3f}"), ("FPD x10^3", "fpd_e3", "{:.3g}"), ("KPD x10^3", "kpd_e3", "{:.3g}"),
    ("us/shower", "us_per_shower", "{:.3g}"), ("parameters", "parameters", "{:,}"), ("iterations", "iterations", "{}"),
    ("verdict", "verdict", "{}"),
)


def _cell(entry: dict[str, Any], key: str, fmt: str) -> str:
    value = entry.get(key)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return fmt.format(value)


def _rows(board: Leaderboard) -> list[list[str]]:
    rows = []
    for entry in board.entries:
        if entry.get("status") == "ok":
            rows.append([_cell(entry, key, fmt) for _, key, fmt in _COLUMNS])
        else:
            rows.append([entry["family"], *(["–"] * (len(_COLUMNS) - 2)), f"failed: {entry.get('error', '')[:80]}"])
    return rows


def _caption(board: Leaderboard) -> str:
    s = board.settings
    budget = (f"{s.minutes_per_model:g} minutes" if s.minutes_per_model is not None
              else f"{s.iterations_per_model} iterations")
    return (f"Each family trained for {budget} (seed {s.seed}, preset {s.preset}); classifier AUC from the full "
            f"evaluation with the same settings for every family ({s.classifier_showers} showers per sample, "
            f"{s.classifier_minutes:g}-minute budget); generation timed at batch {s.timing_batch}. "
            f"Machine: {board.machine}. The leaderboard took {board.elapsed_s / 60:.1f} minutes.")


def render_markdown(board: Leaderboard) -> str:
    """The leaderboard as a Markdown table with its settings underneath."""
    lines = ["| " + " | ".join(name for name, _, _ in _COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(board)]
    return "\n".join([*lines, "", _caption(board), ""])


def pareto_figure(board: Leaderboard) -> Figure | None:
    """Low-level classifier AUC against generation time per shower, with the Pareto front; None without rows."""
    from caloforge.campaign.leaderboard import pareto_front
    from caloforge.validation.plots import new_figure

    ok = [e for e in board.entries if e.get("status") == "ok" and e.get("auc_low") is not None]
    if not ok:
        return None
    points = [(float(e["us_per_shower"]), float(e["auc_low"])) for e in ok]
    fig = new_figure(7.0, 4.5, "constrained")
    ax = fig.subplots()
    for entry, (x, y) in zip(ok, points, strict=True):
        ax.errorbar(x, y, yerr=entry.get("auc_low_error") or 0.0, marker="o", linestyle="none")
        ax.annotate(entry["family"], (x, y), textcoords="offset points", xytext=(5, 5))
    front = pareto_front(points)
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="grey", linestyle="--",
            label="Pareto front")
    ax.axhline(0.5, color="grey", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(f"generation time per shower at batch {board.settings.timing_batch} [us]")
    ax.set_ylabel("low-level classifier AUC (0.5: indistinguishable)")
    ax.legend(frameon=False)
    return fig


def render_html(board: Leaderboard) -> str:
    """The leaderboard page: the table, the settings, and AUC versus time with the Pareto front."""
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _, _ in _COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in _rows(board))
    parts = ["<h1>caloforge leaderboard</h1>", f"<table><tr>{head}</tr>{body}</table>",
             f"<p>{html.escape(_caption(board))}</p>"]
    fig = pareto_figure(board)
    if fig is not None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        parts.append(png_figure(buffer.getvalue(), "Low-level classifier AUC versus generation time per shower"))
    links = [f"<li>{html.escape(e['family'])}: <a href='{html.escape(e['family'])}/report/report.html'>report</a></li>"
             for e in board.entries if e.get("status") == "ok"]
    if links:
        parts += ["<h2>Reports</h2><ul>", *links, "</ul>"]
    return html_page("caloforge leaderboard", parts)
