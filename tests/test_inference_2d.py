"""2-D nnU-Net models: TTA flips the in-plane axes, checked on a tiny 2-D model set trained by the project
(``train-demo-models --smoke --configuration 2d``, the session's ``smoke_run_2d``).

A 2-D configuration's patch spans (Y, X) and slides over Z; its mirror axes (0, 1) are dimensions 2 and 3 of the
preprocessed (C, Z, Y, X) data. Flipping dimension 1 (Z, the 3-D rule) is a no-op for a slice-wise network, so the
view tests below fail on that rule.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import pipeline.nnunet
from pipeline.inference.engine import MemberPredictor, Preprocessed, flip_dims
from pipeline.inference.grid import IDENTITY, grid_for, mirror_views
from pipeline.inference.model_set import ModelSet, load_model_set_file
from pipeline.inference.pooling import NetworkPool, predict_grid
from pipeline.metrics.pooling import softmax
from pipeline.phantoms.ct import generate_phantom

DE_FOLDER = "Dataset501_TMLIPhantom/nnUNetTrainerTinyCPU__nnUNetPlans__2d_tiny"
# nnU-Net's sliding window accumulates logits in float16 (also on CPU): a view's logits are rounded before the
# mean, nnU-Net's mean after it (ulp 0.008 at |z| = 8, coarser at the patch corners, where the Gaussian weight is
# subnormal in float16). Measured max |delta| 0.031-0.038 in logits, 0.009-0.013 in probabilities, over the 4
# members; the in-plane axes wrongly flipped (Z instead of Y) give > 2 in logits.
LOGIT_ATOL = 0.1
PROBABILITY_ATOL = 0.03


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One torch thread for this module: a 2-D pass is 48 one-slice windows fed by nnU-Net's producer thread, and
    on a busy 2-core machine two torch threads made it 10-15 s instead of 0.5 s."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def model_set(smoke_run_2d: tuple[Path, dict]) -> ModelSet:
    return load_model_set_file(smoke_run_2d[0] / "manifest.json")


@pytest.fixture(scope="module")
def predictor(model_set: ModelSet) -> MemberPredictor:
    return MemberPredictor(model_set)


@pytest.fixture(scope="module")
def phantom_case() -> tuple[sitk.Image, np.ndarray]:
    phantom = generate_phantom(4242)
    image = sitk.GetImageFromArray(phantom.ct)
    image.SetSpacing(tuple(reversed(phantom.spacing)))
    return image, phantom.labels


@pytest.fixture(scope="module")
def case(predictor: MemberPredictor, phantom_case: tuple[sitk.Image, np.ndarray]) -> Preprocessed:
    return predictor.preprocess(phantom_case[0])


@pytest.mark.parametrize(("view", "patch_dims", "dims"), [
    ((), 3, []), ((0,), 3, [1]), ((0, 1, 2), 3, [1, 2, 3]), ((), 2, []), ((0,), 2, [2]), ((1,), 2, [3]),
    ((0, 1), 2, [2, 3]),
])
def test_flip_dims_follow_the_patch_dimensionality(view: tuple[int, ...], patch_dims: int, dims: list[int]) -> None:
    assert flip_dims(view, patch_dims) == dims


@pytest.mark.parametrize(("view", "patch_dims"), [((2,), 2), ((3,), 3), ((-1,), 3), ((0,), 4)])
def test_flip_dims_refuse_axes_outside_the_patch(view: tuple[int, ...], patch_dims: int) -> None:
    with pytest.raises(ValueError):
        flip_dims(view, patch_dims)


def test_smoke_run_trains_2d_tiny_on_the_3d_fullres_data(smoke_run_2d: tuple[Path, dict]) -> None:
    out, manifest = smoke_run_2d
    plans = json.loads((out / DE_FOLDER / "plans.json").read_text())
    tiny, fullres = plans["configurations"]["2d_tiny"], plans["configurations"]["3d_fullres"]

    assert tiny["inherits_from"] == "2d"
    assert tiny["data_identifier"] == fullres["data_identifier"]  # the phantoms' spacing is the plans' already
    assert tiny["patch_size"] == [64, 64]
    arch = tiny["architecture"]["arch_kwargs"]
    assert arch["conv_op"].endswith("Conv2d") and arch["kernel_sizes"] == [[3, 3]] * 4
    assert "--configuration 2d" in manifest["command"]
    for row in manifest["checkpoints"]:
        assert "__2d_tiny/" in row["path"]
        checkpoint = torch.load(out / row["path"], map_location="cpu", weights_only=True)
        assert checkpoint["init_args"] == {"configuration": "2d_tiny"}
        assert tuple(checkpoint["inference_allowed_mirroring_axes"]) == (0, 1)


def test_a_2d_model_has_four_views(predictor: MemberPredictor) -> None:
    assert predictor.model_set.configuration == "2d_tiny"
    assert predictor.patch_dims == 2
    assert mirror_views(predictor.mirror_axes()) == (IDENTITY, (0,), (1,), (0, 1))


@pytest.mark.parametrize("axis", [0, 1])
def test_each_2d_tta_view_is_inverted_exactly(
    predictor: MemberPredictor, phantom_case: tuple[sitk.Image, np.ndarray], axis: int
) -> None:
    image, _ = phantom_case
    array_axis = predictor.plans_manager.transpose_forward[axis + 1]  # patch axis -> (z, y, x) -> CT array axis
    flip = [False, False, False]
    flip[2 - array_axis] = True  # SimpleITK axes are (x, y, z); array axes are (z, y, x)
    member = predictor.model_set.members[0].name
    viewed = predictor.forward(predictor.preprocess(image), member, (axis,))
    flipped_input = predictor.forward(predictor.preprocess(sitk.Flip(image, flip)), member, IDENTITY)
    assert array_axis != 0  # an in-plane axis, never the slice axis
    assert np.array_equal(viewed, np.flip(flipped_input, axis=array_axis + 1))


def test_the_four_views_differ(predictor: MemberPredictor, case: Preprocessed) -> None:
    member = predictor.model_set.members[0].name
    logits = [predictor.network_logits(case, member, view) for view in mirror_views(predictor.mirror_axes())]
    for i, first in enumerate(logits):
        for second in logits[i + 1:]:
            assert not torch.equal(first, second)


@pytest.mark.parametrize("fold", [0, 1])
def test_the_mean_of_the_views_is_nnunets_own_mirroring(
    predictor: MemberPredictor, case: Preprocessed, smoke_run_2d: tuple[Path, dict], fold: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """nnU-Net's ``use_mirroring=True`` averages the views' LOGITS (``_internal_maybe_mirror_and_predict``), so
    the oracle is compared with the mean of the views' logits, and its softmax with a ``logit_mean`` pool (the
    project's TTA configurations pool probabilities, ``prob_mean``, by the spec's default rule)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    monkeypatch.setenv("nnUNet_extTrainer", str(Path(pipeline.nnunet.__file__).parent))
    monkeypatch.setenv("nnUNet_compile", "f")
    oracle = nnUNetPredictor(use_mirroring=True, perform_everything_on_device=False, device=torch.device("cpu"),
                             allow_tqdm=False)
    oracle.initialize_from_trained_model_folder(str(smoke_run_2d[0] / DE_FOLDER), use_folds=(fold,))
    expected = oracle.predict_logits_from_preprocessed_data(case.data).float()

    views = mirror_views(predictor.mirror_axes())
    logits = [predictor.network_logits(case, f"fold_{fold}", view) for view in views]
    pool = NetworkPool("logit_mean")
    for member in logits:
        pool.add(member)

    assert oracle.allowed_mirroring_axes == (0, 1) and len(views) == 4
    assert torch.allclose(torch.stack(logits).mean(0), expected, rtol=0, atol=LOGIT_ATOL)
    assert torch.allclose(pool.probabilities(), torch.softmax(expected, 0), rtol=0, atol=PROBABILITY_ATOL)


