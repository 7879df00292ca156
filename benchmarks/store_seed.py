"""A realistic results store written directly through the ORM and the artifact store (no inference).

``seed_store`` fills a fresh, migrated database with what the nightly batch and the protocol stage would have
written: a model set with its configuration grid, a cohort of phantom patients under a repeated hold-out protocol
(per-repeat and deployed temperature fits), a real CT outside the protocol and a prospective case without a
reference, runs (one with a failed case), per-case results with structures, 51-point curves and reliability bins,
and small voxel maps (CT, reference, probabilities, entropy, prediction, error, top-budget mask) for a few cases.
Metric values follow plausible trends (ensembles and TS calibrate better; harder cases do worse) from a seeded
generator; each result gets a ``metric_values`` row per case-level metric of the registry (NULL for a metric the
generator does not know, and for the reference metrics of a case without reference). Ids are assigned here, so the
store must be empty. Used by ``benchmarks/dashboard.py`` and the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter, zoom
from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from pipeline.metrics import registry
from pipeline.metrics.calibration import normalized_entropy
from pipeline.metrics.regions import find_regions
from pipeline.metrics.review_budget import DEFAULT_CAP, flagged_count, top_budget_indices
from pipeline.metrics.temperature import apply_temperature
from pipeline.settings import ReviewSettings
from pipeline.store.artifacts import ArtifactStore, safe_name
from pipeline.store.database import make_engine, session_factory
from pipeline.store.schema import (
    WHOLE_CASE,
    Artifact,
    CaseFailure,
    CaseResult,
    Configuration,
    CurvePoint,
    Image,
    Member,
    MetricValue,
    ModelSet,
    Patient,
    Processing,
    Protocol,
    ReliabilityBin,
    Run,
    SplitRole,
    StructureResult,
    TemperatureFit,
)
from pipeline.store.stored_regions import ResultRegions, regions_row

LABELS = ("background", "lymph_nodes", "spleen")
FULL_GRID = tuple(f"{base}{ts}" for base in ("Base", "TTA", "DE", "DE+TTA", "CE", "CE+TTA") for ts in ("", "+TS"))
BUDGETS = np.round(np.linspace(0.0, 0.05, 51), 6)
ECE_BINS = 15
IDENTITY = "5eed0000cafe4d1e"
START = datetime(2026, 11, 2, 22, 0, tzinfo=UTC)


@dataclass(frozen=True)
class SeedPlan:
    """What to write. ``map_cases`` first phantoms (and the real CT) get voxel maps of ``map_configurations``."""

    patients: int = 6
    configurations: tuple[str, ...] = ("Base", "Base+TS", "DE", "DE+TS")
    repeats: int = 3
    map_cases: int = 2
    map_configurations: tuple[str, ...] | None = None  # None: every configuration
    region_configurations: tuple[str, ...] = ()  # of those, the ones whose review regions are stored, as the batch does
    map_variants: int = 0  # 0: each map case its own phantom; n: phantom map cases cycle through n computed map sets
    map_shape: tuple[int, int, int] = (24, 64, 64)  # (Z, Y, X)
    spacing_xyz: tuple[float, float, float] = (1.5, 1.5, 3.0)
    budget: float = 0.02
    extra_cases: bool = True  # a real CT outside the protocol and a prospective case without reference
    seed: int = 0


@dataclass
class Seeded:
    """What was written: case names, the protocol, configuration ids by name, the cases that have maps."""

    phantoms: list[str]
    protocol_id: int
    model_set_id: int
    configurations: dict[str, int]
    map_cases: list[str]
    test_roles: dict[int, list[str]] = field(default_factory=dict)


def _members(name: str) -> tuple[list[str], list[list[int]]]:
    """A configuration's members and mirror views (Base, TTA, DE, DE+TTA, CE, CE+TTA, each ± TS)."""
    family = name.removesuffix("+TS").removesuffix("+TTA").replace("TTA", "Base")
    members = {"Base": ["fold_0"], "DE": [f"fold_{i}" for i in range(5)], "CE": ["ce_cycle_1", "ce_cycle_2"]}[family]
    views = [[], [0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2]] if "TTA" in name else [[]]
    return members, views


