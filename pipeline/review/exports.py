"""Exports to the clinic: the worklist as CSV / Excel, the review regions and entropy map as NIfTI on the CT's
original grid, the regions as a DICOM RTSTRUCT referencing the original CT series, and the audit log as CSV.

Every worklist row carries its case's state (:func:`case_state`, the words the pages show too): whether it has a
reference (:data:`~pipeline.review.worklist.NO_REFERENCE`), whether the configuration predicted nothing
(:data:`~pipeline.review.worklist.EMPTY_PREDICTION`, per case and, in the region rows, per structure) and its
out-of-distribution score in words with its flag (empty when the score is not known).

Text that a spreadsheet program would run as a formula (a comment starting with ``=``, …) never runs: in CSV, text
starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a leading apostrophe; in Excel such text is
stored as a string cell (openpyxl would otherwise store text starting with ``=`` as a formula).

``first_slice`` / ``last_slice`` are slice numbers as the slice browser shows them (1-based,
:func:`pipeline.metrics.regions.slice_number`); ``centroid_z/y/x`` are voxel indices (0-based, as in the slice
browser's ``at=z,y,x`` address).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from openpyxl import Workbook
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.errors import NotFoundError
from pipeline.io.dicom import read_ct_series
from pipeline.io.maps import export_nifti
from pipeline.io.rtstruct_export import RoiMask, RtstructError, referenced_series, write_rtstruct
from pipeline.metrics.regions import slice_number
from pipeline.metrics.review_budget import Budget
from pipeline.review.service import AuditRecord
from pipeline.review.worklist import (
    EMPTY_PREDICTION,
    NO_REFERENCE,
    ResultRef,
    Worklist,
    WorklistCase,
    case_regions,
    deployed_results,
)
from pipeline.settings import ReviewSettings
from pipeline.store.artifacts import ArtifactStore, safe_name
from pipeline.store.schema import Artifact

log = logging.getLogger(__name__)

#: a case's state beside its regions (:func:`case_state`), last in both worklist tables
STATE_COLUMNS = ("reference", "prediction", "ood", "ood_flag")
CASE_COLUMNS = ("rank", "case", "budget_fraction", "capped", "flagged_ml", "score", "expected_recall", "regions",
                "unreviewed_items", *STATE_COLUMNS)
REGION_COLUMNS = ("case_rank", "case", "structure", "class_index", "state", "decision", "comment", "reviewer",
                  "approver", "region_rank", "voxels", "volume_ml", "first_slice", "last_slice", "centroid_z",
                  "centroid_y", "centroid_x", "mean_entropy", "max_entropy", "score", "structure_prediction",
                  *STATE_COLUMNS)
AUDIT_COLUMNS = ("id", "at", "actor", "actor_id", "action", "outcome", "object_type", "object_id", "before",
                 "after", "ip")
GEOMETRY_TOLERANCE = 1e-3
#: ROI display colours of the RTSTRUCT, by class index (cycled)
COLORS = ((255, 0, 255), (255, 128, 0), (0, 255, 255), (255, 255, 0), (0, 128, 255), (255, 0, 0))
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def case_state(case: WorklistCase) -> dict[str, Any]:
    """A case's state in words (:data:`STATE_COLUMNS`): ``reference`` ``yes`` or :data:`NO_REFERENCE`,
    ``prediction`` :data:`EMPTY_PREDICTION` when the configuration predicted no foreground (else empty), ``ood`` the
    stored out-of-distribution score's words and ``ood_flag`` its flag (None while not known)."""
    return {"reference": "yes" if case.has_reference else NO_REFERENCE,
            "prediction": EMPTY_PREDICTION if case.empty_prediction else "", "ood": case.ood,
            "ood_flag": case.ood_flag}


def case_rows(worklist: Worklist) -> list[dict[str, Any]]:
    """One row per case of the worklist (:data:`CASE_COLUMNS`)."""
    return [{
        "rank": case.rank, "case": case.case, "budget_fraction": case.fraction, "capped": case.capped,
        "flagged_ml": case.flagged_ml, "score": case.score, "expected_recall": case.expected_recall,
        "regions": len(case.regions),
        "unreviewed_items": sum(item.state in ("pending", "in_review") for item in case.items),
        **case_state(case),
    } for case in worklist.cases]


def region_rows(worklist: Worklist) -> list[dict[str, Any]]:
    """One row per region, and one per structure without a region (:data:`REGION_COLUMNS`); ``structure_prediction``
    is :data:`EMPTY_PREDICTION` for a structure the configuration predicted nothing of (review it whole)."""
    rows = []
    for case in worklist.cases:
        state = case_state(case)
        for item in case.items:
            shared = {"case_rank": case.rank, "case": case.case, "structure": item.structure,
                      "class_index": item.class_index, "state": item.state.value, "decision": item.decision,
                      "comment": item.comment, "reviewer": item.reviewer, "approver": item.approver,
                      "structure_prediction": EMPTY_PREDICTION if item.empty_prediction else "", **state}
            if not item.regions:
                rows.append({**dict.fromkeys(REGION_COLUMNS), **shared})
            for region in item.regions:
                rows.append({**shared, "region_rank": region.rank, "voxels": region.voxels,
                             "volume_ml": region.volume_ml, "first_slice": slice_number(region.slices[0]),
                             "last_slice": slice_number(region.slices[1]), "centroid_z": region.centroid[0],
                             "centroid_y": region.centroid[1], "centroid_x": region.centroid[2],
                             "mean_entropy": region.mean_entropy, "max_entropy": region.max_entropy,
                             "score": region.score})
    return rows


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _cell(row.get(key)) for key in columns})
    return path


