"""The dashboard's settings: the :class:`~pipeline.settings.Settings` that :func:`qa_dashboard.app.create_app` was
given, for every page, callback and route of the process (one app per process: Dash Pages is global)."""

from __future__ import annotations

from pipeline.settings import Settings

_current: Settings | None = None


def configure(settings: Settings) -> None:
    """Make ``settings`` the dashboard's (``create_app`` does it; tests switch stores with it)."""
    global _current
    _current = settings


def settings() -> Settings:
    """The dashboard's settings; RuntimeError before :func:`configure` (an app built without ``create_app``)."""
    if _current is None:
        raise RuntimeError("the dashboard has no settings: build it with qa_dashboard.app.create_app(settings)")
    return _current
