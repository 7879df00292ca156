"""The audit report PDF, drawn from a :class:`~pipeline.review.report.ReportContent`: cohort table with its filters
and n, budget curves, reliability diagram, worklist, reviewer decisions, and signature and date lines (matplotlib's
PdfPages, A4, every page footed with its number). Each configuration keeps its colour and line style
(``pipeline.styles``, the dashboard's too); a missing value, time or user prints "—".
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from pipeline.metrics import registry
from pipeline.metrics.cost_benefit import PRIMARY, cost_axis, shown_table, verdict
from pipeline.review.exports import case_state
from pipeline.review.report import Cohort, ReportContent
from pipeline.review.worklist import Worklist, WorklistCase
from pipeline.styles import style

A4 = (8.27, 11.69)
LANDSCAPE = (11.69, 8.27)
ROWS_PER_PAGE = 24
DISCLAIMER = "Research / QA support software, not a medical device."
MISSING = "—"


def _text(value: object, width: int = 40) -> str:
    """A cell: "—" for a missing value or time (None, NaN, NaT), times to the minute, floats to 3 decimals."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def page(title: str, size: tuple[float, float] = A4) -> tuple[Figure, Axes]:
    figure = Figure(figsize=size)
    figure.text(0.06, 0.94, title, fontsize=15, weight="bold")
    axes = figure.add_axes((0.04, 0.06, 0.92, 0.84))
    axes.axis("off")
    return figure, axes


def _table(axes: Axes, frame: pd.DataFrame, font: float, widths: Mapping[str, int] | None = None) -> None:
    """``frame`` as a table at the top of ``axes``, columns as wide as their text (cut at 40 characters, or at the
    column's entry in ``widths``)."""
    limits = [(widths or {}).get(str(column), 40) for column in frame.columns]
    cells = [[_text(v, limit) for v, limit in zip(row, limits, strict=True)] for row in frame.itertuples(index=False)]
    table = axes.table(cellText=cells, colLabels=list(frame.columns), loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(font)
    table.auto_set_column_width(list(range(len(frame.columns))))
    table.scale(1.0, 1.3)


def table_pages(title: str, frame: pd.DataFrame, empty: str, font: float = 7.0,
                 widths: Mapping[str, int] | None = None) -> list[Callable[[], Figure]]:
    """One drawing function per landscape page of ``frame`` (ROWS_PER_PAGE rows each); a note when it is empty."""
    def draw(part: pd.DataFrame, number: int, count: int) -> Figure:
        figure, axes = page(title if count == 1 else f"{title} ({number}/{count})", LANDSCAPE)
        if part.empty:
            axes.text(0.0, 0.95, empty, fontsize=11, va="top")
        else:
            _table(axes, part, font, widths)
        return figure

    count = max(1, math.ceil(len(frame) / ROWS_PER_PAGE))
    return [lambda i=i: draw(frame.iloc[i * ROWS_PER_PAGE:(i + 1) * ROWS_PER_PAGE], i + 1, count)
            for i in range(count)]


def cohort_table(cohort: Cohort) -> pd.DataFrame:
    """The cover's table: per configuration (grid order) each summary metric's mean ± SD over repeats, n and repeats."""
    if cohort.summary.empty:
        return pd.DataFrame()
    rows = cohort.summary.assign(position=cohort.summary["configuration_id"].map(cohort.positions))
    rows = rows.sort_values("position")
    shown = pd.DataFrame({"configuration": rows["configuration_id"].map(cohort.names).to_numpy()})
    for metric in registry.summary_metrics():
        pairs = zip(rows[f"{metric.name}_mean"], rows[f"{metric.name}_sd"], strict=True)
        shown[metric.label] = [MISSING if math.isnan(m) else
                               f"{metric.format(m)} ± {MISSING if math.isnan(s) else metric.format(s)}"
                               for m, s in pairs]
    shown["n cases"] = rows["n_cases"].to_numpy()
    shown["repeats"] = rows["n_repeats"].to_numpy()
    return shown


def _cover(content: ReportContent) -> Figure:
    figure, axes = page("Uncertainty QA — audit report")
    lines = [DISCLAIMER, f"Generated {content.generated_at:%Y-%m-%d %H:%M} UTC from {content.store}",
             f"Worklist: configuration {content.configuration}, budget {content.budget.describe()}", "",
             "Cohort numbers (as the cohort page shows them for these filters): per repeat the mean over its test "
             "cases,", "then mean ± SD over repeats; n = distinct test cases per configuration.",
             *content.cohort.filters]
    axes.text(0.0, 1.0, "\n".join(lines), fontsize=9, va="top")
    shown = cohort_table(content.cohort)
    if not shown.empty:
        table_axes = figure.add_axes((0.04, 0.06, 0.92, 0.6))
        table_axes.axis("off")
        _table(table_axes, shown, 7.0)
    return figure


def _curves(axes: tuple[Axes, Axes], cohort: Cohort) -> None:
    for ax, label in zip(axes, ("mean UEO(b)", "mean error recall(b)"), strict=True):
        ax.set_xlabel("budget b (% of ROI voxels)")
        ax.set_ylabel(f"{label}, mean over repeats")
        ax.grid(alpha=0.3)
    if cohort.curves.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "no curves for these filters", ha="center", transform=ax.transAxes)
        return
    ordered = cohort.curves.assign(position=cohort.curves["configuration_id"].map(cohort.positions))
    for configuration, rows in ordered.sort_values(["position", "budget"]).groupby("configuration_id", sort=False):
        look = style(cohort.positions[int(configuration)])
        for ax, metric in zip(axes, ("ueo", "recall"), strict=True):
            ax.plot(100 * rows["budget"], rows[f"{metric}_mean"], color=look.colour,
                    linestyle=look.matplotlib_dash, linewidth=1.2, label=cohort.names[int(configuration)])
    axes[0].legend(fontsize=6, ncol=4)


