"""The DICOM context of a case on the slice browser's header: how the scan was made and which study and series the
pictures come from.

Under the case's name: its acquisition (study and series description, study date, manufacturer, model, kernel,
slice thickness, kVp, contrast: :data:`pipeline.io.acquisition.FIELDS`, stored on ``images`` by the batch from the
DICOM header or the manifest's columns; "—" where unknown), then, for a case read from DICOM, its study, series and
frame-of-reference UIDs. Every value is shown in full: the pairs wrap, none is cut.
"""

from __future__ import annotations

from dash import html
from dash.development.base_component import Component

from pipeline.io.acquisition import FIELDS
from qa_dashboard.queries.patient import Case

UID_LABELS = ("Study UID", "Series UID", "Frame of reference UID")
UNKNOWN_VALUE = "—"
NOT_DICOM = "Read from an image file, not DICOM: no study or series"
NO_ACQUISITION = "acquisition not given (the manifest's columns manufacturer, kvp, …)"


def context_rows(case: Case) -> list[tuple[str, str]]:
    """(label, value) of the case's stored DICOM UIDs; empty for an image that was not read from DICOM."""
    if case.source_kind != "dicom":
        return []
    return [(label, uid or UNKNOWN_VALUE) for label, uid in zip(UID_LABELS, case.dicom_uids, strict=True)]


def acquisition_rows(case: Case) -> list[tuple[str, str]]:
    """(label, value) of every acquisition field, "—" where unknown; empty for an image file its manifest said
    nothing about."""
    if case.source_kind != "dicom" and not case.acquisition.values:
        return []
    return [(field.label, UNKNOWN_VALUE if (value := case.acquisition.get(field.key)) is None else field.shown(value))
            for field in FIELDS]


def _line(title: str, rows: list[tuple[str, str]], line_id: str, value_class: str) -> Component:
    return html.Div([html.Span(f"{title} ", className="fw-semibold"),
                     *(html.Span([f"{label} ", html.Span(value, className=value_class)],
                                 className="me-3 d-inline-block text-break") for label, value in rows)],
                    id=line_id)


def dicom_context(case: Case) -> Component:
    """Small lines under the case's name: the acquisition, then the DICOM UIDs (or the image's format)."""
    acquisition, uids = acquisition_rows(case), context_rows(case)
    lines = [_line("Acquisition", acquisition, "case-acquisition", "text-body")] if acquisition else []
    if uids:
        lines.append(_line("DICOM", uids, "case-uids", "font-monospace"))
    else:
        lines.append(html.Div(NOT_DICOM if acquisition else f"{NOT_DICOM}; {NO_ACQUISITION}", id="case-uids"))
    return html.Div(lines, id="case-dicom", className="text-muted small mb-2")
