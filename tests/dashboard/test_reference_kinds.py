"""Final clinical contours versus research references on the pages: the clinician's edits in the slice browser (added
and removed voxels, their legend, the clinical UEO beside the metrics) and the cohort / comparison filter with its n,
on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from dash import html
from sqlalchemy import delete, func, select

from pipeline.errors import InputError
from pipeline.store import cohort_numbers
from pipeline.store.references import reference_kind
from pipeline.store.schema import CurvePoint, Image, ReferenceAttachment, SplitRole, utcnow
from qa_dashboard import filters, viewer, viewer_layout
from qa_dashboard.components import number
from qa_dashboard.queries import cohort
from qa_dashboard.queries.patient import find_case, shown_results
from qa_dashboard.rendering import compose
from qa_dashboard.store import get_store
from tests.dashboard.conftest import PLAN, SeededStore


def test_edits_are_the_error_set_split_into_added_and_removed() -> None:
    reference = np.zeros((8, 8), np.uint8)
    reference[2:6, 2:6] = 1
    prediction = np.zeros((8, 8), np.uint8)
    prediction[3:7, 3:7] = 1
    prediction[0, 0] = 2
    added, removed = compose.edits(reference, prediction, (1, 2))
    assert added.sum() == 16 - 9 and removed.sum() == 16 - 9 + 1
    assert not (added & removed).any() and ((added | removed) == (reference != prediction)).all()
    assert compose.edits(reference, prediction, (2,))[1].sum() == 1, "only the structures shown"
    style = compose.Style(frozenset({"edits"}), (1, 2), 0.5, 0.1)
    rgba = compose.overlay_layer(compose.Layers((8, 8), reference=reference, prediction=prediction), style, scale=1)
    assert rgba is not None
    assert tuple(rgba[2, 2, :3]) == compose.hex_to_rgb(compose.ADDED_COLOUR)  # in the final contour, not predicted
    assert tuple(rgba[6, 6, :3]) == compose.hex_to_rgb(compose.REMOVED_COLOUR)  # predicted, not in it
    assert rgba[4, 4, 3] == 0 and rgba[7, 0, 3] == 0, "agreement is not an edit"
    plain = compose.Style(frozenset({"reference"}), (1, 2), 0.5, 0.1)
    layer = compose.overlay_layer(compose.Layers((8, 8), reference=reference, prediction=prediction), plain, 1)
    assert layer is not None and layer[6, 6, 3] == 0, "no edits unless asked for"


@pytest.fixture
def final_clinical(store: SeededStore) -> Iterator[str]:
    """One protocol test case of the seeded store with its reference attached as the final clinical contour."""
    name = next(n for names in store.seeded.test_roles.values() for n in names if n in store.seeded.map_cases)
    with get_store().session() as session:
        image_id, held = session.execute(select(Image.id, Image.reference_hash).where(Image.name == name)).one()
        session.add(ReferenceAttachment(image_id=image_id, kind="final_clinical", source="/tps/RS.dcm",
                                        source_format="rtstruct", reference_hash=held, actor="cli:test",
                                        attached_at=utcnow(), results=0, replaced={}))
        session.commit()
    try:
        yield name
    finally:
        with get_store().session() as session:
            session.execute(delete(ReferenceAttachment).where(ReferenceAttachment.image_id == image_id))
            session.commit()


def test_cohort_filter_by_reference_kind_with_its_n(store: SeededStore, final_clinical: str) -> None:
    protocol_id = store.seeded.protocol_id
    with get_store().session() as session:
        counts = cohort.reference_kind_counts(session, protocol_id)
        cohort_size = len(set(session.scalars(select(SplitRole.image_id).where(SplitRole.protocol_id == protocol_id))))
        every = cohort_numbers.case_table(session, cohort_numbers.CohortFilter(protocol_id))
        final = cohort_numbers.case_table(session, filters.cohort_filter(protocol_id, [], None, None,
                                                                 reference_kind="final_clinical"))
        research = cohort_numbers.case_table(session, filters.cohort_filter(protocol_id, [], None, None,
                                                                    reference_kind="research"))
    assert counts == {"final_clinical": 1, "research": cohort_size - 1}
    assert set(final["case"]) == {final_clinical}
    assert final_clinical not in set(research["case"]) and len(final) + len(research) == len(every)
    labels = [o["label"] for o in filters.reference_kind_options(counts)]
    assert labels == [f"every reference (n = {cohort_size})", "final clinical contours (n = 1)",
                      f"research references (n = {cohort_size - 1})"]
    assert filters.cohort_filter(protocol_id, [], None, None, reference_kind="all").reference_kind is None
    with pytest.raises(InputError, match="reference kind must be one of all, final_clinical, research"):
        filters.cohort_filter(protocol_id, [], None, None, reference_kind="clinical")


def test_slice_browser_shows_the_edits_of_a_final_clinical_contour(store: SeededStore, final_clinical: str) -> None:
    app_store = get_store()
    with app_store.session() as session:
        views = {}
        for name in (final_clinical, next(n for n in store.seeded.map_cases if n != final_clinical)):
            case = find_case(session, name)
            assert case is not None
            views[case.reference_kind] = viewer.CaseView(case, {r.configuration_id: r
                                                                for r in shown_results(session, case)})
    assert set(views) == {"final_clinical", "research"}
    de = store.seeded.configurations["DE"]
    final, research = views["final_clinical"], views["research"]
    page = str(viewer_layout.viewer_layout(final, de, None, viewer.middle(final.case)))
    assert "clinician's edits (added / removed)" in page and "final clinical contour" in page
    assert "added by the clinician (under-segmented)" in page and "removed by the clinician (over-segmented)" in page
    other = str(viewer_layout.viewer_layout(research, de, None, viewer.middle(research.case)))
    assert "clinician's edits" not in other and "research reference" in other

    table = viewer.metrics_table(app_store, final, [de], PLAN.budget)
    rows = {r.children[0].children: r.children[1].children for r in table.children[1].children}
    caught = {label: value for label, value in rows.items() if label.startswith("edits caught at")}
    shown = f"edits caught at {PLAN.budget * 100:.1f} %"
    assert len(caught) >= 5 and shown in caught
    with app_store.session() as session:
        recall = session.scalar(select(CurvePoint.recall).where(
            CurvePoint.result_id == final.results[de].result_id,
            func.abs(CurvePoint.budget - PLAN.budget) < 1e-9))
    assert caught[shown] == number(recall, 3), "the clinical UEO is the stored curve's error recall"
    assert not any(str(label).startswith("edits caught") for label in _labels(viewer.metrics_table(
        app_store, research, [de], PLAN.budget)))


def _labels(table: html.Table) -> list[object]:
    return [r.children[0].children for r in table.children[1].children]


def test_a_reference_given_in_a_later_input_replaces_the_attached_final_contour(
    store: SeededStore, final_clinical: str
) -> None:
    """The attachment counts while the image holds its reference: once a batch input gives another reference (the
    image's reference hash changes), the case's reference is a research one, though the attachment stays current."""
    with get_store().session() as session:
        image = session.scalars(select(Image).where(Image.name == final_clinical)).one()
        assert reference_kind(session, image.id, True) == "final_clinical"
        held = image.reference_hash
        image.reference_hash = "f" * 64
        session.flush()
        assert reference_kind(session, image.id, True) == "research"
        image.reference_hash = held
        session.commit()
