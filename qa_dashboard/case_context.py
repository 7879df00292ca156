"""The DICOM context of a case on the slice browser's header: which study and series the pictures come from.

The store keeps a case's study, series and frame-of-reference UIDs (``images``, read by ``pipeline.io.dicom``) and
its geometry, which the header already shows. The descriptive tags a reader also looks for (study and series
description, study date, slice thickness, convolution kernel, manufacturer and model, kVp) are not stored yet: they
need columns on ``images`` (a migration), after which they belong in :func:`context_rows`.
"""

from __future__ import annotations

from dash import html
from dash.development.base_component import Component

from qa_dashboard.queries.patient import Case

UID_LABELS = ("Study UID", "Series UID", "Frame of reference UID")


def context_rows(case: Case) -> list[tuple[str, str]]:
    """(label, value) of the case's stored DICOM context; empty for an image that was not read from DICOM."""
    if case.source_kind != "dicom":
        return []
    return [(label, uid or "—") for label, uid in zip(UID_LABELS, case.dicom_uids, strict=True)]


def dicom_context(case: Case) -> Component:
    """One small line under the case's name: the DICOM UIDs in full (they wrap, never cut), or the image's format."""
    rows = context_rows(case)
    if not rows:
        return html.Div("Read from an image file, not DICOM: no study or series", id="case-dicom",
                        className="text-muted small mb-2")
    return html.Div([html.Span("DICOM ", className="fw-semibold"),
                     *(html.Span([f"{label} ", html.Span(value, className="font-monospace")],
                                 className="me-3 d-inline-block text-break") for label, value in rows)],
                    id="case-dicom", className="text-muted small mb-2")
