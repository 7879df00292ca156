"""The repeated hold-out splits."""

from __future__ import annotations

import pytest

from pipeline.batch.splits import repeated_holdout

PATIENTS = [f"p{i:02d}" for i in range(45)]


def test_splits_partition_the_patients_and_are_seeded() -> None:
    splits = repeated_holdout(PATIENTS, repeats=5, seed=3)
    assert len(splits) == 5
    for split in splits:
        sets = [set(split.test), set(split.calibration), set(split.development)]
        assert set().union(*sets) == set(PATIENTS)
        assert sum(len(s) for s in sets) == len(PATIENTS)
        assert (len(split.test), len(split.calibration)) == (9, 9)
        assert split.role(split.test[0]) == "test"
    assert splits == repeated_holdout(PATIENTS, repeats=5, seed=3)
    assert splits != repeated_holdout(PATIENTS, repeats=5, seed=4)
    assert len({s.test for s in splits}) == 5


def test_without_development_calibration_takes_the_rest() -> None:
    split = repeated_holdout(PATIENTS[:8], repeats=1, test_fraction=0.5, with_development=False)[0]
    assert (len(split.test), len(split.calibration), split.development) == (4, 4, ())


@pytest.mark.parametrize(
    ("patients", "kwargs", "message"),
    [
        (["a", "a", "b"], {}, "unique"),
        (["a", "b"], {}, "too few"),
        (PATIENTS, {"repeats": 0}, "repeats"),
        (PATIENTS, {"test_fraction": 0.6, "calibration_fraction": 0.5}, "sum to less than 1"),
    ],
)
def test_bad_protocols_are_refused(patients: list[str], kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        repeated_holdout(patients, **kwargs)  # type: ignore[arg-type]
