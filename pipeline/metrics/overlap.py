"""Overlap of predicted and reference labels: per-class counts and the Dice similarity coefficient."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def confusion_counts(
    prediction: NDArray[np.integer], reference: NDArray[np.integer], n_classes: int
) -> NDArray[np.int64]:
    """Confusion matrix M[p, g] = #voxels predicted p with reference g, shape (C, C); inputs of equal shape."""
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction {prediction.shape} and reference {reference.shape} must have equal shapes")
    pair = prediction.astype(np.intp).ravel() * n_classes + reference.ravel()
    return np.bincount(pair, minlength=n_classes * n_classes).reshape(n_classes, n_classes).astype(np.int64)


def dice_from_confusion(confusion: NDArray[np.int64], empty: float = 1.0) -> NDArray[np.float64]:
    """DSC per class, 2|P∩G| / (|P| + |G|), from a (C, C) confusion matrix; ``empty`` (1, or NaN to leave it
    undefined) where both sets are empty."""
    overlap = np.diagonal(confusion).astype(np.float64)
    sizes = confusion.sum(axis=1) + confusion.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sizes == 0, empty, 2.0 * overlap / sizes)


def dice_per_class(
    prediction: NDArray[np.integer], reference: NDArray[np.integer], n_classes: int
) -> NDArray[np.float64]:
    """DSC per class (index = class) of two label maps of equal shape."""
    return dice_from_confusion(confusion_counts(prediction, reference, n_classes))
