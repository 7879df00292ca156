"""The tolerance and action rule: bands, bounds inclusive, open sides, NaN."""

from __future__ import annotations

import math

import pytest

from pipeline.metrics.levels import Breach, Levels, worst


def test_values_are_ok_inside_tolerance_then_tolerance_then_action() -> None:
    levels = Levels(tolerance_low=0.1, tolerance_high=0.3, action_low=0.0, action_high=0.4)
    assert [levels.status(v) for v in (0.1, 0.2, 0.3, 0.35, 0.4, 0.41, 0.05, 0.0, -0.01, math.nan)] == [
        "ok", "ok", "ok", "tolerance", "tolerance", "action", "tolerance", "tolerance", "action", "ok"]
    assert levels.breach(0.41) == Breach("action", ">", 0.4)
    assert levels.breach(0.05) == Breach("tolerance", "<", 0.1)


def test_open_sides_and_action_only_levels() -> None:
    assert Levels(tolerance_high=1.0).status(-1e9) == "ok"
    only_action = Levels(action_low=5.0)
    assert (only_action.status(4.9), only_action.status(5.0)) == ("action", "ok")


@pytest.mark.parametrize("bounds", [{}, {"tolerance_high": math.inf}, {"action_low": True},
                                    {"tolerance_low": 0.2, "action_low": 0.3},
                                    {"tolerance_low": 0.5, "action_high": 0.4}])
def test_invalid_levels_raise(bounds: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Levels(**bounds)


def test_worst_status() -> None:
    assert worst([]) == "ok"
    assert worst(["ok", "action", "tolerance"]) == "action"