def _quality(name: str) -> float:
    """How good a configuration's uncertainty is (0..1): ensembles and TTA help."""
    return 0.2 + 0.35 * ("DE" in name) + 0.25 * ("CE" in name) + 0.15 * ("TTA" in name)


class _Writer:
    """Rows with ids assigned in order, inserted in bulk per table."""

    def __init__(self) -> None:
        self.rows: dict[type, list[dict[str, Any]]] = {}
        self.ids: dict[type, int] = {}

    def add(self, table: type, **values: Any) -> int:
        if "id" in table.__table__.columns and "id" not in values:
            self.ids[table] = self.ids.get(table, 0) + 1
            values["id"] = self.ids[table]
        self.rows.setdefault(table, []).append(values)
        return int(values.get("id", 0))

    def flush(self, session: Session) -> None:
        order = (Patient, Image, ModelSet, Member, Configuration, Protocol, SplitRole, TemperatureFit, Run,
                 CaseFailure, Processing, CaseResult, MetricValue, StructureResult, CurvePoint, ReliabilityBin,
                 Artifact, ResultRegions)
        for table in order:
            rows = self.rows.pop(table, [])
            for start in range(0, len(rows), 20_000):
                session.execute(insert(table), rows[start:start + 20_000])


def _scalars(rng: np.random.Generator, name: str, difficulty: float, roi: int) -> dict[str, Any]:
    quality, ts = _quality(name), name.endswith("+TS")
    noise = rng.normal(0, 1, 8)
    ece = (0.09 + 0.06 * difficulty - 0.05 * quality) * (0.55 if ts else 1.0) + 0.006 * noise[0]
    error_rate = 0.05 + 0.08 * difficulty - 0.02 * quality + 0.004 * noise[1]
    return {
        "ece": max(0.004, ece), "brier": max(0.02, 0.09 + 0.12 * difficulty - 0.03 * quality + 0.01 * noise[2]),
        "nll": max(0.05, 0.35 + 0.4 * difficulty - 0.1 * quality - (0.06 if ts else 0) + 0.03 * noise[3]),
        "fp_tp_auc": float(np.clip(0.72 + 0.15 * quality - 0.05 * difficulty + 0.03 * noise[4], 0, 1)),
        "fn_tn_auc": float(np.clip(0.78 + 0.12 * quality - 0.04 * difficulty + 0.03 * noise[5], 0, 1)),
        "roi_voxels": roi, "error_voxels": int(np.clip(error_rate, 0.005, 0.5) * roi),
        "mean_entropy_roi": float(np.clip(0.12 + 0.1 * difficulty + 0.05 * quality + 0.01 * noise[6], 0, 1)),
        "tau": 0.008 + 0.012 * (1 - quality) + 0.004 * difficulty,
    }


def _curve(scalars: dict[str, Any], voxel_ml: float) -> tuple[list[dict[str, Any]], float]:
    """Flagged voxels catch errors with a precision that decays with the budget (steeper for worse uncertainty)."""
    roi, errors, tau = scalars["roi_voxels"], scalars["error_voxels"], scalars["tau"]
    rows, ueo = [], []
    for index, budget in enumerate(BUDGETS.tolist()):
        flagged = math.ceil(budget * roi)
        precision = 0.12 + (0.55 - 4 * tau) * math.exp(-budget / 0.02)
        caught = min(errors, flagged * precision)
        value = 2 * caught / (flagged + errors) if errors else 0.0
        ueo.append(value)
        rows.append({"budget_index": index, "budget": budget, "ueo": value, "recall": caught / errors if errors else 0,
                     "precision": caught / flagged if flagged else None, "flagged_ml": flagged * voxel_ml})
    return rows, float(np.mean(ueo))


