"""An untrained model set of nnU-Net's own default 3d_fullres architecture, for timing the inference grid at full
size (``benchmarks/inference_grid.py --architecture full``): nothing is trained and nothing is downloaded.

nnU-Net's ``ExperimentPlanner`` (the default of ``nnUNetv2_plan_and_preprocess``: PlainConvUNet, 32 to 320
features, the patch size and number of stages fitted to its 8 GB target) plans a dataset whose fingerprint says
every case is the given shape and spacing; its 3d_fullres configuration is then built (``nnUNetTrainer``'s network,
seeded random weights) for every member the demo set has — deep-ensemble folds ``fold_<f>/checkpoint_final.pth``
and a checkpoint-ensemble run's ``checkpoint_cycle_<c>.pth`` — and written with their plans.json and dataset.json
as ``train-demo-models`` writes models/demo, with a manifest (sha256 per checkpoint) that
:func:`pipeline.inference.model_set.load_model_set_file` reads. The labels are the phantom's (background,
lymph_nodes, spleen); the CT intensity properties are those of a phantom's foreground.

Alone: ``python -m benchmarks.full_models --out DIR [--shape 300,512,512] [--spacing 2.5,0.9,0.9]`` (the clinical
case of ``benchmarks/grid_cases.py``), then ``benchmarks/inference_grid.py --models DIR/manifest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.nnunet.training import environment_variables
from pipeline.phantoms.ct import LABELS, generate_phantom, write_nnunet_raw

log = logging.getLogger("benchmarks.full_models")
DATASET_ID, DATASET_NAME = 990, "UntrainedFullSize"
CONFIGURATION = "3d_fullres"
DE_FOLDER = f"nnUNetTrainer__nnUNetPlans__{CONFIGURATION}"
CE_FOLDER = f"nnUNetTrainerCheckpointEnsemble__nnUNetPlans__{CONFIGURATION}"
MIRROR_AXES = (0, 1, 2)  # what nnU-Net's trainer allows for a 3-D configuration


def _fingerprint(shape_zyx: Sequence[int], spacing_zyx: Sequence[float], cases: int) -> dict[str, Any]:
    """nnU-Net's dataset fingerprint of ``cases`` CTs of ``shape_zyx`` at ``spacing_zyx``, foreground intensities
    from a phantom's."""
    phantom = generate_phantom(0)
    foreground = phantom.ct[phantom.labels > 0].astype(np.float64)
    intensities = {"mean": float(foreground.mean()), "median": float(np.median(foreground)),
                   "std": float(foreground.std()), "min": float(foreground.min()), "max": float(foreground.max()),
                   "percentile_99_5": float(np.percentile(foreground, 99.5)),
                   "percentile_00_5": float(np.percentile(foreground, 0.5))}
    return {"spacings": [list(map(float, spacing_zyx))] * cases, "shapes_after_crop": [list(shape_zyx)] * cases,
            "median_relative_size_after_cropping": 1.0,
            "foreground_intensity_properties_per_channel": {"0": intensities}}


def default_plans(workdir: Path, shape_zyx: Sequence[int], spacing_zyx: Sequence[float], cases: int = 20
                  ) -> dict[str, Any]:
    """nnU-Net's default plans (``ExperimentPlanner``) for ``cases`` CTs of ``shape_zyx`` at ``spacing_zyx``
    (nnU-Net's folders under ``workdir``); its own output is kept out of the log."""
    from nnunetv2.experiment_planning.experiment_planners import default_experiment_planner as planning

    raw, preprocessed = workdir / "nnUNet_raw", workdir / "nnUNet_preprocessed"
    dataset = write_nnunet_raw(raw, [generate_phantom(0)], DATASET_ID, DATASET_NAME, "case").name
    description = json.loads((raw / dataset / "dataset.json").read_text())
    (raw / dataset / "dataset.json").write_text(json.dumps({**description, "numTraining": cases}))
    (preprocessed / dataset).mkdir(parents=True, exist_ok=True)
    (preprocessed / dataset / "dataset_fingerprint.json").write_text(
        json.dumps(_fingerprint(shape_zyx, spacing_zyx, cases)))
    # the planner reads its folders from module globals set at import, and sets torch's threads from this variable
    planning.nnUNet_raw, planning.nnUNet_preprocessed = str(raw), str(preprocessed)
    threads = torch.get_num_threads()
    with environment_variables(nnUNet_n_proc_DA="1"), contextlib.redirect_stdout(io.StringIO()):
        plans = planning.ExperimentPlanner(dataset).plan_experiment()
    torch.set_num_threads(threads)
    return json.loads(json.dumps(plans))  # numpy values as JSON values, as plans.json holds them


