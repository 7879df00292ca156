"""The torch mapping of pooled probabilities to the CT grid against nnU-Net's own export steps (no network needed).

The oracle is what ``export_prediction`` does with a probability map: ``resampling_fn_probabilities`` (NumPy,
float64), insertion into the shape before cropping (background 1 outside), inverse transpose.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

from pipeline.inference.mapping import CtGeometry, map_probabilities

TOLERANCE = 2e-6  # float32 interpolation against nnU-Net's float64 one, rounded to float32


def _configuration(spacing: list[float], **kwargs: Any) -> ConfigurationManager:
    resampling = {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None, **kwargs}
    return ConfigurationManager({
        "spacing": spacing, "architecture": {}, "patch_size": [8, 8, 8],
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": resampling,
    })


def _probabilities(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    logits = torch.from_numpy(np.random.default_rng(seed).normal(0.0, 3.0, (3, *shape)).astype(np.float32))
    return torch.softmax(logits, dim=0)


def _oracle(probabilities: torch.Tensor, geometry: CtGeometry, configuration: ConfigurationManager) -> np.ndarray:
    resampled = configuration.resampling_fn_probabilities(
        probabilities.clone(), geometry.cropped_shape, geometry.network_spacing, geometry.ct_spacing
    )
    full = np.zeros((probabilities.shape[0], *geometry.uncropped_shape), dtype=np.float32)
    full[0] = 1.0
    full[(slice(None), *(slice(lo, hi) for lo, hi in geometry.bbox))] = resampled
    backward = [int(i) for i in np.argsort(geometry.transpose_forward)]
    return np.ascontiguousarray(full.transpose([0, *[i + 1 for i in backward]]))


CASES = {
    # network spacing, CT spacing (network axis order), network shape, cropped shape, bbox, uncropped, transpose
    "trilinear_upsampling": ([12.0, 7.0, 7.0], [2.5, 0.9, 0.9], (7, 9, 9), (30, 70, 70),
                             ((0, 30), (0, 70), (0, 70)), (30, 70, 70), (0, 1, 2)),
    "separate_z_nearest": ([5.0, 0.8, 0.8], [5.0, 0.5, 0.5], (6, 10, 12), (6, 16, 19),
                           ((0, 6), (0, 16), (0, 19)), (6, 16, 19), (0, 1, 2)),
    "separate_z_resampled_nearest": ([4.0, 1.0, 1.0], [3.0, 0.7, 0.7], (9, 12, 12), (12, 17, 17),
                                     ((0, 12), (0, 17), (0, 17)), (12, 17, 17), (0, 1, 2)),
    "downsampling_cropped_transposed": ([1.5, 1.5, 1.5], [2.0, 2.0, 2.0], (20, 16, 18), (15, 12, 13),
                                        ((2, 17), (3, 15), (0, 13)), (19, 16, 13), (2, 0, 1)),
    "same_grid": ([2.0, 2.0, 2.0], [2.0, 2.0, 2.0], (8, 9, 10), (8, 9, 10),
                  ((1, 9), (0, 9), (0, 10)), (10, 9, 10), (0, 1, 2)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_mapping_equals_nnunet_export(name: str) -> None:
    network_spacing, ct_spacing, network_shape, cropped, bbox, uncropped, transpose = CASES[name]
    configuration = _configuration(network_spacing)
    geometry = CtGeometry(cropped, uncropped, bbox, tuple(network_spacing), tuple(ct_spacing), transpose)
    probabilities = _probabilities(network_shape, seed=len(name))
    mapped = map_probabilities(probabilities, geometry, configuration).numpy()
    expected = _oracle(probabilities, geometry, configuration)
    assert mapped.shape == expected.shape == (3, *geometry.ct_shape)
    np.testing.assert_allclose(mapped, expected, rtol=0, atol=TOLERANCE)
    assert np.abs(mapped.sum(axis=0) - 1).max() < 1e-5 and mapped.min() >= 0


def test_linear_along_the_separate_axis_and_fallback_rules() -> None:
    geometry = CtGeometry((12, 17, 17), (12, 17, 17), ((0, 12), (0, 17), (0, 17)), (4.0, 1.0, 1.0),
                          (3.0, 0.7, 0.7), (0, 1, 2))
    probabilities = _probabilities((9, 12, 12), seed=7)
    for configuration in (_configuration([4.0, 1.0, 1.0], order_z=1), _configuration([4.0, 1.0, 1.0], order=3)):
        mapped = map_probabilities(probabilities, geometry, configuration).numpy()
        np.testing.assert_allclose(mapped, _oracle(probabilities, geometry, configuration), rtol=0, atol=TOLERANCE)
