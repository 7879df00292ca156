"""One case through the grid: inference, metrics, artifacts, and its rows in one transaction."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from pipeline.batch.cases import LoadedCase
from pipeline.batch.maps import map_artifacts, result_prefix, result_regions
from pipeline.batch.member_passes import PassWriter
from pipeline.batch.outcomes import (
    Outcome,
    bin_rows,
    body_entropy,
    curve_rows,
    evaluate_configuration,
    result_row,
    structure_rows,
    value_rows,
)
from pipeline.batch.persist import ImageRecord, ResultRows, replace_processing, upsert_image, write_results
from pipeline.inference.engine import MemberPredictor
from pipeline.inference.grid import Configuration as GridConfiguration
from pipeline.inference.pooling import Cost, predict_grid
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.shift import body_region
from pipeline.store.artifacts import ArtifactStore, safe_name
from pipeline.store.deployed import fit_for
from pipeline.store.schema import Configuration, ModelSet, TemperatureFit


@dataclass(frozen=True)
class CaseWork:
    """What processing a case needs besides the case: models, grid, rows of the store, settings, and the Dask worker
    that runs it (None: the batch's own process)."""

    predictor: MemberPredictor
    grid: tuple[GridConfiguration, ...]
    model_set: ModelSet
    configurations: dict[str, Configuration]
    fits: dict[str, list[TemperatureFit]]
    settings: MetricSettings
    budget: float
    artifacts: ArtifactStore
    code_version: str
    run_id: int
    worker: str | None = None
    sweep_maps: bool = False


@dataclass(frozen=True)
class CaseTimings:
    """Seconds spent per stage, and the forward passes run."""

    inference: float
    metrics: float
    storage: float
    forward_passes: int


def image_record(case: LoadedCase) -> ImageRecord:
    """The ``images`` columns of a loaded case."""
    spec, image = case.spec, case.image
    return ImageRecord(
        name=spec.name,
        patient=spec.patient or spec.name,
        mrn_hash=spec.mrn_hash,
        values={
            "cohort": spec.cohort, "source_kind": spec.source_kind, "source_path": str(spec.ct),
            "reference_path": case.reference_source or (str(spec.reference) if spec.reference else None),
            "reference_note": case.reference_note, "size": list(image.GetSize()),
            "spacing": list(image.GetSpacing()), "origin": list(image.GetOrigin()),
            "direction": list(image.GetDirection()), "content_hash": case.content_hash,
            "reference_hash": case.reference_hash,
            "study_uid": case.uids.study or None if case.uids else None,
            "series_uid": case.uids.series or None if case.uids else None,
            "frame_of_reference_uid": case.uids.frame_of_reference or None if case.uids else None,
            "acquisition": case.acquisition.record(),
        },
    )


def _image_artifacts(case: LoadedCase, store: ArtifactStore) -> list[dict[str, object]]:
    ct = sitk.GetArrayFromImage(case.image)
    if np.issubdtype(ct.dtype, np.integer) and ct.min() >= -32768 and ct.max() <= 32767:
        ct = ct.astype(np.int16)
    else:
        ct = ct.astype(np.float32)
    arrays = {"ct": ct}
    if case.labels is not None:
        arrays["reference"] = case.labels
    rows = []
    for kind, array in arrays.items():
        path = store.write(f"{safe_name(case.spec.name)}/{kind}.zarr", array)
        rows.append({"kind": kind, "path": path, "dtype": str(array.dtype), "shape": list(array.shape),
                     "budget": None})
    return rows


def _configuration_rows(
    case: LoadedCase, work: CaseWork, name: str, probabilities: NDArray[np.float32],
    spacing: tuple[float, float, float], reference_counts: NDArray[np.int64] | None, body: NDArray[np.bool_],
    cost: Cost,
) -> tuple[list[ResultRows], list[dict[str, object]], float, float]:
    """Evaluate one configuration of the grid and write its maps (and, uncalibrated, its pooled probabilities).

    Returns its result rows (none for a TS configuration without a deployed fit for this case), its
    pooled-probabilities artifact rows, and the seconds spent on metrics and on storage. Under ``per_member`` a TS
    configuration's ``probabilities`` are already pooled from scaled members: no temperature is applied to them.
    A sweep configuration stores its scalars and curves only, unless ``work.sweep_maps``: no voxel map, no
    pooled probabilities, no review regions (which are found on the maps).
    """
    configuration = next(c for c in work.grid if c.name == name)
    maps = not configuration.sweep or work.sweep_maps
    fits = work.fits.get(name, []) if configuration.temperature_scaling else []
    fit = fit_for(case.spec.name, fits)
    store, identity = work.artifacts, work.model_set.identity
    results: list[ResultRows] = []
    metrics = storage = 0.0
    if not configuration.temperature_scaling or fit is not None:
        temperature = fit.temperature if fit is not None else None
        after_pooling = temperature if work.settings.temperature_mode == "after_pooling" else None
        began = time.perf_counter()
        result = evaluate_configuration(probabilities, case.labels, spacing, work.settings, after_pooling,
                                        work.budget)
        outcome = Outcome(name, temperature, result, case.labels is not None, time.perf_counter() - began,
                          body_entropy(result, body))
        metrics = time.perf_counter() - began
        began = time.perf_counter()
        fit_id = fit.id if fit is not None else None
        results.append(ResultRows(
            configuration_id=work.configurations[name].id,
            temperature_fit_id=fit_id,
            result=result_row(outcome) | {"forward_passes": cost.forward_passes,
                                          "seconds_inference": cost.seconds, "device": cost.device},
            values=value_rows(outcome),
            structures=structure_rows(outcome, tuple(work.model_set.labels), reference_counts),
            curve=curve_rows(outcome),
            bins=bin_rows(outcome),
            artifacts=map_artifacts(store, result_prefix(case.spec.name, identity, name, fit_id), outcome)
            if maps else [],
            regions=result_regions(outcome, _spacing_zyx(case)) if maps else [],
        ))
        storage = time.perf_counter() - began
    pooled_rows: list[dict[str, object]] = []
    if maps and not configuration.temperature_scaling:
        began = time.perf_counter()
        path = store.write(f"{result_prefix(case.spec.name, identity, name, None)}/probabilities.zarr",
                           probabilities.astype(np.float32, copy=False))
        pooled_rows.append({"kind": "probabilities", "path": path, "dtype": "float32", "budget": None,
                            "configuration_id": work.configurations[name].id, "shape": list(probabilities.shape)})
        storage += time.perf_counter() - began
    return results, pooled_rows, metrics, storage


def process_case(session: Session, case: LoadedCase, work: CaseWork, input_hash: str) -> CaseTimings:
    """Run the grid on a case and store everything in ``session``'s transaction (the caller commits).

    The configurations stream from the grid one at a time: each is evaluated and its maps are written before the
    next one is mapped to the CT grid; the rows go to the session at the end.
    """
    start = time.perf_counter()
    per_member = work.settings.temperature_mode == "per_member"
    writer = PassWriter(work.artifacts, f"{safe_name(case.spec.name)}/{work.model_set.identity}")
    prediction = predict_grid(work.predictor, case.image, work.grid, work.settings.pooling,
                              member_temperature=_member_temperatures(case, work) if per_member else None,
                              grid_mapping=work.settings.grid_mapping, on_pass=writer if per_member else None)
    passes = time.perf_counter() - start - writer.seconds
    reference_counts = (np.bincount(case.labels.ravel(), minlength=len(work.model_set.labels))
                        if case.labels is not None else None)
    body = body_region(sitk.GetArrayViewFromImage(case.image), work.settings.ood_body_hu)
    results: list[ResultRows] = []
    pooled_rows: list[dict[str, object]] = []
    metrics, storage = 0.0, writer.seconds
    for name, probabilities in prediction:
        rows, pooled, seconds_metrics, seconds_storage = _configuration_rows(
            case, work, name, probabilities, prediction.spacing, reference_counts, body, prediction.cost(name))
        del probabilities
        results += rows
        pooled_rows += pooled
        metrics += seconds_metrics
        storage += seconds_storage
    inference = passes + prediction.seconds_mapping
    start = time.perf_counter()
    image_rows = _image_artifacts(case, work.artifacts)
    image = upsert_image(session, image_record(case))
    values = {"run_id": work.run_id, "input_hash": input_hash, "code_version": work.code_version,
              "forward_passes": prediction.forward_passes, "seconds_inference": inference, "seconds_metrics": metrics,
              "seconds_storage": 0.0, "worker": work.worker}
    processing = replace_processing(session, image, work.model_set, values, image_rows, pooled_rows + writer.rows)
    write_results(session, image, processing.id, results)
    processing.seconds_storage = storage + time.perf_counter() - start
    return CaseTimings(inference, metrics, processing.seconds_storage, prediction.forward_passes)


def _spacing_zyx(case: LoadedCase) -> tuple[float, float, float]:
    """The CT's voxel size (z, y, x) in mm, as the store's image row gives it back to the worklist."""
    x, y, z = (float(v) for v in case.image.GetSpacing())
    return (z, y, x)


def _member_temperatures(case: LoadedCase, work: CaseWork) -> dict[str, float]:
    """Under ``per_member``: each TS configuration's deployed temperature for this case, applied to its members."""
    chosen = {name: fit_for(case.spec.name, fits) for name, fits in work.fits.items()}
    return {name: fit.temperature for name, fit in chosen.items() if fit is not None}