def _bins(rng: np.random.Generator, roi: int, ece: float) -> list[dict[str, Any]]:
    weights = np.exp(np.linspace(-4, 0, ECE_BINS)) + rng.uniform(0, 0.01, ECE_BINS)
    counts = np.floor(weights / weights.sum() * roi).astype(int)
    rows = []
    for index, count in enumerate(counts.tolist()):
        centre = (index + 0.5) / ECE_BINS
        accuracy = float(np.clip(centre - ece * (1.4 - centre), 0, 1))
        rows.append({"group": 0, "bin": index, "count": count, "sum_confidence": count * centre,
                     "sum_correct": float(round(count * accuracy))})
    return rows


def _phantom(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[NDArray[np.int16], NDArray[np.uint8]]:
    """A CT-like volume (HU) with body, lungs, spine, spleen and lymph nodes, and its label map."""
    z, y, x = (np.linspace(-1, 1, n, dtype=np.float32) for n in shape)
    zz, yy, xx = z[:, None, None], y[None, :, None], x[None, None, :]
    ct = np.full(shape, -1000, np.float32)
    body = (xx / 0.85) ** 2 + (yy / 0.65) ** 2 <= 1
    ct[np.broadcast_to(body, shape)] = 30
    lungs = ((np.abs(xx) - 0.4) / 0.25) ** 2 + ((yy + 0.05) / 0.35) ** 2 + ((zz - 0.7) / 0.5) ** 2 <= 1
    ct[lungs] = -820
    spine = (xx / 0.1) ** 2 + ((yy - 0.45) / 0.1) ** 2 <= 1
    ct[np.broadcast_to(spine, shape)] = 650
    labels = np.zeros(shape, np.uint8)
    spleen = ((xx - 0.5) / 0.2) ** 2 + ((yy - 0.15) / 0.25) ** 2 + ((zz + 0.1) / 0.35) ** 2 <= 1
    labels[spleen] = 2
    for _ in range(5):
        cx, cy, cz = rng.uniform(-0.25, 0.25), rng.uniform(-0.1, 0.3), rng.uniform(-0.7, 0.5)
        node = ((xx - cx) / 0.07) ** 2 + ((yy - cy) / 0.07) ** 2 + ((zz - cz) / 0.18) ** 2 <= 1
        labels[node & (labels == 0)] = 1
    ct[labels == 2] = 55
    ct[labels == 1] = 35
    ct += rng.normal(0, 12, shape).astype(np.float32)
    return ct.astype(np.int16), labels


def _probabilities(rng: np.random.Generator, labels: NDArray[np.uint8], quality: float) -> NDArray[np.float32]:
    """Pooled class probabilities: the blurred reference, shifted by smooth noise (worse for lower quality)."""
    shape = labels.shape
    coarse = tuple(max(2, n // 8) for n in shape)
    logits = np.empty((len(LABELS), *shape), np.float32)
    for c in range(len(LABELS)):
        field_ = zoom(rng.normal(0, 1, coarse).astype(np.float32), [n / m for n, m in zip(shape, coarse, strict=True)],
                      order=1)[: shape[0], : shape[1], : shape[2]]
        logits[c] = 7 * gaussian_filter((labels == c).astype(np.float32), 1.2) + (1.6 - quality) * field_
    logits -= logits.max(axis=0, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=0, keepdims=True)
    return logits


def _result_maps(probs: NDArray[np.float32], labels: NDArray[np.uint8] | None, budget: float,
                 ) -> tuple[dict[str, NDArray[np.generic]], int, NDArray[np.intp]]:
    """The maps of one result, the size of its ROI (a box around the foreground) and its budget ranking up to the
    cap (:func:`~pipeline.metrics.review_budget.top_budget_indices` on the entropy as stored)."""
    prediction = probs.argmax(axis=0).astype(np.uint8)
    entropy = normalized_entropy(probs)
    foreground = prediction > 0 if labels is None else (prediction > 0) | (labels > 0)
    roi = np.zeros_like(foreground)
    if foreground.any():
        lo = [max(0, int(i.min()) - 3) for i in np.nonzero(foreground)]
        hi = [int(i.max()) + 4 for i in np.nonzero(foreground)]
        roi[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    stored = entropy.astype(np.float16)
    ranking = top_budget_indices(stored.astype(np.float32), np.flatnonzero(roi), max(budget, DEFAULT_CAP))
    mask = np.zeros(stored.size, np.uint8)
    mask[ranking[: flagged_count(budget, int(roi.sum()))]] = 1
    maps: dict[str, NDArray[np.generic]] = {"entropy": stored, "prediction": prediction,
                                            "budget_mask": mask.reshape(prediction.shape)}
    if labels is not None:
        maps["error"] = ((prediction != labels) & roi).astype(np.uint8)
    return maps, int(roi.sum()), ranking


def seed_store(url: str, root: Path, plan: SeedPlan = SeedPlan()) -> Seeded:
    """Write ``plan`` into the empty, migrated store at ``url`` with maps under ``root``, then ANALYZE it."""
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            seeded = _seed(session, ArtifactStore(root), plan)
            session.commit()
        with engine.connect() as connection:  # a store at rest has planner statistics (autovacuum's job live)
            connection.execute(text("ANALYZE"))
            connection.commit()
        return seeded
    finally:
        engine.dispose()


def _seed(session: Session, store: ArtifactStore, plan: SeedPlan) -> Seeded:
    rng = np.random.default_rng(plan.seed)
    w = _Writer()
    sx, sy, sz = plan.spacing_xyz
    voxel_ml = sx * sy * sz / 1000
    shape_zyx = plan.map_shape
    model_set = w.add(ModelSet, identity=IDENTITY, name="nnUNetTrainer__nnUNetPlans__3d_fullres", source="seed",
                      nnunet_configuration="3d_fullres", labels=list(LABELS), created_at=START)
    names = list(plan.configurations)
    member_names = sorted({m for n in names for m in _members(n)[0]})
    for member in member_names:
        w.add(Member, model_set_id=model_set, name=member, checkpoint=f"{member}/checkpoint_final.pth", sha256="0" * 64)
    configuration = {n: w.add(Configuration, model_set_id=model_set, name=n, position=i, members=_members(n)[0],
                              views=_members(n)[1], temperature_scaling=n.endswith("+TS")) for i, n in enumerate(names)}
    twins = {n: n.removesuffix("+TS") for n in names if n.endswith("+TS") and n.removesuffix("+TS") in names}
    phantoms = [f"phantom_{9000 + i}" for i in range(plan.patients)]
    cases: list[tuple[str, str, bool]] = [(n, "phantom", True) for n in phantoms]
    if plan.extra_cases:
        cases += [("totalseg_ct", "real", True), ("prospective_001", "clinical", False)]
    map_configs = set(plan.map_configurations or names)
    map_cases = phantoms[: plan.map_cases] + (["totalseg_ct"] if plan.extra_cases and plan.map_cases else [])
    runs = [w.add(Run, kind="run", status="succeeded", started_at=START, finished_at=START + timedelta(minutes=42),
                  host="qa-node", pid=4242, code_version="0.1.0+seed", model_set_id=model_set,
                  cases_total=len(cases), cases_done=len(cases), options={"budget": plan.budget})]
    runs.append(w.add(Run, kind="protocol", status="succeeded", started_at=START + timedelta(hours=1),
                      finished_at=START + timedelta(hours=1, minutes=5), host="qa-node", pid=4243,
                      code_version="0.1.0+seed", model_set_id=model_set, options={"repeats": plan.repeats}))
    failed = w.add(Run, kind="run", status="failed", started_at=START + timedelta(days=1),
                   finished_at=START + timedelta(days=1, minutes=3), host="qa-node", pid=5151,
                   code_version="0.1.0+seed", model_set_id=model_set, cases_total=3, cases_done=1,
                   cases_skipped=1, cases_failed=1, error_summary="1 case failed (load)", options={})
    w.add(CaseFailure, run_id=failed, case_name="phantom_broken", source="/data/cohort/images/phantom_broken.nii.gz",
          stage="load", reason="reference shape (40, 64, 64) differs from the CT's (48, 64, 64)",
          at=START + timedelta(days=1, minutes=2), worker="tcp://10.0.0.8:40123")
    protocol = w.add(Protocol, model_set_id=model_set, cohort="phantom", seed=0, repeats=plan.repeats,
                     test_fraction=0.5, calibration_fraction=None, created_at=START + timedelta(hours=1))
    images: dict[str, int] = {}
    processing: dict[str, int] = {}
    difficulty: dict[str, float] = {}
    for index, (name, cohort, has_reference) in enumerate(cases):
        patient = w.add(Patient, pseudonym=f"P{index:05d}", created_at=START)
        images[name] = w.add(
            Image, patient_id=patient, name=name, cohort=cohort, source_kind="nifti",
            source_path=f"/data/{cohort}/images/{name}.nii.gz",
            reference_path=f"/data/{cohort}/references/{name}.nii.gz" if has_reference else None,
            reference_note="TotalSegmentator prediction (spleen), not an expert contour" if cohort == "real" else None,
            size=[shape_zyx[2], shape_zyx[1], shape_zyx[0]], spacing=list(plan.spacing_xyz), origin=[-240.0, -240.0,
            -150.0], direction=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], content_hash=f"{index:064x}",
            reference_hash=f"{index + 1:064x}" if has_reference else None, created_at=START, updated_at=START)
        processing[name] = w.add(Processing, image_id=images[name], model_set_id=model_set, run_id=runs[0],
                                 input_hash=f"{index:064x}", code_version="0.1.0+seed", forward_passes=32,
                                 seconds_inference=30.0, seconds_metrics=0.4, seconds_storage=0.2,
                                 completed_at=START + timedelta(days=index % 3, minutes=index),
                                 worker=f"tcp://10.0.0.{7 + index % 2}:40123")
        difficulty[name] = float(rng.uniform(0, 1))
    test_roles: dict[int, list[str]] = {}
    fits: dict[tuple[str, int | None], tuple[int, float]] = {}
    for repeat in range(plan.repeats):
        order = rng.permutation(len(phantoms))
        tests = sorted(phantoms[i] for i in order[: len(phantoms) // 2])
        test_roles[repeat] = tests
        for name in phantoms:
            w.add(SplitRole, protocol_id=protocol, repeat=repeat, image_id=images[name],
                  role="test" if name in tests else "calibration")
    for name in names:
        if not name.endswith("+TS"):
            continue
        for repeat in [*range(plan.repeats), None]:
            temperature = float(1.35 + 0.3 * _quality(name) + rng.normal(0, 0.03))
            cal = phantoms if repeat is None else [p for p in phantoms if p not in test_roles[repeat]]
            fit = w.add(TemperatureFit, configuration_id=configuration[name], protocol_id=None if repeat is None
                        else protocol, repeat=repeat, temperature=temperature, nll_before=0.42, nll_after=0.35,
                        voxels=200_000, cases=cal, role="deployed" if repeat is None else "repeat",
                        created_at=START + timedelta(hours=1))
            fits[(name, repeat)] = (fit, temperature)
    maps_cache = _MapCache()
    volumes: dict[str, tuple[NDArray[np.int16], NDArray[np.uint8]]] = {}
    for name, cohort, has_reference in cases:
        variant = (f"variant-{map_cases.index(name) % plan.map_variants}"
                   if plan.map_variants and name in map_cases and cohort == "phantom" else name)
        if name in map_cases and variant not in volumes:
            volumes[variant] = _phantom(np.random.default_rng(images[name]), shape_zyx)
        volume = volumes.get(variant) if name in map_cases else None
        if volume is not None:
            _artifact(w, store, images[name], None, None, None, "ct", f"{safe_name(name)}/ct.zarr", volume[0])
            if has_reference:
                _artifact(w, store, images[name], None, None, None, "reference", f"{safe_name(name)}/reference.zarr",
                          volume[1])
        for config in names:
            ts = config.endswith("+TS")
            repeats: list[int | None] = [None]
            if ts and cohort == "phantom":
                repeats += [r for r in range(plan.repeats) if name in test_roles[r]]
            for repeat in repeats:
                fit_id, temperature = fits[(config, repeat)] if ts else (None, None)
                shift = 0.03 * repeat if repeat is not None else 0.0
                result = _result(w, rng, config, configuration[config], images[name], processing[name], fit_id,
                                 temperature, has_reference, difficulty[name] + shift, voxel_ml)
                if volume is not None and config in map_configs and repeat is None:
                    _maps(w, store, rng, plan, name, variant, config, twins, images[name], processing[name],
                          result, configuration, temperature, volume[1] if has_reference else None, volume[1],
                          maps_cache)
    w.flush(session)
    return Seeded(phantoms, protocol, model_set, configuration, map_cases, test_roles)


def _cost(config: str) -> dict[str, object]:
    """The cost columns of a result: its passes, seconds as a CPU would take them (0.5 s + 0.25 s per pass)."""
    members, views = _members(config)
    passes = len(members) * len(views)
    return {"forward_passes": passes, "seconds_inference": 0.5 + 0.25 * passes, "device": "cpu"}


def _result(w: _Writer, rng: np.random.Generator, config: str, configuration: int, image: int, processing: int,
            fit: int | None, temperature: float | None, has_reference: bool, difficulty: float, voxel_ml: float
            ) -> int:
    roi = int(180_000 * (0.8 + 0.4 * difficulty))
    scalars = _scalars(rng, config, difficulty, roi)
    curve, ueo_auc = _curve(scalars, voxel_ml)
    dsc = [0.99, float(np.clip(0.62 - 0.2 * difficulty + 0.02 * rng.normal(), 0, 1)),
           float(np.clip(0.91 - 0.12 * difficulty + 0.01 * rng.normal(), 0, 1))]
    generated = {"dsc_mean_fg": float(np.mean(dsc[1:])), "ece": scalars["ece"], "brier": scalars["brier"],
                 "nll": scalars["nll"], "ueo_auc": ueo_auc, "fp_tp_auc": scalars["fp_tp_auc"],
                 "fn_tn_auc": scalars["fn_tn_auc"], "mean_entropy_roi": scalars["mean_entropy_roi"]}
    result = w.add(CaseResult, processing_id=processing, image_id=image, configuration_id=configuration,
                   temperature_fit_id=fit, temperature=temperature, has_reference=has_reference, roi_voxels=roi,
                   error_voxels=scalars["error_voxels"] if has_reference else None, voxel_ml=voxel_ml, seconds=0.3,
                   **_cost(config))
    for metric in registry.case_metrics():
        value = generated.get(metric.name) if has_reference or not metric.needs_reference else None
        w.add(MetricValue, result_id=result, class_index=WHOLE_CASE, name=metric.name, value=value)
    for metric in registry.structure_metrics():
        whole = generated.get(metric.whole_case or "")
        if metric.table == "metric_values" and whole is not None:
            for index in range(1, len(LABELS)):
                value = _structure_value(metric, whole, index) if has_reference or not metric.needs_reference else None
                w.add(MetricValue, result_id=result, class_index=index, name=metric.name, value=value)
    for index, structure in enumerate(LABELS):
        volume = (3.0 if index == 1 else 180.0 if index == 2 else 9000.0) * (1 + 0.1 * difficulty)
        w.add(StructureResult, result_id=result, class_index=index, structure=structure,
              dsc=dsc[index] if has_reference else None, predicted_ml=volume * (1 + 0.05 * rng.normal()),
              reference_ml=volume if has_reference else None)
    for point in curve:
        if not has_reference:
            point = {**point, "ueo": None, "recall": None, "precision": None}
        w.add(CurvePoint, result_id=result, **point)
    if has_reference:
        for row in _bins(rng, roi, scalars["ece"]):
            w.add(ReliabilityBin, result_id=result, **row)
    return result


def _structure_value(metric: registry.Metric, whole: float, index: int) -> float:
    """A structure's value of a structure-level metric from its case's ``whole_case`` value, without a random draw
    (the seeded stream stays the same): the first structure 15 % below it, the last 10 % above, within range."""
    low, high = metric.range
    factor = 0.85 + 0.25 * (index - 1) / max(1, len(LABELS) - 2)
    return float(np.clip(whole * factor, low, high if high is not None else math.inf))


def _artifact(w: _Writer, store: ArtifactStore, image: int, processing: int | None, result: int | None,
              configuration: int | None, kind: str, path: str, array: NDArray[np.generic],
              budget: float | None = None) -> None:
    store.write(path, array)
    w.add(Artifact, image_id=image, processing_id=processing, result_id=result, configuration_id=configuration,
          kind=kind, path=path, dtype=str(array.dtype), shape=list(array.shape), budget=budget)


def _region_rows(plan: SeedPlan, arrays: dict[str, NDArray[np.generic]], roi: int, ranking: NDArray[np.intp]
                 ) -> list[dict[str, Any]]:
    """The ``result_regions`` rows the batch stores: the regions at each of the review settings' budgets and the
    run's (:func:`pipeline.batch.maps.result_regions`' calls, on the seeded maps)."""
    settings = ReviewSettings()
    sx, sy, sz = plan.spacing_xyz
    entropy = arrays["entropy"].astype(np.float32)
    rows = []
    for budget in sorted({*settings.region_budgets, plan.budget}):
        mask = np.zeros(entropy.size, dtype=bool)
        mask[ranking[: flagged_count(budget, roi)]] = True
        found = find_regions(mask.reshape(entropy.shape), entropy, arrays["prediction"], (sz, sy, sx), settings)
        rows.append(regions_row(found.regions, budget, settings))
    return rows


@dataclass
class _MapCache:
    """What the seed computes once and writes per case: probabilities per (variant, configuration without TS),
    maps, ROI size, ranking and region rows per (variant, configuration); ``written``: the (case, configuration)
    whose probabilities are written."""

    probabilities: dict[tuple[str, str], NDArray[np.float32]] = field(default_factory=dict)
    made: dict[tuple[str, str], tuple[dict[str, NDArray[np.generic]], int, NDArray[np.intp], list[dict[str, Any]]]] = (
        field(default_factory=dict))
    written: set[tuple[str, str]] = field(default_factory=set)


def _maps(w: _Writer, store: ArtifactStore, rng: np.random.Generator, plan: SeedPlan, name: str, variant: str,
          config: str, twins: dict[str, str], image: int, processing: int, result: int,
          configuration: dict[str, int], temperature: float | None, labels: NDArray[np.uint8] | None,
          truth: NDArray[np.uint8], cache: _MapCache) -> None:
    """Write one result's maps (and its stored regions); a case of an already made ``variant`` gets copies of its
    maps (computed once per variant and configuration)."""
    base = twins.get(config, config)
    prefix = f"{safe_name(name)}/{IDENTITY}/{safe_name(base)}"
    if (variant, base) not in cache.probabilities:
        cache.probabilities[(variant, base)] = _probabilities(rng, truth, _quality(base))
    if (name, base) not in cache.written:
        cache.written.add((name, base))
        _artifact(w, store, image, processing, None, configuration[base], "probabilities",
                  f"{prefix}/probabilities.zarr", cache.probabilities[(variant, base)].astype(np.float16))
    folder = f"{safe_name(name)}/{IDENTITY}/{safe_name(config)}" + (f"@fit{result}" if temperature else "")
    if (variant, config) not in cache.made:
        probs = apply_temperature(cache.probabilities[(variant, base)], temperature)
        cache.made[(variant, config)] = (*_result_maps(probs, labels, plan.budget), [])
    arrays, roi, ranking, regions = cache.made[(variant, config)]
    for kind, array in arrays.items():
        _artifact(w, store, image, processing, result, configuration[config], kind, f"{folder}/{kind}.zarr", array,
                  plan.budget if kind == "budget_mask" else None)
    if config in plan.region_configurations:  # the batch's rows: find_regions at each stored budget
        if not regions:
            regions.extend(_region_rows(plan, arrays, roi, ranking))
        for row in regions:
            w.add(ResultRegions, result_id=result, **row)
    row = w.rows[CaseResult][result - 1]  # ids are assigned in order from 1: the result's row
    row["roi_voxels"] = roi  # the maps' own ROI, so budgets below the stored one are exact
    if "error" in arrays:
        row["error_voxels"] = int(arrays["error"].sum())