def test_the_grid_runs_four_views_per_member_and_equals_brute_force(
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
    assert prediction.forward_passes == len(needed) == len(model_set.members) * 4
    assert {len(c.views) for c in grid if "TTA" in c.name} == {4}

    case = counting.preprocess(image)
    logits = {pair: counting.forward(case, *pair) for pair in needed}
    for configuration in grid:
        brute = np.mean([softmax(logits[pair]) for pair in sorted(configuration.passes)], axis=0)
        pooled = probabilities[configuration.name]
        assert pooled.shape == (len(model_set.labels), *labels.shape)
        assert np.allclose(pooled, brute, atol=2e-6), configuration.name


def test_mirror_axes_outside_the_patch_are_refused(model_set: ModelSet, tmp_path: Path) -> None:
    from pipeline.inference.model_set import ModelSetError, load_model_set

    folder = tmp_path / model_set.folder.name
    shutil.copytree(model_set.folder, folder)
    checkpoint_path = folder / "fold_0" / "checkpoint_final.pth"
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    torch.save({**checkpoint, "inference_allowed_mirroring_axes": (0, 1, 2)}, checkpoint_path)
    broken = MemberPredictor(load_model_set(folder, folds=[0]))
    with pytest.raises(ModelSetError, match=r"fold_0/checkpoint_final\.pth: mirroring axes \(0, 1, 2\) do not fit"):
        broken.mirror_axes()
