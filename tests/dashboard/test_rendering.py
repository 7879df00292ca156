"""Server-side rendering: view orientation, the overlay picture, PNG encoding, budgets below the stored one,
uncertain regions and the map caches — pure NumPy, checked pixel by pixel on small arrays."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.metrics.review_budget import narrow_budget_mask
from pipeline.store.artifacts import ArtifactStore
from qa_dashboard.rendering import analysis, compose, maps
from qa_dashboard.rendering.geometry import PLANES, view_geometry
from qa_dashboard.rendering.views import crosshair
from tests.dashboard.conftest import decode_png

IDENTITY = (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)


def test_views_follow_radiological_convention_and_flip_with_the_direction() -> None:
    shape, spacing = (10, 20, 30), (3.0, 2.0, 1.0)
    axial = view_geometry("axial", shape, spacing, IDENTITY)
    assert (axial.n_rows, axial.n_cols, axial.row_mm, axial.col_mm) == (20, 30, 2.0, 1.0)
    assert not axial.flip_rows and not axial.flip_cols
    coronal = view_geometry("coronal", shape, spacing, IDENTITY)
    assert (coronal.rows_axis, coronal.cols_axis, coronal.flip_rows) == (0, 2, True)  # superior (high z) on top
    assert coronal.flip(0, 5) == (9, 5) and coronal.flip(*coronal.flip(3, 7)) == (3, 7)
    flipped = view_geometry("sagittal", shape, spacing, (-1.0, 0, 0, 0, -1.0, 0, 0, 0, -1.0))
    assert flipped.flip_cols and not flipped.flip_rows
    assert axial.pixel_at(29.9, 39.9) == (19, 29) and axial.pixel_at(30.1, 1) is None
    with pytest.raises(ValueError, match="plane must be one of"):
        view_geometry("oblique", shape, spacing, IDENTITY)


def test_crosshair_marks_the_other_planes_in_their_colours() -> None:
    view = view_geometry("axial", (10, 20, 30), (3.0, 2.0, 1.0), IDENTITY)
    horizontal, vertical, frame = crosshair(view, {"axial": 4, "coronal": 7, "sagittal": 12})
    assert horizontal["y0"] == horizontal["y1"] == 7.5 * 2.0 and horizontal["line"]["color"] == "#34c759"  # coronal
    assert vertical["x0"] == vertical["x1"] == 12.5 * 1.0 and vertical["line"]["color"] == "#ffd60a"  # sagittal
    assert frame["line"]["color"] == "#ff3b30"  # axial's own frame


def test_window_level_maps_the_window_linearly_onto_grey() -> None:
    grey = compose.window_level(np.array([[-160, 40, 240, 1000]]), window=400, level=40)
    np.testing.assert_array_equal(grey, [[0, 127, 255, 255]])


def test_overlay_draws_heat_map_above_threshold_and_contours_in_their_styles() -> None:
    reference = np.zeros((16, 16), np.uint8)
    reference[4:12, 4:12] = 2
    prediction = np.zeros_like(reference)
    prediction[5:13, 5:13] = 2
    entropy = np.zeros((16, 16), np.float16)
    entropy[0, 0], entropy[0, 1] = 0.05, 0.9
    layers = compose.Layers((16, 16), reference=reference, prediction=prediction, entropy=entropy)
    style = compose.Style(frozenset({"reference", "prediction", "entropy"}), (2,), opacity=0.5, threshold=0.1)
    rgba = compose.overlay_layer(layers, style, scale=1)
    assert rgba is not None and rgba.shape == (16, 16, 4)
    assert rgba[0, 0, 3] == 0, "entropy below the threshold is transparent"
    assert rgba[0, 1, 3] == 128 and tuple(rgba[0, 1, :3]) == tuple(compose.ENTROPY_LUT[int(0.9 * 255)])
    colour = (*compose.hex_to_rgb(compose.structure_colour(2)), 255)
    assert tuple(rgba[4, 8]) == colour, "reference outline, solid"
    assert tuple(rgba[8, 8]) == (0, 0, 0, 0), "inside the structure nothing is drawn"
    predicted_outline = compose.outline(prediction == 2) & ~compose.outline(reference == 2)
    drawn = (rgba[..., 3] == 255) & predicted_outline
    assert 0 < drawn.sum() < predicted_outline.sum(), "prediction outline is dashed"
    hidden = compose.Style(frozenset({"reference"}), (1,), 0.5, 0.1)
    assert compose.overlay_layer(layers, hidden, scale=1)[..., 3].max() == 0  # structure 1 is not in the slice
    assert compose.overlay_layer(layers, compose.Style(frozenset(), (2,), 0.5, 0.1), scale=1) is None


def test_contours_thicken_fill_take_chosen_colours_and_the_budget_outline_is_yellow_and_dotted() -> None:
    prediction = np.zeros((32, 32), np.uint8)
    prediction[8:24, 8:24] = 1
    budget = np.zeros((32, 32), bool)
    budget[2:6, 2:30] = True
    layers = compose.Layers((32, 32), prediction=prediction, reference=prediction, budget=budget)
    on = frozenset({"reference", "budget"})
    thin = compose.overlay_layer(layers, compose.Style(on, (1,), 0.5, 0.1, thickness=1), scale=1)
    thick = compose.overlay_layer(layers, compose.Style(on, (1,), 0.5, 0.1, thickness=3), scale=1)
    assert tuple(thin[8, 16]) == (*compose.hex_to_rgb(compose.structure_colour(1)), 255) and thin[9, 16, 3] == 0
    assert thick[9, 16, 3] == thick[10, 16, 3] == 255 and thick[11, 16, 3] == 0, "3 px wide, inside the structure"
    ring = compose.outline(budget)
    yellow = (*compose.hex_to_rgb(compose.BUDGET_COLOUR), 255)
    painted = (thin[..., 3] == 255) & ring
    assert compose.structure_colour(1) != compose.BUDGET_COLOUR and compose.BUDGET_COLOUR.lower() != "#ffffff"
    assert all(tuple(p) == yellow for p in thin[painted]) and 0 < painted.sum() < ring.sum(), "dotted, yellow"
    chosen = compose.Style(frozenset({"prediction"}), (1,), 0.5, 0.1, thickness=2, fill=True, colours=("#123456",))
    filled = compose.overlay_layer(layers, chosen, scale=1)
    assert filled[16, 16, 3] == round(compose.FILL_ALPHA * 255) and tuple(filled[16, 16, :3]) == (0x12, 0x34, 0x56)
    assert compose.structure_colour(1, ("#123456",)) == "#123456" and compose.structure_colour(2, ("#123456",)) \
        == compose.STRUCTURE_COLOURS[1]


def test_error_map_is_a_translucent_fill_and_small_images_are_enlarged() -> None:
    error = np.zeros((8, 8), bool)
    error[2, 3] = True
    scale = compose.scale_for((8, 8))
    rgba = compose.overlay_layer(compose.Layers((8, 8), error=error),
                                 compose.Style(frozenset({"error"}), (), 0.6, 0.1), scale=scale)
    assert scale == 8 and rgba is not None and rgba.shape == (64, 64, 4)
    block = rgba[2 * scale:3 * scale, 3 * scale:4 * scale]
    assert (block[..., 3] == round(compose.ERROR_ALPHA * 255)).all()
    assert rgba[..., 3].sum() == block[..., 3].sum()
    assert compose.scale_for((512, 512)) == 1


def test_pictures_are_lossless_pngs() -> None:
    grey = (np.arange(64 * 48) % 251).astype(np.uint8).reshape(64, 48)
    np.testing.assert_array_equal(decode_png(compose.png_uri(grey)), grey)
    rgba = np.random.default_rng(0).integers(0, 255, (20, 30, 4), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(compose.png_uri(rgba)), rgba)


def _stored(tmp_path: Path, rng: np.random.Generator) -> tuple[maps.MapCache, int, float]:
    """An entropy map and its stored top-budget mask at 4 % of a 'ROI' that is the whole volume."""
    entropy = rng.permutation(np.linspace(0, 1, 6 * 10 * 10)).reshape(6, 10, 10).astype(np.float16)
    roi = entropy.size
    flagged = math.ceil(0.04 * roi)
    mask = np.zeros(entropy.size, np.uint8)
    mask[np.argsort(-entropy.ravel(), kind="stable")[:flagged]] = 1
    store = ArtifactStore(tmp_path)
    store.write("entropy.zarr", entropy)
    store.write("mask.zarr", mask.reshape(entropy.shape))
    return maps.MapCache(store), roi, 0.04


def test_a_smaller_budget_flags_the_most_uncertain_voxels_of_the_stored_mask(tmp_path: Path) -> None:
    cache, roi, stored = _stored(tmp_path, np.random.default_rng(1))
    entropy, mask = cache.volume("entropy.zarr"), cache.volume("mask.zarr")
    for budget in (0.01, 0.02, 0.03):
        indices = analysis.budget_indices(cache, "entropy.zarr", "mask.zarr", roi, budget)
        smaller = np.stack([analysis.mask_plane(indices, entropy.shape, "axial", z) for z in range(entropy.shape[0])])
        assert smaller.sum() == math.ceil(budget * roi)
        assert entropy[smaller].min() >= entropy[mask.astype(bool) & ~smaller].max()
        np.testing.assert_array_equal(smaller, narrow_budget_mask(mask.astype(bool), entropy, roi, budget))
        for plane, axis in (("coronal", 1), ("sagittal", 2)):
            np.testing.assert_array_equal(analysis.mask_plane(indices, entropy.shape, plane, 3),
                                          np.take(smaller, 3, axis=axis))
    assert analysis.budget_indices(cache, "entropy.zarr", "mask.zarr", roi, 0.0).size == 0
    assert analysis.is_stored_budget(stored, stored) and analysis.is_stored_budget(0.05, stored)
    assert not analysis.is_stored_budget(0.039, stored)


def test_most_uncertain_slice_has_the_largest_summed_entropy(tmp_path: Path) -> None:
    entropy = np.zeros((5, 12, 12), np.float32)
    entropy[3, 2:4, 2:4] = 0.9
    entropy[1, 8:11, 8:11] = 0.5
    store = ArtifactStore(tmp_path)
    store.write("e.zarr", entropy.astype(np.float16))
    assert analysis.most_uncertain_slice(maps.MapCache(store), "e.zarr") == 1  # 9 voxels × 0.5 > 4 × 0.9


def test_map_cache_reads_axial_slices_alone_and_loads_a_volume_for_the_other_planes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    volume = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    store = ArtifactStore(tmp_path)
    store.write("v.zarr", volume)
    cache = maps.MapCache(store)
    reads: list[str] = []
    original = store.read
    monkeypatch.setattr(store, "read", lambda path: reads.append(path) or original(path))
    np.testing.assert_array_equal(cache.plane("v.zarr", "axial", 2), volume[2])
    assert reads == []
    np.testing.assert_array_equal(cache.plane("v.zarr", "coronal", 3), volume[:, 3, :])
    np.testing.assert_array_equal(cache.plane("v.zarr", "sagittal", 5), volume[:, :, 5])
    np.testing.assert_array_equal(cache.plane("v.zarr", "axial", 1), volume[1])
    assert reads == ["v.zarr"]
    with pytest.raises(ValueError, match=r"sagittal slice 6 is outside 0..5"):
        cache.plane("v.zarr", "sagittal", 6)
    assert set(PLANES) == {"axial", "coronal", "sagittal"}


def test_lru_cache_is_bounded_by_bytes() -> None:
    cache = maps.LruCache(100, len)
    cache.put("a", "x" * 60)
    cache.put("b", "y" * 30)
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", "z" * 30)
    assert cache.get("b") is None and cache.get("a") and cache.get("c")
    assert cache.get_or_compute("d", lambda: "w" * 10) == "w" * 10
