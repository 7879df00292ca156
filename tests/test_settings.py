"""The process's settings: read from an environment mapping once, malformed values named, defaults embedded."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import InputError
from pipeline.settings import DEFAULT_DEMO_PASSWORD, DEFAULT_MAX_VOXELS, ReviewSettings, Settings


def test_defaults_are_the_embedded_store_under_the_working_folder(tmp_path: Path) -> None:
    settings = Settings.from_env({}, cwd=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / 'var' / 'qa.sqlite3'}"
    assert settings.artifacts_dir == tmp_path.resolve() / "var" / "artifacts"
    assert settings.exports_dir == tmp_path.resolve() / "var" / "exports"
    assert settings.review == ReviewSettings() and settings.oidc is None and settings.secret_key is None
    assert (settings.host, settings.port, settings.demo_password) == ("127.0.0.1", 8050, DEFAULT_DEMO_PASSWORD)
    assert settings == Settings.embedded(tmp_path)


def test_every_variable_is_read(tmp_path: Path) -> None:
    environ = {
        "QA_DATABASE_URL": "postgresql+psycopg://qa@db/qa", "QA_ARTIFACTS_DIR": str(tmp_path / "a"),
        "QA_EXPORTS_DIR": str(tmp_path / "e"), "QA_SHARED_DATA": str(tmp_path / "s"), "QA_SECRET_KEY": "k" * 40,
        "QA_SECURE_COOKIES": "yes", "QA_OIDC_ISSUER": "https://idp", "QA_OIDC_CLIENT_ID": "c",
        "QA_OIDC_CLIENT_SECRET": "s", "QA_OIDC_LABEL": "Hospital", "QA_REVIEW_SECONDS_PER_ML": "12.5",
        "QA_REVIEW_CONFIGURATION": "DE+TTA+TS", "QA_MRN_SALT": "salt", "QA_DEMO_PASSWORD": "another-password",
        "QA_HOST": "0.0.0.0", "QA_PORT": "9000", "QA_MAX_VOXELS": "1000000", "QA_REVIEW_MEASURED_ITEMS": "50",
        "QA_REVIEW_IDLE_CAP_SECONDS": "90",
    }
    settings = Settings.from_env(environ, cwd=tmp_path)
    assert settings.database_url == "postgresql+psycopg://qa@db/qa"
    assert (settings.artifacts_dir, settings.exports_dir, settings.shared_data) == (
        tmp_path / "a", tmp_path / "e", tmp_path / "s")
    assert settings.secret_key == "k" * 40 and settings.secure_cookies
    assert settings.oidc is not None and (settings.oidc.issuer, settings.oidc.label) == ("https://idp", "Hospital")
    assert settings.oidc.username_claim == "preferred_username" and settings.oidc.redirect_uri is None
    assert settings.review.seconds_per_ml == 12.5 and settings.review_configuration == "DE+TTA+TS"
    assert (settings.review.measured_items, settings.review.idle_cap_seconds) == (50, 90.0)
    assert (settings.mrn_salt, settings.demo_password, settings.host, settings.port) == (
        "salt", "another-password", "0.0.0.0", 9000)
    assert settings.max_voxels == 1_000_000


def test_single_sign_on_needs_all_three_variables(tmp_path: Path) -> None:
    assert Settings.from_env({"QA_OIDC_ISSUER": "https://idp", "QA_OIDC_CLIENT_ID": "c"}, cwd=tmp_path).oidc is None


@pytest.mark.parametrize(("name", "value", "message"), [
    ("QA_REVIEW_SECONDS_PER_ML", "fast", "QA_REVIEW_SECONDS_PER_ML='fast'"),
    ("QA_REVIEW_SECONDS_PER_ML", "0", "seconds_per_ml must be finite and > 0"),
    ("QA_REVIEW_SECONDS_PER_ML", "nan", "must be finite"),
    ("QA_REVIEW_MEASURED_ITEMS", "2.5", "QA_REVIEW_MEASURED_ITEMS='2.5' must be a whole number >= 1"),
    ("QA_REVIEW_MEASURED_ITEMS", "0", "QA_REVIEW_MEASURED_ITEMS='0' must be a whole number >= 1"),
    ("QA_REVIEW_IDLE_CAP_SECONDS", "-5", "idle_cap_seconds must be finite and > 0"),
    ("QA_REVIEW_IDLE_CAP_SECONDS", "soon", "QA_REVIEW_IDLE_CAP_SECONDS='soon' is not a number"),
    ("QA_DATABASE_URL", "not a url", "QA_DATABASE_URL='not a url' is not a database URL"),
    ("QA_PORT", "80.5", "QA_PORT='80.5' must be a port number"),
    ("QA_PORT", "http", "QA_PORT='http' is not a number"),
    ("QA_MAX_VOXELS", "lots", "QA_MAX_VOXELS='lots' is not a number"),
    ("QA_MAX_VOXELS", "0.5", "QA_MAX_VOXELS='0.5' must be a whole number >= 1"),
])
def test_malformed_values_name_the_variable(tmp_path: Path, name: str, value: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        Settings.from_env({name: value}, cwd=tmp_path)


def test_the_review_rate_from_the_environment(tmp_path: Path) -> None:
    assert Settings.from_env({"QA_REVIEW_SECONDS_PER_ML": "12.5"}, cwd=tmp_path).review.seconds_per_ml == 12.5
    with pytest.raises(ValueError, match="QA_REVIEW_SECONDS_PER_ML='fast'"):
        Settings.from_env({"QA_REVIEW_SECONDS_PER_ML": "fast"}, cwd=tmp_path)


def test_the_voxel_limit_from_the_environment(tmp_path: Path) -> None:
    assert Settings.from_env({}, cwd=tmp_path).max_voxels == DEFAULT_MAX_VOXELS == 2**31
    assert Settings.from_env({"QA_MAX_VOXELS": "5e9"}, cwd=tmp_path).max_voxels == 5_000_000_000
