"""Serve the QA dashboard: ``python app.py`` (QA_HOST, QA_PORT; default 127.0.0.1:8050) or ``gunicorn app:server``.

The settings (the store's ``QA_DATABASE_URL`` and ``QA_ARTIFACTS_DIR``, default ``var/qa.sqlite3`` and
``var/artifacts``, and the rest: :mod:`pipeline.settings`) are read from the environment once, here.
"""

from __future__ import annotations

import logging
import sys

from pipeline.errors import EXIT_BAD_INPUT, UserError, one_line
from pipeline.settings import Settings
from qa_dashboard.app import create_app
from qa_dashboard.security import QuietRequestHandler

try:
    settings = Settings.from_env()
except UserError as error:
    sys.stderr.write(f"error: {one_line(error)}\n")
    raise SystemExit(EXIT_BAD_INPUT) from None
app = create_app(settings)
server = app.server

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app.run(host=settings.host, port=settings.port, request_handler=QuietRequestHandler)
