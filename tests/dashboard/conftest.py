"""Dashboard fixtures: seeded stores (SQLite and PostgreSQL), the app served in a thread, headless Chromium.

The browser is Debian's ``chromium`` driven through Debian's ``chromium-driver`` (``/usr/bin/chromedriver``, never
selenium-manager: nothing is downloaded at run time). ``ensure_chromium`` installs both with apt when they are
missing and the tests run as root; otherwise it fails with the command to run. Screenshots go to
``var/screenshots`` of the checkout (emptied at the start of each session), where a person can look at them.
Every page needs a signed-in user: ``benchmarks/http_client.py`` creates accounts (as the command line would) and
signs a Flask test client in through the form; the browser is signed in as its ``ADMIN``. The seeded stores are
``benchmarks/store_seed.py``'s.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dash
import numpy as np
import pytest
from alembic import command
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

from benchmarks.http_client import ADMIN, PASSWORD, ensure_user
from benchmarks.store_seed import Seeded, SeedPlan, seed_store
from pipeline.settings import Settings
from pipeline.store.database import alembic_config
from qa_dashboard import config
from tests.store.conftest import _drop_postgres, _fresh_postgres

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
APT_INSTALL = ("apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver")
PLAN = SeedPlan()
#: the browser tests' screenshots, kept after the run for a human look (``var/`` is the checkout's ignored runtime
#: folder; the folder for a CI job to keep as its artefacts)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def ensure_chromium() -> None:
    """Install Debian's chromium and chromium-driver when they are missing (root only)."""
    if CHROMIUM.is_file() and CHROMEDRIVER.is_file():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"the browser tests need {CHROMIUM} and {CHROMEDRIVER}: run `{' '.join(APT_INSTALL)}` as root")
    done = subprocess.run(APT_INSTALL, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if done.returncode != 0:
        pytest.fail(f"`{' '.join(APT_INSTALL)}` failed: {done.stderr[-2000:]}")


def decode_png(uri: str) -> np.ndarray:
    """The pixels of a ``data:image/png;base64,…`` picture."""
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


@dataclass(frozen=True)
class SeededStore:
    """A migrated, seeded store: database URL, artifact root and what the seed wrote."""

    backend: str
    url: str
    root: Path
    seeded: Seeded


def _seeded(url: str, root: Path, backend: str) -> SeededStore:
    command.upgrade(alembic_config(url), "head")
    return SeededStore(backend, url, root, seed_store(url, root, PLAN))


@pytest.fixture(scope="session")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> SeededStore:
    folder = tmp_path_factory.mktemp("sqlite_store")
    return _seeded(f"sqlite:///{folder / 'qa.sqlite3'}", folder / "artifacts", "sqlite")


@pytest.fixture(scope="session")
def postgres_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededStore]:
    name, url = _fresh_postgres()
    try:
        yield _seeded(url, tmp_path_factory.mktemp("postgres_artifacts"), "postgresql")
    finally:
        _drop_postgres(name)


@pytest.fixture(scope="session")
def dash_app(tmp_path_factory: pytest.TempPathFactory) -> dash.Dash:
    """The app, created once (Dash Pages keeps one global page registry), on an embedded store under a temporary
    folder until a test configures another (:func:`configure_app`)."""
    from qa_dashboard.app import create_app

    return create_app(Settings.embedded(tmp_path_factory.mktemp("app")))


@pytest.fixture
def configure_app(dash_app: dash.Dash) -> Iterator[Callable[..., Settings]]:
    """``configure_app(**changes)`` gives the app settings with ``changes`` for this test (by argument, not by
    environment variable); the app's settings are restored afterwards."""
    before = config.settings()

    def use(**changes: Any) -> Settings:
        settings = replace(config.settings(), **changes)
        config.configure(settings)
        return settings

    yield use
    config.configure(before)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, configure_app: Callable[..., Settings]) -> SeededStore:
    """Each backend's seeded store, made the app's store (its settings' database_url, artifacts_dir) for the test."""
    seeded: SeededStore = request.getfixturevalue({"sqlite": "sqlite_store", "postgresql": "postgres_store"}[
        request.param])
    configure_app(database_url=seeded.url, artifacts_dir=seeded.root)
    return seeded


def browser_login(driver: webdriver.Chrome, base: str, username: str = ADMIN, password: str = PASSWORD) -> None:
    """Sign the browser in through the login form and wait for the app shell."""
    driver.get(base + "/login")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()
    WebDriverWait(driver, 40).until(lambda d: d.find_elements(By.ID, "signed-in-user"), "the signed-in app")


@pytest.fixture(scope="session")
def server(dash_app: dash.Dash, sqlite_store: SeededStore, browser: webdriver.Chrome) -> Iterator[str]:
    """The app on a free local port, reading the seeded SQLite store, with the browser signed in as the admin;
    yields its base URL."""
    ensure_user(sqlite_store.url)
    before = config.settings()
    config.configure(replace(before, database_url=sqlite_store.url, artifacts_dir=sqlite_store.root))
    http = make_server("127.0.0.1", 0, dash_app.server, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{http.server_port}"
        browser_login(browser, base)
        yield base
    finally:
        http.shutdown()
        config.configure(before)


@pytest.fixture(scope="session")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the browser tests save their screenshots for a human look: :data:`SCREENSHOTS`, emptied first."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def browser(downloads: Path) -> Iterator[webdriver.Chrome]:
    """Headless Debian Chromium through /usr/bin/chromedriver, with reduced motion (Bootstrap's smooth scrolling
    would still be under way when Selenium clicks an element it scrolled to)."""
    ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1600,1300", "--lang=en-GB", "--force-prefers-reduced-motion"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        driver.quit()
