"""The grid demo: a model set's 12 configurations on a held-out phantom cohort and a real CT.

Runs the 12-configuration grid (each member x TTA-view forward pass once per case), repeats a calibration/test split
of the phantom cohort, fits one temperature per TS configuration on each repeat's calibration cases, prints the
cohort table (mean ± SD over repeats of the per-repeat test means), and then runs the same grid on the real
abdominal CT in ``shared/data/totalsegmentator`` (reference: TotalSegmentator's spleen PREDICTION, not an expert
contour; the phantom-trained models are out of distribution there). Files go to ``var/demo``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from pipeline.evaluation import LabelledPrediction, evaluate_grid, fit_grid_temperatures
from pipeline.images import read_ct
from pipeline.inference.command import grid_for
from pipeline.inference.engine import MemberPredictor, choose_device
from pipeline.inference.grid import Configuration
from pipeline.inference.model_set import load_model_set_file
from pipeline.inference.pooling import predict_grid
from pipeline.metrics.cohort import summarise_repeats
from pipeline.phantom import SPLEEN, generate_phantom
from pipeline.protocol import repeated_holdout

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_MODELS = REPO_ROOT / "models" / "demo" / "manifest.json"
PHANTOM_SEEDS = tuple(range(9000, 9008))
REPEATS = 3
METRICS = ("dsc_mean_fg", "ece", "brier", "ueo_auc", "fp_tp_auc", "fn_tn_auc")
REAL_CT = ("totalsegmentator/example_ct_sm.nii.gz", "totalsegmentator/example_seg.nii.gz")
TOTALSEGMENTATOR_SPLEEN = 1


def _phantom_image(seed: int) -> tuple[sitk.Image, np.ndarray]:
    phantom = generate_phantom(seed)
    image = sitk.GetImageFromArray(phantom.ct)
    image.SetSpacing(tuple(reversed(phantom.spacing)))
    return image, phantom.labels


def _predict(predictor: MemberPredictor, grid: tuple[Configuration, ...], name: str, image: sitk.Image,
             labels: np.ndarray) -> LabelledPrediction:
    prediction = predict_grid(predictor, image, grid)
    log.info("%s: %d forward passes", name, prediction.forward_passes)
    return LabelledPrediction(name, prediction.probabilities, labels, prediction.spacing)


def _cohort_rows(
    cases: list[LabelledPrediction], grid: tuple[Configuration, ...], repeats: int
) -> tuple[pd.DataFrame, dict[str, float]]:
    rows = []
    first_fits: dict[str, float] = {}
    by_name = {case.case: case for case in cases}
    for split in repeated_holdout(list(by_name), repeats, test_fraction=0.5, with_development=False):
        fits = fit_grid_temperatures([by_name[c] for c in split.calibration], grid)
        temperatures = {name: fit.temperature for name, fit in fits.items()}
        first_fits = first_fits or temperatures
        log.info("repeat %d: T = %s", split.repeat, {k: round(v, 3) for k, v in temperatures.items()})
        for name in split.test:
            for configuration, metrics in evaluate_grid(by_name[name], grid, temperatures).items():
                row = {"repeat": split.repeat, "case": name, "configuration": configuration}
                rows.append(row | {m: getattr(metrics, m) for m in METRICS})
    return pd.DataFrame(rows), first_fits


def _table(frame: pd.DataFrame, order: list[str], with_sd: bool) -> str:
    shown = pd.DataFrame({"configuration": order})
    indexed = frame.set_index("configuration").loc[order]
    for metric in METRICS:
        if with_sd:
            pairs = zip(indexed[f"{metric}_mean"], indexed[f"{metric}_sd"], strict=True)
            shown[metric] = [f"{m:.3f} ± {s:.3f}" for m, s in pairs]
        else:
            shown[metric] = [f"{v:.3f}" for v in indexed[metric]]
    return shown.to_string(index=False)


def _real_ct(predictor: MemberPredictor, grid: tuple[Configuration, ...], temperatures: dict[str, float],
             workdir: Path) -> str:
    shared = Path(os.environ.get("QA_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    ct_path, seg_path = (shared / part for part in REAL_CT)
    if not ct_path.is_file() or not seg_path.is_file():
        return f"Real CT: skipped ({ct_path} not found; set QA_SHARED_DATA to the shared/data folder)"
    image = read_ct(ct_path)
    totalsegmentator = sitk.GetArrayFromImage(sitk.ReadImage(str(seg_path)))
    labels = np.where(totalsegmentator == TOTALSEGMENTATOR_SPLEEN, SPLEEN, 0).astype(np.uint8)
    case = _predict(predictor, grid, "real CT", image, labels)
    results = evaluate_grid(case, grid, temperatures)
    frame = pd.DataFrame([{"configuration": n} | {m: getattr(r, m) for m in METRICS} for n, r in results.items()])
    frame.to_csv(workdir / "real_ct.csv", index=False)
    entropy = {n: r.mean_entropy_roi for n, r in results.items()}
    spleen_dsc = {n: r.dsc[SPLEEN] for n, r in results.items()}
    return (
        f"Real CT ({ct_path.name}, {image.GetSize()} voxels at {image.GetSpacing()} mm; reference = "
        "TotalSegmentator's spleen PREDICTION, no lymph-node reference, so node errors count as false positives):\n"
        f"{_table(frame, [c.name for c in grid], with_sd=False)}\n"
        f"spleen DSC by configuration: {', '.join(f'{k} {v:.3f}' for k, v in spleen_dsc.items())}\n"
        f"mean ROI entropy: {', '.join(f'{k} {v:.3f}' for k, v in entropy.items())}"
    )


def run_grid_demo(
    workdir: Path,
    models: Path = DEMO_MODELS,
    seeds: tuple[int, ...] = PHANTOM_SEEDS,
    repeats: int = REPEATS,
    real_ct: bool = True,
) -> int:
    """Run the grid demo with the model set of ``models``, writing its tables under ``workdir``; exit code."""
    workdir.mkdir(parents=True, exist_ok=True)
    model_set = load_model_set_file(models)
    predictor = MemberPredictor(model_set, choose_device())
    grid = grid_for(model_set, predictor.mirror_axes())
    cases = []
    for seed in seeds:
        image, labels = _phantom_image(seed)
        cases.append(_predict(predictor, grid, f"phantom_{seed}", image, labels))
    rows, temperatures = _cohort_rows(cases, grid, repeats)
    rows.to_csv(workdir / "per_case.csv", index=False)
    summary = summarise_repeats(rows, METRICS)
    summary.to_csv(workdir / "summary.csv", index=False)
    real = _real_ct(predictor, grid, temperatures, workdir) if real_ct else "Real CT: not run"
    sys.stdout.write(
        f"\nPhantom cohort: {len(cases)} held-out phantoms, {repeats} repeats of a 50/50 calibration/test split; "
        f"models: {models} ({len(model_set.members)} members), device {predictor.device}\n"
        f"{_table(summary, [c.name for c in grid], with_sd=True)}\n\n{real}\n\n"
        f"Tables: {workdir}/summary.csv, per_case.csv, real_ct.csv\n"
    )
    return 0
