"""Benchmark of the metric engine: cost of ``evaluate_case`` against one streaming pass and against the peers.

Run::

    python -m benchmarks.metric_suite [--shapes small large] [--repeats 3] [--json OUT] [--strict]

Per synthetic case (``pipeline.phantoms.probabilities``) it measures, in one process:

(a) one streaming pass over the probability map, ``np.sum(probs)`` (best of several repeats);
(b) the full suite, ``evaluate_case`` with default settings, and again with ``maps_budget=0.02`` (best of a few);
(c) the same numbers composed from the libraries a user would reach for, on the same voxels, each component
    timed: NumPy argmax, SciPy's Euclidean distance transform on the whole volume for the 15 mm ROI, SciPy entropy,
    torchmetrics ECE, scikit-learn Brier and AUROC, a 51-budget UEO loop of ``np.quantile`` and MedPy's Dice.

It reports (b) in streaming passes, the speed-up (c)/(b), the agreement of the peer numbers with ours, and the peak
extra memory of the suite (the larger of tracemalloc's peak and the resident set's high-water mark) as a multiple
of the probability array, each against its target. Progress goes to stderr; the table to stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from benchmarks.memory import reset_peak_resident, status_kib
from pipeline.metrics.results import CaseMetrics
from pipeline.metrics.review_budget import DEFAULT_FRACTION
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.suite import evaluate_case
from pipeline.nnunet.compat import ensure_torchvision_importable
from pipeline.phantoms.probabilities import synthetic_case

LOG = logging.getLogger("benchmarks.metric_suite")
T = TypeVar("T")

TARGET_PASSES = 15.0
TARGET_SPEEDUP = 50.0
TARGET_MEMORY = 1.0
MAPS_BUDGET = DEFAULT_FRACTION
PASS_REPEATS = 7
DEFAULT_SPACING = (2.0, 1.2, 1.2)


@dataclass(frozen=True)
class CaseSpec:
    """One benchmark case: a name, the spatial shape (Z, Y, X), the spacing (z, y, x) in mm and the seed."""

    name: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    seed: int


PRESETS: dict[str, CaseSpec] = {
    "small": CaseSpec("small", (160, 256, 256), (2.0, 1.2, 1.2), seed=1),
    "large": CaseSpec("large", (300, 512, 512), (2.5, 0.9, 0.9), seed=2),
}


@dataclass
class PeerResult:
    """The peer composition's numbers and the seconds of each component (in the order they ran)."""

    seconds: dict[str, float] = field(default_factory=dict)
    ece: float = math.nan
    brier: float = math.nan
    fp_tp_auc: float = math.nan
    fn_tn_auc: float = math.nan
    ueo_auc: float = math.nan
    dsc: tuple[float, ...] = ()

    @property
    def total(self) -> float:
        """Seconds of all components together."""
        return sum(self.seconds.values())


