"""The configurations the cohort and comparison pages offer and show first follow the chosen protocol: a protocol of
another model set brings its own configurations and structures (the pages used to keep the first model set's)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, func, select

from pipeline.store.cohort_numbers import CohortFilter, summary
from pipeline.store.schema import Configuration, ModelSet, Protocol
from qa_dashboard import charts
from qa_dashboard.queries.cohort import protocol
from qa_dashboard.shown_configurations import shown_for
from qa_dashboard.store import get_store
from tests.dashboard.conftest import SeededStore

OTHER_GRID = ("Base", "TTA")
OTHER_LABELS = ["background", "spleen"]


@pytest.fixture
def other_protocol(store: SeededStore) -> Iterator[int]:
    """A second model set (two configurations, spleen only) with a protocol older than the seeded one; removed after."""
    with get_store().session() as session, session.begin():
        def next_id(table: type[ModelSet | Configuration | Protocol]) -> int:  # the seed wrote its ids explicitly
            return int(session.scalar(select(func.max(table.id))) or 0) + 1

        first = next_id(Configuration)
        model_set = ModelSet(id=next_id(ModelSet), identity="other-model-set", name="other set", source="test",
                             nnunet_configuration="3d_fullres", labels=OTHER_LABELS,
                             created_at=datetime(2020, 1, 1, tzinfo=UTC))
        session.add(model_set)
        session.flush()
        session.add_all([Configuration(id=first + i, model_set_id=model_set.id, name=n, position=i,
                                       members=["fold_0"], views=[0], temperature_scaling=False)
                         for i, n in enumerate(OTHER_GRID)])
        other = Protocol(id=next_id(Protocol), model_set_id=model_set.id, cohort="other", seed=0, repeats=1,
                         test_fraction=0.5, calibration_fraction=None, created_at=datetime(2020, 1, 2, tzinfo=UTC))
        session.add(other)
        session.flush()
        ids = other.id, model_set.id
    try:
        yield ids[0]
    finally:
        with get_store().session() as session, session.begin():
            session.execute(delete(Protocol).where(Protocol.id == ids[0]))
            session.execute(delete(Configuration).where(Configuration.model_set_id == ids[1]))
            session.execute(delete(ModelSet).where(ModelSet.id == ids[1]))


def test_the_reference_and_the_best_are_shown_first(store: SeededStore) -> None:
    store_ = get_store()
    with store_.session() as session:
        choice = shown_for(store_, session, protocol(session, store.seeded.protocol_id))
        overall, _ = summary(session, CohortFilter(store.seeded.protocol_id))
    ids = store.seeded.configurations
    column = overall.set_index("configuration_id")[f"{charts.PRIMARY.name}_mean"]
    best = int(column.idxmax() if charts.PRIMARY.direction == "higher" else column.idxmin())
    assert [o["value"] for o in choice.options] == list(ids.values())
    assert choice.reference == ids["Base"] and choice.shown[0] == ids["Base"] and best in choice.shown
    assert choice.best == (best if best != ids["Base"] else choice.best)
    assert "Base (the grid's reference)" in choice.note


def test_another_protocol_brings_its_own_configurations_and_structures(store: SeededStore,
                                                                       other_protocol: int) -> None:
    from qa_dashboard.pages import cohort, compare

    options, shown, note, a_options, a, b_options, b = compare._choices_of(other_protocol)
    assert [o["label"] for o in options] == list(OTHER_GRID) == [o["label"] for o in a_options + b_options][:2]
    named = {o["value"]: o["label"] for o in options}
    assert [named[i] for i in shown] == list(OTHER_GRID) and named[a] == "TTA" and named[b] == "Base"
    assert "Base (the grid's reference)" in note
    diagram_options, diagram_shown, _, structures, chosen = cohort._choices_of(other_protocol)
    assert [o["label"] for o in diagram_options] == list(OTHER_GRID) and len(diagram_shown) == 2
    assert structures[1:] == OTHER_LABELS and chosen[1:] == ["spleen"]
    back = compare._choices_of(store.seeded.protocol_id)
    assert [o["value"] for o in back[0]] == list(store.seeded.configurations.values())
    assert compare._choices_of(None) == ([], [], "", [], None, [], None)
