"""The study allocation as a pure function: every case assigned, balanced, reproducible from the seed, and in a
crossover no reviewer sees a case in both arms."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.review.study_allocation import (
    Arm,
    Design,
    Draws,
    Endpoint,
    allocate,
    digest,
    permuted_blocks,
)
from pipeline.store.study_schema import ARMS, DESIGNS, ENDPOINTS

CASES = [f"case-{i:02d}" for i in range(23)]
REVIEWERS = ["ann", "ben", "cy"]


def _arms(assignments: list, **where: str) -> Counter[Arm]:
    return Counter(a.arm for a in assignments if all(getattr(a, k) == v for k, v in where.items()))


def test_the_enums_are_the_values_the_store_accepts() -> None:
    assert tuple(Arm) == ARMS and tuple(Design) == DESIGNS and tuple(Endpoint) == ENDPOINTS


@pytest.mark.parametrize("n", range(0, 13))
def test_permuted_blocks_are_balanced_within_one(n: int) -> None:
    for seed in range(20):
        arms = permuted_blocks(Draws(seed), n)
        counts = Counter(arms)
        assert len(arms) == n and abs(counts[Arm.STANDARD] - counts[Arm.GUIDED]) <= n % 2


def test_block_sizes_vary_so_no_fixed_boundary_gives_the_next_arm_away() -> None:
    """With fixed blocks of 2, the second arm of each pair would follow from the first; here some runs of equal arms
    cross a pair boundary (AABB-style blocks of 4)."""
    arms = permuted_blocks(Draws(1), 400)
    pairs = [arms[i:i + 2] for i in range(0, 400, 2)]
    assert any(p[0] == p[1] for p in pairs)


@pytest.mark.parametrize("reviewers", [["ann"], REVIEWERS, ["a", "b", "c", "d", "e"]])
@pytest.mark.parametrize("n_cases", [1, 2, 7, 23])
def test_per_case_assigns_every_case_once_and_balances_each_reviewer_and_the_study(
    reviewers: list[str], n_cases: int,
) -> None:
    cases = CASES[:n_cases]
    for seed in (0, 1, 99):
        assignments = allocate(cases, reviewers, Design.PER_CASE, seed)
        assert sorted(a.case for a in assignments) == sorted(cases)
        assert {a.period for a in assignments} == {1}
        per_reviewer = Counter(a.reviewer for a in assignments)
        assert max(per_reviewer.values(), default=0) - min(per_reviewer.get(r, 0) for r in reviewers) <= 1
        for reviewer in reviewers:
            counts = _arms(assignments, reviewer=reviewer)
            assert abs(counts[Arm.STANDARD] - counts[Arm.GUIDED]) <= 1
            assert sorted(a.order for a in assignments if a.reviewer == reviewer) == list(
                range(1, per_reviewer[reviewer] + 1))
        total = _arms(assignments)
        assert abs(total[Arm.STANDARD] - total[Arm.GUIDED]) <= 1


@pytest.mark.parametrize("reviewers", [["ann", "ben"], REVIEWERS, ["a", "b", "c", "d"]])
@pytest.mark.parametrize("n_cases", [2, 5, 23])
def test_crossover_reviewers_read_every_case_once_half_in_each_arm_arms_swapping_between_periods(
    reviewers: list[str], n_cases: int,
) -> None:
    cases = CASES[:n_cases]
    for seed in (0, 7):
        assignments = allocate(cases, reviewers, Design.CROSSOVER, seed)
        assert len(assignments) == n_cases * len(reviewers)
        seen = Counter((a.reviewer, a.case) for a in assignments)
        assert set(seen) == {(r, c) for r in reviewers for c in cases} and set(seen.values()) == {1}
        first: Counter[Arm] = Counter()
        for reviewer in reviewers:
            own = [a for a in assignments if a.reviewer == reviewer]
            counts = _arms(own)
            assert abs(counts[Arm.STANDARD] - counts[Arm.GUIDED]) <= 1
            assert len({a.arm for a in own if a.period == 1}) == 1 and len({a.arm for a in own if a.period == 2}) == 1
            period_one = {a.arm for a in own if a.period == 1}.pop()
            assert {a.arm for a in own if a.period == 2} == {Arm.GUIDED if period_one is Arm.STANDARD else Arm.STANDARD}
            assert [a.period for a in sorted(own, key=lambda a: a.order)] == sorted(a.period for a in own)
            first[period_one] += 1
        assert abs(first[Arm.STANDARD] - first[Arm.GUIDED]) <= 1, "each sequence has half the reviewers"
        for case in cases:  # every case is read in both arms, by different reviewers
            assert {a.arm for a in assignments if a.case == case} == {Arm.STANDARD, Arm.GUIDED}


def test_the_seed_reproduces_the_allocation_and_the_input_order_does_not_matter() -> None:
    for design in Design:
        one = allocate(CASES, REVIEWERS, design, 2026)
        assert allocate(list(reversed(CASES)), list(reversed(REVIEWERS)), design, 2026) == one
        assert digest(one) == digest(list(reversed(one)))
        other = allocate(CASES, REVIEWERS, design, 2027)
        assert other != one and digest(other) != digest(one)


def test_the_allocation_is_fixed_for_a_seed_across_versions() -> None:
    """SHA-256 draws, not Python's or NumPy's generators: these values hold for any version."""
    draws = Draws(42)
    assert [draws.below(10) for _ in range(8)] == _reference_draws()
    assignments = allocate(CASES[:6], ["ann", "ben"], Design.PER_CASE, 42)
    assert digest(assignments) == digest(allocate(CASES[:6], ["ben", "ann"], "per-case", 42))


def _reference_draws() -> list[int]:
    import hashlib

    key = b"qa-study-allocation-v1|42|"
    block = hashlib.sha256(key + b"0").digest()
    words = [int.from_bytes(block[i:i + 8], "big") for i in range(0, 32, 8)]
    block = hashlib.sha256(key + b"1").digest()
    words += [int.from_bytes(block[i:i + 8], "big") for i in range(0, 32, 8)]
    limit = (1 << 64) - (1 << 64) % 10
    return [w % 10 for w in words if w < limit][:8]


@pytest.mark.parametrize(("cases", "reviewers", "design", "message"), [
    ([], ["ann"], "per-case", "at least one case"),
    (["a"], [], "per-case", "at least one case and one reviewer"),
    (["a", "a"], ["ann"], "per-case", "listed twice"),
    (["a"], ["ann", "ben"], "crossover", "two cases"),
    (["a", "b"], ["ann"], "crossover", "two reviewers"),
])
def test_impossible_allocations_are_refused(cases: list[str], reviewers: list[str], design: str,
                                            message: str) -> None:
    with pytest.raises(ValueError, match=message):
        allocate(cases, reviewers, design, 1)