@dataclass(frozen=True)
class CaseReport:
    """Everything measured on one case; seconds are wall-clock, memory in bytes."""

    spec: CaseSpec
    probs_bytes: int
    roi_voxels: int
    error_voxels: int
    generation_s: float
    pass_s: float
    suite_s: float
    suite_maps_s: float
    peak_bytes: int
    peak_maps_bytes: int
    peers: PeerResult
    ours: dict[str, float]
    agreement: dict[str, float]

    @property
    def passes(self) -> float:
        """(b) in streaming passes, defaults."""
        return self.suite_s / self.pass_s

    @property
    def passes_maps(self) -> float:
        """(b) in streaming passes, with maps."""
        return self.suite_maps_s / self.pass_s

    @property
    def speedup(self) -> float:
        """(c) / (b): how many times faster the suite is than the peer composition."""
        return self.peers.total / self.suite_s

    def targets(self) -> list[tuple[str, float, bool]]:
        """(description, measured value, met) for each target."""
        memory = self.peak_bytes / self.probs_bytes
        memory_maps = self.peak_maps_bytes / self.probs_bytes
        passes = f"suite <= {TARGET_PASSES:g} streaming passes"
        return [
            (f"{passes} (defaults)", self.passes, self.passes <= TARGET_PASSES),
            (f"{passes} (maps on)", self.passes_maps, self.passes_maps <= TARGET_PASSES),
            (f"peer composition / suite >= {TARGET_SPEEDUP:g}x", self.speedup, self.speedup >= TARGET_SPEEDUP),
            (f"peak extra memory <= {TARGET_MEMORY:g}x probs (defaults)", memory, memory <= TARGET_MEMORY),
            (f"peak extra memory <= {TARGET_MEMORY:g}x probs (maps on)", memory_maps, memory_maps <= TARGET_MEMORY),
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (NaN written as None)."""
        return _json_safe(
            {
                "case": asdict(self.spec),
                "probs_bytes": self.probs_bytes,
                "roi_voxels": self.roi_voxels,
                "error_voxels": self.error_voxels,
                "seconds": {
                    "generation": self.generation_s,
                    "streaming_pass": self.pass_s,
                    "suite_defaults": self.suite_s,
                    "suite_maps": self.suite_maps_s,
                    "peers_total": self.peers.total,
                    "peers": dict(self.peers.seconds),
                },
                "streaming_passes": {"suite_defaults": self.passes, "suite_maps": self.passes_maps},
                "speedup_vs_peers": self.speedup,
                "peak_extra_bytes": {"suite_defaults": self.peak_bytes, "suite_maps": self.peak_maps_bytes},
                "peak_extra_x_probs": {
                    "suite_defaults": self.peak_bytes / self.probs_bytes,
                    "suite_maps": self.peak_maps_bytes / self.probs_bytes,
                },
                "ours": self.ours,
                "peers_values": {
                    "ece": self.peers.ece,
                    "brier": self.peers.brier,
                    "fp_tp_auc": self.peers.fp_tp_auc,
                    "fn_tn_auc": self.peers.fn_tn_auc,
                    "ueo_auc": self.peers.ueo_auc,
                    "dsc": list(self.peers.dsc),
                },
                "agreement_abs_diff": self.agreement,
                "targets": [{"target": name, "value": value, "met": met} for name, value, met in self.targets()],
            }
        )


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------- measurement


def best_of(run: Callable[[], T], repeats: int) -> tuple[float, T]:
    """The smallest wall-clock seconds of ``repeats`` calls of ``run``, and the last call's result.

    Each discarded result is freed before the next call, so two results never coexist.
    """
    seconds: list[float] = []

    def timed() -> T:
        gc.collect()
        start = time.perf_counter()
        out = run()
        seconds.append(time.perf_counter() - start)
        return out

    for _ in range(max(1, repeats) - 1):
        timed()
    result = timed()
    return min(seconds), result


def peak_extra(run: Callable[[], object]) -> int:
    """Peak extra bytes of ``run``: the larger of two views, since each misses something.

    tracemalloc sees every NumPy allocation but not the compiled kernels' (numba's own allocator); the resident
    set's high-water mark (VmHWM, reset through /proc/self/clear_refs) sees both but can miss heap memory reused
    from earlier frees. Linux only.
    """
    gc.collect()
    resident_before = reset_peak_resident()
    tracemalloc.start()
    try:
        run()
        traced = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    resident = (status_kib("VmHWM") - resident_before) * 1024
    return max(traced, resident)


class _Stopwatch:
    """Times named components in sequence: ``with watch("name"): ...`` adds the seconds under that name."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds
        self._name = ""
        self._start = 0.0

    def __call__(self, name: str) -> _Stopwatch:
        self._name = name
        return self

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        self.seconds[self._name] = self.seconds.get(self._name, 0.0) + time.perf_counter() - self._start
        LOG.info("  peer %-34s %8.3f s", self._name, self.seconds[self._name])


# ---------------------------------------------------------------------------------------------- the peers


def _auroc_or_nan(positive: NDArray[np.bool_], scores: NDArray[np.floating]) -> float:
    from sklearn.metrics import roc_auc_score

    if positive.size == 0 or positive.all() or not positive.any():
        return math.nan
    return float(roc_auc_score(positive, scores))