def _reliability(ax: Axes, cohort: Cohort) -> None:
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8, label="perfect calibration")
    counts = cohort.n_cases()
    for configuration in sorted(cohort.reliability, key=lambda c: cohort.positions[c]):
        bins, look = cohort.reliability[configuration], style(cohort.positions[configuration])
        confidence, accuracy = bins.mean_confidence()[0], bins.accuracy()[0]
        kept = bins.count[0] > 0
        ax.plot(confidence[kept], accuracy[kept], color=look.colour, linestyle=look.matplotlib_dash, marker="o",
                markersize=2.5, linewidth=1.2, label=f"{cohort.names[configuration]} (ECE {bins.ece():.3f}, "
                f"n = {counts.get(configuration, 0)})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability diagram (pooled over test cases and repeats)", fontsize=9)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.04, 1.0), borderaxespad=0.0)


def _charts(content: ReportContent) -> Figure:
    figure = Figure(figsize=A4)
    figure.text(0.08, 0.95, "Budget curves and calibration", fontsize=15, weight="bold")
    ueo, recall, reliability = (figure.add_axes(box) for box in
                                ((0.1, 0.67, 0.8, 0.23), (0.1, 0.38, 0.8, 0.23), (0.1, 0.07, 0.38, 0.24)))
    _curves((ueo, recall), content.cohort)
    _reliability(reliability, content.cohort)
    return figure


def _cost(content: ReportContent) -> Figure:
    """UEO-AUC with its CI against cost per case, the Pareto front marked, and the choice in words."""
    rows = content.cohort.cost
    figure = Figure(figsize=A4)
    figure.text(0.08, 0.95, "Cost and benefit", fontsize=15, weight="bold")
    figure.text(0.08, 0.92, "\n".join(textwrap.wrap(verdict(rows), 110)), fontsize=8, va="top")
    ax = figure.add_axes((0.1, 0.45, 0.8, 0.4))
    axis = cost_axis(rows)
    ax.set_xlabel("inference seconds per case" if axis == "seconds" else "forward passes per case")
    ax.set_ylabel("UEO-AUC (mean over repeats, CI)")
    ax.grid(alpha=0.3)
    shown = [r for r in rows if not math.isnan(r.benefits[PRIMARY].estimate)]
    if not shown:
        ax.text(0.5, 0.5, "no UEO-AUC for these filters", ha="center", transform=ax.transAxes)
        return figure
    ax.set_xscale("log")
    for row in shown:
        value = row.benefits[PRIMARY]
        ax.errorbar([getattr(row, axis)], [value.estimate], yerr=[[value.estimate - value.low],
                                                                 [value.high - value.estimate]],
                    fmt="D" if row.pareto else "o", markersize=7 if row.pareto else 4, linewidth=0.8,
                    color=style(row.position).colour)
        ax.annotate(row.configuration, (getattr(row, axis), value.estimate), fontsize=5, xytext=(3, 3),
                    textcoords="offset points")
    front = sorted((r for r in shown if r.pareto), key=lambda r: getattr(r, axis))
    ax.plot([getattr(r, axis) for r in front], [r.benefits[PRIMARY].estimate for r in front], color="grey",
            linestyle=":", linewidth=1, label="Pareto front (◆)")
    ax.legend(fontsize=7)
    return figure


