"""The untrained full-size model set (``benchmarks/full_models.py``, ``inference_grid.py --architecture full``):
nnU-Net's own planner decides the architecture, the set loads as the demo's does and runs the 12-configuration grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from benchmarks.full_models import CONFIGURATION, build_full_model_set
from pipeline.inference.engine import MemberPredictor
from pipeline.inference.grid import grid_for
from pipeline.inference.model_set import load_model_set_file
from pipeline.inference.pooling import predict_grid
from pipeline.phantoms.ct import generate_phantom


def test_the_full_size_set_is_nnunets_default_plan_and_runs_the_grid(tmp_path: Path) -> None:
    phantom = generate_phantom(4242)
    manifest = build_full_model_set(tmp_path, phantom.ct.shape, phantom.spacing, folds=2, cycles=1)
    document = json.loads(manifest.read_text())
    plans = json.loads((tmp_path / document["checkpoints"][0]["path"]).parents[1].joinpath("plans.json").read_text())
    planned = plans["configurations"][CONFIGURATION]
    assert plans["experiment_planner_used"] == "ExperimentPlanner"
    assert planned["architecture"]["network_class_name"].endswith("PlainConvUNet")
    assert planned["architecture"]["arch_kwargs"]["features_per_stage"][0] == 32, "nnU-Net's default base features"
    assert [round(s, 3) for s in planned["spacing"]] == [round(s, 3) for s in phantom.spacing]
    assert document["architecture"]["patch_size"] == planned["patch_size"]
    assert [row["ensemble"] for row in document["checkpoints"]] == ["DE", "DE", "CE"]

    model_set = load_model_set_file(manifest)  # checks every checkpoint's sha256 against the manifest
    predictor = MemberPredictor(model_set)
    grid = grid_for(model_set, predictor.mirror_axes())
    assert len(grid) == 12 and predictor.mirror_axes() == (0, 1, 2)
    image = sitk.GetImageFromArray(phantom.ct)
    image.SetSpacing(tuple(reversed(phantom.spacing)))
    base = next(c for c in grid if c.name == "Base")
    [(name, probabilities)] = list(predict_grid(predictor, image, [base]))
    assert name == "Base" and probabilities.shape == (3, *phantom.ct.shape)
    assert np.allclose(probabilities.sum(0), 1.0, atol=1e-4)
