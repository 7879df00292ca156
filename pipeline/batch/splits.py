"""Repeated hold-out protocol: seeded patient-level splits into test, calibration and development sets.

Each repeat trains the models on its development patients (nnU-Net's cross-validation inside them), fits the
temperatures on its calibration patients and reports on its test patients; the cohort table is the mean ± SD of
the per-repeat means. The spec fixes no split sizes: the defaults below are this project's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """One repeat's patient roles (patient ids, sorted)."""

    repeat: int
    test: tuple[str, ...]
    calibration: tuple[str, ...]
    development: tuple[str, ...]

    def role(self, patient: str) -> str:
        """'test', 'calibration' or 'development'."""
        for name in ("test", "calibration", "development"):
            if patient in getattr(self, name):
                return name
        raise ValueError(f"patient {patient!r} is not in repeat {self.repeat}")


def repeated_holdout(
    patients: Sequence[str],
    repeats: int = 5,
    test_fraction: float = 0.2,
    calibration_fraction: float = 0.2,
    seed: int = 0,
    with_development: bool = True,
) -> list[Split]:
    """``repeats`` seeded patient-level splits; no patient in two sets of one repeat.

    Sizes: ceil(test_fraction·n) test and ceil(calibration_fraction·n) calibration patients, the rest development.
    ``with_development=False`` is for models trained elsewhere (the demo's): the development set may be empty and
    the calibration set takes every patient not in test.
    """
    unique = sorted(set(patients))
    if len(unique) != len(patients):
        raise ValueError("patients must be unique ids")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not (0 < test_fraction < 1 and 0 < calibration_fraction < 1 and test_fraction + calibration_fraction < 1):
        raise ValueError("test_fraction and calibration_fraction must be in (0, 1) and sum to less than 1")
    n = len(unique)
    n_test = math.ceil(test_fraction * n)
    n_calibration = math.ceil(calibration_fraction * n) if with_development else n - n_test
    if n_calibration < 1 or n - n_test - n_calibration < (1 if with_development else 0):
        raise ValueError(f"{n} patients are too few for non-empty test, calibration and development sets")
    rng = np.random.default_rng(seed)
    splits = []
    for repeat in range(repeats):
        order = [unique[i] for i in rng.permutation(n)]
        splits.append(
            Split(
                repeat=repeat,
                test=tuple(sorted(order[:n_test])),
                calibration=tuple(sorted(order[n_test : n_test + n_calibration])),
                development=tuple(sorted(order[n_test + n_calibration :])),
            )
        )
    return splits