def _network(plans: dict[str, Any], dataset_json: dict[str, Any]) -> torch.nn.Module:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(plans)
    configuration = manager.get_configuration(CONFIGURATION)
    return nnUNetTrainer.build_network_architecture(
        manager, configuration, determine_num_input_channels(manager, configuration, dataset_json),
        manager.get_label_manager(dataset_json).num_segmentation_heads, enable_deep_supervision=False)


def build_full_model_set(out: Path, shape_zyx: Sequence[int], spacing_zyx: Sequence[float], folds: int = 3,
                         cycles: int = 3, seed: int = 0) -> Path:
    """Plan, build and write the model set under ``out`` (see the module's description); its manifest's path."""
    began = time.perf_counter()
    plans = default_plans(out / "nnunet", shape_zyx, spacing_zyx)
    dataset = plans["dataset_name"]
    dataset_json = json.loads((out / "nnunet" / "nnUNet_preprocessed" / dataset / "dataset.json").read_text())
    members = [("DE", DE_FOLDER, f"fold_{f}/checkpoint_final.pth", f) for f in range(folds)]
    members += [("CE", CE_FOLDER, f"fold_0/checkpoint_cycle_{c}.pth", c) for c in range(1, cycles + 1)]
    rows = []
    for number, (ensemble, folder, name, index) in enumerate(members):
        torch.manual_seed(seed * 1000 + number)
        network = _network(plans, dataset_json)
        relative = Path(dataset) / folder / name
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"network_weights": network.state_dict(), "trainer_name": folder.split("__")[0],
                    "inference_allowed_mirroring_axes": MIRROR_AXES,
                    "init_args": {"configuration": CONFIGURATION}}, out / relative)
        digest = hashlib.sha256((out / relative).read_bytes()).hexdigest()
        rows.append({"path": str(relative), "ensemble": ensemble, ("fold" if ensemble == "DE" else "cycle"): index,
                     "sha256": digest, "bytes": (out / relative).stat().st_size, "seed": seed * 1000 + number,
                     "trained": False})
    for folder in (DE_FOLDER, CE_FOLDER):
        (out / dataset / folder / "plans.json").write_text(json.dumps(plans, indent=2))
        (out / dataset / folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    architecture = plans["configurations"][CONFIGURATION]
    manifest = {
        "command": "benchmarks.full_models.build_full_model_set (untrained: for timing only)",
        "dataset": dataset, "labels": dict(LABELS),
        "planned_for": {"shape_zyx": list(shape_zyx), "spacing_zyx_mm": list(map(float, spacing_zyx))},
        "planner": "nnU-Net ExperimentPlanner (default), configuration 3d_fullres",
        "architecture": {"patch_size": architecture["patch_size"], "spacing": architecture["spacing"],
                         **{k: architecture["architecture"]["arch_kwargs"][k]
                            for k in ("n_stages", "features_per_stage", "strides")}},
        "parameters": sum(p.numel() for p in network.parameters()),
        "checkpoints": rows,
    }
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("untrained %s model set (%d members, patch %s, %d stages, %.1f M parameters) in %.0f s: %s",
             CONFIGURATION, len(rows), architecture["patch_size"], manifest["architecture"]["n_stages"],
             manifest["parameters"] / 1e6, time.perf_counter() - began, path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Build the set where ``--out`` says and print its manifest's path."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.full_models", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the model set to")
    parser.add_argument("--shape", default="300,512,512", help="Z,Y,X of the cases planned for (300,512,512)")
    parser.add_argument("--spacing", default="2.5,0.9,0.9", help="Z,Y,X spacing in mm planned for (2.5,0.9,0.9)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    shape = tuple(int(v) for v in args.shape.split(","))
    spacing = tuple(float(v) for v in args.spacing.split(","))
    sys.stdout.write(f"{build_full_model_set(args.out, shape, spacing)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
