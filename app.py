"""Serve the QA dashboard: ``python app.py`` (QA_HOST, QA_PORT; default 127.0.0.1:8050) or ``gunicorn app:server``."""

from __future__ import annotations

import os

from qa_dashboard.app import create_app

app = create_app()
server = app.server

if __name__ == "__main__":
    app.run(host=os.environ.get("QA_HOST", "127.0.0.1"), port=int(os.environ.get("QA_PORT", "8050")))
