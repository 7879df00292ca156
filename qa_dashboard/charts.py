"""Plotly figures (plain dicts) of the cohort and comparison pages; one colour per configuration everywhere."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from plotly.colors import hex_to_rgb, qualitative

from pipeline.metrics.calibration import ReliabilityBins
from pipeline.metrics.cohort import PairedComparison

SHOWN_AT_FIRST = 4  # configurations overlaid when a chart first opens (more can be chosen)
PALETTE = [*qualitative.Plotly, *qualitative.Dark2]
CURVE_LABELS = {"ueo": "UEO(b)", "recall": "error recall(b)", "precision": "error precision(b)"}


def colour(position: int) -> str:
    """The colour of the configuration at grid ``position``."""
    return PALETTE[position % len(PALETTE)]


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = hex_to_rgb(hex_colour)
    return f"rgba({r},{g},{b},{alpha})"


def _layout(title: str, x: str, y: str, **extra: Any) -> dict[str, Any]:
    return {"title": {"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
            "xaxis": {"title": {"text": x}}, "yaxis": {"title": {"text": y}},
            "margin": {"l": 55, "r": 10, "t": 40, "b": 45}, "height": 400, "template": "plotly_white",
            "legend": {"font": {"size": 11}, "orientation": "h", "yanchor": "top", "y": -0.22}, **extra}


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
            "line": {"color": colour(positions[configuration])},
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
        hue = colour(positions[int(configuration)])
        name = names[int(configuration)]
        traces.append({"type": "scatter", "x": [*xs.tolist(), *xs[::-1].tolist()],
                       "y": [*high.tolist(), *low[::-1].tolist()], "fill": "toself", "line": {"width": 0},
                       "fillcolor": _rgba(hue, 0.18), "hoverinfo": "skip", "showlegend": False, "legendgroup": name})
        traces.append({"type": "scatter", "mode": "lines", "x": xs.tolist(), "y": mean[keep].tolist(), "name": name,
                       "legendgroup": name, "line": {"color": hue},
                       "hovertemplate": f"budget %{{x:.1f}} %<br>{CURVE_LABELS[metric]} %{{y:.3f}}"
                                        f"<extra>{name}</extra>"})
    return {"data": traces, "layout": _layout(f"{CURVE_LABELS[metric]}: cohort mean ± SD over repeats",
                                              "review budget (% of ROI voxels)", CURVE_LABELS[metric])}


def distribution_figure(per_case: pd.DataFrame, title: str, names: dict[int, str], positions: dict[int, int]
                        ) -> dict[str, Any]:
    """Box plots of per-case values (each case's mean over the repeats it was tested in) per configuration."""
    traces = [{"type": "box", "name": names[int(c)], "y": per_case[c].dropna().tolist(), "boxpoints": "outliers",
               "marker": {"color": colour(positions[int(c)])}, "boxmean": True}
              for c in per_case.columns if per_case[c].notna().any()]
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
    def fmt(value: float, digits: int = 4) -> str:
        return "—" if math.isnan(value) else f"{value:.{digits}f}"

    method = {"holm": "Holm", "bh": "Benjamini–Hochberg"}[correction]
    return [("cases (pairs)", str(result.n)), (f"mean difference of {metric} (A − B)", fmt(result.mean_difference)),
            ("95 % bootstrap CI", f"[{fmt(result.ci_low)}, {fmt(result.ci_high)}]"),
            ("Wilcoxon signed-rank p", fmt(result.wilcoxon_p, 4)),
            (f"p adjusted ({method}, {family} pairs of the shown configurations)", fmt(adjusted, 4)),
            ("A", a), ("B", b)]
