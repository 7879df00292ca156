"""The process's settings: one object, read from the environment once at the edge and passed down.

:meth:`Settings.from_env` is called by the command line (:func:`pipeline.cli.main`) and by the dashboard
(:func:`qa_dashboard.app.create_app`), nowhere else; everything below them takes the values it needs as arguments,
so tests configure by argument. Every variable, its default and what it is for:

| variable | setting | default |
|---|---|---|
| ``QA_DATABASE_URL`` | the store's SQLAlchemy URL | SQLite ``var/qa.sqlite3`` under the working folder |
| ``QA_ARTIFACTS_DIR`` | root of the chunked voxel maps | ``var/artifacts`` |
| ``QA_EXPORTS_DIR`` | where the dashboard keeps exported files | ``var/exports`` |
| ``QA_SHARED_DATA`` | the real CT / DICOM data (demo, tests) | ``../shared/data`` beside the checkout |
| ``QA_SECRET_KEY`` | the session cookie's signing key | none: a random per-process key |
| ``QA_SECURE_COOKIES`` | cookies only over HTTPS (1/true/yes/on) | off |
| ``QA_SESSION_IDLE_MINUTES`` | a dashboard session ends after this long without a request | 30 |
| ``QA_SESSION_MAX_HOURS`` | a dashboard session ends this long after its login, active or not | 12 |
| ``QA_OIDC_ISSUER``, ``QA_OIDC_CLIENT_ID``, ``QA_OIDC_CLIENT_SECRET`` | single sign-on (all three, or none) | off |
| ``QA_OIDC_USERNAME_CLAIM``, ``QA_OIDC_LABEL``, ``QA_OIDC_REDIRECT_URI`` | its claim, button, callback | OidcSettings |
| ``QA_REVIEW_SECONDS_PER_ML`` | placeholder review rate until enough reviews are measured | 30 s per mL |
| ``QA_REVIEW_MEASURED_ITEMS`` | measured review items needed before their median rate replaces it | 20 |
| ``QA_REVIEW_IDLE_CAP_SECONDS`` | the most seconds one gap between activity reports counts as review time | 60 |
| ``QA_REVIEW_CONFIGURATION`` | the configuration reviewed by default | the newest model set's first |
| ``QA_MULTIPLE_COMPARISONS`` | multiplicity correction of the comparisons shown (holm, bh) | holm |
| ``QA_MRN_SALT`` | the key of the hospital-number hash | none: a manifest with an mrn is refused |
| ``QA_DEMO_PASSWORD`` | the demo accounts' password | ``demo-only-password`` |
| ``QA_HOST``, ``QA_PORT`` | where ``python app.py`` listens | 127.0.0.1:8050 |
| ``QA_MAX_VOXELS`` | the most values (voxels × channels) an input file may declare | 2**31 |

A malformed value is an :class:`~pipeline.errors.InputError` naming the variable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from pipeline.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE = Path("var") / "qa.sqlite3"
DEFAULT_ARTIFACTS = Path("var") / "artifacts"
DEFAULT_EXPORTS = Path("var") / "exports"
DEFAULT_DEMO_PASSWORD = "demo-only-password"  # the embedded demo store only; set QA_DEMO_PASSWORD elsewhere
DEFAULT_USERNAME_CLAIM = "preferred_username"
DEFAULT_OIDC_LABEL = "single sign-on"
DEFAULT_SESSION_IDLE_MINUTES = 30.0
DEFAULT_SESSION_MAX_HOURS = 12.0
#: the most values (voxels × channels) a header may declare before anything is allocated: a whole-body CT
#: (512 × 512 × 2000 = 5.2e8) with three class probabilities fits; a forged header of 2.4e10 does not
DEFAULT_MAX_VOXELS = 2**31


@dataclass(frozen=True)
class ReviewSettings:
    """Options of the review worklist.

    Attributes:
        seconds_per_ml: the placeholder review rate (default 30 s per mL; ``QA_REVIEW_SECONDS_PER_ML``) used until
            ``measured_items`` reviews are measured; then the department's measured median replaces it
            (:func:`pipeline.metrics.review_budget.review_rate`).
        measured_items: how many measured review items the measured rate needs (default 20;
            ``QA_REVIEW_MEASURED_ITEMS``).
        idle_cap_seconds: the most one gap between the browser's activity reports counts (default 60 s;
            ``QA_REVIEW_IDLE_CAP_SECONDS``): a reviewer who walks away adds at most this much.
        connectivity: 26 (face, edge and corner neighbours) or 6 (face neighbours only) for review regions.
        structure_search_mm: how far a region without predicted foreground looks for the nearest structure.
        merge_distance_mm: parts of U_b whose gap is at most this along every axis form one review region (10 mm;
            why: docs/review-regions.md).
        min_region_ml: review regions smaller than this are not listed; their voxels stay in the budget mask
            (0.05 mL; why: docs/review-regions.md).
        region_budgets: the budgets (fractions of ROI voxels) the batch stores every deployed result's review
            regions at, and the worklist offers: a list at one of them opens from the store without reading a map
            (0.1, 0.2, 0.5, 1, 2, 3 and 5 %: the default 2 % and the cap 5 % with steps a reviewer tells apart, and
            0.1–0.2 % because a time budget of a few minutes on a large ROI — 5 min at 30 s/mL is 10 mL, 0.2 % of a
            5 L ROI — rounds down to them).
    """

    seconds_per_ml: float = 30.0
    connectivity: Literal[6, 26] = 26
    structure_search_mm: float = 30.0
    measured_items: int = 20
    idle_cap_seconds: float = 60.0
    region_budgets: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05)
    merge_distance_mm: float = 10.0
    min_region_ml: float = 0.05

    def __post_init__(self) -> None:
        if not (self.seconds_per_ml > 0 and math.isfinite(self.seconds_per_ml)):
            raise InputError(f"seconds_per_ml must be finite and > 0, got {self.seconds_per_ml}")
        if not (isinstance(self.measured_items, int) and self.measured_items >= 1):
            raise InputError(f"measured_items must be a whole number >= 1, got {self.measured_items}")
        if not (self.idle_cap_seconds > 0 and math.isfinite(self.idle_cap_seconds)):
            raise InputError(f"idle_cap_seconds must be finite and > 0, got {self.idle_cap_seconds}")
        if self.connectivity not in (6, 26):
            raise InputError(f"connectivity must be 6 or 26, got {self.connectivity}")
        if not self.structure_search_mm >= 0:
            raise InputError(f"structure_search_mm must be >= 0, got {self.structure_search_mm}")
        for name in ("merge_distance_mm", "min_region_ml"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InputError(f"{name} must be finite and >= 0, got {value}")
        if not (self.region_budgets and all(0 < b <= 1 for b in self.region_budgets)
                and list(self.region_budgets) == sorted(set(self.region_budgets))):
            raise InputError(f"region_budgets must be increasing fractions in (0, 1], got {self.region_budgets}")


@dataclass(frozen=True)
class OidcSettings:
    """The identity provider the dashboard trusts and how it names users."""

    issuer: str
    client_id: str
    client_secret: str
    username_claim: str = DEFAULT_USERNAME_CLAIM
    label: str = DEFAULT_OIDC_LABEL
    redirect_uri: str | None = None  # None: this request's own host (wrong behind a proxy that terminates HTTPS)


@dataclass(frozen=True)
class Settings:
    """Everything the process is configured with (the module's table says where each value comes from)."""

    database_url: str
    artifacts_dir: Path
    exports_dir: Path
    shared_data: Path = REPO_ROOT.parent / "shared" / "data"
    secret_key: str | None = None
    secure_cookies: bool = False
    session_idle_minutes: float = DEFAULT_SESSION_IDLE_MINUTES
    session_max_hours: float = DEFAULT_SESSION_MAX_HOURS
    oidc: OidcSettings | None = None
    review: ReviewSettings = field(default_factory=ReviewSettings)
    review_configuration: str | None = None
    multiple_comparisons: Literal["holm", "bh"] = "holm"
    mrn_salt: str | None = None
    demo_password: str = DEFAULT_DEMO_PASSWORD
    host: str = "127.0.0.1"
    port: int = 8050
    max_voxels: int = DEFAULT_MAX_VOXELS

    def __post_init__(self) -> None:
        if not (0 < self.session_idle_minutes <= 60 * self.session_max_hours <= 60 * 24 * 31):
            raise InputError(f"the session timeouts must satisfy 0 < QA_SESSION_IDLE_MINUTES "
                             f"({self.session_idle_minutes:g}) <= 60 × QA_SESSION_MAX_HOURS "
                             f"({self.session_max_hours:g}) <= 31 days")

    @classmethod
    def embedded(cls, folder: Path) -> Settings:
        """The embedded defaults under ``folder``: SQLite ``var/qa.sqlite3``, ``var/artifacts``, ``var/exports``."""
        folder = Path(folder).resolve()
        return cls(database_url=f"sqlite:///{folder / DEFAULT_DATABASE}", artifacts_dir=folder / DEFAULT_ARTIFACTS,
                   exports_dir=folder / DEFAULT_EXPORTS)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
        """The settings of this process: ``environ`` (default ``os.environ``) over the embedded defaults under
        ``cwd`` (default: the working folder)."""
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            return (env.get(name) or "").strip() or None

        base = cls.embedded(cwd or Path.cwd())
        url = text("QA_DATABASE_URL") or base.database_url
        try:
            make_url(url)
        except ArgumentError:
            raise InputError(f"QA_DATABASE_URL={url!r} is not a database URL (e.g. sqlite:///var/qa.sqlite3 or "
                             "postgresql+psycopg://user@host/db)") from None
        values: dict[str, object] = {
            "database_url": url,
            "artifacts_dir": _path(text("QA_ARTIFACTS_DIR"), base.artifacts_dir),
            "exports_dir": _path(text("QA_EXPORTS_DIR"), base.exports_dir),
            "shared_data": _path(text("QA_SHARED_DATA"), base.shared_data),
            "secret_key": env.get("QA_SECRET_KEY") or None,
            "secure_cookies": (text("QA_SECURE_COOKIES") or "").lower() in {"1", "true", "yes", "on"},
            "oidc": _oidc(text),
            "review_configuration": text("QA_REVIEW_CONFIGURATION"),
            "mrn_salt": env.get("QA_MRN_SALT") or None,
            "demo_password": env.get("QA_DEMO_PASSWORD") or DEFAULT_DEMO_PASSWORD,
            "host": text("QA_HOST") or base.host,
        }
        correction = (text("QA_MULTIPLE_COMPARISONS") or "holm").lower()
        if correction not in ("holm", "bh"):
            raise InputError(f"QA_MULTIPLE_COMPARISONS={correction!r} must be holm (Holm's step-down, the default) or "
                             "bh (Benjamini-Hochberg)")
        values["multiple_comparisons"] = correction
        values["review"] = _review(text)
        for name, key in (("QA_SESSION_IDLE_MINUTES", "session_idle_minutes"),
                          ("QA_SESSION_MAX_HOURS", "session_max_hours")):
            raw = text(name)
            if raw is not None:
                values[key] = _number(name, raw)
        port = text("QA_PORT")
        if port is not None:
            number = _number("QA_PORT", port)
            if not (number.is_integer() and 0 < number < 65536):
                raise InputError(f"QA_PORT={port!r} must be a port number (1-65535)")
            values["port"] = int(number)
        limit = text("QA_MAX_VOXELS")
        if limit is not None:
            number = _number("QA_MAX_VOXELS", limit)
            if not (number.is_integer() and number >= 1):
                raise InputError(f"QA_MAX_VOXELS={limit!r} must be a whole number >= 1")
            values["max_voxels"] = int(number)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def demo_password_is_default(self) -> bool:
        """Whether the demo accounts get the documented default password (not ``QA_DEMO_PASSWORD``)."""
        return self.demo_password == DEFAULT_DEMO_PASSWORD


def _path(value: str | None, default: Path) -> Path:
    return Path(value).resolve() if value else default


def _number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"{name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise InputError(f"{name}={value!r} must be finite")
    return number


def _review(read: Callable[[str], str | None]) -> ReviewSettings:
    """The review settings: the placeholder rate, the measured-items threshold and the idle cap, where set."""
    values: dict[str, float | int] = {}
    rate, items, cap = (read(name) for name in ("QA_REVIEW_SECONDS_PER_ML", "QA_REVIEW_MEASURED_ITEMS",
                                                "QA_REVIEW_IDLE_CAP_SECONDS"))
    if rate is not None:
        values["seconds_per_ml"] = _number("QA_REVIEW_SECONDS_PER_ML", rate)
    if items is not None:
        number = _number("QA_REVIEW_MEASURED_ITEMS", items)
        if not (number.is_integer() and number >= 1):
            raise InputError(f"QA_REVIEW_MEASURED_ITEMS={items!r} must be a whole number >= 1")
        values["measured_items"] = int(number)
    if cap is not None:
        values["idle_cap_seconds"] = _number("QA_REVIEW_IDLE_CAP_SECONDS", cap)
    return ReviewSettings(**values)  # type: ignore[arg-type]


def _oidc(read: Callable[[str], str | None]) -> OidcSettings | None:
    """Single sign-on when ``QA_OIDC_ISSUER``, ``QA_OIDC_CLIENT_ID`` and ``QA_OIDC_CLIENT_SECRET`` are all set."""
    required = ("QA_OIDC_ISSUER", "QA_OIDC_CLIENT_ID", "QA_OIDC_CLIENT_SECRET")
    issuer, client_id, secret = (read(name) for name in required)
    if not (issuer and client_id and secret):
        return None
    return OidcSettings(issuer, client_id, secret, read("QA_OIDC_USERNAME_CLAIM") or DEFAULT_USERNAME_CLAIM,
                        read("QA_OIDC_LABEL") or DEFAULT_OIDC_LABEL, read("QA_OIDC_REDIRECT_URI"))
