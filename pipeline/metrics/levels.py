"""Tolerance and action levels of a trend quantity, as QA physicists set them (QATrack+'s two bands), and the one rule
that classifies a value against them.

A :class:`Levels` holds up to four bounds: the tolerance band [tolerance_low, tolerance_high] inside the action band
[action_low, action_high]; a missing bound is open. A value is ``ok`` inside the tolerance band, ``tolerance`` outside
it but inside the action band, ``action`` outside the action band (a bound itself is inside). NaN (no value) is
``ok``: nothing to judge.

Pure: no store or web import. Invalid bounds raise ``ValueError`` (the edges turn it into the user's words).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "tolerance", "action"]
SEVERITY: dict[Status, int] = {"ok": 0, "tolerance": 1, "action": 2}
BOUNDS = ("tolerance_low", "tolerance_high", "action_low", "action_high")


@dataclass(frozen=True)
class Breach:
    """Why a value is out: its status, the bound it passed and on which side (``<`` below, ``>`` above)."""

    status: Status
    side: Literal["<", ">"]
    bound: float


@dataclass(frozen=True)
class Levels:
    """The bounds of one quantity (None: open); checked on construction (see the module's description)."""

    tolerance_low: float | None = None
    tolerance_high: float | None = None
    action_low: float | None = None
    action_high: float | None = None

    def __post_init__(self) -> None:
        given = {name: getattr(self, name) for name in BOUNDS if getattr(self, name) is not None}
        if not given:
            raise ValueError("set at least one tolerance or action bound")
        for name, value in given.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, not {value!r}")
        pairs = (("tolerance_low", "tolerance_high"), ("action_low", "action_high"),
                 ("action_low", "tolerance_low"), ("tolerance_high", "action_high"),
                 ("action_low", "tolerance_high"), ("tolerance_low", "action_high"))
        for low, high in pairs:
            if low in given and high in given and given[low] > given[high]:
                raise ValueError(f"{low} ({given[low]:g}) is above {high} ({given[high]:g}): the action band must "
                                 "lie outside the tolerance band, and each low bound below its high one")

    def breach(self, value: float) -> Breach | None:
        """Where ``value`` leaves the bands (the action band first), or None when it is within tolerance."""
        if math.isnan(value):
            return None
        for status, low, high in (("action", self.action_low, self.action_high),
                                  ("tolerance", self.tolerance_low, self.tolerance_high)):
            if low is not None and value < low:
                return Breach(status, "<", low)  # type: ignore[arg-type]
            if high is not None and value > high:
                return Breach(status, ">", high)  # type: ignore[arg-type]
        return None

    def status(self, value: float) -> Status:
        """``ok``, ``tolerance`` or ``action`` (module description)."""
        found = self.breach(value)
        return "ok" if found is None else found.status


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe of ``statuses`` (``ok`` for none)."""
    return max(statuses, key=SEVERITY.__getitem__, default="ok")
