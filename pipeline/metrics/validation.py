"""Input checks at the boundary of the metric engine: each failure is a ``ValueError`` naming the argument."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

Spacing = tuple[float, float, float]


def check_probability_shape(probs: NDArray[np.floating], name: str = "probs") -> None:
    """Check the container of a class-probability map: a float32/float64 array shaped (C, Z, Y, X), C >= 2."""
    if not isinstance(probs, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(probs).__name__}")
    if probs.ndim != 4:
        raise ValueError(f"{name} must be shaped (C, Z, Y, X), got {probs.ndim} dimensions {probs.shape}")
    if probs.shape[0] < 2:
        raise ValueError(f"{name} must have at least 2 classes on axis 0, got shape {probs.shape}")
    if probs.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} must be float32 or float64, got {probs.dtype}")
    if probs.size == 0:
        raise ValueError(f"{name} is empty, shape {probs.shape}")


def check_probability_chunk(
    chunk: NDArray[np.floating], tolerance: float, z_offset: int = 0, name: str = "probs"
) -> None:
    """Check values of a (C, z, Y, X) slab: finite, >= 0, Σ_c p = 1 within ``tolerance`` (NaN and inf fail).

    Computed in the input's precision; ``z_offset`` locates the slab in the volume for the message.
    """
    lowest = float(np.min(chunk))
    if not lowest >= 0.0:
        raise ValueError(f"{name} must be finite and non-negative; found minimum {lowest} in slices from z={z_offset}")
    total = np.sum(chunk, axis=0)
    total -= 1
    deviation = float(max(-np.min(total), np.max(total)))
    if not deviation <= tolerance:
        raise ValueError(
            f"{name} must sum to 1 over classes (axis 0) within {tolerance}; "
            f"largest deviation {deviation} in slices from z={z_offset}"
        )


def check_probabilities(probs: NDArray[np.floating], tolerance: float, name: str = "probs") -> None:
    """Check a whole class-probability map (container and values), in z-slabs to bound the temporary memory."""
    check_probability_shape(probs, name)
    step = max(1, (1 << 20) // max(1, probs.shape[2] * probs.shape[3]))
    for z0 in range(0, probs.shape[1], step):
        check_probability_chunk(probs[:, z0 : z0 + step], tolerance, z0, name)


def check_labels(labels: NDArray[np.integer], shape: tuple[int, ...], n_classes: int, name: str = "labels") -> None:
    """Check a label map: integer dtype, the given spatial ``shape``, values in 0..n_classes-1."""
    if not isinstance(labels, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(labels).__name__}")
    if labels.shape != shape:
        raise ValueError(f"{name} must have the spatial shape {shape} of the probabilities, got {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise ValueError(f"{name} must have an integer dtype, got {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high > n_classes - 1:
        raise ValueError(f"{name} must hold class indices 0..{n_classes - 1}; found values in [{low}, {high}]")


def check_spacing(spacing: Sequence[float], name: str = "spacing") -> Spacing:
    """Return ``spacing`` as a (z, y, x) tuple of floats in mm, each finite and > 0."""
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a sequence of 3 numbers (z, y, x) in mm, got {spacing!r}") from error
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 values (z, y, x) in mm, got {len(values)}")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"{name} values must be finite and > 0 mm, got {values}")
    return (values[0], values[1], values[2])


def check_same_length(name_a: str, a: NDArray[np.generic], name_b: str, b: NDArray[np.generic]) -> None:
    """Check two 1-D voxel arrays pair up."""
    if a.ndim != 1 or b.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must be 1-D of equal length, got {a.shape} and {b.shape}")
