"""Store fixtures: a fresh, migrated database per test on SQLite and on the real PostgreSQL (127.0.0.1:5432)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from pipeline.store.database import alembic_config

POSTGRES_ADMIN = os.environ.get("QA_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _fresh_postgres() -> tuple[str, str]:
    name = f"qa_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # a store test must not silently skip PostgreSQL
        pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN} is not usable ({error}); the store tests need it")
    finally:
        admin.dispose()
    return name, POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def _drop_postgres(name: str) -> None:
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database (no tables) of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
        return
    name, url = _fresh_postgres()
    try:
        yield url
    finally:
        _drop_postgres(name)


@pytest.fixture
def store_url(empty_store_url: str) -> str:
    """A database of each backend migrated to head."""
    command.upgrade(alembic_config(empty_store_url), "head")
    return empty_store_url


def write_phantom_case(folder: Path, seed: int, name: str | None = None) -> tuple[Path, Path]:
    """A phantom CT and its reference as NIfTI in ``folder/images`` and ``folder/references``."""
    import SimpleITK as sitk

    from pipeline.phantoms.ct import generate_phantom

    phantom = generate_phantom(seed)
    paths = []
    for array, sub in ((phantom.ct, "images"), (phantom.labels, "references")):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(tuple(reversed(phantom.spacing)))
        path = folder / sub / f"{name or f'phantom_{seed}'}.nii.gz"
        sitk.WriteImage(image, str(path))
        paths.append(path)
    return paths[0], paths[1]


@pytest.fixture(scope="session")
def phantom_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cohort folder of three phantoms with references (seeds 9000-9002)."""
    folder = tmp_path_factory.mktemp("cohort")
    for seed in (9000, 9001, 9002):
        write_phantom_case(folder, seed)
    return folder
