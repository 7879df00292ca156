"""Plotly figures (plain dicts) of the cohort and comparison pages; one colour and line style per configuration
everywhere (``pipeline.styles``, shared with the audit report)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from plotly.colors import hex_to_rgb

from pipeline.metrics import registry
from pipeline.metrics.calibration import ReliabilityBins
from pipeline.metrics.cohort import PairedComparison
from pipeline.styles import COLOURS, style

SHOWN_AT_FIRST = 4  # configurations overlaid when a chart first opens (more can be chosen)
#: the comparison's primary metric: the summary of its budget curves (mean UEO over budgets 0–5 %); the registry says
#: which way is better
PRIMARY = registry.metric("ueo_auc")
CURVE_LABELS = {"ueo": "UEO(b)", "recall": "error recall(b)", "precision": "error precision(b)"}


def first_shown(grid: list[int], means: dict[int, float]) -> list[int]:
    """The configurations shown when the page opens, in grid order: the grid's reference (its first configuration,
    Base: no uncertainty method, what every method is judged against) and the best of the others by :data:`PRIMARY`
    (``means``), :data:`SHOWN_AT_FIRST` in all — so the best is always in view and the curves stay readable
    (twelve bands overlap beyond reading); configurations without a mean fill up in grid order."""
    if not grid:
        return []
    others = grid[1:]
    picked = {grid[0], *[*ranked(others, means), *(c for c in others if c not in means)][:SHOWN_AT_FIRST - 1]}
    return [c for c in grid if c in picked]


def ranked(configurations: list[int], means: dict[int, float]) -> list[int]:
    """Those of ``configurations`` with a mean of :data:`PRIMARY`, best first."""
    return sorted((c for c in configurations if c in means), key=means.__getitem__,
                  reverse=PRIMARY.direction == "higher")


def _line(position: int) -> dict[str, str]:
    """The line of the configuration at grid ``position``: its colour and dash."""
    look = style(position)
    return {"color": look.colour, "dash": look.dash}


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = hex_to_rgb(hex_colour)
    return f"rgba({r},{g},{b},{alpha})"


#: the mode bar (Plotly's toolbar, top right, shown on hover) has the figure's first row to itself: the title sits in
#: the row below it (``pad`` from the top), so no title of any length runs under the toolbar
MODEBAR_ROW = 34
TITLE_ROW = 24


def _layout(title: str, x: str, y: str, **extra: Any) -> dict[str, Any]:
    return {"title": {"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left", "yref": "container",
                      "y": 1, "yanchor": "top", "pad": {"t": MODEBAR_ROW}},
            "xaxis": {"title": {"text": x}}, "yaxis": {"title": {"text": y}},
            "margin": {"l": 55, "r": 10, "t": MODEBAR_ROW + TITLE_ROW + 8, "b": 45}, "height": 400,
            "template": "plotly_white",
            "legend": {"font": {"size": 11}, "orientation": "h", "yanchor": "top", "y": -0.22}, **extra}


def figure_layout(title: str, x: str, y: str, **extra: Any) -> dict[str, Any]:
    """The layout every chart of these pages shares (title under the toolbar, legend below)."""
    return _layout(title, x, y, **extra)


def empty_figure(message: str) -> dict[str, Any]:
    """A blank figure that says why it is blank."""
    return {"data": [], "layout": {"height": 380, "xaxis": {"visible": False}, "yaxis": {"visible": False},
                                   "annotations": [{"text": message, "showarrow": False, "font": {"size": 14}}]}}


def reliability_figure(pooled: dict[int, ReliabilityBins], names: dict[int, str], positions: dict[int, int]
                       ) -> dict[str, Any]:
    """Accuracy against confidence per bin (group 0: top-label or foreground), one line per configuration."""
    if not pooled:
        return empty_figure("no reliability bins for this selection")
    traces: list[dict[str, Any]] = [{"type": "scatter", "x": [0, 1], "y": [0, 1], "mode": "lines", "name": "perfect",
                                     "line": {"color": "#999", "dash": "dash"}, "hoverinfo": "skip"}]
    for configuration, bins in pooled.items():
        confidence, accuracy, count = bins.mean_confidence()[0], bins.accuracy()[0], bins.count[0]
        keep = count > 0
        traces.append({
            "type": "scatter", "mode": "lines+markers", "name": f"{names[configuration]} (ECE {bins.ece():.3f})",
            "x": confidence[keep].tolist(), "y": accuracy[keep].tolist(), "customdata": count[keep].tolist(),
            "line": _line(positions[configuration]),
            "hovertemplate": "confidence %{x:.3f}<br>accuracy %{y:.3f}<br>%{customdata} voxels<extra>%{fullData.name}"
                             "</extra>",
        })
    layout = _layout("Reliability diagram (pooled over test cases and repeats)", "mean confidence", "accuracy")
    layout["xaxis"]["range"] = layout["yaxis"]["range"] = [0, 1]
    layout["legend"] = {"font": {"size": 11}}
    return {"data": traces, "layout": layout}


def curve_figure(frame: pd.DataFrame, metric: str, names: dict[int, str], positions: dict[int, int]
                 ) -> dict[str, Any]:
    """Cohort mean of a budget curve per configuration with a band of ± 1 SD over repeats."""
    if frame.empty:
        return empty_figure("no curves for this selection")
    traces: list[dict[str, Any]] = []
    for configuration, part in frame.sort_values("budget").groupby("configuration_id", sort=False):
        x = (part["budget"] * 100).tolist()
        mean, sd = part[f"{metric}_mean"].to_numpy(), np.nan_to_num(part[f"{metric}_sd"].to_numpy())
        keep = ~np.isnan(mean)
        xs, low, high = np.asarray(x)[keep], (mean - sd)[keep], (mean + sd)[keep]
        position = positions[int(configuration)]
        name = names[int(configuration)]
        traces.append({"type": "scatter", "x": [*xs.tolist(), *xs[::-1].tolist()],
                       "y": [*high.tolist(), *low[::-1].tolist()], "fill": "toself", "line": {"width": 0},
                       "fillcolor": _rgba(style(position).colour, 0.18), "hoverinfo": "skip", "showlegend": False,
                       "legendgroup": name})
        traces.append({"type": "scatter", "mode": "lines", "x": xs.tolist(), "y": mean[keep].tolist(), "name": name,
                       "legendgroup": name, "line": _line(position),
                       "hovertemplate": f"budget %{{x:.1f}} %<br>{CURVE_LABELS[metric]} %{{y:.3f}}"
                                        f"<extra>{name}</extra>"})
    return {"data": traces, "layout": _layout(f"{CURVE_LABELS[metric]}: cohort mean ± SD over repeats",
                                              "review budget (% of ROI voxels)", CURVE_LABELS[metric])}


def distribution_figure(per_case: pd.DataFrame, title: str, names: dict[int, str], positions: dict[int, int]
                        ) -> dict[str, Any]:
    """Box plots of per-case values (each case's mean over the repeats it was tested in) per configuration, every
    case's point drawn (jittered) over its box and named on hover, n under each box."""
    traces = []
    for c in per_case.columns:
        values = per_case[c].dropna()
        if values.empty:
            continue
        traces.append({"type": "box", "name": f"{names[int(c)]}<br>n = {len(values)}", "y": values.tolist(),
                       "text": [str(case) for case in values.index], "boxpoints": "all", "jitter": 0.5,
                       "pointpos": 0, "boxmean": True,
                       "marker": {"color": style(positions[int(c)]).colour, "size": 5, "opacity": 0.8},
                       "hovertemplate": f"%{{text}}<br>{title} %{{y:.3f}}<extra>{names[int(c)]}</extra>"})
    if not traces:
        return empty_figure(f"no {title} values (a case without false positives or negatives has none)")
    return {"data": traces, "layout": _layout(f"{title} per case", "", title, showlegend=False)}


def paired_figure(values: pd.DataFrame, metric: str, a: str, b: str) -> dict[str, Any]:
    """Per-case scatter of A against B with the identity line; each point carries its case name (click opens it)."""
    if values.empty:
        return empty_figure("no case has both configurations")
    low = float(min(values["a"].min(), values["b"].min()))
    high = float(max(values["a"].max(), values["b"].max()))
    pad = (high - low) * 0.05 or 0.01
    return {
        "data": [
            {"type": "scatter", "x": [low - pad, high + pad], "y": [low - pad, high + pad], "mode": "lines",
             "line": {"color": "#999", "dash": "dash"}, "hoverinfo": "skip", "name": "A = B"},
            {"type": "scatter", "mode": "markers", "x": values["a"].tolist(), "y": values["b"].tolist(),
             "customdata": values["case"].tolist(), "name": "cases", "marker": {"size": 9, "color": "#1f77b4"},
             "hovertemplate": f"%{{customdata}}<br>{a}: %{{x:.4f}}<br>{b}: %{{y:.4f}}<extra>click to open</extra>"},
        ],
        "layout": _layout(f"{metric} per case (mean over repeats): click a case to open it", f"A: {a}", f"B: {b}",
                          showlegend=False),
    }


def paired_summary(result: PairedComparison, metric: str, a: str, b: str, adjusted: float, family: int,
                   correction: str) -> list[tuple[str, str]]:
    """(label, value) rows of a paired comparison, with its p adjusted over the ``family`` pairs shown."""
    fmt = _fixed
    method = {"holm": "Holm", "bh": "Benjamini–Hochberg"}[correction]
    return [("cases (pairs)", str(result.n)), (f"mean difference of {metric} (A − B)", fmt(result.mean_difference)),
            ("95 % bootstrap CI", f"[{fmt(result.ci_low)}, {fmt(result.ci_high)}]"),
            ("Wilcoxon signed-rank p", fmt(result.wilcoxon_p, 4)),
            (f"p adjusted ({method}, {family} pairs of the shown configurations)", fmt(adjusted, 4)),
            ("A", a), ("B", b)]


def _fixed(value: float, digits: int = 4) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def difference(result: PairedComparison) -> str:
    """A paired comparison in one line: the mean difference (A − B) and its 95 % bootstrap CI."""
    return f"{_fixed(result.mean_difference)} [{_fixed(result.ci_low)}, {_fixed(result.ci_high)}]"


#: a trend point's status → its marker (colour, symbol)
TREND_MARKERS = {"ok": ("#1f77b4", "circle"), "tolerance": ("#ff7f0e", "diamond"), "action": ("#d62728", "x")}


def trend_figure(points: list[dict[str, Any]], levels: Any, title: str, unit: str,
                 groups: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """A quantity per nightly run: one marker per run coloured by its status (ok, out of tolerance, beyond action),
    the tolerance band shaded green and the action levels as red dashed lines (``levels``: a
    :class:`pipeline.metrics.levels.Levels` or None); ``groups``: the same per acquisition group, a dotted line each
    (its n in the hover)."""
    if not points:
        return empty_figure("no nightly run has a value of this quantity yet")
    data = [{"type": "scatter", "mode": "lines", "x": [p["started"] for p in points],
             "y": [p["value"] for p in points], "line": {"color": "#bbbbbb", "width": 1}, "hoverinfo": "skip",
             "showlegend": False}]
    for status, (marker_colour, symbol) in TREND_MARKERS.items():
        chosen = [p for p in points if p["status"] == status]
        if chosen:
            data.append({"type": "scatter", "mode": "markers", "name": {"ok": "within tolerance",
                                                                        "tolerance": "out of tolerance",
                                                                        "action": "beyond action"}[status],
                         "x": [p["started"] for p in chosen], "y": [p["value"] for p in chosen],
                         "customdata": [[p["run"], p["n"]] for p in chosen],
                         "marker": {"color": marker_colour, "symbol": symbol, "size": 11},
                         "hovertemplate": "run %{customdata[0]}<br>%{y:.4g}<br>n = %{customdata[1]}<extra></extra>"})
    for k, (group, own) in enumerate((groups or {}).items()):
        data.append({"type": "scatter", "mode": "lines+markers", "name": f"{group} (n = {max(p['n'] for p in own)})",
                     "x": [p["started"] for p in own], "y": [p["value"] for p in own],
                     "customdata": [[p["run"], p["n"]] for p in own],
                     "line": {"color": COLOURS[(k + 2) % len(COLOURS)], "dash": "dot", "width": 1.5},
                     "marker": {"size": 6}, "legendgroup": "acquisition",
                     "hovertemplate": f"{group}<br>run %{{customdata[0]}}<br>%{{y:.4g}}<br>n = %{{customdata[1]}}"
                                      "<extra></extra>"})
    shapes = []
    if levels is not None:
        low, high = levels.tolerance_low, levels.tolerance_high
        if low is not None or high is not None:
            values = [p["value"] for p in points if not math.isnan(p["value"])] or [0.0]
            spread = max(values) - min(values) or abs(max(values)) or 1.0
            shapes.append({"type": "rect", "xref": "paper", "x0": 0, "x1": 1, "layer": "below", "line": {"width": 0},
                           "y0": low if low is not None else min(values) - spread,
                           "y1": high if high is not None else max(values) + spread,
                           "fillcolor": "rgba(44,160,44,0.12)"})
        shapes += [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": bound, "y1": bound,
                    "line": {"color": "#d62728", "dash": "dash", "width": 1.5}}
                   for bound in (levels.action_low, levels.action_high) if bound is not None]
    y_title = f"{title} ({unit})" if unit else title
    return {"data": data, "layout": _layout(f"{title} per nightly run", "run started (UTC)", y_title,
                                            shapes=shapes)}
