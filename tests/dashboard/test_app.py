"""The app's shell and states: pages register, nothing imports torch, every page explains a store that is missing,
behind the code's schema or empty, and unknown cases and addresses get the not-found content."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dash
import pytest
from alembic import command

from pipeline.settings import Settings
from pipeline.store.database import alembic_config
from tests.conftest import REPO_ROOT
from tests.dashboard.conftest import SeededStore

PAGES = {"/": {}, "/cohort": {}, "/compare": {}, "/runs": {}, "/worklist": {},
         "/patient/<name>": {"name": "phantom_9000"}}


def _page(path: str, **query: Any) -> Any:
    page = next(p for p in dash.page_registry.values() if (p["path_template"] or p["path"]) == path)
    return page["layout"](**query)


def _layout(path: str, **query: Any) -> str:
    return str(_page(path, **query))


def _by_id(component: Any, wanted: str) -> Any:
    """The component with id ``wanted`` in a layout tree (None when absent)."""
    if getattr(component, "id", None) == wanted:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if child is not None and not isinstance(child, str | int | float):
            found = _by_id(child, wanted)
            if found is not None:  # a component without children is falsy (its len is 0)
                return found
    return None


def test_app_serves_every_page_without_torch_or_nnunet(sqlite_store: SeededStore) -> None:
    script = (
        "import sys, dash, app\n"
        "from benchmarks.http_client import ensure_user, login\n"
        "ensure_user(sys.argv[1])\n"
        "client = app.server.test_client()\n"
        "assert client.get('/').status_code == 302\n"
        "assert login(client).status_code == 302\n"
        "assert client.get('/').status_code == 200\n"
        "assert client.get('/assets/viewer.js').status_code == 200\n"
        "paths = sorted(p['path_template'] or p['path'] for p in dash.page_registry.values())\n"
        "assert paths == ['/', '/404', '/audit', '/cohort', '/compare', '/docs/metrics', '/patient/<name>', '/runs', "
        "'/sessions', '/study/<name>', '/trends', '/worklist'], "
        "paths\n"
        "assert 'not a medical device' in str(client.get('/_dash-layout').get_json())\n"
        "for page in dash.page_registry.values():\n"
        "    query = {'name': 'phantom_9000'} if page['path_template'] else {}\n"
        "    page['layout'](**query)\n"
        "assert not {'torch', 'nnunetv2'} & set(sys.modules), 'the dashboard imported torch or nnunetv2'\n"
    )
    env = {**os.environ, "QA_DATABASE_URL": sqlite_store.url, "QA_ARTIFACTS_DIR": str(sqlite_store.root)}
    done = subprocess.run([sys.executable, "-c", script, sqlite_store.url], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_missing_sqlite_store_is_explained_on_every_page_and_not_created(
        tmp_path: Path, configure_app: Callable[..., Settings]) -> None:
    missing = tmp_path / "nowhere" / "qa.sqlite3"
    configure_app(database_url=f"sqlite:///{missing}")
    for path, query in PAGES.items():
        text = _layout(path, **query)
        assert "store-not-ready" in text and "python -m pipeline migrate" in text, path
    assert not missing.exists() and not missing.parent.exists()


@pytest.mark.parametrize("revision", ["base", "0001"])
def test_a_store_behind_head_is_explained_on_every_page(
        tmp_path: Path, configure_app: Callable[..., Settings], revision: str) -> None:
    url = f"sqlite:///{tmp_path / 'qa.sqlite3'}"
    if revision == "base":
        (tmp_path / "qa.sqlite3").touch()
    else:
        command.upgrade(alembic_config(url), revision)
    configure_app(database_url=url)
    for path, query in PAGES.items():
        text = _layout(path, **query)
        assert "python -m pipeline migrate" in text, path
        assert ("is empty" if revision == "base" else "at revision 0001") in text, path


def test_an_empty_store_says_how_to_fill_it(tmp_path: Path, configure_app: Callable[..., Settings]) -> None:
    url = f"sqlite:///{tmp_path / 'qa.sqlite3'}"
    command.upgrade(alembic_config(url), "head")
    configure_app(database_url=url)
    for path, query in PAGES.items():
        text = _layout(path, **query)
        assert "empty-state" in text and "make demo" in text and "python -m pipeline run" in text, path


def test_unknown_cases_configurations_and_addresses_are_not_found(dash_app: dash.Dash, store: SeededStore) -> None:
    assert "There is no case called 'nobody'" in _layout("/patient/<name>", name="nobody")
    assert "not-found" in _layout("/patient/<name>", name="")
    assert "has no result for case" in _layout("/patient/<name>", name="phantom_9000", a="999")
    assert "has no result for case" in _layout("/patient/<name>", name="phantom_9000", b="DE")
    assert "is not a voxel z,y,x inside" in _layout("/patient/<name>", name="phantom_9000", at="99,0,0")
    assert "is not a voxel z,y,x inside" in _layout("/patient/<name>", name="phantom_9000", at="1,2")
    assert "There is no protocol '42'" in _layout("/cohort", protocol="42")
    assert "There is no protocol 'x'" in _layout("/compare", protocol="x")
    assert "Nothing lives at this address" in _layout("/404")
    page = _page("/patient/<name>", name="phantom_9000", a=str(store.seeded.configurations["DE+TS"]), at="3,4,5")
    viewer = _by_id(page, "viewer")
    assert viewer is not None and _by_id(page, "not-found") is None and _by_id(page, "review-panel") is not None
    assert [_by_id(viewer, f"slice-{p}").data for p in ("axial", "coronal", "sagittal")] == [3, 4, 5]
    assert _by_id(viewer, "viewer-a").value == store.seeded.configurations["DE+TS"]


def test_case_names_in_addresses_are_url_decoded(dash_app: dash.Dash, store: SeededStore) -> None:
    from qa_dashboard.components import patient_href

    assert patient_href("a b/c", a=3) == "/patient/a%20b%2Fc?a=3"
    assert "viewer" in _layout("/patient/<name>", name="phantom%5F9000")
