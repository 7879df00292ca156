"""Review regions on synthetic masks: volumes, slice ranges, ranking, connectivity, structures, budgets."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipeline.metrics.regions import case_score, find_regions, rank_cases, slice_number, slice_span
from pipeline.metrics.review_budget import Budget, flagged_count, narrow_budget_mask, top_budget_mask
from pipeline.settings import ReviewSettings

SPACING = (2.0, 0.5, 0.5)  # mm; a voxel is 0.5 µL = 0.0005 mL
PARTS = ReviewSettings(merge_distance_mm=0.0, min_region_ml=0.0)  # every connected part its own listed region


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mask = np.zeros((10, 30, 30), dtype=bool)
    entropy = np.zeros(mask.shape, dtype=np.float16)
    prediction = np.zeros(mask.shape, dtype=np.uint8)
    mask[2:6, 5:15, 5:15] = True  # A: 400 voxels, entropy 0.5, on predicted spleen (2)
    entropy[2:6, 5:15, 5:15] = 0.5
    prediction[2:6, 5:15, 5:10] = 2
    prediction[2:6, 5:15, 10:12] = 1  # fewer node voxels than spleen voxels: A is spleen
    mask[7, 20:22, 20:22] = True  # B: 4 voxels of entropy 1.0, no foreground inside; nodes 3 voxels away
    entropy[7, 20:22, 20:22] = 1.0
    prediction[7, 25, 20:22] = 1
    mask[8, 2, 2] = mask[9, 3, 3] = True  # C: two voxels touching at a corner only
    entropy[8, 2, 2] = entropy[9, 3, 3] = 0.25
    return mask, entropy, prediction


def test_regions_volumes_slices_scores_and_ranking() -> None:
    mask, entropy, prediction = _scene()
    found = find_regions(mask, entropy, prediction, SPACING, PARTS)
    a, b, c = found.regions
    assert [r.rank for r in found.regions] == [1, 2, 3]
    assert (a.voxels, a.slices, a.class_index) == (400, (2, 5), 2)
    assert a.volume_ml == pytest.approx(400 * 0.0005)
    assert a.mean_entropy == pytest.approx(0.5) and a.score == pytest.approx(0.5 * 0.2)
    assert (b.voxels, b.slices, b.class_index, b.max_entropy) == (4, (7, 7), 1, 1.0)
    assert b.score == pytest.approx(1.0 * 4 * 0.0005)
    assert (c.voxels, c.slices, c.class_index) == (2, (8, 9), 2)  # 26-connected; the spleen is nearest
    assert (slice_number(0), slice_span(a.slices)) == (1, "3–6")  # shown 1-based, as the slice browser counts
    for region in found.regions:
        assert found.labels[region.centroid] == region.rank  # the centroid voxel lies inside its region
        assert int((found.labels == region.rank).sum()) == region.voxels
    assert case_score(found.regions) == pytest.approx(a.score + b.score + c.score)


def test_six_connectivity_splits_corner_neighbours() -> None:
    mask, entropy, prediction = _scene()
    found = find_regions(mask, entropy, prediction, SPACING, replace(PARTS, connectivity=6))
    assert [r.voxels for r in found.regions] == [400, 4, 1, 1]


def test_a_region_far_from_any_structure_is_class_zero() -> None:
    mask = np.zeros((3, 40, 40), dtype=bool)
    mask[1, 1, 1] = True
    prediction = np.zeros(mask.shape, dtype=np.uint8)
    prediction[1, 39, 39] = 2  # 38 * 0.5 * sqrt(2) = 26.9 mm away: inside a 30 mm search, outside a 20 mm one
    entropy = np.ones(mask.shape, dtype=np.float32)
    assert find_regions(mask, entropy, prediction, SPACING, PARTS).regions[0].class_index == 2
    narrow = replace(PARTS, structure_search_mm=20.0)
    assert find_regions(mask, entropy, prediction, SPACING, narrow).regions[0].class_index == 0


def test_an_empty_mask_has_no_region() -> None:
    mask, entropy, prediction = _scene()
    found = find_regions(np.zeros_like(mask), entropy, prediction, SPACING, PARTS)
    assert found.regions == () and not found.labels.any()


def test_cases_rank_by_their_summed_scores() -> None:
    mask, entropy, prediction = _scene()
    big = find_regions(mask, entropy, prediction, SPACING, PARTS).regions
    small = find_regions(mask & (entropy >= 1.0), entropy, prediction, SPACING, PARTS).regions
    assert rank_cases({"small": small, "big": big, "empty": ()}) == ["big", "small", "empty"]


def test_budgets_fraction_and_minutes() -> None:
    rate = ReviewSettings(seconds_per_ml=30.0).seconds_per_ml
    assert Budget("fraction", 0.02).fraction(1000, 0.001, rate) == (0.02, False)
    # 1 minute at 30 s/mL = 2 mL of a 100 mL ROI = 2 %
    assert Budget("minutes", 1.0).fraction(100_000, 0.001, rate) == (pytest.approx(0.02), False)
    assert Budget("minutes", 10.0).fraction(100_000, 0.001, rate) == (0.05, True)  # 20 % capped at 5 %
    with pytest.raises(ValueError, match=r"fraction budget must be in \[0, 1\]"):
        Budget("fraction", 1.5)
    with pytest.raises(ValueError, match="seconds_per_ml"):
        ReviewSettings(seconds_per_ml=0)


def test_top_budget_mask_and_its_narrowing_agree() -> None:
    rng = np.random.default_rng(0)
    entropy = rng.random((6, 20, 20)).astype(np.float16)
    roi = np.zeros(entropy.shape, dtype=bool)
    roi[1:5, 2:18, 3:17] = True
    n = int(roi.sum())
    wide = top_budget_mask(entropy, roi, 0.05)
    assert int(wide.sum()) == flagged_count(0.05, n) == int(np.ceil(0.05 * n))
    assert not (wide & ~roi).any()
    assert entropy[wide].min() >= entropy[roi & ~wide].max()
    for fraction in (0.0, 0.01, 0.02, 0.05):
        np.testing.assert_array_equal(narrow_budget_mask(wide, entropy, n, fraction),
                                      top_budget_mask(entropy, roi, fraction))
    with pytest.raises(ValueError, match="the stored mask holds"):
        narrow_budget_mask(wide, entropy, n, 0.06)


@pytest.mark.parametrize("seed", range(6))
def test_regions_inside_the_search_box_equal_those_of_the_whole_volume(seed: int) -> None:
    """find_regions works on the mask's bounding box (plus the structure search's and the merging's reach); the
    labels, regions and every tie-break equal those computed on the whole volume."""
    from pipeline.metrics.regions import _regions_in

    rng = np.random.default_rng(seed)
    shape = (30, 60, 50)
    mask = np.zeros(shape, dtype=bool)
    z, y, x = rng.integers(3, 20), rng.integers(5, 40), rng.integers(5, 30)
    mask[z:z + 8, y:y + 15, x:x + 15] = rng.random((8, 15, 15)) < 0.25  # many small, touching and tied components
    entropy = np.round(rng.random(shape), 1).astype(np.float16)  # coarse values: ties in scores
    prediction = np.zeros(shape, dtype=np.uint8)
    prediction[z:z + 6, y + 2:y + 9, x:x + 20] = 1
    prediction[max(0, z - 3):z + 2, y + 12:y + 25, x + 10:x + 25] = 2  # beside the mask: the search finds it
    settings = ReviewSettings(structure_search_mm=6.0, connectivity=26 if seed % 2 else 6,
                              merge_distance_mm=(0.0, 1.0, 2.0)[seed % 3], min_region_ml=0.0)
    found = find_regions(mask, entropy, prediction, SPACING, settings)
    labels, regions = _regions_in(mask, entropy, prediction, SPACING, settings)
    assert found.regions == regions and len(regions) >= (2 if settings.merge_distance_mm == 0 else 1)
    assert np.array_equal(found.labels, labels)


def test_parts_within_the_merge_distance_form_one_region_of_their_own_voxels() -> None:
    """A and B (gaps of one slice, 2 mm, and of 5 voxels in-plane, 2.5 mm) merge at 2.5 mm, not below; C (gap
    of 2 slices, 4 mm, from A) joins at 4 mm. A merged region holds the U_b voxels only."""
    mask, entropy, prediction = _scene()
    apart = find_regions(mask, entropy, prediction, SPACING, replace(PARTS, merge_distance_mm=2.4)).regions
    assert [r.voxels for r in apart] == [400, 4, 2]
    joined = find_regions(mask, entropy, prediction, SPACING, replace(PARTS, merge_distance_mm=2.5))
    assert [r.voxels for r in joined.regions] == [404, 2]
    ab = joined.regions[0]
    assert (ab.slices, ab.class_index) == ((2, 7), 2) and int((joined.labels == 1).sum()) == 404
    assert ab.score == pytest.approx(apart[0].score + apart[1].score)
    everything = find_regions(mask, entropy, prediction, SPACING, replace(PARTS, merge_distance_mm=4.0))
    assert [r.voxels for r in everything.regions] == [406]
    assert np.array_equal(everything.labels > 0, mask)


def test_regions_below_the_minimum_size_are_not_listed() -> None:
    """At 0.0005 mL a voxel, B (4 voxels, 0.002 mL) and C (2) are below 0.0025 mL: only A is listed, its label map
    holds A alone, and the case's score counts what is listed."""
    mask, entropy, prediction = _scene()
    found = find_regions(mask, entropy, prediction, SPACING, replace(PARTS, min_region_ml=0.0025))
    assert [(r.rank, r.voxels) for r in found.regions] == [(1, 400)]
    assert int((found.labels > 0).sum()) == 400 and case_score(found.regions) == pytest.approx(0.1)
    defaults = find_regions(mask, entropy, prediction, SPACING, ReviewSettings())  # 10 mm, 0.05 mL: A, B, C merge
    assert [r.voxels for r in defaults.regions] == [406]
