"""Class probabilities from the network's grid back to the CT grid, in torch on the tensor's device.

What nnU-Net does to a prediction before export (``export_prediction``), minus the softmax: resample with the
configuration's ``resampling_fn_probabilities`` to the cropped shape at the CT's spacing, insert into the shape
before cropping at the crop box (background probability 1 outside), and undo the plans' transpose.

nnU-Net's default resampling of probabilities (``resample_data_or_seg_to_shape``, order 1) is linear, separable
and half-pixel aligned (scikit-image/SciPy ``zoom`` with ``grid_mode``, edge mode): in-plane bilinear, and along the
axis it treats apart (anisotropic spacing) nearest (``order_z`` 0) or linear (``order_z`` 1); without a separate
axis, trilinear. Here the plane of each network slice is resized with ``torch.nn.functional.interpolate``
(bilinear, ``align_corners=False``) and the CT-grid slices along the remaining axis are written straight into the
output, in float32, so the only CT-grid array is the result. Any other resampling rule of the plans falls back to
nnU-Net's own function (NumPy, float64) for the resampling step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from nnunetv2.configuration import ANISO_THRESHOLD
from nnunetv2.preprocessing.resampling.default_resampling import determine_do_sep_z_and_axis
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

_SUPPORTED_FUNCTION = "resample_data_or_seg_to_shape"


@dataclass(frozen=True)
class CtGeometry:
    """Where the network's grid sits in the CT (axes in the network's order, i.e. after ``transpose_forward``).

    Attributes:
        cropped_shape: shape of the crop box on the CT grid (``shape_after_cropping_and_before_resampling``).
        uncropped_shape: shape before cropping (the whole CT, transposed).
        bbox: the crop box, (low, high) voxel indices per axis.
        network_spacing, ct_spacing: mm per axis of the network's grid and of the CT.
        transpose_forward: the plans' axis order (network axis i is CT array axis ``transpose_forward[i]``).
    """

    cropped_shape: tuple[int, int, int]
    uncropped_shape: tuple[int, int, int]
    bbox: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    network_spacing: tuple[float, float, float]
    ct_spacing: tuple[float, float, float]
    transpose_forward: tuple[int, int, int]

    @property
    def ct_shape(self) -> tuple[int, int, int]:
        """The CT array's shape (Z, Y, X)."""
        shape = [0, 0, 0]
        for axis, size in zip(self.transpose_forward, self.uncropped_shape, strict=True):
            shape[axis] = size
        return (shape[0], shape[1], shape[2])


def ct_geometry(properties: dict[str, Any], configuration: ConfigurationManager, transpose_forward: list[int]
                ) -> CtGeometry:
    """The geometry nnU-Net's preprocessor recorded in ``properties`` (as ``export_prediction`` reads it)."""
    ct_spacing = [float(properties["spacing"][i]) for i in transpose_forward]
    target = [float(s) for s in configuration.spacing]
    network = target if len(target) == 3 else [ct_spacing[0], *target]
    bbox = [(int(lo), int(hi)) for lo, hi in properties["bbox_used_for_cropping"]]
    cropped = [int(n) for n in properties["shape_after_cropping_and_before_resampling"]]
    uncropped = [int(n) for n in properties["shape_before_cropping"]]
    order = [int(axis) for axis in transpose_forward]
    return CtGeometry(
        (cropped[0], cropped[1], cropped[2]), (uncropped[0], uncropped[1], uncropped[2]),
        (bbox[0], bbox[1], bbox[2]), (network[0], network[1], network[2]),
        (ct_spacing[0], ct_spacing[1], ct_spacing[2]), (order[0], order[1], order[2]),
    )


@dataclass(frozen=True)
class _LinearRule:
    """nnU-Net's order-1 probability resampling: the axis resampled apart and its order (0 nearest, 1 linear)."""

    axis: int
    order: int


