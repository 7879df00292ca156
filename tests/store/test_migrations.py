"""Alembic migrations on SQLite and PostgreSQL: empty → head → empty, data kept through upgrades, head checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, select

from pipeline.store.database import (
    StoreNotReadyError,
    alembic_config,
    check_at_head,
    current_revision,
    make_engine,
    session_factory,
)
from pipeline.store.review_schema import AuditEntry, ReviewItem, User
from pipeline.store.schema import Base, Configuration, Image, ModelSet, Patient, Run


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    names = set(inspect(engine).get_table_names()) - {"alembic_version"}
    engine.dispose()
    return names


def test_upgrade_to_head_creates_the_schema_and_downgrade_removes_it(empty_store_url: str) -> None:
    config = alembic_config(empty_store_url)
    command.upgrade(config, "head")
    assert _tables(empty_store_url) == set(Base.metadata.tables)
    engine = make_engine(empty_store_url)
    check_at_head(engine)
    engine.dispose()
    command.downgrade(config, "base")
    assert _tables(empty_store_url) == set()
    command.upgrade(config, "head")
    assert _tables(empty_store_url) == set(Base.metadata.tables)


def test_models_and_migrations_agree(store_url: str) -> None:
    """``alembic check``: autogenerate finds nothing to add, so the ORM and the migrations describe one schema."""
    command.check(alembic_config(store_url))


NOW = datetime(2026, 11, 29, tzinfo=UTC)
# Rows valid at the FIRST revision (0001), inserted through the tables reflected at that revision, so this seed
# stays valid whatever later migrations change.
SEED_0001: dict[str, dict[str, Any]] = {
    "patients": {"id": 1, "pseudonym": "P-001", "mrn_hash": "ab" * 32, "created_at": NOW},
    "images": {"id": 1, "patient_id": 1, "name": "case-1", "cohort": "phantom", "source_kind": "image",
               "source_path": "/data/case-1.nii.gz", "size": [64, 64, 48], "spacing": [7.0, 7.0, 12.0],
               "origin": [0.0, 0.0, 0.0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1], "content_hash": "c" * 64,
               "created_at": NOW, "updated_at": NOW},
    "model_sets": {"id": 1, "identity": "0123456789abcdef", "name": "demo", "source": "models/demo/manifest.json",
                   "nnunet_configuration": "3d_tiny", "labels": ["background", "lymph_nodes", "spleen"],
                   "created_at": NOW},
    "configurations": {"id": 1, "model_set_id": 1, "name": "Base", "position": 0, "members": ["fold_0"],
                       "views": [[]], "temperature_scaling": False},
    "runs": {"id": 1, "kind": "run", "status": "succeeded", "started_at": NOW, "host": "h", "pid": 1,
             "code_version": "0.1.0+x", "cases_total": 1, "cases_done": 1, "cases_skipped": 0, "cases_failed": 0,
             "options": {}},
}


def _seed_first_revision(url: str) -> None:
    engine = make_engine(url)
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.begin() as connection:
        for table, row in SEED_0001.items():
            connection.execute(metadata.tables[table].insert(), [row])
    engine.dispose()


def test_every_migration_step_keeps_stored_rows(empty_store_url: str) -> None:
    """Rows written at the first revision survive every later upgrade up to head."""
    config = alembic_config(empty_store_url)
    revisions = [r.revision for r in reversed(list(ScriptDirectory.from_config(config).walk_revisions()))]
    assert revisions[0] == "0001"
    command.upgrade(config, revisions[0])
    _seed_first_revision(empty_store_url)
    for revision in revisions[1:]:
        command.upgrade(config, revision)
    engine = make_engine(empty_store_url)
    with session_factory(engine)() as session:
        image = session.scalars(select(Image)).one()
        assert image.spacing == [7.0, 7.0, 12.0] and image.patient.pseudonym == "P-001"
        counts = {table.__name__: len(session.scalars(select(table)).all())
                  for table in (Patient, Image, ModelSet, Configuration, Run)}
        assert session.scalars(select(Configuration)).one().name == "Base"
    with session_factory(engine).begin() as session:  # the review tables (0002) work with the rows of 0001
        user = User(username="rita", password_hash="scrypt:x", role="reviewer")
        session.add(user)
        session.flush()
        session.add_all([ReviewItem(image_id=1, configuration_id=1, class_index=1, structure="lymph_nodes",
                                    state="in_review", reviewer_id=user.id),
                         AuditEntry(actor_id=user.id, actor="rita", action="review.start_review", outcome="ok",
                                    object_type="review_item", object_id="1/1/1", after={"state": "in_review"})])
    with session_factory(engine)() as session:
        assert session.scalars(select(ReviewItem)).one().version == 1
    engine.dispose()
    assert counts == {"Patient": 1, "Image": 1, "ModelSet": 1, "Configuration": 1, "Run": 1}
    command.downgrade(config, revisions[0])  # and a downgrade back to the first revision keeps its rows
    assert {"users", "review_items", "audit_log"}.isdisjoint(_tables(empty_store_url))
    engine = make_engine(empty_store_url)
    with session_factory(engine)() as session:
        assert session.scalars(select(Image)).one().name == "case-1"
    engine.dispose()


def test_a_store_below_head_is_refused_naming_the_command(empty_store_url: str) -> None:
    engine = make_engine(empty_store_url)
    assert current_revision(engine) is None
    with pytest.raises(StoreNotReadyError, match=r"is empty.*alembic upgrade head"):
        check_at_head(engine)
    engine.dispose()


def test_an_unreachable_store_is_refused_with_its_url() -> None:
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(StoreNotReadyError, match="cannot open the store postgresql"):
        check_at_head(engine)
    engine.dispose()
