"""A review study's allocation: a pure function of (cases, reviewers, design, seed) → who reads which case in which
arm and period (no database; :mod:`pipeline.review.study` stores it at definition and conceals it).

Arms: **A** "standard review" (the CT and the predicted contours only) and **B** "uncertainty-guided review" (the
entropy overlay, the budget regions, the worklist's order).

Designs (``docs/review-study.md`` has the reasoning):

- ``per-case``: every case is read once, by one reviewer, in one arm. The cases are shuffled and dealt to the
  reviewers in turn (their counts differ by at most one); each reviewer's cases get their arms from permuted blocks
  of a random size, 4 or 2 (half A, half B, in a random order; a block of 2 when fewer than 4 cases are left), so no
  block boundary can be guessed from a fixed size. A reviewer with an odd number of cases has one case left over;
  the left-over cases of all reviewers get their arms from permuted blocks of their own. Balance: every reviewer reads
  as many cases in A as in B, give or take one, and so does the study.
- ``crossover``: every reviewer reads every case once. The cases are shuffled and split into two halves (H1 the
  first ⌈n/2⌉); the reviewers are shuffled and split into two sequences (AB the first ⌈r/2⌉). Sequence AB reads H1 in
  arm A in period 1 and H2 in arm B in period 2; sequence BA reads H1 in B, then H2 in A. Each period's reading order
  is shuffled per reviewer. So no reviewer sees a case in both arms, every reviewer reads half the cases in each arm,
  every case is read in both arms (by different reviewers) and each arm comes first for half the reviewers. The
  washout (days between a reviewer's two periods) is enforced when a case is opened, not here.

Reproducible: the inputs are sorted first (the allocation depends on the sets, not on the order they were given), and
the random draws are :class:`Draws`, SHA-256 in counter mode keyed by the seed, so the same seed gives the same
allocation with any Python or NumPy version. :data:`METHOD` names this method; :func:`digest` fingerprints a result.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

METHOD = "qa-study-allocation-v1"
T = TypeVar("T")


class Arm(StrEnum):
    """A study arm."""

    STANDARD = "A"
    GUIDED = "B"

    @property
    def label(self) -> str:
        return "standard review" if self is Arm.STANDARD else "uncertainty-guided review"


class Design(StrEnum):
    """How cases and reviewers are allocated to the arms."""

    PER_CASE = "per-case"
    CROSSOVER = "crossover"


class Endpoint(StrEnum):
    """The pre-registered primary endpoints a study may choose at definition (``docs/review-study.md``)."""

    EDITED_ML_PER_MINUTE = "edited-ml-per-minute"
    MINUTES_PER_CASE = "minutes-per-case"
    EDIT_DETECTED_FRACTION = "edit-detected-fraction"

    @property
    def description(self) -> str:
        return {
            Endpoint.EDITED_ML_PER_MINUTE: "edited mL found per minute of active review (higher is better)",
            Endpoint.MINUTES_PER_CASE: "minutes of active review per case (lower is better)",
            Endpoint.EDIT_DETECTED_FRACTION: "fraction of cases with any edit detected (higher is better)",
        }[self]


@dataclass(frozen=True)
class Assignment:
    """One reading: ``reviewer`` reads ``case`` in ``arm`` during ``period`` (1, or 1 and 2 in a crossover), as the
    ``order``-th case of their reading list (1-based, over both periods)."""

    case: str
    reviewer: str
    arm: Arm
    period: int
    order: int


class Draws:
    """Random integers from SHA-256 in counter mode: block *k* is SHA-256(``METHOD|seed|k``), read as 64-bit
    big-endian words; :meth:`below` rejects words that would bias the result."""

    def __init__(self, seed: int) -> None:
        self._key = f"{METHOD}|{seed}|".encode()
        self._counter = 0
        self._words: list[int] = []

    def _word(self) -> int:
        if not self._words:
            block = hashlib.sha256(self._key + str(self._counter).encode()).digest()
            self._counter += 1
            self._words = [int.from_bytes(block[i:i + 8], "big") for i in range(24, -1, -8)]
        return self._words.pop()

    def below(self, n: int) -> int:
        """A uniform integer in [0, n)."""
        if n <= 0:
            raise ValueError(f"below({n}): n must be positive")
        limit = (1 << 64) - (1 << 64) % n
        while True:
            word = self._word()
            if word < limit:
                return word % n

    def shuffled(self, items: Sequence[T]) -> list[T]:
        """A Fisher-Yates shuffle of ``items``."""
        out = list(items)
        for i in range(len(out) - 1, 0, -1):
            j = self.below(i + 1)
            out[i], out[j] = out[j], out[i]
        return out


def permuted_blocks(draws: Draws, n: int) -> list[Arm]:
    """``n`` arms from permuted blocks of size 4 or 2 (chosen at random while 4 or more are left), each half A and half
    B in a random order; an odd ``n`` ends with one fair draw."""
    arms: list[Arm] = []
    while n - len(arms) >= 2:
        size = 4 if n - len(arms) >= 4 and draws.below(2) else 2
        arms += draws.shuffled([Arm.STANDARD, Arm.GUIDED] * (size // 2))
    if len(arms) < n:
        arms.append(Arm.STANDARD if draws.below(2) == 0 else Arm.GUIDED)
    return arms


def _checked(cases: Sequence[str], reviewers: Sequence[str], design: Design) -> tuple[list[str], list[str]]:
    unique_cases, unique_reviewers = sorted(set(cases)), sorted(set(reviewers))
    if len(unique_cases) != len(cases) or len(unique_reviewers) != len(reviewers):
        raise ValueError("a case or reviewer is listed twice")
    if not unique_cases or not unique_reviewers:
        raise ValueError("a study needs at least one case and one reviewer")
    if design is Design.CROSSOVER and (len(unique_cases) < 2 or len(unique_reviewers) < 2):
        raise ValueError("a crossover needs at least two cases (one per period) and two reviewers (one per sequence)")
    return unique_cases, unique_reviewers


def _per_case(draws: Draws, cases: list[str], reviewers: list[str]) -> list[Assignment]:
    dealt: dict[str, list[str]] = {reviewer: [] for reviewer in reviewers}
    order = draws.shuffled(reviewers)
    for position, case in enumerate(draws.shuffled(cases)):
        dealt[order[position % len(order)]].append(case)
    arms: dict[tuple[str, str], Arm] = {}
    left_over: list[tuple[str, str]] = []
    for reviewer in reviewers:
        own = dealt[reviewer]
        even = len(own) - len(own) % 2
        arms.update(((case, reviewer), arm) for case, arm in zip(own[:even], permuted_blocks(draws, even),
                                                                 strict=True))
        left_over += [(case, reviewer) for case in own[even:]]
    arms.update(zip(left_over, permuted_blocks(draws, len(left_over)), strict=True))
    return [Assignment(case, reviewer, arms[(case, reviewer)], 1, number)
            for reviewer in reviewers for number, case in enumerate(dealt[reviewer], start=1)]


def _crossover(draws: Draws, cases: list[str], reviewers: list[str]) -> list[Assignment]:
    shuffled = draws.shuffled(cases)
    halves = (shuffled[:(len(cases) + 1) // 2], shuffled[(len(cases) + 1) // 2:])
    people = draws.shuffled(reviewers)
    first_a = set(people[:(len(reviewers) + 1) // 2])
    out: list[Assignment] = []
    for reviewer in reviewers:
        arms = (Arm.STANDARD, Arm.GUIDED) if reviewer in first_a else (Arm.GUIDED, Arm.STANDARD)
        number = 0
        for period, (half, arm) in enumerate(zip(halves, arms, strict=True), start=1):
            for case in draws.shuffled(sorted(half)):
                number += 1
                out.append(Assignment(case, reviewer, arm, period, number))
    return out


def allocate(cases: Sequence[str], reviewers: Sequence[str], design: Design | str, seed: int) -> list[Assignment]:
    """The study's assignments (module description), ordered by reviewer and reading order.

    Raises ValueError for a repeated case or reviewer, none of either, or a crossover with fewer than two of each.
    """
    chosen = Design(design)
    unique_cases, unique_reviewers = _checked(cases, reviewers, chosen)
    draws = Draws(seed)
    if chosen is Design.PER_CASE:
        return _per_case(draws, unique_cases, unique_reviewers)
    return _crossover(draws, unique_cases, unique_reviewers)


def digest(assignments: Sequence[Assignment]) -> str:
    """SHA-256 (hex) of the assignments as ``case|reviewer|arm|period|order`` lines in sorted order: the allocation's
    fingerprint, stored with the study and written to its audit row."""
    lines = sorted(f"{a.case}|{a.reviewer}|{a.arm.value}|{a.period}|{a.order}" for a in assignments)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