def _ueo_auc_by_quantile(
    entropy: NDArray[np.floating], errors: NDArray[np.bool_], budgets: NDArray[np.float64]
) -> float:
    """UEO-AUC the way a user would write it: per budget, threshold the ROI entropy at its (1 - b) quantile."""
    n_errors = int(np.count_nonzero(errors))
    ueo = np.zeros(budgets.size)
    for i, budget in enumerate(budgets):
        if budget == 0:
            continue
        threshold = np.quantile(entropy, 1.0 - budget)
        flagged = entropy > threshold
        n_flagged = int(np.count_nonzero(flagged))
        if n_flagged + n_errors:
            ueo[i] = 2.0 * np.count_nonzero(flagged & errors) / (n_flagged + n_errors)
    return float(np.trapezoid(ueo, budgets) / (budgets[-1] - budgets[0]))


def run_peers(
    probs: NDArray[np.float32], labels: NDArray[np.uint8], spacing: Sequence[float], settings: MetricSettings
) -> PeerResult:
    """The per-case numbers of the spec composed from NumPy, SciPy, torchmetrics, scikit-learn and MedPy."""
    import torch
    from medpy.metric.binary import dc
    from scipy.ndimage import distance_transform_edt
    from scipy.stats import entropy as scipy_entropy
    from sklearn.metrics import brier_score_loss
    ensure_torchvision_importable()  # torchmetrics imports torchvision, a CUDA build beside the CPU torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    n_classes = probs.shape[0]
    result = PeerResult()
    watch = _Stopwatch(result.seconds)
    with watch("argmax (np.argmax)"):
        prediction = np.argmax(probs, axis=0)
    with watch("ROI (distance_transform_edt, full)"):
        distance = distance_transform_edt(~((prediction > 0) | (labels > 0)), sampling=spacing)
        roi = distance <= settings.roi_radius_mm
        del distance
    with watch("entropy (scipy.stats.entropy, full)"):
        entropy = scipy_entropy(probs, axis=0) / np.log(n_classes)
    with watch("gather ROI voxels (boolean index)"):
        p_roi = np.ascontiguousarray(probs[:, roi].T)
        g_roi = labels[roi].astype(np.int64)
        pred_roi = prediction[roi]
        h_roi = entropy[roi]
        del entropy, roi
    with watch("ECE (torchmetrics)"):
        result.ece = float(
            multiclass_calibration_error(
                torch.from_numpy(p_roi), torch.from_numpy(g_roi), num_classes=n_classes, n_bins=settings.ece_bins,
                norm="l1",
            )
        )
    with watch("Brier (sklearn brier_score_loss)"):
        result.brier = brier_score_loss(g_roi, p_roi, labels=list(range(n_classes)))
    del p_roi
    errors = pred_roi != g_roi
    with watch("AUCs (sklearn roc_auc_score x2)"):
        foreground = pred_roi > 0
        result.fp_tp_auc = _auroc_or_nan(errors[foreground], h_roi[foreground])
        result.fn_tn_auc = _auroc_or_nan(errors[~foreground], h_roi[~foreground])
    with watch(f"UEO ({settings.budget_points} x np.quantile)"):
        budgets = np.array([float(b) for b in settings.budget_fractions()])
        result.ueo_auc = _ueo_auc_by_quantile(h_roi, errors, budgets)
    with watch("DSC (MedPy dc per class)"):
        result.dsc = tuple(float(dc(prediction == c, labels == c)) for c in range(n_classes))
    return result


# ---------------------------------------------------------------------------------------------- one case


def _ours(metrics: CaseMetrics) -> dict[str, float]:
    return {
        "ece": metrics.ece,
        "brier": metrics.brier,
        "fp_tp_auc": metrics.fp_tp_auc,
        "fn_tn_auc": metrics.fn_tn_auc,
        "ueo_auc": metrics.ueo_auc,
        **{f"dsc_{c}": d for c, d in enumerate(metrics.dsc)},
    }


def _agreement(ours: CaseMetrics, peers: PeerResult) -> dict[str, float]:
    return {
        "ece": abs(ours.ece - peers.ece),
        "brier": abs(ours.brier - peers.brier),
        "fp_tp_auc": abs(ours.fp_tp_auc - peers.fp_tp_auc),
        "fn_tn_auc": abs(ours.fn_tn_auc - peers.fn_tn_auc),
        "dsc": max(abs(a - b) for a, b in zip(ours.dsc, peers.dsc, strict=True)),
        "ueo_auc": abs(ours.ueo_auc - peers.ueo_auc),
    }


