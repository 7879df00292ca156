"""Scripted reviewers for a **simulated** review study (the demo's): how long a reading takes and whether its reader
records an edit, drawn from a small model with **made-up parameters**. It produces data to explore the study's
pages and reports with; it is **not evidence** about uncertainty-guided review (``docs/review-study.md``,
"The simulated demo study").

Per reading the model is given the arm and the case's facts (:class:`CaseFacts`: the clinician's edit in mL, the
share of it inside the review regions at the study's budget, the number of those regions) and draws, with a NumPy
``Generator`` seeded from the study's seed and the reading's place in the allocation (:func:`reading_generator`):

- **Detection** (does the reader record an edit?). Arm A (CT and contours only): P_A = ``detect_a`` · (1 −
  exp(−edited mL / ``detect_ml``)): a tiny edit is easy to miss, and even a large one is missed now and then
  (``detect_a`` < 1: the reader looks at other slices). Arm B (entropy and regions shown): an edit inside a shown
  region is seen with probability ``region_hit``, the rest as in arm A, so P_B = 1 − (1 − P_A)(1 − ``region_hit`` ·
  share inside). Hence P_B ≥ P_A, equal when no edit lies in a region. A case without an edit is accepted (no false
  alarms: a simplification). A reader who detects the edit records ``edited``, else ``accepted``.
- **Working time** [s]: log-normal with median ``seconds_a`` (arm A) or ``seconds_b`` plus ``seconds_per_region``
  for each region opened (arm B opens the first ``regions_looked_at`` regions of the list), spread ``sigma`` (the
  log's standard deviation), plus ``edit_seconds`` when the reader edits (a fixed cost: the phantoms' edits are
  hundreds of mL on coarse voxels, and a cost per mL would swamp everything else). Arm B is faster as long as its
  regions cost less than the search they replace (the guidance's hoped-for effect), less so for the extra edits it
  finds.
- **Activity**: the working time is reported in equal gaps of at most ``report_seconds`` (the browser's activity
  reports), one gap per region opened at least; with probability ``break_probability`` one idle break of
  ``break_range`` seconds (uniform; the reader walked away) falls between two of them. The measurement caps every
  gap at the idle cap (:mod:`pipeline.review.timing`), so a reading measures Σ min(gap, cap)
  (:meth:`SimulatedReading.measured_seconds`): the break adds at most the cap.

The parameters (:class:`ReaderModel`) are round numbers chosen to give a readable demo: a few minutes a case, most
edits found, arm B somewhat faster and finding more. None of them was measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.review.study_allocation import Arm
from pipeline.review.workflow import Decision


@dataclass(frozen=True)
class CaseFacts:
    """What the model knows of a case (the same for every reading of it).

    Attributes:
        edited_ml: the clinician's edit (the edit mask between prediction and final contour) [mL], 0 without one.
        in_regions: the share of the edit inside the review regions at the study's budget [0-1]; NaN without one.
        regions: the review regions at the study's budget.
    """

    edited_ml: float
    in_regions: float
    regions: int


@dataclass(frozen=True)
class ReaderModel:
    """The model's parameters (module description; made up, not measured). Times in seconds."""

    seconds_a: float = 150.0
    seconds_b: float = 90.0
    seconds_per_region: float = 12.0
    regions_looked_at: int = 4
    edit_seconds: float = 60.0
    sigma: float = 0.35
    detect_a: float = 0.6
    detect_ml: float = 1.0
    region_hit: float = 0.9
    report_seconds: float = 20.0
    break_probability: float = 0.2
    break_range: tuple[float, float] = (120.0, 600.0)


DEFAULT_MODEL = ReaderModel()


@dataclass(frozen=True)
class SimulatedReading:
    """One scripted reading.

    Attributes:
        arm: the reading's arm.
        decision: ``edited`` or ``accepted``.
        regions_opened: the regions the reader opens (arm B; 0 in arm A).
        gaps: seconds between the reading's successive activity events: the opening, each activity report, and
            last the decision (so ``len(gaps)`` − 1 reports).
    """

    arm: Arm
    decision: str
    regions_opened: int
    gaps: tuple[float, ...]

    def measured_seconds(self, cap: float) -> float:
        """The active time the timing service measures for the reading: Σ min(gap, ``cap``) [s]."""
        return float(sum(min(gap, cap) for gap in self.gaps))


def reading_generator(seed: int, reviewer: int, order: int) -> np.random.Generator:
    """The generator of one reading: the study's ``seed``, the reviewer's number and the reading's order (one
    reading's draws do not depend on which readings were drawn before it)."""
    return np.random.default_rng([seed, reviewer, order])


def detection_probability(arm: Arm, facts: CaseFacts, model: ReaderModel = DEFAULT_MODEL) -> float:
    """P(the reader records an edit) in ``arm`` (module description); 0 without an edit."""
    if not facts.edited_ml > 0:
        return 0.0
    unaided = model.detect_a * (1.0 - math.exp(-facts.edited_ml / model.detect_ml))
    if arm is Arm.STANDARD:
        return unaided
    inside = 0.0 if math.isnan(facts.in_regions) else min(max(facts.in_regions, 0.0), 1.0)
    return 1.0 - (1.0 - unaided) * (1.0 - model.region_hit * inside)


def simulate_reading(rng: np.random.Generator, arm: Arm | str, facts: CaseFacts,
                     model: ReaderModel = DEFAULT_MODEL) -> SimulatedReading:
    """Draw one reading in ``arm`` of a case with ``facts`` (module description)."""
    chosen = Arm(arm)
    detected = bool(rng.random() < detection_probability(chosen, facts, model))
    opened = min(facts.regions, model.regions_looked_at) if chosen is Arm.GUIDED else 0
    median = model.seconds_a if chosen is Arm.STANDARD else model.seconds_b + model.seconds_per_region * opened
    working = float(median * math.exp(model.sigma * rng.standard_normal()))
    if detected:
        working += model.edit_seconds
    count = max(math.ceil(working / model.report_seconds), opened + 1)
    gaps = [working / count] * count
    if rng.random() < model.break_probability:
        gaps.insert(int(rng.integers(1, count + 1)), float(rng.uniform(*model.break_range)))
    decision = Decision.EDITED if detected else Decision.ACCEPTED
    return SimulatedReading(chosen, decision.value, opened, tuple(gaps))
