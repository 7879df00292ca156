"""Which configurations a page offers and shows first, for a protocol: its model set's grid as options, the grid's
reference and the best of the others by :data:`qa_dashboard.charts.PRIMARY` (:func:`qa_dashboard.charts.first_shown`),
and why. One owner for the cohort and comparison pages, at their first view and whenever their protocol changes (a
protocol of another model set has other configurations and structures)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy.orm import Session

from pipeline.store.cohort_numbers import CohortFilter, configurations, summary
from qa_dashboard import charts
from qa_dashboard.queries.cohort import ProtocolInfo
from qa_dashboard.store import Store

PRIMARY = charts.PRIMARY


@dataclass(frozen=True)
class Shown:
    """A protocol's configuration choices: ``options`` (dropdown options, grid order), ``shown`` (ids shown first),
    ``best`` (the best by the primary metric besides the reference, else the reference), ``reference`` (the grid's
    first) and ``note`` (why these are shown)."""

    options: list[dict[str, object]]
    shown: list[int]
    best: int | None
    reference: int | None
    note: str


def primary_means(store: Store, session: Session, protocol_id: int) -> dict[int, float]:
    """Each configuration's cohort mean of :data:`PRIMARY` (mean over repeats, every repeat and reference)."""
    everything = CohortFilter(protocol_id)
    overall, _ = store.cached(session, ("summary", everything), lambda: summary(session, everything))
    if overall.empty:
        return {}
    return {int(c): float(v) for c, v in zip(overall["configuration_id"], overall[f"{PRIMARY.name}_mean"],
                                               strict=True) if not math.isnan(v)}


def _note(shown: list[int], names: dict[int, str], means: dict[int, float]) -> str:
    if not shown:
        return ""
    best = [f"{names[c]} {PRIMARY.format(means[c])}" for c in charts.ranked(shown[1:], means)]
    ranked = (f" and the best of the others by {PRIMARY.label} ({PRIMARY.direction} is better; cohort mean): "
              f"{', '.join(best)}")
    return (f"Shown at first: {names[shown[0]]} (the grid's reference){ranked if best else ''}. "
            "Add or remove configurations above.")


def shown_for(store: Store, session: Session, info: ProtocolInfo) -> Shown:
    """The choices of protocol ``info``."""
    grid = configurations(session, info.model_set_id)
    means = primary_means(store, session, info.id)
    ids, names = [i for i, _ in grid], dict(grid)
    shown = charts.first_shown(ids, means)
    best = (charts.ranked(shown[1:], means)[:1] or ids[1:2] or ids[:1] or [None])[0]
    return Shown([{"label": n, "value": i} for i, n in grid], shown, best, ids[0] if ids else None,
                 _note(shown, names, means))