def run_case(spec: CaseSpec, repeats: int) -> CaseReport:
    """Generate one case, measure (a), (b), (c) and the suite's peak memory; free the case before returning."""
    settings = MetricSettings()
    LOG.info("case %s: generating %s at %s mm (seed %d)", spec.name, spec.shape, spec.spacing, spec.seed)
    start = time.perf_counter()
    case = synthetic_case(spec.shape, spec.spacing, seed=spec.seed)
    generation_s = time.perf_counter() - start
    probs, labels, spacing = case.probs, case.labels, case.spacing
    del case

    LOG.info("case %s: (a) streaming pass x%d", spec.name, PASS_REPEATS)
    pass_s, _ = best_of(lambda: np.sum(probs), PASS_REPEATS)
    LOG.info("case %s: (b) evaluate_case x%d, defaults", spec.name, repeats)
    suite_s, result = best_of(lambda: evaluate_case(probs, labels, spacing, settings), repeats)
    LOG.info("case %s: (b) evaluate_case x%d, maps_budget=%g", spec.name, repeats, MAPS_BUDGET)
    suite_maps_s, _ = best_of(lambda: evaluate_case(probs, labels, spacing, settings, maps_budget=MAPS_BUDGET), repeats)
    gc.collect()
    LOG.info("case %s: peak memory (tracemalloc and resident high-water mark)", spec.name)
    peak = peak_extra(lambda: evaluate_case(probs, labels, spacing, settings))
    peak_maps = peak_extra(lambda: evaluate_case(probs, labels, spacing, settings, maps_budget=MAPS_BUDGET))
    LOG.info("case %s: (c) peer composition", spec.name)
    peers = run_peers(probs, labels, spacing, settings)
    metrics = result.metrics
    report = CaseReport(
        spec=spec,
        probs_bytes=int(probs.nbytes),
        roi_voxels=metrics.roi_voxels,
        error_voxels=metrics.error_voxels,
        generation_s=generation_s,
        pass_s=pass_s,
        suite_s=suite_s,
        suite_maps_s=suite_maps_s,
        peak_bytes=peak,
        peak_maps_bytes=peak_maps,
        peers=peers,
        ours=_ours(metrics),
        agreement=_agreement(metrics, peers),
    )
    return report


# ---------------------------------------------------------------------------------------------- the table


def _verdict(met: bool) -> str:
    return "PASS" if met else "FAIL"


