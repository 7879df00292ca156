"""The scripted reviewers' model (pure): one seed gives one reading, the arms differ in the documented direction on
average, and every draw stays in its bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.review.study_allocation import Arm
from pipeline.review.study_simulation import (
    DEFAULT_MODEL,
    CaseFacts,
    ReaderModel,
    detection_probability,
    reading_generator,
    simulate_reading,
)

CAP = 60.0
FACTS = CaseFacts(edited_ml=1.5, in_regions=0.6, regions=3)


def _many(arm: Arm, facts: CaseFacts, model: ReaderModel = DEFAULT_MODEL, n: int = 2000) -> list:
    return [simulate_reading(reading_generator(7, 1, k), arm, facts, model) for k in range(n)]


def test_one_seed_gives_one_reading_and_readings_are_independent() -> None:
    first = simulate_reading(reading_generator(11, 2, 3), Arm.GUIDED, FACTS)
    assert simulate_reading(reading_generator(11, 2, 3), "B", FACTS) == first
    assert simulate_reading(reading_generator(12, 2, 3), Arm.GUIDED, FACTS) != first
    assert simulate_reading(reading_generator(11, 2, 4), Arm.GUIDED, FACTS) != first


def test_guided_review_detects_more_and_is_faster_on_average() -> None:
    a, b = _many(Arm.STANDARD, FACTS), _many(Arm.GUIDED, FACTS)
    detected = {arm: np.mean([r.decision == "edited" for r in rs]) for arm, rs in (("A", a), ("B", b))}
    assert detected["A"] == pytest.approx(detection_probability(Arm.STANDARD, FACTS), abs=0.04)
    assert detected["B"] == pytest.approx(detection_probability(Arm.GUIDED, FACTS), abs=0.04)
    assert detected["B"] > detected["A"] + 0.15
    seconds = {arm: np.mean([r.measured_seconds(CAP) for r in rs]) for arm, rs in (("A", a), ("B", b))}
    assert seconds["B"] < seconds["A"] - 5, "3 regions cost 36 s, less than the 60 s of search they replace, even " \
        "with the edits B finds more often"
    assert {r.regions_opened for r in a} == {0} and {r.regions_opened for r in b} == {3}


def test_detection_follows_the_edit_and_the_regions() -> None:
    none = CaseFacts(0.0, math.nan, 2)
    assert detection_probability(Arm.STANDARD, none) == detection_probability(Arm.GUIDED, none) == 0.0
    assert {r.decision for r in _many(Arm.GUIDED, none, n=50)} == {"accepted"}
    outside = CaseFacts(1.5, 0.0, 2)
    assert detection_probability(Arm.GUIDED, outside) == detection_probability(Arm.STANDARD, outside)
    small, large = (detection_probability(Arm.STANDARD, CaseFacts(ml, 0.0, 0)) for ml in (0.2, 300.0))
    assert 0 < small < large == pytest.approx(DEFAULT_MODEL.detect_a), "a large edit is found at the ceiling"
    everything = CaseFacts(1.5, 1.0, 1)
    assert detection_probability(Arm.GUIDED, everything) == pytest.approx(
        1 - (1 - detection_probability(Arm.STANDARD, everything)) * (1 - DEFAULT_MODEL.region_hit))


def test_the_activity_gaps_and_the_idle_cap() -> None:
    model = ReaderModel(break_probability=1.0)
    for reading in _many(Arm.GUIDED, CaseFacts(2.0, 0.5, 9), model, n=200):
        breaks = [gap for gap in reading.gaps if gap > model.report_seconds]
        assert len(breaks) == 1 and model.break_range[0] <= breaks[0] <= model.break_range[1]
        assert reading.regions_opened == model.regions_looked_at and len(reading.gaps) >= reading.regions_opened + 2
        worked = sum(gap for gap in reading.gaps if gap <= model.report_seconds)
        assert reading.measured_seconds(CAP) == pytest.approx(worked + CAP), "a break counts the cap, no more"
        assert all(gap > 0 for gap in reading.gaps)
    never = ReaderModel(break_probability=0.0)
    for reading in _many(Arm.STANDARD, FACTS, never, n=200):
        assert max(reading.gaps) <= never.report_seconds
        assert reading.measured_seconds(CAP) == pytest.approx(sum(reading.gaps))