def _linear_rule(configuration: ConfigurationManager, geometry: CtGeometry) -> _LinearRule | None:
    """The rule for the plans' ``resampling_fn_probabilities``; None when it is not nnU-Net's order-1 default."""
    name = configuration.configuration.get("resampling_fn_probabilities")
    kwargs = dict(configuration.configuration.get("resampling_fn_probabilities_kwargs") or {})
    if name != _SUPPORTED_FUNCTION or kwargs.get("is_seg", False) or kwargs.get("order", 3) != 1:
        return None
    order_z = kwargs.get("order_z", 0)
    if order_z not in (0, 1):
        return None
    separate, axis = determine_do_sep_z_and_axis(
        kwargs.get("force_separate_z", False), geometry.network_spacing, geometry.ct_spacing,
        kwargs.get("separate_z_anisotropy_threshold", ANISO_THRESHOLD),
    )
    return _LinearRule(int(axis), int(order_z)) if separate else _LinearRule(0, 1)


def _source_positions(size_in: int, size_out: int, order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output index along one axis: lower and upper source index and the upper one's weight.

    Half-pixel alignment as SciPy's ``zoom(grid_mode=True)`` / ``map_coordinates`` in float64, edge clamped.
    """
    position = (np.arange(size_out, dtype=np.float64) + 0.5) * (size_in / size_out) - 0.5
    if order == 0:
        nearest = np.clip(np.floor(position + 0.5), 0, size_in - 1).astype(np.int64)
        return nearest, nearest, np.zeros(size_out)
    position = np.clip(position, 0.0, size_in - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, position - low


def _resample_into(probabilities: torch.Tensor, out: torch.Tensor, rule: _LinearRule) -> None:
    """Resample (C, *network shape) into the view ``out`` (C, *cropped shape), slice by slice along ``rule.axis``."""
    source = probabilities.movedim(rule.axis + 1, 0).contiguous()  # (S, C, P, Q), small
    target = out.movedim(rule.axis + 1, 1)  # (C, S', P', Q'), a view of the output
    plane = tuple(target.shape[2:])
    low, high, weight = _source_positions(source.shape[0], target.shape[1], rule.order)
    resized: dict[int, torch.Tensor] = {}

    def resized_slice(index: int) -> torch.Tensor:
        if index not in resized:
            piece = source[index]
            if tuple(piece.shape[1:]) != plane:
                piece = F.interpolate(piece[None], size=plane, mode="bilinear", align_corners=False)[0]
            resized[index] = piece
        return resized[index]

    for k in range(target.shape[1]):
        for stale in [i for i in resized if i < low[k]]:
            del resized[stale]
        lower = resized_slice(int(low[k]))
        if weight[k] == 0.0 or low[k] == high[k]:
            target[:, k].copy_(lower)
        else:
            torch.lerp(lower, resized_slice(int(high[k])), float(weight[k]), out=target[:, k])


def map_probabilities(
    probabilities: torch.Tensor, geometry: CtGeometry, configuration: ConfigurationManager
) -> torch.Tensor:
    """Class probabilities (C, z, y, x) on the network's grid → (C, Z, Y, X) on the CT grid, float32, same device.

    Each output voxel is written once: background 1 (other classes 0) outside the crop box, the resampled
    probabilities inside it, in the CT's axis order (no transpose copy).
    """
    probabilities = probabilities.float()
    n_classes = probabilities.shape[0]
    result = torch.empty((n_classes, *geometry.ct_shape), dtype=torch.float32, device=probabilities.device)
    transposed = result.permute(0, *[axis + 1 for axis in geometry.transpose_forward])
    box = (slice(None), *(slice(lo, hi) for lo, hi in geometry.bbox))
    if geometry.cropped_shape != geometry.uncropped_shape:
        transposed[0].fill_(1.0)
        transposed[1:].zero_()
    inside = transposed[box]
    rule = _linear_rule(configuration, geometry)
    if tuple(probabilities.shape[1:]) == geometry.cropped_shape:
        inside.copy_(probabilities)
    elif rule is not None:
        _resample_into(probabilities, inside, rule)
    else:
        resampled = configuration.resampling_fn_probabilities(
            probabilities.cpu(), geometry.cropped_shape, geometry.network_spacing, geometry.ct_spacing
        )
        inside.copy_(torch.as_tensor(np.asarray(resampled, dtype=np.float32)))
    return result