def format_report(report: CaseReport) -> list[str]:
    """The printed table of one case, one string per line."""
    spec, mb = report.spec, 1e-6
    n_voxels = math.prod(spec.shape)
    lines = [
        "",
        f"== case {spec.name}: probs (3, {', '.join(map(str, spec.shape))}) float32 = "
        f"{report.probs_bytes * mb:,.0f} MB, spacing {spec.spacing} mm, seed {spec.seed} ==",
        f"ROI {report.roi_voxels:,} voxels ({100.0 * report.roi_voxels / n_voxels:.2f} % of the volume), "
        f"errors in ROI {report.error_voxels:,} voxels; synthetic generation {report.generation_s:.2f} s",
        "",
        f"{'timing':<46}{'seconds':>10}{'streaming passes':>18}",
    ]
    rows = [
        ("(a) one streaming pass: np.sum(probs)", report.pass_s),
        ("(b) evaluate_case, defaults", report.suite_s),
        (f"(b) evaluate_case, maps_budget={MAPS_BUDGET:g}", report.suite_maps_s),
        ("(c) peer composition, total", report.peers.total),
    ]
    lines += [f"  {name:<44}{seconds:>10.3f}{seconds / report.pass_s:>18.1f}" for name, seconds in rows]
    lines.append(f"  {'speed-up (c)/(b), defaults':<44}{report.speedup:>9.1f}x")
    lines += ["", f"{'(c) peer components':<46}{'seconds':>10}{'share':>10}"]
    lines += [
        f"  {name:<44}{seconds:>10.3f}{100.0 * seconds / report.peers.total:>9.1f}%"
        for name, seconds in report.peers.seconds.items()
    ]
    lines += ["", f"{'agreement, peers vs ours':<46}{'peers':>12}{'ours':>12}{'|diff|':>12}"]
    values = [
        ("ECE (torchmetrics: float32 bin sums)", report.peers.ece, report.ours["ece"], "ece"),
        ("Brier (sum over classes)", report.peers.brier, report.ours["brier"], "brier"),
        ("FP-TP AUC", report.peers.fp_tp_auc, report.ours["fp_tp_auc"], "fp_tp_auc"),
        ("FN-TN AUC", report.peers.fn_tn_auc, report.ours["fn_tn_auc"], "fn_tn_auc"),
        ("UEO-AUC (by quantile: ties differ)", report.peers.ueo_auc, report.ours["ueo_auc"], "ueo_auc"),
    ]
    lines += [
        f"  {name:<44}{peer:>12.6f}{ours:>12.6f}{report.agreement[key]:>12.2e}" for name, peer, ours, key in values
    ]
    dsc_peers = " ".join(f"{d:.4f}" for d in report.peers.dsc)
    lines.append(f"  {'DSC per class, max |diff| (peers: ' + dsc_peers + ')':<68}{report.agreement['dsc']:>12.2e}")
    lines += ["", f"{'peak extra memory (max of tracemalloc, RSS)':<46}{'MB':>10}{'x probs':>10}"]
    for name, peak in (("defaults", report.peak_bytes), (f"maps_budget={MAPS_BUDGET:g}", report.peak_maps_bytes)):
        lines.append(f"  {name:<44}{peak * mb:>10,.0f}{peak / report.probs_bytes:>10.2f}")
    lines += ["", "targets"]
    lines += [f"  {name:<56}{value:>10.2f}  {_verdict(met)}" for name, value, met in report.targets()]
    return lines


# ---------------------------------------------------------------------------------------------- command line


def parse_case(text: str) -> CaseSpec:
    """A preset name (``small``, ``large``) or ``ZxYxX`` with an optional ``@z,y,x`` spacing in mm."""
    if text in PRESETS:
        return PRESETS[text]
    size, _, spacing_text = text.partition("@")
    try:
        shape = tuple(int(n) for n in size.lower().split("x"))
        spacing = tuple(float(s) for s in spacing_text.split(",")) if spacing_text else DEFAULT_SPACING
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a case: {text!r} ({error})") from error
    if len(shape) != 3 or len(spacing) != 3 or min(shape) < 1 or min(spacing) <= 0:
        raise argparse.ArgumentTypeError(f"expected a preset {sorted(PRESETS)} or ZxYxX[@z,y,x], got {text!r}")
    return CaseSpec(text, (shape[0], shape[1], shape[2]), (spacing[0], spacing[1], spacing[2]), seed=0)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metric_suite", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--shapes",
        nargs="+",
        type=parse_case,
        default=[PRESETS["small"], PRESETS["large"]],
        metavar="CASE",
        help="cases to run: 'small' (3,160,256,256), 'large' (3,300,512,512) or ZxYxX[@z,y,x mm]; default both",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of evaluate_case (best is kept)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON to OUT")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    return parser.parse_args(argv)


def _environment() -> dict[str, Any]:
    import scipy
    import sklearn
    import torch

    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "scikit-learn": sklearn.__version__,
        "cpus": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen cases and print one table per case; with ``--strict``, return 1 when a target is missed."""
    arguments = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    environment = _environment()
    out = sys.stdout
    out.write("metric suite benchmark: " + ", ".join(f"{k} {v}" for k, v in environment.items()) + "\n")
    reports = []
    for spec in arguments.shapes:
        report = run_case(spec, arguments.repeats)
        gc.collect()
        out.write("\n".join(format_report(report)) + "\n")
        out.flush()
        reports.append(report)
    if arguments.json is not None:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"environment": environment, "cases": [r.to_dict() for r in reports]}
        arguments.json.write_text(json.dumps(payload, indent=2) + "\n")
        LOG.info("wrote %s", arguments.json)
    all_met = all(met for report in reports for _, _, met in report.targets())
    return 1 if arguments.strict and not all_met else 0


if __name__ == "__main__":
    sys.exit(main())
