"""Real nnU-Net inference on phantom cases with the project's tiny models (the session's smoke-trained set)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.inference.engine import MemberPredictor
from pipeline.inference.grid import IDENTITY, grid_for, mirror_views
from pipeline.inference.model_set import ModelSet, ModelSetError, check_label_set
from pipeline.inference.pooling import predict_grid
from pipeline.metrics import evaluate_case
from pipeline.metrics.pooling import softmax
from pipeline.phantoms.ct import generate_phantom


@pytest.fixture(scope="module")
def predictor(model_set: ModelSet) -> MemberPredictor:
    return MemberPredictor(model_set)


@pytest.fixture(scope="module")
def phantom_case() -> tuple[sitk.Image, np.ndarray]:
    phantom = generate_phantom(4242)
    image = sitk.GetImageFromArray(phantom.ct)
    image.SetSpacing(tuple(reversed(phantom.spacing)))
    return image, phantom.labels


def test_full_grid_runs_each_pass_once_and_equals_brute_force(
    model_set: ModelSet, phantom_case: tuple[sitk.Image, np.ndarray]
) -> None:
    image, labels = phantom_case
    counting = MemberPredictor(model_set)
    grid = grid_for(model_set, counting.mirror_axes())
    prediction = predict_grid(counting, image, grid)
    probabilities = dict(prediction)

    needed = set().union(*(c.passes for c in grid))
    assert set(counting.forward_passes) == needed
    assert set(counting.forward_passes.values()) == {1}
    assert prediction.forward_passes == len(needed) == len(model_set.members) * 8

    case = counting.preprocess(image)
    logits = {pair: counting.forward(case, *pair) for pair in needed}
    for configuration in grid:
        brute = np.mean([softmax(logits[pair]) for pair in sorted(configuration.passes)], axis=0)
        pooled = probabilities[configuration.name]
        assert pooled.shape == (len(model_set.labels), *labels.shape)
        assert np.allclose(pooled, brute, atol=2e-6), configuration.name


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_each_tta_view_is_inverted_exactly(
    predictor: MemberPredictor, phantom_case: tuple[sitk.Image, np.ndarray], axis: int
) -> None:
    image, _ = phantom_case
    flip = [False, False, False]
    flip[2 - axis] = True  # SimpleITK axes are (x, y, z); array axes are (z, y, x)
    member = predictor.model_set.members[0].name
    viewed = predictor.forward(predictor.preprocess(image), member, (axis,))
    flipped_input = predictor.forward(predictor.preprocess(sitk.Flip(image, flip)), member, IDENTITY)
    assert np.array_equal(viewed, np.flip(flipped_input, axis=axis + 1))


def test_temperature_scaling_leaves_the_contour_unchanged(
    predictor: MemberPredictor, phantom_case: tuple[sitk.Image, np.ndarray]
) -> None:
    image, labels = phantom_case
    grid = [c for c in grid_for(predictor.model_set, predictor.mirror_axes()) if c.name == "TTA"]
    probs = dict(predict_grid(predictor, image, grid))["TTA"]
    spacing = tuple(reversed(image.GetSpacing()))
    plain = evaluate_case(probs, labels, spacing).metrics
    for temperature in (0.3, 2.5):
        scaled = evaluate_case(probs, labels, spacing, temperature=temperature).metrics
        assert scaled.dsc == plain.dsc
        assert scaled.error_voxels == plain.error_voxels


def test_views_follow_the_checkpoint_mirroring_axes(predictor: MemberPredictor) -> None:
    assert mirror_views(predictor.mirror_axes()) == mirror_views((0, 1, 2))


def _copy_results(model_set: ModelSet, tmp_path: Path) -> Path:
    target = tmp_path / model_set.folder.name
    shutil.copytree(model_set.folder, target)
    return target


def test_missing_checkpoint_is_named(model_set: ModelSet, tmp_path: Path) -> None:
    from pipeline.inference.model_set import load_model_set

    folder = _copy_results(model_set, tmp_path)
    (folder / "fold_1" / "checkpoint_final.pth").unlink()
    with pytest.raises(ModelSetError, match=r"fold_1/checkpoint_final\.pth: checkpoint missing"):
        load_model_set(folder, folds=[0, 1])


def test_weights_that_do_not_fit_the_labels_are_named(model_set: ModelSet, tmp_path: Path) -> None:
    from pipeline.inference.model_set import load_model_set

    folder = _copy_results(model_set, tmp_path)
    dataset = json.loads((folder / "dataset.json").read_text())
    dataset["labels"] = {"background": 0, "spleen": 1}
    (folder / "dataset.json").write_text(json.dumps(dataset))
    broken = MemberPredictor(load_model_set(folder, folds=[0]))
    image = sitk.GetImageFromArray(np.zeros((8, 8, 8), dtype=np.int16))
    with pytest.raises(ModelSetError, match=r"fold_0/checkpoint_final\.pth: weights do not fit"):
        broken.forward(broken.preprocess(image), "fold_0", IDENTITY)


def test_a_reference_with_another_label_set_is_refused(model_set: ModelSet) -> None:
    source = Path("reference/dataset.json")
    check_label_set(model_set, {name: i for i, name in enumerate(model_set.labels)}, source)
    with pytest.raises(ModelSetError, match=r"reference/dataset\.json: reference labels"):
        check_label_set(model_set, {"background": 0, "spleen": 1}, source)
