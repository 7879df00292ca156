"""The worklist's address, one rule for every page that links to it or from it: ``/worklist?configuration=NAME&
budget=PERCENT`` (percent of ROI voxels) or ``&minutes=M`` (a time budget per patient), and ``&model_set=`` (a model
set's name or identity). The slice browser's region links carry the same ``budget`` (the case's percentage) and
``minutes`` (the list's time budget), so that its "back to list" returns to the list they came from."""

from __future__ import annotations

import math
from urllib.parse import urlencode

from pipeline.metrics.review_budget import DEFAULT_CAP, DEFAULT_FRACTION, Budget

DEFAULT_PERCENT = 100 * DEFAULT_FRACTION
MAX_PERCENT = 100 * DEFAULT_CAP


def parse_budget(budget: str | None, minutes: str | None) -> Budget:
    """The budget of the address: ``minutes`` when given, else ``budget`` in percent (ValueError when malformed)."""
    try:
        if minutes not in (None, ""):
            value = float(minutes)
            if not math.isfinite(value) or value < 0:
                raise ValueError
            return Budget("minutes", value)
        percent = DEFAULT_PERCENT if budget in (None, "") else float(budget)
    except ValueError:
        raise ValueError(f"budget={budget!r}, minutes={minutes!r}: give a budget in percent (0–5) or minutes "
                         "(≥ 0)") from None
    if not (math.isfinite(percent) and 0 <= percent <= MAX_PERCENT):
        raise ValueError(f"budget={budget!r} must be a percentage of ROI voxels between 0 and {MAX_PERCENT:g}")
    return Budget("fraction", round(percent / 100, 6))


def percent(fraction: float) -> str:
    """A fraction of ROI voxels as the address writes it (``0.02`` → ``2``)."""
    return f"{100 * fraction:g}"


def worklist_query(configuration: str, budget: Budget, model_set: str | None = None) -> dict[str, str]:
    """The worklist's query values for ``configuration`` at ``budget`` (of ``model_set`` when given)."""
    query = {"configuration": configuration}
    if budget.kind == "minutes":
        query["minutes"] = f"{budget.value:g}"
    else:
        query["budget"] = percent(budget.value)
    return {**query, "model_set": model_set} if model_set else query


def worklist_search(configuration: str, budget: Budget, model_set: str | None = None) -> str:
    """``?configuration=…&budget=…`` (:func:`worklist_query`), for the address bar."""
    return "?" + urlencode(worklist_query(configuration, budget, model_set))


def worklist_href(configuration: str, budget: Budget, model_set: str | None = None) -> str:
    """The worklist's address for ``configuration`` at ``budget``."""
    return "/worklist" + worklist_search(configuration, budget, model_set)
