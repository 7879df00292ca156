"""``python -m pipeline train-demo-models --smoke``: wiring of phantoms -> nnU-Net planning -> DE folds and CE cycles
-> weights-only export and manifest, checked on the files it writes (the real models are trained offline)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import InputError
from pipeline.nnunet.training import SMOKE, sha256_of, shares_preprocessed_data, training_options

WEIGHTS_ONLY_KEYS = {"network_weights", "trainer_name", "inference_allowed_mirroring_axes", "init_args"}
DE_FOLDER = "Dataset501_TMLIPhantom/nnUNetTrainerTinyCPU__nnUNetPlans__3d_tiny"
CE_FOLDER = "Dataset501_TMLIPhantom/nnUNetTrainerCheckpointEnsemble__nnUNetPlans__3d_tiny"


@pytest.fixture
def nnunet_environment(tmp_path: Path) -> Iterator[None]:
    """nnU-Net's environment for one test, restored afterwards."""
    from pipeline.nnunet.compat import prepare_nnunet_environment

    saved = dict(os.environ)
    prepare_nnunet_environment(tmp_path / "nnunet", processes=1)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_manifest_lists_every_member_with_matching_hashes(smoke_run: tuple[Path, dict]) -> None:
    out, manifest = smoke_run

    rows = manifest["checkpoints"]
    assert [r["path"] for r in rows] == [
        f"{DE_FOLDER}/fold_0/checkpoint_final.pth",
        f"{DE_FOLDER}/fold_1/checkpoint_final.pth",
        f"{CE_FOLDER}/fold_0/checkpoint_cycle_1.pth",
        f"{CE_FOLDER}/fold_0/checkpoint_cycle_2.pth",
    ]
    for row in rows:
        path = out / row["path"]
        assert row["sha256"] == sha256_of(path)
        assert row["bytes"] == path.stat().st_size
        assert row["training_seconds"] > 0
        assert set(row["validation_dice"]) == {"lymph_nodes", "spleen"}
        assert all(0.0 <= v <= 1.0 for v in row["validation_dice"].values())
    assert manifest["total_bytes"] == sum(r["bytes"] for r in rows) < 25 * 2**20
    assert manifest["command"].startswith("python -m pipeline train-demo-models")
    assert "--smoke" in manifest["command"]
    assert set(manifest["training_seeds"]).isdisjoint(manifest["held_out_seeds"])
    assert len(manifest["training_seeds"]) == SMOKE["cases"]


def test_checkpoints_are_weights_only_and_allow_mirroring(smoke_run: tuple[Path, dict]) -> None:
    out, manifest = smoke_run

    for row in manifest["checkpoints"]:
        checkpoint = torch.load(out / row["path"], map_location="cpu", weights_only=True)
        assert set(checkpoint) == WEIGHTS_ONLY_KEYS
        assert checkpoint["init_args"] == {"configuration": "3d_tiny"}
        assert tuple(checkpoint["inference_allowed_mirroring_axes"]) == (0, 1, 2)
        assert checkpoint["trainer_name"] in row["path"]


def test_checkpoint_ensemble_cycles_differ(smoke_run: tuple[Path, dict]) -> None:
    out, _ = smoke_run
    cycles = [
        torch.load(out / CE_FOLDER / "fold_0" / f"checkpoint_cycle_{k}.pth", weights_only=True)["network_weights"]
        for k in (1, 2)
    ]

    assert cycles[0].keys() == cycles[1].keys()
    assert any(not torch.equal(cycles[0][k], cycles[1][k]) for k in cycles[0])


def test_results_folders_hold_the_tiny_plans(smoke_run: tuple[Path, dict]) -> None:
    out, _ = smoke_run

    for folder in (DE_FOLDER, CE_FOLDER):
        plans = json.loads((out / folder / "plans.json").read_text())
        tiny, fullres = plans["configurations"]["3d_tiny"], plans["configurations"]["3d_fullres"]
        assert tiny["inherits_from"] == "3d_fullres" and "data_identifier" not in tiny
        assert tiny["architecture"]["arch_kwargs"]["features_per_stage"] == [8, 16, 32, 64]
        assert tiny["patch_size"] == [48, 64, 64] == fullres["patch_size"]
        labels = json.loads((out / folder / "dataset.json").read_text())["labels"]
        assert labels == {"background": 0, "lymph_nodes": 1, "spleen": 2}


