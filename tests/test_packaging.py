"""The package outside the checkout: the wheel, installed into a fresh virtual environment, migrates a store from a
temporary folder; and ``pyproject.toml`` declares every third-party import, in ranges that hold the pins.

The fresh environment gets the wheel only (``--no-deps``); its dependencies come from the running environment's
site-packages through a ``.pth`` file written after the install, so nothing is downloaded and torch is not copied.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pipeline.store.database import current_revision, head_revision, make_engine
from tests.conftest import REPO_ROOT

PACKAGES = ("pipeline", "qa_dashboard")
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}{done.stderr[-4000:]}"
    return done


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would point Python at the checkout or another environment."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    return {**env, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment holding the wheel built from a copy of the sources; returns its folder."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    for name in PACKAGES:
        shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    env = _clean_env()
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", root / "dist",
         source, cwd=root, env=env)
    (wheel,) = (root / "dist").glob("uncertainty_qa-*.whl")
    target = root / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", wheel, cwd=root, env=env)
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root, env=env)
    dependencies = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    (Path(purelib.stdout.strip()) / "_qa_dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    return target


def test_console_script_runs_outside_the_checkout(fresh_venv: Path, tmp_path: Path) -> None:
    done = _run(fresh_venv / "bin" / "qa-pipeline", "--help", cwd=tmp_path, env=_clean_env())
    assert "migrate" in done.stdout


def test_installed_package_is_the_wheel_with_its_data(fresh_venv: Path, tmp_path: Path) -> None:
    script = "import pipeline, qa_dashboard; print(pipeline.__file__); print(qa_dashboard.__file__)"
    done = _run(fresh_venv / "bin" / "python", "-c", script, cwd=tmp_path, env=_clean_env())
    locations = [Path(line).parent for line in done.stdout.split()]
    assert all(location.is_relative_to(fresh_venv) for location in locations), locations
    installed_pipeline, installed_dashboard = locations
    data = {
        installed_pipeline / "store" / "migrations": REPO_ROOT / "pipeline" / "store" / "migrations",
        installed_dashboard / "assets": REPO_ROOT / "qa_dashboard" / "assets",
        installed_dashboard / "pages": REPO_ROOT / "qa_dashboard" / "pages",
    }
    for installed, checkout in data.items():
        expected = {path.relative_to(checkout) for path in checkout.rglob("*.*") if "__pycache__" not in path.parts}
        found = {path.relative_to(installed) for path in installed.rglob("*.*") if "__pycache__" not in path.parts}
        assert expected and expected <= found, f"{installed} lacks {sorted(map(str, expected - found))}"


def test_migrate_from_any_folder(fresh_venv: Path, tmp_path: Path) -> None:
    """``qa-pipeline migrate`` in a folder without ``alembic.ini`` brings a new SQLite store to head."""
    url = f"sqlite:///{tmp_path / 'store' / 'qa.sqlite3'}"
    work = tmp_path / "work"
    work.mkdir()
    done = _run(fresh_venv / "bin" / "qa-pipeline", "migrate", cwd=work, env=_clean_env(QA_DATABASE_URL=url))
    assert f"store at head: {url}" in done.stdout
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
    assert list(work.iterdir()) == []


def _pins(name: str) -> dict[str, str]:
    """Distribution name -> pinned version of a requirements file (and the files it includes)."""
    pins: dict[str, str] = {}
    for line in (REPO_ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            pins |= _pins(line[3:].strip())
        elif line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{name}: {line} is not an exact pin"
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def test_dependency_ranges_hold_the_pins() -> None:
    ranges = {canonicalize_name(req.name): req for req in map(Requirement, PYPROJECT["project"]["dependencies"])}
    pins = _pins("requirements.txt")
    assert set(ranges) == set(pins)
    for name, version in pins.items():
        assert ranges[name].specifier.contains(version), f"{name}=={version} is outside {ranges[name]}"


def _third_party_imports(paths: list[Path]) -> dict[str, set[str]]:
    """Top-level module -> the files importing it, for every import that is neither stdlib nor the project's."""
    found: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.split(".")[0] for name in names}:
                if top not in sys.stdlib_module_names and top not in {*PACKAGES, "benchmarks", "tests"}:
                    found.setdefault(top, set()).add(str(path.relative_to(REPO_ROOT)))
    return found


@pytest.mark.parametrize(("folders", "declared"), [
    (("pipeline", "qa_dashboard", "app.py"), "pyproject"),
    (("benchmarks",), "requirements-dev.txt"),
])
def test_every_third_party_import_is_declared(folders: tuple[str, ...], declared: str) -> None:
    if declared == "pyproject":
        names = {canonicalize_name(Requirement(dep).name) for dep in PYPROJECT["project"]["dependencies"]}
    else:
        names = set(_pins(declared))
    paths = [path for folder in folders for path in
             ([REPO_ROOT / folder] if folder.endswith(".py") else sorted((REPO_ROOT / folder).rglob("*.py")))]
    distributions = packages_distributions()
    undeclared = {
        module: sorted(files) for module, files in _third_party_imports(paths).items()
        if not {canonicalize_name(dist) for dist in distributions.get(module, [module])} & names
    }
    assert not undeclared, f"imported but not declared in {declared}: {undeclared}"


@pytest.mark.parametrize(("make_rule", "code"), [("@true", 0), ("@false", 2)])
def test_ci_keeps_the_screenshots_without_changing_the_outcome(tmp_path: Path, make_rule: str, code: int) -> None:
    """`.ci/run` lists the browser tests' screenshots and copies them to $CI_ARTIFACTS_DIR, pass or fail; a folder it
    cannot write is said, never turned into a failure (a stand-in Makefile replaces the suite)."""
    clone = tmp_path / "clone"
    (clone / ".ci").mkdir(parents=True)
    shutil.copy(REPO_ROOT / ".ci" / "run", clone / ".ci" / "run")
    (clone / "Makefile").write_text(f"test:\n\t{make_rule}\n")
    (clone / "var" / "screenshots").mkdir(parents=True)
    (clone / "var" / "screenshots" / "01_cohort.png").write_bytes(b"png")
    kept = tmp_path / "artefacts"
    for target, said in ((kept, f"copied to {kept}/screenshots"), (Path("/proc/no-such-folder"), "could not copy")):
        done = subprocess.run(["bash", str(clone / ".ci" / "run")], env={**os.environ, "CI_ARTIFACTS_DIR": str(target)},
                              capture_output=True, text=True, check=False)
        assert done.returncode == code and "ci: 1 screenshots in" in done.stdout and said in done.stdout
    assert (kept / "screenshots" / "01_cohort.png").read_bytes() == b"png"