def _notes(case: WorklistCase) -> str:
    """A case's state (:func:`~pipeline.review.exports.case_state`) where it needs attention: no reference yet, an
    empty prediction, out of distribution."""
    state = case_state(case)
    return "; ".join(word for word in (state["reference"] if not case.has_reference else "", state["prediction"],
                                       state["ood"] if case.ood_flag else "") if word)


def _worklist_frame(worklist: Worklist) -> pd.DataFrame:
    rows = [{"rank": c.rank, "case": c.case, "budget %": 100 * c.fraction, "flagged mL": c.flagged_ml,
             "regions": len(c.regions), "score": c.score,
             "expected recall": c.expected_recall,
             "items": ", ".join(f"{i.structure}: {i.state.value}" for i in c.items), "notes": _notes(c)}
            for c in worklist.cases]
    return pd.DataFrame(rows)


def _sign_off(content: ReportContent) -> Figure:
    figure, axes = page("Sign-off")
    states = content.decisions["state"].value_counts().to_dict() if not content.decisions.empty else {}
    summary = ", ".join(f"{count} {state}" for state, count in sorted(states.items())) or "no review item yet"
    lines = [f"Review items: {summary}.", f"Unreviewed items in the worklist: {content.worklist.unreviewed()}.", "",
             "I confirm that the review regions listed in this report were reviewed as recorded.", ""]
    axes.text(0.0, 1.0, "\n".join(lines), fontsize=10, va="top")
    for top, role in ((0.72, "Reviewer (physicist)"), (0.52, "Approver (physicist)"), (0.32, "Head of physics")):
        axes.text(0.0, top, role, fontsize=10, weight="bold")
        for x0, x1, label in ((0.0, 0.45, "Name"), (0.5, 0.8, "Signature"), (0.85, 1.0, "Date")):
            axes.plot([x0, x1], [top - 0.08, top - 0.08], color="black", linewidth=0.8)
            axes.text(x0, top - 0.11, label, fontsize=8)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    return figure


def write_report(content: ReportContent, path: Path) -> Path:
    """Draw ``content`` into a PDF at ``path``; returns ``path``."""
    pages: Sequence[Callable[[], Figure]] = [
        lambda: _cover(content), lambda: _charts(content), lambda: _cost(content),
        *table_pages("Cost and benefit per configuration", shown_table(content.cohort.cost),
                      "No configuration has results for these filters."),
        *table_pages(f"Worklist — {content.configuration}, {content.budget.describe()}",
                      _worklist_frame(content.worklist), "No case in the worklist.", font=6.0,
                      widths={"notes": 125}),
        *table_pages("Reviewer decisions", content.decisions, "No review decision recorded yet."),
        lambda: _sign_off(content),
    ]
    return save_pages(pages, path, "Uncertainty QA audit report")


def save_pages(pages: Sequence[Callable[[], Figure]], path: Path, title: str) -> Path:
    """Draw each page into a PDF at ``path`` titled ``title``, every page footed with its number and the
    disclaimer; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with PdfPages(path) as pdf:
        metadata = pdf.infodict()
        metadata["Title"] = title
        metadata["Subject"] = DISCLAIMER
        for number, draw in enumerate(pages, start=1):
            figure = draw()
            figure.text(0.5, 0.02, f"page {number} of {len(pages)} — {DISCLAIMER}", ha="center", fontsize=7)
            pdf.savefig(figure)
    return path
