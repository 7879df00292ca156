"""Benchmark of the inference grid: all 12 configurations of one case against the largest one alone and nnU-Net's own
predictor, the mapping alone, and the ``pooled`` vs ``per_pass`` grid mapping.

Run::

    python -m benchmarks.inference_grid [--size small|clinical] [--models models/demo/manifest.json | --architecture
        full] [--device cpu|cuda] [--threads N] [--seed 4242] [--per-pass Base,DE | all | none]
        [--only grid,largest,peer,mapping,comparison] [--json out.json]

On one case (``small``: a phantom on the plans' grid; ``clinical``: a 300 x 512 x 512 CT at 2.5 x 0.9 x 0.9 mm made
from a phantom, :mod:`benchmarks.grid_cases`), in one process: (1) the whole grid (every configuration, each
(member, view) pass once, each configuration streamed and dropped), (2) the largest configuration alone (DE+TTA),
(3) the peer: ``nnUNetPredictor`` with the deep-ensemble folds and mirroring (DE+TTA as nnU-Net runs it, CPU:
``perform_everything_on_device=False``), (4) the mapping of one pooled map to the CT grid alone, against nnU-Net's
export steps in NumPy, (5) time and peak resident memory of each (CUDA's peak allocation on a GPU), and (6) the
difference between ``pooled`` and ``per_pass`` (largest |Δp|, argmax agreement, every metric of ``evaluate_case``)
on this case (``--per-pass`` configurations: all of them for ``small``, Base and DE for ``clinical``, whose
``per_pass`` costs ~15 s per pass here) and on the demo's real CT. ``--only`` runs some of (1)-(6) alone.

``--architecture full`` replaces the demo's tiny networks by nnU-Net's own default 3d_fullres architecture, planned
by nnU-Net's ``ExperimentPlanner`` for the case's shape and spacing, untrained (seeded random weights: the timings
do not depend on them), with the demo set's members (3 folds, 3 cycle checkpoints), written to a temporary folder
(:mod:`benchmarks.full_models`); the report adds its patch size, stages and sliding-window patches per pass.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from benchmarks.grid_cases import Case, compare_mappings, format_comparison, phantom_case, real_case
from benchmarks.memory import reset_peak_resident, status_kib
from pipeline.inference.engine import MemberPredictor, Preprocessed, choose_device
from pipeline.inference.grid import IDENTITY, Configuration, grid_for
from pipeline.inference.model_set import ModelSet, load_model_set_file
from pipeline.inference.pooling import GridPrediction, predict_grid
from pipeline.settings import Settings

LOG = logging.getLogger("benchmarks.inference_grid")
GOAL_PEER_RATIO, GOAL_PASS_OVERHEAD = 2.0, 1.1
DEFAULT_MODELS = Path(__file__).resolve().parents[1] / "models" / "demo" / "manifest.json"


def measured(run: Callable[[], object], device: torch.device) -> dict[str, float]:
    """Seconds, peak extra resident MiB (Linux's VmHWM, reset first) and CUDA peak MiB of ``run``."""
    gc.collect()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    before = reset_peak_resident()
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_mib": (status_kib("VmHWM") - before) / 1024,
            "cuda_peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else 0.0}


def stream(prediction: GridPrediction) -> dict[str, float]:
    """Take every configuration from the grid and drop it; the passes, configurations and mapping time."""
    names = 0
    for _, probs in prediction:
        names += 1
        del probs
    return {"passes": prediction.forward_passes, "configurations": names, "mapping_seconds": prediction.seconds_mapping}


def grid_run(predictor: MemberPredictor, case: Case, configurations: Sequence[Configuration]) -> dict[str, float]:
    """:func:`measured` of running ``configurations`` on the case and streaming them, with :func:`stream`'s counts."""
    counts: dict[str, float] = {}
    values = measured(lambda: counts.update(stream(predict_grid(predictor, case.image, configurations))),
                      predictor.device)
    return {**values, **counts}


def peer(model_set: ModelSet, device: torch.device) -> Any:
    """nnU-Net's own predictor with the deep-ensemble folds and mirroring, built without its trainer lookup."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(model_set.plans)
    configuration = plans.get_configuration(model_set.configuration)
    network = nnUNetTrainer.build_network_architecture(
        plans, configuration, determine_num_input_channels(plans, configuration, model_set.dataset_json),
        plans.get_label_manager(model_set.dataset_json).num_segmentation_heads, enable_deep_supervision=False)
    states = [torch.load(m.checkpoint, map_location="cpu", weights_only=True)
              for m in model_set.members if m.name.startswith("fold_")]
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a note on CPU
        predictor = nnUNetPredictor(use_mirroring=True, perform_everything_on_device=device.type == "cuda",
                                    device=device, verbose=False, allow_tqdm=False)
    predictor.manual_initialization(network, plans, configuration, [s["network_weights"] for s in states],
                                    model_set.dataset_json, "nnUNetTrainer",
                                    states[0]["inference_allowed_mirroring_axes"])
    return predictor


def peer_run(model_set: ModelSet, case: Case, device: torch.device) -> dict[str, float]:
    """:func:`measured` of the peer on the case: preprocessing, prediction, probabilities on the CT grid."""
    predictor = peer(model_set, device)
    ct = sitk.GetArrayFromImage(case.image).astype(np.float32)[None]
    spacing = list(reversed(case.image.GetSpacing()))
    return measured(lambda: predictor.predict_single_npy_array(ct, {"spacing": spacing}, None, None, True), device)


def nnunet_mapping(predictor: MemberPredictor, probabilities: torch.Tensor, case: Preprocessed) -> np.ndarray:
    """nnU-Net's export steps for a probability map: its resampling (NumPy), un-cropping, inverse transpose."""
    geometry = case.geometry
    resampled = predictor.configuration_manager.resampling_fn_probabilities(
        probabilities.cpu(), geometry.cropped_shape, geometry.network_spacing, geometry.ct_spacing)
    full = np.zeros((probabilities.shape[0], *geometry.uncropped_shape), dtype=np.float32)
    full[0] = 1.0
    full[(slice(None), *(slice(lo, hi) for lo, hi in geometry.bbox))] = resampled
    return np.ascontiguousarray(full.transpose([0, *[i + 1 for i in predictor.plans_manager.transpose_backward]]))


def mapping_alone(predictor: MemberPredictor, case: Case) -> dict[str, float]:
    """One pooled map (the first member's identity pass) to the CT grid: ours against nnU-Net's export steps."""
    pre = predictor.preprocess(case.image)
    probabilities = torch.softmax(predictor.network_logits(pre, predictor.model_set.members[0].name, IDENTITY), 0)
    mapped: list[np.ndarray] = []
    ours = measured(lambda: mapped.append(predictor.to_ct_grid(probabilities, pre)), predictor.device)
    theirs = measured(lambda: mapped.append(nnunet_mapping(predictor, probabilities, pre)), predictor.device)
    return {"ours": ours, "nnunet": theirs, "max_abs_difference": float(np.abs(mapped[0] - mapped[1]).max()),
            "network_shape": list(probabilities.shape[1:])}


PARTS = ("grid", "largest", "peer", "mapping", "comparison")


def sliding_window(predictor: MemberPredictor, case: Preprocessed) -> dict[str, Any]:
    """The network's input shape for the case and the patches of one pass (nnU-Net's tiling, step 0.5)."""
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    shape = tuple(int(v) for v in case.data.shape[1:])
    patch = tuple(predictor.configuration_manager.patch_size)
    steps = compute_steps_for_sliding_window(shape, patch, 0.5)
    return {"network_input_shape": list(shape), "patch_size": list(patch),
            "patches_per_pass": int(np.prod([len(s) for s in steps]))}


def models_for(args: argparse.Namespace, case: Case, workdir: Path) -> Path:
    """``--models``, or the untrained full-size set planned for the case (``--architecture full``) under
    ``workdir``."""
    if args.architecture != "full":
        return args.models
    from benchmarks.full_models import build_full_model_set

    spacing_zyx = tuple(reversed(case.image.GetSpacing()))
    return build_full_model_set(workdir, case.labels.shape, spacing_zyx)


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Every measurement of the module's description (of ``--only``'s parts), as a JSON-ready dict."""
    if args.threads:
        torch.set_num_threads(args.threads)
    case = phantom_case(args.seed, args.size)
    models = models_for(args, case, workdir)
    model_set = load_model_set_file(models)
    predictor = MemberPredictor(model_set, choose_device(args.device))
    device = predictor.device
    grid = grid_for(model_set, predictor.mirror_axes())
    largest = max(grid, key=lambda c: len(c.passes))
    preprocessing = measured(lambda: predictor.preprocess(case.image), device)
    preprocessed = predictor.preprocess(case.image)
    first_pass = measured(lambda: predictor.network_logits(preprocessed, model_set.members[0].name, IDENTITY), device)
    result: dict[str, Any] = {"case": case.name, "device": str(device), "threads": torch.get_num_threads(),
                              "torch": torch.__version__, "members": len(model_set.members),
                              "map_mib": len(model_set.labels) * case.labels.size * 4 / 2**20,
                              "preprocessing": preprocessing, "configuration": model_set.configuration,
                              "models": "untrained nnU-Net default (--architecture full)"
                              if args.architecture == "full" else str(models),
                              "first_pass": first_pass, "sliding_window": sliding_window(predictor, preprocessed)}
    parts = args.only.split(",")

    def keep() -> None:
        """Write what is measured so far (``--json``): a run stopped by a time limit keeps its finished parts."""
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    if "grid" in parts:
        result["grid"] = grid_run(predictor, case, grid)
        keep()
    if "largest" in parts:
        result["largest"] = {**grid_run(predictor, case, [largest]), "name": largest.name}
        keep()
    if "peer" in parts:
        result["peer"] = {**peer_run(model_set, case, device), "passes": len(largest.passes),
                          "name": f"nnUNetPredictor DE+TTA ({len(largest.members)} folds, mirroring)"}
        keep()
    if "mapping" in parts:
        result["mapping"] = mapping_alone(predictor, case)
        keep()
    if "comparison" in parts:
        chosen = [c for c in grid if args.per_pass == "all" or c.name in args.per_pass.split(",")]
        result["comparison"] = compare_mappings(predictor, case, chosen)
        real = real_case(args.shared)
        if real is not None:
            result["real_ct_comparison"] = compare_mappings(predictor, real, grid)
    return result


def report(result: dict[str, Any]) -> str:
    """The benchmark's text table (of the parts measured)."""
    def row(label: str, values: dict[str, float]) -> str:
        cuda = f", {values['cuda_peak_mib']:.0f} MiB CUDA" if values["cuda_peak_mib"] else ""
        return (f"  {label:58s} {values['seconds']:8.2f} s   peak +{values['peak_rss_mib']:6.0f} MiB RSS "
                f"({values['peak_rss_mib'] / result['map_mib']:.2f} maps){cuda}")

    window = result["sliding_window"]
    lines = [
        f"inference grid benchmark: torch {result['torch']}, device {result['device']}, threads {result['threads']}, "
        f"{result['case']}, {result['members']} members of {result['models']} ({result['configuration']}, patch "
        f"{window['patch_size']}, {window['patches_per_pass']} patches per pass of {window['network_input_shape']}); "
        f"one CT-grid map = {result['map_mib']:.0f} MiB",
        row("preprocessing (once per run below)", result["preprocessing"]),
        row("first pass (warm-up: one member, no mirroring)", result["first_pass"]),
    ]
    grid, largest, peer_run = result.get("grid"), result.get("largest"), result.get("peer")
    if grid:
        lines.append(row(f"whole grid ({grid['configurations']:.0f} configurations, {grid['passes']:.0f} passes, "
                         f"mapping {grid['mapping_seconds']:.1f} s; {grid['seconds'] / grid['passes']:.2f} s/pass)",
                         grid))
    if largest:
        lines.append(row(f"largest alone ({largest['name']}, {largest['passes']:.0f} passes, mapping "
                         f"{largest['mapping_seconds']:.1f} s)", largest))
    if peer_run:
        lines.append(row(f"peer: {peer_run['name']}; {peer_run['seconds'] / peer_run['passes']:.2f} s/pass",
                         peer_run))
    if grid and peer_run:
        per_pass = (grid["seconds"] / grid["passes"]) / (peer_run["seconds"] / peer_run["passes"])
        lines.append(f"  grid / peer = {grid['seconds'] / peer_run['seconds']:.2f}x (goal <= {GOAL_PEER_RATIO}x); "
                     f"grid per pass / peer per pass = {per_pass:.2f}")
    if grid and largest:
        overhead = (grid["seconds"] / grid["passes"]) / (largest["seconds"] / largest["passes"])
        lines.append(f"  grid per pass / largest per pass = {overhead:.2f} (goal <= {GOAL_PASS_OVERHEAD})")
    if "mapping" in result:
        mapping = result["mapping"]
        lines.append(
            f"  mapping alone, network {mapping['network_shape']} -> CT grid: ours {mapping['ours']['seconds']:.2f} s "
            f"(+{mapping['ours']['peak_rss_mib']:.0f} MiB), nnU-Net's export steps "
            f"{mapping['nnunet']['seconds']:.2f} s (+{mapping['nnunet']['peak_rss_mib']:.0f} MiB), max |diff| "
            f"{mapping['max_abs_difference']:.2g}")
    lines += [format_comparison(result[key]) for key in ("comparison", "real_ct_comparison") if key in result]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its table (and write its numbers with ``--json``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inference_grid", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("small", "clinical"), default="small", help="the case (default small)")
    parser.add_argument("--models", type=Path, help="model-set JSON (default: the demo models)")
    parser.add_argument("--architecture", choices=("demo", "full"), default="demo",
                        help="full: nnU-Net's default 3d_fullres architecture planned for the case, untrained, "
                             "instead of --models (default demo)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"parts to run, joined by commas (default all: "
                                                                 f"{','.join(PARTS)})")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA if present)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, all cores)")
    parser.add_argument("--seed", type=int, default=4242, help="phantom seed")
    parser.add_argument("--per-pass", help="configurations compared with per_pass: names joined by commas, or all "
                                           "(default: all for small, Base,DE for clinical)")
    parser.add_argument("--shared", type=Path, default=Settings.from_env().shared_data,
                        help="shared/data folder with the demo's real CT (default: QA_SHARED_DATA or ../shared/data)")
    parser.add_argument("--json", type=Path, help="also write every number to this JSON file")
    args = parser.parse_args(argv)
    if args.architecture == "full" and args.models:
        parser.error("--models and --architecture full exclude each other (full builds its own model set)")
    unknown = set(args.only.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    args.models = args.models or DEFAULT_MODELS
    args.per_pass = args.per_pass or ("all" if args.size == "small" else "Base,DE")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="qa-inference-grid-") as folder:
        result = run(args, Path(folder))
    sys.stdout.write(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