def test_nnunet_predictor_reads_the_exported_folder(smoke_run: tuple[Path, dict], nnunet_environment: None) -> None:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from pipeline.phantoms.ct import generate_phantom

    out, _ = smoke_run
    predictor = nnUNetPredictor(use_mirroring=True, perform_everything_on_device=False,
                                device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(out / DE_FOLDER), use_folds=(0, 1))
    phantom = generate_phantom(12345)

    segmentation = predictor.predict_single_npy_array(phantom.ct.astype(np.float32)[None],
                                                      {"spacing": list(phantom.spacing)})

    assert predictor.allowed_mirroring_axes == (0, 1, 2)
    assert segmentation.shape == phantom.ct.shape
    assert set(np.unique(segmentation)) <= {0, 1, 2}


def test_a_2d_run_has_its_own_folders_and_the_3d_defaults_stay() -> None:
    budget = {"epochs": 30}  # a multiple of the default 3 cycles
    three_d, smoke_3d = training_options(budget), training_options({}, smoke=True)
    two_d = training_options({**budget, "configuration": "2d"})
    smoke_2d = training_options({"configuration": "2d"}, smoke=True)

    assert (three_d.configuration, three_d.out, three_d.workdir) == ("3d", Path("models/demo"), Path("var/nnunet"))
    assert (smoke_3d.out, smoke_3d.workdir) == (SMOKE["out"], SMOKE["workdir"])
    assert "--configuration" not in three_d.command()
    assert {two_d.out, two_d.workdir, smoke_2d.out, smoke_2d.workdir}.isdisjoint(
        {three_d.out, three_d.workdir, smoke_3d.out, smoke_3d.workdir})
    assert smoke_2d.smoke and smoke_2d.cases == SMOKE["cases"]
    assert "--configuration 2d" in smoke_2d.command()
    assert training_options({**budget, "configuration": "2d", "out": Path("x")}).out == Path("x")
    with pytest.raises(InputError, match="--configuration"):
        training_options({"configuration": "2.5d"})


def test_the_default_options_are_the_demo_models_budget() -> None:
    defaults = training_options({})
    assert (defaults.folds, defaults.cycles, defaults.epochs) == (3, 3, 60)
    assert defaults.epochs % defaults.cycles == 0


def _plans(fullres_spacing: list[float], flat_spacing: list[float], **flat: object) -> dict:
    common = {"preprocessor_name": "DefaultPreprocessor", "normalization_schemes": ["CTNormalization"],
              "use_mask_for_norm": [False], "resampling_fn_data": "resample_data_or_seg_to_shape",
              "resampling_fn_data_kwargs": {"order": 3}, "resampling_fn_seg": "resample_data_or_seg_to_shape",
              "resampling_fn_seg_kwargs": {"order": 1}}
    return {"transpose_forward": [0, 1, 2], "configurations": {
        "3d_fullres": {**common, "spacing": fullres_spacing}, "2d": {**common, "spacing": flat_spacing, **flat}}}


def test_2d_shares_3d_fullres_data_only_where_nnunet_would_write_the_same_arrays() -> None:
    plans = _plans([12.0, 7.0, 7.0], [7.0, 7.0])
    assert shares_preprocessed_data(plans, [[12.0, 7.0, 7.0]] * 3)
    assert shares_preprocessed_data(plans, [[12.0, 5.0, 5.0]])  # resampled in-plane alike in both
    assert not shares_preprocessed_data(plans, [[12.0, 7.0, 7.0], [10.0, 7.0, 7.0]])  # 3-D resamples z, 2-D not
    assert not shares_preprocessed_data(_plans([12.0, 7.0, 7.0], [6.0, 6.0]), [[12.0, 7.0, 7.0]])
    assert not shares_preprocessed_data(_plans([12.0, 7.0, 7.0], [7.0, 7.0], normalization_schemes=["ZScore"]),
                                        [[12.0, 7.0, 7.0]])
