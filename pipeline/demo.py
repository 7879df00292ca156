"""The demo on the embedded default: a synthetic cohort, temperature scaling on a repeated hold-out, a summary.

At this stage the demo exercises the metric engine on synthetic probability maps (no network yet): it writes the
cases as .npy files, fits T per repeat on calibration cases, evaluates Base and Base+TS on the test cases, prints the
cohort table (mean ± SD over repeats) and a paired comparison, and writes one case's JSON through the CLI's path.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.metrics.cohort import paired_comparison, summarise_repeats
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.suite import calibration_voxels, evaluate_case
from pipeline.metrics.temperature import fit_temperature
from pipeline.synthetic import synthetic_case

log = logging.getLogger(__name__)

N_CASES = 8
N_REPEATS = 3
N_CALIBRATION = 2
SHAPE = (64, 96, 96)
SPACING = (5.0, 4.0, 4.0)
METRICS = ("dsc_mean_fg", "ece", "brier", "ueo_auc", "fp_tp_auc", "fn_tn_auc")


def _write_cases(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for seed in range(N_CASES):
        case = synthetic_case(SHAPE, SPACING, seed=seed)
        name = f"synthetic_{seed:03d}"
        np.save(folder / f"{name}_probs.npy", case.probs)
        np.save(folder / f"{name}_labels.npy", case.labels)
        names.append(name)
    return names


def _load(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    return np.load(folder / f"{name}_probs.npy"), np.load(folder / f"{name}_labels.npy")


def _rows(folder: Path, names: list[str], settings: MetricSettings) -> pd.DataFrame:
    rows = []
    for repeat in range(N_REPEATS):
        order = np.random.default_rng(repeat).permutation(len(names))
        calibration = [names[i] for i in order[:N_CALIBRATION]]
        test = [names[i] for i in order[N_CALIBRATION:]]
        pairs = [calibration_voxels(*_load(folder, n), SPACING, settings) for n in calibration]
        fit = fit_temperature(
            np.concatenate([p for p, _ in pairs], axis=1), np.concatenate([g for _, g in pairs]), settings
        )
        log.info(
            "repeat %d: T = %.3f (calibration NLL %.4f -> %.4f)", repeat, fit.temperature, fit.nll_before, fit.nll_after
        )
        for name in test:
            probs, labels = _load(folder, name)
            for configuration, temperature in (("Base", None), ("Base+TS", fit.temperature)):
                metrics = evaluate_case(probs, labels, SPACING, settings, temperature).metrics
                row = {"repeat": repeat, "case": name, "configuration": configuration}
                rows.append(row | {m: getattr(metrics, m) for m in METRICS})
    return pd.DataFrame(rows)


def _table(summary: pd.DataFrame) -> str:
    shown = pd.DataFrame({"configuration": summary["configuration"]})
    for metric in METRICS:
        pairs = zip(summary[f"{metric}_mean"], summary[f"{metric}_sd"], strict=True)
        shown[metric] = [f"{m:.3f} ± {s:.3f}" for m, s in pairs]
    shown["repeats"] = summary["n_repeats"]
    shown["case rows"] = summary["n_cases"]
    return shown.to_string(index=False)


def run_demo(workdir: Path) -> int:
    """Run the demo in ``workdir``; returns the exit code."""
    settings = MetricSettings()
    cases = workdir / "cases"
    names = _write_cases(cases)
    log.info("wrote %d synthetic cases to %s", len(names), cases)
    frame = _rows(cases, names, settings)
    frame.to_csv(workdir / "per_case.csv", index=False)
    summary = summarise_repeats(frame, METRICS)
    base = frame[frame.configuration == "Base"].sort_values(["repeat", "case"])
    scaled = frame[frame.configuration == "Base+TS"].sort_values(["repeat", "case"])
    comparison = paired_comparison(scaled["ece"].to_numpy(), base["ece"].to_numpy())
    probs, labels = _load(cases, names[0])
    example = evaluate_case(probs, labels, SPACING, settings).metrics.to_dict()
    (workdir / f"{names[0]}.json").write_text(json.dumps(example, indent=2), encoding="utf-8")
    sys.stdout.write(
        f"\nSynthetic cohort: {len(names)} cases, {N_REPEATS} repeats ({N_CALIBRATION} calibration cases each)\n"
        f"{_table(summary)}\n\n"
        f"ECE, Base+TS minus Base over {comparison.n} paired case rows (a case can recur across repeats): "
        f"{comparison.mean_difference:+.4f} (95% bootstrap CI {comparison.ci_low:+.4f} to {comparison.ci_high:+.4f}, "
        f"Wilcoxon p = {comparison.wilcoxon_p:.3g})\n"
        f"Per-case rows: {workdir / 'per_case.csv'}; one case's full JSON: {workdir / (names[0] + '.json')}\n"
        f"Evaluate your own maps: python -m pipeline evaluate --probs P.npy --reference L.npy --spacing Z,Y,X\n"
    )
    return 0
