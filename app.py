"""Serve the QA dashboard: ``python app.py`` (QA_HOST, QA_PORT; default 127.0.0.1:8050) or ``gunicorn app:server``.

The store comes from ``QA_DATABASE_URL`` and ``QA_ARTIFACTS_DIR`` (default ``var/qa.sqlite3``, ``var/artifacts``).
"""

from __future__ import annotations

import logging
import os

from qa_dashboard.app import create_app

app = create_app()
server = app.server

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app.run(host=os.environ.get("QA_HOST", "127.0.0.1"), port=int(os.environ.get("QA_PORT", "8050")))
