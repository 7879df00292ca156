"""The body-region entropy and its in-distribution rank and flag against hand counts."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics.shift import body_region, ood_score, rank_against, region_mean_entropy


@pytest.mark.parametrize(("value", "below", "ties", "percentile", "above_all"), [
    (0.5, 6, 0, 100.0, True), (0.3, 3, 1, 350 / 6, False), (0.0, 0, 0, 0.0, False)])
def test_rank_counts_below_and_ties(value: float, below: int, ties: int, percentile: float, above_all: bool) -> None:
    rank = rank_against(value, [0.1, 0.2, 0.25, 0.3, 0.35, 0.4])
    assert (rank.below, rank.ties, rank.n) == (below, ties, 6)
    assert rank.percentile == pytest.approx(percentile) and rank.above_all is above_all


@pytest.mark.parametrize(("call", "message"), [
    (lambda: rank_against(0.1, []), "at least one"),
    (lambda: rank_against(float("nan"), [0.1]), "finite"),
])
def test_bad_inputs_are_named(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_the_body_region_is_the_ct_above_the_threshold_and_ignores_predictions() -> None:
    ct = np.full((4, 6, 6), -1000, dtype=np.int16)
    ct[1:3, 1:5, 1:5] = 40
    ct[0, 0, 0] = -499
    body = body_region(ct, -500.0)
    assert body.sum() == 2 * 4 * 4 + 1 and body[1, 2, 2] and not body[3, 0, 0]
    entropy = np.zeros(ct.shape, dtype=np.float32)
    entropy[body] = 0.25
    entropy[~body] = 0.9  # air: never part of the score
    assert region_mean_entropy(entropy, body) == pytest.approx(0.25)
    assert region_mean_entropy(entropy, np.zeros(ct.shape, dtype=bool)) is None
    with pytest.raises(ValueError, match="same shape"):
        region_mean_entropy(entropy, body[:2])
    with pytest.raises(ValueError, match="ct must be a"):
        body_region(ct[0], -500.0)


def test_the_ood_score_ranks_against_enough_cases_and_flags_at_the_threshold() -> None:
    cohort = [0.10, 0.12, 0.14, 0.16, 0.18]
    above = ood_score(0.30, cohort, min_reference=5, flag_percentile=95.0)
    assert above.percentile == 100.0 and above.reference_n == 5 and above.flagged is True
    inside = ood_score(0.15, cohort, min_reference=5, flag_percentile=95.0)
    assert inside.percentile == pytest.approx(60.0) and inside.flagged is False
    tied_top = ood_score(0.18, cohort, min_reference=5, flag_percentile=90.0)
    assert tied_top.percentile == pytest.approx(90.0) and tied_top.flagged is True
    too_few = ood_score(0.30, cohort[:4], min_reference=5, flag_percentile=95.0)
    assert too_few.percentile is None and too_few.flagged is None and too_few.reference_n == 4
