"""The smallest CT a model's plan can preprocess.

nnU-Net's preprocessing resamples each axis, in the plan's order (``transpose_forward``), to the configuration's
spacing: ``n`` voxels of ``s`` mm become ``round(n · s / t)`` voxels of ``t`` mm (its ``compute_new_shape``; a 2-D
configuration leaves its first axis as it is). An axis left without a voxel makes the preprocessing fail on a
zero-size array (a 3-slice series under a plan of 12 mm slices). Past that, the sliding window pads any smaller image
to the patch, so one resampled voxel per axis is the minimum the plan imposes. :func:`check_extent` refuses a CT
below it as bad input, before any inference, in one line naming the axis, what the CT has and the minimum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pipeline.errors import InputError

#: the CT array's axes (Z, Y, X) in words
AXIS_WORDS = ("slices", "rows", "columns")


def minimum_voxels(spacing: float, target: float) -> int:
    """The fewest voxels of ``spacing`` mm that resample to at least one voxel of ``target`` mm (Python's round,
    half to even, as nnU-Net rounds)."""
    count = max(1, math.floor(target / (2 * spacing)))
    while round(count * spacing / target) < 1:
        count += 1
    return count


def check_extent(size_zyx: Sequence[int], spacing_zyx: Sequence[float], target_spacing: Sequence[float],
                 transpose_forward: Sequence[int], source: str) -> None:
    """InputError when resampling ``size_zyx`` voxels of ``spacing_zyx`` mm (the CT array's axes) to the plan's
    ``target_spacing`` (its axis order, ``transpose_forward``; two values for a 2-D configuration) leaves an axis
    without a voxel; ``source`` names the CT in the message."""
    targets: list[float | None] = [None] * (len(transpose_forward) - len(target_spacing)) + list(target_spacing)
    for axis, target in zip(transpose_forward, targets, strict=True):
        count, spacing = int(size_zyx[axis]), float(spacing_zyx[axis])
        if target is None or round(count * spacing / target) >= 1:
            continue
        needed, words = minimum_voxels(spacing, float(target)), AXIS_WORDS[axis]
        raise InputError(f"{source}: {count} {words} of {spacing:.3g} mm are too few for the model: its plan "
                         f"resamples them to {float(target):.3g} mm, which needs at least {needed} {words} "
                         f"({needed * spacing:.3g} mm)")