def write_worklist(worklist: Worklist, path: Path, fmt: Literal["csv", "xlsx"], group: str | None = None) -> Path:
    """The worklist as CSV (the region rows) or Excel (sheets ``cases`` and ``regions`` and ``about``; ``group``
    names the acquisition group the list was narrowed to, e.g. ``scanner: SimCT Alpha 64``)."""
    if fmt == "csv":
        return _write_csv(path, REGION_COLUMNS, region_rows(worklist))
    if fmt != "xlsx":
        raise ValueError(f"worklist format must be csv or xlsx, got {fmt!r}")
    book = Workbook()
    about = book.active
    assert about is not None
    about.title = "about"
    for row in (("configuration", worklist.configuration), ("budget", worklist.budget.describe()),
                *((("acquisition", group),) if group else ()), ("cases", len(worklist.cases)),
                ("unreviewed items", worklist.unreviewed()),
                *(("skipped", line) for line in worklist.skipped),
                ("note", "Research / QA support, not a medical device.")):
        about.append(list(row))
    for title, columns, rows in (("cases", CASE_COLUMNS, case_rows(worklist)),
                                 ("regions", REGION_COLUMNS, region_rows(worklist))):
        sheet = book.create_sheet(title)
        sheet.append(list(columns))
        for row in rows:
            sheet.append([row.get(key) for key in columns])
            for cell in sheet[sheet.max_row]:
                if cell.data_type == "f":  # text that openpyxl took for a formula: keep it text
                    cell.data_type = "s"
        sheet.freeze_panes = "A2"
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path


def write_audit_csv(records: Sequence[AuditRecord], path: Path) -> Path:
    """Audit rows as CSV (:data:`AUDIT_COLUMNS`; before/after as JSON text)."""
    rows = ({"id": r.id, "at": r.at.isoformat(), "actor": r.actor, "actor_id": r.actor_id, "action": r.action,
             "outcome": r.outcome, "object_type": r.object_type, "object_id": r.object_id,
             "before": json.dumps(r.before, sort_keys=True) if r.before is not None else None,
             "after": json.dumps(r.after, sort_keys=True) if r.after is not None else None, "ip": r.ip}
            for r in records)
    return _write_csv(path, AUDIT_COLUMNS, rows)


def _one_result(session: Session, case: str, configuration: str, model_set: str | None) -> ResultRef:
    found = deployed_results(session, configuration, case, model_set)
    if not found:
        raise NotFoundError(f"case {case!r} has no stored result of configuration {configuration!r}")
    return found[0]


def export_region_maps(session: Session, artifacts: ArtifactStore, case: str, configuration: str, budget: Budget,
                       out_dir: Path, settings: ReviewSettings | None = None,
                       model_set: str | None = None) -> tuple[Path, Path]:
    """``<case>_<configuration>_regions.nii.gz`` (each voxel: its region's rank, 0 outside) and ``…_entropy.nii.gz``
    on the CT's original grid (the configuration of ``model_set``, default the newest with a result of it)."""
    ref = _one_result(session, case, configuration, model_set)
    regions, _, _ = case_regions(session, artifacts, ref, budget, settings)
    entropy_path = session.scalars(select(Artifact.path).where(Artifact.result_id == ref.result.id,
                                                               Artifact.kind == "entropy")).one()
    image = ref.image
    stem = safe_name(f"{case}_{configuration}")
    geometry = (image.spacing, image.origin, image.direction)
    labels = export_nifti(regions.labels.astype(np.uint16), out_dir / f"{stem}_regions.nii.gz", *geometry)
    entropy = export_nifti(artifacts.read(entropy_path), out_dir / f"{stem}_entropy.nii.gz", *geometry)
    return labels, entropy


def export_case_rtstruct(session: Session, artifacts: ArtifactStore, case: str, configuration: str, budget: Budget,
                         out: Path, allow_generated_uids: bool = False,
                         settings: ReviewSettings | None = None, model_set: str | None = None) -> Path:
    """The case's review regions as an RTSTRUCT (one ROI ``QA <structure>`` per structure with regions) that
    references the case's original DICOM CT series, re-read from its folder."""
    ref = _one_result(session, case, configuration, model_set)
    image = ref.image
    if image.source_kind != "dicom":
        raise RtstructError(f"case {case!r} was read from {image.source_path}, not a DICOM series: an RTSTRUCT "
                            "needs the original series to reference (export the NIfTI maps instead)")
    series = read_ct_series(Path(image.source_path), image.series_uid)
    grid = series.image
    stored = (image.size, image.spacing, image.origin, image.direction)
    found = (grid.GetSize(), grid.GetSpacing(), grid.GetOrigin(), grid.GetDirection())
    if any(not np.allclose(a, b, atol=GEOMETRY_TOLERANCE) for a, b in zip(stored, found, strict=True)):
        raise RtstructError(f"case {case!r}: the series in {image.source_path} no longer has the stored geometry")
    regions, _, _ = case_regions(session, artifacts, ref, budget, settings)
    rois = []
    for class_index in sorted({r.class_index for r in regions.regions}):
        ranks = [r.rank for r in regions.regions if r.class_index == class_index]
        name = ref.labels[class_index] if class_index < len(ref.labels) else f"class {class_index}"
        rois.append(RoiMask(f"QA {name}"[:64], np.isin(regions.labels, ranks).astype(np.uint8),
                            COLORS[class_index % len(COLORS)]))
    if not rois:
        log.warning("case %s: no review region at %s; the RTSTRUCT holds no ROI", case, budget.describe())
    return write_rtstruct(out, rois, referenced_series(series, allow_generated_uids),
                          label=f"QA {configuration}")
