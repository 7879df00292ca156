"""The inference benchmark's cases and its ``pooled`` vs ``per_pass`` comparison (see ``benchmarks.inference_grid``).

Cases: the phantom on the plans' grid (``small``), a clinical-size CT (``clinical``: a phantom rendered at half the
resolution, 150 x 256 x 256 at 5.0 x 1.8 x 1.8 mm, resampled to 300 x 512 x 512 at 2.5 x 0.9 x 0.9 mm, CT linear and
reference nearest; rendering it directly at full size would take minutes and ~16 GB), and the demo's real CT with
TotalSegmentator's spleen prediction as reference (as in :mod:`pipeline.demo`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from pipeline.demo import REAL_CT, TOTALSEGMENTATOR_SPLEEN
from pipeline.inference.engine import MemberPredictor
from pipeline.inference.grid import Configuration
from pipeline.inference.pooling import predict_grid
from pipeline.metrics import evaluate_case
from pipeline.phantoms.ct import SPLEEN, generate_phantom

LOG = logging.getLogger("benchmarks.inference_grid")
CLINICAL_SHAPE, CLINICAL_SPACING = (300, 512, 512), (2.5, 0.9, 0.9)
_RENDERED_SHAPE, _RENDERED_SPACING = (150, 256, 256), (5.0, 1.8, 1.8)
METRICS = ("dsc_mean_fg", "ece", "brier", "nll", "ueo_auc", "fp_tp_auc", "fn_tn_auc", "mean_entropy_roi",
           "roi_voxels", "error_voxels")


@dataclass(frozen=True)
class Case:
    """A CT (SimpleITK image) and its reference labels (Z, Y, X) uint8."""

    name: str
    image: sitk.Image
    labels: NDArray[np.uint8]


def _image(array: NDArray[Any], spacing_zyx: Sequence[float]) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    return image


def phantom_case(seed: int, size: str) -> Case:
    """The ``small`` phantom (the plans' grid) or the ``clinical`` CT made from a phantom (module description)."""
    if size == "small":
        phantom = generate_phantom(seed)
        return Case(f"phantom {phantom.ct.shape} at {phantom.spacing} mm", _image(phantom.ct, phantom.spacing),
                    phantom.labels)
    start = time.perf_counter()
    phantom = generate_phantom(seed, _RENDERED_SHAPE, _RENDERED_SPACING)
    rendered_ct, rendered_labels = _image(phantom.ct, phantom.spacing), _image(phantom.labels, phantom.spacing)
    del phantom
    spacing_xyz = tuple(reversed(CLINICAL_SPACING))
    origin = tuple(o - (coarse - fine) / 2 for o, coarse, fine in
                   zip(rendered_ct.GetOrigin(), rendered_ct.GetSpacing(), spacing_xyz, strict=True))
    size_xyz = tuple(reversed(CLINICAL_SHAPE))

    def resampled(image: sitk.Image, interpolator: int, outside: int) -> NDArray[Any]:
        return sitk.GetArrayFromImage(sitk.Resample(image, size_xyz, sitk.Transform(), interpolator, origin,
                                                    spacing_xyz, image.GetDirection(), outside, image.GetPixelID()))

    ct = resampled(rendered_ct, sitk.sitkLinear, -1000)
    labels = resampled(rendered_labels, sitk.sitkNearestNeighbor, 0).astype(np.uint8)
    LOG.info("clinical CT %s at %s mm made in %.1f s", ct.shape, CLINICAL_SPACING, time.perf_counter() - start)
    return Case(f"clinical CT {ct.shape} at {CLINICAL_SPACING} mm (phantom {seed}, resampled)",
                _image(ct, CLINICAL_SPACING), labels)


def real_case(shared: Path) -> Case | None:
    """The demo's real CT with the spleen of TotalSegmentator's prediction as reference; None when it is absent."""
    ct, segmentation = (shared / part for part in REAL_CT)
    if not ct.is_file() or not segmentation.is_file():
        LOG.warning("real CT skipped: %s not found", ct)
        return None
    labels = (sitk.GetArrayFromImage(sitk.ReadImage(str(segmentation))) == TOTALSEGMENTATOR_SPLEEN) * SPLEEN
    image = sitk.ReadImage(str(ct))
    return Case(f"real CT {ct.name} {sitk.GetArrayViewFromImage(image).shape} at "
                f"{tuple(reversed(image.GetSpacing()))} mm", image, labels.astype(np.uint8))


def _metrics(probs: NDArray[np.float32], case: Case) -> dict[str, Any]:
    metrics = evaluate_case(probs, case.labels, tuple(reversed(case.image.GetSpacing()))).metrics
    values: dict[str, Any] = {"dsc": [round(float(d), 4) for d in metrics.dsc]}
    values.update({name: float(getattr(metrics, name)) for name in METRICS})
    return values


def compare_mappings(predictor: MemberPredictor, case: Case, configurations: Sequence[Configuration]
                     ) -> dict[str, Any]:
    """``pooled`` against ``per_pass`` for the uncalibrated ``configurations`` on one case: per configuration the
    largest |Δp|, the argmax agreement and every metric of ``evaluate_case`` under each mapping, and the time of
    each whole run (``per_pass`` holds its pools on the CT grid: one map per configuration)."""
    chosen = [c for c in configurations if not c.temperature_scaling]
    start = time.perf_counter()
    per_pass = dict(predict_grid(predictor, case.image, chosen, grid_mapping="per_pass"))
    per_pass_s = time.perf_counter() - start
    rows: dict[str, Any] = {}
    start = time.perf_counter()
    for name, probs in predict_grid(predictor, case.image, chosen):
        other = per_pass.pop(name)
        rows[name] = {
            "max_abs_difference": float(np.abs(probs - other).max()),
            "argmax_agreement": float((probs.argmax(0) == other.argmax(0)).mean()),
            "pooled": _metrics(probs, case),
            "per_pass": _metrics(other, case),
        }
        del probs, other
    return {"case": case.name, "per_pass_seconds": per_pass_s, "pooled_and_metrics_seconds":
            time.perf_counter() - start, "configurations": rows}


def format_comparison(comparison: dict[str, Any]) -> str:
    """The comparison as text: one line per configuration and mapping."""
    lines = [f"  pooled vs per_pass on {comparison['case']} (per_pass run {comparison['per_pass_seconds']:.1f} s):"]
    for name, row in comparison["configurations"].items():
        lines.append(f"    {name:8s} max|dp| {row['max_abs_difference']:.3f}  argmax agreement "
                     f"{100 * row['argmax_agreement']:.3f} %")
        for mapping in ("pooled", "per_pass"):
            values = row[mapping]
            lines.append(f"      {mapping:8s} DSC {values['dsc']} " + " ".join(
                f"{key} {values[key]:.4g}" for key in METRICS))
    return "\n".join(lines)
